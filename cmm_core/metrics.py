"""Sample-quality figures: energy distance, Sinkhorn divergence (ott-jax), held-out NLL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
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


def sinkhorn_divergence(x, y, epsilon: float | None = None) -> float:
  """Debiased Sinkhorn divergence (squared Euclidean cost) between ``[n, d]`` and ``[m, d]``.

  ``epsilon`` defaults to 1% of the mean squared norm of the centred ``y`` (scale aware).
  """
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  if epsilon is None:
    epsilon = 0.01 * float(jnp.mean(jnp.sum((y - y.mean(0)) ** 2, -1)))
  out = ott_sd.sinkhorn_divergence(pointcloud.PointCloud, x, y, epsilon=epsilon,
                                   static_b=True)
  return float(out[1].divergence if isinstance(out, tuple) else out.divergence)


def nll(log_prob, y) -> float:
  """Mean negative log-likelihood ``-mean(log_prob(y))`` in nats."""
  return float(-np.mean(np.asarray(log_prob(y))))
