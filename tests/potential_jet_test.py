"""The closed-form value, gradient and Hessian of a potential (``potential_jet``) against JAX's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmm_core import compile_cache, potential_jet, potentials


# run once each: compiled without LLVM's optimisations (cmm_core.compile_cache.ONE_OFF)
@functools.partial(jax.jit, static_argnums=0, compiler_options=compile_cache.ONE_OFF)
def _init_moved(pot, key):
  """``pot``'s variables with every weight moved off its start (one compiled program)."""
  variables = pot.init(key, jnp.zeros((1, pot.dim), jnp.float32))
  leaves, tree = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
  moved = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
  return {"params": jax.tree_util.tree_unflatten(tree, moved), "consts": variables["consts"]}


def _perturbed(d, seed=0, **settings):
  """A small potential with random weights and constants (an off-centre, anisotropic
  normalisation, a floor and a wall), and points where it is evaluated."""
  rng = np.random.default_rng(seed)
  pot = potentials.ConvexPotential(dim=d, **{"hidden": (8, 8), "activation": "softplus", **settings})
  variables = _init_moved(pot, jax.random.PRNGKey(seed))
  k = 1 if pot.radial else d   # the radial potential's constants are those of its 1-D potential
  root = rng.normal(size=(k, k))
  consts = {**variables["consts"], "center": rng.normal(size=k), "scale": rng.uniform(0.5, 2.0, k),
            "units": 1.3, "floor_a": rng.normal(size=k), "floor_B": 0.1 * (root @ root.T + np.eye(k))}
  if pot.pieces:
    consts.update(tail_B=0.5 * np.eye(k), tail_radius=2.0)
  consts = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), consts)
  variables = {"params": variables["params"], "consts": consts}
  # points inside, beyond the wall and near the origin (the radial potential's kink)
  x = np.concatenate([rng.normal(size=(12, d)) * 2.0, rng.normal(size=(3, d)) * 6.0,
                      1e-2 * rng.normal(size=(1, d))])
  return pot, variables, jnp.asarray(x, jnp.float32)


def _relative(a, b):
  return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12))


@functools.partial(jax.jit, static_argnums=0, compiler_options=compile_cache.ONE_OFF)
def _both(pot, variables, x):
  """JAX's derivatives of the potential and the closed form's, in one compiled program."""
  w = lambda z: pot.apply(variables, z)   # a plain function: JAX's derivatives
  jax_s = (*potentials.batch_value_and_grad(w, x), potentials.batch_hessian(w, x))
  return (jax_s, potential_jet.value_grad_hessian(pot, variables, x),
          potential_jet.value_and_grad(pot, variables, x))


@pytest.mark.parametrize("d, settings", [
    (2, dict(pieces=32)),                                     # cmm's 2D default: ICNN and pieces
    (3, dict(pieces=8, even=True, activation="relu")),        # the Ising lattices' even potential
    (2, dict(pieces=8, radial=True, activation="elu")),       # the rings' radial potential
    (2, dict(hidden=(4, 4, 4))),                              # deeper, no pieces, no wall
])
def test_the_jet_equals_jax_derivatives(d, settings):
  pot, variables, x = _perturbed(d, **settings)
  (value, grad, hess), (v, g, h), (v1, g1) = _both(pot, variables, x)
  assert _relative(v, value) < 1e-5 and _relative(g, grad) < 1e-5 and _relative(h, hess) < 1e-4
  assert _relative(v1, value) < 1e-5 and _relative(g1, grad) < 1e-5


@pytest.mark.slow  # JAX's third-order gradient compiles for ~10 s; the jet is an explicit graph
def test_the_likelihoods_parameter_gradient_is_unchanged():
  """cmm's loss differentiates log det Hess w(y) in the weights: the closed form's gradient is
  JAX's third-order one (here on a deeper ICNN with neither pieces nor wall)."""
  pot, variables, x = _perturbed(2, seed=3, hidden=(4, 4, 4))
  consts = variables["consts"]

  def loss(params, closed_form):
    w = functools.partial(pot.apply, {"params": params, "consts": consts})
    if closed_form:
      energy = potentials.PotentialEnergy(pot, {"params": params, "consts": consts})
      _, g, h = potentials.batch_value_grad_hessian(energy, x)
    else:
      g, h = potentials.batch_grad(w, x), potentials.batch_hessian(w, x)
    return jnp.mean(w(g) - jnp.linalg.slogdet(h)[1])

  both = jax.jit(lambda p: (jax.grad(loss)(p, True), jax.grad(loss)(p, False)),
                 compiler_options=compile_cache.ONE_OFF)
  ours, jax_s = both(variables["params"])
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(jax_s)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4 * float(jnp.max(jnp.abs(b))) + 1e-6)


def test_potential_energy_takes_the_closed_form_only_where_it_serves():
  pot = potentials.ConvexPotential(dim=2, hidden=(8, 8), activation="softplus", pieces=8)
  energy = potentials.PotentialEnergy(pot, None)
  x = jnp.zeros((3, 2))
  assert energy.jet_for(x, True) and energy.jet_for(x, False)
  wide = jnp.zeros((3, potentials.JET_GRADIENT_MAX_DIM + 1))
  assert energy.jet_for(wide, True) and not energy.jet_for(wide, False)
  widest = jnp.zeros((3, potentials.JET_HESSIAN_MAX_DIM + 1))
  assert not energy.jet_for(widest, True)
  hinged = potentials.PotentialEnergy(pot.clone(axis_hinges=4), None)
  assert not hinged.jet_for(x, True) and not potential_jet.supported(hinged.pot)
  with pytest.raises(ValueError, match="axis_hinges=4"):
    potential_jet.value_grad_hessian(hinged.pot, None, x)
