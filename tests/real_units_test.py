"""Every model on the shipped real tables in their own units (columns in minutes next to hours,
grams next to millimetres, far from the origin) and standardised, and on synthetic tables whose
columns are scaled by 1e-3 and 1e3 and shifted by 1e4: the samples stay within the data's range and
their energy distance to the table is at most half a fitted Gaussian's.

The tables are fitted whole, as the app fits them, and compared with their own rows: with 30 to 70
held-out rows (iris, Old Faithful) the held-out energy distance is dominated by the draw of those
rows (the training rows themselves score 0.9x a Gaussian there), so it cannot rank models."""

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import datasets, io, metrics

MODELS = ("cmm", "mm", "brenier", "maflow", "sdot")


def _check(model, data, steps=None):
  return _check_fitted(cc.fit(model, data, seed=0, steps=steps), data)


def _check_fitted(fitted, data):
  model = fitted.model
  samples = fitted.sample(2000, seed=1)
  lo, hi = data.min(0), data.max(0)
  width = hi - lo
  outside = np.mean(np.any((samples < lo - 0.5 * width) | (samples > hi + 0.5 * width), axis=1))
  gauss = np.random.default_rng(1).multivariate_normal(data.mean(0), np.atleast_2d(np.cov(data.T)),
                                                       2000)
  ed, ed_gauss = metrics.energy_distance(samples, data), metrics.energy_distance(gauss, data)
  assert outside <= 0.01, f"{model}: {outside:.1%} of samples far outside the data's range"
  return ed, ed_gauss


def _two_clusters(n=1024, seed=0):
  rng = np.random.default_rng(seed)
  label = rng.integers(0, 2, n)
  x = rng.normal(size=(n, 2)) * 0.4 + np.where(label[:, None] == 1, 1.5, -1.5) * np.array([1.0, 0.6])
  return x


# Fits that do not pass yet, with what the last run of the matrix measured (docs/training.md, "Real
# data in its own units"). strict: a fix makes them pass, and the mark must then go.
KNOWN_FAILURES: dict = {}  # none since session 35 (cmm on "shifted" and on iris standardised)


def _cases(keys):
  return [pytest.param(*k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[k]))
          if k in KNOWN_FAILURES else k for k in keys]


@pytest.mark.matrix
@pytest.mark.slow
@pytest.mark.parametrize("model, name, standardize", _cases(
    [(m, n, s) for m in MODELS for n in ("old_faithful", "iris", "penguins") for s in (False, True)]))
def test_real_tables(model, name, standardize):
  ed, ed_gauss = _check(model, datasets.load(name, standardize=standardize))
  assert ed <= 0.5 * ed_gauss, (ed, ed_gauss)


@pytest.mark.matrix
@pytest.mark.slow
@pytest.mark.parametrize("model, transform", _cases(
    [(m, t) for m in ("cmm", "mm") for t in ("milli", "kilo", "shifted")]))
def test_synthetic_units(model, transform):
  x = _two_clusters()
  x = {"milli": x * np.array([1e-3, 1.0]), "kilo": x * np.array([1.0, 1e3]),
       "shifted": x + 1e4}[transform]
  ed, ed_gauss = _check(model, x)
  assert ed <= 0.5 * ed_gauss, (ed, ed_gauss)


@pytest.mark.parametrize("model", ["maflow", pytest.param("sdot", marks=pytest.mark.slow)])  # sdot: 22 s
def test_penguins_as_given(model):
  # grams next to millimetres: with one scalar scale the bill depth was 1e-3 of the unit (25% of
  # maflow's and 74% of sdot's samples far outside the range); both now scale by column
  ed, ed_gauss = _check(model, datasets.load("penguins"))
  assert ed <= 0.1 * ed_gauss, (ed, ed_gauss)


@pytest.mark.slow  # a 1,000-step fit (45 s in the suite); tests/potentials_test.py checks the hinges
def test_cmm_in_mixed_units(tmp_path):
  # penguins as given (body mass in grams, std 800, next to bill depth in mm, std 2): with one ICNN
  # 75% of cmm's samples fell far outside the range; the separable part along the guess's axes
  # (potentials.ConvexPotential.axis_hinges) gives each axis its own unit (docs/training.md). The
  # pair of columns is the case where hinges bending one way only failed (0.80 of a Gaussian's ED)
  data = datasets.load("penguins", columns=["bill_depth_mm", "body_mass_g"])
  fitted = cc.fit("cmm", data, seed=0)  # defaults: 0.11 of a Gaussian's ED (seeds 1, 2: 0.11, 0.06)
  assert fitted.extras["axis_hinges"] > 0 and fitted.extras["pieces"] == 0
  ed, ed_gauss = _check_fitted(fitted, data)
  assert ed <= 0.25 * ed_gauss, (ed, ed_gauss)
  # the saved model rebuilds the same potential (its module reads the hinges from the extras)
  path = tmp_path / "penguins.npz"
  io.save(fitted, path)
  again = io.load(path)
  np.testing.assert_allclose(again.sample(64, seed=2), fitted.sample(64, seed=2), rtol=1e-5, atol=1e-3)
