"""Three factorizations with one convex potential and one OT fixed-point trainer.

- ``cmm``, conjugate moment measure (Vesseron, Bethune & Cuturi 2025): rho = grad w* # e^{-w}.
- ``mm``, moment measure: rho = grad u # e^{-u} (the data are centred first).
- ``brenier``, the classical split: rho = grad w* # N(0, I).

Each trains one ICNN potential ``f`` (:mod:`cmm_core.potentials`) on the OT semi-dual

    min_f  E_P[f] + E_Q[f*]        (f* by a batched conjugate solver, gradient by Danskin)

between two point sets whose roles are the model's *side*:

======== ========================== ============================== ==========================
model    f evaluated at P           f* evaluated at Q              map base -> data
======== ========================== ============================== ==========================
cmm      data batch                 MALA chains of e^{-f}          grad f* (conjugate solve)
mm       MALA chains of e^{-f}      data batch                     grad f
brenier  data batch                 N(0, I) points                 grad f* (conjugate solve)
======== ========================== ============================== ==========================

For ``cmm`` and ``mm`` the base ``e^{-f}`` moves with ``f``, so training is the fixed point of an
OT problem; small optimiser steps with persistent chains are the damping that the undamped
fixed point needs (its error is multiplied by ``-s^{2/3}`` per step in 1D). Every step (one
jit-compiled function, run in ``lax.scan`` chunks by :mod:`cmm_core.train`):

1. move the base points (MALA for e^{-f}; an exact AR(1) move for N(0, I));
2. re-solve the conjugates, warm-started from the previous solution (persistent per chain,
   or per data point for ``mm``);
3. one Adam step on the semi-dual with the points held fixed.

cmm's default objective is the likelihood instead (``objective="mle"``): ``-log rho(y) =
w(grad w(y)) - log det Hess w(y) + log Z``, the gradient of ``log Z`` from the chains. Its step
skips 2 (no conjugates: the samples ``grad w*(x)`` are solved at use time) and takes the Adam step
on that loss.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmm_core import batching, closed_form, compile_cache, hyper, metrics as metrics_lib, potentials, sampling, schedules, sharding
from cmm_core.models.base import MAX_SAMPLES, FittedModel, Model, check_n, check_seed

__all__ = ["CMM", "MM", "Brenier", "ConvexFitted", "CMMFitted", "MMFitted", "BrenierFitted",
           "MAX_SAMPLES"]

AXIS_LR_END = 0.1        # final / initial learning rate at most, with the separable part (docs/training.md)
_AR_RATE = 0.5          # Brenier: x <- sqrt(1 - r^2) x + r xi keeps N(0, I) exact
HIGH_DIM = 16           # "auto" settings: today's 2D-tuned ones up to this dimension, matrix-free above
PIECES_MIN_ROWS_PER_DIM = 64
"""Fewer rows per dimension than this and cmm's ``pieces`` "auto" is 0: iris standardised (150 rows
in 4-D, 37 per dimension) fitted at 0.27-0.34 of a Gaussian's energy distance without pieces and
0.55-1.09 with 256 over three seeds; penguins standardised (85 per dimension) 0.10-0.12 with and
0.12-0.29 without; Old Faithful (136) needs them (docs/training.md). mm and brenier keep their
pieces: both fail the matrix on iris without them."""
ALPHA, INIT_SCALE = 0.05, 0.5     # the floor and the ICNN's random start (mm, brenier; cmm's default)
CMM_ALPHA, CMM_SMALL_START, CMM_TUNED_MIN_ROWS = 0.02, 0.2, 1000
"""cmm's "auto" from ``CMM_TUNED_MIN_ROWS`` rows up to ``HIGH_DIM``: a lower floor, and a smaller
random start where its random part is as small next to the Gaussian guess as the shared rule lets
``INIT_SCALE``'s be (standardised data, the toys; tables in their own units keep the start
``make_potential`` finds from ``INIT_SCALE``). On the toys (4,000 rows) the held-out NLL is better
and steadier; on tables of 100-300 rows it was worse, so they keep the shared values
(docs/training.md, session 42)."""


def cmm_tuned(dim: int, n) -> bool:
  """Whether cmm's "auto" floor and start are ``CMM_ALPHA`` and ``CMM_SMALL_START``: from
  ``CMM_TUNED_MIN_ROWS`` rows (``n``; None: unknown, no) up to ``HIGH_DIM`` dimensions."""
  return dim <= HIGH_DIM and n is not None and n >= CMM_TUNED_MIN_ROWS


_HIGH_DIM_CONJUGATE_ITERS = 3   # "auto" Newton-CG iterations per training step above HIGH_DIM
# above HIGH_DIM the ICNN's random start may move grad w by at most this fraction of the Gaussian
# guess's spread (potentials.RANDOM_PART_RATIO, 1.0, below): at d = 64 a random part as large as
# the guess starts far from it (energy distance 2x a Gaussian's) and the fit never recovers
_HIGH_DIM_RANDOM_PART_RATIO = 0.1
QUADRATIC_DAMPING = 0.25  # quadratic="damped": the guess's quadratic's share of Adam's step (cmm above
# HIGH_DIM). Kept fixed there, w = guess + a convex part, no flatter than the guess anywhere: on a 24-D
# mixture, samples twice as far from the data as a Gaussian's. Trained at the full step, its curvature
# drifts (64-D: energy distance 0.30 against 0.18 damped). benchmarks/high_d.py, docs/scaling.md


class State(NamedTuple):
  params: Any              # trainable ICNN parameters
  consts: Any              # fixed potential constants (normalisation, floor)
  opt_state: Any
  chains: jnp.ndarray      # [b, d] base points: MALA chains (cmm, mm) or N(0, I) (brenier)
  chain_conj: jnp.ndarray  # [b, d] grad f*(chains) when the base is e^{-f*} (cmm, potential "base")
  warm: jnp.ndarray        # conjugate warm starts: [b, d] per chain, or [n, d] per data point (mm)
  step_size: jnp.ndarray   # scalar MALA step size
  precond: jnp.ndarray     # [d, d] MALA preconditioner L (proposal covariance 2 h L L^T)
  t: jnp.ndarray           # steps taken; the first ``burn_in`` only move points and conjugates
  fixed: Any               # data-dependent constants: ``shift [d]`` (subtracted from the data),
  #                          ``lr_scale []`` (times Adam's steps), ``init_scale []``, the Gaussian
  #                          guess ``guess_a [d]``, ``guess_B [d, d]``


def _gaussian_guess(side: str, on_base: bool, mean: np.ndarray, cov: np.ndarray) -> dict:
  """The exact fit of N(mean, cov): potential ``f = 1/2 (x - a)^T B (x - a)`` and its base.

  With the closed-form map ``T(x) = M x + o`` (base -> data): a potential on the base side has
  ``grad f = T``, so ``B = M``, ``a = -M^{-1} o``; on the data side ``grad f = T^{-1}``, so
  ``B = M^{-1}``, ``a = o``.

  Returns a dict with ``a [d]``, ``B [d, d]``, ``base_mean [d]``, ``base_cov [d, d]``.
  """
  if side == "cmm":
    g = closed_form.gaussian_cmm(mean, cov)
  elif side == "mm":
    g = closed_form.gaussian_mm(cov)
  else:
    g = closed_form.gaussian_brenier(mean, cov)
  M = np.atleast_2d(g["map_matrix"])
  o = np.reshape(g["map_offset"], -1)
  if on_base:
    a, B = -np.linalg.solve(M, o), M
  else:
    a, B = o, np.linalg.inv(M)
  B = 0.5 * (B + B.T)
  return {"a": a, "B": B,
          "base_mean": np.reshape(g["base_mean"], -1), "base_cov": np.atleast_2d(g["base_cov"])}


# -- fitted models -----------------------------------------------------------------------------

# Rows per call of the fitted model's jitted functions: every request runs in blocks of this many
# rows (the last one padded), so each function compiles once whatever the number of rows asked for
# (a compilation of the conjugate or Langevin programs is 5-10 s on a CPU, a block of 1,024 rows
# about 0.7 s of Newton and Langevin work in 2D).
_ROW_BLOCK = 1024


def _rowwise(fn, *arrays: np.ndarray, key=None):
  """Applies a jitted row-wise ``fn`` to arrays ``[n, ...]`` in blocks of ``_ROW_BLOCK`` rows
  (the last padded by :func:`~cmm_core.batching.pad_rows`), concatenated and trimmed to ``n``.

  ``fn(*blocks)``, or ``fn(key_i, *blocks)`` when ``key`` is given: block ``i`` gets
  ``fold_in(key, i)``, so no two blocks share their random numbers.
  """
  n = arrays[0].shape[0]
  blocks = max(1, -(-n // _ROW_BLOCK))
  padded = [batching.pad_rows(np.asarray(a), blocks * _ROW_BLOCK) for a in arrays]
  outs = []
  for i in range(blocks):
    rows = [jnp.asarray(a[i * _ROW_BLOCK:(i + 1) * _ROW_BLOCK], jnp.float32) for a in padded]
    outs.append(fn(*rows) if key is None else fn(jax.random.fold_in(key, i), *rows))
  return jax.tree_util.tree_map(lambda *o: np.concatenate([np.asarray(b) for b in o])[:n], *outs)


@functools.partial(jax.jit, static_argnums=0)
def _f_value(pot, variables, x):
  return pot.apply(variables, x)


@functools.partial(jax.jit, static_argnums=0)
def _f_grad(pot, variables, x):
  return potentials.batch_grad(potentials.PotentialEnergy(pot, variables), x)


@functools.partial(jax.jit, static_argnums=0)
def _f_logdet_hess(pot, variables, x):
  h = potentials.batch_hessian(potentials.PotentialEnergy(pot, variables), x)
  return jnp.linalg.slogdet(h)[1]


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _f_conjugate(pot, variables, x, y0, iters, solver="newton", cg_iters=0, precond=None):
  y, _, resid = potentials.conjugate_argmax(potentials.PotentialEnergy(pot, variables), x, y0,
                                            max_iter=iters, solver=solver, cg_iters=cg_iters,
                                            precond=precond)
  return y, resid


@functools.partial(jax.jit, static_argnums=(0, 5))
def _f_mala(pot, variables, x, step_size, key, n_steps, precond):
  return sampling.mala(potentials.PotentialEnergy(pot, variables), x, step_size, key, n_steps,
                       precond)[0]


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 9, 10))
def _f_star_mala(pot, variables, x, z, step_size, key, n_steps, iters, precond, solver="newton",
                 cg_iters=0, solve_precond=None):
  """MALA on e^{-f*}; ``z [b, d]`` are the chains' conjugates (warm starts)."""
  energy = potentials.PotentialEnergy(pot, variables)

  def value_grad(x, z):
    z, _, _ = potentials.conjugate_argmax(energy, x, z, max_iter=iters, solver=solver,
                                          cg_iters=cg_iters, precond=solve_precond)
    return jnp.sum(x * z, -1) - energy(z), z, z

  x, z, _ = sampling.mala_aux(value_grad, x, z, step_size, key, n_steps, precond)
  return x, z


_LOGDET_ROWS = 8        # rows whose exact log-determinant the Hutchinson objective reports
_CONJUGATE_ITERS = 12   # Newton iterations of a conjugate solve at use time (from the linear guess)
_SAMPLE_CG_ITERS = 16   # and CG iterations per Newton step when the fit's solver is "newton_cg"


@dataclasses.dataclass
class ConvexFitted(FittedModel):
  """A fitted convex-potential factorization (see the module docstring for the three sides).

  ``params`` holds the potential's variables ``{"params", "consts"}``; ``potential(x)`` is the
  trained ``f`` (``w`` for cmm and brenier, ``u`` for mm).
  """

  @functools.cached_property
  def _pot(self) -> potentials.ConvexPotential:
    e = self.extras
    # the weights' initial scale (extras["init_scale"]) plays no part in apply: the module is
    # built without it, so every fit of one structure shares the compiled functions below
    return potentials.ConvexPotential(dim=int(e["dim"]), hidden=tuple(int(h) for h in e["hidden"]),
                                      activation=str(e["activation"]),
                                      pieces=int(e.get("pieces", 0)), even=bool(e.get("even", False)),
                                      axis_hinges=int(e.get("axis_hinges", 0)),
                                      radial=bool(e.get("radial", False)))

  @functools.cached_property
  def _vars(self):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), self.params)

  @property
  def side(self) -> str:
    return self.model

  @property
  def _shift(self) -> np.ndarray:
    return np.asarray(self.extras.get("shift", np.zeros(self.dim)), np.float32).reshape(self.dim)

  @property
  def _solver(self) -> tuple:
    """``(solver, cg_iters, precond)`` of the conjugate solves at use time: the fit's solver
    (files saved before ``conjugate_solver`` existed: dense Newton)."""
    solver = str(self.config.get("conjugate_solver", "newton"))
    if solver != "newton_cg":
      return "newton", 0, None
    return solver, _SAMPLE_CG_ITERS, self._solve_precond

  @functools.cached_property
  def _solve_precond(self):
    """The inverse of the Gaussian guess's curvature ``[d, d]``: preconditions CG."""
    B = np.atleast_2d(np.asarray(self.extras["guess_B"], np.float64))
    return jnp.asarray(np.linalg.inv(B), jnp.float32)

  def _conjugate_padded(self, x, y0):
    """``(grad f*(x), residual)`` for ``x`` ``[n, d]`` by Newton from the warm start ``y0``."""
    solver, cg, M = self._solver
    return _rowwise(lambda xp, y0p: _f_conjugate(self._pot, self._vars, xp, y0p, _CONJUGATE_ITERS,
                                                 solver, cg, M), x, y0)

  # -- the potential -------------------------------------------------------
  def potential(self, x) -> np.ndarray:
    """The trained potential ``f(x)`` at ``x`` ``[n, d]`` -> ``[n]``."""
    x = self._points(x)
    return _rowwise(lambda xp: _f_value(self._pot, self._vars, xp), x)

  def _grad(self, x: np.ndarray) -> np.ndarray:
    return _rowwise(lambda xp: _f_grad(self._pot, self._vars, xp), x)

  def _logdet_hess(self, x: np.ndarray) -> np.ndarray:
    return _rowwise(lambda xp: _f_logdet_hess(self._pot, self._vars, xp), x)

  def _conjugate_value(self, x: np.ndarray) -> np.ndarray:
    """``f*(x) = <x, z*> - f(z*)`` ``[n]``."""
    z = self._conjugate_padded(x, self._linear_guess(x))[0]
    return np.sum(x.astype(np.float64) * z, -1) - self.potential(z)

  @property
  def on_base(self) -> bool:
    """True when the trained ``f`` lives in base space (``transport = grad f``)."""
    return bool(self.extras.get("on_base", self.side == "mm"))

  @property
  def base_kind(self) -> str:
    """``"f"`` (base e^{-f}), ``"f*"`` (base e^{-f*}) or ``"normal"`` (N(0, I))."""
    return str(self.extras.get("base_kind", "normal" if self.side == "brenier" else "f"))

  def base_energy(self, x) -> np.ndarray:
    """The base's unnormalised energy at ``x`` ``[n, d]`` -> ``[n]``."""
    x = self._points(x)
    if self.base_kind == "normal":
      return 0.5 * np.sum(x.astype(np.float64) ** 2, -1)
    if self.base_kind == "f*":
      return self._conjugate_value(x)
    return self.potential(x)

  # -- the protocol --------------------------------------------------------
  def sample_base(self, n: int, seed: int = 0) -> np.ndarray:
    n = check_n(n)
    key = jax.random.PRNGKey(check_seed(seed))
    if self.base_kind == "normal":
      return np.asarray(jax.random.normal(key, (n, self.dim)), np.float32)
    k0, k1 = jax.random.split(key)
    chains = np.asarray(self.extras["chains"], np.float32)
    # start from the persistent chains (already at stationarity), resampled, then decorrelate
    idx = np.asarray(jax.random.randint(k0, (n,), 0, chains.shape[0]))
    x = chains[idx]
    h = jnp.asarray(self.extras["step_size"], jnp.float32)
    # files saved without a preconditioner used plain MALA: the identity
    L = jnp.asarray(self.extras.get("precond", np.eye(self.dim)), jnp.float32).reshape(self.dim, self.dim)
    if self.base_kind == "f*":
      z = self._conjugate_padded(x, self._linear_guess(x))[0]
      solver, cg, M = self._solver
      for k in jax.random.split(k1, 3):
        x, z = _rowwise(lambda kb, xp, zp: _f_star_mala(self._pot, self._vars, xp, zp, h, kb, 20, 2,
                                                        L, solver, cg, M), x, z, key=k)
      return np.asarray(x)
    for k in jax.random.split(k1, 4):
      x = _rowwise(lambda kb, xp: _f_mala(self._pot, self._vars, xp, h, kb, 50, L), x, key=k)
    return np.asarray(x)

  def transport(self, x) -> np.ndarray:
    """The base -> data map: ``grad f`` (potential in base space; plus the data mean for mm)
    or ``grad f*`` (potential in data space)."""
    x = self._points(x)
    if self.on_base:
      return self._grad(x) + self._shift
    return self._conjugate_padded(x, self._linear_guess(x))[0]

  def inverse_transport(self, y) -> np.ndarray:
    """The data -> base map, ``[n, d]``: the inverse of :meth:`transport`."""
    y = self._points(y, "y")
    if self.on_base:
      y = y - self._shift
      return self._conjugate_padded(y, self._linear_guess(y))[0]
    return self._grad(y)

  def _linear_guess(self, x: np.ndarray) -> np.ndarray:
    # argmax_y <x, y> - 1/2 (y - a)^T B (y - a) = a + B^{-1} x
    a = np.asarray(self.extras["guess_a"], np.float64).reshape(-1)
    B = np.atleast_2d(np.asarray(self.extras["guess_B"], np.float64))
    return (a + x @ np.linalg.inv(B).T).astype(np.float32)

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    return self.transport(self.sample_base(n, seed))

  @functools.cached_property
  def log_normalizer(self) -> float:
    """``log Z``, ``Z = integral e^{-energy}``: quadrature in 1D/2D, importance sampling up to
    d = ``HIGH_DIM``, annealed importance sampling above (base e^{-f})."""
    if self.base_kind == "normal":
      return 0.5 * self.dim * float(np.log(2 * np.pi))
    chains = np.asarray(self.extras["chains"], np.float64)
    guess = chains.mean(0), np.atleast_2d(np.cov(chains.T))
    if self.dim > HIGH_DIM and self.base_kind == "f":
      return self._ais_log_normalizer(*guess)
    return _log_normalizer(self.base_energy, guess, self.dim)

  def _ais_log_normalizer(self, mean, cov, seed: int = 0) -> float:
    """``log Z`` by annealed importance sampling from ``N(mean, cov)`` (the chains' moments) to
    ``e^{-f}`` along the geometric path, MALA moves at each temperature. Z itself is unbiased, so
    ``log Z`` is, if anything, low and the NLL high: a conservative figure. Importance sampling
    straight from a Gaussian has log-weights of variance ~d/2 at d = 64 (hopeless)."""
    d = self.dim
    chol = np.linalg.cholesky(cov + 1e-6 * np.trace(cov) / d * np.eye(d))
    L = np.asarray(self.extras.get("precond", np.eye(d)), np.float64).reshape(d, d)
    return float(_ais_log_z(self._pot, self._vars, jnp.asarray(mean, jnp.float32),
                            jnp.asarray(chol, jnp.float32), jnp.asarray(L, jnp.float32),
                            jnp.asarray(self.extras["step_size"], jnp.float32),
                            jax.random.PRNGKey(seed), _AIS_TEMPS, _AIS_PARTICLES))

  def base_log_density(self, x) -> np.ndarray:
    return -self.base_energy(x) - self.log_normalizer

  def log_prob(self, y) -> np.ndarray:
    """Exact data log-density by the change of variables through the map.

    Potential in data space (map ``grad f*``): ``log mu(grad f(y)) + log det Hess f(y)``;
    in base space (map ``grad f``): ``log mu(x) - log det Hess f(x)`` at ``x = grad f*(y)``.
    For cmm, ``mu = e^{-w} / Z`` with ``Z`` by quadrature (1D/2D) or importance sampling.
    """
    y = self._points(y, "y")
    x = self.inverse_transport(y)
    if self.on_base:
      return self.base_log_density(x) - self._logdet_hess(x)
    return self.base_log_density(x) + self._logdet_hess(y)

  def log_density_fn(self, exact_gradient: Optional[bool] = None):
    """A JAX-traceable unnormalised data log-density, for gradient-based samplers.

    Args:
      exact_gradient: True: autodiff gives the exact gradient; False: the ``log det Hess f`` term
        is held out of it (third derivatives: at d = 64 about 40 times the cost of the value, and
        noisy in float32), so the gradient is that of the base-energy term only, a drift that a
        Metropolis-Hastings sampler may still use (its ratio uses the exact value). None: exact up
        to ``EXACT_GRADIENT_MAX_DIM`` dimensions.

    Returns:
      ``(fn, args)``: ``fn(args, y [d]) -> []`` equals :meth:`log_prob` up to the constant
      ``log Z``; ``fn`` depends on the potential's structure only (equal for equal structures:
      jitted code is shared). A potential in base space (mm, the default brenier) needs
      ``x = grad f*(y)``: Newton from the Gaussian guess, then one Newton step written so that
      autodiff gives the implicit derivative ``dx/dy = Hess f(x)^{-1}``.
    """
    if exact_gradient is None:
      exact_gradient = self.dim <= EXACT_GRADIENT_MAX_DIM
    B_inv = np.linalg.inv(np.atleast_2d(np.asarray(self.extras["guess_B"], np.float64)))
    args = (self._vars, jnp.asarray(self._shift, jnp.float32),
            jnp.asarray(np.reshape(self.extras["guess_a"], -1), jnp.float32),
            jnp.asarray(B_inv, jnp.float32))
    return _convex_log_density(self._pot, self.on_base, self.base_kind, bool(exact_gradient)), args


class CMMFitted(ConvexFitted):
  model = "cmm"


class MMFitted(ConvexFitted):
  model = "mm"


class BrenierFitted(ConvexFitted):
  model = "brenier"


EXACT_GRADIENT_MAX_DIM = 16  # log_density_fn: the log-det term's gradient up to this dimension
_INVERSE_NEWTON_ITERS = 30  # log_density_fn: most Newton steps to grad f*(y) from the Gaussian guess
_INVERSE_NEWTON_TOL = 1e-4   # ... stopping at |grad f(x) - y| <= this times (1 + max |y|)


@functools.lru_cache(maxsize=32)
def _convex_log_density(pot, on_base: bool, base_kind: str, exact_gradient: bool):
  """``fn((variables, shift, a, B_inv), y [d]) -> []``: ``log rho(y) + log Z`` (ConvexFitted)."""

  def conjugate(f, x, a, B_inv):
    # grad f*(x) by damped Newton from the guess's a + B^{-1} x, to a tolerance (no gradient)
    x = jax.lax.stop_gradient(x)
    tol = _INVERSE_NEWTON_TOL * (1.0 + jnp.max(jnp.abs(x)))

    def newton(carry):
      z, _, i, _ = carry
      z_new, _, resid = potentials.conjugate_argmax(f, x[None], z[None], max_iter=1)
      # a step the line search refuses leaves z as it is (float32's floor): stop there
      return z_new[0], resid[0], i + 1, jnp.any(z_new[0] != z)

    go = lambda c: (c[1] > tol) & (c[2] < _INVERSE_NEWTON_ITERS) & c[3]
    start = (a + B_inv @ x, jnp.asarray(jnp.inf, x.dtype), 0, jnp.asarray(True))
    return jax.lax.while_loop(go, newton, start)[0]

  def fn(args, y):
    variables, shift, a, B_inv = args
    f = potentials.PotentialEnergy(pot, variables)
    # one point's value, gradient and Hessian, in closed form where potential_jet has it
    jet = lambda v: [t[0] for t in potentials.batch_value_grad_hessian(f, v[None])]
    hold = (lambda t: t) if exact_gradient else jax.lax.stop_gradient
    hess_logdet = lambda v: hold(jnp.linalg.slogdet(jet(v)[2])[1])

    def energy(x):  # the base's energy, unnormalised
      if base_kind == "normal":
        return 0.5 * jnp.sum(x * x)
      if base_kind == "f*":  # f*(x) = <x, z*> - f(z*), gradient z* (Danskin)
        z = jax.lax.stop_gradient(conjugate(f, x, a, B_inv))
        return jnp.dot(x, z) - f(z)
      return f(x)

    if not on_base:  # rho = grad f* # mu: log mu(grad f(y)) + log det Hess f(y)
      _, g, h = jet(y)
      return -energy(g) + hold(jnp.linalg.slogdet(h)[1])
    # rho = grad f # mu: log mu(x) - log det Hess f(x) at x = grad f*(y - shift)
    y = y - shift
    x0 = conjugate(f, y, a, B_inv)
    _, g0, h = jax.lax.stop_gradient(jet(x0))
    # one more Newton step; its y-derivative is the implicit one, Hess f(x)^{-1}
    x = x0 + jnp.linalg.solve(h, y - g0)
    return -energy(x) - hess_logdet(x)

  return fn


# -- the models ----------------------------------------------------------------------------------

def _potential(static) -> potentials.ConvexPotential:
  """The potential's module as ``apply`` needs it (the weights' initial scale plays no part)."""
  c = static.config
  return potentials.ConvexPotential(dim=static.dim, hidden=tuple(c["hidden"]),
                                    activation=c["activation"],
                                    pieces=dict(static.extra).get("pieces", int(c.get("pieces", 0))),
                                    axis_hinges=dict(static.extra).get("axis_hinges", 0),
                                    **symmetry_flags(c))


def symmetry_flags(config: dict) -> dict:
  """``{"even", "radial"}``: the potential's flags for the config's ``symmetry`` (the energy route's
  "reflection" and "rotation"; the data route has none)."""
  symmetry = config.get("symmetry")
  return {"even": symmetry == "reflection", "radial": symmetry == "rotation"}


def _updates(static, total_steps: int) -> int:
  """The optimiser updates of ``total_steps`` training steps: they start after the burn-in."""
  return int(total_steps) - int(static.config["burn_in"])


def _optimizer(static) -> optax.GradientTransformation:
  """Adam at ``learning_rate``, cosine-decayed over the steps after burn-in to ``lr_decay`` of it
  (constant at 1), or to at most ``AXIS_LR_END`` of it with the separable part (tables in mixed
  units: constant steps left those fits to the last steps' noise, docs/training.md); the step
  scales the ICNN's updates by the fit's ``lr_scale`` (Adam's step is linear in the rate)."""
  c = static.config
  lr, end = c["learning_rate"], c["lr_decay"]
  if dict(static.extra).get("axis_hinges", 0):
    end = min(end, AXIS_LR_END)
  if end < 1.0:  # the horizon in the state: Model.set_horizon
    return schedules.adam_cosine(lr, end, max(1, _updates(static, static.total_steps)))
  return optax.adam(lr)


def scale_updates(updates: dict, lr_scale):
  """Adam's updates times ``lr_scale`` (the ICNN's, set by its random start's scale in
  ``make_potential``), except the separable part's (``axis_*``: they start at the guess and keep
  Adam's full steps)."""
  return {name: u if name.startswith("axis_") else jax.tree_util.tree_map(lambda v: v * lr_scale, u)
          for name, u in updates.items()}


def damp_quadratic(updates: dict, quadratic: str) -> dict:
  """Adam's ``updates`` with those of the quadratic that carries the Gaussian guess (the ICNN's
  ``pos_def_potentials``, and the separable part's ``axis_quadratic*`` where it carries it) times
  ``QUADRATIC_DAMPING`` (``quadratic="damped"``) or zero (``"fixed"``); others as given.

  Free, the quadratic's curvature drifts in high d; fixed, ``w`` is the guess plus a convex part,
  never flatter than the guess, where clusters need flatter stretches (docs/scaling.md)."""
  if quadratic not in ("damped", "fixed"):
    return updates
  damp = (lambda u: QUADRATIC_DAMPING * u) if quadratic == "damped" else jnp.zeros_like
  icnn = updates["icnn"]
  out = {**updates, "icnn": {**icnn, "pos_def_potentials": jax.tree_util.tree_map(
      damp, icnn["pos_def_potentials"])}}
  for name in ("axis_quadratic", "axis_quadratic_data"):
    if name in out:
      out[name] = damp(out[name])
  return out


class ConvexFixedPoint(Model):
  """The shared trainer; subclasses set ``side`` (see the module docstring)."""

  side: ClassVar[str] = ""
  default_steps = 2000
  schema = (
      hyper.Widths("hidden", (64, 64), "ICNN widths"),
      hyper.Choice("activation", "softplus", sorted(potentials.ACTIVATIONS),
                   "convex, non-decreasing"),
      hyper.Float("init_scale", INIT_SCALE, 1e-3, 3.0, "scale of the ICNN's random weights at init"),
      hyper.Float("feature_scale", 1.0, 0.1, 50.0,
                  "first-layer weights x this, kinks through data points"),
      hyper.Int("pieces", None, 0, 4096,
                "K > 0: add a soft max of K affine pieces (clusters; docs/training.md)",
                optional=f"256 up to d = {HIGH_DIM}, 0 above (cmm: 0 also below "
                         f"{PIECES_MIN_ROWS_PER_DIM} rows per dimension)"),
      hyper.Choice("objective", "semidual", ("auto", "semidual", "mle"),
                   '"semidual" (OT fixed point) or "mle" (exact likelihood); '
                   'auto: mle with potential "data", else semidual'),
      hyper.Choice("quadratic", "auto", ("auto", "trained", "damped", "fixed"),
                   "the ICNN's quadratic term, which starts as the Gaussian guess: trained, trained "
                   f"at {QUADRATIC_DAMPING:g} of the step (damped) or kept fixed; auto: trained up to "
                   f"d = {HIGH_DIM}, above damped for the likelihood and fixed for the semi-dual"),
      hyper.Float("alpha", ALPHA, 1e-4, 0.9, "strongly convex floor, fraction of the Gaussian guess"),
      hyper.Float("learning_rate", 5e-3, 1e-6, 0.1, "Adam step size (initial)", log=True),
      # a cosine decay to 0: a constant rate's last steps kept moving mass between modes
      # (docs/training.md, session 39)
      hyper.Float("lr_decay", 0.0, 0.0, 1.0,
                  "final learning rate / initial (cosine schedule); 1 = constant"),
      hyper.Int("batch_size", 256, 8, 8192, "data batch = number of base points"),
      hyper.Int("langevin_steps", 2, 1, 100, "MALA steps per training step"),
      hyper.Int("conjugate_iters", None, 1, 200,
                "Newton iterations per training step (warm-started), for the semi-dual",
                optional=f"4 up to d = {HIGH_DIM}, {_HIGH_DIM_CONJUGATE_ITERS} above; 1 for mle, "
                         "which solves none in training"),
      hyper.Choice("conjugate_solver", "auto", ("auto", "newton", "newton_cg"),
                   '"newton" (dense d x d Hessians) or "newton_cg" (matrix-free: CG on '
                   f'Hessian-vector products); auto: newton up to d = {HIGH_DIM}'),
      hyper.Int("cg_iters", 8, 1, 100,
                'CG iterations per Newton step ("newton_cg") or log-det solve ("hutchinson")'),
      hyper.Choice("logdet", "auto", ("auto", "exact", "hutchinson"),
                   'mle: "exact" (dense d x d Hessians) or "hutchinson" (a stochastic gradient by '
                   f'CG, matrix-free); auto: exact up to d = {HIGH_DIM}'),
      hyper.Int("burn_in", 50, 0, 10_000, "steps that only move points/conjugates before training"),
      hyper.Choice("potential", "data", ("data", "base"),
                   'where the ICNN lives: "data" (f = w) or "base" (f = w*, map grad f)'),
      hyper.Int("chain_conjugate_iters", 2, 1, 50,
                "Newton iterations per MALA step when the base is e^{-f*}"),
  )

  def validate(self, c: dict) -> None:
    if c.get("objective") == "mle" and c.get("potential", "data") != "data":
      raise ValueError(f"{self.name}: objective='mle' needs potential='data' (the likelihood is "
                       "evaluated through w on the data side)")

  def divergence_hint(self) -> str:
    return "Lower learning_rate (e.g. halve it) or raise alpha."

  def schedule_steps(self, static, total_steps: int) -> int:
    return _updates(static, total_steps)

  def resolve(self, dim: int, n: Optional[int] = None) -> tuple[dict, dict]:
    """The settings a fit on ``n`` rows (None: unknown) of ``dim``-dimensional data runs with:
    ``(config, auto)``, ``config`` with every ``"auto"`` (or None) value replaced, ``auto`` the
    replaced ones ``{name: value}``.

    Up to ``HIGH_DIM`` the 2D-tuned defaults (dense Newton conjugates, cmm's exact likelihood with
    dense log-determinants, 256 affine pieces); above, a step whose cost grows like ``d^2`` per
    point: cmm's likelihood with a Hutchinson/CG log-determinant gradient, matrix-free Newton-CG
    conjugates, no pieces (tangent planes at a few hundred points do not make a quadratic in high
    d, so the start would be far from the Gaussian guess), the ICNN's quadratic (the Gaussian
    guess) trained at ``QUADRATIC_DAMPING`` of the step for the likelihood and kept fixed for the
    semi-dual. docs/scaling.md has the measurements. Below ``PIECES_MIN_ROWS_PER_DIM``
    rows per dimension, cmm has no pieces either (docs/training.md).
    """
    c, auto, high = dict(self.config), {}, dim > HIGH_DIM

    def put(name, value):
      c[name] = auto[name] = value

    if "alpha" in c and c["alpha"] is None:
      put("alpha", CMM_ALPHA if cmm_tuned(dim, n) else ALPHA)
    if "init_scale" in c and c["init_scale"] is None:  # init may start smaller (CMM_SMALL_START)
      put("init_scale", INIT_SCALE)
    if c.get("objective") == "auto":
      put("objective", "mle" if c.get("potential", "data") == "data" else "semidual")
    if "pieces" in c and c["pieces"] is None:
      few_rows = self.side == "cmm" and n is not None and n < PIECES_MIN_ROWS_PER_DIM * dim
      put("pieces", 0 if high or few_rows else 256)
    if c.get("quadratic") == "auto":
      put("quadratic", "trained" if not high else "damped" if c.get("objective") == "mle" else "fixed")
    if c.get("logdet") == "auto":
      put("logdet", "hutchinson" if high else "exact")
    if c.get("conjugate_solver") == "auto":
      put("conjugate_solver", "newton_cg" if high else "newton")
    if "conjugate_iters" in c and c["conjugate_iters"] is None:
      put("conjugate_iters", 1 if c.get("objective") == "mle"
          else _HIGH_DIM_CONJUGATE_ITERS if high else 4)
    return c, auto

  # -- which side is which ----------------------------------------------------
  def on_base(self) -> bool:
    """True when ``f`` lives in base space (its gradient is the map base -> data)."""
    return self.side == "mm" or self.config.get("potential") == "base"

  def base_kind(self) -> str:
    """``"f"`` (base e^{-f}), ``"f*"`` (base e^{-f*}) or ``"normal"`` (N(0, I))."""
    if self.side == "brenier":
      return "normal"
    return "f*" if self.side == "cmm" and self.on_base() else "f"

  # -- init ------------------------------------------------------------------
  def init(self, key, data, total_steps=None):
    side = self.side
    data_np = np.asarray(data, np.float64)
    n, d = data_np.shape
    c, _ = self.resolve(d, n)
    # mm fits the centred data (a moment measure needs a centred target); the step subtracts it
    shift = data_np.mean(0) if side == "mm" else np.zeros(d)
    data_np = data_np - shift
    mean, cov = data_np.mean(0), np.atleast_2d(np.cov(data_np.T))
    on_base = self.on_base()
    guess = _gaussian_guess(side, on_base, mean, cov)
    b = c["batch_size"]
    k_init, chain_noise, z = _init_draws(key, b, d)
    base_chol = np.linalg.cholesky(guess["base_cov"] + 1e-9 * np.eye(d))
    z = np.asarray(z, np.float64)
    base_points = guess["base_mean"] + z @ base_chol.T
    # where f is evaluated: the base only (f lives in base space), or the data, plus the base
    # when the chains sample e^{-f} itself (cmm's w sees the data and its base samples, which lie
    # elsewhere for data far from the origin: the mean of N(a, S^{1/3}) is (I + S^{1/3})^{-1} m)
    points, extra = (base_points, None) if on_base else (data_np, None)
    if not on_base and self.base_kind() == "f":
      extra = base_points
    build = functools.partial(
        potentials.make_potential, points, guess["a"], guess["B"], k_init, hidden=c["hidden"],
        activation=c["activation"], alpha=c["alpha"], feature_scale=c["feature_scale"],
        pieces=c.get("pieces", 0), extra_points=extra, **symmetry_flags(c))
    max_ratio = potentials.RANDOM_PART_RATIO if d <= HIGH_DIM else _HIGH_DIM_RANDOM_PART_RATIO
    potential, lr_scale = None, 1.0
    if self.side == "cmm" and self.config.get("init_scale") is None and cmm_tuned(d, n):
      # cmm's "auto" start (CMM_SMALL_START), where its random part is as small next to the guess
      # as the rule below lets INIT_SCALE's be; elsewhere that rule's start
      potential, variables = build(init_scale=CMM_SMALL_START, max_ratio=None)
      regions = [points] if extra is None else [points, extra]
      limit = max_ratio * CMM_SMALL_START / INIT_SCALE
      if potentials.start_ratio(potential, variables, regions, guess["a"], guess["B"]) <= limit:
        c = {**c, "init_scale": CMM_SMALL_START}  # the config says the start that ran
      else:
        potential = None
    if potential is None:
      potential, variables = build(init_scale=c["init_scale"], max_ratio=max_ratio)
      # make_potential lowers init_scale where the ICNN's weights move grad w more, relative to the
      # Gaussian guess, than on standardised data (tables in their own units, far from the origin);
      # Adam's steps are scaled by the same factor, so one step moves grad w as much, relatively
      lr_scale = min(1.0, potential.init_scale / c["init_scale"])
    # the step count enters the step only through a learning-rate schedule (so a fit in mixed
    # units, which always decays, compiles its chunk per step count)
    decays = c["lr_decay"] < 1.0 or potential.axis_hinges
    static = self.static(data, total_steps if decays else 0, config=c,
                         pieces=potential.pieces, axis_hinges=potential.axis_hinges)
    chains = (jnp.asarray(guess["base_mean"], jnp.float32)
              + chain_noise @ jnp.asarray(base_chol.T, jnp.float32))
    B_inv = np.linalg.inv(guess["B"])
    # argmax_z <x, z> - 1/2 (z - a)^T B (z - a) = a + B^{-1} x
    chain_conj = guess["a"] + np.asarray(chains, np.float64) @ B_inv.T
    warm = guess["a"] + (data_np if on_base else np.asarray(chains, np.float64)) @ B_inv.T
    fixed = {name: jnp.asarray(v, jnp.float32) for name, v in (
        ("shift", shift), ("lr_scale", lr_scale), ("init_scale", potential.init_scale),
        ("guess_a", guess["a"]), ("guess_B", guess["B"]), ("guess_B_inv", B_inv))}
    params = variables["params"]
    # MALA preconditioned by the guess's base covariance: one step size fits every direction of
    # an elongated base (columns in different units, strongly correlated columns)
    return static, State(params, variables["consts"], _optimizer(static).init(params),
                         chains.astype(jnp.float32), jnp.asarray(chain_conj, jnp.float32),
                         jnp.asarray(warm, jnp.float32), jnp.asarray(0.5, jnp.float32),
                         jnp.asarray(base_chol, jnp.float32), jnp.asarray(0, jnp.int32), fixed)

  # -- one step --------------------------------------------------------------
  def _move_base(self, static, state: State, energy, key):
    """New base points ``x [b, d]``, their conjugates, acceptance and step size."""
    c, kind = static.config, self.base_kind()
    warmup = state.t < c["burn_in"]
    if kind == "normal":
      noise = jax.random.normal(key, state.chains.shape)
      x = jnp.sqrt(1.0 - _AR_RATE**2) * state.chains + _AR_RATE * noise
      return x, state.chain_conj, jnp.ones(()), state.step_size
    if kind == "f":
      x, acc = sampling.mala(energy, state.chains, state.step_size, key, c["langevin_steps"],
                             state.precond)
      conj = state.chain_conj
    else:  # e^{-f*}: f*(x) = <x, z*> - f(z*), grad f*(x) = z*, z* warm-started per chain
      solve = self._solve_kwargs(static, state, c["chain_conjugate_iters"])

      def value_grad(x, z):
        z, _, _ = potentials.conjugate_argmax(energy, x, z, **solve)
        return jnp.sum(x * z, -1) - energy(z), z, z

      x, conj, acc = sampling.mala_aux(value_grad, state.chains, state.chain_conj,
                                       state.step_size, key, c["langevin_steps"], state.precond)
    step_size = sampling.adapt_step_size(state.step_size, acc, rate=jnp.where(warmup, 0.3, 0.05))
    return x, conj, acc, step_size

  @staticmethod
  def _solve_kwargs(static, state: State, iters: int) -> dict:
    """``conjugate_argmax`` keywords: the fit's solver, ``iters`` Newton iterations, CG
    preconditioned by the inverse of the Gaussian guess's curvature (the potential's at init)."""
    c = static.config
    if c.get("conjugate_solver", "newton") != "newton_cg":
      return {"max_iter": iters}
    return {"max_iter": iters, "solver": "newton_cg", "cg_iters": c["cg_iters"],
            "precond": state.fixed["guess_B_inv"]}

  def step(self, static, state: State, key, data):
    c = static.config
    solve = self._solve_kwargs(static, state, c["conjugate_iters"])
    pot, tx = _potential(static), _optimizer(static)
    energy_of = lambda params: potentials.PotentialEnergy(pot, {"params": params,
                                                                "consts": state.consts})
    k_batch, k_move = jax.random.split(key)
    energy = energy_of(state.params)
    idx = jax.random.randint(k_batch, (c["batch_size"],), 0, data.shape[0])
    # split over the devices of a multi-device fit
    y = sharding.constrain_batch(data[idx] - state.fixed["shift"])
    warmup = state.t < c["burn_in"]
    x, chain_conj, acc, step_size = self._move_base(static, state, energy, k_move)
    mle = c.get("objective") == "mle"
    if mle:
      # the likelihood needs no conjugate: the model's samples grad f*(x) are left to use time
      # (a conjugate solve here only fed a metric, and was about a tenth of the step's compilation)
      warm = state.warm
    elif self.on_base():
      # P = base points, Q = data: x* = grad f*(y) = argmax_x <x, y> - f(x), warm per data point
      p, q = x, y
      q_star, _, resid = potentials.conjugate_argmax(energy, q, state.warm[idx], **solve)
      warm = state.warm.at[idx].set(q_star)
      samples, pulled_back = potentials.batch_grad(energy, x), q_star
    else:
      # P = data, Q = base points: y* = grad f*(x) = argmax_y <x, y> - f(y)
      p, q = y, x
      q_star, _, resid = potentials.conjugate_argmax(energy, q, state.warm, **solve)
      warm = q_star
      samples, pulled_back = q_star, potentials.batch_grad(energy, y)

    hutchinson = mle and c.get("logdet") == "hutchinson"
    if hutchinson:
      # grad_theta log det H(y) = tr(H^{-1} dH) = E_z[v^T dH z], v = H^{-1} z (Rademacher z): v by
      # preconditioned CG on Hessian-vector products at the current parameters, then held fixed
      probes = jax.random.rademacher(jax.random.fold_in(key, 1), y.shape, dtype=y.dtype)
      _, hvp = jax.linearize(lambda y: potentials.batch_grad(energy, y), y)
      solved = potentials.pcg(hvp, probes, c["cg_iters"], state.fixed["guess_B_inv"])
      # the log-determinant's value is only reported: exact on a few rows, no gradient
      _, logdet_few = jnp.linalg.slogdet(potentials.batch_hessian(energy, y[:_LOGDET_ROWS]))

    def loss_fn(params):
      """``(objective, (reported loss, grad f(y) [b, d] under the likelihood, else None))``."""
      f = energy_of(params)
      if hutchinson:
        g = potentials.batch_grad(f, y)
        hz = jax.jvp(lambda y: potentials.batch_grad(f, y), (y,), (probes,))[1]
        surrogate = jnp.sum(solved * hz, -1)  # gradient: an unbiased estimate of grad log det
        rest = jnp.mean(f(g)) - jnp.mean(f(jax.lax.stop_gradient(x)))
        return rest - jnp.mean(surrogate), (rest - jnp.mean(logdet_few), g)
      if mle:
        # -log rho(y) = w(grad w(y)) - log det Hess w(y) + log Z; grad log Z = -E_{e^{-w}}[grad w]
        _, g, hess = potentials.batch_value_grad_hessian(f, y)
        _, logdet = jnp.linalg.slogdet(hess)
        loss = jnp.mean(f(g) - logdet) - jnp.mean(f(jax.lax.stop_gradient(x)))
        return loss, (loss, g)
      # E_P[f] + E_Q[<q, q*> - f(q*)] with q* fixed (Danskin)
      loss = jnp.mean(f(p)) + jnp.mean(jnp.sum(q * q_star, -1) - f(q_star))
      return loss, (loss, None)

    (_, (loss, grad_y)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = scale_updates(updates, state.fixed["lr_scale"])
    updates = damp_quadratic(updates, c.get("quadratic"))
    keep = lambda new, old: jnp.where(warmup, old, new)
    params = jax.tree_util.tree_map(keep, optax.apply_updates(state.params, updates), state.params)
    opt_state = jax.tree_util.tree_map(keep, opt_state, state.opt_state)
    if mle:
      # base space: the data pulled back (grad f(y), the loss's own) against the base points
      metrics = {"loss": loss, "base_gap": metrics_lib._energy(jax.lax.stop_gradient(grad_y), x)}
    else:
      metrics = {
          "loss": loss,
          # data space: the model's samples against the data batch (0 at a perfect fit)
          "sample_gap": metrics_lib._energy(samples, y),
          # base space: the data pulled back against the base points (0 at the fixed point)
          "base_gap": metrics_lib._energy(pulled_back, x),
          "conjugate_residual": jnp.mean(resid),
      }
    if self.side != "brenier":
      metrics.update(acceptance=acc, step_size=step_size)
    return State(params, state.consts, opt_state, x, chain_conj, warm, step_size,
                 state.precond, state.t + 1, state.fixed), metrics

  def finalize(self, static, state: State, history, info) -> "ConvexFitted":
    c, fixed = static.config, state.fixed
    extras = {
        "side": self.side, "on_base": self.on_base(), "base_kind": self.base_kind(),
        "dim": static.dim, "hidden": list(c["hidden"]), "activation": c["activation"],
        "init_scale": float(fixed["init_scale"]), "pieces": int(static.get("pieces")),
        "axis_hinges": int(static.get("axis_hinges")),
        "guess_a": np.asarray(fixed["guess_a"], np.float64),
        "guess_B": np.asarray(fixed["guess_B"], np.float64),
        "shift": np.asarray(fixed["shift"], np.float64), "lr_scale": float(fixed["lr_scale"]),
        "precond": np.asarray(state.precond, np.float64),
        **symmetry_flags(c),
    }
    chains = np.asarray(state.chains)
    consts = state.consts
    if self.side == "mm":
      # grad u(. + t) # e^{-u(. + t)} = grad u # e^{-u}: a moment measure fixes its base only up to
      # a translation, and training lets it drift; pin the base's mean at 0 (the chains' mean) by
      # moving the potential's input constants, so the same model draws a centred base
      t = chains.mean(0)
      consts = {**consts, "center": consts["center"] - t, "floor_a": consts["floor_a"] - t}
      chains = chains - t
      extras["guess_a"] = np.asarray(extras["guess_a"]) - t
    extras["chains"] = chains
    extras["step_size"] = float(state.step_size)
    variables = {"params": state.params, "consts": consts}
    # the config is the one that ran ("auto" values resolved for this d); info says which were auto
    auto = {name: c[name] for name in self.resolve(static.dim)[1]}  # the values that ran (rows too)
    if "pieces" in auto:  # the rows decide too (and make_potential, for regions far apart)
      auto["pieces"] = int(static.get("pieces"))
    if "init_scale" in auto:  # the start that ran (make_potential's, or cmm's smaller one)
      auto["init_scale"] = float(fixed["init_scale"])
    info = {**info, "auto": auto}
    return self.fitted_cls(config=dict(c), params=variables, extras=extras,
                           history=history, info=info)


class CMM(ConvexFixedPoint):
  """Conjugate moment measure: base ``e^{-w}``, map ``grad w*``."""
  name = side = "cmm"
  fitted_cls = CMMFitted
  # up to d = HIGH_DIM ("auto", ConvexFixedPoint.resolve): the exact likelihood with a soft max of
  # affine pieces separates clusters best (docs/training.md); the likelihood needs no conjugates in
  # training (its samples are solved at use time). Above: the likelihood, matrix-free (Hutchinson)
  # from CMM_TUNED_MIN_ROWS rows up to HIGH_DIM, a lower floor and a smaller random start: on the
  # toys a better and steadier held-out NLL (docs/training.md, session 42)
  schema = hyper.optional(
      hyper.replace(ConvexFixedPoint.schema, objective="auto", hidden=(16, 16), learning_rate=2e-2),
      alpha=f"{CMM_ALPHA:g} from {CMM_TUNED_MIN_ROWS:,} rows up to d = {HIGH_DIM}, else {ALPHA:g}",
      init_scale=f"{INIT_SCALE:g}, lowered where the data need it; from {CMM_TUNED_MIN_ROWS:,} rows "
                 f"up to d = {HIGH_DIM}, {CMM_SMALL_START:g} where that start is as small next "
                 "to the guess")
  default_steps = 1000


class MM(ConvexFixedPoint):
  """Moment measure: base ``e^{-u}``, map ``grad u``; fitted to the centred data."""
  name = side = "mm"
  fitted_cls = MMFitted
  # sharp first-layer features and a soft max of affine pieces let grad u cut the base into cells
  # (docs/training.md)
  schema = hyper.replace(
      hyper.without(ConvexFixedPoint.schema, "potential", "chain_conjugate_iters", "objective",
                    "logdet"),
      feature_scale=20.0, hidden=(16, 16))
  default_steps = 1000

  def prepare(self, data):
    # init centres the data (its mean becomes the fit's shift); say so unless already centred
    mean = np.asarray(data, np.float64).mean(0)
    if np.all(np.abs(mean) <= 1e-3 * (np.asarray(data, np.float64).std(0) + 1e-12)):
      return data, {}
    shown = (np.array2string(mean, precision=3) if mean.size <= 4
             else f"of norm {float(np.linalg.norm(mean)):.3g} in {mean.size} dimensions")
    msg = (f"a moment measure needs a centred target: the data were centred (mean {shown} "
           "subtracted) and the samples are shifted back by it")
    return data, {"warnings": [msg]}


class Brenier(ConvexFixedPoint):
  """The classical split: base N(0, I), Brenier map ``grad w*``."""
  name = side = "brenier"
  fitted_cls = BrenierFitted
  # the map's own potential (grad f = map) with sharp features fits clusters best (docs/training.md)
  schema = hyper.replace(
      hyper.without(ConvexFixedPoint.schema, "langevin_steps", "chain_conjugate_iters", "objective",
                    "logdet"),
      potential="base", feature_scale=10.0, hidden=(16, 16))
  default_steps = 1000

  def divergence_hint(self) -> str:
    return "Lower learning_rate (e.g. halve it)."


@functools.partial(jax.jit, static_argnums=(1, 2), compiler_options=compile_cache.ONE_OFF)
def _init_draws(key, b: int, d: int):
  """A fit's first draws in one program: ``(the potential's key, chain noise [b, d], start
  points [4096, d])`` (op by op, each draw was a compilation of its own)."""
  k_init, k_chain, k_pts = jax.random.split(key, 3)
  return k_init, jax.random.normal(k_chain, (b, d)), jax.random.normal(k_pts, (4096, d))


# the annealed importance sampler of log Z above HIGH_DIM: on a cmm fit of the digits (d = 64), 50,
# 100, 200 and 400 temperatures with 256-1024 particles agree within 0.05 nats (seed spread 0.03)
_AIS_TEMPS = 100
_AIS_PARTICLES = 512


@functools.partial(jax.jit, static_argnums=(0, 7, 8))
def _ais_log_z(pot, variables, mean, chol, precond, step_size, key, n_temps, n_particles):
  """``log integral e^{-f}``: AIS from ``N(mean, chol chol^T)`` with ``n_temps`` temperatures
  (``beta = (k / n_temps)^2``) and two MALA steps each (preconditioner ``precond``, step size
  ``step_size``), ``n_particles`` particles."""
  energy = potentials.PotentialEnergy(pot, variables)
  d = mean.shape[0]
  chol_inv = jax.scipy.linalg.solve_triangular(chol, jnp.eye(d, dtype=chol.dtype), lower=True)
  log_norm = jnp.sum(jnp.log(jnp.diag(chol))) + 0.5 * d * jnp.log(2 * jnp.pi)

  def neg_log_q(x):
    return 0.5 * jnp.sum(((x - mean) @ chol_inv.T) ** 2, -1) + log_norm

  k0, k1 = jax.random.split(key)
  x = mean + jax.random.normal(k0, (n_particles, d)) @ chol.T
  betas = (jnp.arange(n_temps + 1, dtype=jnp.float32) / n_temps) ** 2

  def body(carry, inp):
    x, log_w = carry
    b_prev, b, k = inp
    log_w = log_w - (b - b_prev) * (energy(x) - neg_log_q(x))
    x, _ = sampling.mala(lambda z: (1 - b) * neg_log_q(z) + b * energy(z), x, step_size, k, 2,
                         precond)
    return (x, log_w), None

  keys = jax.random.split(k1, n_temps)
  (_, log_w), _ = jax.lax.scan(body, (x, jnp.zeros(n_particles)), (betas[:-1], betas[1:], keys))
  return jax.nn.logsumexp(log_w) - jnp.log(n_particles)


def _log_normalizer(energy, gaussian_guess, dim: int, n_grid: int = 400) -> float:
  """``log integral e^{-f}`` for an energy ``[n, d] -> [n]`` around a Gaussian guess (mean, cov)."""
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
  _, logdet = np.linalg.slogdet(2 * np.pi * scale_cov)
  diff = z - mean
  log_q = -0.5 * np.sum(diff @ np.linalg.inv(scale_cov) * diff, -1) - 0.5 * logdet
  log_w = -np.asarray(energy(z), np.float64) - log_q
  mx = log_w.max()
  return float(mx + np.log(np.mean(np.exp(log_w - mx))))

