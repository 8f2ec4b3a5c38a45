"""Checks that turn arbitrary user input into a clean float32 data set ``[n, d]``."""

from __future__ import annotations

import numpy as np

from cmm_core.errors import DataError

__all__ = ["as_dataset", "MAX_DIM", "MIN_ROWS", "MAX_ABS"]

from cmm_core.limits import MIN_ROWS, MAX_DIM, MAX_ABS  # noqa: F401 (re-exported)


def as_dataset(data, *, name: str = "data", min_rows: int = MIN_ROWS) -> np.ndarray:
  """Validates ``data`` and returns it as float32 ``[n, d]``.

  A 1D array is read as ``n`` points in one dimension.

  Raises:
    DataError: with a message a user can act on (wrong shape, non-numeric, NaN/inf,
      too few rows, constant columns, too many dimensions).
  """
  try:
    arr = np.asarray(data)
  except Exception as e:  # ragged lists and the like
    raise DataError(f"{name} could not be read as a numeric array ({e}).") from None
  if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
    raise DataError(f"{name} is not numeric (dtype {arr.dtype}); give numbers only.")
  if np.issubdtype(arr.dtype, np.complexfloating):
    raise DataError(f"{name} has complex numbers; give real numbers only.")
  if arr.ndim == 1:
    arr = arr[:, None]
  if arr.ndim != 2:
    raise DataError(f"{name} must be a table of shape [rows, columns], got shape {arr.shape}.")
  n, d = arr.shape
  if d == 0:
    raise DataError(f"{name} has no columns.")
  if d > MAX_DIM:
    raise DataError(f"{name} has {d} columns; at most {MAX_DIM} are supported.")
  arr = arr.astype(np.float64)
  if not np.all(np.isfinite(arr)):
    bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
    raise DataError(f"{name} has {bad} row(s) with NaN or infinite values; drop or fill them first.")
  if n < min_rows:
    raise DataError(f"{name} has {n} row(s); at least {min_rows} are needed to fit a model.")
  if np.max(np.abs(arr)) > MAX_ABS:
    raise DataError(f"{name} has values up to {np.max(np.abs(arr)):.7g}; rescale it "
                    f"(|values| <= {MAX_ABS:g}).")
  std = arr.std(axis=0)
  if np.any(std < 1e-8 * (1.0 + np.abs(arr).max(axis=0))):
    cols = [int(i) for i in np.nonzero(std < 1e-8 * (1.0 + np.abs(arr).max(axis=0)))[0]]
    raise DataError(f"{name} has constant column(s) {cols}; a distribution needs spread in every column.")
  return arr.astype(np.float32)
