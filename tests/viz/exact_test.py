"""Tests for cmm_core.viz.exact: the exact (untrained) MM, CMM and Brenier panels."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from cmm_core import closed_form
from cmm_core.viz import exact as ev, panels


class GaussianBase:
  """A 1D fitted-model stand-in whose base is N(mean, std^2) (the FittedModel protocol only)."""

  def __init__(self, model, mean, std):
    self.model, self.mean, self.std = model, mean, std
    self.dim = 1
    self.info = {"dim": 1, "status": "done"}
    self.history = [{"step": 1, "loss": 0.0, "seconds": 0.1}]

  def sample_base(self, n, seed=0):
    z = np.random.default_rng(seed).standard_normal((n, 1))
    return (self.mean + self.std * z).astype(np.float32)

  def base_log_density(self, x):
    x = np.asarray(x, np.float64)[:, 0]
    return -0.5 * ((x - self.mean) / self.std) ** 2 + 3.0  # unnormalised on purpose


def _valid(fig: go.Figure) -> go.Figure:
  """Round-trips through plotly's validation (the fast path skips it) and checks the traces."""
  checked = go.Figure(fig.to_dict())
  assert checked.data, "empty figure"
  for t in checked.data:
    if t.type in ("scatter", "histogram"):
      assert t.x is not None and len(t.x) > 0, t.name
  return checked


def _ks(samples: np.ndarray, x: np.ndarray, density: np.ndarray) -> float:
  """Kolmogorov distance between samples and a density on a grid (normalised there)."""
  cdf = np.concatenate([[0.0], np.cumsum(np.diff(x) * (density[1:] + density[:-1]) / 2)])
  cdf /= cdf[-1]
  s = np.sort(samples)
  emp = np.arange(1, s.size + 1) / s.size
  return float(np.max(np.abs(np.interp(s, x, cdf) - emp)))


# ----------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mean,std", [(0.0, 0.25), (2.0, 1.0), (-1.5, 3.0)])
def test_gaussian_1d_closed_forms(mean, std):
  p = ev.gaussian_panels_1d(mean, std)
  mm, cmm, br = (p["methods"][k] for k in ("mm", "cmm", "brenier"))
  assert mm["base_std"] == pytest.approx(1 / std)  # MM base N(0, 1/s^2)
  assert mm["base_mean"] == 0.0 and mm["target_mean"] == 0.0  # the mean is dropped
  assert cmm["base_std"] == pytest.approx(std ** (1 / 3))  # CMM base variance s^(2/3)
  assert cmm["base_mean"] == pytest.approx(mean / (1 + std ** (2 / 3)))
  assert br["base_mean"] == 0.0 and br["base_std"] == pytest.approx(1.0)
  for v in p["methods"].values():  # each map pushes its base onto its target exactly
    assert v["map_offset"] + v["map_slope"] * v["base_mean"] == pytest.approx(v["target_mean"])
    assert v["map_slope"] * v["base_std"] == pytest.approx(std)
    x = p["x"]  # one common grid for all panels, holding every base and target
    assert x[0] <= v["base_mean"] - 3 * v["base_std"] and x[-1] >= v["base_mean"] + 3 * v["base_std"]
    assert np.trapezoid(v["base_density"], x) == pytest.approx(1.0, abs=1e-3)
  figs = ev.gaussian_figures(p)
  ranges = {tuple(_valid(f).layout.xaxis.range) for pair in figs.values() for f in pair}
  assert len(ranges) == 1  # every panel on the same axis range


def test_gaussian_2d_ellipses_match_the_eigenvalues():
  stds, angle, mean = [2.0, 0.5], 30.0, [1.0, -0.5]
  p = ev.gaussian_panels_2d(stds, angle, mean, n_samples=20_000, seed=1)
  S = panels.covariance_from_axes(stds, angle)
  expected = {"mm": closed_form.psd_power(S, -1.0), "cmm": closed_form.psd_power(S, 1 / 3),
              "brenier": np.eye(2)}
  for kind, cov in expected.items():
    v = p["methods"][kind]
    eig = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(v["base_axes"] ** 2, eig, rtol=1e-9)
    np.testing.assert_allclose(v["base_cov"], cov, rtol=1e-9, atol=1e-12)
    for k in (1, 2):  # every point of the k-sigma ellipse is at Mahalanobis distance k
      d = v["ellipses"][k] - v["base_mean"]
      maha = np.sqrt(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d))
      np.testing.assert_allclose(maha, k, rtol=1e-9)
      radius = np.linalg.norm(d, axis=1)
      assert radius.max() == pytest.approx(k * math.sqrt(eig[-1]), rel=5e-3)
      assert radius.min() == pytest.approx(k * math.sqrt(eig[0]), rel=5e-3)
    # The base samples pushed by the map have the target's law (centred for MM).
    target_mean = np.zeros(2) if kind == "mm" else np.asarray(mean)
    np.testing.assert_allclose(v["images"].mean(0), target_mean, atol=0.05)
    np.testing.assert_allclose(np.cov(v["images"].T), S, rtol=0.05, atol=0.03)
    # The warped grid is the map applied to the base grid, and every panel fits the range.
    m = v["map"]
    np.testing.assert_allclose(m["warped"], m["grid"] @ v["map_matrix"].T + v["map_offset"])
    r = p["range"]
    for pts in (v["ellipses"][2], v["target_ellipses"][2], m["warped"].reshape(-1, 2)):
      assert np.all(pts >= r[:, 0] - 1e-9) and np.all(pts <= r[:, 1] + 1e-9)
  assert p["methods"]["cmm"]["base_mean"] == pytest.approx(
      np.linalg.solve(np.eye(2) + expected["cmm"], mean))
  np.testing.assert_allclose(p["methods"]["mm"]["base_stds"], 1 / np.asarray(stds))
  np.testing.assert_allclose(p["methods"]["cmm"]["base_stds"], np.asarray(stds) ** (1 / 3))
  figs = ev.gaussian_figures(p)
  assert {tuple(_valid(f).layout.xaxis.range) for pair in figs.values() for f in pair} == {
      tuple(p["range"][0])}


def test_what_changed_names_the_factors():
  text = ev.what_changed({"mean": 0.0, "std": 1.0}, {"mean": 0.0, "std": 0.25})
  assert text.startswith("The target got 4x narrower")
  assert "MM base got 4x wider" in text and "CMM base 1.59x narrower" in text
  assert "Brenier base stays N(0, 1)" in text
  text = ev.what_changed(None, {"mean": 0.0, "std": 8.0})
  assert "standard normal" in text and "8x wider" in text and "MM base is 8x narrower" in text
  assert "CMM base 2x wider" in text
  assert "identity" in ev.what_changed(None, {"mean": 0.0, "std": 1.0})
  text = ev.what_changed({"mean": 0.0, "std": 1.0}, {"mean": 2.0, "std": 1.0})
  assert "moved from 0 to 2" in text and "MM drops it" in text and "moved from 0 to 1" in text
  assert ev.what_changed({"mean": 1.0, "std": 2.0}, {"mean": 1.0, "std": 2.0}) == "Nothing changed."
  old = {"mean": [0, 0], "stds": [2.0, 0.5], "angle": 30}
  assert "turned by 30°" in ev.what_changed(old, {**old, "angle": 60})
  assert "changes nothing" in ev.what_changed({**old, "stds": [1, 1]},
                                              {**old, "stds": [1, 1], "angle": 90})
  text = ev.what_changed(old, {**old, "stds": [2.0, 4.0]})
  assert "8x wider along axis 2" in text and "MM base got 8x narrower along it" in text
  assert "along axis 1" not in text


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="std must be positive"):
    ev.gaussian_panels_1d(0.0, -1.0)
  with pytest.raises(ValueError, match="mean must be a finite number"):
    ev.gaussian_panels_1d(float("nan"), 1.0)
  with pytest.raises(ValueError, match="stds must be 2"):
    ev.gaussian_panels_2d([1.0], 0.0, [0.0, 0.0])
  with pytest.raises(ValueError, match="stds must be positive"):
    ev.gaussian_panels_2d([1.0, 0.0], 0.0, [0.0, 0.0])
  with pytest.raises(ValueError, match="mean must be 2"):
    ev.gaussian_panels_2d([1.0, 1.0], 0.0, [0.0])
  with pytest.raises(ValueError, match="cannot compare a 2D target with a 1D one"):
    ev.what_changed({"mean": 0.0, "std": 1.0}, {"mean": [0, 0], "stds": [1, 1], "angle": 0})
  with pytest.raises(ValueError, match="'std'"):
    ev.what_changed(None, {"mean": 0.0})
  with pytest.raises(ValueError, match="2D target"):
    ev.exact_1d("eight_gaussians")
  with pytest.raises(ValueError, match="unknown target"):
    ev.exact_1d("no_such_target")
  with pytest.raises(ValueError, match="'std' must be in"):
    ev.exact_1d("gaussian", params={"std": -1.0})
  with pytest.raises(ValueError, match="1D only"):
    ev.exact_1d(np.zeros((50, 2)))
  with pytest.raises(ValueError, match="NaN"):
    ev.exact_1d(np.array([0.0, 1.0, np.nan] * 10))
  with pytest.raises(ValueError, match="built-in target name"):
    ev.exact_1d(np.arange(50.0), params={"std": 1.0})
  with pytest.raises(ValueError, match="1D models only"):
    ev.model_base_1d(type("M2", (), {"dim": 2, "info": {"dim": 2}})(), {})


# ----------------------------------------------------------------------------
# 1D, any target.
# ----------------------------------------------------------------------------


def test_exact_1d_gaussian_matches_the_closed_form():
  ex = ev.exact_1d("gaussian", params={"mean": 1.0, "std": 0.5})
  assert ex["cmm"]["base_std"] == pytest.approx(0.5 ** (1 / 3), rel=1e-4)
  assert ex["cmm"]["base_mean"] == pytest.approx(1.0 / (1 + 0.5 ** (2 / 3)), abs=1e-4)
  assert ex["mm"]["base_std"] == pytest.approx(2.0, rel=1e-4)
  assert ex["shift"] == pytest.approx(1.0, abs=1e-6)  # MM solved on the centred target
  assert ex["target_mean"] == pytest.approx(1.0, abs=1e-6)
  assert ex["target_std"] == pytest.approx(0.5, rel=1e-4)
  assert ex["cmm"]["converged"] and ex["mm"]["converged"]
  # The map on the display grid is the closed-form affine map.
  cmm = ex["cmm"]
  expected = closed_form.gaussian_cmm_transport(cmm["map_x"][:, None], 1.0, 0.25)[:, 0]
  inside = np.abs(cmm["map_x"] - cmm["base_mean"]) < 3 * cmm["base_std"]
  np.testing.assert_allclose(cmm["map_y"][inside], expected[inside], atol=1e-4)


@pytest.mark.parametrize("target,params", [("mixture", {"std": 0.3}), ("skewed", {})])
def test_pushed_base_samples_have_the_target_law(target, params):
  ex = ev.exact_1d(target, params=params, n_push=20_000)
  for kind in ("cmm", "mm"):
    side = ex[kind]
    assert side["pushed"].shape == (20_000,) and np.all(np.isfinite(side["pushed"]))
    assert _ks(side["pushed"], side["grid_x"], side["grid_target"]) < 0.01
    # the base samples follow the base
    assert _ks(side["base_samples"], side["grid_x"], side["grid_base"]) < 0.01
  # MM's target is the centred one: its pushed samples have mean 0, CMM's the target mean
  assert abs(ex["mm"]["pushed"].mean()) < 0.02
  assert ex["cmm"]["pushed"].mean() == pytest.approx(ex["target_mean"], abs=0.02)
  figs = ev.exact_1d_figures(ex)
  for kind in ("cmm", "mm"):
    base, tmap, pushed = (_valid(f) for f in figs[kind])
    assert tuple(base.layout.xaxis.range) == tuple(ex["ranges"]["base"])
    assert tuple(pushed.layout.xaxis.range) == tuple(ex["ranges"]["data"])


def test_exact_1d_from_samples_and_the_model_overlay():
  rng = np.random.default_rng(0)
  data = (0.7 + 0.5 * rng.standard_normal(4000))[:, None]
  ex = ev.exact_1d(data, label="my data")
  assert ex["source"] == "samples" and ex["n_data"] == 4000 and ex["bandwidth"] > 0
  assert ex["label"] == "my data"
  assert _ks(ex["cmm"]["pushed"], ex["cmm"]["grid_x"], ex["cmm"]["grid_target"]) < 0.01
  # quantile_error: zero against itself, a shift of one base std reads 1 (0 when centred)
  cmm = ex["cmm"]
  assert ev.quantile_error(cmm, cmm["grid_x"], cmm["grid_base"]) < 2e-3
  moved = cmm["grid_x"] + cmm["base_std"]
  assert ev.quantile_error(cmm, moved, cmm["grid_base"]) == pytest.approx(1.0, abs=5e-3)
  assert ev.quantile_error(cmm, moved, cmm["grid_base"], center=True) < 2e-3
  # A model whose base is (close to) the exact one, and one whose base is 20% too wide.
  good = ev.model_base_1d(GaussianBase("cmm", cmm["base_mean"], cmm["base_std"]), cmm)
  wide = ev.model_base_1d(GaussianBase("cmm", cmm["base_mean"], 1.2 * cmm["base_std"]), cmm)
  assert good["quantile_error"] < 0.02 < wide["quantile_error"]
  assert good["samples"].shape == (2048,) and not good["centred"]
  assert np.trapezoid(good["density"], good["x"]) == pytest.approx(1.0, abs=1e-6)
  # MM is unique up to translation: a shifted MM base compares equal after centring.
  mm = ex["mm"]
  shifted = ev.model_base_1d(GaussianBase("mm", mm["base_mean"] + 0.5, mm["base_std"]), mm)
  assert shifted["centred"] and shifted["quantile_error"] < 0.05
  figs = ev.exact_1d_figures(ex, model=good, model_kind="cmm")
  names = [t.name for t in _valid(figs["cmm"][0]).data]
  assert "trained model: base density" in names and "trained model: base samples" in names
  assert not any("trained" in (t.name or "") for t in figs["mm"][0].data)
