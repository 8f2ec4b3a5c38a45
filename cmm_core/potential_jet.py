"""A potential's value, gradient and Hessian in one forward pass (``value_grad_hessian``).

JAX's Hessian of a ``ConvexPotential`` is a forward-mode pass over the reverse-mode gradient, one
tangent per input coordinate. Under cmm's likelihood the parameter gradient then goes through that
(third order). Here the ICNN (ott-jax's layers: quadratic potentials of the input, non-negative
mixing, a convex activation), the soft max of affine pieces, the floor and the wall carry their
gradient ``[b, k, d]`` and Hessian ``[b, k, d, d]`` forward layer by layer in closed form, so the
parameter gradient is plain reverse mode over one explicit graph: cmm's 2D step runs about twice as
fast, and compiles in about the same time (docs/speed.md, "Closed-form Hessians"). The result
equals JAX's up to float rounding (``tests/potential_jet_test.py``). Potentials with axis hinges
have no closed form here: ``potentials.PotentialEnergy`` takes JAX's derivatives for them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["value_grad_hessian", "value_and_grad", "supported"]

# (value, first, second derivative) of each activation in potentials.ACTIVATIONS
_ACTIVATION_JETS = {
    "softplus": lambda a: (jax.nn.softplus(a), jax.nn.sigmoid(a),
                           jax.nn.sigmoid(a) * jax.nn.sigmoid(-a)),
    "relu": lambda a: (jax.nn.relu(a), (a > 0).astype(a.dtype), jnp.zeros_like(a)),
    "elu": lambda a: (jax.nn.elu(a), jnp.where(a > 0, 1.0, jnp.exp(jnp.minimum(a, 0.0))),
                      jnp.where(a > 0, 0.0, jnp.exp(jnp.minimum(a, 0.0)))),
}


def supported(pot) -> bool:
  """Whether ``pot`` (a ``ConvexPotential``) has the closed-form jet (else JAX's Hessian)."""
  return not pot.axis_hinges and pot.activation in _ACTIVATION_JETS


def value_grad_hessian(pot, variables, x):
  """``(w(x) [b], grad w(x) [b, d], Hess w(x) [b, d, d])`` of a ``ConvexPotential`` at ``x [b, d]``
  (``variables``: its ``params`` and ``consts``)."""
  return _jet(pot, variables, x, True)


def value_and_grad(pot, variables, x):
  """``(w(x) [b], grad w(x) [b, d])``, the first order of :func:`value_grad_hessian`."""
  return _jet(pot, variables, x, False)[:2]


def _jet(pot, variables, x, hess: bool):
  if not supported(pot):  # potentials.PotentialEnergy takes JAX's derivatives for these
    raise ValueError(f"no closed-form derivatives for this potential "
                     f"(axis_hinges={pot.axis_hinges}, activation={pot.activation!r})")
  params, consts = variables["params"], variables["consts"]
  if pot.radial:
    r = jnp.sqrt(jnp.sum(x * x, -1) + consts["radial_eps"] ** 2)            # [b]
    v, g1, h1 = _even_jet(pot, params, consts, r[:, None], hess)             # 1-D in r
    unit = x / r[:, None]
    g = g1[:, :1] * unit
    if not hess:
      return v, g, None
    outer = unit[:, :, None] * unit[:, None, :]
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    h = h1[:, :1, :1] * outer + (g1[:, :1, None] / r[:, None, None]) * (eye - outer)
    return v, g, h
  if pot.even:
    return _even_jet(pot, params, consts, x, hess)
  return _plain_jet(pot, params, consts, x, hess)


def _even_jet(pot, params, consts, x, hess):
  """``w(x) = (v(x) + v(-x)) / 2``: both signs in one pass."""
  b = x.shape[0]
  v, g, h = _plain_jet(pot, params, consts, jnp.concatenate([x, -x]), hess)
  h = 0.5 * (h[:b] + h[b:]) if hess else None
  return 0.5 * (v[:b] + v[b:]), 0.5 * (g[:b] - g[b:]), h


def _plain_jet(pot, params, consts, x, hess):
  """The jet of ``ConvexPotential._value`` (ICNN and pieces on normalised input, floor, wall);
  the Hessian is None unless ``hess``."""
  d = x.shape[-1]
  scale = jnp.broadcast_to(consts["scale"], (d,))
  units = consts["units"] if "units" in consts else jnp.mean(scale ** 2)
  z = (x - consts["center"]) / scale
  jet = _icnn_jet(pot, params["icnn"], z, hess)
  if pot.pieces:
    jet = _add(jet, _soft_max_affine_jet(params["soft_max_affine"], z, hess))
  inv = 1.0 / scale
  v, g, h = jet
  jet = (units * v, units * g * inv, units * h * (inv[:, None] * inv[None, :]) if hess else None)
  diff = x - consts["floor_a"]
  B = consts["floor_B"]
  sym = 0.5 * (B + B.T)
  jet = _add(jet, (0.5 * jnp.sum(diff * (diff @ B.T), -1), diff @ sym, sym if hess else None))
  if pot.pieces and "tail_B" in consts:
    jet = _add(jet, _wall_jet(consts["tail_B"], consts["tail_radius"], diff, hess))
  return jet


def _add(a, b):
  """The sum of two jets ``(value, gradient, Hessian or None)``."""
  return a[0] + b[0], a[1] + b[1], None if a[2] is None else a[2] + b[2]


def _icnn_jet(pot, p, z, hess):
  """ott-jax's ICNN ``[b, d] -> [b]`` (``pos_weights``): ``act(W_x0(z))``, then
  ``act(relu(K_i) z + W_xi(z))`` per layer, plus the final positive definite quadratic."""
  act = _ACTIVATION_JETS[pot.activation]
  v, g, h = _activate(act, _quadratic_jet(p["w_xs_0"], z, jax.nn.softplus, hess))
  for i in range(1, len(pot.hidden) + 1):
    kernel = jax.nn.relu(p[f"w_zs_{i - 1}"]["kernel"])                      # [k_prev, k]
    mixed = (v @ kernel, jnp.einsum("bjd,jk->bkd", g, kernel),
             jnp.einsum("bjde,jk->bkde", h, kernel) if hess else None)
    v, g, h = _activate(act, _add(mixed, _quadratic_jet(p[f"w_xs_{i}"], z, jax.nn.softplus, hess)))
  v, g, h = _add((v, g, h), _quadratic_jet(p["pos_def_potentials"], z, jax.nn.relu, hess))
  return v[:, 0], g[:, 0], h[:, 0] if hess else None


def _activate(act, jet):
  """``act`` applied to the units of a jet: ``act'' (grad a)(grad a)^T + act' Hess a``."""
  a, ga, ha = jet
  s0, s1, s2 = act(a)
  if ha is None:
    return s0, s1[..., None] * ga, None
  return (s0, s1[..., None] * ga,
          s2[..., None, None] * ga[..., :, None] * ga[..., None, :] + s1[..., None, None] * ha)


def _quadratic_jet(p, z, rectifier, hess):
  """ott-jax's ``PosDefPotentials``: ``1/2 z^T (A_k A_k^T + diag(r(D_k))) z + l_k . z + c_k``
  for ``k`` outputs, ``[b, d] -> [b, k]``, with gradient ``[b, k, d]`` and Hessian
  ``[1, k, d, d]`` (the same at every point)."""
  diag = rectifier(p["diag_kernel"])                                          # [d, k]
  v = 0.5 * (z ** 2) @ diag
  g = z[:, None, :] * diag.T[None]
  h = jax.vmap(jnp.diag)(diag.T) if hess else None                           # [k, d, d]
  if "quad_kernel" in p:
    A = p["quad_kernel"]                                                      # [k, d, r]
    proj = jnp.einsum("bd,kdr->bkr", z, A)
    v = v + 0.5 * jnp.sum(proj ** 2, -1)
    g = g + jnp.einsum("bkr,kdr->bkd", proj, A)
    if hess:
      h = h + jnp.einsum("kdr,ker->kde", A, A)
  if "lin_kernel" in p:
    v = v + z @ p["lin_kernel"]
    g = g + p["lin_kernel"].T[None]
  if "bias" in p:
    v = v + p["bias"]
  return v, g, h[None] if hess else None


def _soft_max_affine_jet(p, z, hess):
  """``tau logsumexp_k((<z, v_k> + b_k) / tau)``: gradient ``sum_k p_k v_k`` (``p`` the softmax),
  Hessian ``(sum_k p_k v_k v_k^T - g g^T) / tau``."""
  slopes, tau = p["slopes"], jnp.exp(p["log_tau"])
  logits = (z @ slopes.T + p["offsets"]) / tau
  v = tau * jax.nn.logsumexp(logits, -1)
  weights = jax.nn.softmax(logits, -1)                                       # [b, K]
  g = weights @ slopes
  if not hess:
    return v, g, None
  second = jnp.einsum("bk,kd,ke->bde", weights, slopes, slopes)
  return v, g, (second - g[:, :, None] * g[:, None, :]) / tau


def _wall_jet(B, radius, diff, hess):
  """``1/2 (|diff|_B - radius)_+^2`` (``ConvexPotential``'s wall beyond the points)."""
  sym = 0.5 * (B + B.T)
  r = jnp.sqrt(jnp.maximum(jnp.sum(diff * (diff @ B.T), -1), 1e-12))         # [b]
  excess = jnp.maximum(r - radius, 0.0)
  u = diff @ sym                                                              # [b, d]
  v, g = 0.5 * excess ** 2, (excess / r)[:, None] * u
  if not hess:
    return v, g, None
  outer = u[:, :, None] * u[:, None, :]
  beyond = (r > radius).astype(diff.dtype)
  h = ((beyond / r ** 2 - excess / r ** 3)[:, None, None] * outer
       + (excess / r)[:, None, None] * sym)
  return v, g, h
