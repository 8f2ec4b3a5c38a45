"""Explore figures of a fitted flow: contents, shapes and speed."""

import time

import jax
import numpy as np
import plotly.graph_objects as go
import pytest

import cmm_core as cc
from cmm_core.viz import flow
from cmm_core.models import maflow
from cmm_core.models.maflow import MAFlow, MAFlowFitted


def _random_fitted(d, seed=0, **hyper) -> MAFlowFitted:
  config = MAFlow(**hyper).resolve(d)[0]  # "auto" settings as for a few rows
  spec = maflow._spec(config, d)
  params = maflow.init_params(spec, jax.random.PRNGKey(seed), 1.0)
  extras = {"dim": d, "shift": np.full(d, 0.5, np.float32), "scale": 2.0, "laplacian_train": "exact"}
  info = {"dim": d, "n_data": 0, "status": "done", "message": "", "warnings": []}
  return MAFlowFitted(config=config, params=jax.tree_util.tree_map(np.asarray, params), extras=extras,
                      history=[], info=info)


def test_2d_figures():
  fitted = _random_fitted(2)
  data = cc.targets.make("two_moons", n=3000, seed=0)
  figs = flow.explore_figures(fitted, data, seed=0)
  assert [t for t, _ in figs] == ["flow animation", "density over time", "warped grid"]
  assert all(isinstance(f, go.Figure) for _, f in figs)
  anim = figs[0][1]
  assert len(anim.frames) == 21
  assert len(anim.frames[0].data[0].x) == 300
  # the first frame is the base in data units, the last the flow map's images
  x0 = fitted.sample_base(300, seed=0)
  np.testing.assert_allclose(anim.frames[-1].data[0].x, fitted.transport(x0)[:, 0], atol=1e-5)
  np.testing.assert_allclose(anim.frames[0].data[0].x, 0.5 + 2.0 * x0[:, 0], atol=1e-5)
  labels = [b["label"] for b in anim.layout.updatemenus[0].buttons]
  assert any("play" in s for s in labels) and any("pause" in s for s in labels)
  assert len(anim.layout.sliders[0].steps) == 21
  dens = figs[1][1]
  heat = [t for t in dens.data if isinstance(t, go.Heatmap)]
  assert len(heat) == 4
  # each heatmap is a density: it integrates to about one over the shown box (mass can leave the box)
  for h in heat:
    z = np.asarray(h.z)
    cell = (h.x[1] - h.x[0]) * (h.y[1] - h.y[0])
    assert 0.8 <= z.sum() * cell <= 1.01, z.sum() * cell
  grid = figs[2][1]
  names = [t.name for t in grid.data]
  assert "base grid" in names and "warped grid" in names


def test_1d_and_3d_figures():
  f1 = _random_fitted(1)
  data1 = cc.targets.make("mixture", n=500, seed=0)
  figs = flow.explore_figures(f1, data1, seed=0)
  assert len(figs) == 3 and all(isinstance(f, go.Figure) for _, f in figs)
  curves = [t for t in figs[1][1].data if isinstance(t, go.Scatter)]
  assert len(curves) == 4
  f3 = _random_fitted(3, symmetry="reflection")
  data3 = np.random.default_rng(0).normal(size=(400, 3))
  figs = flow.explore_figures(f3, data3, seed=0, n_particles=100)
  assert len(figs) == 3 and len(figs[0][1].frames) == 21


def test_wrong_data_shape_is_refused():
  with pytest.raises(ValueError, match="shape"):
    flow.explore_figures(_random_fitted(2), np.zeros((10, 3)))


@pytest.mark.slow
def test_figures_are_quick_for_a_default_model():
  data = cc.targets.make("eight_gaussians", n=2048, seed=0)
  fitted = cc.fit("maflow", data, steps=50, seed=0)
  flow.explore_figures(fitted, data, seed=0)  # compiles
  t0 = time.perf_counter()
  flow.explore_figures(fitted, data, seed=1)
  assert time.perf_counter() - t0 < 6.0  # three figures, < 2 s each
