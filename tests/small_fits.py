"""One small configuration per model, shared by the test files that need *a* fit (not a
good one): the same settings on the same data compile one training chunk, which the run's
compilation cache (tests/conftest.py) then serves to every other file and process."""

import cmm_core as cc

# small networks and one MALA/Newton step: each model compiles in a fraction of its defaults' time
_SMALL = {"hidden": (8,), "batch_size": 64, "conjugate_iters": 1, "burn_in": 0}
SMALL = {"cmm": {**_SMALL, "langevin_steps": 1}, "mm": {**_SMALL, "langevin_steps": 1},
         "brenier": _SMALL,
         # 8 hidden units, two RK4 steps / one hidden layer, two dual ascent steps
         "maflow": {"hidden": 8, "n_steps": 2, "batch_size": 64},
         "sdot": {"hidden": (8,), "psi_steps": 2, "batch_size": 64}}
STEPS = 20


def data():
  """two_moons ``[512, 2]``, seed 0."""
  return cc.targets.make("two_moons", n=512, seed=0)


def fit(model: str, seed: int = 0):
  """``model`` fitted for ``STEPS`` steps with its ``SMALL`` settings."""
  return cc.fit(model, data(), steps=STEPS, seed=seed, **SMALL[model])
