"""Arrays behind every panel of the app, computed from a fitted model and its data.

Everything here goes through the :class:`~cmm_core.models.base.FittedModel` protocol only
(``sample_base``, ``transport``, ``base_log_density``, ``history``, ``info``), so every model
gets the same panels. No plotting and no Streamlit: the figures are built by
:mod:`cmm_core.viz.figures` from the dicts returned here; the geometry (subsets, boxes, grid
lines) comes from :mod:`cmm_core.viz.geometry`.

>>> view = panel_data(fitted, data, n_samples=2000, seed=0)
>>> view["base"].shape, view["samples"].shape        # [n, k] with k = 1 or 2 shown coordinates
>>> view["base_density"].shape                       # [g] in 1D, [g, g] in 2D
>>> hist = history_arrays(fitted.history)            # {"step": [m], "loss": [m], ...}
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from cmm_core.viz import geometry
from cmm_core.viz.geometry import as_points, axis_ranges, finite_rows, subsample

__all__ = [
    "panel_data",
    "history_arrays",
    "fit_summary",
    "budget_note",
    "covariance_from_axes",
    "data_summary",
]

def _check_dims(dims: Optional[Sequence[int]], d: int) -> tuple[int, ...]:
  if d == 1:
    return (0,)
  if dims is None:
    dims = (0, 1)
  dims = tuple(int(i) for i in dims)
  if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= i < d for i in dims):
    raise ValueError(f"dims must be two different coordinates in [0, {d - 1}], got {dims}")
  return dims


def _normalised_density(log_p: np.ndarray, cell: float) -> np.ndarray:
  """exp(log_p) normalised so that its sum times ``cell`` is 1 (non-finite -> 0)."""
  log_p = np.where(np.isfinite(log_p), log_p, -np.inf)
  top = np.max(log_p) if np.any(np.isfinite(log_p)) else 0.0
  p = np.exp(log_p - top)
  total = p.sum() * cell
  return p / total if total > 0 else p


def _embed(points_k: np.ndarray, dims: tuple[int, ...], anchor: np.ndarray) -> np.ndarray:
  """Points in the shown coordinates ``[m, k]`` -> full points ``[m, d]`` (others at ``anchor``)."""
  full = np.tile(anchor.astype(np.float64), (points_k.shape[0], 1))
  full[:, list(dims)] = points_k
  return full


def _call(fn, x: np.ndarray) -> np.ndarray:
  """Applies a protocol method to float32 points and returns float64 with NaN for non-finite values."""
  out = np.asarray(fn(np.asarray(x, dtype=np.float32)), dtype=np.float64)
  return np.where(np.isfinite(out), out, np.nan)


def _call_padded(fn, x: np.ndarray) -> np.ndarray:
  """:func:`_call` on ``x`` padded to a bucketed length (:func:`geometry.pad_to_bucket`), trimmed."""
  return _call(fn, geometry.pad_to_bucket(x))[:x.shape[0]]


def panel_data(fitted, data, *, n_samples: int = 1000, seed: int = 0,
               grid_size: Optional[int] = None, dims: Optional[Sequence[int]] = (0, 1),
               n_arrows: int = 100, n_lines: int = 11, line_points: int = 30,
               labels: Optional[Sequence[str]] = None) -> dict:
  """Everything the three panels (base, map, samples) need, as numpy arrays.

  Model samples are the images of the base samples, ``transport(sample_base(n))``: that is what a
  factorization samples, and it keeps the arrows consistent with the samples panel.
  For ``d > 2`` the panels show the coordinates ``dims``; the base density and the grid are then
  drawn on the plane through the base mean (other coordinates fixed there), a slice.

  Args:
    fitted: a fitted model (the FittedModel protocol).
    data: the training data ``[n, d]`` (a subset of at most ``n_samples`` rows is shown).
    n_samples: number of base samples drawn (and data points shown).
    seed: seeds the base samples and the data subset.
    grid_size: grid points per axis for the base density (default 400 in 1D, 80 in 2D).
    dims: the two coordinates shown when ``d >= 2``; ignored in 1D.
    n_arrows: number of base samples with an arrow to their image (2D).
    n_lines: grid lines per direction in the warped grid (2D).
    line_points: points per grid line (2D).
    labels: names of the ``d`` coordinates (default ``x1, x2, ...``).

  Returns:
    A dict with

    - ``dim`` (d), ``dims`` (shown coordinates), ``view_dim`` (k = 1 or 2), ``labels`` ([k] str);
    - ``data`` ``[m, k]``, ``base`` ``[n', k]``, ``samples`` ``[n', k]`` (finite rows only) and
      ``n_nonfinite`` (base samples or images dropped because they were NaN/inf);
    - ``base_grid``: ``{"x": [g]}`` (1D) or ``{"x": [g], "y": [g]}`` (2D);
    - ``base_density``: the base density normalised numerically on the grid, ``[g]`` or ``[g, g]``
      (rows follow ``y``, columns ``x``); ``base_log_density`` the raw values, same shape;
    - ``map``: 1D ``{"x": [g], "y": [g]}`` (``y = T(x)``); 2D ``{"grid": [L, P, 2]`` lines of a regular
      grid over the base, ``"warped": [L, P, 2]`` their images, ``"arrow_from": [a, 2]``,
      ``"arrow_to": [a, 2]}``;
    - ``ranges``: ``{"base", "data", "map", "common"}``, each ``[k, 2]`` axis ranges (2D ones made
      square when ``equal_aspect``; in 1D ``map`` is ``[2, 2]``: x then ``T(x)``), and
      ``equal_aspect`` (bool);
    - ``slice_at``: ``[d]`` base mean used for the other coordinates (``None`` when ``d <= 2``).

  Raises:
    ValueError: the data does not match the model's dimension, or bad ``dims``.
  """
  data = as_points(data)
  d = int(fitted.info.get("dim", data.shape[1])) if getattr(fitted, "info", None) else data.shape[1]
  if data.shape[1] != d:
    raise ValueError(f"the data has {data.shape[1]} column(s) but the model was fitted in {d}D")
  dims = _check_dims(dims, d)
  k = len(dims)
  if labels is None:
    labels = [f"x{i + 1}" for i in range(d)]
  labels = [str(labels[i]) for i in dims]
  n_samples = int(max(10, n_samples))

  # One sample_base call, one transport call (base samples + map grid) and one density call:
  # models may compile per input shape, so sizes are rounded up to fixed buckets.
  n_draw = geometry.bucket(n_samples)
  base_all = as_points(fitted.sample_base(n_draw, seed))[:n_samples]
  shown = subsample(data, n_samples, seed)
  finite_base = finite_rows(base_all)
  anchor = finite_base.mean(axis=0) if finite_base.shape[0] else np.zeros(d)
  base_k = finite_base[:, dims]
  base_range = axis_ranges(base_k, margin=0.1)
  grid_range = axis_ranges(base_k, margin=0.25)

  if k == 1:
    map_x = np.linspace(base_range[0, 0], base_range[0, 1], 300)
    map_pts = _embed(map_x[:, None], dims, anchor)
  else:
    inner = axis_ranges(base_k, lo=1.0, hi=99.0, margin=0.0)
    grid = geometry.grid_lines(inner, n_lines, line_points)  # [L, P, 2]
    map_pts = _embed(grid.reshape(-1, 2), dims, anchor)
  base_safe = np.where(np.isfinite(base_all), base_all, anchor)
  images = _call_padded(fitted.transport, np.concatenate([base_safe, map_pts]))
  img_full, map_img = images[:n_samples], images[n_samples:]

  ok = np.all(np.isfinite(base_all), axis=1) & np.all(np.isfinite(img_full), axis=1)
  n_nonfinite = int(np.sum(~ok))
  base, samples, data_k = base_all[ok][:, dims], img_full[ok][:, dims], shown[:, dims]
  data_range = axis_ranges(data_k, samples, margin=0.08)
  common = geometry.union(base_range, data_range)

  # Base density on a grid covering the base samples.
  if k == 1:
    g = int(grid_size or 400)
    x = np.linspace(grid_range[0, 0], grid_range[0, 1], g)
    log_p = _call(fitted.base_log_density, _embed(x[:, None], dims, anchor)).reshape(g)
    base_grid = {"x": x}
    density = _normalised_density(log_p, x[1] - x[0])
  else:
    g = int(grid_size or 80)
    gx = np.linspace(grid_range[0, 0], grid_range[0, 1], g)
    gy = np.linspace(grid_range[1, 0], grid_range[1, 1], g)
    xx, yy = np.meshgrid(gx, gy)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    log_p = _call(fitted.base_log_density, _embed(pts, dims, anchor)).reshape(g, g)
    base_grid = {"x": gx, "y": gy}
    density = _normalised_density(log_p, (gx[1] - gx[0]) * (gy[1] - gy[0]))

  # The map.
  if k == 1:
    tx = map_img[:, dims[0]]
    map_arrays = {"x": map_x, "y": tx}
    map_range = np.stack([base_range[0], axis_ranges(tx[np.isfinite(tx)][:, None], margin=0.05)[0]])
  else:
    warped = map_img[:, list(dims)].reshape(grid.shape)
    a = min(n_arrows, base.shape[0])
    pick = geometry.subsample_index(base.shape[0], a, seed + 1)
    map_arrays = {"grid": grid, "warped": warped,
                  "arrow_from": base[pick], "arrow_to": samples[pick]}
    map_range = geometry.union(base_range, data_range)

  equal_aspect = False
  ranges = {"base": base_range, "data": data_range, "map": map_range, "common": common}
  if k == 2:
    squared = {name: geometry.squared(r) for name, r in ranges.items()}
    equal_aspect = all(eq for _, eq in squared.values())
    if equal_aspect:
      ranges = {name: r for name, (r, _) in squared.items()}

  return {
      "dim": d,
      "dims": dims,
      "view_dim": k,
      "labels": labels,
      "data": data_k,
      "base": base,
      "samples": samples,
      "n_nonfinite": n_nonfinite,
      "base_grid": base_grid,
      "base_density": density,
      "base_log_density": log_p,
      "map": map_arrays,
      "ranges": ranges,
      "equal_aspect": equal_aspect,
      "slice_at": anchor if d > 2 else None,
  }


def history_arrays(history: Sequence[dict]) -> dict:
  """Training history as arrays, one per metric.

  Args:
    history: records (dicts) with at least ``step``, ``loss``, ``seconds``.

  Returns:
    ``{name: [m] float array}`` for every key seen in any record (missing values are NaN); always
    has ``step``, ``loss`` and ``seconds`` (empty when the history is empty).
  """
  keys = ["step", "loss", "seconds"]
  for rec in history:
    for key, value in rec.items():
      if key not in keys and isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        keys.append(key)
  out = {}
  for key in keys:
    vals = []
    for rec in history:
      v = rec.get(key, math.nan)
      try:
        vals.append(float(v))
      except (TypeError, ValueError):
        vals.append(math.nan)
    out[key] = np.asarray(vals, dtype=np.float64)
  return out


def fit_summary(fitted) -> dict:
  """Facts for the metrics line: ``steps``, ``seconds``, ``status``, ``message``, ``final_loss``,
  ``warnings``, ``model``, and ``start_seconds`` / ``seconds_per_step`` (see :func:`_start_and_pace`).

  A fit captured during training (status ``"running"``) reports the last recorded step.
  """
  info = dict(getattr(fitted, "info", None) or {})
  hist = history_arrays(getattr(fitted, "history", None) or [])
  steps = info.get("steps_done")
  if steps is None:
    steps = int(hist["step"][-1]) if hist["step"].size else 0
  seconds = info.get("fit_seconds")
  if seconds is None:
    seconds = float(hist["seconds"][-1]) if hist["seconds"].size else 0.0
  return {
      "model": str(getattr(fitted, "model", "")),
      "steps": int(steps),
      "seconds": float(seconds),
      "status": str(info.get("status", "done")),
      "message": str(info.get("message", "") or ""),
      "final_loss": float(hist["loss"][-1]) if hist["loss"].size else math.nan,
      "warnings": [str(w) for w in info.get("warnings", []) or []],
      **_start_and_pace(hist),
  }


def budget_note(summary: dict) -> str:
  """The line under a fit that a time budget stopped: the message and how much of the budget went to
  compiling, e.g. "time budget of 8 s reached at step 10; about 7.1 s of it compiled the training
  step (the first chunk), then 9 ms per step"."""
  text = summary["message"] or "time budget reached"
  start, pace = summary.get("start_seconds"), summary.get("seconds_per_step")
  if start is None or pace is None:
    return text + "; all of it went to compiling and the first chunk of steps"
  return (f"{text}; about {start:.1f} s of it compiled the training step (the first chunk, once per "
          f"setting), then {1e3 * pace:.0f} ms per step")


def _start_and_pace(hist: dict) -> dict:
  """``start_seconds`` (the first chunk's time beyond its steps at the later pace: compilation and
  start-up) and ``seconds_per_step`` (the median pace of the later chunks), None with fewer than two
  chunks."""
  steps, seconds = hist["step"], hist["seconds"]
  if steps.size < 2:
    return {"start_seconds": None, "seconds_per_step": None}
  pace = float(np.median(np.diff(seconds) / np.maximum(np.diff(steps), 1)))
  return {"start_seconds": max(0.0, float(seconds[0] - steps[0] * pace)), "seconds_per_step": pace}


def covariance_from_axes(stds: Sequence[float], angle_degrees: float = 0.0) -> np.ndarray:
  """Covariance with principal standard deviations ``stds`` rotated by ``angle_degrees``.

  Args:
    stds: ``[d]`` standard deviations along the principal axes (d = 1 or 2).
    angle_degrees: rotation of the first axis from the x axis (2D only).

  Returns:
    ``[d, d]`` covariance ``R diag(stds^2) R^T``.
  """
  s = np.asarray(stds, dtype=np.float64).reshape(-1)
  if np.any(s <= 0) or not np.all(np.isfinite(s)):
    raise ValueError(f"standard deviations must be positive, got {s.tolist()}")
  if s.size == 1:
    return np.array([[s[0] ** 2]])
  if s.size != 2:
    raise ValueError(f"give 1 or 2 standard deviations, got {s.size}")
  a = math.radians(float(angle_degrees))
  rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  return rot @ np.diag(s ** 2) @ rot.T


def data_summary(data) -> dict:
  """``{"n", "d", "mean": [d], "std": [d]}`` of a data set ``[n, d]`` (for a caption)."""
  x = as_points(data)
  return {"n": int(x.shape[0]), "d": int(x.shape[1]),
          "mean": x.mean(axis=0) if x.shape[0] else np.full(x.shape[1], np.nan),
          "std": x.std(axis=0) if x.shape[0] else np.full(x.shape[1], np.nan)}
