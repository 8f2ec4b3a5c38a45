"""Exact factorizations, no training: the arrays and figures behind the "exactly" pages.

Two families, both pure (numbers in, numpy arrays or plotly figures out; no Streamlit):

* Gaussians N(m, S) in 1D and 2D, in closed form (:mod:`cmm_core.closed_form`):

  - MM, rho = grad u # e^{-u}: base N(0, S^{-1}), map x -> S x; needs a centred target, so the
    mean is dropped (MM factorizes N(0, S));
  - CMM, rho = grad w* # e^{-w}: base N(a, S^{1/3}), map x -> a + S^{1/3} x,
    a = (I + S^{1/3})^{-1} m;
  - Brenier: base N(0, I), map x -> m + S^{1/2} x.

* Any 1D target by the grid fixed points :func:`cmm_core.closed_form.cmm_1d` and
  :func:`~cmm_core.closed_form.mm_1d` (MM on the centred target).

>>> panels = gaussian_panels_1d(0.0, 0.25)
>>> panels["methods"]["mm"]["base_std"], panels["methods"]["cmm"]["base_std"]   # 1/s, s^(1/3)
(4.0, 0.6299...)
>>> figs = gaussian_figures(panels)                  # {"mm": (base, map), "cmm": ..., "brenier": ...}
>>> ex = exact_1d("mixture", params={"std": 0.3})    # {"cmm": {...}, "mm": {...}, ...}
>>> figs = exact_1d_figures(ex)                      # {"cmm": (base, map, pushed), "mm": ...}
"""

from __future__ import annotations

import functools
import math
import time
from typing import Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from cmm_core import closed_form, targets
from cmm_core.viz import figures, geometry, registry
from cmm_core.viz.panels import covariance_from_axes

__all__ = [
    "KINDS",
    "KIND_NAMES",
    "LATEX",
    "gaussian_panels_1d",
    "gaussian_panels_2d",
    "gaussian_figures",
    "gaussian_numbers",
    "ellipse",
    "what_changed",
    "exact_1d",
    "exact_1d_figures",
    "model_base_1d",
    "quantile_error",
]

KINDS = ("mm", "cmm", "brenier")
KIND_NAMES = {"mm": ("MM", "moment measure"), "cmm": ("CMM", "conjugate moment measure"),
              "brenier": ("Brenier", "fixed noise N(0, I) + Brenier map")}
LATEX = {  # short lines, so that they fit a third of the page
    "mm": (r"\begin{gathered}\rho = \nabla u \,\#\, e^{-u},\quad u(x) = \tfrac12\, x^\top S x \\ "
           r"e^{-u} = N(0,\, S^{-1}),\quad \nabla u(x) = S x\end{gathered}"),
    "cmm": (r"\begin{gathered}\rho = \nabla w^{*} \,\#\, e^{-w},\quad e^{-w} = N(a,\, S^{1/3}) \\ "
            r"\nabla w^{*}(x) = a + S^{1/3} x \\ a = (I + S^{1/3})^{-1} m\end{gathered}"),
    "brenier": (r"\begin{gathered}\rho = T \,\#\, N(0, I) \\ "
                r"T(x) = m + S^{1/2} x\end{gathered}"),
}
_TARGET_DASH = {"color": figures.COLORS["data"], "dash": "dash", "width": 2}


# ----------------------------------------------------------------------------
# Input checks.
# ----------------------------------------------------------------------------


def _number(value, name: str) -> float:
  ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
      value, (bool, np.bool_))
  if not ok or not math.isfinite(float(value)):
    raise ValueError(f"{name} must be a finite number, got {value!r}")
  return float(value)


def _positive(value, name: str) -> float:
  v = _number(value, name)
  if v <= 0:
    raise ValueError(f"{name} must be positive, got {value!r}")
  return v


def _vector(value, d: int, name: str) -> np.ndarray:
  try:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be {d} number(s), got {value!r}") from None
  if arr.shape != (d,) or not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must be {d} finite number(s), got {value!r}")
  return arr


# ----------------------------------------------------------------------------
# Fast figures in the style of cmm_core.viz.figures.
# ----------------------------------------------------------------------------
#
# The pages redraw up to six figures per slider move. A figures builder costs ~60 ms per figure
# (mostly its layout template), so each kind of panel is built once by its builder (a
# "skeleton", cached) and every redraw copies the skeleton's styled traces and layout with new
# data, through go.Figure(..., _validate=False) (~2 ms). The look is exactly the builders'.


def _skeleton_figure(role: str, title: str, symbol: str, labels: tuple) -> go.Figure:
  """The figures builder for ``role`` on placeholder data."""
  t = np.linspace(-1.0, 1.0, 5)
  if role == "base1d":
    return figures.base_figure(np.zeros((0, 1)), (t,), np.ones(5), title=title, labels=labels,
                               axis_range=[[-1, 1]], show_samples=False)
  if role == "map1d":
    return figures.map_figure({"x": t, "y": t}, title=title, symbol=symbol, labels=labels,
                              x_range=(-1, 1), y_range=(-1, 1))
  if role == "samples1d":
    pts = t[:, None]
    return figures.samples_figure(pts, pts, title=title, labels=labels, axis_range=[[-1, 1]],
                                  show_data=False)
  pts = np.stack([t, t], axis=1)
  box = [[-1, 1], [-1, 1]]
  if role == "base2d":
    return figures.base_figure(pts, (t, t), None, title=title, labels=labels, axis_range=box,
                               equal_aspect=True, show_density=False)
  if role == "map2d":
    grid = np.stack([pts, pts])
    return figures.map_figure({"grid": grid, "warped": grid, "arrow_from": pts, "arrow_to": pts},
                              title=title, symbol=symbol, labels=labels, x_range=(-1, 1),
                              y_range=(-1, 1), equal_aspect=True)
  raise ValueError(f"unknown panel role {role!r}")


@functools.lru_cache(maxsize=64)
def _skeleton(role: str, title: str, symbol: str, labels: tuple) -> tuple[dict, tuple]:
  """The skeleton as a dict, and each trace's marker sizes as plain arrays (or None)."""
  fig = _skeleton_figure(role, title, symbol, labels)
  sizes = tuple(None if getattr(getattr(t, "marker", None), "size", None) is None
                else np.asarray(t.marker.size, dtype=np.float64) for t in fig.data)
  return fig.to_dict(), sizes


def _fill(role: str, title: str, symbol: str, labels: tuple, fills: dict, *, x_range=None,
          y_range=None, extra: Sequence[dict] = ()) -> go.Figure:
  """A copy of the ``role`` skeleton with new trace data and axis ranges.

  Args:
    fills: ``{trace name: {property: value}}`` for every trace of the skeleton; the value
      ``("tile", a)`` for ``marker`` repeats the skeleton's first three marker sizes ``a`` times
      (arrows).
    x_range, y_range: axis ranges.
    extra: more traces (plotly dicts) drawn on top.
  """
  skel, sizes = _skeleton(role, title, symbol, tuple(labels))
  traces = []
  for t, size in zip(skel["data"], sizes):
    name = t.get("name")
    if name not in fills:
      raise RuntimeError(f"cmm_core.viz.figures now draws a trace {name!r} in its {role} panel "
                         f"that cmm_core.viz.exact does not fill; update cmm_core.viz.exact")
    new = dict(t)
    for k, v in fills[name].items():
      if k == "marker" and isinstance(v, tuple) and v[0] == "tile":
        v = {**t["marker"], "size": np.tile(np.atleast_1d(size)[:3], v[1])}
      new[k] = v
    traces.append(new)
  layout = dict(skel["layout"])
  for axis, r in (("xaxis", x_range), ("yaxis", y_range)):
    if r is not None:
      layout[axis] = {**layout.get(axis, {}), "range": [float(r[0]), float(r[1])]}
  spec = {"data": traces + [dict(e) for e in extra], "layout": layout}
  try:
    return go.Figure(spec, _validate=False)
  except TypeError:  # a plotly without the private flag
    return go.Figure(spec)


def _map_1d(x, y, lab: dict, *, x_range, y_range, name: Optional[str] = None,
            extra: Sequence[dict] = ()) -> go.Figure:
  """figures.map_figure (1D) styling: the identity (dashed) and the curve ``y = T(x)``."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  fin = y[np.isfinite(y)]
  lo = min(x.min(), fin.min()) if fin.size else x.min()
  hi = max(x.max(), fin.max()) if fin.size else x.max()
  sym = lab["map_symbol"]
  curve = {"x": x, "y": y}
  if name:
    curve["name"] = name
  return _fill("map1d", lab["map"], sym, ("x",), {"identity": {"x": [lo, hi], "y": [lo, hi]},
                                                    sym: curve},
               x_range=x_range, y_range=y_range, extra=extra)


# ----------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------


def _closed_forms(mean: np.ndarray, cov: np.ndarray) -> dict:
  """``{kind: closed_form dict}`` plus the target each kind factorizes (MM: centred)."""
  out = {
      "mm": closed_form.gaussian_mm(cov),  # the centred target N(0, S)
      "cmm": closed_form.gaussian_cmm(mean, cov),
      "brenier": closed_form.gaussian_brenier(mean, cov),
  }
  for kind, p in out.items():
    p["target_mean"] = np.zeros_like(mean) if kind == "mm" else mean.copy()
    p["target_cov"] = cov
  return out


def _normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def gaussian_panels_1d(mean: float, std: float, *, n_grid: int = 400,
                       width: float = 3.5) -> dict:
  """MM, CMM and Brenier of N(mean, std^2), on one common axis range.

  Args:
    mean: the target mean m.
    std: the target standard deviation s > 0.
    n_grid: points of the common grid.
    width: the range covers every base and target to +- ``width`` standard deviations.

  Returns:
    ``{"dim": 1, "target": {"mean", "std"}, "range": [2], "x": [g], "methods": {kind: ...}}``
    with, per kind in ``KINDS``: ``base_mean``, ``base_std``, ``map_slope``, ``map_offset``
    (``T(x) = map_offset + map_slope x``), ``target_mean`` (0 for MM: centred), ``target_std``,
    ``base_density`` ``[g]``, ``target_density`` ``[g]``, ``map_y`` ``[g]`` (``T(x)``) and
    ``mass_x`` ``[2]`` (the base's +-2 std interval).

  Raises:
    ValueError: a non-finite mean or a non-positive std.
  """
  m = _number(mean, "mean")
  s = _positive(std, "std")
  forms = _closed_forms(np.array([m]), np.array([[s * s]]))
  methods = {}
  for kind, p in forms.items():
    methods[kind] = {
        "base_mean": float(p["base_mean"][0]), "base_std": math.sqrt(p["base_cov"][0, 0]),
        "map_slope": float(p["map_matrix"][0, 0]), "map_offset": float(p["map_offset"][0]),
        "target_mean": float(p["target_mean"][0]), "target_std": s,
    }
  ends = [(v[c] - width * v[sd], v[c] + width * v[sd])
          for v in methods.values() for c, sd in (("base_mean", "base_std"),
                                                   ("target_mean", "target_std"))]
  lo, hi = min(e[0] for e in ends), max(e[1] for e in ends)
  x = np.linspace(lo, hi, int(n_grid))
  for v in methods.values():
    v["base_density"] = _normal_pdf(x, v["base_mean"], v["base_std"])
    v["target_density"] = _normal_pdf(x, v["target_mean"], s)
    v["map_y"] = v["map_offset"] + v["map_slope"] * x
    v["mass_x"] = np.array([v["base_mean"] - 2 * v["base_std"], v["base_mean"] + 2 * v["base_std"]])
  return {"dim": 1, "target": {"mean": m, "std": s}, "range": np.array([lo, hi]), "x": x,
          "methods": methods}


def ellipse(mean, cov, k: float = 1.0, n: int = 100) -> np.ndarray:
  """The ``k``-sigma ellipse ``{mean + k C^{1/2} u : |u| = 1}`` of N(mean, cov), ``[n, 2]`` (closed)."""
  t = np.linspace(0.0, 2 * math.pi, int(n))
  circle = np.stack([np.cos(t), np.sin(t)], axis=1)
  return np.asarray(mean, np.float64) + k * circle @ closed_form.psd_power(cov, 0.5).T


def gaussian_panels_2d(stds: Sequence[float], angle: float, mean: Sequence[float], *,
                       n_samples: int = 150, seed: int = 0, n_lines: int = 9,
                       line_points: int = 25, n_arrows: int = 12) -> dict:
  """MM, CMM and Brenier of the 2D Gaussian with principal stds ``stds`` turned by ``angle``.

  Args:
    stds: ``[2]`` positive standard deviations along the target's principal axes.
    angle: rotation of the first axis from the x axis, in degrees.
    mean: ``[2]`` the target mean m.
    n_samples: base samples drawn per kind (the same standard normal draws for all three).
    seed: seeds the samples.
    n_lines, line_points: the base grid that the map warps (lines per direction, points per line).
    n_arrows: base samples with an arrow to their image.

  Returns:
    ``{"dim": 2, "target": {"mean" [2], "cov" [2, 2], "stds", "angle"}, "range": [2, 2]
    (square, common to every panel), "methods": {kind: ...}}`` with, per kind:
    ``base_mean`` [2], ``base_cov`` [2, 2], ``base_axes`` [2] (the 1-sigma semi-axes, the square
    roots of the eigenvalues of the base covariance, ascending), ``base_stds`` [2] (the base's
    stds along the target's axis 1 and axis 2, the directions of ``stds``), ``map_matrix`` [2, 2],
    ``map_offset`` [2], ``target_mean`` [2] (0 for MM), ``target_cov``, ``ellipses``
    ``{1: [P, 2], 2: [P, 2]}`` (base), ``target_ellipses`` (same), ``samples`` ``[n, 2]``,
    ``images`` ``[n, 2]`` (the samples pushed by the map), and ``map``: ``{"grid": [L, P, 2],
    "warped": [L, P, 2], "arrow_from": [a, 2], "arrow_to": [a, 2]}`` (see ``figures.map_figure``;
    the grid runs along the target's principal axes over +-2 base stds, so its image is the
    target's +-2 std box).

  Raises:
    ValueError: non-positive stds, a non-finite angle or mean.
  """
  s = _vector(stds, 2, "stds")
  if np.any(s <= 0):
    raise ValueError(f"stds must be positive, got {list(map(float, s))}")
  a_deg = _number(angle, "angle")
  m = _vector(mean, 2, "mean")
  cov = covariance_from_axes(s, a_deg)
  z = np.random.default_rng(seed).standard_normal((int(n_samples), 2))
  frame = np.linalg.eigh(cov)[1]
  rad = math.radians(a_deg)
  axes = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])  # columns
  methods, pts = {}, []
  for kind, p in _closed_forms(m, cov).items():
    bm, bc = p["base_mean"], p["base_cov"]
    samples = bm + z @ closed_form.psd_power(bc, 0.5).T
    # A grid along the target's axes (every base shares them), +-2 base stds on each.
    half = 2.0 * np.sqrt(np.maximum(np.diag(frame.T @ bc @ frame), 0.0))
    grid = bm + geometry.grid_lines(np.stack([-half, half], axis=1), n_lines,
                                    line_points) @ frame.T
    warped = grid @ p["map_matrix"].T + p["map_offset"]
    images = samples @ p["map_matrix"].T + p["map_offset"]
    v = {
        "base_mean": bm, "base_cov": bc,
        "base_axes": np.sqrt(np.maximum(np.linalg.eigvalsh(bc), 0.0)),
        "base_stds": np.sqrt(np.maximum(np.einsum("ij,ik,kj->j", axes, bc, axes), 0.0)),
        "map_matrix": p["map_matrix"], "map_offset": p["map_offset"],
        "target_mean": p["target_mean"], "target_cov": cov,
        "ellipses": {k: ellipse(bm, bc, k) for k in (1, 2)},
        "target_ellipses": {k: ellipse(p["target_mean"], cov, k) for k in (1, 2)},
        "samples": samples, "images": images,
        "map": {"grid": grid, "warped": warped, "arrow_from": samples[:n_arrows],
                "arrow_to": images[:n_arrows]},
    }
    methods[kind] = v
    pts += [v["ellipses"][2], v["target_ellipses"][2], warped.reshape(-1, 2)]
  rng = geometry.square(geometry.axis_ranges(*pts, lo=0.0, hi=100.0, margin=0.05))
  return {"dim": 2, "target": {"mean": m, "cov": cov, "stds": s, "angle": a_deg}, "range": rng,
          "methods": methods}


def _fmt(v: float) -> str:
  return f"{v:.3g}"


def _fmt_vec(v) -> str:
  v = np.atleast_1d(np.asarray(v, np.float64))
  return _fmt(v[0]) if v.size == 1 else "(" + ", ".join(_fmt(x) for x in v) + ")"


def gaussian_numbers(panels: dict, kind: str) -> str:
  """One line of Markdown with the base and the map of ``kind`` in numbers."""
  v = panels["methods"][kind]
  if panels["dim"] == 1:
    base = f"N({_fmt(v['base_mean'])}, {_fmt(v['base_std'])}²)"
    tmap = (f"{_fmt(v['map_offset'])} + " if v["map_offset"] else "") + f"{_fmt(v['map_slope'])} x"
    return f"base **{base}** (std {_fmt(v['base_std'])}) · map **T(x) = {tmap}**"
  b1, b2 = v["base_stds"]
  return (f"base mean **{_fmt_vec(v['base_mean'])}**, stds along the target's axes "
          f"**{_fmt(b1)}** and **{_fmt(b2)}** · map offset **{_fmt_vec(v['map_offset'])}**")


def _base_figure_1d(panels: dict, kind: str) -> go.Figure:
  v = panels["methods"][kind]
  lab = registry.labels_for(kind)
  x, rng = panels["x"], panels["range"]
  name = "centred target N(0, s²)" if kind == "mm" else "target ρ"
  target = {"type": "scatter", "x": x, "y": v["target_density"], "mode": "lines", "name": name,
            "line": _TARGET_DASH, "hoverinfo": "skip"}
  return _fill("base1d", lab["base"], "", ("x",), {"density": {
      "x": x, "y": v["base_density"],
      "name": f"base N({_fmt(v['base_mean'])}, {_fmt(v['base_std'])}²)"}},
      x_range=rng, extra=[target])


def _map_figure_1d(panels: dict, kind: str) -> go.Figure:
  v = panels["methods"][kind]
  lab = registry.labels_for(kind)
  rng = panels["range"]
  lo, hi = v["mass_x"]
  mass = {"type": "scatter", "x": [lo, hi],
          "y": [v["map_offset"] + v["map_slope"] * lo, v["map_offset"] + v["map_slope"] * hi],
          "mode": "lines", "name": "where the base has 95% of its mass",
          "line": {"color": figures.COLORS["base"], "width": 7}, "opacity": 0.5, "hoverinfo": "skip"}
  return _map_1d(panels["x"], v["map_y"], lab, x_range=rng, y_range=rng, extra=[mass])


def _ellipse_traces(v: dict, kind: str, base: bool) -> list:
  target = "centred target" if kind == "mm" else "target ρ"
  out = []
  for k in (1, 2):
    pts = v["target_ellipses"][k]
    out.append({"type": "scatter", "x": pts[:, 0], "y": pts[:, 1], "mode": "lines",
                "name": f"{target} (1σ, 2σ)", "line": {**_TARGET_DASH, "width": 1.5},
                "hoverinfo": "skip", "showlegend": k == 1, "legendgroup": "target"})
  if base:
    for k in (1, 2):
      pts = v["ellipses"][k]
      out.append({"type": "scatter", "x": pts[:, 0], "y": pts[:, 1], "mode": "lines",
                  "name": "base (1σ, 2σ)", "hoverinfo": "skip", "showlegend": k == 1,
                  "legendgroup": "base",
                  "line": {"color": figures.COLORS["density"], "width": 2.5 if k == 1 else 1.5}})
  return out


def _base_figure_2d(panels: dict, kind: str) -> go.Figure:
  v = panels["methods"][kind]
  lab = registry.labels_for(kind)
  rng = panels["range"]
  dots = v["samples"]
  return _fill("base2d", lab["base"], "", ("x1", "x2"),
               {"base samples": {"x": dots[:, 0], "y": dots[:, 1]}}, x_range=rng[0],
               y_range=rng[1], extra=_ellipse_traces(v, kind, base=True))


def _map_figure_2d(panels: dict, kind: str) -> go.Figure:
  v = panels["methods"][kind]
  lab = registry.labels_for(kind)
  rng = panels["range"]
  m = v["map"]
  gx, gy = geometry.polylines(m["grid"])
  wx, wy = geometry.polylines(m["warped"])
  start, end = np.asarray(m["arrow_from"]), np.asarray(m["arrow_to"])
  sx, sy = geometry.segments(start, end)
  fills = {"base grid": {"x": gx, "y": gy}, "warped grid": {"x": wx, "y": wy},
           "x → " + lab["map_symbol"]: {"x": sx, "y": sy, "marker": ("tile", start.shape[0])},
           "base point x": {"x": start[:, 0], "y": start[:, 1]}}
  return _fill("map2d", lab["map"], lab["map_symbol"], ("x1", "x2"), fills, x_range=rng[0],
               y_range=rng[1], extra=_ellipse_traces(v, kind, base=False))


def gaussian_figures(panels: dict) -> dict:
  """``{kind: (base_fig, map_fig)}`` for a :func:`gaussian_panels_1d` or ``_2d`` result.

  All panels share ``panels["range"]``, so widths compare at a glance. 1D: the base density with
  the target (dashed), and the map ``T(x)`` (thick where the base has 95% of its mass). 2D: base
  samples with the 1- and 2-sigma ellipses of the base and the target (dashed), and a grid along
  the target's axes warped by the map, with arrows from a few base samples to their images.
  """
  if panels["dim"] == 1:
    return {k: (_base_figure_1d(panels, k), _map_figure_1d(panels, k)) for k in KINDS}
  return {k: (_base_figure_2d(panels, k), _map_figure_2d(panels, k)) for k in KINDS}


# ----------------------------------------------------------------------------
# What changed.
# ----------------------------------------------------------------------------


def _as_gauss(p: Mapping, d: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, float]:
  """``(mean [d], stds [d], angle)`` from ``{"mean", "std" or "stds", "angle"}``."""
  if not isinstance(p, Mapping):
    raise ValueError(f"expected a dict with mean and std(s), got {p!r}")
  if "stds" in p:
    stds = np.atleast_1d(np.asarray(p["stds"], np.float64))
  elif "std" in p:
    stds = np.atleast_1d(np.asarray(p["std"], np.float64))
  else:
    raise ValueError(f"expected a 'std' (1D) or 'stds' (2D) entry, got keys {sorted(p)}")
  if stds.ndim != 1 or stds.size not in (1, 2) or not np.all(np.isfinite(stds)) or np.any(
      stds <= 0):
    raise ValueError(f"std(s) must be 1 or 2 positive numbers, got {stds.tolist()}")
  mean = _vector(p.get("mean", np.zeros(stds.size)), stds.size, "mean")
  angle = _number(p.get("angle", 0.0), "angle") if stds.size == 2 else 0.0
  if d is not None and stds.size != d:
    raise ValueError(f"cannot compare a {d}D target with a {stds.size}D one")
  return mean, stds, angle


def _factor(f: float) -> tuple[str, str]:
  """``(ratio text, "wider" | "narrower")`` for a width factor ``f``."""
  return (_fmt(f), "wider") if f >= 1 else (_fmt(1 / f), "narrower")


def _width_clause(fs: Sequence[float], verb: str, where: Sequence[str], unit: str) -> str:
  """The target's width factors ``fs`` (one per axis named in ``where``) and what the bases do."""
  def said(factors):
    return " and ".join("{}x {}".format(*_factor(f)) for f in factors)
  target = " and ".join(said([f]) + w for f, w in zip(fs, where))
  them = " along them" if len(fs) > 1 else (" along it" if where[0] else "")
  return (f"the target {verb} {target}: the MM base {verb} {said([1 / f for f in fs])}{them} "
          f"(1/s), the CMM base {said([f ** (1 / 3) for f in fs])} (s^(1/3)), and the Brenier "
          f"base stays {unit} (its map takes all of the change)")


def what_changed(old: Optional[Mapping], new: Mapping) -> str:
  """One line saying how the three bases respond when the target goes from ``old`` to ``new``.

  Args:
    old: ``{"mean": m, "std": s}`` (1D) or ``{"mean": [2], "stds": [2], "angle": deg}`` (2D);
      ``None`` compares ``new`` with the standard normal.
    new: the same, same dimension.

  Returns:
    E.g. "The target got 4x narrower: the MM base got 4x wider (1/s), the CMM base 1.59x
    narrower (s^(1/3)), and the Brenier base stays N(0, 1) (its map takes all of the change)."

  Raises:
    ValueError: malformed parameters or different dimensions.
  """
  m1, s1, a1 = _as_gauss(new)
  d = s1.size
  unit = "N(0, 1)" if d == 1 else "N(0, I)"
  if old is None:
    m0, s0, a0, verb, lead = np.zeros(d), np.ones(d), a1, "is", "Compared with the standard normal, "
  else:
    m0, s0, a0 = _as_gauss(old, d)
    verb, lead = "got", ""
  clauses = []
  f = s1 / s0
  if np.any(np.abs(f - 1) > 1e-9):
    if d == 1 or abs(f[0] - f[1]) <= 1e-9 * max(f):
      clauses.append(_width_clause([float(f[0])], verb, [""], unit))
    else:
      moved = [i for i in range(d) if abs(f[i] - 1) > 1e-9]
      clauses.append(_width_clause([float(f[i]) for i in moved], verb,
                                   [f" along axis {i + 1}" for i in moved], unit))
  if d == 2 and abs(a1 - a0) > 1e-9:
    if abs(s1[0] - s1[1]) <= 1e-9 * s1.max():
      clauses.append("the target is round, so turning it changes nothing")
    else:
      turned = "is turned" if old is None else "turned"
      clauses.append(f"the target {turned} by {_fmt(a1 - a0)}°: the MM and CMM bases turn with it "
                     f"(they share its axes); the Brenier base N(0, I) is round and stays put, "
                     f"its map S^(1/2) turns")
  if np.any(np.abs(m1 - m0) > 1e-12):
    cov1 = covariance_from_axes(s1, a1)
    a_new = closed_form.gaussian_cmm(m1, cov1)["base_mean"]
    a_old = closed_form.gaussian_cmm(m0, covariance_from_axes(s0, a0))["base_mean"]
    formula = "a = m / (1 + s^(2/3))" if d == 1 else "a = (I + S^(1/3))^(-1) m"
    where = "is at" if old is None else f"moved from {_fmt_vec(m0)} to"
    cmoved = "is at" if old is None else f"moved from {_fmt_vec(a_old)} to"
    clauses.append(f"the target mean {where} {_fmt_vec(m1)}: MM drops it (a moment measure needs a "
                   f"centred target, so its base does not move), the CMM base mean {cmoved} "
                   f"{_fmt_vec(a_new)} ({formula}), and the Brenier base stays {unit} "
                   f"(its map's offset is m)")
  if not clauses:
    if old is None:
      return (f"This target is the standard normal: all three bases are {unit} and all three "
              f"maps are the identity.")
    return "Nothing changed."
  text = lead + "; ".join(clauses) + "."
  return text[0].upper() + text[1:]


# ----------------------------------------------------------------------------
# 1D, any target: the grid fixed points.
# ----------------------------------------------------------------------------

_PROBS = (np.arange(400) + 0.5) / 400  # quantile levels used to compare bases


def _cumtrapz(x: np.ndarray, f: np.ndarray) -> np.ndarray:
  return np.concatenate([[0.0], np.cumsum(np.diff(x) * (f[1:] + f[:-1]) / 2)])


def _quantiles(x: np.ndarray, density: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """Quantiles of a density ``[g]`` on an increasing grid ``x`` ``[g]`` (normalised here)."""
  cdf = _cumtrapz(x, np.maximum(np.nan_to_num(density), 0.0))
  if not cdf[-1] > 0:
    raise ValueError("the density has no mass on the grid")
  cdf = cdf / cdf[-1]
  keep = np.concatenate([[True], np.diff(cdf) > 0])  # strictly increasing for interp
  return np.interp(probs, cdf[keep], x[keep])


def _as_samples(data) -> np.ndarray:
  arr = np.asarray(data, dtype=np.float64)
  if arr.ndim == 2 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 1:
    raise ValueError(f"1D samples must have shape [n] or [n, 1], got {arr.shape}; "
                     "the exact solvers work in 1D only")
  if arr.size < 10:
    raise ValueError(f"need at least 10 samples, got {arr.size}")
  if not np.all(np.isfinite(arr)):
    raise ValueError("the samples contain NaN or inf")
  if not np.ptp(arr) > 0:
    raise ValueError("the samples are all equal: a point mass has no factorization")
  return arr


def _resample(x: np.ndarray, y: np.ndarray, lo: float, hi: float, n: int) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
  xs = np.linspace(lo, hi, n)
  return xs, np.interp(xs, x, y, left=np.nan, right=np.nan)


def _side(r: closed_form.Grid1DResult, seconds: float, n_push: int, seed: int) -> dict:
  """The arrays of one solved fixed point (all plain numpy, so they pickle and cache)."""
  rng = np.random.default_rng(seed)
  u = (np.arange(n_push) + rng.random(n_push)) / n_push  # stratified uniforms
  rng.shuffle(u)
  z = r.base_quantile(u)
  pushed = np.interp(z, r.map_x, r.map_y)
  q = r.base_quantile(_PROBS)
  # Every target quantile, for the data range.
  tq = _quantiles(r.x, r.target_density, np.array([0.001, 0.5, 0.999]))
  return {
      "kind": r.kind, "base_mean": float(r.base_mean), "base_std": float(r.base_std),
      "grid_x": r.x, "grid_base": r.base_density, "grid_map": r.map_y,
      "grid_target": r.target_density, "probs": _PROBS.copy(), "base_quantiles": q,
      "base_samples": z, "pushed": pushed, "iterations": int(r.iterations),
      "converged": bool(r.converged), "residual": float(r.residual), "seconds": float(seconds),
      "shift": float(r.shift), "target_quantiles": tq,
  }


def _view(side: dict, base_range, data_range, n_view: int) -> None:
  """Adds the display arrays (``x``, ``base_density``, ``map_x``, ``map_y``, ``target_x``,
  ``target_density``, each ``[n_view]``) resampled on the common ranges."""
  side["x"], side["base_density"] = _resample(side["grid_x"], side["grid_base"], *base_range,
                                              n_view)
  side["map_x"], side["map_y"] = side["x"], np.interp(side["x"], side["grid_x"], side["grid_map"])
  side["target_x"], side["target_density"] = _resample(side["grid_x"], side["grid_target"],
                                                       *data_range, n_view)
  side["base_density"] = np.nan_to_num(side["base_density"])
  side["target_density"] = np.nan_to_num(side["target_density"])


def exact_1d(target, *, params: Optional[Mapping] = None, label: Optional[str] = None,
             n_push: int = 10_000, seed: int = 0, n_view: int = 600, tol: float = 1e-8,
             max_iter: int = 300) -> dict:
  """The exact 1D CMM and MM of a target, by the grid fixed points (no training).

  Args:
    target: the name of a built-in 1D target (:func:`cmm_core.targets.names` with ``dim=1``;
      its analytic density is used), or samples ``[n]`` / ``[n, 1]`` (replaced by their
      Gaussian kernel density estimate, Silverman bandwidth).
    params: the built-in target's parameters (defaults for the missing ones).
    label: a name for the target (default: the target's name, or "samples").
    n_push: base samples drawn (stratified inverse-CDF) and pushed through each map.
    seed: seeds those samples.
    n_view: points of the display arrays.
    tol, max_iter: passed to the grid solvers.

  Returns:
    ``{"label", "source": "analytic" | "samples", "n_data", "bandwidth", "shift" (the mean
    subtracted for MM), "target_mean", "target_std", "ranges": {"base": [2], "data": [2]},
    "cmm": side, "mm": side}``; each side has ``base_mean``, ``base_std``, ``x`` / ``base_density``
    (the base on the common base range), ``map_x`` / ``map_y`` (the map ``T``), ``target_x`` /
    ``target_density`` (CMM: the target; MM: the centred target), ``base_samples`` and
    ``pushed`` ``[n_push]`` (``T`` of them), ``probs`` / ``base_quantiles`` (for
    :func:`quantile_error`), ``iterations``, ``converged``, ``residual``, ``seconds`` and the
    solver's full grids ``grid_x``, ``grid_base``, ``grid_map``, ``grid_target``.

  Raises:
    ValueError: an unknown or 2D target name, bad parameters, or bad samples.
  """
  params = dict(params or {})
  if isinstance(target, str):
    info = targets.info(target)  # ValueError for an unknown name
    if info["dim"] != 1:
      raise ValueError(f"{target!r} is a {info['dim']}D target; the exact solvers work in 1D: "
                       f"{', '.join(targets.names(1))}")
    targets.log_density_1d(target, np.zeros(1), **params)  # checks the parameters

    def src(x):
      return targets.log_density_1d(target, x, **params)

    kw = {"log_density": True}
    source, n_data = "analytic", None
    label = label or target
  else:
    if params:
      raise ValueError("params are for a built-in target name, not for samples")
    src = _as_samples(target)
    kw = {}
    source, n_data = "samples", int(src.size)
    label = label or f"samples (n={n_data})"
  n_push = int(n_push)
  if n_push < 10:
    raise ValueError(f"n_push must be at least 10, got {n_push}")
  sides = {}
  for kind in ("cmm", "mm"):
    t0 = time.perf_counter()
    if kind == "cmm":
      r = closed_form.cmm_1d(src, tol=tol, max_iter=max_iter, **kw)
    else:
      r = closed_form.mm_1d(src, center=True, tol=tol, max_iter=max_iter, **kw)
    sides[kind] = _side(r, time.perf_counter() - t0, n_push, seed)
  cmm = sides["cmm"]
  tmean = _cumtrapz(cmm["grid_x"], cmm["grid_x"] * cmm["grid_target"])[-1] / _cumtrapz(
      cmm["grid_x"], cmm["grid_target"])[-1]
  tvar = _cumtrapz(cmm["grid_x"], (cmm["grid_x"] - tmean) ** 2 * cmm["grid_target"])[-1] / (
      _cumtrapz(cmm["grid_x"], cmm["grid_target"])[-1])
  # Common ranges: both bases (0.1% .. 99.9%), both targets (the MM one centred).
  b = np.concatenate([s["base_quantiles"][[0, -1]] for s in sides.values()])
  t = np.concatenate([s["target_quantiles"][[0, -1]] for s in sides.values()])
  lo_b = min(b.min(), min(s["base_mean"] - 3.5 * s["base_std"] for s in sides.values()))
  hi_b = max(b.max(), max(s["base_mean"] + 3.5 * s["base_std"] for s in sides.values()))
  pad_b, pad_t = 0.05 * (hi_b - lo_b), 0.1 * (t.max() - t.min())
  base_range = np.array([lo_b - pad_b, hi_b + pad_b])
  data_range = np.array([t.min() - pad_t, t.max() + pad_t])
  for s in sides.values():
    _view(s, base_range, data_range, int(n_view))
  bw = None
  if source == "samples":
    bw = closed_form.silverman_bandwidth(src)
  return {"label": label, "source": source, "n_data": n_data, "bandwidth": bw,
          "shift": sides["mm"]["shift"], "target_mean": float(tmean),
          "target_std": float(math.sqrt(max(tvar, 0.0))),
          "ranges": {"base": base_range, "data": data_range}, **sides}


def quantile_error(exact_side: dict, x, density, *, center: bool = False) -> float:
  """Mean absolute difference between the quantiles of a base and the exact base, in units of
  the exact base's std.

  Args:
    exact_side: ``exact_1d(...)["cmm"]`` or ``["mm"]``.
    x: ``[g]`` an increasing grid holding the other base's mass.
    density: ``[g]`` its density on the grid (normalised here).
    center: compare after centring both (MM is unique only up to a translation).

  Returns:
    ``mean_q |Q(q) - Q_exact(q)| / std_exact`` over 400 levels q in (0, 1).
  """
  x = np.asarray(x, np.float64)
  density = np.asarray(density, np.float64)
  if x.ndim != 1 or density.shape != x.shape or x.size < 2 or not np.all(np.diff(x) > 0):
    raise ValueError(f"x must be an increasing grid [g] and density [g], got {x.shape} and "
                     f"{density.shape}")
  q = _quantiles(x, density, exact_side["probs"])
  qe = np.asarray(exact_side["base_quantiles"], np.float64)
  if center:
    q, qe = q - q.mean(), qe - qe.mean()
  return float(np.mean(np.abs(q - qe)) / exact_side["base_std"])


def model_base_1d(fitted, exact_side: dict, *, n_samples: int = 2048, seed: int = 0,
                  n_grid: int = 1024) -> dict:
  """A fitted 1D model's base next to the exact one (through the FittedModel protocol only).

  Args:
    fitted: a fitted model with ``dim == 1`` (``sample_base``, ``base_log_density``).
    exact_side: the exact side of the same kind (``exact_1d(...)["cmm"]`` for a ``cmm`` fit).
    n_samples: base samples drawn (``n_samples = 0``: none).
    seed: seeds them.
    n_grid: points of the grid on which ``base_log_density`` is evaluated.

  Returns:
    ``{"x": [g], "density": [g] (exp(base_log_density), normalised on the grid), "samples": [n],
    "quantile_error": float (see :func:`quantile_error`, centred for MM), "centred": bool,
    "mean": float, "std": float}``.

  Raises:
    ValueError: the model is not 1D.
  """
  dim = int(getattr(fitted, "dim", fitted.info.get("dim", 0)))
  if dim != 1:
    raise ValueError(f"the model is {dim}D; the exact 1D bases compare with 1D models only")
  samples = np.zeros(0)
  if n_samples:
    samples = np.asarray(fitted.sample_base(int(n_samples), seed), np.float64).reshape(-1)
    samples = samples[np.isfinite(samples)]
  m, s = exact_side["base_mean"], exact_side["base_std"]
  lo, hi = m - 10 * s, m + 10 * s
  if samples.size:
    lo = min(lo, float(np.min(samples)) - 2 * s)
    hi = max(hi, float(np.max(samples)) + 2 * s)
  x = np.linspace(lo, hi, int(n_grid))
  logp = np.asarray(fitted.base_log_density(x[:, None].astype(np.float32)), np.float64).reshape(-1)
  logp = np.where(np.isfinite(logp), logp, -np.inf)
  if not np.any(np.isfinite(logp)):
    raise ValueError("the model's base log-density is not finite anywhere on the grid")
  dens = np.exp(logp - logp.max())
  dens /= _cumtrapz(x, dens)[-1]
  centred = getattr(fitted, "model", "") == "mm"
  mean = float(_cumtrapz(x, x * dens)[-1])
  std = float(math.sqrt(max(_cumtrapz(x, (x - mean) ** 2 * dens)[-1], 0.0)))
  return {"x": x, "density": dens, "samples": samples, "mean": mean, "std": std,
          "quantile_error": quantile_error(exact_side, x, dens, center=centred),
          "centred": centred}


def _base_figure_exact(side: dict, ex: dict, title: str, model: Optional[dict] = None,
                       model_name: str = "trained model") -> go.Figure:
  rng = ex["ranges"]["base"]
  extra = []
  if model is not None:
    shift = 0.0
    if model["centred"]:  # MM is unique up to translation: draw the model's base centred
      shift = side["base_mean"] - model["mean"]
    if model["samples"].size:
      extra.append({"type": "histogram", "x": model["samples"] + shift,
                    "histnorm": "probability density", "name": f"{model_name}: base samples",
                    "xbins": figures.bins(rng), "marker": {"color": figures.COLORS["samples"]},
                    "opacity": 0.4})
    extra.append({"type": "scatter", "x": model["x"] + shift, "y": model["density"],
                  "mode": "lines", "name": f"{model_name}: base density",
                  "line": {"color": figures.COLORS["samples"], "width": 2.5, "dash": "dot"}})
  fig = _fill("base1d", title, "", ("x",), {"density": {
      "x": side["x"], "y": side["base_density"], "name": "exact base (grid fixed point)"}},
      x_range=rng, extra=extra)
  if model is not None:
    fig.update_layout(barmode="overlay")
  return fig


def exact_1d_figures(ex: dict, *, model: Optional[dict] = None,
                     model_kind: Optional[str] = None) -> dict:
  """``{"cmm": (base, map, pushed), "mm": (...)}`` figures for an :func:`exact_1d` result.

  The base panels share one x range, the pushed panels another, so the two factorizations
  compare at a glance. ``model`` (a :func:`model_base_1d` dict) is overlaid on the base panel
  of ``model_kind``.
  """
  out = {}
  for kind in ("cmm", "mm"):
    side = ex[kind]
    lab = registry.labels_for(kind)
    title = lab["base"] + (" (centred target)" if kind == "mm" else "")
    over = model if model is not None and model_kind == kind else None
    fig_base = _base_figure_exact(side, ex, title, over)
    fig_map = _map_1d(side["map_x"], side["map_y"], lab, x_range=ex["ranges"]["base"],
                      y_range=ex["ranges"]["data"], name="T(x) (grid fixed point)")
    tname = "centred target ρ(· + m)" if kind == "mm" else "target ρ"
    if ex["source"] == "samples":
      tname += " (KDE)"
    target = {"type": "scatter", "x": side["target_x"], "y": side["target_density"],
              "mode": "lines", "name": tname, "line": {**_TARGET_DASH, "dash": "solid"}}
    rng = ex["ranges"]["data"]
    fig_push = _fill("samples1d", "pushed base samples vs target", "", ("y",), {
        "model samples": {"x": side["pushed"], "xbins": figures.bins(rng),
                          "name": f"T(base samples), n={side['pushed'].size}"}},
        x_range=rng, extra=[target])
    out[kind] = (fig_base, fig_map, fig_push)
  return out
