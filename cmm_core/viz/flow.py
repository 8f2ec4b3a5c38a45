"""Explore figures for a fitted flow (``maflow``): the flow animated, the density over time, the warped grid.

Plotly only (no Streamlit). Everything goes through the fitted model's ``trajectories(x, n_frames)``,
``log_prob(y, time=t)``, ``transport``, ``sample_base`` and ``end_time``.

>>> for title, fig in explore_figures(fitted, data, seed=0):
...   st.plotly_chart(fig)  # in a page
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cmm_core.viz.figures import COLORS
from cmm_core.viz import geometry
from cmm_core.viz.geometry import as_points, axis_ranges, finite_rows, polylines, square, subsample

__all__ = ["explore_figures", "animation_figure", "density_times_figure", "warped_grid_figure",
           "density_times"]

_HEIGHT = 430
_DENSITY_SCALE = [[0.0, "rgba(255,255,255,0)"], [0.05, "#fde9d6"], [0.4, "#f7a35c"], [1.0, "#8c2d04"]]


def _style(fig: go.Figure, title: str, height: int = _HEIGHT) -> go.Figure:
  fig.update_layout(title={"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 16}},
                    template="plotly_white", height=height, hovermode="closest",
                    margin={"l": 50, "r": 15, "t": 50, "b": 45},
                    legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0})
  return fig


def density_times(fitted, n: int = 4) -> np.ndarray:
  """``n`` times ``0, T/(n-1), ..., T`` (each rounded to the RK4 grid by the model)."""
  return np.linspace(0.0, float(fitted.end_time), int(n))


# ----------------------------------------------------------------------------
# (a) the flow, animated.
# ----------------------------------------------------------------------------


def animation_figure(frames: np.ndarray, times: np.ndarray, data: np.ndarray, *,
                     dims: Sequence[int] = (0, 1), n_paths: int = 60,
                     title: str = "the flow dx/dt = ∇φ, animated") -> go.Figure:
  """Particles moving along the flow (2D: frames + play/pause + time slider; 1D: space-time plot).

  Args:
    frames: positions ``[F, n, d]`` at ``times`` ``[F]`` (data coordinates).
    data: data points ``[m, d]``, drawn faintly behind.
    dims: the two coordinates shown when ``d >= 2``.
    n_paths: particles whose whole path is drawn as a faint line.
  """
  frames = np.asarray(frames, np.float64)
  times = np.asarray(times, np.float64)
  F, n, d = frames.shape
  if d == 1:
    return _spacetime_figure(frames[..., 0], times, data[:, 0], title=title)
  i, j = dims
  pts = frames[..., [i, j]]
  rng = square(axis_ranges(pts[0], pts[-1], data[:, [i, j]], margin=0.05))
  fig = go.Figure()
  fig.add_trace(go.Scatter(x=data[:, i], y=data[:, j], mode="markers", name="data",
                           marker={"color": COLORS["data"], "size": 3, "opacity": 0.18}, hoverinfo="skip"))
  px, py = polylines(np.transpose(pts[:, :n_paths], (1, 0, 2)))
  fig.add_trace(go.Scatter(x=px, y=py, mode="lines", name="paths", line={"color": COLORS["map"], "width": 0.8},
                           opacity=0.35, hoverinfo="skip", connectgaps=False))
  fig.add_trace(go.Scatter(x=pts[0, :, 0], y=pts[0, :, 1], mode="markers", name="particles",
                           marker={"color": COLORS["samples"], "size": 5, "opacity": 0.85}, hoverinfo="skip"))
  names = [f"{t:.3g}" for t in times]
  fig.frames = [go.Frame(data=[go.Scatter(x=pts[f, :, 0], y=pts[f, :, 1])], traces=[2], name=names[f])
                for f in range(F)]
  play = {"frame": {"duration": 120, "redraw": False}, "fromcurrent": True, "transition": {"duration": 0},
          "mode": "immediate"}
  pause = {"frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}, "mode": "immediate"}
  fig.update_layout(
      updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.08, "xanchor": "left",
                    "yanchor": "top", "showactive": False, "pad": {"r": 10, "t": 10},
                    "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]}]}],
      sliders=[{"active": 0, "x": 0.2, "len": 0.8, "y": -0.08, "yanchor": "top", "pad": {"t": 10},
                "currentvalue": {"prefix": "t = ", "font": {"size": 12}},
                "steps": [{"label": nm, "method": "animate", "args": [[nm], pause]} for nm in names]}])
  fig.update_xaxes(range=list(rng[0]), title_text=f"x{i + 1}", zeroline=False)
  fig.update_yaxes(range=list(rng[1]), title_text=f"x{j + 1}", zeroline=False, scaleanchor="x", scaleratio=1)
  _style(fig, title, height=_HEIGHT + 90)
  fig.update_layout(margin={"l": 50, "r": 15, "t": 50, "b": 110})
  return fig


def _spacetime_figure(paths: np.ndarray, times: np.ndarray, data: np.ndarray, *, title: str,
                      density: Optional[np.ndarray] = None, grid: Optional[np.ndarray] = None) -> go.Figure:
  """1D: particle paths ``[F, n]`` against time, the data as a histogram at ``t = T``."""
  fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.8, 0.2], horizontal_spacing=0.02)
  if density is not None:
    fig.add_trace(go.Heatmap(x=times, y=grid, z=density.T, colorscale=_DENSITY_SCALE, showscale=False,
                             name="p_t", hovertemplate="t %{x:.3g}<br>x %{y:.3g}<br>p %{z:.3g}<extra></extra>"),
                  row=1, col=1)
  F, n = paths.shape
  t = np.concatenate([np.tile(np.append(times, np.nan), n)])
  x = np.concatenate([np.append(paths[:, k], np.nan) for k in range(n)])
  fig.add_trace(go.Scatter(x=t, y=x, mode="lines", name="paths", line={"color": COLORS["map"], "width": 0.8},
                           opacity=0.45, hoverinfo="skip", connectgaps=False), row=1, col=1)
  fig.add_trace(go.Histogram(y=data, histnorm="probability density", name="data", marker={"color": COLORS["data"]},
                             opacity=0.6, nbinsy=50), row=1, col=2)
  fig.add_trace(go.Histogram(y=paths[-1], histnorm="probability density", name="particles at T",
                             marker={"color": COLORS["samples"]}, opacity=0.6, nbinsy=50), row=1, col=2)
  fig.update_layout(barmode="overlay")
  fig.update_xaxes(title_text="time t", row=1, col=1)
  fig.update_xaxes(title_text="density", row=1, col=2)
  fig.update_yaxes(title_text="x", row=1, col=1)
  return _style(fig, title)


# ----------------------------------------------------------------------------
# (b) the density at several times.
# ----------------------------------------------------------------------------


def density_times_figure(times: np.ndarray, grid: dict, densities: Sequence[np.ndarray], *,
                         data: Optional[np.ndarray] = None, empirical: bool = False,
                         title: str = "density p_t along the flow") -> go.Figure:
  """A row of heatmaps (2D, ``densities[k]`` ``[g, g]``, rows follow ``y``) or overlaid curves (1D, ``[g]``)."""
  times = np.asarray(times, np.float64)
  if "y" not in grid:
    fig = go.Figure()
    if data is not None:
      fig.add_trace(go.Histogram(x=data[:, 0], histnorm="probability density", name="data", nbinsx=60,
                                 marker={"color": COLORS["data"]}, opacity=0.35))
    shades = np.linspace(0.25, 1.0, len(times))
    for t, p, a in zip(times, densities, shades):
      fig.add_trace(go.Scatter(x=grid["x"], y=p, mode="lines", name=f"t = {t:.3g}",
                               line={"width": 2.5, "color": f"rgba(123,79,184,{a:.2f})"}))
    fig.update_xaxes(title_text="x")
    fig.update_yaxes(title_text="density")
    return _style(fig, title)
  k = len(times)
  fig = make_subplots(rows=1, cols=k, subplot_titles=[f"t = {t:.3g}" for t in times],
                      horizontal_spacing=0.02, shared_yaxes=True)
  for c, p in enumerate(densities, start=1):
    fig.add_trace(go.Heatmap(x=grid["x"], y=grid["y"], z=p, colorscale=_DENSITY_SCALE, showscale=False,
                             name=f"t = {times[c - 1]:.3g}",
                             hovertemplate="(%{x:.3g}, %{y:.3g})<br>p %{z:.3g}<extra></extra>"),
                  row=1, col=c)
    anchor = "x" if c == 1 else f"x{c}"
    fig.update_yaxes(scaleanchor=anchor, scaleratio=1, row=1, col=c)
  fig.update_xaxes(showticklabels=False)
  fig.update_yaxes(showticklabels=False)
  if empirical:
    title += " (histogram of the particles)"
  return _style(fig, title, height=300)


# ----------------------------------------------------------------------------
# (c) the warped grid.
# ----------------------------------------------------------------------------


def warped_grid_figure(grid_lines: np.ndarray, warped_lines: np.ndarray, *, base: Optional[np.ndarray] = None,
                       samples: Optional[np.ndarray] = None, data: Optional[np.ndarray] = None,
                       title: str = "warped grid: the base grid pushed by the flow") -> go.Figure:
  """2D: the base grid ``[L, P, 2]`` (left) and its image under the flow map (right).

  1D (``grid_lines`` ``[P]``, ``warped_lines`` ``[P]``): the map ``T(x)`` with the images of grid points.
  """
  grid_lines = np.asarray(grid_lines, np.float64)
  warped_lines = np.asarray(warped_lines, np.float64)
  if grid_lines.ndim == 1:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=grid_lines, y=warped_lines, mode="lines", name="T(x)",
                             line={"color": COLORS["map"], "width": 3}))
    ticks = grid_lines[:: max(1, len(grid_lines) // 20)]
    images = warped_lines[:: max(1, len(grid_lines) // 20)]
    xs = np.concatenate([[x, x, np.nan] for x in ticks])
    lo = float(np.nanmin(warped_lines))
    ys = np.concatenate([[lo, y, np.nan] for y in images])
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="grid points", line={"color": COLORS["grid"], "width": 1},
                             hoverinfo="skip", connectgaps=False))
    fig.add_trace(go.Scatter(x=np.full(len(images), float(grid_lines[0])), y=images, mode="markers",
                             name="images (spacing = 1 / density)", marker={"color": COLORS["samples"], "size": 6}))
    fig.update_xaxes(title_text="base point x")
    fig.update_yaxes(title_text="T(x) (data space)")
    return _style(fig, title)
  fig = make_subplots(rows=1, cols=2, subplot_titles=["base N(0, I)", "flow map T (data space)"],
                      horizontal_spacing=0.08)
  gx, gy = polylines(grid_lines)
  fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name="base grid", line={"color": COLORS["grid"], "width": 1},
                           hoverinfo="skip", connectgaps=False), row=1, col=1)
  if base is not None:
    fig.add_trace(go.Scatter(x=base[:, 0], y=base[:, 1], mode="markers", name="base samples",
                             marker={"color": COLORS["base"], "size": 3, "opacity": 0.5}, hoverinfo="skip"),
                  row=1, col=1)
  if data is not None:
    fig.add_trace(go.Scatter(x=data[:, 0], y=data[:, 1], mode="markers", name="data",
                             marker={"color": COLORS["data"], "size": 3, "opacity": 0.2}, hoverinfo="skip"),
                  row=1, col=2)
  wx, wy = polylines(warped_lines)
  fig.add_trace(go.Scatter(x=wx, y=wy, mode="lines", name="warped grid", line={"color": COLORS["map"], "width": 1.1},
                           opacity=0.8, hoverinfo="skip", connectgaps=False), row=1, col=2)
  if samples is not None:
    fig.add_trace(go.Scatter(x=samples[:, 0], y=samples[:, 1], mode="markers", name="samples",
                             marker={"color": COLORS["samples"], "size": 3, "opacity": 0.5}, hoverinfo="skip"),
                  row=1, col=2)
  fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
  fig.update_yaxes(scaleanchor="x2", scaleratio=1, row=1, col=2)
  return _style(fig, title)


# ----------------------------------------------------------------------------
# All three from a fitted model.
# ----------------------------------------------------------------------------


def explore_figures(fitted, data, seed: int = 0, *, n_particles: int = 300, n_frames: int = 21,
                    grid_size: int = 60, n_times: int = 4, dims: Sequence[int] = (0, 1)) -> list:
  """The three explore figures of a fitted flow: ``[(title, go.Figure), ...]``.

  (a) the flow animated (2D: particles with play/pause and a time slider; 1D: space-time plot over
  the density ``p_t``); (b) ``exp(log p_t)`` at ``n_times`` times in ``[0, T]``; (c) the base grid
  pushed by ``transport``. For ``d > 2`` the coordinates ``dims`` are shown, (b) is a histogram of
  the particles and (c) the grid of that plane (other coordinates 0).

  Args:
    fitted: a fitted flow (``maflow``).
    data: the data ``[n, d]`` shown faintly behind.
    seed: seeds the particles and the data subset.
  """
  d = int(fitted.dim)
  data = subsample(finite_rows(as_points(data, "the data", dim=d)), 2000, seed)
  times = density_times(fitted, n_times)
  x0 = fitted.sample_base(n_particles, seed=seed)
  frames = fitted.trajectories(x0, n_frames)
  out = []
  if d == 1:
    lo, hi = axis_ranges(frames[0], frames[-1], data)[0]
    g = np.linspace(lo, hi, 200)
    n_steps = int(round(fitted.end_time / fitted.config["step_size"]))
    st_times = np.linspace(0, fitted.end_time, min(n_steps, 40) + 1)
    dens = np.stack([np.exp(fitted.log_prob(g[:, None], time=t)) for t in st_times])
    out.append(("flow (space-time)", _spacetime_figure(
        frames[..., 0][:, :min(n_particles, 120)], fitted.frame_times(n_frames), data[:, 0],
        title="particle paths over the density p_t", density=dens, grid=g)))
    curves = [np.exp(fitted.log_prob(g[:, None], time=t)) for t in times]
    out.append(("density over time", density_times_figure(times, {"x": g}, curves, data=data)))
    xs = np.linspace(-3.5, 3.5, 141)
    out.append(("flow map", warped_grid_figure(xs, fitted.transport(xs[:, None])[:, 0],
                                               title="flow map T(x): base -> data")))
    return out
  i, j = dims
  shown = data[:, [i, j]]
  out.append(("flow animation", animation_figure(frames, fitted.frame_times(n_frames), data, dims=dims)))
  box = square(axis_ranges(frames[0][:, [i, j]], frames[-1][:, [i, j]], shown, margin=0.05))
  gx = np.linspace(*box[0], grid_size)
  gy = np.linspace(*box[1], grid_size)
  if d == 2:
    mesh = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)  # rows follow y
    dens = [np.exp(fitted.log_prob(mesh, time=t)).reshape(grid_size, grid_size) for t in times]
    empirical = False
  else:
    many = fitted.trajectories(fitted.sample_base(2000, seed=seed + 1), n_times)
    edges_x = np.linspace(*box[0], grid_size + 1)
    edges_y = np.linspace(*box[1], grid_size + 1)
    dens = [np.histogram2d(f[:, j], f[:, i], bins=[edges_y, edges_x], density=True)[0] for f in many]
    gx, gy = 0.5 * (edges_x[1:] + edges_x[:-1]), 0.5 * (edges_y[1:] + edges_y[:-1])
    empirical = True
  out.append(("density over time", density_times_figure(times, {"x": gx, "y": gy}, dens, empirical=empirical)))
  lines = geometry.grid_lines([[-3.0, 3.0], [-3.0, 3.0]], 13, 41)
  full = np.zeros(lines.shape[:2] + (d,), np.float32)
  full[..., i], full[..., j] = lines[..., 0], lines[..., 1]
  warped = fitted.transport(full.reshape(-1, d)).reshape(full.shape)[..., [i, j]]
  base = x0[:, [i, j]]
  out.append(("warped grid", warped_grid_figure(lines, warped, base=base, samples=frames[-1][:, [i, j]],
                                                data=shown)))
  return out
