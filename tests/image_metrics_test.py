"""Tests for cmm_core.image_metrics: the two-sample test, the memorisation ratio, bits/dim, the
digit classifier and the Gaussian baseline. The two-sample tests share one shape (d = 8, 1,000 rows
a side) so that the training loop compiles once."""

import math

import numpy as np
import pytest

from cmm_core import datasets, image_metrics, target_spec
from cmm_core.errors import DataError

D = 8
N = 1000  # rows a side: the null's noise is 0.5 / sqrt(N) = 0.016, so +-0.06 is almost 4 stds


def _gauss(seed, n=N, d=D, shift=0.0):
  return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) + shift


@pytest.fixture(scope="module")
def null_c2st():
  return image_metrics.classifier_two_sample(_gauss(1), _gauss(2), seed=0)


def test_c2st_is_near_half_for_two_draws_of_one_distribution(null_c2st):
  assert abs(null_c2st - 0.5) <= 0.06


def test_c2st_is_deterministic_for_a_seed(null_c2st):
  assert image_metrics.classifier_two_sample(_gauss(1), _gauss(2), seed=0) == null_c2st


def test_c2st_is_near_one_for_separated_distributions():
  # a shift of 3 in each of 8 dims: the best classifier's accuracy is Phi(sqrt(8) * 3 / 2) > 0.9999
  assert image_metrics.classifier_two_sample(_gauss(1, shift=3.0), _gauss(2), seed=0) >= 0.97


def test_c2st_balances_the_sets_and_uses_at_most_the_cap():
  # 2,500 against 1,000 rows: both cut to 1,000 (the loop compiled for the fixture is reused)
  acc = image_metrics.classifier_two_sample(_gauss(3, n=2500), _gauss(4), seed=1)
  assert abs(acc - 0.5) <= 0.06


def test_nn_ratio_is_zero_for_copies_of_training_rows():
  train, heldout = _gauss(5), _gauss(6, n=300)
  assert image_metrics.nn_distance_ratio(train[:200], train, heldout) == 0.0


def test_nn_ratio_is_near_one_for_fresh_draws(monkeypatch):
  train, heldout, fresh = _gauss(5), _gauss(6, n=500), _gauss(7, n=500)
  ratio = image_metrics.nn_distance_ratio(fresh, train, heldout)
  assert 0.8 <= ratio <= 1.25
  # computed in blocks of a few rows: the same figure
  monkeypatch.setattr(image_metrics, "NN_BLOCK_ENTRIES", 3 * train.shape[0])
  assert image_metrics.nn_distance_ratio(fresh, train, heldout) == pytest.approx(ratio, rel=1e-12)
  # samples shrunk towards a training row are closer to the training rows than held-out rows are
  assert image_metrics.nn_distance_ratio(train[:500] + 0.1 * (fresh - train[:500]), train, heldout) < 0.5


def test_bits_per_dim_arithmetic():
  assert image_metrics.bits_per_dim(64 * math.log(2) * 3.0, 64) == pytest.approx(3.0, rel=1e-12)
  # data divided by 17 before fitting: log2(17) bits/dim more in count units
  assert image_metrics.bits_per_dim(0.0, 64, scale=17.0) == pytest.approx(math.log2(17), rel=1e-12)
  scales = np.full(4, 2.0)
  assert image_metrics.bits_per_dim(-4 * math.log(2), 4, scale=scales) == pytest.approx(0.0, abs=1e-12)
  for bad in [dict(nll_nats=1.0, dim=0), dict(nll_nats=float("nan"), dim=4),
              dict(nll_nats=1.0, dim=4, scale=np.ones(3)), dict(nll_nats=1.0, dim=4, scale=-1.0)]:
    with pytest.raises(ValueError):
      image_metrics.bits_per_dim(**bad)


def test_classifier_scores_the_held_out_digits():
  images, labels = datasets.load("digits"), datasets.labels("digits")
  (x_train, x_held), (y_train, y_held) = target_spec.hold_out(images), target_spec.hold_out(labels)
  clf = image_metrics.fit_classifier(x_train, y_train, seed=0)
  pred = clf.predict(x_held[:50])
  assert pred.shape == (50,) and pred.dtype == np.int32 and clf.n_classes == 10
  assert clf.accuracy(x_held, y_held) >= 0.9  # 0.97 measured (docs/image_metrics.md)
  with pytest.raises(DataError, match="columns"):
    clf.predict(x_held[:, :10])
  with pytest.raises(DataError, match="labels"):
    clf.accuracy(x_held, y_held[:-1])


def test_gaussian_baseline_and_samples():
  data = _gauss(8, n=4000, d=3) @ np.array([[1.0, 0, 0], [0.5, 1, 0], [0, 0, 0.2]]) + 2.0
  mean, cov = image_metrics.gaussian_baseline(data)
  assert mean.shape == (3,) and cov.shape == (3, 3)
  np.testing.assert_allclose(cov, np.cov(data.T, bias=True), rtol=1e-4, atol=1e-5)
  draws = image_metrics.gaussian_samples(mean, cov, 20000, seed=3)
  assert draws.shape == (20000, 3) and draws.dtype == np.float32
  np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
  np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.04)
  np.testing.assert_array_equal(draws, image_metrics.gaussian_samples(mean, cov, 20000, seed=3))
  # a constant column: the ridge keeps the covariance positive definite
  flat = np.concatenate([data[:, :2], np.full((4000, 1), 5.0)], axis=1)
  m, c = image_metrics.gaussian_baseline(flat)
  assert np.all(np.isfinite(image_metrics.gaussian_samples(m, c, 10, seed=0)))
  with pytest.raises(ValueError, match="positive definite"):
    image_metrics.gaussian_samples(np.zeros(2), np.zeros((2, 2)), 10, seed=0)


def test_image_scores_gathers_both_figures(null_c2st):
  samples, train, heldout = _gauss(1), _gauss(2), _gauss(6, n=300)  # the fixture's two sets
  scores = image_metrics.image_scores(samples, train, heldout)
  assert scores == {"c2st": null_c2st, "nn_ratio": image_metrics.nn_distance_ratio(samples, train, heldout)}


_OK = np.zeros((50, 4), np.float32)
_NAN = _OK.copy()
_NAN[3, 1] = np.nan


@pytest.mark.parametrize("samples, reference, match", [
    (np.zeros(50), _OK, "2-D"),                       # wrong dims
    (np.zeros((50, 4, 1)), _OK, "2-D"),
    (np.zeros((50, 5)), _OK, "4 columns but the other set has 5"),  # mismatched d
    (_OK[:5], _OK, "at least 20"),                    # too few rows
    (_OK, _NAN, "NaN"),
    (_OK, [["a"] * 4] * 50, "numeric"),
])
def test_c2st_rejects_bad_input(samples, reference, match):
  with pytest.raises(DataError, match=match):
    image_metrics.classifier_two_sample(samples, reference)


def test_nn_ratio_and_classifier_reject_bad_input():
  with pytest.raises(DataError, match="columns"):
    image_metrics.nn_distance_ratio(_OK, _OK[:, :3], _OK)
  with pytest.raises(DataError, match="rows"):
    image_metrics.nn_distance_ratio(_OK[:0], _OK, _OK)
  with pytest.raises(DataError, match="NaN"):
    image_metrics.nn_distance_ratio(_OK, _OK, _NAN)
  with pytest.raises(DataError, match="copies"):
    image_metrics.nn_distance_ratio(_OK, _OK, _OK)
  with pytest.raises(DataError, match="single class"):
    image_metrics.fit_classifier(_OK, np.zeros(50, int))
  with pytest.raises(DataError, match="whole numbers"):
    image_metrics.fit_classifier(_OK, np.full(50, 0.5))
  with pytest.raises(DataError, match="NaN"):
    image_metrics.fit_classifier(_NAN, np.arange(50) % 2)
  with pytest.raises(DataError, match=r"\[50\]"):
    image_metrics.fit_classifier(_OK, np.arange(49) % 2)
  assert issubclass(DataError, ValueError)
