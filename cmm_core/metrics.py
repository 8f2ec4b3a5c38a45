"""Sample-quality figures: energy distance, Sinkhorn divergence (ott-jax), NLL, and the one
held-out evaluation of a fit that every page shows (:func:`heldout_metrics`).

>>> m = heldout_metrics(fitted, fresh_draw, seed=0)   # HeldoutMetrics(n=1024, nll=..., ...)
>>> m.nll, m.energy, m.sinkhorn
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence as ott_sd

from cmm_core.viz.geometry import subsample

__all__ = ["energy_distance", "sinkhorn_divergence", "nll", "N_HELDOUT", "N_SINKHORN",
           "HeldoutMetrics", "heldout_metrics", "FreeEnergyMetrics", "free_energy_metrics"]

N_HELDOUT = 1024    # held-out points used and model samples drawn (1024: a length the panels
                    # already compile sample_base for)
N_SINKHORN = 1024   # points per side for the Sinkhorn divergence (compiled once for this size)


def _pairwise_mean_dist(a, b):
  d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, -1)
  return jnp.mean(jnp.sqrt(jnp.maximum(d2, 1e-20)))


@jax.jit
def _energy(x, y):
  return 2 * _pairwise_mean_dist(x, y) - _pairwise_mean_dist(x, x) - _pairwise_mean_dist(y, y)


def energy_distance(x, y) -> float:
  """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` between samples ``[n, d]`` and ``[m, d]`` (V-statistic)."""
  return float(_energy(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations", "accelerate"))
def _sinkhorn_div(x, y, epsilon, *, threshold, max_iterations, accelerate):
  kw = {"threshold": threshold, "max_iterations": max_iterations}
  if accelerate:  # adaptive momentum: several times fewer iterations at small epsilon
    kw["momentum"] = acceleration.Momentum(start=20)
  out = ott_sd.sinkhorn_divergence(pointcloud.PointCloud, x, y, epsilon=epsilon, static_b=False,
                                   solve_kwargs=kw)
  return out[1].divergence if isinstance(out, tuple) else out.divergence


def sinkhorn_divergence(x, y, epsilon: float | None = None, *, threshold: float = 1e-3,
                        max_iterations: int = 2000, accelerate: bool = False) -> float:
  """Debiased Sinkhorn divergence (squared Euclidean cost) between ``[n, d]`` and ``[m, d]``:
  ``OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2``, so a sample against itself gives 0.

  Args:
    x, y: samples ``[n, d]`` and ``[m, d]``.
    epsilon: entropic regularisation; defaults to 1% of the mean squared norm of the centred
      ``y`` (scale aware).
    threshold, max_iterations: Sinkhorn stopping rule (ott-jax).
    accelerate: use ott-jax's adaptive momentum (same limit, far fewer iterations at small
      epsilon; what :mod:`cmm_core.compare` uses).

  Compiled once per input shape: subsample to a fixed size when calling it repeatedly.
  """
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  if epsilon is None:
    epsilon = 0.01 * float(jnp.mean(jnp.sum((y - y.mean(0)) ** 2, -1)))
  return float(_sinkhorn_div(x, y, jnp.float32(epsilon), threshold=float(threshold),
                             max_iterations=int(max_iterations), accelerate=bool(accelerate)))


def nll(log_prob, y) -> float:
  """Mean negative log-likelihood ``-mean(log_prob(y))`` in nats."""
  return float(-np.mean(np.asarray(log_prob(y))))


class HeldoutMetrics(NamedTuple):
  """A fit measured against held-out points (see :func:`heldout_metrics`).

  Attributes:
    n: held-out points used.
    nll: mean ``-log p`` in nats per point on them; None where the model has no density, NaN
      where it failed or was not finite.
    energy: energy distance between ``n`` model samples and the held-out points.
    sinkhorn: debiased Sinkhorn divergence between ``n_sinkhorn`` of each (epsilon 1% of the
      held-out variance).
    n_nonfinite: model samples that were NaN/inf (left out of the distances).
    errors: why a number is NaN, one message each.
  """

  n: int
  nll: Optional[float]
  energy: float
  sinkhorn: float
  n_nonfinite: int
  errors: tuple[str, ...]


def heldout_metrics(fitted, heldout, seed: int = 0, *, n: int = N_HELDOUT,
                    n_sinkhorn: int = N_SINKHORN) -> HeldoutMetrics:
  """The held-out numbers of one fit, the same wherever they are shown (Train and Compare pages).

  Args:
    fitted: a fitted model (the FittedModel protocol: ``sample``, ``log_prob``).
    heldout: reference points ``[m, d]``: a fresh draw of the target (not seen in training), or
      the training data when there is none (an upload); a seeded subset of at most ``n`` is used.
    seed: seeds the model's samples and the subsets.
    n: held-out points used and model samples drawn.
    n_sinkhorn: points per side for the Sinkhorn divergence.

  Returns:
    A :class:`HeldoutMetrics`. Never raises for a model that fails to sample or to evaluate its
    density: the number is NaN and ``errors`` says why.
  """
  ref = np.asarray(heldout, dtype=np.float32)
  if ref.ndim == 1:
    ref = ref[:, None]
  ref = subsample(ref, n, seed)
  energy = sinkhorn = math.nan
  n_nonfinite, errors = 0, []
  try:
    samples = np.asarray(fitted.sample(int(n), int(seed)), dtype=np.float64)
    good = samples[np.all(np.isfinite(samples), axis=1)]
    n_nonfinite = int(samples.shape[0] - good.shape[0])
    if good.shape[0] < 2:
      errors.append("the model's samples are all NaN/inf")
    else:
      b = subsample(ref, n_sinkhorn, seed + 2)
      a = subsample(good, b.shape[0], seed + 1)
      if a.shape[0] < b.shape[0]:  # some samples were NaN: resample to the same (compiled) size
        a = a[np.random.default_rng(seed + 3).integers(0, a.shape[0], b.shape[0])]
      sinkhorn = sinkhorn_divergence(a, b, accelerate=True)
      energy = energy_distance(good, ref)
  except Exception as e:  # a model that cannot sample: say so, keep the other numbers
    errors.append(f"sampling failed ({type(e).__name__}: {e})")
  try:
    logp = np.asarray(fitted.log_prob(ref), dtype=np.float64)
    finite = bool(np.all(np.isfinite(logp)))
    value = float(-np.mean(logp)) if finite else math.nan
    if not finite:
      errors.append("the log-density is NaN/inf on some held-out points")
  except NotImplementedError:
    value = None
  except Exception as e:
    value = math.nan
    errors.append(f"the density failed ({type(e).__name__}: {e})")
  return HeldoutMetrics(n=int(ref.shape[0]), nll=value, energy=float(energy),
                        sinkhorn=float(sinkhorn), n_nonfinite=n_nonfinite, errors=tuple(errors))


@dataclasses.dataclass(frozen=True)
class FreeEnergyMetrics:
  """How well a model ``q`` fits a density ``exp(-E) / Z``, from ``n`` of its samples.

  Attributes:
    elbo: ``E_q[-E - log q] <= log Z`` (minus the variational free energy), nats.
    elbo_se: its standard error.
    iw_log_z: the importance-weighted estimate ``log mean exp(-E - log q)`` (tighter; exact
      when ``q = p``).
    ess: the importance weights' effective sample size, ``(sum w)^2 / sum w^2`` (``n`` when ``q = p``).
    n: the number of samples.
    log_z: the exact ``log Z`` where known, else None.
    gap: ``log_z - elbo`` (>= 0 up to sampling noise), else None.
  """
  elbo: float
  elbo_se: float
  iw_log_z: float
  ess: float
  n: int
  log_z: Optional[float]
  gap: Optional[float]

  # log mean w above log Z by this much has probability <= exp(-1) for a correct density (Markov)
  IMPLAUSIBLE_EXCESS = 1.0

  @property
  def density_suspect(self) -> bool:
    """True when the importance-weighted ``log Z`` exceeds the exact one by more than
    ``IMPLAUSIBLE_EXCESS`` nats: for a correct density ``P(mean w >= e Z) <= 1/e``, so the
    model's ``log q`` is likely too low on some samples and its ELBO too high (for maflow: an
    RK4 map that folds; docs/energies.md)."""
    return self.log_z is not None and self.iw_log_z - self.log_z > self.IMPLAUSIBLE_EXCESS


def free_energy_metrics(fitted, energy, seed: int = 0, n: int = 4096) -> FreeEnergyMetrics:
  """ELBO, importance-weighted ``log Z`` and effective sample size of ``fitted`` (a model with a
  ``log_prob``) against ``energy`` (:class:`cmm_core.energies.Energy`), on ``n`` samples.

  A model with ``sample_with_log_prob`` (maflow) gives its samples with the log-density of its own
  sampler (exact for its RK4 map), so the bound holds for the samples it draws."""
  if hasattr(fitted, "sample_with_log_prob"):
    x, log_q = fitted.sample_with_log_prob(n, seed=seed)
  else:
    x = fitted.sample(n, seed=seed)
    log_q = fitted.log_prob(x)
  x = np.asarray(x, np.float64)
  log_w = -np.asarray(energy(x), np.float64) - np.asarray(log_q, np.float64)
  log_w = log_w[np.isfinite(log_w)]
  if log_w.size == 0:
    raise ValueError("every sample's importance weight is NaN or infinite")
  top = log_w.max()
  w = np.exp(log_w - top)
  elbo = float(np.mean(log_w))
  log_z = energy.log_z
  return FreeEnergyMetrics(
      elbo=elbo, elbo_se=float(np.std(log_w) / np.sqrt(log_w.size)),
      iw_log_z=float(top + np.log(np.mean(w))), ess=float(np.sum(w) ** 2 / np.sum(w ** 2)),
      n=int(log_w.size), log_z=log_z, gap=None if log_z is None else float(log_z - elbo))
