"""Sample-quality figures: energy distance, Sinkhorn divergence (ott-jax), held-out NLL."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence as ott_sd

__all__ = ["energy_distance", "sinkhorn_divergence", "nll"]


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
