"""Monge-Ampère flow (Zhang, E & Wang 2018): a gradient flow of a learnt potential.

Samples are made by integrating ``dx/dt = grad_x phi(x, t)`` from ``x_0 ~ N(0, I)`` up to
``T = step_size * n_steps`` with fixed-step RK4; along the way ``d log p/dt = -Laplacian phi``
(the Monge-Ampère equation linearised in time). Training maximises the data likelihood: each
batch is integrated backward from ``T`` to ``0`` while accumulating ``int_0^T Laplacian phi dt``,
so ``log p_T(y) = log N(x_0; 0, I) - int Laplacian phi``; the loss is the batch NLL in nats.

Potentials (hyper-parameter ``potential``):

- ``"single"`` (the reference code): ``phi(x) = sum_h v_h softplus(W x + c t + b)_h``
  with closed-form gradient ``W^T (v * sigmoid(a))`` and exact Laplacian
  ``sum_h v_h sigmoid'(a_h) |W_h|^2`` (``c t`` only when ``time_dependent``).
- ``"mlp"``: a flax MLP of ``depth`` softplus layers on ``x`` (or ``[x, t]``); gradient by
  autodiff, Laplacian exactly by ``d`` JVPs (small ``d``) or Hutchinson's estimator
  (``laplacian="hutchinson"``, training only: ``log_prob`` is always exact).
- ``"auto"`` (the default): ``"mlp"`` above 16 dimensions, and from 8 dimensions with at least 32
  rows per dimension (with the Hutchinson Laplacian in training); ``"single"`` otherwise and
  whenever ``segments > 1`` or ``radial > 0``. On the 64-D digits the one-layer potential stays
  near the fitted Gaussian (c2st 0.71) where the MLP reaches 0.58 in 80 s (docs/images.md); on a
  10-D mixture of 4,000 rows the MLP's held-out NLL is 11.90 against 13.26 (docs/maflow.md). The
  fitted config and ``info["auto"]`` hold the choice.

Options of the one-layer potential for hard targets (measured in ``docs/maflow.md``):

- ``radial``: extra radial units ``v_r softplus(alpha_r |u - m_r|^2 + beta_r)`` (shells or bumps),
  closed-form gradient and Laplacian; what rings and circles need.
- ``segments = K``: a time-dependent potential that is piecewise constant in time, ``K``
  independent one-layer potentials each acting on ``1/K`` of ``[0, T]``: the flow is the
  composition of ``K`` gradient flows (far more expressive, same cost an RK4 step). "auto": two
  on 16 RK4 steps of 0.125 for 2-D data from 1,000 rows (the same ``T``; on the coarse default grid
  two segments can learn the integrator's error), one on 10 steps of 0.2 otherwise.
- ``kinetic``: adds ``kinetic * mean int |grad phi|^2 dt`` to the training loss (RNODE): straight,
  slow paths, which keeps the coarse RK4 honest for ``segments > 1``.
- ``lr_decay``: cosine learning-rate decay to ``lr_decay * learning_rate`` over the fit.

``symmetry`` makes the potential invariant under a group G of orthogonal maps,
``phi(x) = mean_g phi~(g x)``: ``"reflection"`` (x -> -x) or ``"rotation"`` (by 2 pi / k, 2D).
The flow from the G-invariant N(0, I) is then G-equivariant and the density G-invariant (a
symmetric model does not centre the data, so G acts about the origin of the data space).

The data are standardised internally, ``u = L^{-1} (y - mean)``: ``standardize_by`` picks ``L``,
the Cholesky factor of the data's covariance (``"covariance"``: the untrained flow is then the
fitted Gaussian), the columns' standard deviations (``"coordinate"``) or one scalar (``"scalar"``;
always with ``symmetry="rotation"``, so rotations stay rotations). ``"auto"`` (the default) takes
the covariance above 16 dimensions or when the columns' standard deviations differ by more than
10x (units), one scalar otherwise (on the 2D toys it fits as well or better: docs/maflow.md). A change of
variables, not of the model: every public method works in the data space as given and ``log_prob``
includes ``-log det L``. Columns in grams next to millimetres (penguins) need it: with one scalar
the bill depth (std 2 mm) is a few thousandths of the flow's unit (the body mass's std, 800 g).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmm_core import batching, compile_cache, hyper, sampling, schedules, sharding
from cmm_core.models.base import FittedModel, Model, check_n, check_seed, columns_in_different_units

__all__ = ["MAFlow", "MAFlowEnergy", "MAFlowFitted", "group_matrices"]

_EVAL_CHUNK = batching.SIZES[-1]  # rows per evaluation call, padded to a bucket size
# "auto": exact Laplacian up to this dimension, Hutchinson above (mixture_10d, MLP, 1,000 steps:
# the same held-out NLL, 11.89 exact and 11.90 Hutchinson, in 196 s against 37 s; docs/maflow.md)
_EXACT_MAX_DIM = 7
_AUTO_MLP_MIN_DIM = 16  # potential "auto": the MLP above this dimension, whatever the rows
# ... and from _AUTO_MLP_ROWS_MIN_DIM dimensions with at least _AUTO_MLP_ROWS_PER_DIM rows per
# dimension: the MLP wins on mixture_10d from 500 rows (50 per dimension) and in 8-D, and
# overfits wine (13-D, 142 rows: 11 per dimension; docs/maflow.md)
_AUTO_MLP_ROWS_MIN_DIM = 8
_AUTO_MLP_ROWS_PER_DIM = 32
# hidden, learning_rate and batch_size left to None ("auto"): from this many training rows a wider
# potential, smaller batches and a larger rate; below it the settings that served every fit before.
# Measured (docs/peers.md, session 38): from 1,438 rows (the digits) to 4,000 (the toys, mixture_10d)
# the larger setting ends better in less time; on Old Faithful, penguins and wine (142-266 rows) worse.
_AUTO_MANY_ROWS = 1000
_AUTO_FEW_ROWS_SETTINGS = {"hidden": 64, "learning_rate": 5e-3, "batch_size": 256}
_AUTO_MANY_ROWS_SETTINGS = {"hidden": 96, "learning_rate": 1.5e-2, "batch_size": 128}
# segments, n_steps and step_size left to None ("auto"): the plain flow (one potential, 10 RK4 steps
# of 0.2), or, for 2-D data from _AUTO_MANY_ROWS rows with the plain one-layer potential, two
# potentials in sequence on 16 steps of 0.125 (the same T) at a rate of 1e-2. Measured (docs/peers.md,
# session 43): on the peers' eight_gaussians, 9 fits (3 draws x 3 seeds), held-out NLL 0.024-0.063
# above the truth (mean 0.037) against 0.049-0.113 (mean 0.082); 20 steps of 0.1 gave the same. With
# 10 steps of 0.2, or a rate of 1.5e-2, two segments learnt the integrator's error on some fits (a
# density that integrates to 1.05-4.9).
_AUTO_PLAIN_TIME = {"segments": 1, "n_steps": 10, "step_size": 0.2}
_AUTO_SEGMENTED = {"segments": 2, "n_steps": 16, "step_size": 0.125, "learning_rate": 1e-2}
_AUTO_SEGMENTED_DIM = 2   # measured on 2-D toys only (1-D and 3-D+ keep the plain flow)
# longer segmented fits integrate on a finer grid: at 3,000 steps one two_moons fit of three learnt
# the 16-step grid's error (its density integrated to 1.8); 24 steps kept it honest (session 44)
_AUTO_FINE_GRID_FROM_STEPS = 1500
_AUTO_SEGMENTED_FINE = {"n_steps": 24, "step_size": 1 / 12}
# ... and those of more than _AUTO_KINETIC_FROM_STEPS add a small kinetic penalty: at 12,000 steps
# a two_moons fit learnt the 24-step grid's error (held-out NLL 1.5 nats *below* the truth; session
# 45), which the penalty prevents; below that count it only cost likelihood (docs/maflow.md)
_AUTO_KINETIC_FROM_STEPS = 4000
_AUTO_LONG_KINETIC = 0.001


def _plain_time(c: dict) -> dict:
  """The plain time grid for the settings ``c``, its None ("auto") entries filled: one segment on
  10 RK4 steps of 0.2; with ``segments = K`` given and the steps left auto, the first multiple of K
  from 10 (each RK4 step in one segment) over the same T = 2."""
  k = c["segments"] if c["segments"] is not None else _AUTO_PLAIN_TIME["segments"]
  n_auto = c["n_steps"] is None
  n = k * math.ceil(_AUTO_PLAIN_TIME["n_steps"] / k) if n_auto else c["n_steps"]
  end_time = _AUTO_PLAIN_TIME["n_steps"] * _AUTO_PLAIN_TIME["step_size"]
  step = c["step_size"] if c["step_size"] is not None else (
      end_time / n if n_auto else _AUTO_PLAIN_TIME["step_size"])
  return {"segments": k, "n_steps": n, "step_size": step}

_LOG_2PI = math.log(2 * math.pi)


class MAFlowState(NamedTuple):
  params: Any
  opt_state: Any
  shift: jnp.ndarray   # [d] data mean (zeros when not centred)
  scale: jnp.ndarray   # [d, d] lower-triangular L: y = shift + L u
  whiten: jnp.ndarray  # [d, d] L^{-1}: u = L^{-1} (y - shift)


STANDARDIZE_BY = ("auto", "covariance", "coordinate", "scalar")
_MIN_RELATIVE_STD = 1e-6  # a constant column's scale, relative to the largest column's
_CORRELATION_JITTER = 1e-6  # added to the correlation matrix's diagonal (collinear columns)
_AUTO_MAX_SCALAR_DIM = 16  # "auto": the covariance above this dimension


def resolve_standardize_by(x: np.ndarray, mode: str) -> str:
  """``mode`` with ``"auto"`` replaced for points ``x`` ``[n, d]`` (see the module docstring)."""
  if mode != "auto":
    return mode
  wide = x.shape[1] > _AUTO_MAX_SCALAR_DIM
  return "covariance" if wide or columns_in_different_units(x) else "scalar"


def standardization(x: np.ndarray, mode: str, centre: bool) -> tuple[np.ndarray, np.ndarray]:
  """``(shift [d], L [d, d])`` with ``x ~ shift + L u``, ``u`` standardised, from points ``x``
  ``[n, d]``: ``mode`` one of :data:`STANDARDIZE_BY` but "auto"; ``centre=False`` keeps the origin (a symmetric
  potential) and takes second moments about it. Constant columns get a small positive scale."""
  x = np.asarray(x, np.float64)
  d = x.shape[1]
  shift = x.mean(0) if centre else np.zeros(d)
  r = x - shift
  second = r.T @ r / max(len(r), 1)                       # [d, d]
  top = float(np.sqrt(max(np.max(np.diag(second)), 0.0))) or 1.0
  floor = (_MIN_RELATIVE_STD * top) ** 2
  if mode == "scalar":
    scale = np.sqrt(max(float(np.mean(np.diag(second))), floor)) * np.eye(d)
  elif mode == "coordinate":
    scale = np.diag(np.sqrt(np.maximum(np.diag(second), floor)))
  elif mode == "covariance":  # through the correlation matrix: equivariant to the columns' units
    std = np.sqrt(np.maximum(np.diag(second), floor))
    corr = second / np.outer(std, std)
    scale = std[:, None] * np.linalg.cholesky(corr + _CORRELATION_JITTER * np.eye(d))
  else:
    raise ValueError(f"standardize_by must be one of {STANDARDIZE_BY}, got {mode!r}")
  return shift, scale


def _state_affine(shift: np.ndarray, scale: np.ndarray) -> tuple:
  """``(shift, L, L^{-1})`` as float32 arrays for :class:`MAFlowState`."""
  return (jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32),
          jnp.asarray(np.linalg.inv(scale), jnp.float32))


def _log_det(scale) -> jnp.ndarray:
  """``log det L`` of a lower-triangular ``L`` with a positive diagonal."""
  return jnp.sum(jnp.log(jnp.diagonal(scale)))


# ----------------------------------------------------------------------------
# The structure of a flow (static, hashable) and its pure functions.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Everything static about a flow: shapes, potential kind, integrator, symmetry."""
  dim: int
  potential: str
  hidden: int
  depth: int
  time_dependent: bool
  n_steps: int
  step_size: float
  symmetry: str
  symmetry_order: int
  segments: int = 1   # piecewise-constant-in-time potential: K one-layer potentials in sequence
  radial: int = 0     # radial units added to the one-layer potential

  @property
  def end_time(self) -> float:
    return self.n_steps * self.step_size


def resolve_potential(config: dict, dim: int, n: Optional[int] = None) -> str:
  """``config["potential"]`` with ``"auto"`` replaced for ``n`` rows (None: unknown) of
  ``dim``-dimensional data: the MLP above 16-D, or from 8-D with at least 32 rows per dimension,
  unless the one-layer-only options (``segments > 1``, ``radial > 0``) are set."""
  if config["potential"] != "auto":
    return str(config["potential"])
  one_layer_only = (config.get("segments") or 1) > 1 or config.get("radial", 0) > 0
  many_rows = (n is not None and dim >= _AUTO_MLP_ROWS_MIN_DIM
               and n >= _AUTO_MLP_ROWS_PER_DIM * dim)
  return "mlp" if (dim > _AUTO_MLP_MIN_DIM or many_rows) and not one_layer_only else "single"


def _spec(config: dict, dim: int) -> _Spec:
  return _Spec(dim=int(dim), potential=resolve_potential(config, dim), hidden=int(config["hidden"]),
               depth=int(config["depth"]), time_dependent=bool(config["time_dependent"]),
               n_steps=int(config["n_steps"]), step_size=float(config["step_size"]),
               symmetry=str(config["symmetry"]), symmetry_order=int(config["symmetry_order"]),
               segments=int(config.get("segments", 1)), radial=int(config.get("radial", 0)))


def group_matrices(symmetry: str, dim: int, order: int = 4) -> np.ndarray:
  """The orthogonal matrices ``[m, d, d]`` of the symmetry group (identity first)."""
  if symmetry == "none":
    return np.eye(dim, dtype=np.float32)[None]
  if symmetry == "reflection":
    return np.stack([np.eye(dim), -np.eye(dim)]).astype(np.float32)
  if symmetry == "rotation":
    if dim != 2:
      raise ValueError(f"maflow: symmetry='rotation' needs 2D data, got {dim}D; use 'reflection' or 'none'")
    angles = 2 * np.pi * np.arange(order) / order
    c, s = np.cos(angles), np.sin(angles)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).astype(np.float32)
  raise ValueError(f"maflow: unknown symmetry {symmetry!r}")


class _MLP(nn.Module):
  """Scalar potential ``[n, k] -> [n]``: ``depth`` softplus layers of width ``hidden``."""
  hidden: int
  depth: int
  out_scale: float = 0.1

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.softplus(nn.Dense(self.hidden)(x))
    init = nn.initializers.normal(self.out_scale / math.sqrt(self.hidden))
    return nn.Dense(1, kernel_init=init)(x)[..., 0]


def init_params(spec: _Spec, key, init_scale: float, weight_scale: float = 1.0):
  """Initial parameters: a potential close to zero, so the flow starts near the identity.

  ``init_scale`` sizes the output weights ``v``, ``weight_scale`` the first layer (one-layer potential).
  The one-layer potential is drawn with NumPy from a generator seeded by ``key``'s data: no JAX
  program to compile at a fit's start (jitted, its normal draws took 0.6 s to compile, a tenth of
  a 2-D fit's time to its first figures).
  """
  d = spec.dim
  if spec.potential == "single":
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist())
    if spec.segments > 1:  # one independent potential per time segment, stacked on a leading axis
      one = dataclasses.replace(spec, segments=1)
      parts = [_single_init(one, rng, init_scale, weight_scale) for _ in range(spec.segments)]
      return {name: jnp.asarray(np.stack([q[name] for q in parts])) for name in parts[0]}
    return {name: jnp.asarray(a) for name, a in _single_init(spec, rng, init_scale, weight_scale).items()}
  if spec.segments > 1:
    raise ValueError("maflow: segments > 1 needs potential='single'")
  return _init_mlp_once(spec.hidden, spec.depth, init_scale, key, d + int(spec.time_dependent))


def _single_init(spec: _Spec, rng: np.random.Generator, init_scale: float,
                 weight_scale: float) -> dict:
  """One one-layer potential's parameters (float32 NumPy arrays) drawn from ``rng``."""
  d, h = spec.dim, spec.hidden
  n_units = h + spec.radial
  p = {"W": weight_scale * rng.standard_normal((h, d)) / math.sqrt(d),
       "b": weight_scale * rng.standard_normal(h),
       "v": init_scale * rng.standard_normal(n_units) / math.sqrt(n_units)}
  if spec.time_dependent:
    p["c"] = weight_scale * rng.standard_normal(h)
  if spec.radial > 0:
    # softplus(alpha |u - m|^2 + beta): shells (alpha > 0) or bumps (alpha < 0) of squared radius
    # r2 ~ U(0, 3) about centres m ~ N(0, I / 4), as sharp as the ridges (|alpha| ~ weight_scale / 2)
    alpha = 0.5 * weight_scale * rng.standard_normal(spec.radial)
    r2 = 3.0 * rng.uniform(size=spec.radial)
    p["m"] = 0.5 * rng.standard_normal((spec.radial, d))
    p["alpha"] = alpha
    p["beta"] = -alpha * r2
    if spec.time_dependent:
      p["gamma"] = weight_scale * rng.standard_normal(spec.radial)
  return {name: np.asarray(a, np.float32) for name, a in p.items()}


# the MLP's start: one program (op by op, each draw was a compilation of its own), compiled without
# LLVM's optimisations as it runs once
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 4), compiler_options=compile_cache.ONE_OFF)
def _init_mlp_once(hidden: int, depth: int, init_scale: float, key, n_inputs: int):
  return _MLP(hidden, depth, init_scale).init(key, jnp.zeros((1, n_inputs)))


def _segment(spec: _Spec, p, t):
  """The parameters of the time segment holding ``t`` (``segments > 1``), else ``p``."""
  if spec.segments <= 1:
    return p
  k = jnp.clip(jnp.floor(t / spec.end_time * spec.segments), 0, spec.segments - 1).astype(jnp.int32)
  return jax.tree_util.tree_map(lambda a: a[k], p)


def _radial_pre(p, u, t):
  """Radial pre-activations ``alpha |u - m|^2 + beta (+ gamma t)`` ``[n, r]`` and ``|u - m|^2``.

  ``|u - m|^2 = |u|^2 - 2 u.m + |m|^2`` (a matrix product, no ``[n, r, d]`` tensor).
  """
  uu = (u * u) @ jnp.ones((u.shape[-1], 1), u.dtype)
  r2 = uu - 2 * u @ p["m"].T + jnp.sum(p["m"] ** 2, -1)
  r2 = jnp.maximum(r2, 0.0)
  a = p["alpha"] * r2 + p["beta"]
  if "gamma" in p:
    a = a + t * p["gamma"]
  return a, r2


def _single_terms(p, u, t, need_lap: bool):
  """Closed-form ``(grad phi~ [n, d], Laplacian phi~ [n])`` of the one-layer potential.

  Ridge units ``v_h softplus(W_h u + b_h)`` and, when present, radial units
  ``v_r softplus(alpha_r |u - m_r|^2 + beta_r)``: gradient ``v s 2 alpha (u - m)``, Laplacian
  ``v [s (1 - s) 4 alpha^2 |u - m|^2 + s 2 alpha d]``.
  """
  h = p["W"].shape[0]
  v = p["v"][:h]
  a = u @ p["W"].T + p["b"]
  if "c" in p:
    a = a + t * p["c"]
  s = jax.nn.sigmoid(a)
  grad = (s * v) @ p["W"]
  lap = (s * (1 - s) * v) @ jnp.sum(p["W"] ** 2, 1) if need_lap else None
  if "alpha" in p:
    vr, al = p["v"][h:], p["alpha"]
    ar, r2 = _radial_pre(p, u, t)
    sr = jax.nn.sigmoid(ar)
    coef = sr * (2 * vr * al)                                            # [n, r]
    grad = grad + (coef @ jnp.ones_like(al))[:, None] * u - coef @ p["m"]  # sum_r coef_r (u - m_r)
    if need_lap:
      w = sr * (1 - sr)
      lap = lap + (w * r2) @ (4 * vr * al ** 2) + sr @ (2 * vr * al * u.shape[-1])
  return grad, lap


def _single_phi(p, u, t):
  h = p["W"].shape[0]
  a = u @ p["W"].T + p["b"]
  if "c" in p:
    a = a + t * p["c"]
  out = jax.nn.softplus(a) @ p["v"][:h]
  if "alpha" in p:
    out = out + jax.nn.softplus(_radial_pre(p, u, t)[0]) @ p["v"][h:]
  return out


def make_potential(spec: _Spec):
  """``phi(params, u [n, d], t) -> [n]`` including the symmetrisation."""
  G = jnp.asarray(group_matrices(spec.symmetry, spec.dim, spec.symmetry_order))

  def raw(p, u, t):
    if spec.potential == "single":
      return _single_phi(_segment(spec, p, t), u, t)
    mlp = _MLP(spec.hidden, spec.depth)
    inp = jnp.concatenate([u, jnp.full(u.shape[:-1] + (1,), t, u.dtype)], -1) if spec.time_dependent else u
    return mlp.apply(p, inp)

  def phi(p, u, t):
    if spec.symmetry == "none":
      return raw(p, u, t)
    return jnp.mean(jax.vmap(lambda g: raw(p, u @ g.T, t))(G), 0)

  return phi


def make_field(spec: _Spec, laplacian: str = "exact"):
  """``field(params, u [n, d], t, need_lap, noise, seg_t) -> (grad phi [n, d], Laplacian [n] or None)``.

  ``laplacian``: "exact" (closed form or ``d`` JVPs) or "hutchinson" (``noise [n, d]``, autodiff
  potentials only). ``seg_t`` (default ``t``) picks the time segment when ``segments > 1``; the
  integrator passes each RK4 step's midpoint so that a whole step uses one segment.
  """
  G = jnp.asarray(group_matrices(spec.symmetry, spec.dim, spec.symmetry_order))
  if spec.potential == "single":

    def field(p, u, t, need_lap=True, noise=None, seg_t=None):
      p = _segment(spec, p, t if seg_t is None else seg_t)
      if spec.symmetry == "none":
        return _single_terms(p, u, t, need_lap)

      def one(g):
        grad, lap = _single_terms(p, u @ g.T, t, need_lap)
        return grad @ g, lap  # grad of phi~(g u) is g^T grad phi~(g u); Laplacian is invariant
      grads, laps = jax.vmap(one)(G)
      return jnp.mean(grads, 0), (jnp.mean(laps, 0) if need_lap else None)

    return field

  phi = make_potential(spec)
  eye = jnp.eye(spec.dim, dtype=jnp.float32)

  def field(p, u, t, need_lap=True, noise=None, seg_t=None):
    def grad_fn(x):
      return jax.grad(lambda z: jnp.sum(phi(p, z, t)))(x)
    if not need_lap:
      return grad_fn(u), None
    if laplacian == "hutchinson":
      grad, hv = jax.jvp(grad_fn, (u,), (noise,))
      return grad, jnp.sum(noise * hv, -1)
    grad, lin = jax.linearize(grad_fn, u)
    # trace of the Hessian: d JVPs with the basis vectors (batched over points)
    diag = jax.vmap(lambda e: lin(jnp.broadcast_to(e, u.shape)) @ e)(eye)  # [d, n]
    return grad, jnp.sum(diag, 0)

  return field


def rk4_step(f, y: tuple, t, h) -> tuple:
  """One classical RK4 step of ``dy/dt = f(y, t)`` for a tuple of arrays ``y`` (``f`` returns the
  tuple of their derivatives)."""
  def shift(k, c):
    return tuple(a + c * b for a, b in zip(y, k))
  k1 = f(y, t)
  k2 = f(shift(k1, 0.5 * h), t + 0.5 * h)
  k3 = f(shift(k2, 0.5 * h), t + 0.5 * h)
  k4 = f(shift(k3, h), t + h)
  return tuple(a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4))


def integrate(field, params, u, *, t0: float, dt: float, n_steps: int, need_lap: bool = True,
              noise=None, n_active=None, keep_path: bool = False, kinetic: bool = False,
              dts=None):
  """RK4 for ``du/dt = grad phi``, ``dacc/dt = -Laplacian phi`` from ``t0`` with signed ``dt``
  (or, with ``dts [n_steps]``, steps of those lengths, e.g. a random grid to the same end time).

  Returns ``(u [n, d], acc [n])`` (``acc`` = change of ``log p`` when going forward, or
  ``+int Laplacian`` when ``dt < 0``) and, with ``keep_path``, the positions ``[n_steps + 1, n, d]``.
  With ``kinetic``, ``(u, acc, ke)`` where ``ke [n] = int |grad phi|^2 dt >= 0`` along the path
  (RK4 quadrature). Steps with index ``>= n_active`` (a traced int) leave the state unchanged.
  """

  def body(carry, step):
    i, t, h = step
    tm = t + 0.5 * h  # the step's midpoint: a whole step uses one time segment

    def f(y, ts):
      g, lap = field(params, y[0], ts, need_lap, noise, tm)
      dy = (g, -lap if need_lap else jnp.zeros(g.shape[:-1], g.dtype))
      # ke grows by |h| |grad phi|^2 whichever the direction
      return dy + ((jnp.sum(g ** 2, -1) * jnp.sign(h),) if kinetic else ())

    new = rk4_step(f, carry, t, h)
    if n_active is not None:
      new = tuple(jnp.where(i < n_active, a, b) for a, b in zip(new, carry))
    return new, (new[0] if keep_path else None)

  acc0 = jnp.zeros(u.shape[:-1], u.dtype)
  index = jnp.arange(n_steps, dtype=u.dtype)
  if dts is None:
    steps = (index, t0 + index * dt, jnp.full((n_steps,), dt, u.dtype))
  else:
    dts = jnp.asarray(dts, u.dtype)
    steps = (index, t0 + jnp.cumsum(dts) - dts, dts)
  # each RK4 step rematerialised in the backward pass: it keeps only the carry [n, d] per step
  # instead of every stage's [n, hidden] activations, which on the CPU cost more memory traffic
  # than recomputing them (docs/maflow.md: a 2-D toy's training step 8.9 -> 4.9 ms)
  start = (u, acc0, acc0) if kinetic else (u, acc0)
  out, path = jax.lax.scan(jax.checkpoint(body), start, steps)
  if keep_path:
    return out[0], out[1], jnp.concatenate([u[None], path], 0)
  return out


def integrate_score(spec: _Spec, params, z, *, dt: float, n_steps: int, dts=None):
  """The flow map and its score: RK4 from ``t = 0`` for ``du/dt = grad phi`` and the score
  ``s = grad_u log p_t(u_t)``, ``ds/dt = -grad Laplacian phi - Hess phi s`` from ``s_0 = -z`` (the
  latent's). Returns ``(u_T [n, d], s_T [n, d])``; no gradient flows to ``params`` (the score is
  what a path-gradient estimator holds fixed). The Hessian-vector product and the Laplacian's
  gradient by autodiff of the exact field (a closed form for the one-layer potential, tried, ran
  1.3x slower than what XLA makes of this at L = 8).
  """
  params = jax.lax.stop_gradient(params)
  field = make_field(spec, "exact")

  def body(carry, step):
    t, h = step
    tm = t + 0.5 * h

    def f(y, ts):
      x, s = y
      g, hs = jax.jvp(lambda v: field(params, v, ts, False, None, tm)[0], (x,), (s,))
      grad_lap = jax.grad(lambda v: jnp.sum(field(params, v, ts, True, None, tm)[1]))(x)
      return g, -grad_lap - hs

    return rk4_step(f, carry, t, h), None

  z = jax.lax.stop_gradient(z)
  if dts is None:
    dts = jnp.full((n_steps,), dt, z.dtype)
  dts = jnp.asarray(dts, z.dtype)
  (x, s), _ = jax.lax.scan(body, (z, -z), (jnp.cumsum(dts) - dts, dts))
  return x, s


def std_normal_log_density(x):
  """``log N(x; 0, I)`` for ``x`` ``[n, d]`` -> ``[n]``."""
  return -0.5 * jnp.sum(x ** 2, -1) - 0.5 * x.shape[-1] * _LOG_2PI


def flow_log_prob(field, spec: _Spec, params, u, *, noise=None, n_active=None, t_start=None,
                  kinetic: bool = False):
  """``log p_t(u)`` in standardised space by backward RK4 from ``t_start`` (default ``T``).

  With ``kinetic``, ``(log p, int |grad phi|^2 dt)`` (both ``[n]``).
  """
  t0 = spec.end_time if t_start is None else t_start
  out = integrate(field, params, u, t0=t0, dt=-spec.step_size, n_steps=spec.n_steps,
                  noise=noise, n_active=n_active, kinetic=kinetic)
  lp = std_normal_log_density(out[0]) - out[1]
  return (lp, out[2]) if kinetic else lp


# ----------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# The fitted model.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _compiled(spec: _Spec) -> dict:
  """Jitted functions for a flow structure, shared by every fitted model with that structure."""
  field = make_field(spec, "exact")
  eps, N = spec.step_size, spec.n_steps

  @jax.jit
  def path(params, x):
    # positions [N + 1, n, d] from t = 0 to T; the last one is the flow map
    return integrate(field, params, x, t0=0.0, dt=eps, n_steps=N, need_lap=False, keep_path=True)[2]

  @jax.jit
  def pullback(params, u, k):
    # backward from t = k eps to 0 (steps past k masked): (x_0 [n, d], log p_t(u) [n])
    x0, acc = integrate(field, params, u, t0=k * eps, dt=-eps, n_steps=N, n_active=k)
    return x0, std_normal_log_density(x0) - acc

  @jax.jit
  def grad_lap(params, u, t):
    return field(params, u, t, True)

  def forward(params, z):
    return integrate(field, params, z, t0=0.0, dt=eps, n_steps=N, need_lap=False)[0]

  @jax.jit
  def sample_log_prob(params, z):
    # the RK4 map's images u [n, d] and the exact log-density of u under that map (the sampler):
    # log N(z) - log |det D map(z)|, the Jacobian by d forward-mode products per point
    one = lambda zi: forward(params, zi[None])[0]
    jac = jax.vmap(jax.jacfwd(one))(z)
    return forward(params, z), std_normal_log_density(z) - jnp.linalg.slogdet(jac)[1]

  @jax.jit
  def sample_log_prob_ode(params, z):
    # above _EXACT_LOGDET_MAX_DIM: log p along the forward path (the training's estimate)
    u, acc = integrate(field, params, z, t0=0.0, dt=eps, n_steps=N)
    return u, std_normal_log_density(z) + acc

  phi = make_potential(spec)
  return dict(path=path, pullback=pullback, grad_lap=grad_lap, phi=jax.jit(phi),
              sample_log_prob=sample_log_prob, sample_log_prob_ode=sample_log_prob_ode)


@functools.lru_cache(maxsize=32)
def _flow_log_density(spec: _Spec):
  """``fn((params, shift, whiten), y [d]) -> []``: ``log p_T(y) + log det L`` (MAFlowFitted)."""
  field = make_field(spec, "exact")

  def fn(args, y):
    params, shift, whiten = args
    return flow_log_prob(field, spec, params, (whiten @ (y - shift))[None])[0]

  return fn


@dataclasses.dataclass
class MAFlowFitted(FittedModel):
  """A fitted Monge-Ampère flow: base N(0, I), map = the time-T flow of ``grad phi``."""

  model = "maflow"

  @functools.cached_property
  def spec(self) -> _Spec:
    return _spec(self.config, int(self.extras.get("dim", self.info.get("dim"))))

  @property
  def end_time(self) -> float:
    """``T = step_size * n_steps``."""
    return self.spec.end_time

  def grid_error(self, n: int = 256, seed: int = 0) -> float:
    """Mean change of ``log_prob``, in nats, on ``n`` of the flow's own samples when its RK4 grid
    is halved (twice the steps, the same ``T``): about 0 when the grid resolves the flow, well
    above 0 when training learnt the integrator's error (then :meth:`log_prob` is optimistic and
    no longer integrates to one; docs/peers.md, session 43)."""
    y = self.sample(n, seed=seed)
    return float(np.mean(self.log_prob(y) - self.on_finer_grid(2).log_prob(y)))

  def on_finer_grid(self, factor: int) -> "MAFlowFitted":
    """The same fitted field integrated on ``factor`` times as many RK4 steps, each ``factor``
    times shorter (the same ``T``): the continuous flow's density and map, as ``factor`` grows."""
    c = self.config
    return dataclasses.replace(self, config={**c, "n_steps": int(c["n_steps"]) * int(factor),
                                             "step_size": float(c["step_size"]) / int(factor)})

  @functools.cached_property
  def _fns(self) -> dict:
    return _compiled(self.spec)

  @functools.cached_property
  def _params(self):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), self.params)

  @property
  def _shift(self) -> np.ndarray:
    return np.asarray(self.extras["shift"], np.float32).reshape(self.dim)

  @functools.cached_property
  def _scale(self) -> np.ndarray:
    """``L`` ``[d, d]`` (models saved with one scalar scale read as ``scale * I``)."""
    scale = np.asarray(self.extras["scale"], np.float64)
    return scale * np.eye(self.dim) if scale.ndim == 0 else scale.reshape(self.dim, self.dim)

  @functools.cached_property
  def _whiten(self) -> np.ndarray:
    return np.linalg.inv(self._scale)

  @functools.cached_property
  def _log_det_scale(self) -> float:
    return float(np.sum(np.log(np.diag(self._scale))))

  def _batched(self, fn, x: np.ndarray, *args, axis: int = 0, select=None) -> np.ndarray:
    """Applies a jitted ``fn(params, x [b, d], *args)`` in padded chunks (few compilations).

    ``select`` picks one output of a tuple; ``axis`` is the points axis of that output.
    """
    outs = []
    for start in range(0, max(x.shape[0], 1), _EVAL_CHUNK):
      chunk = x[start:start + _EVAL_CHUNK]
      n = chunk.shape[0]
      b = batching.bucket(n)
      padded = np.concatenate([chunk, np.zeros((b - n, x.shape[1]), np.float32)])
      out = fn(self._params, jnp.asarray(padded), *args)
      out = np.asarray(out if select is None else out[select])
      outs.append(np.take(out, np.arange(n), axis=axis))
    return np.concatenate(outs, axis=axis)

  def _to_std(self, y: np.ndarray) -> np.ndarray:
    return ((y - self._shift) @ self._whiten.T).astype(np.float32)

  def _from_std(self, u: np.ndarray) -> np.ndarray:
    return (self._shift + np.asarray(u, np.float64) @ self._scale.T).astype(np.float32)

  # -- the protocol --------------------------------------------------------
  def sample_base(self, n: int, seed: int = 0) -> np.ndarray:
    n = check_n(n)
    rng = np.random.default_rng(check_seed(seed))
    return rng.standard_normal((n, self.dim)).astype(np.float32)

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    return self.transport(self.sample_base(n, seed))

  def sample_with_log_prob(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(samples [n, d], log q [n])``: :meth:`sample`'s points and the log-density of the sampler
    at them, exact for the RK4 map up to ``_EXACT_LOGDET_MAX_DIM`` dimensions (``log N(z) - log |det
    D map(z)|``, the Jacobian by forward mode), above by the Laplacian integrated along each path.
    :meth:`log_prob` integrates backward from the point instead, which after long training can
    differ from the sampler's density by a nat or more on a few points (docs/energies.md);
    ``cmm_core.metrics.free_energy_metrics`` uses this one."""
    z = self.sample_base(n, seed)
    fn = self._fns["sample_log_prob" if self.dim <= _EXACT_LOGDET_MAX_DIM else "sample_log_prob_ode"]
    us, lps = [], []
    for start in range(0, n, _EVAL_CHUNK):
      chunk = z[start:start + _EVAL_CHUNK]
      b = batching.bucket(chunk.shape[0])
      padded = np.concatenate([chunk, np.zeros((b - chunk.shape[0], self.dim), np.float32)])
      u, lp = fn(self._params, jnp.asarray(padded))
      us.append(np.asarray(u)[:chunk.shape[0]])
      lps.append(np.asarray(lp, np.float64)[:chunk.shape[0]])
    return (self._from_std(np.concatenate(us)),
            np.concatenate(lps) - self._log_det_scale)

  def transport(self, x) -> np.ndarray:
    """The time-T flow map, base -> data: ``[n, d]`` -> ``[n, d]``."""
    x = self._points(x)
    return self._from_std(self._batched(self._fns["path"], x, axis=1)[-1])

  def inverse_transport(self, y) -> np.ndarray:
    """The backward flow, data -> base: ``[n, d]`` -> ``[n, d]``."""
    y = self._points(y, "y")
    k = jnp.asarray(self.n_steps, jnp.int32)
    return self._batched(self._fns["pullback"], self._to_std(y), k, select=0).astype(np.float32)

  def base_log_density(self, x) -> np.ndarray:
    """``log N(x; 0, I)``, ``[n, d]`` -> ``[n]``."""
    x = self._points(x).astype(np.float64)
    return -0.5 * np.sum(x ** 2, 1) - 0.5 * self.dim * _LOG_2PI

  def log_prob(self, y, time: float | None = None) -> np.ndarray:
    """Exact ``log p_t(y)`` in data space, ``[n, d]`` -> ``[n]``, by backward RK4.

    ``time`` (default ``T``) is rounded to the nearest multiple of ``step_size``; ``time=0``
    gives the base pushed by the standardisation, ``N(shift, L L^T)``.
    """
    y = self._points(y, "y")
    k = self.n_steps if time is None else self.step_index(time)
    lp = self._batched(self._fns["pullback"], self._to_std(y), jnp.asarray(k, jnp.int32), select=1)
    return lp.astype(np.float64) - self._log_det_scale

  def log_density_fn(self):
    """A JAX-traceable unnormalised data log-density, for gradient-based samplers.

    Returns:
      ``(fn, args)``: ``fn(args, y [d]) -> []`` equals :meth:`log_prob` up to the constant
      ``log det L`` (backward RK4 with the exact Laplacian) and is differentiable in ``y``;
      ``fn`` depends on the flow's structure only (jitted code is shared).
    """
    args = (self._params, jnp.asarray(self._shift, jnp.float32), jnp.asarray(self._whiten, jnp.float32))
    return _flow_log_density(self.spec), args

  # -- extras --------------------------------------------------------------
  @property
  def n_steps(self) -> int:
    return self.spec.n_steps

  def step_index(self, time: float) -> int:
    """The RK4 step count ``k`` whose time ``k * step_size`` is nearest to ``time`` in [0, T]."""
    time = float(time)
    if not np.isfinite(time) or not -1e-9 <= time <= self.end_time * (1 + 1e-9):
      raise ValueError(f"time must be in [0, T = {self.end_time:g}], got {time!r}")
    return int(min(self.n_steps, max(0, round(time / self.spec.step_size))))

  def trajectories(self, x, n_frames: int = 21) -> np.ndarray:
    """Positions along the flow from base points ``x`` ``[n, d]``: ``[n_frames, n, d]``.

    Frames are equally spaced in ``[0, T]`` (linear interpolation between RK4 steps) and in data
    coordinates: frame 0 is ``shift + L x`` (the base in data units), the last frame is
    ``transport(x)``.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or not 2 <= n_frames <= 1000:
      raise ValueError(f"n_frames must be an integer in [2, 1000], got {n_frames!r}")
    x = self._points(x)
    path = self._batched(self._fns["path"], x, axis=1)  # [N + 1, n, d]
    pos = np.linspace(0, self.n_steps, int(n_frames))
    lo = np.minimum(np.floor(pos).astype(int), self.n_steps - 1)
    w = (pos - lo)[:, None, None]
    frames = (1 - w) * path[lo] + w * path[lo + 1]
    return self._from_std(frames)

  def frame_times(self, n_frames: int = 21) -> np.ndarray:
    """The times ``[n_frames]`` of :meth:`trajectories`' frames."""
    return np.linspace(0.0, self.end_time, int(n_frames))

  def potential(self, y, time: float = 0.0) -> np.ndarray:
    """``phi(u, t)`` at ``u = L^{-1} (y - shift)`` (standardised units), ``[n, d]`` -> ``[n]``."""
    y = self._points(y, "y")
    return np.asarray(self._fns["phi"](self._params, jnp.asarray(self._to_std(y)), float(time)))

  def grad_laplacian(self, u, time: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(grad phi [n, d], Laplacian phi [n])`` at standardised points ``u``."""
    u = self._points(u, "u")
    g, lap = self._fns["grad_lap"](self._params, jnp.asarray(u), float(time))
    return np.asarray(g), np.asarray(lap)


class MAFlow(Model):
  """Monge-Ampère flow trained by maximum likelihood (see module docstring)."""

  name = "maflow"
  fitted_cls = MAFlowFitted
  default_steps = 1000
  # measured in docs/maflow.md: radial units draw rings, segments let the flow wind,
  # the kinetic penalty keeps the coarse RK4 honest (without it the fit learns the integrator's error)
  # each measured with 64 units, 5e-3, batches of 256 (before "auto" by the rows) and the rate decayed
  # to 5% (before the decay to 0): pinned
  _MEASURED = {**_AUTO_FEW_ROWS_SETTINGS, "n_steps": 10, "step_size": 0.2, "lr_decay": 0.05}
  _HARD = {"segments": 5, "radial": 32, "kinetic": 0.5, **_MEASURED}
  suggested = {
      "rings": {"steps": 1000, "hyper": _HARD,
                "why": "radial units draw the four rings (the defaults give a disc)"},
      "circles": {"steps": 2000, "hyper": _HARD, "why": "radial units separate the two rings"},
      "spirals": {"steps": 1000, "hyper": _HARD,
                  "why": "five potentials in sequence let the flow wind the two arms"},
      "checkerboard": {"steps": 2000, "hyper": _HARD,
                       "why": "square-ish cells instead of blurred blobs"},
      "swissroll": {"steps": 1000, "hyper": _HARD,
                    "why": "the turns of the roll separate (held-out NLL 2.70 against 2.79)"},
      "pinwheel": {"steps": 3000, "hyper": dict(_MEASURED),
                   "why": "the earlier defaults, longer: five clear arms"},
      # a built-in data set (docs/images.md): the MLP potential that "auto" picks in 64-D, in time
      "digits": {"steps": 2000, "hyper": {"time_dependent": True, **_MEASURED},
                 "why": "a time-dependent potential of 64 units (rate 5e-3, batches of 256) and "
                        "twice the steps (80 s): classifier two-sample accuracy 0.56 and 80% of "
                        "half-hidden digits completed legibly, against 0.60 and 75% in 1,000 steps "
                        "without time"},
  }
  schema = (
      hyper.Choice("potential", "auto", ("auto", "single", "mlp"),
                   '"single" (closed form, reference) or "mlp" (autodiff); auto: mlp above 16-D, '
                   'and from 8-D with >= 32 rows per dimension'),
      hyper.Int("hidden", None, 1, 2048, "width of the hidden layer(s)",
                optional=f"96 from {_AUTO_MANY_ROWS} rows, 64 below"),
      hyper.Int("depth", 2, 1, 8, 'hidden layers of the "mlp" potential'),
      hyper.Bool("time_dependent", False, "phi(x, t) instead of phi(x)"),
      hyper.Int("n_steps", None, 1, 500, "RK4 steps; T = step_size * n_steps",
                optional=f"16 for 2-D data from {_AUTO_MANY_ROWS} rows (with segments; 24 for fits of more "
                         f"than {_AUTO_FINE_GRID_FROM_STEPS} steps), 10 otherwise (segments given: "
                         "the first multiple of them from 10, over T = 2)"),
      hyper.Float("step_size", None, 1e-4, 5.0, "eps (the reference code uses 0.1)",
                  optional=f"0.125 for 2-D data from {_AUTO_MANY_ROWS} rows (with segments; 1/12 for "
                           f"fits of more than {_AUTO_FINE_GRID_FROM_STEPS} steps), 0.2 otherwise: "
                           "T = 2"),
      hyper.Choice("laplacian", "auto", ("auto", "exact", "hutchinson"),
                   "how mlp potentials compute the Laplacian in training"),
      hyper.Float("learning_rate", None, 1e-6, 0.1,
                  "Adam (the reference uses 1e-3: too slow for a 1000-step fit)", log=True,
                  optional=f"1.5e-2 from {_AUTO_MANY_ROWS} rows (1e-2 for 2-D data with "
                           "segments), 5e-3 below"),
      hyper.Int("batch_size", None, 8, 8192, "data points per step",
                optional=f"128 from {_AUTO_MANY_ROWS} rows, 256 below"),
      hyper.Choice("symmetry", "none", ("none", "reflection", "rotation"),
                   "a symmetric potential (rotation: 2D)"),
      hyper.Int("symmetry_order", 4, 2, 64, "k for a rotation by 2 pi / k"),
      hyper.Bool("standardize", True, "fit the standardised data (the outputs stay in data space)"),
      hyper.Choice("standardize_by", "auto", STANDARDIZE_BY,
                   "standardise by the data's covariance, each column's std, or one scalar; auto: "
                   "the covariance above 16-D or for columns in different units (rotation: scalar)"),
      hyper.Float("init_scale", 0.1, 1e-4, 10.0, "size of the initial potential's output weights"),
      hyper.Float("weight_scale", 5.0, 1e-3, 100.0,
                  "first-layer weights at init (sharp features resolve separate modes)"),
      hyper.Float("grad_clip", 10.0, 0.0, 1e6, "global-norm gradient clipping (0 = off)"),
      hyper.Float("lr_decay", 0.0, 0.0, 1.0,
                  "final learning rate / initial (cosine over the fit's steps); 1 = constant"),
      hyper.Int("segments", None, 1, 10,
                '"single": K potentials, each acting on 1/K of [0, T] (n_steps % K == 0)',
                optional=f"2 for 2-D data from {_AUTO_MANY_ROWS} rows (the plain one-layer "
                         "potential, steps and step size left auto), 1 otherwise"),
      hyper.Int("radial", 0, 0, 2048, '"single": extra radial units softplus(alpha |u - m|^2 + beta)'),
      hyper.Float("kinetic", None, 0.0, 100.0,
                  "weight of the kinetic-energy penalty mean int |grad phi|^2 dt (RNODE)",
                  optional=f"{_AUTO_LONG_KINETIC:g} for 2-D fits with segments (auto) of more than "
                           f"{_AUTO_KINETIC_FROM_STEPS} steps, 0 otherwise"),
  )

  def validate(self, c: dict) -> None:
    # an "auto" value left None: the plain one (the segmented set needs all three left auto)
    plain = _plain_time(c)
    segments, n_steps = plain["segments"], plain["n_steps"]
    if c["potential"] == "mlp" and (segments > 1 or c["radial"] > 0):
      raise ValueError(f"{self.name}: segments > 1 and radial > 0 need potential='single', "
                       f"got potential={c['potential']!r}")
    if n_steps % segments:
      raise ValueError(f"{self.name}: n_steps ({n_steps}) must be a multiple of segments "
                       f"({segments}), so that each RK4 step lies in one time segment")

  def divergence_hint(self) -> str:
    return "Lower learning_rate or step_size, or use fewer n_steps."

  def _check_dim(self, dim: int) -> None:
    if self.config["symmetry"] == "rotation" and dim != 2:
      raise ValueError(f"{self.name}: symmetry='rotation' needs 2D data, got {dim}D; "
                       "use 'reflection' or 'none'")

  def prepare(self, data: np.ndarray) -> tuple[np.ndarray, dict]:
    self._check_dim(data.shape[1])
    return data, {}

  def resolve(self, dim: int, n: Optional[int] = None,
              steps: Optional[int] = None) -> tuple[dict, dict]:
    """The settings a fit of ``steps`` training steps (None: the default count) on ``n`` rows
    (None: unknown, taken as few) of ``dim``-dimensional data runs with: ``(config, auto)``,
    ``config`` with ``potential="auto"`` and the None ("auto") settings replaced, ``auto`` the
    replaced values ``{name: value}``."""
    c, auto = dict(self.config), {}
    if c["potential"] == "auto":
      c["potential"] = auto["potential"] = resolve_potential(c, dim, n)
    many = n is not None and n >= _AUTO_MANY_ROWS
    by_rows = dict(_AUTO_MANY_ROWS_SETTINGS if many else _AUTO_FEW_ROWS_SETTINGS)
    segmented = (many and dim == _AUTO_SEGMENTED_DIM and c["potential"] == "single"
                 and c["symmetry"] == "none" and c["radial"] == 0 and not c["time_dependent"]
                 and all(c[name] is None for name in _AUTO_PLAIN_TIME))
    by_rows.update(_AUTO_SEGMENTED if segmented else _plain_time(c))
    steps = steps or self.default_steps
    if segmented and steps > _AUTO_FINE_GRID_FROM_STEPS:
      by_rows.update(_AUTO_SEGMENTED_FINE)
    by_rows["kinetic"] = _AUTO_LONG_KINETIC if segmented and steps > _AUTO_KINETIC_FROM_STEPS else 0.0
    for name, value in by_rows.items():
      if name in c and c[name] is None:  # left on "auto"
        c[name] = auto[name] = value
    return c, auto

  def laplacian_mode(self, dim: int, n: Optional[int] = None) -> str:
    """The Laplacian used in training: "exact" or "hutchinson"."""
    mode = self.config["laplacian"]
    if self.resolve(dim, n)[0]["potential"] == "single":
      return "exact"  # closed form, always exact and cheap
    if mode == "auto":
      return "exact" if dim <= _EXACT_MAX_DIM else "hutchinson"
    return mode

  # -- init ------------------------------------------------------------------
  def init(self, key, data, total_steps=None):
    d = int(data.shape[1])
    self._check_dim(d)
    shift, scale, by = self._standardization(np.asarray(data, np.float64), d)
    static, params = self._start(key, data, total_steps, by)
    return static, MAFlowState(params, optimizer(static).init(params), *_state_affine(shift, scale))

  def _start(self, key, data, total_steps, standardize_by: str, **extra):
    """``(static, params)`` of a fit on ``data`` ``[n, d]``: the settings resolved for ``d``
    (:meth:`resolve`, recorded for ``finalize``) and the initial parameters."""
    c, n, d = self.config, int(data.shape[0]), int(data.shape[1])
    config, auto = self.resolve(d, n, total_steps)
    static = self.static(data, total_steps if c["lr_decay"] < 1.0 else 0, config=config,
                         laplacian=self.laplacian_mode(d, n), standardize_by=standardize_by,
                         auto=tuple(sorted(auto.items())), **extra)
    return static, init_params(_spec(config, d), key, float(c["init_scale"]),
                               float(c["weight_scale"]))

  def _standardization(self, points, d: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(shift [d], L [d, d], mode)`` from ``points`` ``[n, d]`` (None: no standardisation),
    ``mode`` the resolved ``standardize_by`` ("none" without standardisation)."""
    c = self.config
    if not c["standardize"] or points is None:
      return np.zeros(d), np.eye(d), "none"
    mode = "scalar" if c["symmetry"] == "rotation" else resolve_standardize_by(points, c["standardize_by"])
    return (*standardization(points, mode, centre=c["symmetry"] == "none"), mode)

  # -- one step --------------------------------------------------------------
  def step(self, static, state: MAFlowState, key, data):
    c, spec, mode = static.config, _spec(static.config, static.dim), static.get("laplacian")
    field, tx = make_field(spec, mode), optimizer(static)
    k_batch, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_batch, (int(c["batch_size"]),), 0, data.shape[0])
    u = sharding.constrain_batch((data[idx] - state.shift) @ state.whiten.T)  # multi-device: split
    noise = None
    if mode == "hutchinson":
      noise = jax.random.rademacher(k_noise, u.shape, dtype=u.dtype)
    log_jac = _log_det(state.scale)
    lam = float(c.get("kinetic", 0.0))

    def loss_fn(p):
      if lam > 0:
        lp, ke = flow_log_prob(field, spec, p, u, noise=noise, kinetic=True)
        nll = -jnp.mean(lp) + log_jac
        kin = jnp.mean(ke)
        return nll + lam * kin, (nll, kin)
      nll = -jnp.mean(flow_log_prob(field, spec, p, u, noise=noise)) + log_jac
      return nll, (nll, jnp.zeros(()))

    (_, (nll, kin)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": nll, "grad_norm": optax.global_norm(grads)}
    if lam > 0:
      metrics["kinetic"] = kin
    return state._replace(params=params, opt_state=opt_state), metrics

  def finalize(self, static, state: MAFlowState, history, info) -> MAFlowFitted:
    extras = {"dim": static.dim, "shift": np.asarray(state.shift, np.float32),
              "scale": np.asarray(state.scale, np.float32), "laplacian_train": static.get("laplacian")}
    config, auto = static.config, dict(static.get("auto") or ())  # the fitted config: what ran
    if config["standardize_by"] == "auto" and config["standardize"]:
      config = {**config, "standardize_by": static.get("standardize_by")}
      auto["standardize_by"] = config["standardize_by"]
    if auto:
      info = {**info, "auto": auto}
    fitted = MAFlowFitted(config=config, params=state.params, extras=extras, history=history, info=info)
    if info.get("status") in ("done", "stopped") and _grid_sensitive(fitted.spec):
      fitted = _checked_grid(fitted)
    return fitted


GRID_CHECK_NATS = 0.01  # a larger mean change of log_prob on a grid twice as fine: warned


def _grid_sensitive(spec: _Spec) -> bool:
  """Settings whose training has learnt the RK4 grid's error in measured fits (time segments, a
  time-dependent potential; docs/peers.md, docs/maflow.md): checked at the end of a fit. The
  one-layer potential only (closed-form Laplacian: the check costs a second or two)."""
  return spec.potential == "single" and (spec.segments > 1 or spec.time_dependent)


def _checked_grid(fitted: MAFlowFitted) -> MAFlowFitted:
  """``fitted`` with ``info["grid_error"]`` (:meth:`MAFlowFitted.grid_error`) and, above
  ``GRID_CHECK_NATS``, a warning that its log-densities are optimistic."""
  err = fitted.grid_error()
  info = {**fitted.info, "grid_error": err}
  if not np.isfinite(err) or abs(err) > GRID_CHECK_NATS:
    shift = (f"{err:.3g} nats lower on average, so the NLL shown is optimistic (training learnt "
             f"the integrator's error)" if err > 0 else
             f"{abs(err):.3g} nats higher on average, so the NLL shown is not accurate")
    info["warnings"] = [*(info.get("warnings") or []),
                        f"maflow's log-density depends on its RK4 grid: on a grid twice as fine its "
                        f"own samples score {shift}. Use more n_steps with a smaller step_size, a "
                        f"lower learning_rate, or kinetic > 0."]
  return dataclasses.replace(fitted, info=info)


def optimizer(static) -> optax.GradientTransformation:
  """Adam with the rate cosine-decayed from ``learning_rate`` to ``lr_decay`` times it over the fit's
  steps (a constant when ``lr_decay`` is 1; the horizon in the state: :meth:`Model.set_horizon`),
  after global-norm clipping at ``grad_clip`` (0 = none)."""
  c = static.config
  clip = [optax.clip_by_global_norm(c["grad_clip"])] if c["grad_clip"] > 0 else []
  if c["lr_decay"] >= 1.0:
    return optax.chain(*clip, optax.adam(c["learning_rate"]))
  return optax.chain(*clip, schedules.adam_cosine(c["learning_rate"], c["lr_decay"],
                                                  max(1, static.total_steps)))


_EXACT_LOGDET_MAX_DIM = 64   # sample_with_log_prob: exact Jacobian log-determinants up to here
_ENERGY_WARMUP_CHAINS = 4096  # MALA chains whose moments standardise an energy fit's coordinates
_ENERGY_STANDARDIZE = False   # the energy route's default for ``standardize`` (docs/energies.md)
_ENERGY_DEFAULTS = {**_AUTO_FEW_ROWS_SETTINGS, **_AUTO_PLAIN_TIME, "kinetic": 0.0}  # no "auto" (no rows)
_ENERGY_LR_DECAY = 0.05       # the energy route's final / initial learning rate (its figures were
                              # measured with it; decaying to 0 changed no 2D ELBO gap, docs/maflow.md)


def sample_score(spec: _Spec, state: MAFlowState, z, dts=None):
  """``grad_x log q(x)`` ``[n, d]`` at the samples ``x`` of latents ``z`` ``[n, d]`` (parameters held
  fixed): the score ODE in ``u`` (:func:`integrate_score`), then ``x = shift + scale u``."""
  _, score_u = integrate_score(spec, state.params, z, dt=spec.step_size,
                               n_steps=spec.n_steps, dts=dts)
  return score_u @ state.whiten          # grad_x = L^{-T} grad_u, with the state's L^{-1}


def reverse_kl_loss(field, spec: _Spec, params, state: MAFlowState, z, energy, *, beta=1.0,
                    kinetic: float = 0.0, noise=None, dts=None, score_x=None, path: bool = True,
                    forward: float = 0.0):
  """``(loss, (F, spread of log q + E, kinetic))`` on latents ``z`` ``[n, d]``: the reverse KL's
  surrogate whose gradient in ``params`` the fit follows, and the free energy ``F`` it reports.

  ``score_x`` None: ``mean(log q + beta E)``, its total (reparameterised) gradient. ``score_x``
  (``grad_x log q`` at the samples, :func:`sample_score`): the path gradient (Vaitl et al. 2022),
  ``E[(dx/dparams)^T (grad log q + beta grad E)]``, the total one without its score term, which is
  zero in expectation and all the variance when ``q = p``; ``path=False`` keeps the total gradient
  with ``score_x`` given (for ``forward``).

  ``forward`` > 0 (needs ``score_x``) adds the importance-weighted forward KL,
  ``-sum_i v_i log q(x_i)`` with ``v`` the batch's self-normalised weights ``exp(-(log q + beta E))``
  held fixed, at ``forward`` times their effective sample size as a fraction of the batch
  (:func:`cmm_core.sampling.importance_weights`: the term fades where one sample would carry it).
  Its gradient at fixed ``x`` is that of ``log q - score_x . x`` along the samples (the total
  derivative less the part that moves ``x``), so it needs no inverse integration.
  """
  out = integrate(field, params, z, t0=0.0, dt=spec.step_size, n_steps=spec.n_steps, noise=noise,
                  kinetic=kinetic > 0, dts=dts)
  x = state.shift + out[0] @ state.scale.T              # the flow's output in E's coordinates
  log_q = std_normal_log_density(z) + out[1] - _log_det(state.scale)  # out[1]: log p's change
  e_x = energy.fn(x)
  free = log_q + e_x                                    # [b]: log q(x) + E(x), reported
  kin = jnp.mean(out[2]) if kinetic > 0 else jnp.zeros(())
  aux = (jnp.mean(free), jnp.std(free), kin)
  extra = kinetic * kin
  if forward > 0:
    weights, ess = jax.lax.stop_gradient(sampling.importance_weights(-(log_q + beta * e_x)))
    fixed_x = log_q - jnp.sum(jax.lax.stop_gradient(score_x) * x, -1)   # d/dparams at fixed x
    extra = extra - forward * ess * jnp.sum(weights * fixed_x)
  if score_x is None or not path:
    return jnp.mean(log_q + beta * e_x) + extra, aux
  grad_e = jax.grad(lambda y: jnp.sum(energy.fn(y)))(jax.lax.stop_gradient(x))
  pull = jax.lax.stop_gradient(score_x + beta * grad_e)
  return jnp.mean(jnp.sum(pull * x, -1)) + extra, aux


class MAFlowEnergy(MAFlow):
  """The Monge-Ampère flow fitted to an energy ``E`` (a density ``exp(-E) / Z`` known up to ``Z``)
  by the reverse KL of the Monge-Ampère flow paper: latent draws ``z ~ N(0, I)`` pushed forward by
  the flow, ``log q(x)`` from the flow's exact log-density along the way, and the loss
  ``F = E_q[log q(x) + E(x)] >= -log Z`` (the variational free energy; ``-F`` is the ELBO).

  ``standardize``: the flow runs in coordinates ``u = L^{-1} (x - mean)`` whose mean and scale
  (``standardize_by``, here one scalar by default) come from a short MALA run on ``exp(-E)`` (4,096
  chains, as cmm's start), so its untrained map already spreads ``N(mean, L L^T)`` over the energy's
  mass; otherwise in the energy's own coordinates. ``symmetry="reflection"`` gives an even potential (the Ising model's
  Z2 symmetry; the mean is then 0). ``anneal_steps``: tempering, the loss on ``beta E`` with beta
  rising linearly from ``anneal_from`` to 1 over those first steps (the history's loss stays ``F``
  of ``E`` itself). ``gradient="path"``: the path-gradient estimator (:func:`reverse_kl_loss`), the
  score of each sample integrated with it; on L = 8 it does not learn the grid's error at rates
  where the total gradient does (docs/energies.md). ``forward_kl``: that weight of the
  importance-weighted forward KL added to the loss (mass-covering; :func:`reverse_kl_loss`).
  ``cc.fit_energy("maflow", ...)``.
  """

  # the flow's own samples, not rows of data: the few-rows settings as plain defaults (no "auto")
  schema = hyper.replace(tuple(
      dataclasses.replace(h, default=_ENERGY_STANDARDIZE,
                          help="flow coordinates standardised by a short MALA run on exp(-E)")
      if h.name == "standardize" else
      dataclasses.replace(h, default=_ENERGY_DEFAULTS[h.name], optional="")
      if h.name in _ENERGY_DEFAULTS else h
      for h in MAFlow.schema), standardize_by="scalar", potential="single",
      lr_decay=_ENERGY_LR_DECAY) + (
      hyper.Int("anneal_steps", 0, 0, 1_000_000,
                "tempering: the loss uses beta E, beta rising linearly from anneal_from to 1 over "
                "these first steps (0 = off)"),
      hyper.Float("anneal_from", 0.2, 0.01, 1.0, "beta at step 0 when anneal_steps > 0"),
      hyper.Choice("gradient", "total", ("total", "path"),
                   "the reverse KL's gradient: total (reparameterised, through log q as well) or "
                   "path (through the samples only, with the score ODE; lower variance near q = p)"),
      hyper.Float("grid_jitter", 0.0, 0.0, 0.9,
                  "training integrates on a random grid: each RK4 step's length is drawn within "
                  "(1 +- jitter) of step_size, rescaled to the same end time (0 = the fixed grid)"),
      hyper.Float("forward_kl", 0.0, 0.0, 10.0,
                  "weight of the importance-weighted forward KL added to the reverse KL, times "
                  "the weights' effective sample size fraction (mass-covering: it moves mass to "
                  "where the flow has too little; 0 = off)"),
  )

  # measured with benchmarks/energies.py (docs/energies.md); api.energy_settings applies them
  suggested = {
      "wave": {"hyper": {"standardize": True},
               "why": "coordinates from a MALA run: the ELBO gap reaches 0.05 nats in 37 s (not in "
                      "150 s without)"},
      "rings": {"hyper": {"standardize": True, "segments": 5, "radial": 96, "hidden": 32,
                          "kinetic": 0.5, "forward_kl": 4.0},
                "why": "MALA coordinates, five potentials in sequence, each of 96 radial units and 32 "
                       "ridges, and the forward KL at weight 4: ELBO gap 0.13-0.18 at 120 s over three "
                       "fits, against 0.19-0.22 over four without it (0.94 at 150 s with standardize alone)"},
  }
  # lattices from this side up (api.energy_settings): L = 8 measured in docs/energies.md
  lattice_min_side = 8
  lattice_suggested = {
      "hyper": {"n_steps": 20, "step_size": 0.1, "segments": 4, "hidden": 128,
                "learning_rate": 2e-2, "gradient": "path"},
      "why": "20 RK4 steps of 0.1: with 10 of 0.2 the trained map folds in 64-D and its free energy "
             "is optimistic; four potentials of 128 units in sequence; the path gradient at a rate of "
             "2e-2: on L = 8, 0.008 nats per site in 15 minutes (0.026 in 5), against 0.027 (0.035) "
             "with the usual gradient at 5e-3; at 2e-2 the usual gradient learns the grid's error"}

  def __init__(self, energy, **hyper):
    super().__init__(**hyper)
    object.__setattr__(self, "energy", energy)

  def init(self, key, data, total_steps=None):
    c, d = self.config, int(self.energy.dim)
    self._check_dim(d)
    rough = None
    if c["standardize"]:
      k_warm, key = jax.random.split(key)
      rough = sampling.rough_samples(self.energy, k_warm, _ENERGY_WARMUP_CHAINS)
    shift, scale, by = self._standardization(rough, d)
    static, params = self._start(key, np.zeros((1, d)), total_steps, by, energy=self.energy)
    return static, MAFlowState(params, optimizer(static).init(params), *_state_affine(shift, scale))

  def step(self, static, state: MAFlowState, key, data):
    c, spec, mode = static.config, _spec(static.config, static.dim), static.get("laplacian")
    energy, field, tx = static.get("energy"), make_field(spec, mode), optimizer(static)
    k_z, k_noise = jax.random.split(key)
    z = sharding.constrain_batch(jax.random.normal(k_z, (int(c["batch_size"]), spec.dim)))
    noise = jax.random.rademacher(k_noise, z.shape, dtype=z.dtype) if mode == "hutchinson" else None
    lam = float(c.get("kinetic", 0.0))
    jitter = float(c.get("grid_jitter", 0.0))
    dts = None
    if jitter > 0:
      # a random grid to the same end time: a map that exploits one fixed grid's error is not
      # rewarded on the others (docs/energies.md)
      # (its own key folded in: fits without it keep the random draws they always had)
      k_grid = jax.random.fold_in(key, 1)
      w = 1.0 + jitter * jax.random.uniform(k_grid, (spec.n_steps,), minval=-1.0, maxval=1.0)
      dts = spec.end_time * w / jnp.sum(w)
    n_anneal, b0 = int(c["anneal_steps"]), float(c["anneal_from"])
    if n_anneal > 0:   # tempering: the step's target is exp(-beta E), beta -> 1 over n_anneal steps
      done = optax.tree_utils.tree_get_all_with_path(state.opt_state, "count")[0][1]
      beta = jnp.minimum(1.0, b0 + (1.0 - b0) * done.astype(jnp.float32) / n_anneal)
    else:
      beta = jnp.ones(())

    forward = float(c.get("forward_kl", 0.0))
    score_x = None
    if c["gradient"] == "path" or forward > 0:
      score_x = sample_score(spec, state, z, dts)

    def loss_fn(p):
      return reverse_kl_loss(field, spec, p, state, z, energy, beta=beta, kinetic=lam,
                             noise=noise, dts=dts, score_x=score_x, path=c["gradient"] == "path",
                             forward=forward)

    (_, (free, spread, kin)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # loss: the free-energy bound F (nats); its spread over the batch is 0 exactly when q = p
    metrics = {"loss": free, "free_energy_spread": spread, "grad_norm": optax.global_norm(grads)}
    if lam > 0:
      metrics["kinetic"] = kin
    return state._replace(params=params, opt_state=opt_state), metrics
