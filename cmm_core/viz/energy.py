"""Views of an energy ``exp(-E) / Z`` and of samplers fitted to it: arrays and plotly figures (pure).

- :func:`energy_grid`: ``E`` and ``exp(-E)`` on a grid of a 2D energy's box; :func:`contour_figure`
  draws them, with samples on top.
- :func:`free_energy_figure`: the free-energy bound ``F = -ELBO`` per training step, with the exact
  ``-log Z`` as a horizontal line (per site for lattices).
- :func:`latent_figure`: the flow's base samples coloured by where the flow sends them.
- :func:`spin_mosaic` / :func:`spin_figure`: lattice samples as spin images ``sign(x)`` ``L x L``.
- :func:`sample_stats` and :func:`comparison_rows`: the numbers of the flow / MCMC table.

>>> g = energy_grid(energies.make("ring"))
>>> fig = contour_figure(g, samples=fitted.sample(1000), title="flow samples")
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import numpy as np
import plotly.graph_objects as go

from cmm_core.viz.figures import COLORS, HEIGHT, layout
from cmm_core.viz.geometry import as_points, subsample

__all__ = ["energy_grid", "contour_figure", "free_energy_figure", "latent_figure", "spin_mosaic",
           "spin_figure", "magnetisation_figure", "sample_stats", "comparison_rows", "MAX_GRID"]

MAX_GRID = 400  # points per side of energy_grid
_CONTOUR_SCALE = [[0.0, "rgba(255,255,255,0)"], [0.05, "#eef4fb"], [0.35, "#b7cde8"],
                  [0.7, "#6e97c9"], [1.0, "#2f5d96"]]
_SPIN_SCALE = [[0.0, "#f3f3f3"], [1.0, "#222222"]]


def energy_grid(energy, n_grid: int = 120, box=None) -> dict:
  """``E`` on an ``n_grid x n_grid`` grid of a 2D energy's box (or ``box``).

  Returns:
    ``{"x": [g], "y": [g], "energy": [g, g], "density": [g, g], "box": ((lo1, hi1), (lo2, hi2))}``:
    rows are ``y`` (plotly's layout), ``density = exp(-(E - min E))`` (1 at the mode), non-finite
    values NaN (energy) / 0 (density).

  Raises:
    ValueError: not 2D, no box, a bad ``n_grid``, or an energy that is nowhere finite on the box.
  """
  if getattr(energy, "dim", None) != 2:
    raise ValueError(f"energy_grid: a 2D energy is needed, got dim {getattr(energy, 'dim', None)}")
  box = energy.box if box is None else box
  if box is None:
    raise ValueError(f"energy_grid: {energy.label} has no box; pass box=((lo1, hi1), (lo2, hi2))")
  b = np.asarray(box, np.float64)
  if b.shape != (2, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 0] < b[:, 1]):
    raise ValueError(f"energy_grid: box must be two pairs (lo, hi) with lo < hi, got {box!r}")
  if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or not 8 <= n_grid <= MAX_GRID:
    raise ValueError(f"energy_grid: n_grid must be an integer in [8, {MAX_GRID}], got {n_grid!r}")
  x = np.linspace(b[0, 0], b[0, 1], int(n_grid))
  y = np.linspace(b[1, 0], b[1, 1], int(n_grid))
  xx, yy = np.meshgrid(x, y)  # [g (y), g (x)]
  pts = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
  e = np.asarray(jax.jit(energy.fn)(pts), np.float64).reshape(xx.shape)
  e = np.where(np.isfinite(e), e, np.nan)
  if not np.any(np.isfinite(e)):
    raise ValueError(f"{energy.label}: the energy is not finite anywhere on the box")
  density = np.exp(-(e - np.nanmin(e)))
  density = np.where(np.isfinite(density), density, 0.0)
  return {"x": x, "y": y, "energy": e, "density": density,
          "box": tuple((float(lo), float(hi)) for lo, hi in b)}


def contour_figure(grid: dict, *, samples=None, title: str = "exp(−E)", show: str = "density",
                   sample_name: str = "samples", color: str = COLORS["samples"],
                   labels: Sequence[str] = ("x1", "x2"), max_points: int = 1500, seed: int = 0,
                   height: int = HEIGHT) -> go.Figure:
  """Filled contours of ``exp(-E)`` (``show="density"``) or of ``E`` (``"energy"``) from
  :func:`energy_grid`, with ``samples`` ``[n, 2]`` on top (at most ``max_points``, a seeded
  subset; non-finite rows dropped), on the grid's box with equal axes."""
  if show not in ("density", "energy"):
    raise ValueError(f"contour_figure: show must be 'density' or 'energy', got {show!r}")
  fig = go.Figure()
  if show == "density":
    z, scale, name = grid["density"], _CONTOUR_SCALE, "exp(−E)"
    contours = {"start": 0.05, "end": 1.0, "size": 0.1}
  else:  # E, clipped 12 nats above its minimum so the mass region keeps the levels
    e = grid["energy"]
    lo = float(np.nanmin(e))
    z, scale, name = np.minimum(e, lo + 12.0), "Blues_r", "E"
    contours = {"start": lo, "end": lo + 12.0, "size": 1.0}
  fig.add_trace(go.Contour(x=grid["x"], y=grid["y"], z=z, colorscale=scale, showscale=False,
                           contours=contours, line={"width": 0.6, "color": "rgba(47,93,150,0.5)"},
                           name=name, hovertemplate="(%{x:.3g}, %{y:.3g})<br>" + name
                           + " %{z:.3g}<extra></extra>"))
  has_points = samples is not None
  if has_points:
    pts = as_points(samples, dim=2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    pts = subsample(pts, max_points, seed)
    fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", name=sample_name,
                             marker={"color": color, "size": 3.5, "opacity": 0.6, "line": {"width": 0}},
                             hovertemplate="(%{x:.3g}, %{y:.3g})<extra>" + sample_name + "</extra>"))
  (x0, x1), (y0, y1) = grid["box"]
  fig = layout(fig, title, labels[0], labels[1], x_range=(x0, x1), y_range=(y0, y1),
               equal_aspect=True, height=height, legend=has_points)
  fig.update_xaxes(constrain="domain")
  fig.update_yaxes(constrain="domain")
  return fig


_CURVE_COLORS = (COLORS["loss"], COLORS["base"], COLORS["map"], COLORS["samples"])


def free_energy_figure(history: dict, *, log_z: Optional[float] = None, n_sites: Optional[int] = None,
                       total_steps: Optional[int] = None, title: str = "free energy F = −ELBO",
                       height: int = 320) -> go.Figure:
  """The free-energy bound ``F`` (the history's ``loss``) against the training step, with a
  horizontal line at the exact ``-log Z`` when ``log_z`` is known; divided by ``n_sites``
  (``F / N``, the lattice convention) when given.

  Args:
    history: ``{"step": [m], "loss": [m], ...}`` (:func:`cmm_core.viz.panels.history_arrays`), or
      ``{label: such a dict}`` for one curve per model (e.g. ``{"maflow": ..., "cmm": ...}``).
    log_z: the exact ``log Z`` or None.
    n_sites: per-site values (``N = L^2``) or None.
    total_steps: fixes the x axis to ``[0, total_steps]`` (a live curve grows to the right).
  """
  div = float(n_sites) if n_sites else 1.0
  per = " / N" if n_sites else ""
  curves = {"": history} if not history or "step" in history else history
  fig, tails, n_points = go.Figure(), [], 0
  for i, (label, h) in enumerate(curves.items()):
    steps = np.asarray(h.get("step", []), np.float64)
    f = np.asarray(h.get("loss", []), np.float64) / div
    n_points += steps.size
    color = _CURVE_COLORS[i % len(_CURVE_COLORS)]
    fig.add_trace(go.Scatter(x=steps, y=f, mode="lines+markers" if steps.size < 60 else "lines",
                             name=f"{label + ': ' if label else ''}F{per} (batch estimate)",
                             line={"color": color, "width": 2}, marker={"size": 5},
                             hovertemplate=f"{label} step %{{x:d}}<br>F{per} %{{y:.5g}}<extra></extra>"))
    finite = f[np.isfinite(f)]
    tails.append(finite[len(finite) // 5:] if finite.size >= 5 else finite)
  if log_z is not None:
    ref = -float(log_z) / div
    fig.add_hline(y=ref, line={"color": "#c0392b", "dash": "dash", "width": 1.5})
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"exact −log Z{per} = {ref:.5g}",
                             line={"color": "#c0392b", "dash": "dash", "width": 1.5}))
    tail = np.concatenate(tails) if tails else np.zeros(0)
    if tail.size:  # zoom on the bound's approach: the first steps can be far above
      hi = max(float(np.max(tail)), ref)
      span = max(hi - ref, 1e-3 * max(1.0, abs(ref)))
      fig.update_yaxes(range=[ref - 0.15 * span, hi + 0.1 * span])
  x_range = (0, total_steps) if total_steps else None
  fig = layout(fig, title, "training step", "F" + per + " (nats)", x_range=x_range, height=height,
               legend=True)
  if n_points == 0:
    fig.add_annotation(text="no training steps yet", showarrow=False, x=0.5, y=0.5,
                       xref="paper", yref="paper", font={"color": COLORS["data"]})
  return fig


def latent_figure(z, x, *, title: str = "flow base (latent) samples", max_points: int = 1500,
                  seed: int = 0, labels: Sequence[str] = ("z1", "z2"), height: int = HEIGHT,
                  base_name: Optional[str] = None) -> go.Figure:
  """The base samples ``z`` ``[n, d]`` (first two coordinates), coloured by the angle of their
  images ``x`` ``[n, d]`` around the images' mean: a colour is a direction in sample space, so the
  picture shows which part of the base goes where. Circles at radii 1, 2, 3 of ``N(0, I)``, unless
  ``base_name`` names another base (e.g. ``"x ~ e^{-w}"``, cmm's): then the axes fit the samples."""
  z, x = as_points(z), as_points(x)
  if z.shape != x.shape or z.shape[1] < 2:
    raise ValueError(f"latent_figure: z and x must be [n, d] with d >= 2 and equal shapes, "
                     f"got {z.shape} and {x.shape}")
  keep = np.all(np.isfinite(z), 1) & np.all(np.isfinite(x), 1)
  idx = np.flatnonzero(keep)
  idx = idx[np.sort(np.random.default_rng(seed).permutation(idx.size)[:max_points])] if idx.size > max_points else idx
  z, x = z[idx], x[idx]
  c = x[:, :2] - x[:, :2].mean(0) if x.shape[0] else x[:, :2]
  angle = np.degrees(np.arctan2(c[:, 1], c[:, 0]))
  fig = go.Figure()
  t = np.linspace(0, 2 * np.pi, 120)
  box = (-3.6, 3.6), (-3.6, 3.6)
  if base_name is None:
    for r in (1, 2, 3):
      fig.add_trace(go.Scatter(x=r * np.cos(t), y=r * np.sin(t), mode="lines", showlegend=False,
                               line={"color": COLORS["grid"], "width": 0.8, "dash": "dot"},
                               hoverinfo="skip"))
  elif z.shape[0]:
    centre = 0.5 * (z[:, :2].min(0) + z[:, :2].max(0))
    half = 0.55 * float(np.max(z[:, :2].max(0) - z[:, :2].min(0))) + 1e-9
    box = tuple((float(m - half), float(m + half)) for m in centre)
  fig.add_trace(go.Scatter(
      x=z[:, 0], y=z[:, 1], mode="markers", name=f"base samples {base_name or 'z ~ N(0, I)'}",
      marker={"color": angle, "colorscale": "Twilight", "cmin": -180, "cmax": 180, "size": 4,
              "opacity": 0.8, "line": {"width": 0}},
      hovertemplate="z (%{x:.3g}, %{y:.3g})<br>image angle %{marker.color:.0f}°<extra></extra>"))
  fig = layout(fig, title, labels[0], labels[1], x_range=box[0], y_range=box[1],
               equal_aspect=True, height=height)
  fig.update_xaxes(constrain="domain")
  fig.update_yaxes(constrain="domain")
  return fig


def spin_mosaic(x, L: int, n_show: int = 8, cols: int = 4) -> np.ndarray:
  """The spins ``sign(x)`` of the first ``n_show`` samples ``x`` ``[n, L^2]`` (row-major sites) as
  ``L x L`` tiles in a grid of ``cols`` columns, one NaN row/column between tiles:
  ``[rows (L + 1) - 1, cols (L + 1) - 1]`` with values in {-1, 1} (NaN in the gaps and empty tiles)."""
  x = as_points(x)
  L = int(L)
  if x.shape[1] != L * L:
    raise ValueError(f"spin_mosaic: samples must be [n, {L * L}] for L = {L}, got {x.shape}")
  n = min(int(n_show), x.shape[0])
  cols = max(1, min(int(cols), n)) if n else 1
  rows = max(1, math.ceil(n / cols))
  out = np.full((rows * (L + 1) - 1, cols * (L + 1) - 1), np.nan)
  for k in range(n):
    r, c = divmod(k, cols)
    s = np.where(x[k] >= 0, 1.0, -1.0).reshape(L, L)
    s[~np.isfinite(x[k].reshape(L, L))] = np.nan
    out[r * (L + 1):r * (L + 1) + L, c * (L + 1):c * (L + 1) + L] = s
  return out


def spin_figure(x, L: int, *, n_show: int = 8, cols: int = 4, title: str = "spins sign(x)",
                height: Optional[int] = None) -> go.Figure:
  """:func:`spin_mosaic` as a figure: black = +1, white = -1, tiles separated by gaps."""
  m = spin_mosaic(x, L, n_show, cols)
  fig = go.Figure(go.Heatmap(z=m, colorscale=_SPIN_SCALE, zmin=-1, zmax=1, showscale=False,
                             hovertemplate="spin %{z:+.0f}<extra></extra>", xgap=0.5, ygap=0.5))
  rows = (m.shape[0] + 1) / (L + 1)
  height = height or int(min(520, max(220, 60 + rows * 90)))
  fig = layout(fig, title, "", "", height=height, legend=False)
  fig.update_xaxes(visible=False, constrain="domain")
  fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1, constrain="domain")
  fig.update_layout(plot_bgcolor="white", margin={"l": 10, "r": 10, "t": 45, "b": 10})
  return fig


def magnetisation_figure(samples: dict, L: int, *, exact=None, seed: int = 0,
                         title: str = "magnetisation per site", height: int = 320) -> go.Figure:
  """The distribution of the magnetisation per site ``m = mean_i s_i`` of each sampler's spins,
  drawn from its relaxed samples by the exact conditional ``P(s_i = 1 | x) = sigmoid(2 x_i)``
  (:func:`cmm_core.energies.ising_spins`), so that exact relaxed samples give exact Ising spins.

  Args:
    samples: ``{label: x [n, L^2]}``, one bar series per sampler.
    exact: ``(m [N + 1], p [N + 1])`` (:func:`cmm_core.energies.ising_magnetisation`) or None.
  """
  from cmm_core.energies import ising_spins
  N = L * L
  values = (2.0 * np.arange(N + 1) - N) / N
  fig = go.Figure()
  for i, (label, x) in enumerate(samples.items()):
    x = as_points(x)
    if x.shape[1] != N:
      raise ValueError(f"magnetisation_figure: {label}'s samples have {x.shape[1]} columns, L = {L} "
                       f"needs {N}")
    x = x[np.all(np.isfinite(x), 1)]
    ups = (ising_spins(x, seed=seed) > 0).sum(1)
    p = np.bincount(ups, minlength=N + 1) / max(1, len(ups))
    fig.add_trace(go.Bar(x=values, y=p, name=f"{label} ({len(ups)} samples)", opacity=0.75,
                         marker={"color": _CURVE_COLORS[i % len(_CURVE_COLORS)]},
                         hovertemplate="m %{x:+.3f}<br>share %{y:.3f}<extra></extra>"))
  if exact is not None:
    m, p = exact
    fig.add_trace(go.Scatter(x=m, y=p, mode="lines+markers", name="exact (enumeration)",
                             line={"color": "#c0392b", "dash": "dash", "width": 1.5}, marker={"size": 5}))
  fig.update_layout(barmode="group", bargap=0.15)
  return layout(fig, title, "m = mean of the spins", "share of samples", height=height, legend=True)


def sample_stats(energy, x, reference=None, *, n: int = 1024, seed: int = 0) -> dict:
  """Sample-only numbers any sampler has (no density needed).

  Args:
    energy: the :class:`~cmm_core.energies.Energy`.
    x: samples ``[m, d]``.
    reference: exact samples ``[k, d]`` (e.g. ``energies.grid_samples``) or None.
    n: points per side for the energy distance (seeded subsets, the same ``n`` for every sampler).

  Returns:
    ``{"n": finite samples, "mean_energy": mean E over them, "energy_distance": to ``reference``
    (None without one), "n_nonfinite": int}``.
  """
  from cmm_core.metrics import energy_distance
  x = as_points(x)
  good = x[np.all(np.isfinite(x), axis=1)]
  out = {"n": int(good.shape[0]), "n_nonfinite": int(x.shape[0] - good.shape[0]),
         "mean_energy": math.nan, "energy_distance": None}
  if good.shape[0]:
    e = np.asarray(energy(good), np.float64)
    out["mean_energy"] = float(np.mean(e)) if np.all(np.isfinite(e)) else math.nan
  if reference is not None:
    out["energy_distance"] = (energy_distance(subsample(good, n, seed), subsample(as_points(reference), n, seed + 1))
                              if good.shape[0] >= 2 else math.nan)
  return out


def _num(v, digits: int = 4) -> str:
  if v is None:
    return "—"
  v = float(v)
  if not math.isfinite(v):
    return "n/a"
  return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.4g}"


def comparison_rows(*, models: dict, mcmc: Optional[dict], exact: dict, n_sites: Optional[int] = None,
                    mcmc_label: str = "MCMC") -> list[dict]:
  """The rows of the models / MCMC table, as strings (``"—"``: the sampler has no such number).

  Args:
    models: ``{column name: {"metrics": FreeEnergyMetrics, "stats": sample_stats(...), "grad_evals": int,
      "seconds": float} or None (not trained)}``, one column per fitted model, in order.
    mcmc: ``{"stats": sample_stats(...), "grad_evals": int, "seconds": float, "acceptance": float,
      "n_chains": int, "n_steps": int}`` or None.
    exact: ``{"log_z": float | None, "log_z_source": str, "stats": sample_stats of exact samples or
      None, "free_energy_per_site": float | None}``.
    n_sites: the lattice's ``N`` (adds ``F / N`` rows) or None.
    mcmc_label: the MCMC column's name, e.g. ``"MCMC (MALA)"``.

  Returns:
    ``[{"quantity": str, <one key per model>: str, mcmc_label: str, "exact": str}, ...]``.
  """
  ms = mcmc["stats"] if mcmc else None
  es = exact.get("stats")
  log_z = exact.get("log_z")
  rows = []

  def row(q, of_model, c="—", e="—"):
    """``of_model(flow) -> str`` for each model's column."""
    rows.append({"quantity": q, **{label: of_model(f) if f else "—" for label, f in models.items()},
                 mcmc_label: c, "exact": e})

  def of_metrics(fn):
    return lambda f: fn(f["metrics"]) if f.get("metrics") is not None else "—"

  def of_stats(key):
    return lambda f: _num(f["stats"][key]) if f.get("stats") else "—"

  row("energy evaluations (budget)", lambda f: f"{f['grad_evals']:,}",
      f"{mcmc['grad_evals']:,}" if mcmc else "—")
  row("seconds (wall clock, any compilation included)", lambda f: _num(f["seconds"], 1),
      _num(mcmc["seconds"], 1) if mcmc else "—")
  if any(f and f.get("metrics") is not None for f in models.values()):
    row("ELBO = E_q[−E − log q] (± s.e.)", of_metrics(lambda m: f"{_num(m.elbo)} ± {_num(m.elbo_se)}"))
    row("free energy F = −ELBO", of_metrics(lambda m: _num(-m.elbo)), "— (no density)",
        _num(None if log_z is None else -log_z))
    row("importance-weighted log Z", of_metrics(lambda m: _num(m.iw_log_z)), "— (no density)",
        _num(log_z) + (f" ({exact.get('log_z_source')})" if log_z is not None and exact.get("log_z_source") else ""))
    row("ESS of the importance weights", of_metrics(lambda m: f"{m.ess:,.0f} of {m.n:,} ({m.ess / m.n:.0%})"))
    if log_z is not None:
      row("gap log Z − ELBO (≥ 0)", of_metrics(lambda m: _num(log_z - m.elbo)))
      row("gap log Z − IW log Z", of_metrics(lambda m: _num(log_z - m.iw_log_z)))
    if n_sites:
      row("free energy per site F / N", of_metrics(lambda m: _num(-m.elbo / n_sites, 5)), "—",
          _num(exact.get("free_energy_per_site"), 5))
  row("mean energy ⟨E⟩ of the samples", of_stats("mean_energy"),
      _num(ms["mean_energy"]) if ms else "—", _num(es["mean_energy"]) if es else "—")
  if es is not None or any(f and f.get("stats") and f["stats"].get("energy_distance") is not None
                           for f in models.values()):
    row("energy distance to exact samples", of_stats("energy_distance"),
        _num(ms["energy_distance"]) if ms else "—",
        (_num(es["energy_distance"]) + " (a second exact draw: the noise level)") if es and es.get("energy_distance") is not None
        else "—")
  if mcmc:
    row("acceptance rate", lambda f: "—", f"{mcmc['acceptance']:.0%}")
    row("chains × transitions", lambda f: "—", f"{mcmc['n_chains']} × {mcmc['n_steps']}")
  return rows
