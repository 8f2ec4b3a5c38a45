"""Tests for cmm_core.viz.panels: the arrays behind the panels."""

import math

import numpy as np
import pytest

from cmm_core.viz import panels


def _sqrtm_pow(S, p):
  w, V = np.linalg.eigh(S)
  return (V * w ** p) @ V.T


class GaussianCMM:
  """The closed-form CMM of a Gaussian, through the FittedModel protocol only.

  Base N(a, C) with C = S^{1/3}, map x -> a + C x; base_log_density is left unnormalised, as a
  model with an unknown normalising constant would give it.
  """

  model = "cmm"

  def __init__(self, mean, cov):
    mean = np.atleast_1d(np.asarray(mean, np.float64))
    cov = np.atleast_2d(np.asarray(cov, np.float64))
    self.d = mean.shape[0]
    self.C = _sqrtm_pow(cov, 1 / 3)
    self.a = np.linalg.solve(np.eye(self.d) + self.C, mean)
    self.Ci = np.linalg.inv(self.C)
    self.config = {}
    self.history = [{"step": 10 * (i + 1), "loss": 1.0 / (i + 1), "seconds": 0.5 * (i + 1)}
                    for i in range(5)]
    self.info = {"dim": self.d, "status": "done", "message": "", "warnings": []}

  def sample_base(self, n, seed=0):
    z = np.random.default_rng(seed).standard_normal((n, self.d))
    return (self.a + z @ _sqrtm_pow(self.C, 0.5).T).astype(np.float32)

  def transport(self, x):
    return (self.a + np.asarray(x, np.float64) @ self.C.T).astype(np.float32)

  def sample(self, n, seed=0):
    return self.transport(self.sample_base(n, seed))

  def base_log_density(self, x):
    x = np.asarray(x, np.float64) - self.a
    return -0.5 * np.einsum("ni,ij,nj->n", x, self.Ci, x) + 3.0  # unnormalised on purpose

  def log_prob(self, y):
    raise NotImplementedError


def _finite(*arrays):
  return all(np.all(np.isfinite(np.asarray(a, np.float64))) for a in arrays)


def test_panel_data_1d_density_is_normalised_and_matches_the_base(rng):
  data = rng.normal(1.0, 2.0, size=(3000, 1))
  model = GaussianCMM(data.mean(0), np.cov(data.T))
  view = panels.panel_data(model, data, n_samples=1500, seed=0)
  assert view["view_dim"] == 1 and view["dims"] == (0,)
  assert view["base"].shape == (1500, 1) and view["samples"].shape == (1500, 1)
  assert view["data"].shape == (1500, 1)
  x, p = view["base_grid"]["x"], view["base_density"]
  assert x.shape == p.shape
  assert _finite(x, p, view["base"], view["samples"], view["map"]["x"], view["map"]["y"])
  assert np.sum(p) * (x[1] - x[0]) == pytest.approx(1.0, rel=1e-6)
  # The grid covers the base's mass, so the numerical normalisation gives the exact density.
  var = float(model.C[0, 0])
  exact = np.exp(-0.5 * (x - model.a[0]) ** 2 / var) / math.sqrt(2 * math.pi * var)
  np.testing.assert_allclose(p, exact, atol=2e-3 * exact.max())
  # The map panel is T on a grid: here a + C x.
  np.testing.assert_allclose(view["map"]["y"], model.a[0] + var * view["map"]["x"], rtol=1e-5,
                             atol=1e-5)
  # Samples are the images of the base samples.
  np.testing.assert_allclose(view["samples"], model.transport(view["base"]), rtol=1e-5, atol=1e-5)


def test_panel_data_2d_shapes_ranges_and_warped_grid(rng):
  data = rng.multivariate_normal([1.0, -1.0], [[2.0, 0.6], [0.6, 1.0]], size=2000)
  model = GaussianCMM(data.mean(0), np.cov(data.T))
  view = panels.panel_data(model, data, n_samples=800, seed=1, grid_size=40, n_arrows=50,
                           n_lines=7, line_points=20)
  assert view["view_dim"] == 2 and view["labels"] == ["x1", "x2"]
  gx, gy, p = view["base_grid"]["x"], view["base_grid"]["y"], view["base_density"]
  assert gx.shape == (40,) and gy.shape == (40,) and p.shape == (40, 40)
  assert np.sum(p) * (gx[1] - gx[0]) * (gy[1] - gy[0]) == pytest.approx(1.0, rel=1e-6)
  m = view["map"]
  assert m["grid"].shape == (14, 20, 2) and m["warped"].shape == (14, 20, 2)
  assert m["arrow_from"].shape == (50, 2) and m["arrow_to"].shape == (50, 2)
  np.testing.assert_allclose(m["warped"].reshape(-1, 2), model.transport(m["grid"].reshape(-1, 2)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(m["arrow_to"], model.transport(m["arrow_from"]), rtol=1e-5, atol=1e-5)
  assert _finite(p, m["grid"], m["warped"], view["base"], view["samples"], view["data"])
  for name in ("base", "data", "map", "common"):
    r = view["ranges"][name]
    assert r.shape == (2, 2) and np.all(r[:, 1] > r[:, 0])
  if view["equal_aspect"]:  # square boxes when the two coordinates have comparable spreads
    for r in view["ranges"].values():
      assert r[0, 1] - r[0, 0] == pytest.approx(r[1, 1] - r[1, 0])
  common = view["ranges"]["common"]
  assert np.all(common[:, 0] <= view["ranges"]["base"][:, 0] + 1e-9)
  assert np.all(common[:, 1] >= view["ranges"]["data"][:, 1] - 1e-9)
  assert view["slice_at"] is None


def test_panel_data_high_dim_shows_a_pair_of_coordinates(rng):
  data = rng.standard_normal((500, 4)) * np.array([1.0, 2.0, 3.0, 0.5])
  model = GaussianCMM(data.mean(0), np.cov(data.T))
  view = panels.panel_data(model, data, n_samples=300, dims=(2, 0), grid_size=30,
                           labels=["a", "b", "c", "d"])
  assert view["dims"] == (2, 0) and view["labels"] == ["c", "a"]
  assert view["base"].shape == (300, 2) and view["data"].shape == (300, 2)
  assert view["base_density"].shape == (30, 30)
  assert view["slice_at"].shape == (4,)
  base_std = np.sqrt(np.diag(model.C))  # the base is N(a, C)
  np.testing.assert_allclose(view["base"].std(0), base_std[[2, 0]], rtol=0.15)


def test_panel_data_rejects_bad_input(rng):
  data = rng.standard_normal((100, 2))
  model = GaussianCMM(np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match="dims"):
    panels.panel_data(model, data, dims=(0, 0))
  with pytest.raises(ValueError, match="dims"):
    panels.panel_data(model, data, dims=(0, 2))
  with pytest.raises(ValueError, match="column"):
    panels.panel_data(model, rng.standard_normal((100, 3)))


def test_panel_data_drops_non_finite_images(rng):
  data = rng.standard_normal((200, 2))
  model = GaussianCMM(np.zeros(2), np.eye(2))
  good = model.transport

  def transport(x):
    y = good(x)
    y[::10] = np.nan
    return y

  model.transport = transport
  view = panels.panel_data(model, data, n_samples=100, grid_size=20)
  assert view["n_nonfinite"] == 10
  assert view["base"].shape == (90, 2) and _finite(view["base"], view["samples"])


def test_history_arrays():
  hist = [{"step": 50, "loss": 1.0, "seconds": 0.1},
          {"step": 100, "loss": 0.5, "seconds": 0.2, "energy_distance": 0.3, "note": "x"}]
  h = panels.history_arrays(hist)
  assert list(h) == ["step", "loss", "seconds", "energy_distance"]
  np.testing.assert_array_equal(h["step"], [50, 100])
  assert math.isnan(h["energy_distance"][0]) and h["energy_distance"][1] == 0.3
  empty = panels.history_arrays([])
  assert set(empty) == {"step", "loss", "seconds"} and empty["loss"].size == 0


def test_fit_summary():
  model = GaussianCMM(np.zeros(1), np.eye(1))
  s = panels.fit_summary(model)
  assert s["steps"] == 50 and s["seconds"] == pytest.approx(2.5)
  assert s["status"] == "done" and s["final_loss"] == pytest.approx(0.2) and s["model"] == "cmm"
  model.info.update(status="stopped", message="stopped by the user at step 50", steps_done=50,
                    fit_seconds=3.0)
  s = panels.fit_summary(model)
  assert s["status"] == "stopped" and "stopped" in s["message"] and s["seconds"] == 3.0


def test_start_and_pace_and_the_budget_note():
  # chunks of 10 steps at 5 ms each after a first chunk that also compiled for 3 s
  history = [{"step": 10 * k, "seconds": 3.0 + 0.05 * k, "loss": 1.0} for k in range(1, 6)]
  model = GaussianCMM(np.zeros(1), np.eye(1))
  model.history = history
  model.info.update(status="stopped", message="time budget of 3 s reached at step 50", steps_done=50)
  s = panels.fit_summary(model)
  assert s["seconds_per_step"] == pytest.approx(0.005) and s["start_seconds"] == pytest.approx(3.0)
  note = panels.budget_note(s)
  assert note.startswith("time budget of 3 s reached at step 50; about 3.0 s of it compiled")
  assert "5 ms per step" in note
  model.history = history[:1]  # one chunk: nothing to separate
  s = panels.fit_summary(model)
  assert s["start_seconds"] is None and "all of it went to compiling" in panels.budget_note(s)


def test_covariance_from_axes():
  np.testing.assert_allclose(panels.covariance_from_axes([2.0]), [[4.0]])
  cov = panels.covariance_from_axes([2.0, 0.5], 90.0)
  np.testing.assert_allclose(cov, [[0.25, 0.0], [0.0, 4.0]], atol=1e-12)
  cov = panels.covariance_from_axes([2.0, 0.5], 30.0)
  np.testing.assert_allclose(np.linalg.eigvalsh(cov), [0.25, 4.0], rtol=1e-12)
  with pytest.raises(ValueError):
    panels.covariance_from_axes([1.0, -1.0])


def test_data_summary(rng):
  x = rng.standard_normal((100, 3))
  s = panels.data_summary(x)
  assert (s["n"], s["d"]) == (100, 3)
  np.testing.assert_allclose(s["mean"], x.mean(0))


@pytest.mark.slow  # two minutes of compilation for one fit's samplers and maps
@pytest.mark.parametrize("name", ["eight_gaussians"])
def test_panel_data_on_a_real_cmm_fit(name):
  import cmm_core as cc
  data = cc.targets.make(name, n=512, seed=0)
  # a small network: the panels, not the fit, are checked here
  fitted = cc.fit("cmm", data, steps=20, seed=0, chunk_size=10, hidden=(8,), pieces=16, batch_size=64,
                  burn_in=0)
  view = panels.panel_data(fitted, data, n_samples=300, grid_size=30, n_arrows=30, n_lines=5,
                          line_points=10)
  assert view["base"].shape[1] == 2 and view["base"].shape[0] + view["n_nonfinite"] == 300
  assert _finite(view["base"], view["samples"], view["base_density"])
  assert np.sum(view["base_density"]) > 0
  assert np.mean(np.isfinite(view["map"]["warped"])) > 0.9
  h = panels.history_arrays(fitted.history)
  np.testing.assert_array_equal(h["step"], [10, 20])


def test_squeezed_panels_names_the_base_of_a_table_in_grams_and_millimetres(rng):
  from cmm_core.viz import figures
  # the closed-form CMM of a Gaussian like penguins' bill depth (mm) next to body mass (g): its base
  # N(a, S^{1/3}) sits near (6.6, 48), about 4,000 g below the data and 10x narrower in grams
  data = rng.multivariate_normal([17.0, 4200.0], [[4.0, 0.0], [0.0, 640000.0]], size=2000)
  view = panels.panel_data(GaussianCMM(data.mean(0), np.cov(data.T)), data, n_samples=500, seed=1,
                           grid_size=20, n_arrows=10, n_lines=5, line_points=10)
  assert figures.squeezed_panels(view) == ("base",)
  # the same shape centred and in one unit: every panel fills a fair share of the common range
  data = rng.multivariate_normal([0.0, 0.0], [[2.0, 0.6], [0.6, 1.0]], size=2000)
  view = panels.panel_data(GaussianCMM(data.mean(0), np.cov(data.T)), data, n_samples=500, seed=1,
                           grid_size=20, n_arrows=10, n_lines=5, line_points=10)
  assert figures.squeezed_panels(view) == ()
