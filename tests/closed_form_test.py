"""Tests for cmm_core.closed_form: Gaussian MM/CMM/Brenier formulas and the 1D grid oracles."""

import math

import numpy as np
import pytest
from scipy import stats

from cmm_core import closed_form as cf
from cmm_core import targets

N = 200_000


def _spd(d, seed):
  a = np.random.default_rng(seed).normal(size=(d, d))
  return a @ a.T + 0.5 * np.eye(d)


def _check_moments(y, mean, cov, rtol=0.02):
  """Sample moments of ``y`` against (mean, cov), relative to the scale of cov."""
  scale = math.sqrt(np.abs(cov).max())
  np.testing.assert_allclose(y.mean(0), mean, atol=rtol * scale)
  np.testing.assert_allclose(np.cov(y.T).reshape(cov.shape), cov, atol=rtol * np.abs(cov).max())


def _sample(mean, cov, seed=0):
  return np.random.default_rng(seed).multivariate_normal(mean, cov, size=N)


# ----------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------


def test_psd_power():
  s = _spd(3, 0)
  half = cf.psd_power(s, 0.5)
  np.testing.assert_allclose(half @ half, s, atol=1e-10)
  np.testing.assert_allclose(cf.psd_power(s, -1), np.linalg.inv(s), atol=1e-10)
  third = cf.psd_power(s, 1 / 3)
  np.testing.assert_allclose(third @ third @ third, s, atol=1e-10)
  np.testing.assert_allclose(cf.psd_power(np.diag([4.0, 0.0]), 0.5), np.diag([2.0, 0.0]))
  with pytest.raises(ValueError, match="symmetric"):
    cf.psd_power([[1.0, 2.0], [0.0, 1.0]], 0.5)
  with pytest.raises(ValueError, match="semi-definite"):
    cf.psd_power([[1.0, 2.0], [2.0, 1.0]], 0.5)
  with pytest.raises(ValueError, match="positive definite"):
    cf.psd_power(np.diag([1.0, 0.0]), -0.5)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_gaussian_cmm_pushes_base_to_target(d):
  m, s = np.linspace(-1.0, 2.0, d), _spd(d, d)
  p = cf.gaussian_cmm(m, s)
  root3 = cf.psd_power(s, 1 / 3)
  np.testing.assert_allclose((np.eye(d) + root3) @ p["base_mean"], m, atol=1e-12)
  np.testing.assert_allclose(p["base_cov"], root3, atol=1e-12)
  np.testing.assert_allclose(p["potential_matrix"] @ p["base_cov"], np.eye(d), atol=1e-10)
  z = _sample(p["base_mean"], p["base_cov"])
  y = cf.affine_transport(p, z)
  _check_moments(y, m, s)
  np.testing.assert_allclose(cf.gaussian_cmm_transport(z[:5], m, s), y[:5])
  # grad w = B (y - a) is the inverse map: it brings the data back to the base
  np.testing.assert_allclose((y[:5] - p["base_mean"]) @ p["potential_matrix"].T, z[:5],
                             atol=1e-8)


def test_gaussian_cmm_1d_scalars():
  p = cf.gaussian_cmm(1.5, 9.0)  # N(1.5, 3^2)
  t = 3 ** (2 / 3)
  np.testing.assert_allclose(p["base_mean"], [1.5 / (1 + t)])
  np.testing.assert_allclose(p["base_cov"], [[t]])
  y = cf.affine_transport(p, np.random.default_rng(0).normal(p["base_mean"][0], math.sqrt(t), N))
  assert y.shape == (N,)
  assert abs(y.mean() - 1.5) < 0.02 * 3 and abs(y.std() - 3) < 0.02 * 3


@pytest.mark.parametrize("d", [1, 3])
def test_gaussian_mm_pushes_base_to_target(d):
  s = _spd(d, 10 + d)
  p = cf.gaussian_mm(s)
  np.testing.assert_allclose(p["base_cov"], np.linalg.inv(s), atol=1e-10)
  np.testing.assert_allclose(p["base_mean"], 0)
  y = cf.affine_transport(p, _sample(np.zeros(d), p["base_cov"]))
  _check_moments(y, np.zeros(d), s)
  assert cf.gaussian_mm(s, mean=np.full(d, 1e-9))["map_matrix"].shape == (d, d)


def test_gaussian_mm_refuses_off_centre_mean():
  with pytest.raises(ValueError, match="centre the data first"):
    cf.gaussian_mm(np.eye(2), mean=[0.1, 0.0])
  with pytest.raises(ValueError, match="centred target"):
    cf.gaussian_mm(4.0, mean=0.01)


def test_gaussian_brenier_pushes_base_to_target():
  m, s = np.array([1.0, -1.0, 0.5]), _spd(3, 7)
  p = cf.gaussian_brenier(m, s)
  np.testing.assert_allclose(p["base_cov"], np.eye(3))
  y = cf.affine_transport(p, np.random.default_rng(1).normal(size=(N, 3)))
  _check_moments(y, m, s)


@pytest.mark.parametrize("fn", [cf.gaussian_cmm, cf.gaussian_brenier])
def test_gaussian_formulas_refuse_bad_inputs(fn):
  with pytest.raises(ValueError):
    fn([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])  # not positive definite
  with pytest.raises(ValueError, match="shape"):
    fn([0.0, 0.0, 0.0], np.eye(2))


def test_1d_base_variances_cmm_vs_mm():
  """DESIGN: a narrow target gives MM a very wide base (variance s^-2), CMM a mild one."""
  s = 0.1
  assert cf.gaussian_cmm(0.0, s**2)["base_cov"][0, 0] == pytest.approx(s ** (2 / 3))
  assert cf.gaussian_mm(s**2)["base_cov"][0, 0] == pytest.approx(s**-2)


# ----------------------------------------------------------------------------
# 1D grid oracles.
# ----------------------------------------------------------------------------


def _norm_pdf(m, s):
  return lambda x: stats.norm.pdf(x, m, s)


@pytest.mark.parametrize("s", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("m", [0.0, 1.5])
def test_cmm_1d_gaussian(m, s):
  r = cf.cmm_1d(_norm_pdf(m, s))
  assert r.converged and r.residual <= 1e-9 and r.kind == "cmm"
  assert abs(r.base_mean - m / (1 + s ** (2 / 3))) <= 1e-3
  assert abs(r.base_std - s ** (1 / 3)) <= 1e-3 * s ** (1 / 3)
  # the base is normalised on the grid and is e^{-w}
  assert np.trapezoid(r.base_density, r.x) == pytest.approx(1.0, abs=1e-9)
  np.testing.assert_allclose(r.base_density, np.exp(-r.w))
  # the map grad w*(z) = a + s^{2/3} z where the base has mass
  a = m / (1 + s ** (2 / 3))
  bulk = np.abs(r.map_x - a) < 4 * s ** (1 / 3)
  np.testing.assert_allclose(r.map_y[bulk], a + s ** (2 / 3) * r.map_x[bulk], atol=1e-3 * s)


@pytest.mark.parametrize("s", [0.3, 1.0, 3.0])
def test_mm_1d_gaussian(s):
  r = cf.mm_1d(_norm_pdf(0.0, s))
  assert r.converged and r.kind == "mm" and r.shift == 0.0
  assert abs(r.base_mean) <= 1e-6 / s
  assert abs(r.base_std - 1 / s) <= 1e-3 / s
  bulk = np.abs(r.map_x) < 4 / s
  np.testing.assert_allclose(r.map_y[bulk], s**2 * r.map_x[bulk], atol=1e-3 * s)


@pytest.mark.parametrize("solver", ["cmm", "mm"])
def test_grid_map_pushes_base_to_target(solver):
  m, s = (1.5 if solver == "cmm" else 0.0), 2.0
  r = cf.cmm_1d(_norm_pdf(m, s)) if solver == "cmm" else cf.mm_1d(_norm_pdf(m, s))
  q = np.linspace(0.001, 0.999, 199)
  pushed = np.interp(r.base_quantile(q), r.map_x, r.map_y)  # T(Q_mu(q))
  np.testing.assert_allclose(pushed, stats.norm.ppf(q, m, s), atol=1e-3 * s)
  # and the base quantiles are those of the Gaussian base
  base = (m / (1 + s ** (2 / 3)), s ** (1 / 3)) if solver == "cmm" else (0.0, 1 / s)
  np.testing.assert_allclose(r.base_quantile(q), stats.norm.ppf(q, *base), atol=1e-3 * base[1])


@pytest.mark.parametrize("solver", ["cmm", "mm"])
def test_bimodal_mixture_converges_and_pushes_forward(solver):
  def rho(x):
    return targets.density_1d("mixture", x)
  r = cf.cmm_1d(rho) if solver == "cmm" else cf.mm_1d(rho, center=True)
  assert r.converged and r.residual <= 1e-9 and r.iterations < 400
  assert r.shift == (0.0 if solver == "cmm" else pytest.approx(0.45, abs=1e-6))
  # in probability space (quantiles are ill-conditioned in the gap between the modes):
  # F_rho(T(Q_mu(q))) = q, up to the linear interpolation of T where it crosses the gap
  q = np.linspace(0.005, 0.995, 199)
  y = np.interp(r.base_quantile(q), r.map_x, r.map_y) + r.shift
  xs = np.linspace(-12, 12, 240_001)
  cdf = np.cumsum(rho(xs)) * (xs[1] - xs[0])
  np.testing.assert_allclose(np.interp(y, xs, cdf), q, atol=5e-4)
  # the base is unimodal and log-concave: w is convex where the base has mass
  mass = r.base_density > 1e-8 * r.base_density.max()
  assert np.all(np.diff(r.w[mass], 2) > -1e-9)


def test_mm_1d_refuses_off_centre_targets():
  with pytest.raises(ValueError, match="centre"):
    cf.mm_1d(_norm_pdf(0.5, 1.0))
  samples = targets.make("gaussian", 2000, seed=0, mean=1.0)[:, 0]
  with pytest.raises(ValueError, match="center=True"):
    cf.mm_1d(samples)
  r = cf.mm_1d(samples, center=True)
  assert r.shift == pytest.approx(samples.astype(np.float64).mean())


def test_grid_oracles_on_samples_use_a_kde():
  """The grid solver on a smoothed sample: a Gaussian KDE of N(m, s^2) has std
  sqrt(s_n^2 + h^2), and its CMM/MM bases follow the Gaussian formulas closely."""
  x = targets.make("gaussian", 20_000, seed=1, mean=1.0, std=2.0)[:, 0].astype(np.float64)
  r = cf.cmm_1d(x)
  h = cf.silverman_bandwidth(x)
  assert r.bandwidth == pytest.approx(h) and r.converged
  sd = math.sqrt(x.var() + h * h)
  assert abs(r.base_std - sd ** (1 / 3)) < 0.01
  assert abs(r.base_mean - x.mean() / (1 + sd ** (2 / 3))) < 0.01
  r = cf.mm_1d(x, center=True, bandwidth=0.3)
  assert r.bandwidth == 0.3 and r.converged
  assert abs(r.base_std - 1 / math.sqrt(x.var() + 0.09)) < 0.01


def test_user_grid_and_log_density():
  grid = np.linspace(-15, 15, 6001)
  r = cf.cmm_1d(lambda x: stats.norm.logpdf(x, 1.0, 2.0), log_density=True, grid=grid)
  np.testing.assert_array_equal(r.x, grid)
  assert abs(r.base_std - 2 ** (1 / 3)) < 1e-3
  with pytest.raises(ValueError, match="grid"):
    cf.cmm_1d(_norm_pdf(0, 1), grid=[3.0, 2.0, 1.0])


def test_undamped_cmm_on_wide_target_is_rescued_by_the_safeguard():
  """DESIGN: one undamped step multiplies the base-mean error by -s^{2/3}; for s = 3 that is
  -2.08, so a = 1 diverges; the solver halves a until the iteration contracts."""
  r = cf.cmm_1d(_norm_pdf(1.5, 3.0), damping=1.0)
  assert r.converged and r.damping < 2 / (1 + 3 ** (2 / 3))
  assert abs(r.base_mean - 1.5 / (1 + 3 ** (2 / 3))) < 1e-3


def test_bad_inputs():
  with pytest.raises(ValueError, match="damping"):
    cf.cmm_1d(_norm_pdf(0, 1), damping=1.5)
  with pytest.raises(ValueError, match="no mass"):
    cf.cmm_1d(lambda x: np.zeros_like(x))
  with pytest.raises(ValueError, match="1D sample"):
    cf.cmm_1d(np.zeros((10, 2)))
