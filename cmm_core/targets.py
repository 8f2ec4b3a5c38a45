"""Target distributions: toy 1D/2D generators, Gaussians and uploaded files.

Every generator is seeded with a numpy ``Generator`` (never the global
``np.random``), so ``make(name, n, seed)`` reproduces a data set exactly.

The 2D targets follow FFJORD's toy data (also used by OT-Flow and others), so
figures are comparable with the flow literature. Where the literature uses
``linspace`` (moons, circles, rings) we draw the position on the curve uniformly
at random instead: the distribution is the same and every point is i.i.d.

>>> from cmm_core import targets
>>> targets.make("eight_gaussians", n=4, seed=0).shape
(4, 2)
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import zipfile
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from cmm_core.errors import DataError
from cmm_core.validation import MAX_DIM, as_dataset

__all__ = [
    "names", "info", "make", "density_1d", "log_density_1d", "gaussian",
    "load_file", "load_file_report", "load_table", "select_columns",
    "draw_grid", "sample_cells", "parse_points", "sample_points",
    "MAX_N", "MAX_FILE_BYTES", "MAX_TABLE_COLUMNS", "MAX_ROWS",
]

from cmm_core.limits import MAX_N, MAX_FILE_BYTES, MAX_TABLE_COLUMNS, MAX_ROWS  # noqa: F401 (re-exported)
_MAX_ARRAY_BYTES = 4 * MAX_FILE_BYTES  # decompressed size cap for an array in a .npz


# ----------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------


def _param(default, lo, hi, step, help_: str) -> dict:
  return {"default": default, "min": lo, "max": hi, "step": step, "help": help_}


def _scale(help_: str = "Multiplies the whole data set (1 = the literature's size).") -> dict:
  return _param(1.0, 0.1, 5.0, 0.1, help_)


def _noise(default: float, hi: float, help_: str) -> dict:
  return _param(default, 0.0, hi, 0.01, help_)


# ----------------------------------------------------------------------------
# 1D targets: samplers and log-densities.
# ----------------------------------------------------------------------------


def _mixture_parts(separation, std, weight):
  means = np.array([-2.0 * separation, 1.5 * separation])
  weights = np.array([weight, 1.0 - weight])
  return means, weights, std


def _sample_gaussian_1d(rng, n, mean, std):
  return mean + std * rng.standard_normal(n)


def _logpdf_gaussian_1d(x, mean, std):
  return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def _sample_mixture(rng, n, separation, std, weight):
  means, weights, std = _mixture_parts(separation, std, weight)
  k = (rng.random(n) >= weights[0]).astype(int)
  return means[k] + std * rng.standard_normal(n)


def _logpdf_mixture(x, separation, std, weight):
  means, weights, std = _mixture_parts(separation, std, weight)
  parts = [math.log(wk) + _logpdf_gaussian_1d(x, mk, std) for mk, wk in zip(means, weights)]
  return np.logaddexp(parts[0], parts[1])


def _sample_uniform(rng, n, center, width):
  return center + width * (rng.random(n) - 0.5)


def _logpdf_uniform(x, center, width):
  inside = np.abs(x - center) <= width / 2
  return np.where(inside, -math.log(width), -np.inf)


def _sample_laplace(rng, n, loc, scale):
  return rng.laplace(loc, scale, n)


def _logpdf_laplace(x, loc, scale):
  return -np.abs(x - loc) / scale - math.log(2 * scale)


def _sample_skewed(rng, n, shape, scale):
  return rng.gamma(shape, scale, n) - shape * scale


def _logpdf_skewed(x, shape, scale):
  y = x + shape * scale  # the gamma variable
  pos = y > 0
  safe = np.where(pos, y, 1.0)
  logp = ((shape - 1) * np.log(safe) - np.maximum(y, 0.0) / scale
          - math.lgamma(shape) - shape * math.log(scale))
  if shape == 1:
    # Exponential: the density jumps to 1/scale at y = 0.
    return np.where(y >= 0, logp, -np.inf)
  return np.where(pos, logp, -np.inf)


# ----------------------------------------------------------------------------
# 2D targets (FFJORD toy data, times ``scale``).
# ----------------------------------------------------------------------------


def _eight_gaussians(rng, n, noise, scale):
  k = rng.integers(0, 8, n)
  angle = k * np.pi / 4
  centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
  return scale * (centres + noise * rng.standard_normal((n, 2))) / 1.414


def _two_moons(rng, n, noise, scale):
  upper = rng.random(n) < 0.5
  t = np.pi * rng.random(n)
  x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
  y = np.where(upper, np.sin(t), 0.5 - np.sin(t))  # sklearn: 1 - sin(t) - 0.5
  pts = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
  return scale * (2.0 * pts + np.array([-1.0, -0.2]))


def _rings(rng, n, noise, scale, n_rings):
  radius = rng.integers(1, n_rings + 1, n) / n_rings
  t = 2 * np.pi * rng.random(n)
  pts = 3.0 * radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
  return scale * (pts + noise * rng.standard_normal((n, 2)))


def _checkerboard(rng, n, scale):
  x1 = 4 * rng.random(n) - 2
  x2 = rng.random(n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
  return scale * 2.0 * np.stack([x1, x2], axis=1)


def _spirals(rng, n, noise, scale, turns):
  half = n // 2
  t = np.sqrt(rng.random(n)) * turns * 2 * np.pi
  x = -np.cos(t) * t + 0.5 * rng.random(n)
  y = np.sin(t) * t + 0.5 * rng.random(n)
  pts = np.stack([x, y], axis=1)
  pts[half:] *= -1  # the mirror spiral
  pts = pts[rng.permutation(n)] / 3
  return scale * (pts + noise * rng.standard_normal((n, 2)))


def _pinwheel(rng, n, scale, arms, radial_std, tangential_std, rate):
  rads = np.linspace(0, 2 * np.pi, arms, endpoint=False)
  features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
  features[:, 0] += 1.0
  labels = rng.integers(0, arms, n)
  angles = rads[labels] + rate * np.exp(features[:, 0])
  c, s = np.cos(angles), np.sin(angles)
  rotations = np.stack([c, -s, s, c], axis=1).reshape(-1, 2, 2)
  return scale * 2.0 * np.einsum("ti,tij->tj", features, rotations)


def _banana(rng, n, noise, scale, curvature):
  x1 = 1.5 * rng.standard_normal(n)
  x2 = curvature * (x1**2 - 2.25) + noise * rng.standard_normal(n)
  return scale * np.stack([x1, x2], axis=1)


def _circles(rng, n, noise, scale, factor):
  radius = np.where(rng.random(n) < 0.5, 1.0, factor)
  t = 2 * np.pi * rng.random(n)
  pts = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
  return scale * 3.0 * (pts + noise * rng.standard_normal((n, 2)))


def _swissroll(rng, n, noise, scale):
  t = 1.5 * np.pi * (1 + 2 * rng.random(n))
  pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
  return scale * (pts + noise * rng.standard_normal((n, 2))) / 5


# ----------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------

_NOISE2D = "Standard deviation of the Gaussian noise added to each point (literature units)."

_TARGETS: dict[str, dict[str, Any]] = {
    # 1D.
    "gaussian": dict(
        dim=1, sampler=_sample_gaussian_1d, logpdf=_logpdf_gaussian_1d,
        description="A normal distribution N(mean, std^2).",
        params={"mean": _param(0.0, -10.0, 10.0, 0.1, "Mean."),
                "std": _param(1.0, 0.05, 10.0, 0.05, "Standard deviation.")}),
    "mixture": dict(
        dim=1, sampler=_sample_mixture, logpdf=_logpdf_mixture,
        description=("A bimodal mixture weight*N(-2*separation, std^2) + "
                     "(1-weight)*N(1.5*separation, std^2)."),
        params={"separation": _param(1.0, 0.0, 5.0, 0.1,
                                     "Scales the two means -2 and 1.5."),
                "std": _param(0.5, 0.05, 3.0, 0.05, "Standard deviation of each mode."),
                "weight": _param(0.3, 0.01, 0.99, 0.01, "Weight of the left mode.")}),
    "uniform": dict(
        dim=1, sampler=_sample_uniform, logpdf=_logpdf_uniform,
        description="A uniform distribution on [center - width/2, center + width/2].",
        params={"center": _param(0.0, -10.0, 10.0, 0.1, "Centre of the interval."),
                "width": _param(2.0, 0.1, 20.0, 0.1, "Length of the interval.")}),
    "laplace": dict(
        dim=1, sampler=_sample_laplace, logpdf=_logpdf_laplace,
        description="A Laplace (double exponential) distribution with a cusp at loc.",
        params={"loc": _param(0.0, -10.0, 10.0, 0.1, "Location (mean and mode)."),
                "scale": _param(1.0, 0.05, 10.0, 0.05, "Scale b (std = b * sqrt(2)).")}),
    "skewed": dict(
        dim=1, sampler=_sample_skewed, logpdf=_logpdf_skewed,
        description="A right-skewed Gamma(shape, scale) shifted to mean 0.",
        params={"shape": _param(2.0, 1.0, 20.0, 0.1,
                                "Gamma shape k (smaller is more skewed)."),
                "scale": _param(1.0, 0.05, 5.0, 0.05, "Gamma scale theta (std = sqrt(k) theta).")}),
    # 2D.
    "eight_gaussians": dict(
        dim=2, sampler=_eight_gaussians,
        description="Eight Gaussians with centres on a circle of radius 4/1.414 (FFJORD).",
        params={"noise": _param(0.5, 0.01, 2.0, 0.01,
                                "Standard deviation of each Gaussian before the /1.414."),
                "scale": _scale()}),
    "two_moons": dict(
        dim=2, sampler=_two_moons,
        description="Two interleaving half circles (sklearn moons x2, shifted; FFJORD).",
        params={"noise": _noise(0.1, 1.0, _NOISE2D), "scale": _scale()}),
    "rings": dict(
        dim=2, sampler=_rings,
        description="Concentric circles of radius 3k/n_rings with Gaussian noise (FFJORD).",
        params={"noise": _noise(0.08, 1.0, _NOISE2D), "scale": _scale(),
                "n_rings": _param(4, 1, 8, 1, "Number of rings.")}),
    "checkerboard": dict(
        dim=2, sampler=_checkerboard,
        description="Uniform on the 8 dark cells of a 4x4 checkerboard on [-4, 4]^2 (FFJORD).",
        params={"scale": _scale()}),
    "spirals": dict(
        dim=2, sampler=_spirals,
        description="Two interleaved spirals (FFJORD's 2spirals).",
        params={"noise": _noise(0.1, 1.0, _NOISE2D), "scale": _scale(),
                "turns": _param(1.5, 0.5, 3.0, 0.25, "Number of turns of each spiral.")}),
    "pinwheel": dict(
        dim=2, sampler=_pinwheel,
        description="Curved arms rotating out from the centre (FFJORD's pinwheel).",
        params={"scale": _scale(),
                "arms": _param(5, 2, 10, 1, "Number of arms."),
                "radial_std": _param(0.3, 0.01, 1.0, 0.01, "Spread along each arm."),
                "tangential_std": _param(0.1, 0.01, 1.0, 0.01, "Thickness of each arm."),
                "rate": _param(0.25, 0.0, 1.0, 0.05, "How strongly the arms curve.")}),
    "banana": dict(
        dim=2, sampler=_banana,
        description="A curved 'banana': x1 ~ N(0, 1.5^2), x2 = curvature (x1^2 - 2.25) + noise.",
        params={"noise": _noise(0.5, 2.0, "Standard deviation of x2 around the curve."),
                "scale": _scale("Multiplies the whole data set."),
                "curvature": _param(0.3, 0.0, 1.0, 0.05, "Bending of the banana.")}),
    "circles": dict(
        dim=2, sampler=_circles,
        description="Two concentric circles (sklearn circles, factor 0.5, times 3).",
        params={"noise": _noise(0.08, 1.0, _NOISE2D), "scale": _scale(),
                "factor": _param(0.5, 0.1, 0.9, 0.05, "Radius of the inner circle / outer.")}),
    "swissroll": dict(
        dim=2, sampler=_swissroll,
        description="A 2D swiss roll (sklearn swiss roll, columns 0 and 2, divided by 5).",
        params={"noise": _noise(1.0, 3.0, _NOISE2D), "scale": _scale()}),
}


def names(dim: int | None = None) -> list[str]:
  """Names of the built-in targets, all of them or those of dimension ``dim``."""
  return [k for k, v in _TARGETS.items() if dim is None or v["dim"] == dim]


def _entry(name: str) -> dict:
  if not isinstance(name, str) or name not in _TARGETS:
    raise ValueError(f"unknown target {name!r}; valid names: {', '.join(names())}")
  return _TARGETS[name]


def info(name: str) -> dict:
  """Describes a target so that a UI can build one slider per parameter.

  Returns:
    ``{"name", "dim", "description", "params": {pname: {"default", "min", "max",
    "step", "help"}}}`` (a fresh copy: editing it changes nothing).
  """
  e = _entry(name)
  return {"name": name, "dim": e["dim"], "description": e["description"],
          "params": {k: dict(v) for k, v in e["params"].items()}}


def _check_params(name: str, params: dict) -> dict:
  """Defaults filled in; ValueError naming the parameter and its range otherwise."""
  spec = _entry(name)["params"]
  out = {k: v["default"] for k, v in spec.items()}
  for k, value in params.items():
    if k not in spec:
      valid = ", ".join(spec) or "none"
      raise ValueError(f"target {name!r} has no parameter {k!r}; its parameters: {valid}")
    s = spec[k]
    rng_txt = f"[{s['min']}, {s['max']}]"
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    if not ok_type or not math.isfinite(float(value)):
      raise ValueError(f"{name}: parameter {k!r} must be a number in {rng_txt}, got {value!r}")
    if not s["min"] <= float(value) <= s["max"]:
      raise ValueError(f"{name}: parameter {k!r} must be in {rng_txt}, got {value!r}")
    if isinstance(s["default"], int):
      if float(value) != int(value):
        raise ValueError(f"{name}: parameter {k!r} must be an integer in {rng_txt}, got {value!r}")
      out[k] = int(value)
    else:
      out[k] = float(value)
  return out


def _check_n(n) -> int:
  if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not (
      1 <= n <= MAX_N):
    raise ValueError(f"n must be an integer in [1, {MAX_N}], got {n!r}")
  return int(n)


def _rng(seed) -> np.random.Generator:
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  return np.random.default_rng(int(seed))


def make(name: str, n: int, seed: int = 0, **params) -> np.ndarray:
  """Draws ``n`` points of a built-in target.

  Args:
    name: one of :func:`names`.
    n: number of points, ``1 <= n <= 1_000_000``.
    seed: non-negative integer; the same seed gives the same array.
    **params: the target's parameters (see :func:`info`); missing ones take their
      default, which matches the literature's definition.

  Returns:
    float32 array ``[n, d]`` (``d = info(name)["dim"]``).

  Raises:
    ValueError: unknown name or parameter, a parameter outside its range, bad n or seed.
  """
  e = _entry(name)
  p = _check_params(name, params)
  n = _check_n(n)
  x = e["sampler"](_rng(seed), n, **p)
  return np.asarray(x, dtype=np.float32).reshape(n, e["dim"])


def _check_1d(name: str) -> dict:
  e = _entry(name)
  if e["dim"] != 1:
    raise ValueError(f"{name!r} is a {e['dim']}D target; densities are available for the "
                     f"1D targets only: {', '.join(names(1))}")
  return e


def log_density_1d(name: str, x, **params) -> np.ndarray:
  """Analytic log-density of a 1D target at points ``x`` ``[m]`` (``-inf`` off the support)."""
  e = _check_1d(name)
  p = _check_params(name, params)
  x = np.asarray(x, dtype=np.float64)
  return np.asarray(e["logpdf"](x, **p), dtype=np.float64) + np.zeros_like(x)


def density_1d(name: str, x, **params) -> np.ndarray:
  """Analytic density of a 1D target at points ``x`` ``[m]``.

  Raises:
    ValueError: unknown or non-1D target, bad parameters.
  """
  return np.exp(log_density_1d(name, x, **params))


# ----------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------


def _gaussian_params(mean, cov) -> tuple[np.ndarray, np.ndarray]:
  """Validated float64 ``mean [d]`` and symmetric positive definite ``cov [d, d]``."""
  try:
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"mean and cov must be numeric arrays ({e})") from None
  if mean.ndim != 1:
    raise ValueError(f"mean must be a vector [d], got shape {mean.shape}")
  if cov.ndim == 0:
    cov = cov.reshape(1, 1)  # a 1D variance
  d = mean.shape[0]
  if cov.shape != (d, d):
    raise ValueError(f"cov must have shape [d, d] = [{d}, {d}] to match mean, got {cov.shape}")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
    raise ValueError("mean and cov must be finite")
  if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12 * (1 + np.abs(cov).max())):
    raise ValueError("cov must be symmetric (cov == cov.T)")
  eig = np.linalg.eigvalsh(cov)
  if eig[0] <= 1e-12 * max(eig[-1], 0.0) or eig[0] <= 0:
    raise ValueError(f"cov must be positive definite; its smallest eigenvalue is {eig[0]:.3g}")
  return mean, cov


def gaussian(mean, cov, n: int, seed: int = 0) -> np.ndarray:
  """Draws ``n`` points of N(mean, cov).

  Args:
    mean: ``[d]`` (or a scalar in 1D).
    cov: ``[d, d]`` symmetric positive definite (or a scalar variance in 1D).
    n: number of points, ``1 <= n <= 1_000_000``.
    seed: non-negative integer.

  Returns:
    float32 ``[n, d]``.

  Raises:
    ValueError: shapes that do not match, or a cov that is not symmetric positive definite.
  """
  mean, cov = _gaussian_params(mean, cov)
  n = _check_n(n)
  chol = np.linalg.cholesky(cov)
  z = _rng(seed).standard_normal((n, mean.shape[0]))
  return (mean + z @ chol.T).astype(np.float32)


# ----------------------------------------------------------------------------
# Uploaded files.
# ----------------------------------------------------------------------------

_REFUSED_EXT = {
    ".pkl": "pickle files are never loaded (they can run code); save the data as .npy or CSV",
    ".pickle": "pickle files are never loaded (they can run code); save the data as .npy or CSV",
    ".xlsx": "Excel files are not supported; export the sheet as CSV",
    ".xls": "Excel files are not supported; export the sheet as CSV",
    ".parquet": "parquet files are not supported; save the data as CSV or .npy",
    ".json": "JSON files are not supported; save the data as CSV or .npy",
}
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _mb(nbytes: int) -> str:
  return f"{nbytes / 2**20:.1f} MB"


def _too_big(nbytes: int, what: str = "file", limit: int = MAX_FILE_BYTES) -> DataError:
  size, cap = _mb(nbytes), _mb(limit)
  if size == cap:  # just over the limit: say it in bytes
    size, cap = f"{nbytes:,} bytes", f"{cap} ({limit:,} bytes)"
  return DataError(f"the {what} is {size}; at most {cap} can be loaded. "
                   "Subsample the data or keep fewer columns.")


def _too_wide(ncols: int) -> DataError:
  return DataError(f"the data has {ncols} columns; at most {MAX_TABLE_COLUMNS} can be read. Save "
                   f"only the columns to fit (a model takes at most {MAX_DIM} at once).")


def _too_long(nrows: int, what: str = "rows") -> DataError:
  return DataError(f"the data has {nrows:,} {what}; at most {MAX_ROWS:,} rows can be loaded. "
                   "Subsample it (e.g. keep every 10th row).")


def _read_source(source, filename):
  """Returns ``(bytes, filename)`` from a path, bytes or a binary file-like object."""
  if isinstance(source, (str, os.PathLike)):
    path = pathlib.Path(source)
    if not path.is_file():
      raise DataError(f"file not found: {str(path)!r}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
      raise _too_big(size)
    return path.read_bytes(), filename or path.name
  if isinstance(source, (bytes, bytearray, memoryview)):
    return bytes(source), filename
  if hasattr(source, "read"):
    if getattr(source, "seekable", lambda: False)():
      source.seek(0)
    raw = source.read(MAX_FILE_BYTES + 1)
    if isinstance(raw, str):
      raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
      raise DataError("the file object did not return bytes; open the file in binary mode")
    name = getattr(source, "name", None)
    return bytes(raw), filename or (name if isinstance(name, str) else None)
  raise DataError(f"cannot read data from a {type(source).__name__}; give a file path, "
                  "bytes, or a file opened in binary mode")


def _file_format(raw: bytes, filename: str | None) -> str:
  """``"npy"``, ``"npz"`` or ``"text"``: magic bytes first, then the extension."""
  ext = pathlib.PurePath(filename).suffix.lower() if filename else ""
  if ext in _REFUSED_EXT:
    raise DataError(f"{filename}: {_REFUSED_EXT[ext]}.")
  if raw.startswith(_NPY_MAGIC):
    return "npy"
  if raw.startswith(_ZIP_MAGIC):
    return "npz"
  if ext == ".npy":
    raise DataError(f"{filename} is not a valid .npy file (it does not start with the NumPy "
                    "header); save it with numpy.save.")
  if ext == ".npz":
    raise DataError(f"{filename} is not a valid .npz file (it is not a zip archive); save it "
                    "with numpy.savez.")
  return "text"


# --- npy / npz ---------------------------------------------------------------


def _npy_header(f) -> tuple[tuple, bool, np.dtype]:
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(f)
  if version == (2, 0):
    return np.lib.format.read_array_header_2_0(f)
  reader = getattr(np.lib.format, "_read_array_header", None)
  if reader is None:
    raise DataError(f"unsupported .npy format version {version}; save it with numpy.save.")
  return reader(f, version)


def _parse_npy(raw: bytes) -> tuple[np.ndarray, dict]:
  f = io.BytesIO(raw)
  try:
    shape, _, dtype = _npy_header(f)
  except DataError:
    raise
  except Exception:
    raise DataError("the .npy file is corrupt (its header cannot be read); save it again "
                    "with numpy.save.") from None
  if dtype.hasobject:
    raise DataError("the .npy file contains Python objects (pickle); save it with numeric "
                    "dtype, e.g. numpy.save(path, x.astype(float)). Pickled data is never loaded.")
  expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
  available = len(raw) - f.tell()
  if expected > _MAX_ARRAY_BYTES:
    raise _too_big(expected, "array", _MAX_ARRAY_BYTES)
  if available < expected:
    raise DataError(f"the .npy file is truncated or corrupt: its header announces "
                    f"{expected} bytes of data but only {available} are present.")
  try:
    arr = np.load(io.BytesIO(raw), allow_pickle=False)
  except Exception as e:
    raise DataError(f"the .npy file is corrupt ({e}); save it again with numpy.save.") from None
  return _array_table(arr)


def _array_table(arr: np.ndarray) -> tuple[np.ndarray, dict]:
  """A numeric ``[n, d]`` float64 table from a loaded array, and the report."""
  ignored: list[str] = []
  if arr.dtype.names:  # structured array: keep its numeric fields
    fields = [k for k in arr.dtype.names if arr.dtype[k].shape == ()
              and (np.issubdtype(arr.dtype[k], np.number) or arr.dtype[k] == bool)
              and not np.issubdtype(arr.dtype[k], np.complexfloating)]
    ignored = [k for k in arr.dtype.names if k not in fields]
    if not fields:
      raise DataError("the array has no numeric fields; save numbers only.")
    if len(fields) > MAX_TABLE_COLUMNS:
      raise _too_wide(len(fields))
    if arr.size > MAX_ROWS:
      raise _too_long(arr.size)
    columns = list(fields)
    with np.errstate(invalid="ignore", over="ignore"):
      arr = np.stack([arr[k].astype(np.float64).reshape(-1) for k in fields], axis=1)
  else:
    if arr.ndim == 0:
      raise DataError("the file holds a single number; a data set needs rows of points.")
    if arr.ndim == 1:
      arr = arr[:, None]
    if arr.ndim != 2:
      raise DataError(f"the array has shape {arr.shape}; save a table [rows, columns].")
    if arr.shape[1] == 0:
      raise DataError(f"the array has no columns (shape {arr.shape}); save a table [rows, columns].")
    if arr.shape[1] > MAX_TABLE_COLUMNS:  # e.g. an empty array of shape (0, 10**11)
      raise _too_wide(arr.shape[1])
    if arr.shape[0] > MAX_ROWS:
      raise _too_long(arr.shape[0])
    if arr.dtype.kind in "USa":
      raise DataError(f"the array holds text (dtype {arr.dtype}), not numbers; save it with a "
                      "numeric dtype.")
    if np.issubdtype(arr.dtype, np.complexfloating):
      raise DataError("the array holds complex numbers; give real numbers only.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
      raise DataError(f"the array is not numeric (dtype {arr.dtype}); save numbers only.")
    columns = [f"x{j}" for j in range(arr.shape[1])]
    with np.errstate(invalid="ignore", over="ignore"):
      arr = arr.astype(np.float64)
  report = {"rows_read": int(arr.shape[0]), "rows_malformed": 0,
            "columns": columns, "ignored_columns": ignored}
  return arr, report


def _parse_npz(raw: bytes) -> tuple[np.ndarray, dict]:
  try:
    zf = zipfile.ZipFile(io.BytesIO(raw))
    members = [m for m in zf.infolist() if m.filename.endswith(".npy")]
  except Exception:
    raise DataError("the file looks like a zip/.npz archive but is corrupt; save it again "
                    "with numpy.savez.") from None
  if not members:
    raise DataError("the zip archive holds no .npy arrays; save the data with numpy.savez "
                    "(an Excel file must be exported as CSV).")
  by_name = {m.filename[:-4]: m for m in members}
  member = by_name.get("data") or by_name.get("x") or members[0]
  if member.file_size > _MAX_ARRAY_BYTES:
    raise _too_big(member.file_size, "array", _MAX_ARRAY_BYTES)
  try:
    content = zf.read(member)
  except Exception:
    raise DataError(f"the .npz file is corrupt (array {member.filename[:-4]!r} cannot be "
                    "decompressed); save it again with numpy.savez.") from None
  arr, report = _parse_npy(content)
  report["array"] = member.filename[:-4]
  return arr, report


# --- text --------------------------------------------------------------------

_DELIMITERS = ("\t", ";", ",")


def _decode(raw: bytes) -> str:
  if b"\x00" in raw:
    raise DataError("this looks like a binary file, not text, CSV, .npy or .npz; "
                    "save the data as CSV or with numpy.save.")
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(f"the file is not UTF-8 text (bad byte at position {e.start}); save it as "
                    "a UTF-8 CSV, or with numpy.save.") from None


def _sniff_delimiter(lines: list[str]) -> str | None:
  """The first of tab, ``;``, ``,`` used consistently; ``None`` means whitespace."""
  sample = lines[:200]
  for d in _DELIMITERS:
    counts = Counter(ln.count(d) for ln in sample)
    mode, freq = counts.most_common(1)[0]
    if mode > 0 and freq >= 0.5 * len(sample):
      return d
  return None


def _split(lines: list[str], delim: str | None) -> list[list[str]]:
  if delim is None:
    return [ln.split() for ln in lines]
  return [[f.strip().strip("'\"").strip() for f in ln.split(delim)] for ln in lines]


def _to_float(field: str, decimal_comma: bool) -> float:
  s = field.strip().strip("'\"")
  if decimal_comma:
    s = s.replace(",", ".")
  try:
    return float(s)
  except ValueError:
    return math.nan


def _is_number(field: str) -> bool:
  return not math.isnan(_to_float(field, True)) or field.strip().lower() in ("nan", "+nan", "-nan")


def _parse_column(values: list[str], decimal_comma: bool) -> tuple[np.ndarray, bool]:
  """Floats (NaN for missing or non-numeric) and whether any value was a number."""
  try:
    col = np.array(values, dtype=np.float64)
    return col, True
  except (ValueError, TypeError, OverflowError):
    pass
  col = np.array([_to_float(v, decimal_comma) for v in values], dtype=np.float64)
  any_number = bool(np.any(~np.isnan(col))) or any(_is_number(v) for v in values)
  return col, any_number


def _parse_text(raw: bytes) -> tuple[np.ndarray, dict]:
  nlines = raw.count(b"\n") or raw.count(b"\r")  # counted on the bytes: splitting costs GBs
  if nlines > MAX_ROWS + 1:  # + a header
    raise _too_long(nlines, "lines")
  text = _decode(raw)
  lines = [ln.strip() for ln in text.splitlines()]
  lines = [ln for ln in lines if ln and not ln.startswith("#")]
  if not lines:
    raise DataError("the file has no data lines (it is empty or only comments).")
  delim = _sniff_delimiter(lines)
  rows = _split(lines, delim)
  first = [f for f in rows[0] if f != ""]
  header = bool(first) and not any(_is_number(f) for f in first)
  names_ = rows[0] if header else []
  rows = rows[1:] if header else rows
  if not rows:
    raise DataError("the file has a header row but no data rows.")
  ncols = Counter(len(r) for r in rows).most_common(1)[0][0]
  if ncols > MAX_TABLE_COLUMNS:
    raise _too_wide(ncols)
  complete = [r for r in rows if len(r) == ncols]
  bad_shape = len(rows) - len(complete)
  names_ = [n or f"x{j}" for j, n in enumerate(names_[:ncols])]
  names_ += [f"x{j}" for j in range(len(names_), ncols)]
  decimal_comma = delim != ","
  cols, kept, ignored = [], [], []
  for j in range(ncols):
    col, numeric = _parse_column([r[j] for r in complete], decimal_comma)
    if numeric:
      cols.append(col)
      kept.append(names_[j])
    else:
      ignored.append(names_[j])
  if not cols:
    detail = f" (ignored non-numeric columns: {', '.join(ignored)})" if ignored else ""
    raise DataError(f"no numeric column found; the file must contain numbers{detail}.")
  table = np.stack(cols, axis=1) if complete else np.zeros((0, len(cols)))
  report = {"rows_read": len(rows), "rows_malformed": int(bad_shape),
            "columns": kept, "ignored_columns": ignored, "header": header,
            "delimiter": "whitespace" if delim is None else delim}
  return table, report


def _parse(raw: bytes, filename: str | None) -> tuple[np.ndarray, dict]:
  if len(raw) > MAX_FILE_BYTES:
    raise _too_big(len(raw))
  if not raw.strip():
    raise DataError("the file is empty.")
  fmt = _file_format(raw, filename)
  parser: Callable = {"npy": _parse_npy, "npz": _parse_npz, "text": _parse_text}[fmt]
  arr, report = parser(raw)
  report["format"] = fmt
  return arr, report


def load_table(source, *, filename: str | None = None) -> tuple[np.ndarray, dict]:
  """Reads a data file as a float64 table ``[rows, columns]`` keeping its incomplete rows.

  Missing or non-numeric cells are NaN (``inf`` stays ``inf``), so the caller can pick columns
  first and drop only the rows incomplete in those (:func:`select_columns`). Rows of a text
  file with the wrong number of fields are left out and counted in ``report["rows_malformed"]``.

  Args: as :func:`load_file_report`.

  Returns:
    ``(table, report)`` with ``report = {"rows_read", "rows_malformed", "columns",
    "ignored_columns", "format", ...}``; ``columns`` names the table's columns.

  Raises:
    DataError: a file that cannot be read at all (too big, empty, binary, pickled, no numeric
      column, ...), with a message saying what to do.
  """
  label = filename or "the file"
  try:
    raw, filename = _read_source(source, filename)
    label = filename or "the file"
    table, report = _parse(raw, filename)
  except DataError:
    raise
  except MemoryError:
    raise DataError(f"{label} is too large to load in memory; subsample it.") from None
  except Exception as e:  # anything a parser may throw on malformed bytes
    raise DataError(f"{label} could not be read ({type(e).__name__}: {e}); save it as a "
                    "UTF-8 CSV or with numpy.save.") from None
  report["filename"] = filename
  return table, report


def select_columns(table, columns=None, *, names: Sequence[str] | None = None,
                   standardize: bool = False, max_columns: int | None = None,
                   label: str = "the data", rows_malformed: int = 0) -> tuple[np.ndarray, dict]:
  """The chosen columns of a table as a clean data set, dropping rows incomplete in them.

  Args:
    table: ``[rows, columns]`` numbers, NaN/inf where a value is missing (:func:`load_table`).
    columns: column names (looked up in ``names``) or integer positions, in the order wanted;
      ``None`` keeps all.
    names: the table's column names (default ``x0, x1, ...``).
    standardize: shift and scale each chosen column to mean 0, std 1 (after dropping rows).
    max_columns: refuse more columns than this (``None``: no limit beyond the library's).
    label: what to call the data in messages (e.g. the file name).
    rows_malformed: rows already left out by the reader, added to the count of dropped rows.

  Returns:
    ``(data, report)``: float32 ``[n, d]`` and ``{"rows_read", "rows_dropped", "rows",
    "columns", "standardized"}``; ``rows_read`` counts the malformed rows too.

  Raises:
    DataError: unknown or repeated column, no column, too many columns, fewer than 10 complete
      rows, a constant column, values too large; the message says which and what to do.
  """
  try:
    table = np.asarray(table, dtype=np.float64)
  except (TypeError, ValueError):
    raise DataError(f"{label} is not a table of numbers; give numbers only (NaN where "
                    "missing).") from None
  if table.ndim == 1:
    table = table[:, None]
  if table.ndim != 2:
    raise DataError(f"{label} must be a table [rows, columns], got shape {table.shape}.")
  if max_columns is not None and (isinstance(max_columns, bool)
                                  or not isinstance(max_columns, (int, np.integer)) or max_columns < 1):
    raise ValueError(f"max_columns must be a positive integer or None, got {max_columns!r}")
  ncols = table.shape[1]
  names = [str(c) for c in names] if names is not None else [f"x{j}" for j in range(ncols)]
  if len(names) != ncols:
    raise ValueError(f"names has {len(names)} entries for a table of {ncols} columns")
  if columns is None:
    idx = list(range(ncols))
  else:
    one = isinstance(columns, (str, bytes, int, float, np.number)) or not hasattr(columns, "__iter__")
    columns = [columns] if one else list(columns)
    idx = []
    for c in columns:
      if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        if not 0 <= c < ncols:
          raise DataError(f"{label} has {ncols} column(s); column {int(c)} does not exist.")
        idx.append(int(c))
      elif str(c) in names:
        idx.append(names.index(str(c)))
      else:
        raise DataError(f"{label} has no column {c!r}; its columns are {', '.join(names)}.")
  if not idx:
    raise DataError("pick at least one column to fit.")
  if len(set(idx)) != len(idx):
    raise DataError("a column was picked twice; pick each column once.")
  if max_columns is not None and len(idx) > max_columns:
    raise DataError(f"{len(idx)} columns picked; at most {max_columns} can be fitted at once.")
  sub = table[:, idx]
  with np.errstate(invalid="ignore"):
    good = np.all(np.isfinite(sub), axis=1)
  dropped = int(rows_malformed + np.sum(~good))
  rows_read = int(table.shape[0] + rows_malformed)
  if rows_read and not np.any(good):
    raise DataError(f"no complete numeric rows: all {rows_read} row(s) of {label} have missing, "
                    "non-numeric or infinite values in the chosen column(s).")
  name = f"{label} (after dropping {dropped} incomplete row(s))" if dropped else label
  data = as_dataset(sub[good], name=name)
  if standardize:
    from cmm_core.datasets import standardize as _standardize
    data = _standardize(data)
  return data, {"rows_read": rows_read, "rows_dropped": dropped, "rows": int(data.shape[0]),
                "columns": [names[j] for j in idx], "standardized": bool(standardize)}


def load_file_report(source, *, filename: str | None = None) -> tuple[np.ndarray, dict]:
  """Loads a data file and says what was read.

  Args:
    source: a path (str or Path), bytes, or a binary file-like object (e.g. Streamlit's
      ``UploadedFile``, whose ``name`` gives the filename).
    filename: the file's name, used for its extension (``.csv``, ``.tsv``, ``.txt``,
      ``.npy``, ``.npz``); without one the format is sniffed from the content.

  Returns:
    ``(data, report)``: float32 ``[n, d]`` and ``{"rows_read", "rows_dropped", "columns",
    "ignored_columns", "format", ...}``. Rows with a missing or non-numeric value are
    dropped and counted; columns with no numeric value at all are ignored and named.

  Raises:
    DataError: for every input that cannot be used, with a message saying what to do
      (files over ``MAX_FILE_BYTES``, fewer than 10 complete rows, ...).
      ``.npy``/``.npz`` files are read with ``allow_pickle=False``: pickled data is
      refused, never loaded.
  """
  table, report = load_table(source, filename=filename)
  label = report.get("filename") or "the file"
  data, sel = select_columns(table, names=report["columns"], label=label,
                             rows_malformed=report["rows_malformed"])
  report["rows_dropped"] = sel["rows_dropped"]
  report["rows"] = sel["rows"]
  return data, report


def load_file(source, *, filename: str | None = None) -> np.ndarray:
  """Loads a data file as float32 ``[n, d]``; see :func:`load_file_report`."""
  return load_file_report(source, filename=filename)[0]


# ----------------------------------------------------------------------------
# Drawn targets: regions selected on a grid of cells, or points typed as text.
# ----------------------------------------------------------------------------

DRAW_EXTENT = (-4.0, 4.0)
DRAW_CELLS = 40


def draw_grid(extent: tuple[float, float] = DRAW_EXTENT, cells: int = DRAW_CELLS) -> dict:
  """The square canvas a user draws a 2D target on: ``cells x cells`` equal square cells.

  Returns:
    ``{"lo", "hi", "cells", "size", "centres"}``; ``centres`` is float64 ``[cells**2, 2]``, cell
    ``k`` is in column ``k % cells`` (along x) and row ``k // cells`` (along y), its centre
    ``centres[k]``, its side ``size``.
  """
  lo, hi = float(extent[0]), float(extent[1])
  cells = int(cells)
  if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
    raise ValueError(f"extent must be (lo, hi) with lo < hi, got {extent!r}")
  if not 1 <= cells <= 400:
    raise ValueError(f"cells must be in [1, 400], got {cells}")
  size = (hi - lo) / cells
  c = lo + size * (np.arange(cells) + 0.5)
  gx, gy = np.meshgrid(c, c)  # rows follow y
  return {"lo": lo, "hi": hi, "cells": cells, "size": size,
          "centres": np.stack([gx.ravel(), gy.ravel()], axis=1)}


def sample_cells(cells, grid: dict, n: int, seed: int = 0, jitter: float = 0.1) -> np.ndarray:
  """``n`` points uniform on the union of the given grid cells, plus a little Gaussian noise.

  Args:
    cells: cell indices (repeats count once), e.g. from the app's selection on the drawing grid.
    grid: from :func:`draw_grid`.
    n: number of points.
    seed: non-negative integer; the same cells and seed give the same points.
    jitter: standard deviation of the added noise, as a fraction of the cell side (in [0, 2]);
      it blurs the cells' edges.

  Returns:
    float32 ``[n, 2]``.

  Raises:
    DataError: no cell selected, or a cell index off the grid.
  """
  idx = np.unique(np.asarray(list(cells), dtype=np.int64))
  if idx.size == 0:
    raise DataError("nothing drawn yet: select at least one region of the canvas (box or lasso).")
  m = grid["cells"] ** 2
  if idx.min() < 0 or idx.max() >= m:
    raise DataError(f"cell indices must be in [0, {m - 1}] for this canvas.")
  if not 0.0 <= float(jitter) <= 2.0:
    raise ValueError(f"jitter must be in [0, 2] (a fraction of the cell side), got {jitter}")
  n = _check_n(n)
  rng = _rng(seed)
  pick = idx[rng.integers(0, idx.size, size=n)]
  corner = grid["centres"][pick] - 0.5 * grid["size"]
  x = corner + grid["size"] * rng.random((n, 2))
  x = x + float(jitter) * grid["size"] * rng.standard_normal((n, 2))
  return x.astype(np.float32)


_POINT_SPLIT = str.maketrans({c: " " for c in ",;\t()[]"})


def parse_points(text: str, *, dim: int = 2) -> np.ndarray:
  """Points typed one per line, ``"x, y"`` (commas, semicolons, spaces or tabs between numbers;
  brackets ignored; blank lines and ``#`` comments skipped).

  Returns:
    float64 ``[k, dim]``.

  Raises:
    DataError: no point, or lines that are not ``dim`` numbers (the message names them).
  """
  pts, bad = [], []
  for lineno, line in enumerate(str(text or "").splitlines(), start=1):
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    fields = line.translate(_POINT_SPLIT).split()
    try:
      vals = [float(f) for f in fields]
    except ValueError:
      vals = []
    if len(vals) != dim or not all(math.isfinite(v) for v in vals):
      bad.append(lineno)
      continue
    pts.append(vals)
  if bad:
    shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    example = ", ".join(["1.5", "-0.25", "2"][:dim])
    raise DataError(f"line(s) {shown} are not {dim} numbers; write one point per line, "
                    f"e.g. \"{example}\".")
  if not pts:
    raise DataError("no points typed yet: write one point per line, e.g. \"1.5, -0.25\".")
  return np.asarray(pts, dtype=np.float64).reshape(-1, dim)


def sample_points(points, n: int, seed: int = 0, spread: float = 0.3) -> np.ndarray:
  """A data set from typed points: ``n`` draws of a typed point (each equally likely) plus
  Gaussian noise of std ``spread``; with ``spread = 0`` the points themselves (``n`` ignored).

  Returns:
    float32 ``[n, d]`` (``[k, d]`` when ``spread = 0``), validated as a data set.

  Raises:
    DataError: a data set that cannot be fitted (with ``spread = 0``: fewer than 10 points,
      all on one line parallel to an axis, ...).
  """
  pts = np.asarray(points, dtype=np.float64)
  if pts.ndim != 2 or pts.shape[0] == 0:
    raise DataError("no points given.")
  spread = float(spread)
  if not (math.isfinite(spread) and spread >= 0):
    raise ValueError(f"spread must be >= 0, got {spread}")
  if spread == 0:
    return as_dataset(pts, name="the typed points")
  n = _check_n(n)
  rng = _rng(seed)
  x = pts[rng.integers(0, pts.shape[0], size=n)] + spread * rng.standard_normal((n, pts.shape[1]))
  return as_dataset(x, name="the points drawn around the typed points")
