"""cc.fit_energy("cmm", ...): the conjugate moment measure fitted to an energy through the
Monge-Ampère relation (cmm_core/models/cmm_energy.py), against the closed-form CMM of a Gaussian
and exact log Z."""

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import closed_form, energies, metrics

MEAN, COV = np.array([1.0, -0.5]), np.array([[2.0, 0.6], [0.6, 0.5]])
SMALL = {"hidden": (16, 16), "pieces": 0}   # a Gaussian needs no more (measured: gap 0.005)
STEPS = 150                                 # 50 burn-in steps (chains and conjugates only) + 100


def _gaussian():
  return energies.make("gaussian", mean=MEAN.tolist(), cov=COV.tolist())


# A statistical fit whose compilations (the energy step, then MALA on e^{-w}, the conjugate and the
# Hessian's log-determinant for the metrics) took 35-40 s of the default suite: in the slow suite.
@pytest.mark.slow
def test_a_gaussian_energy_gives_the_closed_form_cmm():
  energy = _gaussian()
  fitted = cc.fit_energy("cmm", energy, steps=STEPS, seed=0, **SMALL)
  m = metrics.free_energy_metrics(fitted, energy, seed=1, n=4096)
  assert -3 * m.elbo_se <= m.gap <= 0.05, m
  assert abs(m.iw_log_z - energy.log_z) <= 0.03, m
  exact = closed_form.gaussian_cmm(MEAN, COV)        # base N(a, S^{1/3})
  base = fitted.sample_base(20000, seed=2)
  cov_err = np.linalg.norm(np.cov(base.T) - exact["base_cov"]) / np.linalg.norm(exact["base_cov"])
  assert cov_err <= 0.15, cov_err
  np.testing.assert_allclose(base.mean(0), exact["base_mean"], atol=0.1)
  # training, not only the Gaussian start, brings the Monge-Ampère residual's spread down
  spread = [h["free_energy_spread"] for h in fitted.history]
  assert spread[-1] <= 0.5 * spread[0], spread
  assert fitted.model == "cmm" and fitted.info["energy"] == "gaussian"


# about 30 s (two fits): in the slow suite, to keep the default one under 8 minutes (docs/testing.md)
@pytest.mark.slow
def test_save_load_and_the_same_seed_give_the_same_model(tmp_path):
  a, b = (cc.fit_energy("cmm", _gaussian(), steps=60, seed=3, **SMALL) for _ in range(2))
  assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
  np.testing.assert_array_equal(a.sample(64, seed=0), b.sample(64, seed=0))
  a.save(tmp_path / "f.msgpack")
  back = cc.load(tmp_path / "f.msgpack")
  y = a.sample(64, seed=0)
  np.testing.assert_array_equal(back.log_prob(y), a.log_prob(y))
  assert back.model == "cmm" and back.info["energy"] == "gaussian"


# 28 s alone (the energy step and the summary's ELBO compile for it): in the slow suite. The default
# suite runs `fit-energy` with maflow (tests/fit_energy_test.py) and cmm's energy route on Compare
# (tests/app/compare_energy_test.py).
@pytest.mark.slow
def test_command_line_fits_cmm_to_an_energy(tmp_path, capsys):
  from cmm_core import cli
  out = tmp_path / "g.msgpack"
  # the module's Gaussian and settings (the slow tests above compile the same chunk)
  assert cli.main(["fit-energy", "--model", "cmm", "--energy", "gaussian", "--param", "mean=[1, -0.5]",
                   "--param", "cov=[[2, 0.6], [0.6, 0.5]]", "--steps", "55", "--hyper", "hidden=16,16",
                   "--hyper", "pieces=0", "--out", str(out), "-q"]) == 0
  line = capsys.readouterr().out
  assert "ELBO" in line and "gap" in line and cc.load(out).model == "cmm"


def test_an_energy_beyond_its_dimension_limit_is_a_clear_error():
  with pytest.raises(ValueError, match="64 dimensions"):
    cc.fit_energy("cmm", energies.make("ising", L=9), steps=1)


@pytest.mark.slow
def test_the_ring_with_defaults():
  # measured (seed 0, 600 steps, defaults): ELBO gap 0.023, importance-weighted log Z within 0.003
  energy = energies.make("ring")
  fitted = cc.fit_energy("cmm", energy, steps=600, seed=0)
  m = metrics.free_energy_metrics(fitted, energy, seed=1, n=4096)
  assert -3 * m.elbo_se <= m.gap <= 0.05, m
  assert abs(m.iw_log_z - energy.log_z) <= 0.03, m
  exact = energies.grid_samples(energy, 2000, seed=3)
  floor = metrics.energy_distance(energies.grid_samples(energy, 2000, seed=4), exact)
  assert metrics.energy_distance(fitted.sample(2000, seed=5), exact) <= floor + 0.01


@pytest.mark.slow  # two 4-D fits (~30 s); tests/potentials_test.py checks the even module itself
def test_reflection_symmetry_gives_an_even_potential(tmp_path):
  # the Ising model's Z2 symmetry: w(x) = w(-x), so grad w* is odd and the samples come in +- pairs
  energy = energies.make("ising", L=2)
  fitted = cc.fit_energy("cmm", energy, steps=55, seed=0, symmetry="reflection", **SMALL)
  x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
  np.testing.assert_allclose(fitted.potential(x), fitted.potential(-x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fitted.transport(-x), -fitted.transport(x), rtol=1e-3, atol=1e-3)
  fitted.save(tmp_path / "even.msgpack")
  back = cc.load(tmp_path / "even.msgpack")
  np.testing.assert_array_equal(back.potential(x), fitted.potential(x))
  plain = cc.fit_energy("cmm", energy, steps=55, seed=0, **SMALL)
  assert not np.allclose(plain.potential(x), plain.potential(-x), atol=1e-3)


@pytest.mark.slow  # a 2D fit (~45 s); tests/potentials_test.py checks the radial module itself
def test_rotation_symmetry_gives_a_radial_potential(tmp_path):
  # measured (seed 0, 150 steps): ELBO gap 0.031; the default potential needs about
  # 300 steps for 0.05 (docs/energies.md)
  energy = energies.make("ring")
  fitted = cc.fit_energy("cmm", energy, steps=150, seed=0, symmetry="rotation")
  m = metrics.free_energy_metrics(fitted, energy, seed=1, n=4096)
  assert -3 * m.elbo_se <= m.gap <= 0.05, m
  assert abs(m.iw_log_z - energy.log_z) <= 0.03, m
  x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32) * 2
  turn = np.array([[np.cos(2.0), -np.sin(2.0)], [np.sin(2.0), np.cos(2.0)]], np.float32)
  np.testing.assert_allclose(fitted.potential(x @ turn.T), fitted.potential(x), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(fitted.transport(x @ turn.T), fitted.transport(x) @ turn.T, atol=2e-3)
  fitted.save(tmp_path / "radial.msgpack")
  back = cc.load(tmp_path / "radial.msgpack")
  assert back.config["symmetry"] == "rotation"
  np.testing.assert_array_equal(back.potential(x), fitted.potential(x))
