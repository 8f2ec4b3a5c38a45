"""Semi-discrete OT generator (Houdard, Leclaire, Papadakis & Rabin 2021).

A generator ``g_theta`` (an MLP) maps a latent ``z ~ U[-1, 1]^k`` (or ``N(0, I)``) to data
space; the data ``y_1..y_m`` (uniform weights ``nu_j = 1/m``) is the discrete target. The
semi-dual of entropic OT from ``g_theta # latent`` to the data is

  ``F(psi, theta) = E_z[psi^{c,eps}(g_theta(z))] + mean(psi)``,
  ``psi^{c,eps}(x) = -eps logsumexp_j((psi_j - c(x, y_j)) / eps + log nu_j)``

(``eps = 0``: the hard min ``min_j c(x, y_j) - psi_j`` over Laguerre cells), with the cost
``c(x, y) = |x - y|^2 / s^2``, ``s^2 = mean |y - mean(y)|^2`` (the data's total variance; so
``epsilon`` is relative to the data's scale). Internally everything lives in normalised
coordinates ``(y - mean(y)) / s``, where this cost is ott-jax's plain squared Euclidean cost.
Columns in different units (standard deviations more than 10x apart: grams next to millimetres)
get one scale per column instead, ``s_j = sqrt(d) std_j`` (the same total): with one scalar the
cost would ignore the millimetre columns. The generator still models the data as given.

One training step (pure, runs inside ``jax.lax.scan``):

1. ``psi_steps`` stochastic ascent steps on ``psi`` (warm-started from the last step), each on a
   fresh batch of generated points, done by ott-jax's
   :class:`~ott.solvers.linear.semidiscrete.SemidiscreteSolver` ``.step`` on a
   :class:`~ott.problems.linear.semidiscrete_linear_problem.SemidiscreteLinearProblem` whose
   :class:`~ott.geometry.semidiscrete_pointcloud.SemidiscretePointCloud` samples ``g_theta(z)``;
   the solver keeps an exponential moving average of ``psi`` (the averaged iterate);
2. ``generator_steps`` (1) Adam steps on ``theta`` (cosine-decayed learning rate, ``lr_decay``),
   each on a fresh latent batch, on ``E_z[psi^{c,eps}(g_theta(z))]`` with the averaged ``psi`` fixed:
   by the differentiation (envelope) theorem this is the gradient of the OT cost. The
   c-transform is ott-jax's (``potential_fn_from_dual_vec``), differentiated through ``x``.

The generator is a ReLU MLP; with ``fourier > 0`` it is a linear map of ``z`` plus an MLP on
random Fourier features of ``z`` whose output layer starts at zero (:class:`Generator`). A plain
MLP learns the sharp, many-step maps that rings, circles, spirals or a checkerboard need too
slowly (spectral bias) and stays a disc; the Fourier generator fits them (``docs/sdot.md``).

The generator minimises what ``psi`` maximises: ``min_theta max_psi F``; ``loss`` is ``F``
(an estimate of the regularised OT cost in normalised units; it goes down as the fit improves).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.geometry import semidiscrete_pointcloud
from ott.problems.linear import semidiscrete_linear_problem
from ott.solvers.linear import semidiscrete

from cmm_core import hyper, metrics as metrics_lib, schedules, sharding
from cmm_core.models.base import (FittedModel, Model, check_n, check_points, check_seed,
                                  columns_in_different_units)

__all__ = ["SDOT", "SDOTFitted", "Generator", "ACTIVATIONS", "LATENTS", "semidual_objective",
           "c_transform", "generator_loss", "fit_dual", "epsilon_sweep"]

ACTIVATIONS = {"relu": nn.relu, "leaky_relu": nn.leaky_relu, "elu": nn.elu,
               "softplus": nn.softplus, "tanh": nn.tanh}
LATENTS = ("uniform", "normal")


class Generator(nn.Module):
  """``g(z)``: ``[n, k] -> [n, d]``, an MLP (normalised data coordinates).

  With ``fourier = F > 0`` the MLP reads random Fourier features of the latent,
  ``[sin(2 pi z B), cos(2 pi z B)]`` ``[n, 2F]`` with ``B`` ``[k, F]`` drawn ``N(0, fourier_scale^2)``
  at init and kept fixed (Tancik et al. 2020): a cure for the spectral bias of a ReLU MLP, which
  otherwise learns a map with sharp radial steps (rings, spirals) very slowly.
  """

  dim: int
  hidden: Sequence[int] = (128, 128)
  activation: str = "relu"
  fourier: int = 0
  fourier_scale: float = 1.0

  @nn.compact
  def __call__(self, z):
    act = ACTIVATIONS[self.activation]
    h = z
    if self.fourier:
      b = self.param("fourier_b", nn.initializers.normal(self.fourier_scale),
                     (z.shape[-1], self.fourier))
      zb = 2 * jnp.pi * z @ jax.lax.stop_gradient(b)
      h = jnp.concatenate([jnp.sin(zb), jnp.cos(zb)], -1)
    for width in self.hidden:
      h = act(nn.Dense(width)(h))
    if self.fourier:
      # a linear map of the latent plus a Fourier-feature MLP that starts at zero: the fit starts
      # from a smooth (order-preserving) map and adds the high frequencies it needs
      return nn.Dense(self.dim)(z) + nn.Dense(self.dim, kernel_init=nn.initializers.zeros)(h)
    return nn.Dense(self.dim)(h)


def sample_latent(key, n: int, k: int, latent: str):
  """Latent draws ``[n, k]``: ``U[-1, 1]^k`` or ``N(0, I)``."""
  if latent == "uniform":
    return jax.random.uniform(key, (n, k), minval=-1.0, maxval=1.0)
  return jax.random.normal(key, (n, k))


def latent_log_density(z, latent: str):
  """Log-density of the latent at ``z`` ``[n, k]`` -> ``[n]`` (``-inf`` outside the cube)."""
  z = np.asarray(z, np.float64)
  k = z.shape[1]
  if latent == "uniform":
    inside = np.all(np.abs(z) <= 1.0, axis=1)
    return np.where(inside, -k * math.log(2.0), -np.inf)
  return -0.5 * np.sum(z ** 2, 1) - 0.5 * k * math.log(2 * math.pi)


# -- the semi-discrete dual (ott-jax) -------------------------------------------


def _problem(sampler, y, epsilon: float):
  geom = semidiscrete_pointcloud.SemidiscretePointCloud(sampler, y, epsilon=float(epsilon))
  return semidiscrete_linear_problem.SemidiscreteLinearProblem(geom)


def c_transform(psi, x, y, epsilon: float):
  """``psi^{c,eps}(x)`` for ``x`` ``[n, d]``, data ``y`` ``[m, d]``, ``psi`` ``[m]`` -> ``[n]``.

  Cost ``|x - y|^2`` (pass normalised points); uniform ``nu``; ``epsilon = 0``: hard min.
  """
  prob = _problem(None, y, epsilon)
  f = prob.potential_fn_from_dual_vec(psi, epsilon=float(epsilon))
  return jax.vmap(f)(x)


@functools.partial(jax.jit, static_argnums=3)
def semidual_objective(psi, x, y, epsilon: float):
  """``F(psi) = mean_i psi^{c,eps}(x_i) + mean_j psi_j`` for points ``x`` ``[n, d]`` -> scalar."""
  return jnp.mean(c_transform(psi, x, y, epsilon)) + jnp.mean(psi)


def generator_loss(apply_fn, params, z, psi, y, epsilon: float):
  """``E_z[psi^{c,eps}(g(z))]`` at fixed ``psi`` ``[m]``; -> (scalar, ``g(z)`` ``[n, d]``).

  Its gradient in ``params`` is the generator's gradient (differentiation theorem: ``psi`` is
  held at the dual optimum, so this is the gradient of the regularised OT cost).
  """
  x = apply_fn(params, z)
  return jnp.mean(c_transform(psi, x, y, epsilon)), x


class _DualState(NamedTuple):
  psi: jnp.ndarray       # [m] SGD / Adam iterate
  psi_avg: jnp.ndarray   # [m] exponential moving average (used by the generator)
  opt_state: Any


def _psi_optimizer(name: str, lr: float, m: int):
  if name == "adam":
    return optax.adam(lr)
  # averaged SGD on the gradient relative to nu_j = 1/m (the averaging is the EMA)
  return optax.chain(optax.scale(float(m)), optax.sgd(lr))


def _dual_solver(psi_steps: int, batch_size: int, tx, average: float):
  # ott's ``potential_ema`` is the weight of the *new* iterate (optax.incremental_update);
  # ``average`` is the weight of the previous average (0: no averaging)
  return semidiscrete.SemidiscreteSolver(
      num_iterations=int(psi_steps), batch_size=int(batch_size), optimizer=tx,
      error_eval_every=int(psi_steps), potential_ema=1.0 - float(average))


def _ascent(solver, dual: _DualState, key, prob, epsilon: float, psi_steps: int):
  """``psi_steps`` ott-jax semi-discrete steps from ``dual``; -> (dual, mean F, last grad norm)."""
  dtype = dual.psi.dtype
  st = semidiscrete.SemidiscreteState(
      it=jnp.asarray(0), epsilon=jnp.asarray(epsilon, dtype), g=dual.psi, g_ema=dual.psi_avg,
      opt_state=dual.opt_state, losses=jnp.zeros((psi_steps,), dtype),
      grad_norms=jnp.zeros((psi_steps,), dtype), errors=jnp.zeros((1,), dtype))

  def body(st, k):
    return solver.step(k, st, prob, compute_error=False), None

  st, _ = jax.lax.scan(body, st, jax.random.split(key, psi_steps))
  # ott's loss is -F on each batch
  return (_DualState(st.g, st.g_ema, st.opt_state), -jnp.mean(st.losses), st.grad_norms[-1])


def fit_dual(points, y, epsilon: float, *, steps: int = 3000, batch_size: int = 256,
             learning_rate: float = 0.01, optimizer: str = "adam", average: float = 0.1,
             seed: int = 0, psi0=None) -> np.ndarray:
  """The psi-ascent of :class:`SDOT` with the generator frozen.

  The source is the empirical measure of ``points`` ``[n, d]`` (a frozen generator's samples);
  ``y`` ``[m, d]`` the data, both in the cost's units (``c = |x - y|^2``). Runs ``steps`` ascent
  steps exactly as the training step does; returns the averaged ``psi`` ``[m]``.
  """
  points = jnp.asarray(points, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  m = y.shape[0]

  def sampler(key, shape, dtype=None):
    return points[jax.random.randint(key, (shape[0],), 0, points.shape[0])]

  tx = _psi_optimizer(optimizer, learning_rate, m)
  solver = _dual_solver(steps, batch_size, tx, average)
  psi = jnp.zeros((m,), jnp.float32) if psi0 is None else jnp.asarray(psi0, jnp.float32)

  @jax.jit
  def run(psi, key):
    prob = _problem(sampler, y, epsilon)
    dual, _, _ = _ascent(solver, _DualState(psi, psi, tx.init(psi)), key, prob, epsilon, steps)
    return dual.psi_avg

  return np.asarray(run(psi, jax.random.PRNGKey(seed)))


# -- the model -----------------------------------------------------------------


@dataclasses.dataclass
class SDOTFitted(FittedModel):
  """A fitted semi-discrete OT generator: latent ``U[-1, 1]^k`` or ``N(0, I)``, map ``g_theta``.

  ``psi()`` are the dual weights (one per data point, in units of the normalised cost
  ``|x - y|^2 / s^2``) and ``data()`` the points they belong to.
  """

  model = "sdot"

  @property
  def latent_dim(self) -> int:
    return int(self.extras["latent_dim"])

  @property
  def epsilon(self) -> float:
    return float(self.config["epsilon"])

  @functools.cached_property
  def _net(self):
    e = self.extras
    return Generator(dim=int(e["dim"]), hidden=tuple(int(h) for h in e["hidden"]),
                     activation=str(e["activation"]), fourier=int(e.get("fourier", 0)),
                     fourier_scale=float(e.get("fourier_scale", 1.0)))

  @functools.cached_property
  def _fns(self):
    net = self._net
    center = jnp.asarray(self.extras["center"], jnp.float32)
    scale = jnp.asarray(self.extras["scale"], jnp.float32)  # [] (saved before) or [d]
    y = (jnp.asarray(self.extras["data"], jnp.float32) - center) / scale
    eps = self.epsilon

    @jax.jit
    def transport(params, z):
      return center + scale * net.apply(params, z)

    @jax.jit
    def cells(psi, x):
      # [n, m] scores (psi_j - c(x, y_j)) in normalised units
      xn = (x - center) / scale
      cost = jnp.sum(xn ** 2, 1)[:, None] + jnp.sum(y ** 2, 1)[None, :] - 2 * xn @ y.T
      s = psi[None, :] - cost
      best = jnp.argmax(s, 1)
      if eps > 0:
        logp = jax.nn.log_softmax(s / eps, 1)
        p = jnp.exp(logp)
        ent = -jnp.sum(p * logp, 1)
        return best, jnp.max(p, 1), ent
      return best, jnp.ones(x.shape[0]), jnp.zeros(x.shape[0])

    return dict(transport=transport, cells=cells)

  def sample_base(self, n: int, seed: int = 0) -> np.ndarray:
    """Latent draws ``[n, latent_dim]``."""
    n = check_n(n)
    key = jax.random.PRNGKey(check_seed(seed))
    z = sample_latent(key, n, self.latent_dim, str(self.extras["latent"]))
    return np.asarray(z)

  def transport(self, z) -> np.ndarray:
    """``g_theta(z)``: latent ``[n, latent_dim]`` -> data space ``[n, d]``."""
    z = check_points(z, self.latent_dim, "z")
    return np.asarray(self._fns["transport"](self.params, jnp.asarray(z)))

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    return self.transport(self.sample_base(n, seed))

  def base_log_density(self, z) -> np.ndarray:
    """Latent log-density at ``z`` ``[n, latent_dim]`` -> ``[n]``."""
    z = check_points(z, self.latent_dim, "z")
    return latent_log_density(z, str(self.extras["latent"]))

  def psi(self) -> np.ndarray:
    """The learned (averaged) dual weights ``[n_data]``."""
    return np.asarray(self.extras["psi"], np.float32)

  def data(self) -> np.ndarray:
    """The data points the dual weights belong to ``[n_data, d]`` (subsampled past max_data)."""
    return np.asarray(self.extras["data"], np.float32)

  def laguerre(self, x, chunk: int = 1024) -> dict:
    """(Soft) Laguerre cells of ``psi`` at points ``x`` ``[n, d]``.

    Returns ``{"cell": [n] argmin_j c(x, y_j) - psi_j, "max_prob": [n], "entropy": [n]}`` (the
    largest soft-assignment probability and the assignment's entropy; 1 and 0 when eps = 0).
    """
    x = self._points(x)
    n = x.shape[0]
    pad = (-n) % chunk
    xp = np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x
    psi = jnp.asarray(self.psi())
    outs = [self._fns["cells"](psi, jnp.asarray(xp[i:i + chunk])) for i in range(0, xp.shape[0], chunk)]
    cell, pmax, ent = (np.concatenate([np.asarray(o[i]) for o in outs])[:n] for i in range(3))
    return {"cell": cell.astype(np.int64), "max_prob": pmax, "entropy": ent}


class SDOTState(NamedTuple):
  params: Any            # generator variables
  opt_state: Any         # Adam on the generator
  dual: _DualState       # psi, its average, its optimiser state
  center: jnp.ndarray    # [d] the data's mean
  scale: jnp.ndarray     # [d] the cost's unit per column: the data's RMS distance to its mean, or
                         # sqrt(d) std_j for columns in different units
  data: jnp.ndarray      # [m, d] the data points the dual weights belong to


class SDOT(Model):
  """Generator trained through the gradient of (entropic) semi-discrete OT (module docstring)."""

  name = "sdot"
  fitted_cls = SDOTFitted
  default_steps = 1500
  # measured in docs/sdot.md (the Fourier generator's defaults fit the other built-in targets)
  suggested = {
      "rings": {"steps": 3000, "hyper": {},
                "why": "the four rings separate (at 1500 steps the outer ones are still a veil)"},
      "checkerboard": {"steps": 3000, "hyper": {"epsilon": 0.003},
                       "why": "a smaller epsilon fills the squares (at 0.01 they are hollow outlines)"},
  }
  schema = (
      hyper.Float("epsilon", 0.01, 0.0, 10.0,
                  "entropic regularisation, relative to the data variance; 0 = hard"),
      hyper.Int("latent_dim", None, 1, 64, "dimension of the latent", optional="the data dimension"),
      hyper.Choice("latent", "uniform", LATENTS,
                   '"uniform" (U[-1, 1]^k, the reference) or "normal" (N(0, I))'),
      hyper.Widths("hidden", (128, 128), "generator MLP widths"),
      hyper.Choice("activation", "relu", sorted(ACTIVATIONS), "the generator's activation"),
      hyper.Int("fourier", 64, 0, 1024, "random Fourier features of the latent (0: a plain MLP)"),
      hyper.Float("fourier_scale", 1.0, 0.0, 100.0,
                  "their frequencies' standard deviation (cycles per latent unit)", lo_open=True),
      hyper.Choice("linear_init", "auto", ("auto", "pca", "random"),
                   "the Fourier generator's linear part at init: random, or the data's top principal "
                   "axes (the untrained generator is then the fitted Gaussian); auto: pca above 16-D"),
      hyper.Float("learning_rate", 3e-3, 0.0, 1.0, "Adam on the generator (initial)", log=True,
                  lo_open=True),
      hyper.Float("lr_decay", 0.01, 0.0, 1.0,
                  "final generator learning rate / initial (cosine); 1 = constant"),
      hyper.Float("psi_learning_rate", 0.01, 0.0, 10.0, "Adam (or averaged SGD) on psi", log=True,
                  lo_open=True),
      hyper.Choice("psi_optimizer", "adam", ("adam", "asgd"),
                   '"adam" or "asgd" (SGD on the nu-relative gradient + averaging)'),
      hyper.Int("psi_steps", 10, 1, 100, "ascent steps on psi per generator step"),
      hyper.Float("psi_average", 0.1, 0.0, 0.999,
                  "EMA weight of the previous averaged psi (0: no averaging)"),
      hyper.Int("generator_steps", 1, 1, 100,
                "Adam steps on the generator per psi update (fresh batch each)"),
      hyper.Int("batch_size", 256, 8, 8192, "generated points per psi step and per generator step"),
      hyper.Int("max_data", 20_000, 100, 100_000,
                "data points kept (one psi each); more are subsampled"),
  )

  def divergence_hint(self) -> str:
    return "Lower learning_rate or psi_learning_rate, or raise epsilon."

  def schedule_steps(self, static, total_steps: int) -> int:
    """The generator's Adam steps (the dual's optimiser, in ``state.dual``, has a constant rate)."""
    return _generator_updates(static, total_steps)

  def prepare(self, data):
    info = {"warnings": []}
    cap = int(self.config["max_data"])
    if data.shape[0] > cap:
      idx = np.sort(np.random.default_rng(0).choice(data.shape[0], size=cap, replace=False))
      data = data[idx]
      info["warnings"].append(
          f"sdot keeps one dual weight per data point: the data was subsampled to {cap} points "
          f"(max_data).")
    return data, info

  # -- init ------------------------------------------------------------------
  def init(self, key, data, total_steps=None):
    c = self.config
    data_np = np.asarray(data, np.float64)
    m, d = data_np.shape
    center = data_np.mean(0)
    scale = np.full(d, float(np.sqrt(np.mean(np.sum((data_np - center) ** 2, 1)))))
    if columns_in_different_units(data_np):
      scale = np.sqrt(d) * np.std(data_np, axis=0)
    scale = np.where(scale > 0, scale, max(float(np.max(scale)), 1.0))
    k = int(c["latent_dim"] or d)
    # the generator's schedule spans its steps; the psi optimiser's rate depends on m (asgd)
    linear_init = c["linear_init"]
    if linear_init == "auto":
      linear_init = "pca" if d > _PCA_INIT_MIN_DIM and c["fourier"] > 0 else "random"
    static = self.static(data, total_steps if c["lr_decay"] < 1.0 else 0, latent_dim=k, n_points=m,
                         linear_init=linear_init)
    params = _generator(static).init(key, jnp.zeros((1, k), jnp.float32))
    if static.get("linear_init") == "pca":
      params = _pca_linear_part(params, (data_np - center) / scale, k, c["latent"], len(c["hidden"]))
    psi = jnp.zeros((m,), jnp.float32)
    dual = _DualState(psi, psi, _psi_optimizer(c["psi_optimizer"], c["psi_learning_rate"], m).init(psi))
    return static, SDOTState(params, _generator_optimizer(static).init(params), dual,
                             jnp.asarray(center, jnp.float32), jnp.asarray(scale, jnp.float32),
                             jnp.asarray(data_np, jnp.float32))

  # -- one step --------------------------------------------------------------
  def step(self, static, state: SDOTState, key, data):
    c = static.config
    eps = float(c["epsilon"])
    b, k = int(c["batch_size"]), static.get("latent_dim")
    net, tx = _generator(static), _generator_optimizer(static)
    psi_tx = _psi_optimizer(c["psi_optimizer"], c["psi_learning_rate"], static.get("n_points"))
    solver = _dual_solver(c["psi_steps"], c["batch_size"], psi_tx, c["psi_average"])
    y = (data - state.center) / state.scale
    k_dual, k_gen, k_ed = jax.random.split(key, 3)
    gen = functools.partial(net.apply, jax.lax.stop_gradient(state.params))

    def sampler(key, shape, dtype=None):
      return gen(sharding.constrain_batch(sample_latent(key, shape[0], k, c["latent"])))

    prob = _problem(sampler, y, eps)
    dual, objective, psi_grad_norm = _ascent(solver, state.dual, k_dual, prob, eps,
                                             int(c["psi_steps"]))
    psi = dual.psi_avg

    def generator_step(carry, key):
      params, opt_state = carry
      z = sharding.constrain_batch(sample_latent(key, b, k, c["latent"]))  # multi-device: split
      (value, x), grads = jax.value_and_grad(generator_loss, argnums=1, has_aux=True)(
          net.apply, params, z, psi, y, eps)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (value, x, grads)

    n_gen = int(c["generator_steps"])
    keys = k_gen[None] if n_gen == 1 else jax.random.split(k_gen, n_gen)  # 1: as before
    (params, opt_state), (values, xs, all_grads) = jax.lax.scan(
        generator_step, (state.params, state.opt_state), keys)
    value, x = values[-1], xs[-1]
    grads = jax.tree_util.tree_map(lambda g: g[-1], all_grads)
    idx = jax.random.randint(k_ed, (b,), 0, y.shape[0])
    metrics = {
        "loss": value + jnp.mean(psi),
        "psi_objective": objective,
        "psi_grad_norm": psi_grad_norm,
        "generator_grad_norm": optax.global_norm(grads),
        "energy_distance": metrics_lib._energy(x * state.scale, y[idx] * state.scale),
    }
    return state._replace(params=params, opt_state=opt_state, dual=dual), metrics

  def finalize(self, static, state: SDOTState, history, info) -> SDOTFitted:
    c = static.config
    if c["linear_init"] == "auto":  # the fitted config: what ran
      c = {**c, "linear_init": static.get("linear_init")}
      info = {**info, "auto": {"linear_init": c["linear_init"]}}
    extras = {
        "dim": static.dim, "latent_dim": static.get("latent_dim"), "latent": c["latent"],
        "hidden": list(c["hidden"]), "activation": c["activation"], "fourier": c["fourier"],
        "fourier_scale": c["fourier_scale"], "center": np.asarray(state.center, np.float32),
        "scale": np.asarray(state.scale, np.float32), "data": np.asarray(state.data, np.float32),
        "psi": np.asarray(state.dual.psi_avg, np.float32),
    }
    return SDOTFitted(config=c, params=state.params, extras=extras, history=history, info=info)


_PCA_INIT_MIN_DIM = 16  # linear_init "auto": the principal axes above this dimension


def _pca_linear_part(params, y: np.ndarray, k: int, latent: str, n_hidden: int):
  """``params`` with the Fourier generator's linear part ``z -> z A`` set so that ``z A`` has the
  covariance of ``y`` ``[m, d]`` (normalised data) on its top ``min(k, d)`` principal axes: the
  untrained generator (its MLP part starts at zero) is then the fitted Gaussian, or its top-``k``
  projection. ``A [k, d]`` rows ``sqrt(lambda_i) u_i / std(latent)``; rows past ``d`` are zero."""
  lam, vecs = np.linalg.eigh(np.cov(np.asarray(y, np.float64).T, bias=True).reshape(y.shape[1], -1))
  order = np.argsort(lam)[::-1][:k]
  latent_std = 1.0 / math.sqrt(3.0) if latent == "uniform" else 1.0
  a = np.zeros((k, y.shape[1]))
  a[:len(order)] = (vecs[:, order] * np.sqrt(np.maximum(lam[order], 0.0))).T / latent_std
  name = f"Dense_{n_hidden}"  # after the hidden layers: the linear part (see Generator)
  inner = dict(params["params"])
  inner[name] = {"kernel": jnp.asarray(a, jnp.float32), "bias": jnp.zeros(y.shape[1], jnp.float32)}
  return {**params, "params": inner}


def _generator(static) -> Generator:
  c = static.config
  return Generator(dim=static.dim, hidden=tuple(c["hidden"]), activation=c["activation"],
                   fourier=c["fourier"], fourier_scale=c["fourier_scale"])


def _generator_updates(static, total_steps: int) -> int:
  """The generator's Adam steps in ``total_steps`` training steps: ``generator_steps`` each."""
  return int(total_steps) * int(static.config["generator_steps"])


def _generator_optimizer(static) -> optax.GradientTransformation:
  """Adam on the generator at ``learning_rate``: constant, or cosine-decayed to ``lr_decay`` times
  it over the fit's generator steps (the horizon in the state: :meth:`Model.set_horizon`)."""
  c = static.config
  if c["lr_decay"] >= 1.0:
    return optax.adam(c["learning_rate"])
  return schedules.adam_cosine(c["learning_rate"], c["lr_decay"],
                               max(1, _generator_updates(static, static.total_steps)))


def epsilon_sweep(data, epsilons=(0.0, 0.025, 0.05, 0.1), *, steps: Optional[int] = 600,
                  seed: int = 0, n_eval: int = 2000, callback=None, **hyper) -> list[dict]:
  """Fits ``sdot`` once per epsilon (Houdard et al.'s experiment) and measures the samples.

  Args:
    data: ``[n, d]`` training data.
    epsilons: the entropic regularisations to try (relative to the data variance).
    steps: training steps per fit.
    seed: seeds every fit and the evaluation draws.
    n_eval: samples (and data points) in the energy distance.
    callback: optional ``callback(i, result)`` after each fit.
    **hyper: other sdot hyper-parameters, shared by all fits.

  Returns:
    One dict per epsilon: ``epsilon``, ``energy_distance`` (model samples vs the data),
    ``seconds``, ``steps`` and ``loss`` (the loss curve, lists), ``samples`` ``[n_eval, d]`` and
    ``fitted``.
  """
  from cmm_core import api
  from cmm_core.validation import as_dataset
  data = as_dataset(data)
  ref = data if data.shape[0] <= n_eval else data[
      np.random.default_rng(seed + 1).choice(data.shape[0], n_eval, replace=False)]
  results = []
  for i, eps in enumerate(epsilons):
    t0 = time.perf_counter()
    fitted = api.fit("sdot", data, steps=steps, seed=seed, epsilon=float(eps), **hyper)
    seconds = time.perf_counter() - t0
    samples = fitted.sample(n_eval, seed=seed + 2)
    res = {
        "epsilon": float(eps),
        "energy_distance": metrics_lib.energy_distance(samples, ref),
        "seconds": seconds,
        "steps": [int(r["step"]) for r in fitted.history],
        "loss": [float(r["loss"]) for r in fitted.history],
        "samples": samples,
        "fitted": fitted,
    }
    results.append(res)
    if callback is not None:
      callback(i, res)
  return results
