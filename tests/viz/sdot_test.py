"""Tests for cmm_core.viz.sdot: the sdot explore figures."""

import time

import numpy as np
import plotly.graph_objects as go
import pytest

import cmm_core as cc
import jax
import jax.numpy as jnp
from cmm_core.models import sdot
from cmm_core.viz import sdot as sdot_viz

TINY = dict(hidden=(16, 16), batch_size=64, psi_steps=2)


def _untrained(data, seed=0, **hyper):
  """An SDOTFitted straight from init (no training, so no compilation), random psi."""
  m = sdot.SDOT(**{**TINY, **hyper})
  prepared, info = m.prepare(np.asarray(data, np.float32))
  static, state = m.init(jax.random.PRNGKey(seed), jnp.asarray(prepared))
  fitted = m.finalize(static, state, [], {"dim": prepared.shape[1], "n_data": prepared.shape[0],
                                  "warnings": [], **info})
  fitted.extras["psi"] = (0.05 * np.random.default_rng(seed).standard_normal(
      prepared.shape[0])).astype(np.float32)
  return fitted


@pytest.fixture(scope="module")
def fits():
  data2 = cc.targets.make("eight_gaussians", n=500, seed=0)
  data1 = cc.targets.make("two_moons", n=300, seed=0)
  return {
      "soft": (data2, _untrained(data2)),
      "hard": (data2, _untrained(data2, epsilon=0.0)),
      "latent1": (data1, _untrained(data1, latent_dim=1)),
  }


@pytest.mark.slow
def test_on_a_trained_model():
  data = cc.targets.make("eight_gaussians", n=400, seed=0)
  fitted = cc.fit("sdot", data, steps=20, seed=0, **TINY)
  figs = sdot_viz.explore_figures(fitted, data)
  assert [t for t, _ in figs] == ["Latent grid warped by the generator", "Samples and dual weights ψ",
                                  "Soft Laguerre cells"]


@pytest.mark.parametrize("which", ["soft", "hard"])
def test_2d_figures(fits, which):
  data, fitted = fits[which]
  figs = sdot_viz.explore_figures(fitted, data, seed=0)
  assert len(figs) == 3
  for title, fig in figs:
    assert isinstance(title, str) and title and isinstance(fig, go.Figure)
    assert len(fig.data) >= 2
  grid, psi_fig, cells = (f for _, f in figs)
  # the warped grid: 21 lines per direction of 80 points, broken by NaN
  lines = [t for t in grid.data if t.mode == "lines"]
  assert len(lines) == 2 and len(lines[0].x) == 21 * 81
  # the data coloured by psi
  coloured = [t for t in psi_fig.data if "ψ" in (t.name or "")][0]
  np.testing.assert_allclose(np.asarray(coloured.marker.color), fitted.psi()[:len(coloured.x)])
  heat = [t for t in cells.data if isinstance(t, go.Heatmap)]
  assert heat and np.asarray(heat[0].z).shape == (120, 120)
  if which == "soft":
    assert "entropy" in cells.layout.title.text
    assert np.nanmin(np.asarray(heat[0].z, float)) >= -1e-5
  else:
    assert "ε = 0" in cells.layout.title.text


def test_laguerre_cells_are_the_argmin(fits):
  data, fitted = fits["hard"]
  fig = sdot_viz.laguerre_figure(fitted, grid_size=30)
  heat = fig.data[0]
  gx, gy = np.asarray(heat.x), np.asarray(heat.y)
  xx, yy = np.meshgrid(gx, gy)
  pts = np.stack([xx.ravel(), yy.ravel()], 1)
  y, psi, s = fitted.data(), fitted.psi(), fitted.extras["scale"]
  cost = np.sum(((pts[:, None] - y[None]) / s) ** 2, -1)
  expected = np.argmax(psi[None] - cost, 1).reshape(30, 30)
  agree = np.mean(np.asarray(heat.text) == expected)
  assert agree > 0.99, agree  # float32 ties aside


def test_1d_latent_curve(fits):
  data, fitted = fits["latent1"]
  figs = sdot_viz.explore_figures(fitted, data)
  grid = figs[0][1]
  assert "1D latent" in grid.layout.title.text
  assert len(figs) == 3


def test_1d_data():
  data = cc.targets.make(cc.targets.names(dim=1)[0], n=300, seed=0)
  fitted = _untrained(data)
  figs = sdot_viz.explore_figures(fitted, data)
  assert len(figs) == 2  # no Laguerre panel outside 2D
  with pytest.raises(ValueError, match="2D"):
    sdot_viz.laguerre_figure(fitted)


def test_refuses_other_models_and_wrong_data(fits):
  data, fitted = fits["soft"]
  with pytest.raises(ValueError, match="sdot"):
    sdot_viz.explore_figures(object(), data)
  with pytest.raises(ValueError, match="column"):
    sdot_viz.explore_figures(fitted, np.zeros((10, 3)))


def test_figures_are_quick_on_a_full_size_model():
  data = cc.targets.make("eight_gaussians", n=4096, seed=0)
  fitted = _untrained(data)
  sdot_viz.explore_figures(fitted, data)  # compile once
  for name, fn in [("grid", lambda: sdot_viz.warped_grid_figure(fitted, data)),
                   ("psi", lambda: sdot_viz.psi_figure(fitted, data)),
                   ("cells", lambda: sdot_viz.laguerre_figure(fitted))]:
    t0 = time.perf_counter()
    fn()
    # < 2 s each on an idle 2-core CPU; the bound leaves room for a shared machine
    assert time.perf_counter() - t0 < 5.0, name


def test_epsilon_sweep_figure_has_one_panel_per_epsilon():
  rng = np.random.default_rng(0)
  data = rng.normal(size=(300, 2))
  results = [{"epsilon": e, "energy_distance": 0.01 * i, "samples": rng.normal(size=(200, 2))}
             for i, e in enumerate((0.0, 0.05, 0.1))]
  fig = sdot_viz.epsilon_sweep_figure(results, data)
  titles = [a.text for a in fig.layout.annotations]
  assert titles == ["ε = 0 · ED 0.0000", "ε = 0.05 · ED 0.0100", "ε = 0.1 · ED 0.0200"]
  assert len(fig.data) == 6 and all(len(t.x) == 200 or len(t.x) == 300 for t in fig.data)
  with pytest.raises(ValueError):
    sdot_viz.epsilon_sweep_figure([], data)
