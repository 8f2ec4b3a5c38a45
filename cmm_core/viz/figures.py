"""Plotly figure builders: arrays in, ``go.Figure`` out (pure; no Streamlit).

One palette and one layout for every panel, so that the base, the map and the samples read as a
story: base points are teal, data points grey, model samples orange, the map purple.
:func:`panel_figures` turns a :func:`cmm_core.viz.panels.panel_data` dict into the three panels;
the titles per model come from :mod:`cmm_core.viz.registry`. :func:`layout`, :func:`scatter`,
:func:`bins` and :data:`COLORS` are the shared style of every other view module.

>>> view = panels.panel_data(fitted, data)
>>> fig_base, fig_map, fig_samples = panel_figures(view, model="cmm")
>>> fig_loss = loss_figure(panels.history_arrays(fitted.history))
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from cmm_core.viz.geometry import as_points, comparable, polylines, segments, subsample
from cmm_core.viz.registry import labels_for

__all__ = [
    "COLORS",
    "HEIGHT",
    "layout",
    "scatter",
    "bins",
    "base_figure",
    "map_figure",
    "samples_figure",
    "loss_figure",
    "target_preview",
    "panel_figures",
    "squeezed_panels",
    "draw_canvas",
]

COLORS = {
    "base": "#159a8c",      # teal: the base / latent distribution
    "density": "#0b5d55",
    "data": "#7f7f7f",      # grey: the target data
    "samples": "#f28e2b",   # orange: model samples
    "map": "#7b4fb8",       # purple: the transport map
    "grid": "#a8a8a8",
    "loss": "#3465a4",
}
_DENSITY_SCALE = [[0.0, "rgba(255,255,255,0)"], [0.08, "#dff3ef"], [0.4, "#8fd3c7"],
                  [1.0, "#0b5d55"]]
HEIGHT = 400  # pixels of a panel, legend excluded


def layout(fig: go.Figure, title: str, xlabel: str, ylabel: str, *,
           x_range=None, y_range=None, equal_aspect: bool = False,
           height: int = HEIGHT, legend: bool = True) -> go.Figure:
  """The layout every panel shares (title, white template, legend below, axis titles and ranges);
  modifies ``fig`` and returns it. ``equal_aspect``: the same scale on both axes."""
  if legend:
    height += 35  # room for the legend below the plot
  fig.update_layout(
      title={"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 16}},
      template="plotly_white",
      height=height,
      margin={"l": 50, "r": 15, "t": 45, "b": 85 if legend else 45},
      showlegend=legend,
      # below the axis title, so that titles and legends never overlap in narrow columns
      legend={"orientation": "h", "yanchor": "top", "y": -0.17, "xanchor": "center", "x": 0.5,
              "font": {"size": 11}},
      hovermode="closest",
      bargap=0.02,
  )
  fig.update_xaxes(title_text=xlabel, zeroline=False)
  fig.update_yaxes(title_text=ylabel, zeroline=False)
  if x_range is not None:
    fig.update_xaxes(range=[float(x_range[0]), float(x_range[1])])
  if y_range is not None:
    fig.update_yaxes(range=[float(y_range[0]), float(y_range[1])])
  if equal_aspect:
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
  return fig


def _layout_2d(fig: go.Figure, title: str, labels: Sequence[str], axis_range,
               equal_aspect: bool) -> go.Figure:
  """:func:`layout` of a 2D panel on ``axis_range`` ``[2, 2]`` (or automatic ranges when None)."""
  rx, ry = (None, None) if axis_range is None else (axis_range[0], axis_range[1])
  return layout(fig, title, labels[0], labels[1], x_range=rx, y_range=ry,
                equal_aspect=equal_aspect)


def scatter(points: np.ndarray, name: str, color: str, *, size: float = 4,
            opacity: float = 0.5) -> go.Scatter:
  """A marker trace of ``points`` ``[n, 2]`` with a coordinates hover."""
  return go.Scatter(x=points[:, 0], y=points[:, 1], mode="markers", name=name,
                    marker={"color": color, "size": size, "opacity": opacity, "line": {"width": 0}},
                    hovertemplate="(%{x:.3g}, %{y:.3g})<extra>" + name + "</extra>")


def bins(x_range, n: int = 60) -> dict:
  """Histogram bins: ``n`` equal bins over ``x_range`` ``(low, high)`` (plotly's ``xbins``)."""
  lo, hi = float(x_range[0]), float(x_range[1])
  return {"start": lo, "end": hi, "size": (hi - lo) / n}


def base_figure(base, grid: Sequence[np.ndarray], density, *, title: str = "base e<sup>−w</sup>",
                labels: Sequence[str] = ("x1", "x2"), axis_range=None, equal_aspect: bool = False,
                show_samples: bool = True, show_density: bool = True,
                max_points: int = 400) -> go.Figure:
  """The base (latent) distribution: its samples and its density.

  Args:
    base: base samples ``[n, k]`` (k = 1 or 2; ``[n]`` is read as 1D).
    grid: ``(x,)`` with ``x`` ``[g]`` in 1D, ``(x, y)`` with ``[gx]``, ``[gy]`` in 2D.
    density: the normalised density on the grid, ``[g]`` (1D) or ``[gy, gx]`` (2D).
    title: panel title (plotly HTML allowed).
    labels: coordinate names.
    axis_range: ``[k, 2]`` axis ranges, or None for automatic.
    equal_aspect: same scale on both axes (2D).
    show_samples, show_density: layers.
    max_points: at most this many samples are drawn as dots in 2D (so the density shows).

  Returns:
    1D: a histogram (probability density) of the samples and the density curve.
    2D: a density heatmap with the samples on top.
  """
  base = as_points(base)
  k = base.shape[1]
  fig = go.Figure()
  if k == 1:
    x = np.asarray(grid[0], dtype=np.float64)
    rng = axis_range[0] if axis_range is not None else (x.min(), x.max())
    if show_samples:
      fig.add_trace(go.Histogram(x=base[:, 0], histnorm="probability density", name="base samples",
                                 xbins=bins(rng), marker={"color": COLORS["base"]}, opacity=0.45,
                                 hovertemplate="x %{x}<br>density %{y:.3g}<extra></extra>"))
    if show_density:
      fig.add_trace(go.Scatter(x=x, y=np.asarray(density, dtype=np.float64), mode="lines",
                               name="density", line={"color": COLORS["density"], "width": 2.5},
                               hovertemplate="x %{x:.3g}<br>density %{y:.3g}<extra></extra>"))
    return layout(fig, title, labels[0], "density", x_range=rng)
  gx, gy = (np.asarray(a, dtype=np.float64) for a in grid)
  if show_density:
    fig.add_trace(go.Heatmap(x=gx, y=gy, z=np.asarray(density, dtype=np.float64), name="density",
                             colorscale=_DENSITY_SCALE, showscale=False, zsmooth="best",
                             hovertemplate="(%{x:.3g}, %{y:.3g})<br>density %{z:.3g}<extra></extra>"))
  if show_samples:
    dots = base[:max_points]
    fig.add_trace(go.Scatter(
        x=dots[:, 0], y=dots[:, 1], mode="markers", name="base samples",
        marker={"color": COLORS["base"], "size": 4, "opacity": 0.75,
                "line": {"width": 0.5, "color": "white"}},
        hovertemplate="(%{x:.3g}, %{y:.3g})<extra>base sample</extra>"))
  return _layout_2d(fig, title, labels, axis_range, equal_aspect)


def map_figure(m: dict, *, title: str = "transport map ∇w*", symbol: str = "∇w*(x)",
               labels: Sequence[str] = ("x1", "x2"), x_range=None, y_range=None,
               equal_aspect: bool = False, show_grid: bool = True, show_warped: bool = True,
               show_arrows: bool = True) -> go.Figure:
  """The transport map from base space to data space.

  Args:
    m: 1D ``{"x": [g], "y": [g]}`` with ``y = T(x)``; 2D ``{"grid": [L, P, 2], "warped": [L, P, 2],
      "arrow_from": [a, 2], "arrow_to": [a, 2]}`` (the ``map`` entry of ``panels.panel_data``).
    title: panel title; ``symbol`` names the map in labels, e.g. ``"∇w*(x)"``.
    labels: coordinate names.
    x_range, y_range: axis ranges ``(low, high)`` or None.
    equal_aspect: same scale on both axes.
    show_grid, show_warped, show_arrows: 2D layers (regular base grid, its image, arrows).

  Returns:
    1D: the curve ``T(x)`` and the identity (dashed). 2D: the warped grid and arrows base -> image.
  """
  fig = go.Figure()
  if "x" in m:
    x = np.asarray(m["x"], dtype=np.float64)
    y = np.asarray(m["y"], dtype=np.float64)
    lo = np.nanmin([x.min(), np.nanmin(y) if np.any(np.isfinite(y)) else x.min()])
    hi = np.nanmax([x.max(), np.nanmax(y) if np.any(np.isfinite(y)) else x.max()])
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="identity",
                             line={"color": COLORS["grid"], "dash": "dash", "width": 1.5},
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=symbol,
                             line={"color": COLORS["map"], "width": 3},
                             hovertemplate="x %{x:.3g}<br>" + symbol + " %{y:.3g}<extra></extra>"))
    return layout(fig, title, f"base point x ({labels[0]})", f"{symbol}  (data space)",
                  x_range=x_range, y_range=y_range)
  if show_grid:
    gx, gy = polylines(m["grid"])
    fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name="base grid",
                             line={"color": COLORS["grid"], "width": 1}, hoverinfo="skip",
                             connectgaps=False))
  if show_warped:
    wx, wy = polylines(m["warped"])
    fig.add_trace(go.Scatter(x=wx, y=wy, mode="lines", name="warped grid",
                             line={"color": COLORS["map"], "width": 1.2}, opacity=0.75,
                             hoverinfo="skip", connectgaps=False))
  if show_arrows:
    start = as_points(m["arrow_from"])
    end = as_points(m["arrow_to"])
    if start.shape[0]:
      sx, sy = segments(start, end)
      sizes = np.tile([0.0, 9.0, 0.0], start.shape[0])
      fig.add_trace(go.Scatter(
          x=sx, y=sy, mode="lines+markers", name="x → " + symbol,
          line={"color": "rgba(60,60,60,0.45)", "width": 1},
          marker={"symbol": "arrow", "angleref": "previous", "size": sizes,
                  "color": COLORS["samples"], "line": {"width": 0}},
          hoverinfo="skip", connectgaps=False))
      fig.add_trace(scatter(start, "base point x", COLORS["base"], size=4, opacity=0.9))
  return layout(fig, title, labels[0], labels[1], x_range=x_range, y_range=y_range,
                equal_aspect=equal_aspect)


def samples_figure(data, samples, *, title: str = "samples vs data",
                   labels: Sequence[str] = ("x1", "x2"), axis_range=None,
                   equal_aspect: bool = False, show_data: bool = True,
                   show_samples: bool = True) -> go.Figure:
  """Model samples over the data, on the same axes.

  Args:
    data: data points ``[m, k]`` (k = 1 or 2).
    samples: model samples ``[n, k]``.
    title: panel title.
    labels: coordinate names.
    axis_range: ``[k, 2]`` axis ranges or None.
    equal_aspect: same scale on both axes (2D).
    show_data, show_samples: layers.

  Returns:
    1D: two overlaid histograms with the same bins; 2D: two scatters.
  """
  data, samples = as_points(data), as_points(samples)
  fig = go.Figure()
  if data.shape[1] == 1:
    if axis_range is not None:
      rng = axis_range[0]
    else:
      both = np.concatenate([data[:, 0], samples[:, 0]])
      both = both[np.isfinite(both)]
      rng = (both.min(), both.max()) if both.size else (-1.0, 1.0)
    if show_data:
      fig.add_trace(go.Histogram(x=data[:, 0], histnorm="probability density", name="data",
                                 xbins=bins(rng), marker={"color": COLORS["data"]}, opacity=0.55,
                                 hovertemplate="x %{x}<br>density %{y:.3g}<extra>data</extra>"))
    if show_samples:
      fig.add_trace(go.Histogram(x=samples[:, 0], histnorm="probability density",
                                 name="model samples", xbins=bins(rng),
                                 marker={"color": COLORS["samples"]}, opacity=0.55,
                                 hovertemplate="x %{x}<br>density %{y:.3g}<extra>samples</extra>"))
    fig.update_layout(barmode="overlay")
    return layout(fig, title, labels[0], "density", x_range=rng)
  if show_data:
    fig.add_trace(scatter(data, "data", COLORS["data"], size=3.5, opacity=0.45))
  if show_samples:
    fig.add_trace(scatter(samples, "model samples", COLORS["samples"], size=3.5, opacity=0.55))
  return _layout_2d(fig, title, labels, axis_range, equal_aspect)


def loss_figure(history: dict, *, title: str = "training loss", metric: str = "loss",
                height: int = 300, total_steps: Optional[int] = None) -> go.Figure:
  """Loss against training step, with hover.

  Args:
    history: ``{"step": [m], "loss": [m], "seconds": [m], ...}`` (see ``panels.history_arrays``).
    title: figure title.
    metric: which series to plot on the y axis.
    height: figure height in pixels.
    total_steps: fixes the x axis to ``[0, total_steps]`` (a live curve then grows to the right).
  """
  steps = np.asarray(history.get("step", []), dtype=np.float64)
  values = np.asarray(history.get(metric, []), dtype=np.float64)
  seconds = np.asarray(history.get("seconds", np.full(steps.shape, np.nan)), dtype=np.float64)
  fig = go.Figure()
  fig.add_trace(go.Scatter(
      x=steps, y=values, mode="lines+markers" if steps.size < 60 else "lines", name=metric,
      line={"color": COLORS["loss"], "width": 2}, marker={"size": 5},
      customdata=seconds,
      hovertemplate="step %{x:d}<br>" + metric + " %{y:.5g}<br>%{customdata:.1f} s<extra></extra>"))
  x_range = (0, total_steps) if total_steps else None
  fig = layout(fig, title, "training step", metric, x_range=x_range, height=height, legend=False)
  fig.update_layout(hovermode="x unified")
  if steps.size == 0:
    fig.add_annotation(text="no training steps yet", showarrow=False, x=0.5, y=0.5,
                       xref="paper", yref="paper", font={"color": COLORS["data"]})
  return fig


def target_preview(data, *, dims: Sequence[int] = (0, 1), labels: Optional[Sequence[str]] = None,
                   title: str = "target data", max_points: int = 5000, seed: int = 0) -> go.Figure:
  """A quick look at a data set ``[n, d]``: a histogram in 1D, a scatter of ``dims`` otherwise.

  At most ``max_points`` points are drawn (a seeded subset).
  """
  data = as_points(data)
  d = data.shape[1]
  if labels is None:
    labels = [f"x{i + 1}" for i in range(d)]
  data = subsample(data, max_points, seed)
  fig = go.Figure()
  if d == 1:
    fig.add_trace(go.Histogram(x=data[:, 0], histnorm="probability density", name="data",
                               nbinsx=80, marker={"color": COLORS["data"]}, opacity=0.8,
                               hovertemplate="x %{x}<br>density %{y:.3g}<extra></extra>"))
    return layout(fig, title, labels[0], "density", legend=False)
  i, j = dims
  fig.add_trace(scatter(data[:, [i, j]], "data", COLORS["data"], size=4, opacity=0.5))
  equal = comparable(np.ptp(data[:, [i, j]], axis=0))
  return layout(fig, title, labels[i], labels[j], equal_aspect=equal, legend=False)


def panel_figures(view: dict, *, model: Optional[str] = None, same_axes: bool = True,
                  layers: Optional[Sequence[str]] = None) -> tuple[go.Figure, go.Figure, go.Figure]:
  """The three panels (base, map, samples vs data) from a ``panels.panel_data`` dict.

  Args:
    view: the dict returned by :func:`cmm_core.panels.panel_data`.
    model: model id, for the titles (``"cmm"`` -> "base e^{-w}", "transport map ∇w*").
    same_axes: draw all panels on one common range (compare sizes at a glance); otherwise each
      panel fits its own content.
    layers: which layers to draw, any of ``"density"``, ``"base samples"``, ``"grid"``,
      ``"warped grid"``, ``"arrows"``, ``"data"``, ``"samples"`` (default: all).

  Returns:
    ``(base_fig, map_fig, samples_fig)``.
  """
  on = set(layers) if layers is not None else {
      "density", "base samples", "grid", "warped grid", "arrows", "data", "samples"}
  lab = labels_for(model)
  r = view["ranges"]
  eq = bool(view.get("equal_aspect", False))
  labels = view["labels"]
  note = "" if view.get("slice_at") is None else " (slice)"
  base_range = r["common"] if same_axes else r["base"]
  data_range = r["common"] if same_axes else r["data"]
  grid = (view["base_grid"]["x"],) if view["view_dim"] == 1 else (
      view["base_grid"]["x"], view["base_grid"]["y"])
  fig_base = base_figure(view["base"], grid, view["base_density"], title=lab["base"] + note,
                         labels=labels, axis_range=base_range, equal_aspect=eq,
                         show_samples="base samples" in on, show_density="density" in on)
  if view["view_dim"] == 1:
    mr = np.stack([r["common"][0], r["common"][0]]) if same_axes else r["map"]
    fig_map = map_figure(view["map"], title=lab["map"], symbol=lab["map_symbol"], labels=labels,
                         x_range=mr[0], y_range=mr[1])
  else:
    mr = r["common"] if same_axes else r["map"]
    fig_map = map_figure(view["map"], title=lab["map"] + note, symbol=lab["map_symbol"],
                         labels=labels, x_range=mr[0], y_range=mr[1], equal_aspect=eq,
                         show_grid="grid" in on, show_warped="warped grid" in on,
                         show_arrows="arrows" in on)
  fig_samples = samples_figure(view["data"], view["samples"], title=lab["samples"], labels=labels,
                               axis_range=data_range, equal_aspect=eq, show_data="data" in on,
                               show_samples="samples" in on)
  return fig_base, fig_map, fig_samples


SQUEEZED_SHARE = 0.05
"""A panel whose own range is narrower than this share of the common range on some axis is drawn
as a thin strip when the panels share one range (:func:`squeezed_panels`)."""


def squeezed_panels(view: dict, share: float = SQUEEZED_SHARE) -> tuple[str, ...]:
  """The panels (of ``"base"``, ``"samples"``) that one common range squeezes: on some axis their
  own range ``view["ranges"][name]`` ``[k, 2]`` spans less than ``share`` of the common one: a table
  in its own units (grams next to millimetres, far from the origin), whose base (cmm's e^{-w}, a
  Gaussian N(0, I)) lies thousands of units from the data or is much narrower."""
  r = view["ranges"]
  common = np.asarray(r["common"], np.float64)
  width = common[:, 1] - common[:, 0]
  out = []
  for name, panel in (("base", "base"), ("samples", "data")):
    own = np.asarray(r[panel], np.float64)
    if np.any(own[:, 1] - own[:, 0] < share * width):
      out.append(name)
  return tuple(out)


def draw_canvas(grid: dict, cells: Sequence[int] = (), *, title: str = "draw the target",
                dragmode: str = "select", height: int = 440) -> go.Figure:
  """The canvas for drawing a 2D target: the selected cells filled, the free cells as faint dots.

  Args:
    grid: from :func:`cmm_core.targets.draw_grid`.
    cells: the selected cell indices.
    title: the figure's title.
    dragmode: ``"select"`` (box) or ``"lasso"``: the tool the mouse starts with.
    height: in pixels.

  Box/lasso selections on it are turned into cells by
  the app's ``app_support.selection.cells_from_selection`` (from the selection's geometry).
  """
  k, lo, hi = int(grid["cells"]), float(grid["lo"]), float(grid["hi"])
  centres = np.asarray(grid["centres"])
  axis = centres[:k, 0]
  z = np.full(k * k, np.nan)
  sel = np.asarray(list(cells), dtype=np.int64)
  if sel.size:
    z[sel] = 1.0
  fig = go.Figure()
  fig.add_trace(go.Heatmap(x=axis, y=axis, z=z.reshape(k, k), zmin=0, zmax=1, showscale=False,
                           colorscale=[[0.0, COLORS["base"]], [1.0, COLORS["base"]]],
                           opacity=0.75, hoverinfo="skip", name="drawn"))
  fig.add_trace(go.Scatter(x=centres[:, 0], y=centres[:, 1], mode="markers", name="cells",
                           marker={"color": COLORS["grid"], "size": 3, "opacity": 0.45},
                           hoverinfo="none", showlegend=False))
  layout(fig, title, "x1", "x2", x_range=(lo, hi), y_range=(lo, hi), equal_aspect=True,
         height=height, legend=False)
  fig.update_layout(dragmode=dragmode, margin={"l": 45, "r": 15, "t": 45, "b": 40},
                    newselection={"line": {"color": COLORS["map"], "width": 2}})
  # the ranges stay exactly [lo, hi]: equal aspect shrinks the plot area instead
  fig.update_xaxes(fixedrange=True, showgrid=False, constrain="domain")
  fig.update_yaxes(fixedrange=True, showgrid=False, constrain="domain")
  return fig

