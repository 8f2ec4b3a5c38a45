"""Explore figures for the semi-discrete OT generator (``sdot``): plotly only, no Streamlit.

>>> figs = explore_figures(fitted, data, seed=0)   # [(title, go.Figure), ...]

- the latent grid warped by the generator (2D latent: grid lines pushed through ``g``; 1D latent:
  the curve ``g(z)``);
- the samples against the data, the data points coloured by their dual weight ``psi_j``;
- in 2D, the Laguerre cells of ``psi`` (``eps = 0``: ``argmin_j c(x, y_j) - psi_j`` on a pixel grid)
  or the soft cells (``eps > 0``: the entropy of the soft assignment), generated samples on top.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cmm_core.viz import geometry
from cmm_core.viz.figures import COLORS, layout
from cmm_core.viz.geometry import as_points, axis_ranges, polylines, subsample_index

__all__ = ["explore_figures", "warped_grid_figure", "psi_figure", "laguerre_figure",
           "epsilon_sweep_figure"]


def _latent_box(fitted) -> float:
  return 1.0 if str(fitted.extras["latent"]) == "uniform" else 2.5


def warped_grid_figure(fitted, data, *, n_lines: int = 21, line_points: int = 80,
                       seed: int = 0) -> go.Figure:
  """The latent grid pushed through ``g`` (2D+ latent) or the curve ``g(z)`` (1D latent)."""
  data = np.asarray(data, np.float64)
  k, d = fitted.latent_dim, fitted.dim
  a = _latent_box(fitted)
  shown = data[subsample_index(data.shape[0], 2000, seed)]
  fig = go.Figure()
  if k == 1:
    z = np.linspace(-a, a, 400)[:, None]
    g = fitted.transport(z).astype(np.float64)
    if d == 1:
      fig.add_trace(go.Scatter(x=z[:, 0], y=g[:, 0], mode="lines", name="g(z)",
                               line={"color": COLORS["map"], "width": 2}))
      return layout(fig, "generator g(z), 1D latent", "z", "g(z)")
    fig.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="markers", name="data",
                             marker={"color": COLORS["data"], "size": 3, "opacity": 0.3}))
    fig.add_trace(go.Scatter(x=g[:, 0], y=g[:, 1], mode="lines+markers", name="g(z), z in latent",
                             marker={"size": 3, "color": z[:, 0], "colorscale": "Viridis",
                                     "colorbar": {"title": "z", "len": 0.7}},
                             line={"color": COLORS["map"], "width": 1.5}))
    r = axis_ranges(shown[:, :2], g[:, :2], margin=0.08)
    return layout(fig, "generator curve g(z), 1D latent", "x1", "x2", x_range=r[0], y_range=r[1],
                  equal_aspect=True)
  t = np.linspace(-a, a, line_points)
  grid = geometry.grid_lines([[-a, a], [-a, a]], n_lines, line_points)  # [L, P, 2]
  z = np.zeros((grid.shape[0] * grid.shape[1], k))
  z[:, :2] = grid.reshape(-1, 2)
  warped = fitted.transport(z).astype(np.float64)
  if d == 1:
    # a 1D output: each latent line becomes a curve of g against its position along the line
    gl = warped[:, 0].reshape(grid.shape[0], grid.shape[1])
    for i in range(n_lines):
      fig.add_trace(go.Scatter(x=t, y=gl[i], mode="lines", showlegend=i == 0,
                               name="g along z1 = const", line={"color": COLORS["map"], "width": 1}))
    return layout(fig, "generator along latent grid lines", "z2", "g(z)")
  wl = warped[:, :2].reshape(grid.shape[0], grid.shape[1], 2)
  fig.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="markers", name="data",
                           marker={"color": COLORS["data"], "size": 3, "opacity": 0.3}))
  half = grid.shape[0] // 2
  for name, part, color in (("image of z1 = const", wl[:half], COLORS["map"]),
                            ("image of z2 = const", wl[half:], COLORS["base"])):
    xs, ys = polylines(part)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name,
                             line={"color": color, "width": 1}, hoverinfo="skip"))
  r = axis_ranges(shown[:, :2], wl.reshape(-1, 2), margin=0.08)
  title = "latent grid warped by g" + (" (z3.. = 0)" if k > 2 else "")
  return layout(fig, title, "x1", "x2", x_range=r[0], y_range=r[1], equal_aspect=True)


def psi_figure(fitted, data=None, *, n_samples: int = 2000, max_points: int = 4000,
               seed: int = 0) -> go.Figure:
  """Model samples over the data points, the data coloured by their dual weight ``psi_j``."""
  y = fitted.data().astype(np.float64)
  psi = fitted.psi().astype(np.float64)
  idx = subsample_index(y.shape[0], max_points, seed)
  y, psi = y[idx], psi[idx]
  samples = fitted.sample(n_samples, seed=seed).astype(np.float64)
  lim = float(np.percentile(np.abs(psi - np.median(psi)), 98)) or 1.0
  marker = {"color": psi, "colorscale": "RdBu_r", "cmid": float(np.median(psi)),
            "cmin": float(np.median(psi) - lim), "cmax": float(np.median(psi) + lim),
            "size": 5, "colorbar": {"title": "ψ", "len": 0.7}}
  fig = go.Figure()
  if fitted.dim == 1:
    fig.add_trace(go.Scatter(x=y[:, 0], y=psi, mode="markers", name="data point: ψ", marker=marker,
                             hovertemplate="y %{x:.3g}<br>ψ %{y:.3g}<extra></extra>"))
    fig.add_trace(go.Histogram(x=samples[:, 0], histnorm="probability density", yaxis="y2",
                               name="model samples", opacity=0.4,
                               marker={"color": COLORS["samples"]}))
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "showgrid": False,
                              "title": {"text": "sample density"}})
    return layout(fig, "dual weights ψ and samples", "y", "ψ")
  fig.add_trace(go.Scatter(x=samples[:, 0], y=samples[:, 1], mode="markers", name="model samples",
                           marker={"color": COLORS["samples"], "size": 3, "opacity": 0.45}))
  fig.add_trace(go.Scatter(x=y[:, 0], y=y[:, 1], mode="markers", name="data (colour: ψ)",
                           marker={**marker, "size": 4, "opacity": 0.85},
                           text=psi, hovertemplate="(%{x:.3g}, %{y:.3g})<br>ψ %{text:.3g}<extra></extra>"))
  r = axis_ranges(y[:, :2], samples[:, :2], margin=0.08)
  return layout(fig, "samples vs data, data coloured by ψ", "x1", "x2", x_range=r[0], y_range=r[1],
                equal_aspect=True)


def laguerre_figure(fitted, *, grid_size: int = 120, n_samples: int = 1000,
                    seed: int = 0) -> go.Figure:
  """2D only: (soft) Laguerre cells of the current ``psi`` on a pixel grid, samples on top.

  ``eps = 0``: the hard cells ``argmin_j |x - y_j|^2 / s^2 - psi_j`` (random colours, boundaries
  dark). ``eps > 0``: the entropy of the soft assignment (nats; 0 = inside a cell), with the
  boundaries of the hard cells of the same ``psi`` for reference.
  """
  if fitted.dim != 2:
    raise ValueError(f"Laguerre cells are drawn in 2D only; the model is {fitted.dim}D")
  y = fitted.data().astype(np.float64)
  samples = fitted.sample(n_samples, seed=seed).astype(np.float64)
  r = axis_ranges(y, samples, margin=0.05)
  gx = np.linspace(r[0, 0], r[0, 1], grid_size)
  gy = np.linspace(r[1, 0], r[1, 1], grid_size)
  xx, yy = np.meshgrid(gx, gy)
  out = fitted.laguerre(np.stack([xx.ravel(), yy.ravel()], 1))
  cell = out["cell"].reshape(grid_size, grid_size)
  edge = np.zeros_like(cell, dtype=bool)
  edge[:, 1:] |= cell[:, 1:] != cell[:, :-1]
  edge[1:, :] |= cell[1:, :] != cell[:-1, :]
  fig = go.Figure()
  eps = fitted.epsilon
  if eps > 0:
    ent = out["entropy"].reshape(grid_size, grid_size)
    fig.add_trace(go.Heatmap(x=gx, y=gy, z=ent, colorscale="Viridis", name="assignment entropy",
                             colorbar={"title": "entropy", "len": 0.7},
                             hovertemplate="(%{x:.3g}, %{y:.3g})<br>entropy %{z:.3g}<extra></extra>"))
    title = f"soft Laguerre cells (ε = {eps:g}): assignment entropy"
    edge_color = "rgba(255,255,255,0.35)"
  else:
    # a random colour per cell, so that neighbouring cells differ
    hue = np.random.default_rng(0).random(y.shape[0])[cell]
    fig.add_trace(go.Heatmap(x=gx, y=gy, z=hue, colorscale="Turbo", showscale=False, opacity=0.55,
                             name="Laguerre cell", text=cell,
                             hovertemplate="(%{x:.3g}, %{y:.3g})<br>cell %{text}<extra></extra>"))
    title = "Laguerre cells of ψ (ε = 0)"
    edge_color = "rgba(0,0,0,0.6)"
  fig.add_trace(go.Heatmap(x=gx, y=gy, z=np.where(edge, 1.0, np.nan), showscale=False,
                           colorscale=[[0, edge_color], [1, edge_color]], hoverinfo="skip",
                           name="cell boundaries"))
  fig.add_trace(go.Scatter(x=samples[:, 0], y=samples[:, 1], mode="markers", name="model samples",
                           marker={"color": COLORS["samples"], "size": 3, "opacity": 0.8,
                                   "line": {"width": 0}}))
  return layout(fig, title, "x1", "x2", x_range=r[0], y_range=r[1], equal_aspect=True)


def explore_figures(fitted, data, seed: int = 0) -> list[tuple[str, go.Figure]]:
  """The sdot explore figures: ``[(title, figure), ...]`` (warped grid, ψ, cells in 2D)."""
  if getattr(fitted, "model", None) != "sdot":
    raise ValueError(f"explore_figures needs a fitted 'sdot' model, got {getattr(fitted, 'model', None)!r}")
  data = as_points(data, "the data", dim=fitted.dim)
  figs = [
      ("Latent grid warped by the generator", warped_grid_figure(fitted, data, seed=seed)),
      ("Samples and dual weights ψ", psi_figure(fitted, data, seed=seed)),
  ]
  if fitted.dim == 2:
    figs.append(("Laguerre cells" if fitted.epsilon == 0 else "Soft Laguerre cells",
                 laguerre_figure(fitted, seed=seed)))
  return figs


def epsilon_sweep_figure(results: list, data, seed: int = 0, max_points: int = 1500) -> go.Figure:
  """One panel per epsilon of :func:`cmm_core.models.sdot.epsilon_sweep`: samples against the data.

  Args:
    results: dicts with ``epsilon``, ``energy_distance`` and ``samples [m, d]`` (2D shown as is,
      1D as histograms, higher dimensions by their first two coordinates).
    data: the training data ``[n, d]``, drawn faintly behind.
  """
  from plotly.subplots import make_subplots
  if not results:
    raise ValueError("no epsilon results to draw")
  data = as_points(data)
  titles = [f"ε = {r['epsilon']:g} · ED {r['energy_distance']:.4f}" for r in results]
  fig = make_subplots(rows=1, cols=len(results), subplot_titles=titles,
                      shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.03)
  shown = data[subsample_index(data.shape[0], max_points, seed)]
  for j, r in enumerate(results, start=1):
    s = np.asarray(r["samples"], np.float64)
    s = s[subsample_index(s.shape[0], max_points, seed)]
    first = j == 1
    if data.shape[1] == 1:
      fig.add_trace(go.Histogram(x=shown[:, 0], histnorm="probability density", name="data",
                                 marker_color=COLORS["data"], opacity=0.5, showlegend=first,
                                 legendgroup="data"), 1, j)
      fig.add_trace(go.Histogram(x=s[:, 0], histnorm="probability density", name="samples",
                                 marker_color=COLORS["samples"], opacity=0.6, showlegend=first,
                                 legendgroup="samples"), 1, j)
      continue
    fig.add_trace(go.Scattergl(x=shown[:, 0], y=shown[:, 1], mode="markers", name="data",
                               marker={"size": 3, "color": COLORS["data"], "opacity": 0.35},
                               showlegend=first, legendgroup="data"), 1, j)
    fig.add_trace(go.Scattergl(x=s[:, 0], y=s[:, 1], mode="markers", name="samples",
                               marker={"size": 3, "color": COLORS["samples"], "opacity": 0.7},
                               showlegend=first, legendgroup="samples"), 1, j)
  r = None
  if data.shape[1] >= 2:
    clouds = [np.asarray(x["samples"], np.float64)[:, :2] for x in results]
    r = axis_ranges(shown[:, :2], *clouds, margin=0.08)
  fig = layout(fig, "the epsilon experiment: samples against the data", "", "",
               x_range=None if r is None else r[0], y_range=None if r is None else r[1])
  fig.update_annotations(font_size=12)
  return fig
