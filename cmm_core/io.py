"""Save and load fitted models: a JSON header and msgpack arrays in one file, never pickle."""

from __future__ import annotations

import json
import os
from io import StringIO

import jax
import numpy as np
from flax import serialization

from cmm_core.errors import DataError

__all__ = ["save", "load", "to_bytes", "from_bytes", "points_csv", "samples_csv", "FORMAT"]

FORMAT = "cmm_core.fitted/1"
from cmm_core.limits import MAX_MODEL_BYTES  # noqa: F401 (re-exported)


def _split_extras(extras: dict):
  meta, arrays = {}, {}
  for k, v in extras.items():
    if isinstance(v, (np.ndarray, jax.Array)):
      arrays[k] = np.asarray(v)
    else:
      meta[k] = v
  return meta, arrays


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating,)):
    return float(obj)
  return obj


def to_bytes(fitted) -> bytes:
  """Serialises a FittedModel to bytes."""
  meta, arrays = _split_extras(fitted.extras)
  header = {"format": FORMAT, "model": fitted.model, "config": _jsonable(fitted.config),
            "info": _jsonable(fitted.info), "history": _jsonable(fitted.history),
            "extras": _jsonable(meta)}
  params = jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(fitted.params))
  return serialization.msgpack_serialize(
      {"header": json.dumps(header), "params": params, "arrays": arrays})


def from_bytes(blob: bytes):
  """Reads bytes written by :func:`to_bytes`; raises DataError for anything else."""
  from cmm_core import models
  if len(blob) > MAX_MODEL_BYTES:
    raise _too_big(len(blob))
  try:
    raw = serialization.msgpack_restore(blob)
    header = json.loads(raw["header"])
  except Exception:
    raise DataError("this is not a cmm_core model file (could not read its header).") from None
  if not isinstance(header, dict) or header.get("format") != FORMAT:
    raise DataError(f"unsupported model file format {header.get('format') if isinstance(header, dict) else None!r}; "
                    f"expected {FORMAT!r}.")
  try:
    cls = models.fitted_class(header.get("model"))
  except ValueError as e:
    raise DataError(str(e)) from None
  try:
    extras = dict(header["extras"])
    extras.update(raw.get("arrays", {}))
    return cls(config=dict(header["config"]), params=raw["params"], extras=extras,
               history=list(header["history"]), info=dict(header["info"]))
  except (KeyError, TypeError, ValueError) as e:
    raise DataError(f"the model file is incomplete or corrupt ({type(e).__name__}: {e}); save "
                    "the model again.") from None


def save(fitted, path) -> None:
  """Writes ``fitted`` to ``path``."""
  data = to_bytes(fitted)
  with open(os.fspath(path), "wb") as f:
    f.write(data)


def load(path):
  """Reads a FittedModel saved by :func:`save` (``cc.load``); DataError if it cannot."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"model file not found: {path!r}")
  size = os.path.getsize(path)
  if size > MAX_MODEL_BYTES:
    raise _too_big(size)
  with open(path, "rb") as f:
    return from_bytes(f.read())


def _too_big(nbytes: int) -> DataError:
  return DataError(f"the model file is {nbytes:,} bytes; the limit is {MAX_MODEL_BYTES:,} bytes "
                   f"({MAX_MODEL_BYTES // 2**20} MB).")


def points_csv(points) -> bytes:
  """Points ``[n, d]`` as CSV bytes with a header ``x1,x2,...``; values keep float32 precision."""
  arr = np.asarray(points, dtype=np.float64)
  if arr.ndim == 1:
    arr = arr[:, None]
  if arr.ndim != 2:
    raise ValueError(f"points must have shape [n, d], got {arr.shape}")
  buf = StringIO()
  buf.write(",".join(f"x{i + 1}" for i in range(arr.shape[1])) + "\n")
  np.savetxt(buf, arr, delimiter=",", fmt="%.9g")
  return buf.getvalue().encode("utf-8")


def samples_csv(fitted, n: int, seed: int = 0, *, base: bool = False) -> bytes:
  """``fitted.sample(n, seed)`` (or ``sample_base`` when ``base``) as :func:`points_csv` bytes."""
  points = fitted.sample_base(n, seed) if base else fitted.sample(n, seed)
  return points_csv(points)
