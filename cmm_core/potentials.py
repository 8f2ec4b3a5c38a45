"""Convex potentials (ott-jax ICNN) and their Legendre conjugates.

A potential is ``w(x) = s2 icnn((x - center) / scale) + (alpha / 2) (x - a)^T B (x - a)``:
ott-jax's ICNN in normalised coordinates (``scale [d]`` per coordinate, ``s2 = mean(scale^2)``),
initialised to a Gaussian map, plus a fixed strongly convex quadratic floor that keeps ``e^{-w}``
integrable and ``grad w*`` Lipschitz. For cmm on tables whose data and base lie far apart (columns in
grams next to millimetres), a separable part along the guess's axes carries the guess instead, each
axis in its own unit (``ConvexPotential.axis_hinges``). The normalisation is a reparametrisation
only: ``w`` is a function of the data as given, whatever its units and offsets (a column in minutes
next to one in hours, a table far from the origin).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ott.neural.networks import icnn as ott_icnn
from ott.neural.networks.layers import conjugate as ott_conjugate

from cmm_core import batching, compile_cache, potential_jet

__all__ = ["ConvexPotential", "PotentialEnergy", "Quadratic", "make_potential", "conjugate_argmax",
           "pcg", "ACTIVATIONS"]

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
  ``center [d]``, ``scale [d]`` (or ``[]``: one scale for every coordinate), ``floor_a [d]``, ``floor_B [d, d]`` (already times alpha), and
  with ``pieces > 0`` ``tail_B [d, d]``, ``tail_radius []`` (the wall beyond the points).

  Attributes:
    dim: data dimension ``d``.
    hidden: hidden widths of the ICNN.
    activation: one of ``ACTIVATIONS`` (convex, non-decreasing).
    init_scale: scale of the ICNN's random weights at initialisation (``init`` only: ``apply``
      ignores it, and jitted code takes the module through :func:`for_apply`).
    even: ``w(x) = (v(x) + v(-x)) / 2`` with ``v`` the potential above: an even potential (still
      convex), whose gradient is odd, for targets symmetric under ``x -> -x`` (the Ising model).
    radial: ``w(x) = (v(r) + v(-r)) / 2`` with ``r = sqrt(|x|^2 + eps^2)`` (const ``radial_eps
      []``) and ``v`` the potential above on one input: even and convex in ``r``, so non-decreasing
      for ``r >= 0``, and ``w`` is convex and invariant under every rotation about the origin
      (``grad w*`` commutes with them), for targets such as concentric rings. The ``consts`` other
      than ``radial_eps`` are then those of the 1-D potential (:func:`make_potential`).
    axis_hinges: ``H > 0`` adds a separable part along the principal axes ``q_k`` of the guess
      (eigenvalues ``beta_k``): ``sum_k 1/2 gamma_k beta_k (q_k . x - a_k)^2 + sum_{k, j} beta_k
      s_kj^2 (c_kj softplus((q_k . x - t_kj) / s_kj) + c'_kj softplus((t_kj - q_k . x) / s_kj))``
      with ``gamma_k, c_kj, c'_kj >= 0`` trained (params ``axis_quadratic [d]``, ``axis_hinges
      [d, H]``, ``axis_hinges_falling [d, H]``, through softplus; each knot bends both ways, so the
      sign of ``q_k`` does not matter), hinges at
      ``t_kj`` of widths ``s_kj`` (consts ``axes [d, d]``, ``axis_beta [d]``, ``axis_center [d]``,
      ``hinge_t [d, H]``, ``hinge_s [d, H]``): each axis's curvature in its own unit, where one
      ICNN with one output unit cannot serve columns in very different units
      (:func:`make_potential`). On an axis where the data and the base do not overlap, the
      quadratic is split into one curvature per region (``gamma_k``, ``gamma'_k``: param
      ``axis_quadratic_data [d]``) and a ramp across the gap that carries the translation
      (:meth:`_gap`; consts ``gap_* [d]``).
  """

  dim: int
  hidden: Sequence[int]
  activation: str
  init_scale: float = 0.1
  pieces: int = 0
  even: bool = False
  axis_hinges: int = 0
  radial: bool = False

  @nn.compact
  def __call__(self, x):
    if self.radial:
      eps = self.variable("consts", "radial_eps", lambda: jnp.asarray(1e-3, jnp.float32)).value
      x = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps**2)   # [..., 1]
    d = 1 if self.radial else self.dim
    self.variable("consts", "center", jnp.zeros, (d,))
    scale = self.variable("consts", "scale", jnp.ones, (d,)).value
    if self.has_variable("consts", "units"):  # the output's unit, s2
      units = self.get_variable("consts", "units")
    else:  # files saved before "units" existed: one scalar scale, s2 = scale^2
      units = jnp.mean(jnp.broadcast_to(scale, (d,)) ** 2)
    self.variable("consts", "floor_a", jnp.zeros, (d,))
    self.variable("consts", "floor_B", jnp.eye, d)
    icnn = ott_icnn.ICNN(
        dim_data=d, dim_hidden=tuple(self.hidden), pos_weights=True,
        # the final quadratic has full rank: make_potential sets it to the Gaussian guess
        ranks=(1,) * (len(self.hidden) + 1) + (d,),
        act_fn=ACTIVATIONS[self.activation],
        init_fn=_scaled_lecun(self.init_scale),
        name="icnn")
    affine = _SoftMaxAffine(self.pieces, d, name="soft_max_affine") if self.pieces else None
    if self.axis_hinges:
      self.variable("consts", "axes", jnp.eye, d)
      self.variable("consts", "axis_beta", jnp.ones, (d,))
      self.variable("consts", "hinge_t", jnp.zeros, (d, self.axis_hinges))
      self.variable("consts", "hinge_s", jnp.ones, (d, self.axis_hinges))
      self.variable("consts", "axis_center", jnp.zeros, (d,))
      self.param("axis_hinges", nn.initializers.constant(_HINGE_START), (d, self.axis_hinges))
      if self.is_initializing() or self.has_variable("params", "axis_hinges_falling"):
        # files saved before the falling family existed have the rising one only
        self.param("axis_hinges_falling", nn.initializers.constant(_HINGE_START),
                   (d, self.axis_hinges))
      self.param("axis_quadratic", nn.initializers.zeros, (d,))
      if self.is_initializing() or self.has_variable("consts", "gap_on"):
        # files saved before the gap existed have one quadratic per axis
        for name in _GAP_CONSTS:
          self.variable("consts", name, jnp.zeros, (d,))
        self.param("axis_quadratic_data", nn.initializers.zeros, (d,))
    if self.even or self.radial:
      # both signs in one evaluation: one copy of the potential's graph (half the compilation)
      both = self._value(jnp.stack([x, -x]), icnn, affine, units)
      return 0.5 * (both[0] + both[1])
    return self._value(x, icnn, affine, units)

  def _hinges(self, x):
    """The separable part along the guess's axes (``axis_hinges``): ``[..., d] -> [...]``."""
    t, s = self.get_variable("consts", "hinge_t"), self.get_variable("consts", "hinge_s")
    beta = self.get_variable("consts", "axis_beta")
    c = jax.nn.softplus(self.get_variable("params", "axis_hinges"))          # [d, H]
    u = x @ self.get_variable("consts", "axes")                               # [..., d]
    act = jax.nn.softplus((u[..., None] - t) / s) * (c * beta[:, None] * s**2)
    if self.has_variable("params", "axis_hinges_falling"):
      # each knot bends both ways: which way q_k points (an eigenvector's sign) must not matter
      c_fall = jax.nn.softplus(self.get_variable("params", "axis_hinges_falling"))
      act = act + jax.nn.softplus((t - u[..., None]) / s) * (c_fall * beta[:, None] * s**2)
    gamma = jax.nn.softplus(self.get_variable("params", "axis_quadratic"))      # [d]
    du = u - self.get_variable("consts", "axis_center")
    if not self.has_variable("consts", "gap_on"):  # files saved before the gap existed
      return jnp.sum(act, axis=(-2, -1)) + 0.5 * jnp.sum(gamma * beta * du**2, -1)
    return jnp.sum(act, axis=(-2, -1)) + jnp.sum(self._gap(du, gamma, beta), -1)

  def _gap(self, du, gamma, beta):
    """Per axis ``[..., d]``: on an axis where the base and the data are apart (``gap_on``), the
    guess's curvature in each region (``gamma_k beta_k`` around the base's centre, ``gamma'_k
    beta_k`` around the data's, each quadratic but for a straight continuation from its region's
    edge towards the other region), the translation between them carried by a ramp across the gap,
    and a wall beyond the data's far edge; elsewhere ``1/2 gamma_k beta_k du_k^2``. The ramp's rise
    and a linear term are tied to ``gamma, gamma'`` so that ``grad`` of this part stays 0 at the
    base's centre and the guess's at the data's, whatever the curvatures: a curvature in one region
    does not move the other region (docs/training.md)."""
    c = functools.partial(self.get_variable, "consts")
    on, s = c("gap_on"), c("gap_sign")
    m, d_base, d_data = c("gap_data_center"), c("gap_base_half"), c("gap_data_half")
    gamma_d = jax.nn.softplus(self.get_variable("params", "axis_quadratic_data"))
    g_base, g_data = gamma * beta, gamma_d * beta
    # quadratic, but linear beyond h towards the other region (direction t): the tails keep it
    huber = lambda x, h, t: jnp.where(t * x <= h, 0.5 * x**2, h * (t * x - 0.5 * h))
    q = g_base * huber(du, d_base, s) + g_data * huber(du - m, d_data, -s)
    at_base = g_data * jnp.clip(-m, -d_data, d_data)       # the Huber parts' slopes at du = 0
    at_data = g_base * jnp.clip(m, -d_base, d_base)        # ... and at du = m
    lin = -at_base
    rise = jnp.maximum(s * (c("gap_slope") - (at_data - at_base)), 0.0)  # >= 0: convex
    # the ramp's slope rises evenly across the gap, from the base's edge to the data's: a point
    # between the regions is mapped with at least the guess's curvature, not the floor's
    length = c("gap_length")
    y = jnp.clip(s * du - d_base, 0.0, length)
    ramp_val = rise * (0.5 * y**2 / length + jnp.maximum(s * du - d_base - length, 0.0))
    # beyond the data's far edge, a wall of the guess's curvature: the data's own curvature may
    # move into the hinges (clusters), and the tails must not stream out with it
    wall = 0.5 * c("gap_wall") * jnp.maximum(s * (du - m) - d_data, 0.0) ** 2
    split = q + lin * du + ramp_val + wall
    return jnp.where(on > 0, split, 0.5 * gamma * beta * du**2)

  def _value(self, x, icnn, affine, units):
    center = self.get_variable("consts", "center")
    scale = self.get_variable("consts", "scale")
    floor_a = self.get_variable("consts", "floor_a")
    floor_B = self.get_variable("consts", "floor_B")
    z = (x - center) / scale
    diff = x - floor_a
    floor = 0.5 * jnp.sum(diff * (diff @ floor_B.T), axis=-1)
    out = icnn(z).reshape(floor.shape)
    if affine is not None:
      out = out + affine(z).reshape(floor.shape)
      # a soft max of affine pieces grows only linearly, so e^{-w} would have wide tails that
      # grad w* sends far out (slope 1 / alpha); a wall 1/2 (|x - a|_B - r)_+^2 beyond the
      # points (r: their largest B-radius) keeps the map's slope there near the Gaussian guess's
      if self.has_variable("consts", "tail_B"):  # set by make_potential
        tail_B = self.get_variable("consts", "tail_B")
        tail_radius = self.get_variable("consts", "tail_radius")
        radius = jnp.sqrt(jnp.maximum(jnp.sum(diff * (diff @ tail_B.T), axis=-1), 1e-12))
        floor = floor + 0.5 * jnp.maximum(radius - tail_radius, 0.0) ** 2
    out = out * units + floor
    if self.axis_hinges:
      out = out + self._hinges(x)
    return out


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


_GAP_CONSTS = ("gap_on", "gap_sign", "gap_data_center", "gap_base_half", "gap_data_half",
               "gap_slope", "gap_length", "gap_wall")
"""Per-axis constants ``[d]`` of the separable part's gap (``ConvexPotential._gap``), in the axis's
coordinate relative to the base's centre."""

# the hinges' weights c_kj start at _HINGE_START_C (make_potential starts a hinge facing the other
# region lower, _hinge_consts); the module's own init at its softplus preimage
_HINGE_START_C = 0.01
_HINGE_START = float(np.log(np.expm1(_HINGE_START_C)))
AXIS_HINGES = 16          # knots per axis when make_potential adds them, half per region
FAR_APART_RATIO = 10.0
"""Two point sets are far apart when, in some coordinate, their joint spread is more than this many
times the smaller of their own spreads. cmm's data and its Gaussian guess's base: penguins as given
122x (body mass), wine 23x, rivers 17.5x; Old Faithful as given 6.3x (waiting time), which fits
better with the soft max of affine pieces than with the axis hinges (energy distance 0.03 against
0.76 of a Gaussian's); the digits 3.4x; every standardised table and 2D toy at most 1.1x
(docs/training.md)."""


def regions_far_apart(first: np.ndarray, second: np.ndarray) -> bool:
  """True when the point sets ``[n, d]`` and ``[m, d]`` lie too far apart, or differ too much in
  spread, for one input normalisation to serve both (:data:`FAR_APART_RATIO`)."""
  joint = np.concatenate([first, second]).std(0)
  own = np.minimum(first.std(0), second.std(0))
  return bool(np.any(joint > FAR_APART_RATIO * np.maximum(own, 1e-12 * (joint + 1e-30))))


RANDOM_PART_RATIO = 1.0
"""The most the ICNN's random start may move ``grad w`` from the Gaussian guess: RMS of the
difference over the points, relative to the RMS spread of the guess's gradient there (standardised
data starts near 1 and the 2D toys near 0.5 with ``init_scale=0.5``, and fit well from there)."""


def make_potential(points: np.ndarray, base_mean: np.ndarray, potential_matrix: np.ndarray, key, *,
                   hidden=(64, 64), activation="softplus", alpha=0.05, init_scale=0.1,
                   feature_scale=1.0, pieces=0, extra_points=None,
                   max_ratio=RANDOM_PART_RATIO, even=False, radial=False):
  """Builds a ConvexPotential and parameters whose gradient starts near ``x -> B (x - a)``.

  ``init_scale`` is lowered where needed so that the random start stays within
  ``RANDOM_PART_RATIO`` of the guess (:func:`start_ratio`): data far from the origin, or with
  columns in very different units, would otherwise start from a potential whose random part
  dwarfs the guess and whose base e^{-w} is nowhere near it.

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
      random point, so the units start as sharp features spread over the points.
    pieces: ``K > 0`` adds a soft max of ``K`` affine pieces (``_SoftMaxAffine``) which then
      carries the Gaussian guess: its pieces start as the guess's tangent planes at ``K`` of the
      points, and the ICNN's own quadratic starts at zero.
    extra_points: ``[m, d]`` or None: a second region where the potential is evaluated too
      (cmm's ``w`` is evaluated at the data and at its base samples, which lie elsewhere when
      the data are far from the origin). The normalisation covers both regions, and half of the
      pieces and kinks are placed in each, so that the guess holds in both.
    max_ratio: the most the random start may move ``grad w``, relative to the guess
      (:func:`start_ratio`; ``RANDOM_PART_RATIO`` by default); None: ``init_scale`` as given,
      unchecked.
    even: an even potential (``ConvexPotential.even``), for a guess centred at the origin.
    radial: a potential of ``|x|`` only (``ConvexPotential.radial``), for a target invariant under
      rotations about the origin: the 1-D potential starts from the isotropic guess
      ``1/2 b |x|^2``, ``b`` the mean eigenvalue of ``B`` (``base_mean`` is taken as the origin),
      with its kinks and pieces spread evenly over ``[-R, R]``, ``R`` the points' largest radius.

  Returns:
    ``(potential, variables)``: ``potential.apply(variables, x)`` is ``w(x)``; the
    trainable part is ``variables["params"]``, ``variables["consts"]`` stays fixed;
    ``potential.init_scale`` is the scale used.
  """
  regions = [np.asarray(points, np.float64)]
  if extra_points is not None:
    regions.append(np.asarray(extra_points, np.float64))
  if radial:
    build, guess = _radial_build(regions, potential_matrix, key, hidden=hidden,
                                 activation=activation, alpha=alpha, feature_scale=feature_scale,
                                 pieces=pieces)
  else:
    far = len(regions) == 2 and regions_far_apart(*regions)
    build = functools.partial(_make_potential, points, base_mean, potential_matrix, key,
                              hidden=hidden, activation=activation, alpha=alpha,
                              feature_scale=feature_scale, pieces=0 if far else pieces,
                              extra_points=extra_points, even=even,
                              axis_hinges=AXIS_HINGES if far else 0)
    guess = (base_mean, potential_matrix)
  pot, variables = build(init_scale=init_scale)
  # the random part is close to linear in init_scale: a few rescalings settle it
  for _ in range(3 if max_ratio is not None else 0):
    ratio = start_ratio(pot, variables, regions, *guess)
    if not ratio > max_ratio:  # also stops on NaN
      break
    init_scale = pot.init_scale * max(max_ratio / ratio, 0.01)
    pot, variables = build(init_scale=init_scale)
  return pot, variables


def _radial_build(regions, potential_matrix, key, **settings):
  """``(build, (a, B))`` for ``make_potential(..., radial=True)``: ``build(init_scale=...)`` makes
  the 1-D potential of the radii ``+-|x|`` from the guess ``1/2 b r^2`` and turns it into a
  ``ConvexPotential.radial`` on ``d`` inputs; ``(a, B)`` is that guess in ``d`` dimensions."""
  d = regions[0].shape[1]
  radii = np.concatenate([np.sqrt(np.sum(r**2, 1)) for r in regions])
  # kinks and pieces evenly over [-R, R], R the largest radius: a rough sample of concentric rings
  # (MALA from N(0, I)) under-fills the outer rings, and pieces placed at its quantiles left the
  # outer ring too few to shape it
  signed = np.linspace(-1.0, 1.0, 2 * len(radii))[:, None] * radii.max()    # [2 n, 1]
  b = float(np.trace(np.asarray(potential_matrix, np.float64))) / d
  eps = jnp.asarray(1e-3 * max(float(np.median(radii)), 1e-12), jnp.float32)

  def build(init_scale):
    pot, variables = _make_potential(signed, np.zeros(1), np.full((1, 1), b), key,
                                     init_scale=init_scale, extra_points=None, **settings)
    return (pot.clone(dim=d, radial=True),
            {**variables, "consts": {**variables["consts"], "radial_eps": eps}})

  return build, (np.zeros(d), b * np.eye(d))


def start_ratio(pot, variables, regions, base_mean, potential_matrix, n: int = 512) -> float:
  """How far ``grad w`` starts from the guess ``B (x - a)``: over each point set of ``regions``
  (the first ``n`` rows), RMS of the difference over RMS of the guess's spread; the worst region."""
  a = np.asarray(base_mean, np.float64).reshape(-1)
  B = np.asarray(potential_matrix, np.float64)
  worst = 0.0
  for pts in regions:
    pts = pts[:n]
    # every region padded to n rows and the module taken as apply sees it: one compilation
    padded = jnp.asarray(batching.pad_rows(pts, n), jnp.float32)
    grad = np.asarray(_jit_grad(for_apply(pot), variables, padded))[:len(pts)]
    guess = (pts - a) @ B.T
    spread = np.sqrt(np.mean((guess - guess.mean(0)) ** 2))
    worst = max(worst, float(np.sqrt(np.mean((grad - guess) ** 2)) / max(spread, 1e-12)))
  return worst


@functools.partial(jax.jit, static_argnums=0, compiler_options=compile_cache.ONE_OFF)
def _jit_grad(pot, variables, x):
  """``grad w(x)`` ``[b, d]`` in one compiled program (op by op, init compiled ~250 kernels)."""
  return batch_grad(PotentialEnergy(pot, variables), x)


def for_apply(pot: ConvexPotential) -> ConvexPotential:
  """``pot`` with ``init_scale`` (read by ``init`` only) at its default. Jitted functions take the
  module as a static argument: fits whose weights started at different scales (``make_potential``
  rescales them per data set) then share their compiled programs."""
  return pot.clone(init_scale=ConvexPotential.init_scale)


@functools.partial(jax.jit, static_argnums=(0, 2), compiler_options=compile_cache.ONE_OFF)
def _jit_init(pot, key, d: int):
  """``(pot.init(...), a seed [])``: the parameters and a seed for the first layer's anchors,
  in one program compiled once per potential's settings."""
  return pot.init(key, jnp.zeros(d, jnp.float32)), jax.random.randint(key, (), 0, 2**30)


def _make_potential(points, base_mean, potential_matrix, key, *, hidden, activation, alpha,
                    init_scale, feature_scale, pieces, extra_points, even=False, axis_hinges=0):
  """One build of :func:`make_potential` at the given ``init_scale``."""
  data = np.asarray(points, np.float64)
  d = data.shape[1]
  regions = [data] if extra_points is None else [data, np.asarray(extra_points, np.float64)]
  every = np.concatenate(regions)
  center = every.mean(0)
  scale = np.sqrt(np.maximum(every.var(0), 1e-12))   # [d]: one unit per coordinate
  a = np.asarray(base_mean, np.float64).reshape(d)
  B = np.asarray(potential_matrix, np.float64).reshape(d, d)
  # the output's unit s2: the guess's curvature in z, D B D / s2, then has a unit mean diagonal, so
  # the ICNN's random hidden part (``init_scale``) is as small next to the guess whatever the units
  units = float(np.mean(scale**2 * np.diag(B)))
  pot = ConvexPotential(dim=d, hidden=tuple(int(h) for h in hidden), activation=activation,
                        init_scale=float(init_scale), pieces=int(pieces), even=bool(even),
                        axis_hinges=int(axis_hinges))
  params, seed = _jit_init(pot, key, d)
  consts = {"center": jnp.asarray(center, jnp.float32), "scale": jnp.asarray(scale, jnp.float32),
            "units": jnp.asarray(units, jnp.float32),
            "floor_a": jnp.asarray(a, jnp.float32), "floor_B": jnp.asarray(alpha * B, jnp.float32)}
  # With x = c + D z (D = diag(scale)), grad_x [s2 q(z)] = s2 D^{-1} grad_z q must equal
  # (1 - alpha) B (x - a) for q(z) = 1/2 z^T Q z + l^T z: Q = (1 - alpha) D B D / s2 and
  # l = (1 - alpha) D B (c - a) / s2.
  D = np.diag(scale)
  lin = (1.0 - alpha) * D @ B @ D / units
  ev, V = np.linalg.eigh(0.5 * (lin + lin.T))
  root = (V * np.sqrt(np.maximum(ev, 0.0))) @ V.T
  offset = (1.0 - alpha) * D @ B @ (center - a) / units
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
  seed = int(seed)
  if feature_scale != 1.0:
    first = icnn["w_xs_0"]
    w_lin = np.asarray(first["lin_kernel"], np.float64) * feature_scale        # [d, h]
    anchors = _spread(regions, w_lin.shape[1], np.random.default_rng(seed))
    bias = -np.sum(((anchors - center) / scale) * w_lin.T, axis=1)            # [h]
    icnn["w_xs_0"] = {**first, "lin_kernel": jnp.asarray(w_lin, jnp.float32),
                      "bias": jnp.asarray(bias, jnp.float32)}
  icnn["pos_def_potentials"] = quad
  out = {"icnn": icnn}
  if axis_hinges:
    # the separable part carries the guess's (1 - alpha) quadratic, per axis, trained at Adam's
    # full steps; the ICNN's own quadratic starts at zero
    hinge_consts, rising, falling = _hinge_consts(regions, B, int(axis_hinges))
    out["axis_hinges"] = jnp.asarray(np.log(np.expm1(rising)), jnp.float32)
    out["axis_hinges_falling"] = jnp.asarray(np.log(np.expm1(falling)), jnp.float32)
    out["axis_quadratic"] = jnp.full((d,), np.log(np.expm1(1.0 - alpha)), jnp.float32)
    icnn["pos_def_potentials"] = {**quad, "quad_kernel": jnp.zeros_like(quad["quad_kernel"]),
                                  "lin_kernel": jnp.zeros_like(quad["lin_kernel"])}
    # the output layer's |z|^2 term at softplus(-10) = 4.5e-5 still moves grad w by ~10% of the
    # guess in the narrow columns of a table in mixed units (units set by the wide ones)
    icnn[last] = {**icnn[last], "diag_kernel": jnp.full_like(icnn[last]["diag_kernel"], -20.0)}
    consts.update(hinge_consts)
    consts["axis_center"] = jnp.asarray(a @ np.asarray(consts["axes"], np.float64), jnp.float32)
    consts.update(_gap_consts(regions, a, np.asarray(consts["axes"], np.float64),
                              np.asarray(consts["axis_beta"], np.float64), alpha))
    out["axis_quadratic_data"] = out["axis_quadratic"]
  if pieces:
    # tangent planes of (1 - alpha) w0 at K of the points: s2 (v_k^T z + b_k) equals
    # value_k + slope_k^T (x - x_k), so v_k = D slope_k / s2, b_k = (value_k + slope_k^T (c - x_k)) / s2
    xk = _spread(regions, int(pieces), np.random.default_rng(seed + 1))     # [K, d]
    slope = (1.0 - alpha) * (xk - a) @ B.T                                    # [K, d]
    value = 0.5 * (1.0 - alpha) * np.sum((xk - a) * ((xk - a) @ B.T), 1)     # [K]
    out["soft_max_affine"] = {
        **params["params"]["soft_max_affine"],
        "slopes": jnp.asarray(slope * scale / units, jnp.float32),
        "offsets": jnp.asarray((value + np.sum(slope * (center - xk), 1)) / units, jnp.float32)}
    out["icnn"]["pos_def_potentials"] = {**quad, "quad_kernel": jnp.zeros_like(quad["quad_kernel"]),
                                         "lin_kernel": jnp.zeros_like(quad["lin_kernel"])}
    # the soft max grows only linearly: beyond the points, a quadratic wall (see ConvexPotential)
    radius = np.sqrt(np.max(np.sum((every - a) * ((every - a) @ B.T), 1)))
    consts["tail_B"] = jnp.asarray((1.0 - alpha) * B, jnp.float32)
    consts["tail_radius"] = jnp.asarray(radius, jnp.float32)
  return pot, {"params": out, "consts": consts}


def _hinge_consts(regions, B: np.ndarray, hinges: int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Where the separable part's hinges sit (``ConvexPotential.axis_hinges``): along each principal
  axis ``q_k`` of ``B``, an equal share at evenly spaced quantiles of each region's projections,
  each of the width of its region's spread there over the share; ``beta_k`` the guess's curvature.

  Returns the consts and the starting weights ``c`` of the rising and the falling hinges
  ``[d, H]``: ``_HINGE_START_C``, but a hinge whose rising side faces another region adds a slope
  there of ``c beta s`` (``s`` its width), so it starts at ``_HINGE_START_C`` times that region's
  width over its own, where that is smaller: no hinge tilts the other region's start more than the
  other region's own hinges would (body mass's hinges, 100 g wide, facing a base 1 g wide)."""
  beta, axes = np.linalg.eigh(0.5 * (B + B.T))
  share = np.array_split(np.arange(hinges), len(regions))
  proj = [pts @ axes for pts in regions]                                        # [n, d] each
  t, s = [], []
  for u, idx in zip(proj, share):
    q = (np.arange(len(idx)) + 0.5) / len(idx)
    t.append(np.quantile(u, q, axis=0).T)                                       # [d, h]
    s.append(np.repeat(np.maximum(u.std(0), 1e-12)[:, None] / len(idx), len(idx), 1))
  t, s = np.concatenate(t, 1), np.concatenate(s, 1)                             # [d, H]
  rising, falling = np.full_like(t, _HINGE_START_C), np.full_like(t, _HINGE_START_C)
  for r, (u, idx) in enumerate(zip(proj, share)):
    for other, (v, jdx) in enumerate(zip(proj, share)):
      if other == r:
        continue
      m = v.mean(0)[:, None]                                                    # [d, 1]
      cut = _HINGE_START_C * np.minimum(1.0, s[:, jdx[:1]] / s[:, idx])         # [d, h]
      rising[:, idx] = np.where(m > t[:, idx], np.minimum(rising[:, idx], cut), rising[:, idx])
      falling[:, idx] = np.where(m < t[:, idx], np.minimum(falling[:, idx], cut), falling[:, idx])
  consts = {"axes": jnp.asarray(axes, jnp.float32), "axis_beta": jnp.asarray(beta, jnp.float32),
            "hinge_t": jnp.asarray(t, jnp.float32), "hinge_s": jnp.asarray(s, jnp.float32)}
  return consts, rising, falling


def _gap_consts(regions, a: np.ndarray, axes: np.ndarray, beta: np.ndarray, alpha: float) -> dict:
  """The separable part's gap (``ConvexPotential._gap``) between the data ``regions[0]`` and the
  base ``regions[-1]`` around ``a``: along each axis ``q_k`` where the two regions' extents (their
  largest distance from their centres) do not overlap, a ramp across the gap carries the guess's
  slope ``(1 - alpha) beta_k m_k`` at the data's centre ``m_k`` (relative to the base's centre);
  beyond the data's far edge, a wall of curvature ``(1 - alpha) beta_k``."""
  data, base = regions[0] @ axes, regions[-1] @ axes                          # [n, d], [m, d]
  centre = a @ axes
  m = data.mean(0) - centre
  half_data = np.max(np.abs(data - data.mean(0)), axis=0)
  half_base = np.max(np.abs(base - centre), axis=0)
  gap = np.abs(m) - half_data - half_base
  on = gap > 0
  sign = np.where(m >= 0, 1.0, -1.0)
  consts = {"gap_on": on.astype(np.float64), "gap_sign": sign, "gap_data_center": m,
            "gap_base_half": half_base, "gap_data_half": half_data,
            "gap_slope": (1.0 - alpha) * beta * m,
            "gap_length": np.where(on, gap, 1.0), "gap_wall": (1.0 - alpha) * beta}
  return {k: jnp.asarray(v, jnp.float32) for k, v in consts.items()}


def _spread(regions, k: int, rng) -> np.ndarray:
  """``k`` rows ``[k, d]`` drawn from the point sets ``regions``, an equal share from each."""
  share = np.array_split(np.arange(k), len(regions))
  return np.concatenate([r[rng.integers(0, len(r), len(idx))] for r, idx in zip(regions, share)])


class PotentialEnergy:
  """``w = pot.apply(variables, .)`` as a batched energy ``[b, d] -> [b]``.

  :func:`batch_grad`, :func:`batch_value_and_grad`, :func:`batch_hessian` and
  :func:`batch_value_grad_hessian` take its derivatives in closed form (``potential_jet``) where
  that is cheaper than JAX's: the Hessian up to ``d = JET_HESSIAN_MAX_DIM``, the gradient up to
  ``d = JET_GRADIENT_MAX_DIM`` (the closed form carries ``[b, width, d]`` per layer, reverse mode
  ``[b, width]``)."""

  def __init__(self, pot: ConvexPotential, variables):
    self.pot, self.variables = pot, variables

  def __call__(self, x):
    return self.pot.apply(self.variables, x)

  def jet_for(self, x, hess: bool) -> bool:
    """Whether the closed form serves ``x [b, d]`` (``hess``: for the Hessian)."""
    most = JET_HESSIAN_MAX_DIM if hess else JET_GRADIENT_MAX_DIM
    return x.shape[-1] <= most and potential_jet.supported(self.pot)


JET_HESSIAN_MAX_DIM = 16
"""The closed form carries ``[b, width, d, d]`` per layer where JAX's forward-over-reverse Hessian
carries ``d`` tangents of ``[b, width]``: similar arithmetic, ``d`` times the memory. Measured faster
on Ising L = 4 (d = 16) and slower on L = 8 (d = 64: 50 steps of cmm's energy route, compilation
included, 150 s against JAX's 108 s; docs/speed.md)."""
JET_GRADIENT_MAX_DIM = 4
"""The closed-form gradient carries ``[b, width, d]`` per layer, reverse mode ``[b, width]``: it
pays in few dimensions only (MALA's two steps in 2D compiled 2.1 s against 2.7 s, same run time)."""


def batch_grad(w, x):
  """Per-point gradients of a batched energy ``w: [b, d] -> [b]`` at ``x`` ``[b, d]``."""
  if isinstance(w, PotentialEnergy) and w.jet_for(x, False):
    return potential_jet.value_and_grad(w.pot, w.variables, x)[1]
  return jax.grad(lambda x: jnp.sum(w(x)))(x)


def batch_value_and_grad(w, x):
  """``(w(x) [b], grad w(x) [b, d])`` for a batched energy."""
  if isinstance(w, PotentialEnergy) and w.jet_for(x, False):
    return potential_jet.value_and_grad(w.pot, w.variables, x)
  vals, vjp = jax.vjp(w, x)
  return vals, vjp(jnp.ones_like(vals))[0]


def batch_value_grad_hessian(w, x):
  """``(w(x) [b], grad w(x) [b, d], Hess w(x) [b, d, d])`` for a batched energy."""
  if isinstance(w, PotentialEnergy) and w.jet_for(x, True):
    return potential_jet.value_grad_hessian(w.pot, w.variables, x)
  return (*batch_value_and_grad(w, x), batch_hessian(w, x))


def batch_hessian(w, x):
  """Per-point Hessians ``[b, d, d]`` of a batched energy (``d`` JVPs of the gradient, or the
  closed form of a :class:`PotentialEnergy`)."""
  if isinstance(w, PotentialEnergy) and w.jet_for(x, True):
    return potential_jet.value_grad_hessian(w.pot, w.variables, x)[2]
  g = lambda x: batch_grad(w, x)
  d = x.shape[-1]
  basis = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype)[:, None, :], (d,) + x.shape)
  cols = jax.vmap(lambda e: jax.jvp(g, (x,), (e,))[1])(basis)  # [d, b, d]
  return jnp.transpose(cols, (1, 2, 0))


def conjugate_argmax(w, x, y_init, *, max_iter=5, solver="newton", gtol=1e-5, cg_iters=8,
                     precond=None):
  """Batched ``grad w*(x) = argmax_y <x, y> - w(y)``, warm-started.

  Args:
    w: batched strongly convex energy ``[b, d] -> [b]``.
    x: ``[b, d]`` points to conjugate; y_init: ``[b, d]`` warm starts.
    max_iter: iterations (Newton, Newton-CG) or the iteration cap (L-BFGS).
    solver: ``"newton"`` (damped Newton with backtracking on exact Hessians: ``d`` Hessian-vector
      products and a dense ``d x d`` solve per point and iteration; fast for small d; for a radial
      :class:`PotentialEnergy`, a bracketed 1-D Newton along ``x / |x|`` instead, at least
      ``_RADIAL_MIN_ITERS`` iterations: :func:`_radial_conjugate`),
      ``"newton_cg"`` (the same damped Newton, its step from ``cg_iters`` preconditioned
      conjugate-gradient iterations on Hessian-vector products: matrix-free, ``O(cg_iters d^2)``
      per point for a potential whose evaluation is ``O(d^2)``; for high d) or ``"lbfgs"``
      (ott-jax's ``FenchelConjugateLBFGS`` vmapped over points; exact too, but about 10x slower
      than Newton on CPU, see docs/training.md).
    gtol: L-BFGS's gradient tolerance.
    cg_iters: conjugate-gradient iterations per Newton step (``"newton_cg"``).
    precond: ``"newton_cg"``: None or ``M [d, d]`` (symmetric positive definite), a guess of the
      inverse Hessian of ``w`` (e.g. the inverse of a Gaussian guess's curvature) that
      preconditions CG; with a good guess one CG iteration is already a good Newton step.

  Returns:
    ``(y_star [b, d], w_star [b], grad_residual [b])`` where ``w_star = <x, y*> - w(y*)``
    and ``grad_residual = |grad w(y*) - x|``.
  """
  if solver == "lbfgs":
    ott_solver = ott_conjugate.FenchelConjugateLBFGS(
        gtol=gtol, max_iter=max_iter, max_linesearch_iter=20, linesearch_type="backtracking")
    y = jax.vmap(lambda xi, yi: ott_solver.solve(w, xi, x_init=yi).grad)(x, y_init)
  elif solver == "newton" and isinstance(w, PotentialEnergy) and w.pot.radial:
    y = _radial_conjugate(w, x, y_init, max(_RADIAL_MIN_ITERS, 3 * max_iter))
  elif solver == "newton":
    y = _newton_conjugate(w, x, y_init, max_iter)
  elif solver == "newton_cg":
    y = _newton_conjugate(w, x, y_init, max_iter, cg_iters=cg_iters, precond=precond)
  else:
    raise ValueError(f"unknown conjugate solver {solver!r}; use 'newton', 'newton_cg' or 'lbfgs'")
  y = jax.lax.stop_gradient(y)
  vals, grads = batch_value_and_grad(w, y)
  resid = jnp.linalg.norm(grads - x, axis=-1)
  return y, jnp.sum(x * y, -1) - vals, resid


_BACKTRACK = (1.0, 0.5, 0.25, 0.1, 0.03)
# tried only when a row accepts none of the above (dense solver): a Newton step from where w is
# nearly flat (between the rings of a radial potential, Hess w ~ 1/500 of its value on them)
# overshoots by more than 1 / 0.03, and such a row never moved again (docs/energies.md, session 51)
_BACKTRACK_SHORT = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def _newton_conjugate(w, x, y, n_iter: int, cg_iters: int = 0, precond=None):
  """Minimises ``f(y) = w(y) - <x, y>`` row-wise from ``y`` ``[b, d]`` by damped Newton.

  ``cg_iters = 0``: the Newton step by a dense solve with the exact Hessian; ``cg_iters > 0``:
  by that many preconditioned CG iterations on Hessian-vector products (:func:`pcg`). The step is
  the longest of ``_BACKTRACK``'s fractions that decreases ``f`` enough (Armijo); with the dense
  solver, where no row's fraction does, ``_BACKTRACK_SHORT``'s too.
  """
  b, d = y.shape

  def backtrack(y, f0, g, step, fractions):
    ts = jnp.asarray(fractions, y.dtype)
    cands = y[None] - ts[:, None, None] * step[None]            # [t, b, d]
    vals = jax.vmap(lambda c: w(c) - jnp.sum(x * c, -1))(cands)  # [t, b]
    ok = vals <= f0[None] - 1e-4 * ts[:, None] * jnp.sum(g * step, -1)[None]
    first = jnp.argmax(ok, axis=0)   # the longest step that decreases f enough
    chosen = jnp.take_along_axis(cands, first[None, :, None], axis=0)[0]
    moved = jnp.any(ok, axis=0)
    return jnp.where(moved[:, None], chosen, y), moved

  def body(y, _):
    f0, g = batch_value_and_grad(w, y)
    f0 = f0 - jnp.sum(x * y, -1)
    g = g - x
    if cg_iters:
      # rows are independent, so one batched JVP of the gradient is every row's H_i v_i
      _, hvp = jax.linearize(lambda y: batch_grad(w, y), y)
      step = pcg(hvp, g, cg_iters, precond)
      return backtrack(y, f0, g, step, _BACKTRACK)[0], None
    h = batch_hessian(w, y)
    reg = 1e-6 * jnp.trace(h, axis1=1, axis2=2)[:, None, None] / d * jnp.eye(d)
    step = jnp.linalg.solve(h + reg, g[..., None])[..., 0]
    y_new, moved = backtrack(y, f0, g, step, _BACKTRACK)
    # rows that moved keep their step; the others try the short fractions (skipped when none)
    short = lambda: jnp.where(moved[:, None], y_new, backtrack(y, f0, g, step, _BACKTRACK_SHORT)[0])
    return jax.lax.cond(jnp.all(moved), lambda: y_new, short), None

  y, _ = jax.lax.scan(body, y, None, length=n_iter)
  return y


_RADIAL_MIN_ITERS = 24


def _radial_conjugate(w, x, y, n_iter: int):
  """``grad w*(x)`` ``[b, d]`` for a rotation-invariant ``w`` (``pot.radial``): ``y* = t* u``
  along ``u = x / |x|``, with ``t* >= 0`` the root of ``g(t) = <grad w(t u), u> - |x|``. ``g`` is
  non-decreasing with ``g(0) = -|x|``, so Newton on ``t`` kept inside a bracket ``[lo, hi]`` of the
  root (bisection where Newton leaves it) converges for every row: 2-D damped Newton needed more
  than 8 iterations for some rows after a chain's move on the rings, where ``w`` is nearly flat
  between steep walls (docs/energies.md, session 51). One JVP of the gradient per iteration; the
  warm start ``y`` ``[b, d]`` is projected on ``u``; ``n_iter`` iterations."""
  s = jnp.linalg.norm(x, axis=-1)
  u = x / jnp.where(s > 0, s, 1.0)[:, None]

  def g_and_slope(t):
    grad, dgrad = jax.jvp(lambda p: batch_grad(w, p), (t[:, None] * u,), (u,))
    return jnp.sum(grad * u, -1) - s, jnp.sum(dgrad * u, -1)

  def body(carry, _):
    t, lo, hi, last_step = carry
    g, slope = g_and_slope(t)
    lo = jnp.where(g <= 0, t, lo)
    hi = jnp.where(g >= 0, t, hi)
    newton = t - g / jnp.where(slope > 0, slope, 1.0)
    # Newton where it stays in the bracket and at least halves the last step (as rtsafe), else
    # bisect the bracket; without an upper end yet, double
    fast = (slope > 0) & (newton > lo) & (newton < hi) & (jnp.abs(newton - t) <= 0.5 * last_step)
    fallback = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * jnp.maximum(t, lo) + 1e-3)
    t_new = jnp.where(fast, newton, fallback)
    return (t_new, lo, hi, jnp.abs(t_new - t)), None

  t0 = jnp.maximum(jnp.sum(y * u, -1), 0.0)
  lo, hi = jnp.zeros_like(s), jnp.full_like(s, jnp.inf)
  (t, _, _, _), _ = jax.lax.scan(body, (t0, lo, hi, hi), None, length=n_iter)
  return t[:, None] * u


def pcg(hvp, g, n_iter: int, precond=None):
  """``s [b, d]`` with ``H_i s_i ~ g_i`` per row: ``n_iter`` preconditioned conjugate-gradient
  iterations from 0, ``hvp(v) [b, d]`` the rows' Hessian-vector products, ``precond`` None or
  ``M [d, d]`` (SPD, ~ H^{-1}). Every iterate is a descent direction for a convex row; a row whose
  residual or curvature vanishes stops moving."""
  apply_m = (lambda r: r) if precond is None else (lambda r: r @ jnp.asarray(precond, r.dtype).T)
  tiny = jnp.finfo(g.dtype).tiny * 1e6
  dot = lambda a, c: jnp.sum(a * c, -1, keepdims=True)
  s = jnp.zeros_like(g)
  r = g
  z = apply_m(r)
  p, rz = z, dot(r, z)

  def body(carry, _):
    s, r, p, rz = carry
    hp = hvp(p)
    php = dot(p, hp)
    alpha = jnp.where((php > tiny) & (rz > tiny), rz / jnp.where(php > tiny, php, 1.0), 0.0)
    s = s + alpha * p
    r = r - alpha * hp
    z = apply_m(r)
    rz_new = dot(r, z)
    beta = jnp.where(rz > tiny, rz_new / jnp.where(rz > tiny, rz, 1.0), 0.0)
    return (s, r, z + beta * p, rz_new), None

  (s, *_), _ = jax.lax.scan(body, (s, r, p, rz), None, length=n_iter)
  return s
