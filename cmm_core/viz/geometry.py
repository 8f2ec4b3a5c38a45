"""The one place for the geometry every view needs: point arrays, subsets, boxes, grid lines,
polylines and bucketed lengths. Pure numpy (no plotting).

>>> x = subsample(data, 2000, seed=0)                  # at most 2000 rows, seeded, order kept
>>> box = axis_ranges(x, samples, margin=0.08)         # [k, 2] robust (0.5-99.5 percentile) box
>>> box, equal = squared(box)                          # square when the two widths are comparable
>>> xs, ys = polylines(grid_lines(box, 11, 30))        # one NaN-broken polyline per trace
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAX_ASPECT",
    "as_points",
    "finite_rows",
    "subsample_index",
    "subsample",
    "axis_ranges",
    "union",
    "square",
    "comparable",
    "squared",
    "grid_lines",
    "polylines",
    "segments",
    "bucket",
    "pad_to_bucket",
]

# Above this ratio between the widths of the two shown coordinates, a view is not drawn with
# equal aspect (an uploaded table can mix columns on very different scales).
MAX_ASPECT = 4.0


def as_points(x, name: str = "data", dim: int | None = None) -> np.ndarray:
  """``x`` as float64 ``[n, d]`` (``[n]`` is read as ``[n, 1]``).

  Raises:
    ValueError: ``x`` is not ``[n]`` or ``[n, d]``, or ``d != dim`` when ``dim`` is given.
  """
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim == 1:
    arr = arr[:, None]
  if arr.ndim != 2:
    raise ValueError(f"{name} must have shape [n, d], got {arr.shape}")
  if dim is not None and arr.shape[1] != dim:
    raise ValueError(f"{name} must have shape [n, {dim}] (the model's dimension), got {arr.shape[1]} "
                     f"column(s): shape {arr.shape}")
  return arr


def finite_rows(x: np.ndarray) -> np.ndarray:
  """The rows of ``x`` ``[n, d]`` whose entries are all finite."""
  return x[np.all(np.isfinite(x), axis=1)]


def subsample_index(m: int, n: int, seed: int = 0) -> np.ndarray:
  """Indices of at most ``n`` of ``m`` rows, chosen without replacement (seeded), increasing."""
  if m <= n:
    return np.arange(m)
  return np.sort(np.random.default_rng(seed).choice(m, size=n, replace=False))


def subsample(x, n: int, seed: int = 0) -> np.ndarray:
  """At most ``n`` rows of ``x`` ``[m, ...]``, chosen without replacement (seeded); order kept."""
  x = np.asarray(x)
  if x.shape[0] <= n:
    return x
  return x[subsample_index(x.shape[0], n, seed)]


def axis_ranges(*points, lo: float = 0.5, hi: float = 99.5, margin: float = 0.1) -> np.ndarray:
  """A robust bounding box of one or more point clouds.

  Args:
    *points: arrays ``[n_i, k]`` (same ``k``; None entries are skipped); non-finite rows are
      ignored.
    lo, hi: percentiles that bound each coordinate (outliers do not blow up the axes).
    margin: padding added on each side, as a fraction of the width.

  Returns:
    ``[k, 2]`` array of ``(low, high)`` per coordinate, with ``high > low`` (a width below
    ``1e-3 (1 + |low| + |high|)`` is widened to it; ``[-1, 1]`` when there is no finite point).
  """
  clouds = [finite_rows(as_points(p, "points")) for p in points if p is not None]
  k = clouds[0].shape[1] if clouds else 1
  lows, highs = [], []
  for c in clouds:
    if c.shape[0] == 0:
      continue
    lows.append(np.percentile(c, lo, axis=0))
    highs.append(np.percentile(c, hi, axis=0))
  if not lows:
    return np.tile([-1.0, 1.0], (k, 1))
  low = np.min(lows, axis=0)
  high = np.max(highs, axis=0)
  width = high - low
  width = np.maximum(width, 1e-3 * (1.0 + np.abs(low) + np.abs(high)))
  center = 0.5 * (low + high)
  half = 0.5 * width * (1.0 + 2.0 * margin)
  return np.stack([center - half, center + half], axis=1)


def union(*ranges) -> np.ndarray:
  """The smallest box ``[k, 2]`` holding every box ``[k, 2]`` in ``ranges``."""
  stacked = np.stack([np.asarray(r, dtype=np.float64) for r in ranges])
  return np.stack([stacked[:, :, 0].min(axis=0), stacked[:, :, 1].max(axis=0)], axis=1)


def square(r) -> np.ndarray:
  """The square box ``[2, 2]`` with the centre of ``r`` and its larger width."""
  r = np.asarray(r, dtype=np.float64)
  center = r.mean(axis=1)
  half = 0.5 * float((r[:, 1] - r[:, 0]).max())
  return np.stack([center - half, center + half], axis=1)


def comparable(widths, max_aspect: float = MAX_ASPECT) -> bool:
  """Whether two axis widths are close enough (ratio at most ``max_aspect``) for equal aspect."""
  w = np.asarray(widths, dtype=np.float64)
  return bool(w.min() > 0 and w.max() <= max_aspect * w.min())


def squared(r, max_aspect: float = MAX_ASPECT) -> tuple[np.ndarray, bool]:
  """``(square(r), True)`` for a 2D box whose widths are :func:`comparable`, else ``(r, False)``."""
  r = np.asarray(r, dtype=np.float64)
  if r.shape[0] != 2 or not comparable(r[:, 1] - r[:, 0], max_aspect):
    return r, False
  return square(r), True


def grid_lines(box, n_lines: int, points: int) -> np.ndarray:
  """The lines of a regular grid over the box ``[2, 2]``: ``[2 n_lines, points, 2]``.

  The first ``n_lines`` lines have a fixed first coordinate (vertical), the others a fixed
  second coordinate (horizontal); each runs across the box in ``points`` points.
  """
  box = np.asarray(box, dtype=np.float64)
  t = np.linspace(0.0, 1.0, int(points))
  levels = np.linspace(0.0, 1.0, int(n_lines))
  lines = [np.stack([np.full_like(t, s), t], axis=1) for s in levels]
  lines += [np.stack([t, np.full_like(t, s)], axis=1) for s in levels]
  return box[:, 0] + np.stack(lines) * (box[:, 1] - box[:, 0])


def polylines(lines) -> tuple[np.ndarray, np.ndarray]:
  """Lines ``[L, P, 2]`` as one polyline broken by NaN: x and y, each ``[L (P + 1)]``."""
  lines = np.asarray(lines, dtype=np.float64)
  L, P, _ = lines.shape
  padded = np.full((L, P + 1, 2), np.nan)
  padded[:, :P] = lines
  flat = padded.reshape(-1, 2)
  return flat[:, 0], flat[:, 1]


def segments(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Segments ``start[i] -> end[i]`` (``[a, 2]`` each) as one polyline broken by NaN: ``[3a]`` x, y."""
  a = start.shape[0]
  xs = np.full(3 * a, np.nan)
  ys = np.full(3 * a, np.nan)
  xs[0::3], xs[1::3] = start[:, 0], end[:, 0]
  ys[0::3], ys[1::3] = start[:, 1], end[:, 1]
  return xs, ys


def bucket(n: int, size: int = 512) -> int:
  """``n`` rounded up to a multiple of ``size`` (at least ``size``): the few lengths a view asks a
  model for, since models may compile once per input shape."""
  return int(size * math.ceil(max(int(n), 1) / size))


def pad_to_bucket(x: np.ndarray, size: int = 512) -> np.ndarray:
  """``x`` ``[n, ...]`` padded with copies of its first row to :func:`bucket` ``(n)`` rows
  (unchanged when empty)."""
  n = x.shape[0]
  if not n:
    return x
  return np.concatenate([x, np.repeat(x[:1], bucket(n, size) - n, axis=0)])
