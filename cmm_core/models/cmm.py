"""Conjugate moment measure: rho = grad w* # e^{-w} (Vesseron, Bethune & Cuturi 2025).

Training is the fixed point of an OT problem: ``grad w`` is the Brenier map from rho to
``e^{-w}``. Each step (all inside one jit-compiled scan):

1. move persistent MALA chains ``x ~ e^{-w_k}``;
2. solve the conjugates ``y* = grad w_k*(x) = argmax_y <x, y> - w_k(y)`` by L-BFGS
   (ott-jax), warm-started from the previous step's ``y*``;
3. take one Adam step on the semi-dual ``E_rho[w(y)] + E_{x ~ e^{-w_k}}[w*(x)]`` with the
   chains held fixed; by Danskin ``grad_theta w*(x) = -grad_theta w(y*)``.

Small optimiser steps with persistent chains act as the damping that the undamped fixed
point needs (its error is multiplied by ``-s^{2/3}`` per step in 1D, so it diverges for s > 1).
The ``y*`` are also the model's samples in data space, so the energy distance between them
and the data batch is tracked for free.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from cmm_core import closed_form, metrics as metrics_lib, potentials, sampling
from cmm_core.models.base import FittedModel, Model

__all__ = ["CMM", "CMMFitted"]


class CMMState(NamedTuple):
  params: Any
  opt_state: Any
  chains: jnp.ndarray      # [b, d] MALA chains of e^{-w}
  y_star: jnp.ndarray      # [b, d] grad w*(chains), warm starts
  step_size: jnp.ndarray   # scalar MALA step size
  t: jnp.ndarray           # steps taken; the first ``burn_in`` only move chains and conjugates


def _potential_from_extras(extras: dict) -> potentials.ConvexPotential:
  return potentials.ConvexPotential(
      dim=int(extras["dim"]), hidden=tuple(int(h) for h in extras["hidden"]),
      activation=str(extras["activation"]),
      center=np.asarray(extras["center"], np.float32), scale=float(extras["scale"]),
      floor_a=np.asarray(extras["floor_a"], np.float32),
      floor_B=np.asarray(extras["floor_B"], np.float32),
      init_scale=float(extras["init_scale"]))


class CMM(Model):
  """Conjugate moment measure fitted by the semi-dual fixed point (see module docstring)."""

  name = "cmm"
  default_steps = 2000
  defaults = {
      "hidden": (64, 64),        # ICNN widths
      "activation": "softplus",  # convex, non-decreasing
      "init_scale": 0.5,         # scale of the ICNN's random weights at init
      "alpha": 0.05,             # strongly convex floor, fraction of the Gaussian guess
      "learning_rate": 5e-3,
      "batch_size": 256,         # data batch = number of chains
      "langevin_steps": 2,       # MALA steps per training step
      "conjugate_iters": 4,      # Newton iterations per step (warm-started)
      "ot_step": "semidual",     # "semidual" (Danskin, conjugates) or "matching" (Sinkhorn)
      "match_epsilon": 0.01,     # Sinkhorn epsilon for "matching", relative to the mean cost
      "burn_in": 50,             # steps that only move chains/conjugates before training
  }
  bounds = {
      "alpha": (1e-4, 0.9), "init_scale": (1e-3, 3.0), "learning_rate": (1e-6, 0.1), "batch_size": (8, 8192),
      "langevin_steps": (1, 100), "conjugate_iters": (1, 200), "burn_in": (0, 10_000),
  }

  def validate(self, c: dict) -> None:
    for k, (lo, hi) in self.bounds.items():
      v = c[k]
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise ValueError(f"{self.name}: {k} must be a number in [{lo}, {hi}], got {v!r}")
    for k in ("batch_size", "langevin_steps", "conjugate_iters", "burn_in"):
      if int(c[k]) != c[k]:
        raise ValueError(f"{self.name}: {k} must be an integer, got {c[k]!r}")
    hidden = c["hidden"]
    if (isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__len__") or not 1 <= len(hidden) <= 6
        or not all(isinstance(h, (int, np.integer)) and 1 <= h <= 1024 for h in hidden)):
      raise ValueError(f"{self.name}: hidden must be 1 to 6 layer widths in [1, 1024], got {hidden!r}")
    if c["activation"] not in potentials.ACTIVATIONS:
      raise ValueError(f"{self.name}: activation must be one of {sorted(potentials.ACTIVATIONS)}, "
                       f"got {c['activation']!r}")
    c["hidden"] = tuple(int(h) for h in hidden)
    if c["ot_step"] not in ("semidual", "matching"):
      raise ValueError(f"{self.name}: ot_step must be 'semidual' or 'matching', got {c['ot_step']!r}")
    eps = c["match_epsilon"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 1e-4 <= eps <= 10:
      raise ValueError(f"{self.name}: match_epsilon must be a number in [1e-4, 10], got {eps!r}")

  def divergence_hint(self) -> str:
    return "Lower learning_rate (e.g. halve it) or raise alpha."

  # -- init ------------------------------------------------------------------
  def init(self, key, data):
    c = self.config
    data_np = np.asarray(data, np.float64)
    mean, cov = data_np.mean(0), np.atleast_2d(np.cov(data_np.T))
    gauss = closed_form.gaussian_cmm(mean, cov)
    base_mean = np.asarray(gauss["base_mean"]).reshape(-1)
    base_cov = np.atleast_2d(gauss["base_cov"])
    B = np.atleast_2d(gauss["potential_matrix"])
    k_init, k_chain = jax.random.split(key)
    self.potential, params = potentials.make_potential(
        data_np, base_mean, B, k_init, hidden=c["hidden"], activation=c["activation"],
        alpha=c["alpha"], init_scale=c["init_scale"])
    self.extras = {
        "dim": data_np.shape[1], "hidden": list(c["hidden"]), "activation": c["activation"],
        "center": np.asarray(self.potential.center), "scale": self.potential.scale,
        "floor_a": np.asarray(self.potential.floor_a), "floor_B": np.asarray(self.potential.floor_B),
        "init_scale": self.potential.init_scale,
    }
    self.tx = optax.adam(c["learning_rate"])
    b = int(c["batch_size"])
    chol = np.linalg.cholesky(base_cov + 1e-9 * np.eye(len(base_mean)))
    chains = base_mean + jax.random.normal(k_chain, (b, len(base_mean))) @ jnp.asarray(chol.T, jnp.float32)
    h0 = 0.5 * float(np.min(np.linalg.eigvalsh(base_cov)))
    map_matrix = np.atleast_2d(gauss["map_matrix"])
    y0 = jnp.asarray(np.reshape(gauss["map_offset"], -1), jnp.float32) + chains @ jnp.asarray(map_matrix, jnp.float32).T
    return CMMState(params, self.tx.init(params), chains.astype(jnp.float32), y0.astype(jnp.float32),
                    jnp.asarray(h0, jnp.float32), jnp.asarray(0, jnp.int32))

  # -- one step --------------------------------------------------------------
  def step(self, state: CMMState, key, data):
    c = self.config
    k_batch, k_mala = jax.random.split(key)
    apply = self.potential.apply
    energy = functools.partial(apply, state.params)
    idx = jax.random.randint(k_batch, (int(c["batch_size"]),), 0, data.shape[0])
    y = data[idx]
    x, acc = sampling.mala(energy, state.chains, state.step_size, k_mala, int(c["langevin_steps"]))
    warm = state.t < int(c["burn_in"])
    step_size = sampling.adapt_step_size(state.step_size, acc, rate=jnp.where(warm, 0.3, 0.05))
    if c["ot_step"] == "semidual":
      y_star, _, resid = potentials.conjugate_argmax(
          energy, x, state.y_star, max_iter=int(c["conjugate_iters"]))

      def loss_fn(p):
        w = functools.partial(apply, p)
        # E_rho[w] + E_mu[<x, y*> - w(y*)], y* fixed (Danskin)
        return jnp.mean(w(y)) + jnp.mean(jnp.sum(x * y_star, -1) - w(y_star))
    else:
      y_star, resid = state.y_star, jnp.zeros(())
      target = _matched_targets(y, x, float(c["match_epsilon"]))

      def loss_fn(p):
        # regress grad w(y_i) on the base points matched to y_i (barycentric projection)
        g = potentials.batch_grad(functools.partial(apply, p), y)
        return jnp.mean(jnp.sum((g - target) ** 2, -1))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda u: jnp.where(warm, 0.0, u), updates)
    params = optax.apply_updates(state.params, updates)
    # fixed-point gap: at the fixed point grad w # rho equals e^{-w}, compared in base space
    pushed = potentials.batch_grad(energy, y)
    metrics = {
        "loss": loss,
        "fixed_point_gap": metrics_lib._energy(pushed, x),
        "acceptance": acc,
        "conjugate_residual": jnp.mean(resid),
        "step_size": step_size,
    }
    opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(warm, old, new), opt_state, state.opt_state)
    return CMMState(params, opt_state, x, y_star, step_size, state.t + 1), metrics

  def finalize(self, state: CMMState, history, info) -> "CMMFitted":
    extras = dict(self.extras)
    extras["chains"] = np.asarray(state.chains)
    extras["step_size"] = float(state.step_size)
    return CMMFitted(config=dict(self.config), params=state.params, extras=extras,
                     history=history, info=info)


@dataclasses.dataclass
class CMMFitted(FittedModel):
  """A fitted conjugate moment measure: base ``e^{-w}``, map ``grad w*``."""

  model = "cmm"

  @functools.cached_property
  def _potential(self):
    return _potential_from_extras(self.extras)

  @functools.cached_property
  def _fns(self):
    pot = self._potential

    @jax.jit
    def sample_base(params, key, init, step_size):
      energy = functools.partial(pot.apply, params)
      return sampling.mala(energy, init, step_size, key, 50)

    @functools.partial(jax.jit, static_argnums=3)
    def conj(params, x, y0, iters):
      energy = functools.partial(pot.apply, params)
      return potentials.conjugate_argmax(energy, x, y0, max_iter=iters)

    @jax.jit
    def w_vals(params, x):
      return pot.apply(params, x)

    @jax.jit
    def grad_w(params, y):
      return potentials.batch_grad(functools.partial(pot.apply, params), y)

    @jax.jit
    def logdet_hess(params, y):
      h = potentials.batch_hessian(functools.partial(pot.apply, params), y)
      return jnp.linalg.slogdet(h)[1]

    return dict(sample_base=sample_base, conj=conj, w=w_vals, grad_w=grad_w,
                logdet_hess=logdet_hess)

  def _gaussian_guess(self):
    chains = np.asarray(self.extras["chains"], np.float64)
    return chains.mean(0), np.atleast_2d(np.cov(chains.T))

  def sample_base(self, n: int, seed: int = 0) -> np.ndarray:
    n = _check_n(n)
    key = jax.random.PRNGKey(seed)
    k0, k1 = jax.random.split(key)
    chains = jnp.asarray(self.extras["chains"], jnp.float32)
    # start from the persistent chains (already at stationarity), resampled, then decorrelate
    idx = jax.random.randint(k0, (n,), 0, chains.shape[0])
    x = chains[idx]
    h = jnp.asarray(self.extras["step_size"], jnp.float32)
    for k in jax.random.split(k1, 4):
      x, _ = self._fns["sample_base"](self.params, k, x, h)
    return np.asarray(x)

  def transport(self, x) -> np.ndarray:
    x = self._points(x)
    y0 = self._warm_start(x)
    y, _, _ = self._fns["conj"](self.params, jnp.asarray(x), jnp.asarray(y0), 12)
    return np.asarray(y)

  def _warm_start(self, x):
    # the Gaussian fit to the base: grad w*(x) ~ a + S^{1/3} x with S the implied data covariance
    mean_b, cov_b = self._gaussian_guess()
    a, B = mean_b, np.linalg.inv(cov_b)
    # w ~ 1/2 (x - a)^T B (x - a) => grad w*(x) = B^{-1} x + a
    return (x @ np.linalg.inv(B).T + a).astype(np.float32)

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    return self.transport(self.sample_base(n, seed))

  def potential(self, x) -> np.ndarray:
    """``w(x)`` at ``x`` ``[n, d]`` -> ``[n]`` (unnormalised base energy)."""
    x = self._points(x)
    return np.asarray(self._fns["w"](self.params, jnp.asarray(x)))

  def inverse_transport(self, y) -> np.ndarray:
    """``grad w(y)``: data -> base, ``[n, d]``."""
    y = self._points(y, "y")
    return np.asarray(self._fns["grad_w"](self.params, jnp.asarray(y)))

  @functools.cached_property
  def log_normalizer(self) -> float:
    """``log Z``, ``Z = integral e^{-w}``: quadrature in 1D/2D, importance sampling above."""
    return _log_normalizer(self.potential, self._gaussian_guess(), self.dim)

  def base_log_density(self, x) -> np.ndarray:
    return -self.potential(x) - self.log_normalizer

  def log_prob(self, y) -> np.ndarray:
    """``log rho(y) = -w(grad w(y)) + log det Hess w(y) - log Z``."""
    y = self._points(y, "y")
    g = self._fns["grad_w"](self.params, jnp.asarray(y))
    ld = self._fns["logdet_hess"](self.params, jnp.asarray(y))
    return np.asarray(-self._fns["w"](self.params, g) + ld) - self.log_normalizer


def _matched_targets(y, x, rel_epsilon: float):
  """Barycentric projection of the entropic OT plan from ``y`` ``[b, d]`` to ``x`` ``[b, d]``."""
  geom = pointcloud.PointCloud(y, x, epsilon=rel_epsilon, relative_epsilon="mean")
  out = sinkhorn.Sinkhorn(max_iterations=500)(linear_problem.LinearProblem(geom))
  plan = out.matrix
  return jax.lax.stop_gradient(plan @ x / jnp.sum(plan, 1, keepdims=True))


MAX_SAMPLES = 200_000


def _check_n(n) -> int:
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
    raise ValueError(f"n must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
  return int(n)


def _log_normalizer(energy, gaussian_guess, dim: int, n_grid: int = 400) -> float:
  """``log integral e^{-w}`` for an energy ``[n, d] -> [n]``."""
  mean, cov = gaussian_guess
  std = np.sqrt(np.diag(cov))
  if dim <= 2:
    axes = [np.linspace(m - 10 * s, m + 10 * s, n_grid if dim == 1 else 300) for m, s in zip(mean, std)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    vals = -np.asarray(energy(mesh), np.float64)
    cell = np.prod([ax[1] - ax[0] for ax in axes])
    mx = vals.max()
    return float(mx + np.log(np.sum(np.exp(vals - mx)) * cell))
  rng = np.random.default_rng(0)
  scale_cov = 2.0 * cov  # wider proposal
  z = rng.multivariate_normal(mean, scale_cov, size=20_000)
  sign, logdet = np.linalg.slogdet(2 * np.pi * scale_cov)
  diff = z - mean
  log_q = -0.5 * np.sum(diff @ np.linalg.inv(scale_cov) * diff, -1) - 0.5 * logdet
  log_w = -np.asarray(energy(z), np.float64) - log_q
  mx = log_w.max()
  return float(mx + np.log(np.mean(np.exp(log_w - mx))))


CMM.fitted_cls = CMMFitted
