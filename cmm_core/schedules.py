"""A cosine learning-rate decay whose length can change during a fit (a time budget's steps).

``optax.cosine_decay_schedule`` fixes its number of steps when the optimiser is built, which is
compiled into the training step. A fit with a time budget (``cc.fit(..., max_seconds=S)``, the
Compare page's seconds budget) does not know that number in advance: planned on the step cap, the
rate never decays within the budget, and the fit ends at its full rate (maflow 30 s on two_moons:
0.160 nats above the truth against 0.049 with its steps planned; docs/training.md). Here the
number of steps, the *horizon*, is a value in the optimiser's state: :func:`with_horizon` changes it
between chunks without recompiling, and the training loop sets it from the measured speed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["HorizonState", "scale_by_cosine_horizon", "adam_cosine", "with_horizon"]


class HorizonState(NamedTuple):
  count: jnp.ndarray    # [] int32: updates applied so far
  horizon: jnp.ndarray  # [] float32: the steps the decay runs over


def scale_by_cosine_horizon(learning_rate: float, alpha: float,
                            horizon: int) -> optax.GradientTransformation:
  """Scale updates by ``-lr(count)``, ``lr`` the values of ``optax.cosine_decay_schedule(
  learning_rate, horizon, alpha)``, with ``horizon`` held in the state (:func:`with_horizon`)."""

  def init(params):
    del params
    return HorizonState(jnp.zeros([], jnp.int32), jnp.asarray(max(1, int(horizon)), jnp.float32))

  def update(updates, state, params=None):
    del params
    t = jnp.minimum(state.count.astype(jnp.float32), state.horizon) / state.horizon
    lr = learning_rate * ((1.0 - alpha) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)) + alpha)
    updates = jax.tree_util.tree_map(lambda u: (-lr * u).astype(u.dtype), updates)
    return updates, HorizonState(state.count + 1, state.horizon)

  return optax.GradientTransformation(init, update)


def adam_cosine(learning_rate: float, alpha: float, horizon: int) -> optax.GradientTransformation:
  """``optax.adam`` on a cosine decay to ``alpha * learning_rate`` over ``horizon`` steps, the
  horizon changeable (:func:`with_horizon`)."""
  return optax.chain(optax.scale_by_adam(), scale_by_cosine_horizon(learning_rate, alpha, horizon))


def with_horizon(opt_state, horizon: int):
  """``opt_state`` with every :class:`HorizonState`'s horizon set to ``horizon`` steps (at least
  one); unchanged when it has none (a constant rate). The new value keeps the old one's placement
  (a sharded fit's replicated scalar)."""
  h = float(max(1, int(horizon)))

  def set_one(s):
    return s._replace(horizon=s.horizon * 0.0 + h) if isinstance(s, HorizonState) else s

  return jax.tree_util.tree_map(set_one, opt_state, is_leaf=lambda s: isinstance(s, HorizonState))
