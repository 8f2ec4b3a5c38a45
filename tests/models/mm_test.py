"""Moment measures (rho = grad u # e^{-u}) against the Gaussian closed form and the 1D grid oracle."""

import numpy as np
import pytest

import cmm_core as cc

import small_fits  # tests/small_fits.py

FAST = dict(batch_size=256, langevin_steps=2, conjugate_iters=4)


@pytest.fixture(scope="module")
def gaussian_fit():
  cov = np.array([[2.0, 0.9], [0.9, 1.0]])
  data = cc.targets.gaussian(np.zeros(2), cov, n=4096, seed=0)
  return cov, data, cc.fit("mm", data, steps=800, seed=0, **FAST)


@pytest.mark.slow  # the 800-step Gaussian fit: about three minutes on two busy cores
def test_gaussian_base_is_inverse_covariance(gaussian_fit):
  cov, data, fitted = gaussian_fit
  base = fitted.sample_base(8000, seed=1)
  exact = np.linalg.inv(cov)  # base N(0, S^{-1})
  err = np.linalg.norm(np.cov(base.T) - exact) / np.linalg.norm(exact)
  assert err <= 0.15, err


@pytest.mark.slow  # the 800-step Gaussian fit: about three minutes on two busy cores
def test_base_is_centred(gaussian_fit):
  # a moment measure's base is unique up to translation: the fit pins its mean at 0
  cov, data, fitted = gaussian_fit
  base = fitted.sample_base(8000, seed=4)
  base_std = np.sqrt(np.diag(np.linalg.inv(cov)))
  assert np.all(np.abs(base.mean(0)) <= 0.1 * base_std), (base.mean(0), base_std)


@pytest.mark.slow  # the 800-step Gaussian fit: about three minutes on two busy cores
def test_gaussian_samples_map_and_density(gaussian_fit):
  cov, data, fitted = gaussian_fit
  samples = fitted.sample(8000, seed=2)
  assert np.all(np.abs(samples.mean(0)) <= 0.1 * np.sqrt(np.diag(cov)))
  assert np.linalg.norm(np.cov(samples.T) - cov) / np.linalg.norm(cov) <= 0.15
  x = fitted.sample_base(200, seed=3)
  np.testing.assert_allclose(fitted.inverse_transport(fitted.transport(x)), x, atol=1e-2)
  y = cc.targets.gaussian(np.zeros(2), cov, n=2000, seed=7)
  true_nll = 0.5 * np.mean(np.sum(y @ np.linalg.inv(cov) * y, 1)) + 0.5 * np.log(np.linalg.det(2 * np.pi * cov))
  assert abs(-np.mean(fitted.log_prob(y)) - true_nll) < 0.1


def test_off_centre_data_are_centred_and_shifted_back():
  data = cc.targets.gaussian([3.0, -2.0], np.eye(2) * 0.5, n=512, seed=0)
  # the centring and the shift back are what is checked: the shared small settings on 512 rows,
  # whose training chunk tests/io_test.py compiles too (tests/small_fits.py)
  fitted = cc.fit("mm", data, steps=small_fits.STEPS, seed=0, **small_fits.SMALL["mm"])
  assert any("centred" in w for w in fitted.info["warnings"])
  np.testing.assert_allclose(fitted.sample(4000, seed=0).mean(0), [3.0, -2.0], atol=0.1)


# 1500 steps (about two minutes on two busy cores); the default suite compares cmm with its grid oracle
# (models/cmm_test.py) and the grid solvers with the closed forms (closed_form_test.py)
@pytest.mark.slow
def test_1d_bimodal_matches_grid_oracle():
  data = cc.targets.make("mixture", n=4096, seed=0)
  data = data - data.mean(0)
  fitted = cc.fit("mm", data, steps=1500, seed=0, **FAST)
  oracle = cc.closed_form.mm_1d(data[:, 0], center=True)  # the same sample, kernel-smoothed
  base = fitted.sample_base(20_000, seed=1)[:, 0]
  base = base - base.mean()  # the MM base is unique up to translation; the oracle's has mean 0
  qs = np.linspace(0.02, 0.98, 49)
  err = np.mean(np.abs(np.quantile(base, qs) - oracle.base_quantile(qs)))
  assert err <= 0.1 * oracle.base_std, (err, oracle.base_std)


def test_the_centring_note_stays_short_in_high_dimension():
  from cmm_core.models.cmm import MM
  rng = np.random.default_rng(0)
  (note,) = MM().prepare(rng.random((50, 64)) + 3.0)[1]["warnings"]
  assert "in 64 dimensions" in note and len(note) < 200, note
  (note,) = MM().prepare(rng.random((50, 2)) + 3.0)[1]["warnings"]
  assert "[3." in note  # a 2D mean is written out
