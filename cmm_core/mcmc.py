"""A plain MCMC baseline for energies (blackjax): MALA, HMC or NUTS with a fixed step size.

>>> from cmm_core import energies, mcmc
>>> x = mcmc.run_mcmc(energies.make("ring"), n_chains=256, n_steps=200, seed=0)   # [256, 2]
>>> res = mcmc.sample(energies.make("ring"), n_chains=256, n_steps=200, seed=0, keep=4, thin=10)
>>> res.samples.shape, res.acceptance, res.n_grad_evals          # ((1024, 2), 0.8..., 51456)

Every chain starts from ``N(0, I)`` (the flow's base: neither sampler is told where the mass
is) and runs ``n_steps`` transitions; the samples are each chain's last ``keep`` states, ``thin``
transitions apart. The cost is counted in evaluations of the energy's gradient, the unit the
"Sample an energy" page uses to give the flow and the chains the same budget: MALA takes one per
transition, HMC ``n_leapfrog``, NUTS as many as its trajectories took (counted as they run), plus
one per chain to start. Why blackjax rather than
:mod:`cmm_core.sampling`: ``docs/energies.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from cmm_core.models.base import check_seed

__all__ = ["METHODS", "McmcResult", "sample", "run_mcmc", "grad_evals", "steps_for_budget",
           "evals_per_transition", "MAX_CHAINS", "MAX_MCMC_STEPS"]

METHODS = ("mala", "hmc", "nuts")
MAX_CHAINS = 65_536
MAX_MCMC_STEPS = 1_000_000
MAX_LEAPFROG = 1_000
NUTS_MAX_DOUBLINGS = 10  # blackjax's default: at most 2^10 - 1 leapfrog steps per NUTS transition


@dataclasses.dataclass(frozen=True)
class McmcResult:
  """What :func:`sample` returns.

  Attributes:
    samples: ``[n_chains * keep, d]`` float32, chain-major (chain ``i``'s states are rows
      ``i * keep .. i * keep + keep - 1``, oldest first).
    acceptance: the Metropolis acceptance rate over all transitions and chains (NUTS: the mean
      acceptance probability of its trajectories' states, the figure its step size is tuned by).
    n_grad_evals: energy gradient evaluations used (:func:`grad_evals`; NUTS: the leapfrog steps
      its trajectories took, counted, plus one per chain).
    seconds: wall-clock time, compilation included.
    method, step_size, n_chains, n_steps, n_leapfrog: the settings.
  """
  samples: np.ndarray
  acceptance: float
  n_grad_evals: int
  seconds: float
  method: str
  step_size: float
  n_chains: int
  n_steps: int
  n_leapfrog: int


def _fixed_cost(method: str, n_leapfrog: int) -> int:
  """Gradient evaluations per transition and chain of a fixed-cost method (MALA 1, HMC
  ``n_leapfrog``); NUTS's vary with its trajectories, so it raises."""
  if method == "nuts":
    raise ValueError("mcmc: NUTS's gradient evaluations depend on its trajectories; read them from "
                     "sample(...).n_grad_evals, or measure its average with evals_per_transition")
  return 1 if method == "mala" else int(n_leapfrog)


def grad_evals(method: str, n_chains: int, n_steps: int, n_leapfrog: int = 10) -> int:
  """Energy gradient evaluations of ``n_steps`` transitions of ``n_chains`` chains: one per
  transition for MALA, ``n_leapfrog`` for HMC, plus one per chain for the start. NUTS's count is
  known only after the run (:attr:`McmcResult.n_grad_evals`): this raises for it."""
  return int(n_chains) * (int(n_steps) * _fixed_cost(method, n_leapfrog) + 1)


def steps_for_budget(budget: int, method: str, n_chains: int, n_leapfrog: int = 10,
                     per_transition: float | None = None) -> int:
  """The most transitions (at least 1) whose :func:`grad_evals` fits in ``budget``. NUTS's
  transitions cost a varying number of evaluations: give ``per_transition`` (per chain, e.g. from
  :func:`evals_per_transition`), and the plan fits the budget on that average."""
  if method == "nuts":
    if per_transition is None or not per_transition >= 1:
      raise ValueError("mcmc: NUTS's transitions cost a varying number of gradient evaluations; give "
                       "per_transition (evals_per_transition measures it)")
    return max(1, int((int(budget) // int(n_chains) - 1) / float(per_transition)))
  return max(1, (int(budget) // int(n_chains) - 1) // _fixed_cost(method, n_leapfrog))


def evals_per_transition(energy, n_chains: int, step_size: float, seed: int = 0, *, method: str = "nuts",
                         n_leapfrog: int = 10, n_pilot: int = 8) -> float:
  """Gradient evaluations per transition and chain: MALA's 1 and HMC's ``n_leapfrog`` as they are;
  NUTS's measured on a pilot of ``n_pilot`` transitions of ``n_chains`` chains from the start
  :func:`sample` uses with ``seed`` (at least 1)."""
  if method != "nuts":
    return float(_fixed_cost(method, n_leapfrog))
  res = sample(energy, n_chains, n_pilot, seed, method="nuts", step_size=step_size)
  return max(1.0, (res.n_grad_evals - res.n_chains) / (res.n_chains * n_pilot))


def _check_int(name: str, value, lo: int, hi: int) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
    raise ValueError(f"mcmc: {name} must be an integer in [{lo}, {hi}], got {value!r}")
  return int(value)


@functools.partial(jax.jit, static_argnames=("energy", "method", "n_burn", "keep", "thin", "n_leapfrog"))
def _run(energy, method, key, x0, step_size, *, n_burn, keep, thin, n_leapfrog):
  d = x0.shape[1]
  logdensity = lambda x: -energy.fn(x[None])[0]
  unit_mass = jnp.ones((d,), x0.dtype)
  if method == "mala":
    kernel = blackjax.mala(logdensity, step_size)
  elif method == "hmc":
    kernel = blackjax.hmc(logdensity, step_size, unit_mass, n_leapfrog)
  else:
    kernel = blackjax.nuts(logdensity, step_size, unit_mass, max_num_doublings=NUTS_MAX_DOUBLINGS)
  n = x0.shape[0]

  def transition(state, k):  # -> (mean acceptance, gradient evaluations) of one transition
    state, info = jax.vmap(kernel.step)(jax.random.split(k, n), state)
    if method == "nuts":
      return state, (jnp.mean(info.acceptance_rate), jnp.sum(info.num_integration_steps))
    return state, (jnp.mean(info.is_accepted.astype(jnp.float32)), jnp.zeros((), jnp.int32))

  def block(state, k):  # thin transitions, then record the positions
    state, (acc, evals) = jax.lax.scan(transition, state, jax.random.split(k, thin))
    return state, (state.position, jnp.mean(acc), evals)

  k_burn, k_keep = jax.random.split(key)
  state = jax.vmap(kernel.init)(x0)
  acc_burn, evals_burn = jnp.zeros(()), jnp.zeros((0,), jnp.int32)
  if n_burn:
    state, (accs, evals_burn) = jax.lax.scan(transition, state, jax.random.split(k_burn, n_burn))
    acc_burn = jnp.sum(accs)
  _, (kept, accs, evals) = jax.lax.scan(block, state, jax.random.split(k_keep, keep))  # [keep, n, d]
  acceptance = (acc_burn + jnp.sum(accs) * thin) / (n_burn + keep * thin)
  # NUTS's leapfrog steps per transition (0 for MALA and HMC), summed in int64 outside
  return jnp.swapaxes(kept, 0, 1).reshape(n * keep, d), acceptance, (evals_burn, evals)


def sample(energy, n_chains: int, n_steps: int, seed: int = 0, *, method: str = "mala",
           step_size: float = 0.05, keep: int = 1, thin: int = 1, n_leapfrog: int = 10,
           init=None) -> McmcResult:
  """Runs ``n_chains`` independent chains of ``method`` on ``exp(-E)`` for ``n_steps`` transitions.

  Args:
    energy: a :class:`cmm_core.energies.Energy` (its ``fn``, ``[n, d] -> [n]``, is what is sampled).
    n_chains: independent chains, each started from ``N(0, I)`` (or ``init``).
    n_steps: transitions per chain (the last ``(keep - 1) * thin + ...`` of them are kept; see ``keep``).
    seed: seeds the start and the chains (same seed, same samples).
    method: ``"mala"`` (Metropolis-adjusted Langevin, proposal ``x - h grad E + sqrt(2 h) xi``),
      ``"hmc"`` (``n_leapfrog`` leapfrog steps of size ``step_size``, identity mass matrix) or
      ``"nuts"`` (the No-U-Turn sampler: leapfrog steps of size ``step_size``, identity mass, each
      trajectory doubled until it turns back, at most ``NUTS_MAX_DOUBLINGS`` times).
    step_size: the fixed step size ``h`` (not adapted).
    keep: states kept per chain: after ``thin`` transitions each, ending with the last one
      (``keep * thin <= n_steps``).
    thin: transitions between kept states.
    n_leapfrog: leapfrog steps per HMC transition.
    init: optional start ``[n_chains, d]`` instead of ``N(0, I)``.

  Returns:
    A :class:`McmcResult`; ``samples`` is ``[n_chains * keep, d]``.

  Raises:
    ValueError: a bad argument (the message says which).
  """
  from cmm_core.energies import Energy
  if not isinstance(energy, Energy):
    raise ValueError(f"mcmc: energy must be a cmm_core.energies.Energy, got {type(energy).__name__}")
  if method not in METHODS:
    raise ValueError(f"mcmc: method must be one of {list(METHODS)}, got {method!r}")
  n_chains = _check_int("n_chains", n_chains, 1, MAX_CHAINS)
  n_steps = _check_int("n_steps", n_steps, 1, MAX_MCMC_STEPS)
  keep = _check_int("keep", keep, 1, n_steps)
  thin = _check_int("thin", thin, 1, n_steps)
  if keep * thin > n_steps:
    raise ValueError(f"mcmc: keep * thin ({keep} * {thin}) must be at most n_steps ({n_steps})")
  n_leapfrog = _check_int("n_leapfrog", n_leapfrog, 1, MAX_LEAPFROG)
  if (isinstance(step_size, (bool, np.bool_)) or not isinstance(step_size, (int, float, np.number))
      or not (math.isfinite(step_size) and step_size > 0)):
    raise ValueError(f"mcmc: step_size must be a positive number, got {step_size!r}")
  seed = check_seed(seed)
  d = energy.dim
  key = jax.random.key(seed)
  k_init, k_run = jax.random.split(key)
  if init is None:
    x0 = jax.random.normal(k_init, (n_chains, d), jnp.float32)
  else:
    x0 = jnp.asarray(init, jnp.float32)
    if x0.shape != (n_chains, d):
      raise ValueError(f"mcmc: init must have shape [{n_chains}, {d}], got {tuple(x0.shape)}")
  t0 = time.perf_counter()
  out, acc, counted = _run(energy, method, k_run, x0, jnp.float32(step_size), n_burn=n_steps - keep * thin,
                           keep=keep, thin=thin, n_leapfrog=n_leapfrog if method == "hmc" else 1)
  out = np.asarray(out, np.float32)
  counted = sum(int(np.asarray(c, np.int64).sum()) for c in counted)
  evals = (n_chains + counted) if method == "nuts" else grad_evals(method, n_chains, n_steps, n_leapfrog)
  return McmcResult(samples=out, acceptance=float(acc), n_grad_evals=evals,
                    seconds=time.perf_counter() - t0, method=method, step_size=float(step_size),
                    n_chains=n_chains, n_steps=n_steps, n_leapfrog=n_leapfrog if method == "hmc" else 0)


def run_mcmc(energy, n_chains: int, n_steps: int, seed: int = 0, **kwargs) -> np.ndarray:
  """The samples of :func:`sample`: ``[n_chains * keep, d]`` float32 (``[n_chains, d]``, the
  chains' last states, with the default ``keep=1``)."""
  return sample(energy, n_chains, n_steps, seed, **kwargs).samples
