"""Tests for cmm_core.viz.figures: figure builders on hand-made arrays."""

import numpy as np
import plotly.graph_objects as go
import pytest

from cmm_core.viz import figures, registry


def _types(fig):
  return [type(t).__name__ for t in fig.data]


def _finite(values):
  arr = np.asarray([v for v in np.asarray(values, dtype=object).ravel() if v is not None],
                   dtype=np.float64)
  arr = arr[~np.isnan(arr)]  # NaN separates line pieces in polylines; inf never allowed
  return arr.size > 0 and np.all(np.isfinite(arr))


def _view_1d(rng):
  x = np.linspace(-3, 3, 200)
  return {
      "dim": 1, "dims": (0,), "view_dim": 1, "labels": ["x1"],
      "data": rng.normal(0, 2, (500, 1)), "base": rng.normal(0, 1, (500, 1)),
      "samples": rng.normal(0, 2, (500, 1)), "n_nonfinite": 0,
      "base_grid": {"x": x}, "base_density": np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi),
      "map": {"x": x, "y": 2 * x},
      "ranges": {"base": np.array([[-3.0, 3.0]]), "data": np.array([[-6.0, 6.0]]),
                 "map": np.array([[-3.0, 3.0], [-6.0, 6.0]]), "common": np.array([[-6.0, 6.0]])},
      "equal_aspect": False, "slice_at": None,
  }


def _view_2d(rng):
  g = np.linspace(-2, 2, 30)
  xx, yy = np.meshgrid(g, g)
  t = np.linspace(0, 1, 10)
  grid = np.stack([np.stack([np.full_like(t, s), t], 1) for s in t]
                  + [np.stack([t, np.full_like(t, s)], 1) for s in t])
  base = rng.standard_normal((400, 2))
  return {
      "dim": 2, "dims": (0, 1), "view_dim": 2, "labels": ["x1", "x2"],
      "data": 2 * rng.standard_normal((400, 2)), "base": base, "samples": 2 * base,
      "n_nonfinite": 0, "base_grid": {"x": g, "y": g},
      "base_density": np.exp(-(xx ** 2 + yy ** 2) / 2) / (2 * np.pi),
      "map": {"grid": grid, "warped": 2 * grid, "arrow_from": base[:20], "arrow_to": 2 * base[:20]},
      "ranges": {k: np.array([[-6.0, 6.0], [-6.0, 6.0]]) for k in ("data", "map", "common")}
      | {"base": np.array([[-3.0, 3.0], [-3.0, 3.0]])},
      "equal_aspect": True, "slice_at": None,
  }


def test_base_figure_1d(rng):
  v = _view_1d(rng)
  fig = figures.base_figure(v["base"], (v["base_grid"]["x"],), v["base_density"],
                            axis_range=v["ranges"]["base"])
  assert isinstance(fig, go.Figure) and _types(fig) == ["Histogram", "Scatter"]
  assert fig.data[0].histnorm == "probability density"
  assert _finite(fig.data[0].x) and _finite(fig.data[1].y)
  assert tuple(fig.layout.xaxis.range) == (-3.0, 3.0)
  assert "e<sup>−w</sup>" in fig.layout.title.text
  only_curve = figures.base_figure(v["base"], (v["base_grid"]["x"],), v["base_density"],
                                   show_samples=False)
  assert _types(only_curve) == ["Scatter"]


def test_base_figure_2d(rng):
  v = _view_2d(rng)
  fig = figures.base_figure(v["base"], (v["base_grid"]["x"], v["base_grid"]["y"]),
                            v["base_density"], axis_range=v["ranges"]["base"], equal_aspect=True,
                            max_points=100)
  assert _types(fig) == ["Heatmap", "Scatter"]
  assert np.asarray(fig.data[0].z).shape == (30, 30) and _finite(fig.data[0].z)
  assert len(fig.data[1].x) == 100
  assert fig.layout.yaxis.scaleanchor == "x"


def test_map_figure_1d(rng):
  v = _view_1d(rng)
  fig = figures.map_figure(v["map"], x_range=(-3, 3), y_range=(-6, 6))
  assert _types(fig) == ["Scatter", "Scatter"]
  assert fig.data[0].line.dash == "dash"  # the identity
  np.testing.assert_allclose(fig.data[1].y, 2 * np.asarray(fig.data[1].x))
  assert "∇w*" in fig.layout.title.text


def test_map_figure_2d_layers(rng):
  v = _view_2d(rng)
  fig = figures.map_figure(v["map"], equal_aspect=True)
  assert _types(fig) == ["Scatter"] * 4
  assert [t.name for t in fig.data][:2] == ["base grid", "warped grid"]
  for t in fig.data:
    assert _finite(t.x) and _finite(t.y)
  # one arrow = start, end, gap: 20 arrows -> 60 points
  assert len(fig.data[2].x) == 60
  fewer = figures.map_figure(v["map"], show_grid=False, show_arrows=False)
  assert [t.name for t in fewer.data] == ["warped grid"]


def test_samples_figure(rng):
  v1 = _view_1d(rng)
  fig = figures.samples_figure(v1["data"], v1["samples"], axis_range=v1["ranges"]["data"])
  assert _types(fig) == ["Histogram", "Histogram"]
  assert fig.data[0].xbins.size == fig.data[1].xbins.size  # same bins to compare
  assert fig.layout.barmode == "overlay"
  v2 = _view_2d(rng)
  fig = figures.samples_figure(v2["data"], v2["samples"], axis_range=v2["ranges"]["data"],
                               equal_aspect=True)
  assert [t.name for t in fig.data] == ["data", "model samples"]
  assert tuple(fig.layout.xaxis.range) == (-6.0, 6.0)
  assert _types(figures.samples_figure(v2["data"], v2["samples"], show_data=False)) == ["Scatter"]


def test_loss_figure():
  hist = {"step": np.array([50.0, 100.0, 150.0]), "loss": np.array([1.0, 0.5, 0.25]),
          "seconds": np.array([1.0, 2.0, 3.0]), "energy_distance": np.array([0.3, 0.2, 0.1])}
  fig = figures.loss_figure(hist)
  np.testing.assert_array_equal(fig.data[0].x, hist["step"])
  np.testing.assert_array_equal(fig.data[0].y, hist["loss"])
  assert "step" in fig.data[0].hovertemplate
  assert fig.layout.xaxis.title.text == "training step"
  other = figures.loss_figure(hist, metric="energy_distance")
  np.testing.assert_array_equal(other.data[0].y, hist["energy_distance"])
  live = figures.loss_figure(hist, total_steps=1000)
  assert tuple(live.layout.xaxis.range) == (0, 1000)
  empty = figures.loss_figure({"step": [], "loss": [], "seconds": []})
  assert len(empty.layout.annotations) == 1


def test_target_preview(rng):
  fig1 = figures.target_preview(rng.standard_normal((300, 1)))
  assert _types(fig1) == ["Histogram"]
  fig2 = figures.target_preview(rng.standard_normal((10_000, 2)), max_points=1000)
  assert _types(fig2) == ["Scatter"] and len(fig2.data[0].x) == 1000
  fig5 = figures.target_preview(rng.standard_normal((300, 5)), dims=(3, 4))
  assert fig5.layout.xaxis.title.text == "x4" and fig5.layout.yaxis.title.text == "x5"


@pytest.mark.parametrize("make_view", [_view_1d, _view_2d])
@pytest.mark.parametrize("same_axes", [True, False])
def test_panel_figures(rng, make_view, same_axes):
  v = make_view(rng)
  figs = figures.panel_figures(v, model="cmm", same_axes=same_axes)
  assert len(figs) == 3 and all(isinstance(f, go.Figure) for f in figs)
  titles = [f.layout.title.text for f in figs]
  assert titles == ["base e<sup>−w</sup>", "transport map ∇w*", "samples vs data"]
  for f in figs:
    assert len(f.data) > 0
    f.to_json()  # serialisable for the browser
  if same_axes:
    ranges = {tuple(f.layout.xaxis.range) for f in figs}
    assert len(ranges) == 1
  hidden = figures.panel_figures(v, model="cmm", layers=[])
  assert all(len(f.data) <= 2 for f in hidden)  # 1D map keeps its curve


def test_labels_for_other_models():
  assert "e<sup>−u</sup>" in registry.labels_for("mm")["base"]
  assert registry.labels_for("something-new")["map"] == "transport map T"
