"""The classical split: N(0, I) noise and a Brenier map, against the Gaussian closed form."""

import numpy as np
import pytest

import cmm_core as cc


# The Gaussian oracle: a 400-step fit of the default network, the slow suite (docs/testing.md)
@pytest.fixture(scope="module")
def gaussian_fit():
  mean, cov = np.array([1.5, -1.0]), np.array([[2.0, 0.9], [0.9, 1.0]])
  data = cc.targets.gaussian(mean, cov, n=4096, seed=0)
  return mean, cov, cc.fit("brenier", data, steps=400, seed=0, conjugate_iters=4)


@pytest.mark.slow
def test_base_is_standard_normal(gaussian_fit):
  *_, fitted = gaussian_fit
  base = fitted.sample_base(8000, seed=0)
  np.testing.assert_allclose(np.cov(base.T), np.eye(2), atol=0.05)
  x = np.zeros((1, 2))
  np.testing.assert_allclose(fitted.base_log_density(x), [-np.log(2 * np.pi)], rtol=1e-6)


@pytest.mark.slow
def test_map_matches_closed_form(gaussian_fit):
  mean, cov, fitted = gaussian_fit
  exact = cc.closed_form.gaussian_brenier(mean, cov)
  x = cc.targets.gaussian(np.zeros(2), np.eye(2), n=2000, seed=1)
  err = np.abs(fitted.transport(x) - cc.closed_form.affine_transport(exact, x))
  assert np.mean(err) <= 0.1 * np.sqrt(np.mean(np.diag(cov))), np.mean(err)
  y = cc.targets.gaussian(mean, cov, n=2000, seed=7)
  d = y - mean
  true_nll = 0.5 * np.mean(np.sum(d @ np.linalg.inv(cov) * d, 1)) + 0.5 * np.log(np.linalg.det(2 * np.pi * cov))
  assert abs(-np.mean(fitted.log_prob(y)) - true_nll) < 0.1
  assert "acceptance" not in fitted.history[-1]


def test_brenier_has_no_langevin_setting():
  with pytest.raises(ValueError, match="langevin_steps"):
    cc.fit("brenier", np.random.default_rng(0).normal(size=(100, 2)), steps=5, langevin_steps=3)


def _in_mode_fraction(x):
  centres = 4 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1) / 1.414
  d = np.linalg.norm(x[:, None] - centres[None], axis=-1)
  return float(np.mean(d.min(1) < 2 * 0.5 / 1.414))


@pytest.mark.slow
def test_brenier_matches_cmm_on_eight_gaussians():
  # python -m pytest -m slow tests/models/brenier_test.py (about 5 minutes on 2 cores)
  data = cc.targets.make("eight_gaussians", n=4096, seed=0)
  fresh = cc.targets.make("eight_gaussians", n=2000, seed=99)
  figures = {}
  for model in ("cmm", "brenier"):
    samples = cc.fit(model, data, steps=1000, seed=0).sample(2000, seed=1)
    figures[model] = (cc.metrics.energy_distance(samples, fresh), _in_mode_fraction(samples))
  (ed_cmm, modes_cmm), (ed_br, modes_br) = figures["cmm"], figures["brenier"]
  # measured (seed 0, two runs whose float rounding differs): brenier 0.0109 / 0.745 in modes;
  # cmm 0.0127 / 0.815 and 0.0047 / 0.798 (MALA's accept/reject decisions make cmm's 1000-step fit
  # sensitive to rounding). Brenier stays within 0.01 of cmm's energy distance and 0.1 of its share
  # of samples in the modes (the two-draw floor of the energy distance is about 0.003).
  assert ed_br <= ed_cmm + 0.01, figures
  assert modes_br >= modes_cmm - 0.1, figures
