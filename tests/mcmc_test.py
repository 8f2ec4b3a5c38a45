"""The MCMC baseline (cmm_core.mcmc): blackjax MALA / HMC / NUTS on energies, with the budget counted."""

import numpy as np
import pytest

from cmm_core import energies, mcmc

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.6], [0.6, 2.0]])


@pytest.fixture(scope="module")
def gauss():
  return energies.make("gaussian", mean=MEAN.tolist(), cov=COV.tolist())


@pytest.mark.parametrize("method,step,n_steps", [("mala", 0.3, 120), ("hmc", 0.2, 120), ("nuts", 0.3, 40)])
def test_chains_match_the_gaussian_moments(gauss, method, step, n_steps):
  # NUTS: about 11 leapfrog steps per transition, so a third of the transitions cost as much
  res = mcmc.sample(gauss, n_chains=1024, n_steps=n_steps, seed=0, method=method, step_size=step,
                    keep=4, thin=n_steps // 6, n_leapfrog=5)
  x = res.samples.astype(np.float64)
  assert x.shape == (4096, 2) and np.all(np.isfinite(x))
  # 1024 independent chains from N(0, I), 20+ transitions in: 4096 draws, mildly correlated per chain;
  # the standard error of a mean is <= sqrt(2 / 1024) = 0.044, of a covariance entry ~0.09
  np.testing.assert_allclose(x.mean(0), MEAN, atol=0.12)
  np.testing.assert_allclose(np.cov(x.T), COV, atol=0.25)
  assert 0.5 < res.acceptance <= 1.0
  if method == "nuts":  # counted from the trajectories: a U-turn of this Gaussian (standard
    # deviations 0.8-1.5) at steps of 0.3 takes a few to a few tens of leapfrog steps
    per_transition = (res.n_grad_evals - 1024) / (1024 * n_steps)
    assert 3 <= per_transition <= 40
    with pytest.raises(ValueError, match="NUTS"):
      mcmc.grad_evals("nuts", 1024, n_steps)
  else:
    assert res.n_grad_evals == mcmc.grad_evals(method, 1024, n_steps, 5)


def test_a_wrong_target_is_told_apart(gauss):
  """The moment checks above have teeth: samples of another Gaussian (mean shifted by 0.3, one
  variance halved) fail them."""
  other = energies.make("gaussian", mean=(MEAN + [0.3, 0.0]).tolist(), cov=[[1.0, 0.6], [0.6, 1.0]])
  x = mcmc.run_mcmc(other, n_chains=1024, n_steps=120, seed=0, step_size=0.3, keep=4, thin=20)
  assert np.abs(x.mean(0) - MEAN).max() > 0.2 or np.abs(np.cov(x.T) - COV).max() > 0.5


def test_same_seed_same_samples_and_shapes():
  ring = energies.make("ring")
  a = mcmc.run_mcmc(ring, n_chains=16, n_steps=10, seed=3)
  b = mcmc.run_mcmc(ring, n_chains=16, n_steps=10, seed=3)
  c = mcmc.run_mcmc(ring, n_chains=16, n_steps=10, seed=4)
  assert a.shape == (16, 2) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  res = mcmc.sample(ring, n_chains=16, n_steps=10, seed=3, keep=5, thin=2)
  assert res.samples.shape == (80, 2) and np.all(np.isfinite(res.samples))
  per_chain = res.samples.reshape(16, 5, 2)  # chain-major: a chain's kept states are together
  assert np.all(np.abs(np.diff(per_chain, axis=1)).sum(-1).mean(0) > 0)


def test_budget_arithmetic():
  assert mcmc.grad_evals("mala", 256, 200) == 256 * 201
  assert mcmc.grad_evals("hmc", 256, 20, n_leapfrog=10) == 256 * 201
  # the flow's 200 steps of 256 points: 51200 gradient evaluations
  assert mcmc.steps_for_budget(51200, "mala", 256) == 199
  assert mcmc.grad_evals("mala", 256, 199) <= 51200 < mcmc.grad_evals("mala", 256, 200)
  assert mcmc.steps_for_budget(51200, "hmc", 256, n_leapfrog=10) == 19
  assert mcmc.steps_for_budget(10, "mala", 256) == 1
  with pytest.raises(ValueError, match="NUTS"):
    mcmc.steps_for_budget(51200, "nuts", 256)
  # NUTS on a measured average: 199 evaluations per chain after the start, 9.5 per transition
  assert mcmc.steps_for_budget(51200, "nuts", 256, per_transition=9.5) == 20
  # the fixed-cost methods need no pilot (no energy is touched)
  assert mcmc.evals_per_transition(None, 256, 0.1, method="mala") == 1.0
  assert mcmc.evals_per_transition(None, 256, 0.1, method="hmc", n_leapfrog=7) == 7.0


@pytest.mark.parametrize("kwargs,match", [
    ({"n_chains": 0}, "n_chains"), ({"n_steps": 0}, "n_steps"), ({"method": "slice"}, "method"),
    ({"step_size": -1.0}, "step_size"), ({"step_size": float("nan")}, "step_size"),
    ({"keep": 4, "thin": 4}, "keep"), ({"init": np.zeros((3, 2))}, "init"), ({"seed": -1}, "seed")])
def test_bad_arguments_are_value_errors(kwargs, match):
  args = {"n_chains": 4, "n_steps": 10, **kwargs}
  with pytest.raises(ValueError, match=match):
    mcmc.sample(energies.make("ring"), **args)
  with pytest.raises(ValueError, match="Energy"):
    mcmc.sample(lambda x: x, 4, 10)
