"""cmm_core.schedules: a cosine decay whose horizon lives in the optimiser state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import cmm_core as cc
from cmm_core import schedules


def _run(tx, grads):
  params = {"w": jnp.zeros(3)}
  state, out = tx.init(params), []
  for g in grads:
    updates, state = tx.update({"w": g}, state, params)
    out.append(np.asarray(updates["w"]))
  return np.stack(out), state


def test_the_same_updates_as_optax_adam_on_its_cosine_schedule():
  grads = [jnp.asarray(np.random.default_rng(i).normal(size=3), jnp.float32) for i in range(30)]
  oracle, _ = _run(optax.adam(optax.cosine_decay_schedule(1e-2, 20, alpha=0.1)), grads)
  ours, _ = _run(schedules.adam_cosine(1e-2, 0.1, 20), grads)
  np.testing.assert_allclose(ours, oracle, rtol=1e-5, atol=1e-9)  # past the horizon: the floor too


def test_a_new_horizon_changes_the_rate_without_a_new_program():
  tx = schedules.adam_cosine(1.0, 0.0, 1000)
  update = jax.jit(tx.update)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  g = {"w": jnp.ones(2)}
  _, state = update(g, state, params)           # count 1 of 1000: about the full rate
  shorter = schedules.with_horizon(state, 2)    # count 1 of 2: half-way down the cosine
  full, _ = update(g, state, params)
  half, after = update(g, shorter, params)
  assert float(after.horizon if hasattr(after, "horizon") else after[1].horizon) == 2.0
  # adam's first moments are the same in both; only the rate differs: cos(pi/2) -> 0.5
  np.testing.assert_allclose(np.asarray(half["w"]) / np.asarray(full["w"]), 0.5 / (
      0.5 * (1 + np.cos(np.pi / 1000))), rtol=1e-5)
  assert update._cache_size() == 1
  assert schedules.with_horizon(optax.adam(1e-2).init(params), 5) is not None  # no horizon: kept


def test_a_time_budget_plans_the_decay_over_the_steps_it_holds():
  data = cc.targets.make("two_moons", n=512, seed=0)
  settings = dict(steps=100_000, chunk_size=20, hidden=8, batch_size=64)
  first = cc.fit("maflow", data, max_seconds=0.01, **settings)  # compiles, stops after a chunk
  assert first.info["steps_done"] == 20 and "planned_steps" not in first.info  # nothing measured
  info = cc.fit("maflow", data, max_seconds=1.5, **settings).info  # the same program, warm
  assert info["status"] == "stopped" and "time budget" in info["message"]
  # planned from the measured speed: near the steps the budget held (the fit stops at the first
  # chunk past it), far below the cap
  assert info["steps_done"] - 2 * 20 <= info["planned_steps"] <= 2 * info["steps_done"] < 100_000


def _horizons(state):
  found = jax.tree_util.tree_leaves(state, is_leaf=lambda s: isinstance(s, schedules.HorizonState))
  return [float(s.horizon) for s in found if isinstance(s, schedules.HorizonState)]


def test_every_model_with_a_decay_moves_its_horizon():
  # cmm and mm count the optimiser's updates after their burn-in; sdot its generator's steps
  data = jnp.asarray(cc.targets.make("two_moons", n=256, seed=0), jnp.float32)
  for name, planned, moved in (("cmm", 450, 250), ("mm", 450, 250), ("maflow", 500, 300),
                               ("sdot", 500, 300)):
    model = cc.models.get(name)(lr_decay=0.1)
    static, state = model.init(jax.random.PRNGKey(0), data, total_steps=500)
    assert _horizons(state) == [planned], name
    assert _horizons(model.set_horizon(static, state, 300)) == [moved], name
