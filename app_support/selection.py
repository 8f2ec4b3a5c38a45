"""Plotly selections (box, lasso, clicked points) on the Target page's drawing grid, as cells.

A UI concern: Streamlit's ``PlotlyState.selection`` is read here, and the library only sees the
cell indices (:func:`cmm_core.targets.sample_cells`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cells_from_selection"]


def _in_polygon(points: np.ndarray, xs, ys) -> np.ndarray:
  """Even-odd rule: which of ``points [m, 2]`` lie inside the polygon with vertices (xs, ys)."""
  xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
  px, py = points[:, 0:1], points[:, 1:2]
  x1, y1 = xs[None, :], ys[None, :]
  x2, y2 = np.roll(xs, -1)[None, :], np.roll(ys, -1)[None, :]
  crosses = (y1 > py) != (y2 > py)
  with np.errstate(divide="ignore", invalid="ignore"):
    x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
  return np.sum(crosses & (px < x_at), axis=1) % 2 == 1


def _as_number_list(v) -> list[float]:
  if v is None:
    return []
  v = v if isinstance(v, (list, tuple, np.ndarray)) else [v]
  out = []
  for a in v:
    try:
      out.append(float(a))
    except (TypeError, ValueError):
      return []
  return out


def cells_from_selection(selection, grid: dict) -> list[int]:
  """The cells a plotly box/lasso selection covers, sorted (a cell is in when its centre is).

  Args:
    selection: Streamlit's ``PlotlyState.selection`` (or any mapping) with any of ``"box"``
      (``[{"x": [x0, x1], "y": [y0, y1]}, ...]``), ``"lasso"`` (``[{"x": [...], "y": [...]}]``)
      and ``"points"`` (``[{"x", "y", ...}]``, snapped to the cell they fall in).
    grid: from :func:`cmm_core.targets.draw_grid`.

  Returns:
    Cell indices (see :func:`cmm_core.targets.draw_grid`); ``[]`` for an empty or unreadable selection.
  """
  if not selection:
    return []
  get = selection.get if hasattr(selection, "get") else (lambda k, d=None: d)
  centres = grid["centres"]
  inside = np.zeros(centres.shape[0], dtype=bool)
  for box in get("box", None) or []:
    xs, ys = _as_number_list(box.get("x")), _as_number_list(box.get("y"))
    if len(xs) >= 2 and len(ys) >= 2:
      inside |= ((centres[:, 0] >= min(xs)) & (centres[:, 0] <= max(xs))
                 & (centres[:, 1] >= min(ys)) & (centres[:, 1] <= max(ys)))
  for lasso in get("lasso", None) or []:
    xs, ys = _as_number_list(lasso.get("x")), _as_number_list(lasso.get("y"))
    if len(xs) >= 3 and len(xs) == len(ys):
      inside |= _in_polygon(centres, xs, ys)
  lo, size, cells = grid["lo"], grid["size"], grid["cells"]
  for p in get("points", None) or []:
    try:
      x, y = float(p.get("x")), float(p.get("y"))
    except (TypeError, ValueError, AttributeError):
      continue
    i, j = math.floor((x - lo) / size), math.floor((y - lo) / size)
    if 0 <= i < cells and 0 <= j < cells:
      inside[j * cells + i] = True
  return [int(k) for k in np.nonzero(inside)[0]]
