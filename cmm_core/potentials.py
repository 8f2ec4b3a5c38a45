"""Convex potentials (ott-jax ICNN) and their Legendre conjugates.

A potential is ``w(x) = icnn((x - center) / scale) + (alpha / 2) (x - a)^T B (x - a)``:
ott-jax's ICNN in normalised coordinates, initialised to a Gaussian map, plus a fixed
strongly convex quadratic floor that keeps ``e^{-w}`` integrable and ``grad w*`` Lipschitz.
The normalisation is a reparametrisation only: ``w`` is a function of the data as given.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ott.neural.networks import icnn as ott_icnn
from ott.neural.networks.layers import conjugate as ott_conjugate

__all__ = ["ConvexPotential", "Quadratic", "make_potential", "conjugate_argmax",
           "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.relu, "softplus": nn.softplus, "elu": nn.elu}


class Quadratic:
  """A Gaussian potential ``q(x) = 1/2 (x - a)^T B (x - a)``; arrays are float32."""

  def __init__(self, a, B):
    self.a = jnp.asarray(a, jnp.float32)
    self.B = jnp.asarray(B, jnp.float32)

  def __call__(self, x):
    d = x - self.a
    return 0.5 * jnp.dot(d, self.B @ d)


def _scaled_lecun(factor: float):
  base = nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    return factor * base(key, shape, dtype)

  return init


class ConvexPotential(nn.Module):
  """``w(x)``: ``[..., d] -> [...]``, ICNN on normalised input + a fixed quadratic floor.

  The module holds only static settings (so it is hashable and jitted functions can be
  shared between fits); the data-dependent constants live in the ``"consts"`` collection:
  ``center [d]``, ``scale []``, ``floor_a [d]``, ``floor_B [d, d]`` (already times alpha), and
  with ``pieces > 0`` ``tail_B [d, d]``, ``tail_radius []`` (the wall beyond the points).

  Attributes:
    dim: data dimension ``d``.
    hidden: hidden widths of the ICNN.
    activation: one of ``ACTIVATIONS`` (convex, non-decreasing).
    init_scale: scale of the ICNN's random weights at initialisation.
  """

  dim: int
  hidden: Sequence[int]
  activation: str
  init_scale: float = 0.1
  pieces: int = 0

  @nn.compact
  def __call__(self, x):
    d = self.dim
    center = self.variable("consts", "center", jnp.zeros, (d,)).value
    scale = self.variable("consts", "scale", jnp.ones, ()).value
    floor_a = self.variable("consts", "floor_a", jnp.zeros, (d,)).value
    floor_B = self.variable("consts", "floor_B", jnp.eye, d).value
    z = (x - center) / scale
    icnn = ott_icnn.ICNN(
        dim_data=d, dim_hidden=tuple(self.hidden), pos_weights=True,
        # the final quadratic has full rank: make_potential sets it to the Gaussian guess
        ranks=(1,) * (len(self.hidden) + 1) + (d,),
        act_fn=ACTIVATIONS[self.activation],
        init_fn=_scaled_lecun(self.init_scale),
        name="icnn")
    diff = x - floor_a
    floor = 0.5 * jnp.sum(diff * (diff @ floor_B.T), axis=-1)
    out = icnn(z).reshape(floor.shape)
    if self.pieces:
      out = out + _SoftMaxAffine(self.pieces, d, name="soft_max_affine")(z).reshape(floor.shape)
      # a soft max of affine pieces grows only linearly, so e^{-w} would have wide tails that
      # grad w* sends far out (slope 1 / alpha); a wall 1/2 (|x - a|_B - r)_+^2 beyond the
      # points (r: their largest B-radius) keeps the map's slope there near the Gaussian guess's
      if self.has_variable("consts", "tail_B"):  # set by make_potential
        tail_B = self.get_variable("consts", "tail_B")
        tail_radius = self.get_variable("consts", "tail_radius")
        radius = jnp.sqrt(jnp.maximum(jnp.sum(diff * (diff @ tail_B.T), axis=-1), 1e-12))
        floor = floor + 0.5 * jnp.maximum(radius - tail_radius, 0.0) ** 2
    return out * scale**2 + floor


class _SoftMaxAffine(nn.Module):
  """``tau logsumexp_k((<z, v_k> + b_k) / tau)``: ``[..., d] -> [...]``, a smoothed max of affine pieces.

  Convex for any ``v [K, d]``, ``b [K]``, ``tau > 0``; its gradient is a softmax-weighted average of
  the slopes ``v_k``, so ``grad f`` can send whole cells of space near one point (clusters) without
  the ridge features an ICNN needs for that. ``tau = exp(log_tau)`` is learnt.
  """

  pieces: int
  dim: int

  @nn.compact
  def __call__(self, z):
    v = self.param("slopes", nn.initializers.zeros, (self.pieces, self.dim))
    b = self.param("offsets", nn.initializers.zeros, (self.pieces,))
    log_tau = self.param("log_tau", nn.initializers.constant(np.log(0.05)), ())
    tau = jnp.exp(log_tau)
    return tau * jax.nn.logsumexp((z @ v.T + b) / tau, axis=-1)


def make_potential(points: np.ndarray, base_mean: np.ndarray, potential_matrix: np.ndarray, key, *,
                   hidden=(64, 64), activation="softplus", alpha=0.05, init_scale=0.1,
                   feature_scale=1.0, pieces=0):
  """Builds a ConvexPotential and parameters whose gradient starts near ``x -> B (x - a)``.

  The ICNN's final quadratic (ott-jax's ``PosDefPotentials``) is set to ``(1 - alpha) w0``,
  ``w0(x) = 1/2 (x - a)^T B (x - a)``, and a fixed floor adds ``alpha w0``; the hidden layers
  start small (``init_scale``), so at init ``grad w`` is close to the Gaussian guess.

  Args:
    points: ``[n, d]`` where the potential will be evaluated (input normalisation and
      first-layer kinks).
    base_mean: ``[d]`` ``a``; potential_matrix: ``[d, d]`` ``B`` (SPD).
    key: PRNG key for the ICNN's random weights.
    alpha: fraction of ``B`` kept as a fixed strongly convex floor.
    feature_scale: the first layer's linear weights are this many times larger than
      ``init_scale`` would make them, and each first-layer unit's kink is placed through a
      random data point, so the units start as sharp features spread over the data.
    pieces: ``K > 0`` adds a soft max of ``K`` affine pieces (``_SoftMaxAffine``) which then
      carries the Gaussian guess: its pieces start as the guess's tangent planes at ``K`` of
      ``points``, and the ICNN's own quadratic starts at zero.

  Returns:
    ``(potential, variables)``: ``potential.apply(variables, x)`` is ``w(x)``; the
    trainable part is ``variables["params"]``, ``variables["consts"]`` stays fixed.
  """
  data = np.asarray(points, np.float64)
  d = data.shape[1]
  center = data.mean(0)
  scale = float(np.sqrt(np.mean(np.var(data, 0))))
  a = np.asarray(base_mean, np.float64).reshape(d)
  B = np.asarray(potential_matrix, np.float64).reshape(d, d)
  pot = ConvexPotential(dim=d, hidden=tuple(int(h) for h in hidden), activation=activation,
                        init_scale=float(init_scale), pieces=int(pieces))
  params = pot.init(key, jnp.zeros(d, jnp.float32))
  consts = {"center": jnp.asarray(center, jnp.float32), "scale": jnp.asarray(scale, jnp.float32),
            "floor_a": jnp.asarray(a, jnp.float32), "floor_B": jnp.asarray(alpha * B, jnp.float32)}
  # In z = (x - c) / s, grad_x [s^2 icnn(z)] = s grad_z icnn(z) must equal (1 - alpha) B (x - a):
  # grad_z icnn(z) = (1 - alpha) (s B z + B (c - a)) / s... times s / s^2 => lin = (1 - alpha) B,
  # offset = (1 - alpha) B (c - a) / s.
  lin = (1.0 - alpha) * B
  ev, V = np.linalg.eigh(lin)
  root = (V * np.sqrt(np.maximum(ev, 0.0))) @ V.T
  offset = (1.0 - alpha) * B @ (center - a) / scale
  quad = params["params"]["icnn"]["pos_def_potentials"]
  quad = {**quad,
          "quad_kernel": jnp.asarray(root[None], jnp.float32),
          "lin_kernel": jnp.asarray(offset[:, None], jnp.float32),
          "diag_kernel": jnp.zeros_like(quad["diag_kernel"]),
          "bias": jnp.zeros_like(quad["bias"])}
  icnn = dict(params["params"]["icnn"])
  # the output layer's own quadratic on x (ott initialises it to softplus(-2) |z|^2 / 2) starts
  # near zero too, so that the Gaussian guess is what the ICNN starts from
  last = f"w_xs_{len(hidden)}"
  icnn[last] = {**icnn[last], "diag_kernel": jnp.full_like(icnn[last]["diag_kernel"], -10.0)}
  if feature_scale != 1.0:
    first = icnn["w_xs_0"]
    w_lin = np.asarray(first["lin_kernel"], np.float64) * feature_scale        # [d, h]
    z = (data - center) / scale
    rows = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30))).integers(
        0, len(z), w_lin.shape[1])
    bias = -np.sum(z[rows] * w_lin.T, axis=1)                                    # [h]
    icnn["w_xs_0"] = {**first, "lin_kernel": jnp.asarray(w_lin, jnp.float32),
                      "bias": jnp.asarray(bias, jnp.float32)}
  icnn["pos_def_potentials"] = quad
  out = {"icnn": icnn}
  if pieces:
    # tangent planes of (1 - alpha) w0 at K of the points, in z = (x - c) / s and units of s^2
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)) + 1)
    xk = data[rng.integers(0, len(data), int(pieces))]                        # [K, d]
    slope = (1.0 - alpha) * (xk - a) @ B.T                                    # [K, d]
    value = 0.5 * (1.0 - alpha) * np.sum((xk - a) * ((xk - a) @ B.T), 1)     # [K]
    out["soft_max_affine"] = {
        **params["params"]["soft_max_affine"],
        "slopes": jnp.asarray(slope / scale, jnp.float32),
        "offsets": jnp.asarray((value + np.sum(slope * (center - xk), 1)) / scale**2, jnp.float32)}
    out["icnn"]["pos_def_potentials"] = {**quad, "quad_kernel": jnp.zeros_like(quad["quad_kernel"]),
                                         "lin_kernel": jnp.zeros_like(quad["lin_kernel"])}
    # the soft max grows only linearly: beyond the points, a quadratic wall (see ConvexPotential)
    radius = np.sqrt(np.max(np.sum((data - a) * ((data - a) @ B.T), 1)))
    consts["tail_B"] = jnp.asarray((1.0 - alpha) * B, jnp.float32)
    consts["tail_radius"] = jnp.asarray(radius, jnp.float32)
  return pot, {"params": out, "consts": consts}


def batch_grad(w, x):
  """Per-point gradients of a batched energy ``w: [b, d] -> [b]`` at ``x`` ``[b, d]``."""
  return jax.grad(lambda x: jnp.sum(w(x)))(x)


def batch_value_and_grad(w, x):
  """``(w(x) [b], grad w(x) [b, d])`` for a batched energy."""
  vals, vjp = jax.vjp(w, x)
  return vals, vjp(jnp.ones_like(vals))[0]


def batch_hessian(w, x):
  """Per-point Hessians ``[b, d, d]`` of a batched energy (``d`` JVPs of the gradient)."""
  g = lambda x: batch_grad(w, x)
  d = x.shape[-1]
  basis = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype)[:, None, :], (d,) + x.shape)
  cols = jax.vmap(lambda e: jax.jvp(g, (x,), (e,))[1])(basis)  # [d, b, d]
  return jnp.transpose(cols, (1, 2, 0))


def conjugate_argmax(w, x, y_init, *, max_iter=5, solver="newton", gtol=1e-5):
  """Batched ``grad w*(x) = argmax_y <x, y> - w(y)``, warm-started.

  Args:
    w: batched strongly convex energy ``[b, d] -> [b]``.
    x: ``[b, d]`` points to conjugate; y_init: ``[b, d]`` warm starts.
    max_iter: iterations (Newton) or the iteration cap (L-BFGS).
    solver: ``"newton"`` (damped Newton with backtracking on exact Hessians; fast for
      small d) or ``"lbfgs"`` (ott-jax's ``FenchelConjugateLBFGS`` vmapped over points;
      exact too, but about 10x slower than Newton on CPU, see docs/training.md).

  Returns:
    ``(y_star [b, d], w_star [b], grad_residual [b])`` where ``w_star = <x, y*> - w(y*)``
    and ``grad_residual = |grad w(y*) - x|``.
  """
  if solver == "lbfgs":
    ott_solver = ott_conjugate.FenchelConjugateLBFGS(
        gtol=gtol, max_iter=max_iter, max_linesearch_iter=20, linesearch_type="backtracking")
    y = jax.vmap(lambda xi, yi: ott_solver.solve(w, xi, x_init=yi).grad)(x, y_init)
  elif solver == "newton":
    y = _newton_conjugate(w, x, y_init, max_iter)
  else:
    raise ValueError(f"unknown conjugate solver {solver!r}; use 'newton' or 'lbfgs'")
  y = jax.lax.stop_gradient(y)
  vals, grads = batch_value_and_grad(w, y)
  resid = jnp.linalg.norm(grads - x, axis=-1)
  return y, jnp.sum(x * y, -1) - vals, resid


_BACKTRACK = (1.0, 0.5, 0.25, 0.1, 0.03)


def _newton_conjugate(w, x, y, n_iter: int):
  """Minimises ``f(y) = w(y) - <x, y>`` row-wise from ``y`` ``[b, d]`` by damped Newton."""
  ts = jnp.asarray(_BACKTRACK, y.dtype)
  b, d = y.shape

  def body(y, _):
    f0, g = batch_value_and_grad(w, y)
    f0 = f0 - jnp.sum(x * y, -1)
    g = g - x
    h = batch_hessian(w, y)
    reg = 1e-6 * jnp.trace(h, axis1=1, axis2=2)[:, None, None] / d * jnp.eye(d)
    step = jnp.linalg.solve(h + reg, g[..., None])[..., 0]
    cands = y[None] - ts[:, None, None] * step[None]            # [t, b, d]
    vals = jax.vmap(lambda c: w(c) - jnp.sum(x * c, -1))(cands)  # [t, b]
    ok = vals <= f0[None] - 1e-4 * ts[:, None] * jnp.sum(g * step, -1)[None]
    first = jnp.argmax(ok, axis=0)
    chosen = jnp.take_along_axis(cands, first[None, :, None], axis=0)[0]
    return jnp.where(jnp.any(ok, axis=0)[:, None], chosen, y), None

  y, _ = jax.lax.scan(body, y, None, length=n_iter)
  return y
