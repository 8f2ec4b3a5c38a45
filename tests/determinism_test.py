"""Determinism: the same seed and settings give the same fit and the same samples, for every model,
also after a save/load round trip and after other fits in the same process.

Already covered elsewhere: ``io_test`` (cmm fitted twice; save/load of cmm, mm, brenier),
``models/maflow_test`` and ``models/sdot_test`` (save/load), ``cli_test`` (``sample`` twice).
Added here: the same-seed fit of every model, that the training seed matters, ``sample_base`` and
``sample`` repeatable per seed and different across seeds, and that the compiled-chunk cache shared
by fits with equal settings does not carry one fit's data into another. Tiny fits; models other
than maflow take half a minute to compile on two CPU cores, so their tests are ``slow``.
"""

import json

import jax
import numpy as np
import pytest

import cmm_core as cc
from cmm_core import train

X = cc.targets.make("two_moons", 128, seed=0)
OTHER = cc.targets.make("rings", 192, seed=5)
TINY = {
    "cmm": dict(hidden=(8,), batch_size=16, langevin_steps=1, conjugate_iters=1, burn_in=0),
    "mm": dict(hidden=(8,), batch_size=16, langevin_steps=1, conjugate_iters=1, burn_in=0),
    "brenier": dict(hidden=(8,), batch_size=16, conjugate_iters=1, burn_in=0),
    "maflow": dict(hidden=4, n_steps=1, batch_size=16),
    "sdot": dict(hidden=(8,), batch_size=16, psi_steps=1, max_data=100),
}
FAST = ("maflow",)
STEPS = 3


def _fit(model, data=X, seed=0):
  return cc.fit(model, data, steps=STEPS, seed=seed, chunk_size=2, **TINY[model])


def _by_speed(models):
  return [pytest.param(m, marks=() if m in FAST else pytest.mark.slow) for m in models]


def _assert_same_params(a, b):
  la, lb = jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _losses(fitted):
  return [{k: v for k, v in r.items() if k != "seconds"} for r in fitted.history]


@pytest.mark.parametrize("model", _by_speed(cc.models.names()))
def test_same_seed_same_fit_same_samples(model, tmp_path):
  a, b = _fit(model), _fit(model)
  assert a.info["steps_done"] == b.info["steps_done"] == STEPS
  _assert_same_params(a, b)
  assert _losses(a) == _losses(b)
  for seed in (0, 7):
    np.testing.assert_array_equal(a.sample(64, seed=seed), b.sample(64, seed=seed))
    np.testing.assert_array_equal(a.sample_base(64, seed=seed), b.sample_base(64, seed=seed))
  # the sample seed matters, and asking twice gives the same points
  assert not np.array_equal(a.sample(64, seed=0), a.sample(64, seed=1))
  np.testing.assert_array_equal(a.sample(64, seed=1), a.sample(64, seed=1))
  # the training seed matters
  c = _fit(model, seed=1)
  assert not np.array_equal(a.sample(64, seed=0), c.sample(64, seed=0))
  # a saved and loaded model gives the same points
  path = tmp_path / f"{model}.msgpack"
  a.save(path)
  loaded = cc.load(path)
  assert json.dumps(loaded.config, sort_keys=True) == json.dumps(a.config, sort_keys=True)  # tuples
  np.testing.assert_array_equal(loaded.sample(64, seed=3), a.sample(64, seed=3))
  np.testing.assert_array_equal(loaded.sample_base(64, seed=3), a.sample_base(64, seed=3))
  z = a.sample_base(16, seed=4)
  np.testing.assert_array_equal(loaded.transport(z), a.transport(z))


@pytest.mark.parametrize("model", _by_speed(m for m in cc.models.names() if m != "maflow"))
def test_a_fit_in_between_changes_nothing(model, monkeypatch):
  # cmm, mm and brenier reuse the compiled training chunk of an earlier fit with equal settings
  # (train._CHUNK_CACHE): it must not carry that fit's data (e.g. mm's centring, the Gaussian
  # guess) into the next one
  first = _fit(model)
  other = _fit(model, OTHER)
  again = _fit(model)
  _assert_same_params(first, again)
  np.testing.assert_array_equal(first.sample(64, seed=2), again.sample(64, seed=2))
  monkeypatch.setattr(train, "_CHUNK_CACHE", {})  # the same fit compiled afresh
  fresh = _fit(model, OTHER)
  _assert_same_params(other, fresh)
  np.testing.assert_array_equal(other.sample(64, seed=2), fresh.sample(64, seed=2))


@pytest.mark.parametrize("model", _by_speed(["maflow", "sdot"]))
def test_the_chunk_size_does_not_change_the_fit(model):
  """Each step's random key comes from the seed and the step number, so the app (chunks of 10-50
  steps), the CLI and cc.fit (50) give the same fit for the same seed and settings."""
  fits = [cc.fit(model, X, steps=7, seed=3, chunk_size=c, **TINY[model]) for c in (1, 3, 50)]
  for other in fits[1:]:
    for x, y in zip(jax.tree_util.tree_leaves(fits[0].params), jax.tree_util.tree_leaves(other.params)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(other.sample(64, seed=0), fits[0].sample(64, seed=0),
                               rtol=1e-5, atol=1e-6)
  # a different seed is a different fit (the check above can fail)
  assert not np.allclose(cc.fit(model, X, steps=7, seed=4, chunk_size=3, **TINY[model]).sample(64),
                         fits[0].sample(64))
