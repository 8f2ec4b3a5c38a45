"""Metropolis-adjusted Langevin (MALA) for densities ``e^{-U}`` with persistent chains."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cmm_core import potentials

__all__ = ["mala", "mala_aux", "adapt_step_size", "rough_samples", "importance_weights",
           "TARGET_ACCEPT"]

TARGET_ACCEPT = 0.57


def importance_weights(log_w):
  """``(v [b], ess)``: self-normalised importance weights of log-weights ``log_w`` ``[b]`` (e.g.
  ``log p - log q`` up to a constant) and their effective sample size as a fraction of the batch,
  ``1 / (b sum v^2)`` in ``(0, 1]`` (1 when the weights are equal)."""
  v = jax.nn.softmax(log_w)
  return v, 1.0 / (log_w.shape[0] * jnp.sum(v * v))


def mala(energy, x, step_size, key, n_steps: int, precond=None):
  """Runs ``n_steps`` MALA steps on every chain.

  Args:
    energy: batched ``U: [b, d] -> [b]``; the target density is proportional to ``e^{-U}``.
    x: ``[b, d]`` current chain states.
    step_size: scalar ``h``; proposals are ``x - h M grad U(x) + sqrt(2 h) L xi``.
    key: PRNG key.
    n_steps: number of steps (static).
    precond: None (``M = I``) or a lower-triangular ``L [d, d]`` with ``M = L L^T``: a fixed
      preconditioner, e.g. the Cholesky factor of a guess of the target's covariance, so that one
      step size suits every direction of an elongated target. The chain still targets ``e^{-U}``.

  Returns:
    ``(x [b, d], acceptance rate averaged over steps and chains)``.
  """
  def value_grad(x, aux):
    return (*potentials.batch_value_and_grad(energy, x), aux)

  x, _, acc = mala_aux(value_grad, x, jnp.zeros(()), step_size, key, n_steps, precond)
  return x, acc


def mala_aux(value_grad, x, aux, step_size, key, n_steps: int, precond=None):
  """MALA for an energy whose evaluation carries per-chain state (e.g. a warm-started solve).

  Args:
    value_grad: ``(x [b, d], aux) -> (U [b], grad U [b, d], aux')``; ``aux`` is a pytree of
      per-chain arrays (leading axis ``b``) or scalars, e.g. conjugate warm starts.
    x: ``[b, d]`` chain states; aux: their state.
    step_size, key, n_steps, precond: as in :func:`mala`.

  Returns:
    ``(x [b, d], aux, acceptance rate)``; ``aux`` belongs to the returned ``x``.
  """
  if precond is None:
    drift, noise, whiten = (lambda g: g), (lambda xi: xi), (lambda r: r)
  else:
    L = jnp.asarray(precond, x.dtype)
    L_inv = jax.scipy.linalg.solve_triangular(L, jnp.eye(L.shape[0], dtype=x.dtype), lower=True)
    drift = lambda g: (g @ L) @ L.T      # M g, rows
    noise = lambda xi: xi @ L.T          # L xi, rows
    whiten = lambda r: r @ L_inv.T       # L^{-1} r, rows

  def log_q(x_to, x_from, g_from):
    # log density (up to const) of proposing x_to from x_from
    r = whiten(x_to - x_from + step_size * drift(g_from))
    return -jnp.sum(r ** 2, axis=-1) / (4.0 * step_size)

  def pick(accept, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(accept.reshape(accept.shape + (1,) * (a.ndim - 1)), a, b)
        if a.ndim >= 1 else a, new, old)

  def body(carry, k):
    x, u, g, aux = carry
    k1, k2 = jax.random.split(k)
    prop = x - step_size * drift(g) + jnp.sqrt(2.0 * step_size) * noise(jax.random.normal(k1, x.shape))
    u_p, g_p, aux_p = value_grad(prop, aux)
    log_ratio = (u - u_p) + log_q(x, prop, g_p) - log_q(prop, x, g)
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accept = jnp.log(jax.random.uniform(k2, u.shape)) < log_ratio
    x, u, g, aux = pick(accept, (prop, u_p, g_p, aux_p), (x, u, g, aux))
    return (x, u, g, aux), jnp.mean(accept)

  u, g, aux = value_grad(x, aux)
  (x, _, _, aux), acc = jax.lax.scan(body, (x, u, g, aux), jax.random.split(key, n_steps))
  return x, aux, jnp.mean(acc)


def adapt_step_size(step_size, acceptance, rate: float = 0.1, lo: float = 1e-6, hi: float = 10.0):
  """Robbins-Monro style update of the MALA step size towards ``TARGET_ACCEPT``."""
  return jnp.clip(step_size * jnp.exp(rate * (acceptance - TARGET_ACCEPT)), lo, hi)


_WARMUP_ROUNDS = 40     # rounds of _WARMUP_STEPS MALA steps, the step size adapted between rounds
_WARMUP_STEPS = 5


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _energy_warmup(energy, key, n_chains: int, dim: int):
  k0, k_run = jax.random.split(key)
  x0 = jax.random.normal(k0, (n_chains, dim))

  def round_(carry, k):
    x, h = carry
    x, acc = mala(energy.fn, x, h, k, _WARMUP_STEPS)
    return (x, adapt_step_size(h, acc, rate=1.0)), acc

  (x, _), _ = jax.lax.scan(round_, (x0, jnp.asarray(0.1, jnp.float32)),
                           jax.random.split(k_run, _WARMUP_ROUNDS))
  return x


def rough_samples(energy, key, n_chains: int = 4096):
  """``[n_chains, dim]`` float64: ``n_chains`` MALA chains on ``exp(-E)`` from ``N(0, I)``, 200
  steps, the step size adapted towards ``TARGET_ACCEPT`` every 5: a rough picture of where the
  mass is (the energy models' starts). ValueError if a chain diverged."""
  x = np.asarray(_energy_warmup(energy, key, int(n_chains), int(energy.dim)), np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"MALA on the energy {energy.label!r} diverged from N(0, I): is exp(-E) "
                     "integrable?")
  return x
