"""The conjugate moment measure fitted to an energy: ``rho_w = grad w* # e^{-w}`` close to
``exp(-E) / Z`` when only ``E`` is known (``cc.fit_energy("cmm", energy)``).

The model's density follows from the Monge-Ampère relation (the CMM paper's second algorithm):

    log rho_w(y) = l_w(y) - log Z_w,     l_w(y) = -w(grad w(y)) + log det Hess w(y),

with ``Z_w`` the integral of ``e^{-w}``, unknown. The fit minimises the reverse KL
``F(w) = E_{rho_w}[log rho_w + E] >= -log Z``. With ``h(y) = l_w(y) + E(y)``, the score-function
gradient of ``F`` is ``Cov_{y ~ rho_w}(h(y), grad_theta l_w(y))``: ``log Z_w``'s own gradient is a
constant in ``y`` and drops out of the covariance, so no estimate of ``Z_w`` enters the step. The
same gradient is half that of the log-variance loss ``Var_y(h(y))`` with the samples held fixed:
minimising the spread of the Monge-Ampère residual ``log rho_w(y) + E(y)`` (zero exactly at
``rho_w = exp(-E) / Z``). Samples ``y = grad w*(x)`` come from the fit's persistent MALA chains
``x`` on ``e^{-w}`` and warm-started Newton conjugates (:mod:`cmm_core.models.cmm`).

``forward_kl`` > 0 adds the importance-weighted forward KL ``KL(p || rho_w)``, which covers mass where
the reverse KL seeks modes. With ``v = softmax(-h)``, the batch's self-normalised weights
``p / rho_w``, its gradient is ``-sum_i (v_i - 1/b) grad_theta l_w(y_i)`` (``log Z_w``'s gradient
being ``E_{rho_w}[grad_theta l_w]``): another weighting of the same per-sample gradients, so it costs
nothing. Unlike maflow's, the term is not scaled by the weights' effective sample size: cmm's is
low early in a fit, when the term is needed (docs/energies.md). On the rings it moves mass to the
outer rings the reverse KL starves.

The history's ``loss`` is ``F`` with ``log Z_w`` estimated by importance sampling from a Gaussian
matched to the chains; its ``free_energy_spread``, ``std h``, is 0 exactly when ``rho_w`` is the
target. docs/energies.md has the measurements.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import optax

from cmm_core import hyper, potentials, sampling
from cmm_core.models.cmm import CMM, State, _optimizer, _potential, scale_updates

__all__ = ["CMMEnergy"]

_WARMUP_CHAINS = 4096   # MALA chains on the energy whose moments give the Gaussian guess
_IS_POINTS = 1024       # Gaussian draws per step for the reported log Z_w


def _log_z_gaussian_is(f, chains, key):
  """``log Z_w`` by importance sampling from ``N(mean, cov)`` of the chains ``[b, d]`` (widened by
  1.2): biased low (Jensen), so the reported ``F`` is, if anything, high."""
  b, d = chains.shape
  mean = jnp.mean(chains, 0)
  cov = 1.44 * (jnp.cov(chains.T).reshape(d, d) + 1e-6 * jnp.eye(d))
  chol = jnp.linalg.cholesky(cov)
  z = jax.random.normal(key, (_IS_POINTS, d))
  x = mean + z @ chol.T
  log_q = (-0.5 * jnp.sum(z * z, -1) - jnp.sum(jnp.log(jnp.diag(chol)))
           - 0.5 * d * jnp.log(2 * jnp.pi))
  log_w = -f(x) - log_q
  return jax.scipy.special.logsumexp(log_w) - jnp.log(_IS_POINTS)


class CMMEnergy(CMM):
  """cmm fitted to an energy ``E`` by the reverse KL (see the module docstring).

  The start is the closed-form CMM of a Gaussian matched to a short MALA run on ``exp(-E)``
  (4,096 chains, 200 steps); training then only needs ``E``'s values (the step never
  differentiates ``E``). ``cc.fit_energy("cmm", ...)``.
  """

  schema = hyper.replace(
      hyper.without(CMM.schema, "objective", "potential", "logdet", "chain_conjugate_iters",
                    "conjugate_solver", "cg_iters"),
      # a constant rate, as its figures were measured (docs/energies.md; the data route decays to 0)
      conjugate_iters=None, burn_in=50, learning_rate=5e-3, lr_decay=1.0,
      # the floor and the random start its figures were measured with (the data route's are lower)
      alpha=0.05, init_scale=0.5) + (
      hyper.Choice("symmetry", "none", ("none", "reflection", "rotation"),
                   '"reflection": an even potential w(x) = w(-x), for E(x) = E(-x) (the Ising '
                   'model); "rotation": w a function of |x|, for E invariant under rotations about '
                   'the origin (rings)'),
      hyper.Float("forward_kl", 0.0, 0.0, 10.0,
                  "weight of the importance-weighted forward KL added to the reverse KL (mass-"
                  "covering: it moves mass to where the model has too little; 0 = off)"),)
  default_steps = 1000
  # measured with benchmarks/energies.py (docs/energies.md); api.energy_settings applies them
  suggested = {
      "ring": {"hyper": {"symmetry": "rotation"},
               "why": "a potential of |x| (the ring is rotation-invariant): ELBO gap 0.044 after 100 "
                      "steps, where the default potential needs 300"},
      "rings": {"hyper": {"symmetry": "rotation", "hidden": (64, 64), "forward_kl": 4.0,
                          "alpha": 0.005},
                "why": "a potential of |x| (rotation-invariant rings) with 64 x 64 hidden units, the "
                       "forward KL at weight 4 and a convex floor of 0.005: ELBO gap 0.07-0.09 at 120 s "
                       "over three fits (ESS 93-95%), against 0.15-0.24 over four without the last two "
                       "(0.49-0.59 over 240 s without the radial potential)"},
  }
  # lattices up to the measured side (api.energy_settings): L = 4 in docs/energies.md, session 40
  lattice_min_side, lattice_max_side = 2, 4
  lattice_suggested = {
      "hyper": {"learning_rate": 2e-2},
      "why": "a rate of 2e-2: 0.069 nats per site after 5 min on L = 4, against 0.143 at 5e-3 "
             "(measured side by side; 0.043 in 5 min since the Hessians are in closed form)"}
  # XLA:CPU (jaxlib 0.10.2) deadlocks, idle, in this step's training chunk from d = 16 with 256
  # chains (the conjugates feeding the Hessians' gradient inside the chunk's loop); its
  # concurrency-optimised scheduler is the cause: without it the chunk runs (docs/energies.md)
  compiler_options = {"xla_cpu_enable_concurrency_optimized_scheduler": False}

  def __init__(self, energy, **hyper_values):
    super().__init__(**hyper_values)
    object.__setattr__(self, "energy", energy)

  def resolve(self, dim: int, n=None) -> tuple[dict, dict]:
    c, auto = super().resolve(dim, n)
    if "conjugate_iters" in auto:
      # Newton steps per training step, warm-started after each chain's move: 4 left wave's
      # conjugates at a mean residual of 0.095 and its gap at 0.059-0.066; 8 cost 45% of the steps
      # in 2D and gave 0.041-0.053 over four fits (docs/energies.md, session 51). Above 2D, 4: the
      # measured lattices' figures (each Newton step there is a dense d x d solve per sample)
      c["conjugate_iters"] = auto["conjugate_iters"] = 8 if dim <= 2 else 4
    # the likelihood's route: dense Newton conjugates, exact log-determinants, data-side potential
    return {**c, "objective": "mle", "potential": "data", "logdet": "exact",
            "conjugate_solver": "newton"}, auto

  def init(self, key, data, total_steps=None):
    k_warm, k_init = jax.random.split(key)
    d = int(self.energy.dim)
    if d > 64:
      raise ValueError(f"cmm's energy route runs dense d x d Hessians: at most 64 dimensions, "
                       f"got {d}")
    import cmm_core
    if d >= 16 and not cmm_core.XLA_SCHEDULER_OFF:
      warnings.warn("XLA's concurrency-optimised scheduler is on (JAX started before cmm_core was "
                    "imported, or XLA_FLAGS turns it on): XLA:CPU may deadlock in this fit from d = 16 "
                    f"(docs/energies.md). Import cmm_core first, or set XLA_FLAGS="
                    f"{cmm_core.XLA_SCHEDULER_FLAG}.", RuntimeWarning)
    rough = sampling.rough_samples(self.energy, k_warm, _WARMUP_CHAINS)
    static, state = super().init(k_init, rough, total_steps)
    static = dataclasses.replace(static, extra=static.extra + (("energy", self.energy),))
    return static, state

  def step(self, static, state: State, key, data):
    c, energy_target = static.config, static.get("energy")
    pot, tx = _potential(static), _optimizer(static)
    energy_of = lambda params: potentials.PotentialEnergy(pot, {"params": params,
                                                                "consts": state.consts})
    k_move, k_is = jax.random.split(key)
    energy = energy_of(state.params)
    warmup = state.t < c["burn_in"]
    x, chain_conj, acc, step_size = self._move_base(static, state, energy, k_move)
    # the model's samples y = grad w*(x), warm-started per chain
    y, _, resid = potentials.conjugate_argmax(energy, x, state.warm, max_iter=c["conjugate_iters"])
    y = jax.lax.stop_gradient(y)

    def ell(f):
      """``l_w(y) = log rho_w(y) + log Z_w`` ``[b]``."""
      _, g, hess = potentials.batch_value_grad_hessian(f, y)
      return -f(g) + jnp.linalg.slogdet(hess)[1]

    e_y = energy_target.fn(y)

    lam = float(c.get("forward_kl", 0.0))

    def loss_fn(params):
      # one pass over the Hessians: l_w's value gives h, its gradient the step
      ell_y = ell(energy_of(params))
      h = jax.lax.stop_gradient(ell_y + e_y)   # [b], the residual up to log Z_w
      coef = h - jnp.mean(h)                   # reverse KL: Cov(h, grad l_w)
      if lam > 0:
        # forward KL, importance-weighted: -sum_i (v_i - 1/b) grad l_w(y_i), v ~ exp(-h); not
        # scaled by the ESS as maflow's: cmm's ESS is low early and the term is needed then
        # (docs/energies.md)
        v, _ = sampling.importance_weights(-h)
        coef = coef - lam * (h.shape[0] * v - 1.0)
      return jnp.mean(coef * ell_y), h

    grads, h = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = scale_updates(updates, state.fixed["lr_scale"])
    keep = lambda new, old: jnp.where(warmup, old, new)
    params = jax.tree_util.tree_map(keep, optax.apply_updates(state.params, updates), state.params)
    opt_state = jax.tree_util.tree_map(keep, opt_state, state.opt_state)
    free = jnp.mean(h) - _log_z_gaussian_is(energy, x, k_is)
    metrics = {"loss": free, "free_energy_spread": jnp.std(h),
               "conjugate_residual": jnp.mean(resid), "acceptance": acc, "step_size": step_size}
    return State(params, state.consts, opt_state, x, chain_conj, y, step_size,
                 state.precond, state.t + 1, state.fixed), metrics
