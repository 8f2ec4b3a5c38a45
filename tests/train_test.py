"""The training loop: chunks of any length from one compilation, callbacks, the NaN guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmm_core import hyper, train
from cmm_core.models.base import FittedModel, Model


class _Fitted(FittedModel):
  model = "toy"

  def sample(self, n, seed=0):
    return np.zeros((n, 1))

  sample_base = sample

  def transport(self, x):
    return x

  def base_log_density(self, x):
    return np.zeros(len(x))


class _Quadratic(Model):
  """Gradient descent on (p - 3)^2; lr > 1 diverges to inf and then NaN."""

  name = "toy"
  schema = (hyper.Float("lr", 0.1, 0.0, 10.0),)

  fitted_cls = _Fitted
  traces = 0  # steps traced, counted on the class (models are frozen)

  def init(self, key, data, total_steps=None):
    return self.static(data, 0), {"p": jnp.zeros(())}

  def step(self, static, state, key, data):
    type(self).traces += 1  # runs only while tracing
    p = state["p"]
    p = p - static.config["lr"] * 2 * (p - 3.0) * 1e3
    return {"p": p}, {"loss": (p - 3.0) ** 2}

  def finalize(self, static, state, history, info):
    return _Fitted(config=static.config, params=state, extras={}, history=history, info=info)


@pytest.fixture(autouse=True)
def _fresh_counts(monkeypatch):
  # compiled chunks are shared by fits with equal settings: start each test with none, so that
  # the trace counts below count this test's compilations
  monkeypatch.setattr(train, "_CHUNK_CACHE", {})
  _Quadratic.traces = _Counting.traces = 0


def test_chunks_compile_once_and_partial_chunk_is_masked():
  m = _Quadratic(lr=1e-4)
  out = train.run(m, np.zeros((10, 1), np.float32), steps=23, chunk_size=5)
  assert m.traces == 1  # the metrics' shapes and the loop body share one trace; never again
  assert [r["step"] for r in out.history] == [5, 10, 15, 20, 23]
  # 23 steps of p <- p - 0.2 (p - 3): p = 3 (1 - 0.8^23)
  np.testing.assert_allclose(float(out.params["p"]), 3 * (1 - 0.8**23), rtol=1e-5)


def test_callback_can_stop_and_keeps_parameters():
  m = _Quadratic(lr=1e-4)
  seen = []

  def cb(step, record, fitted):
    seen.append(step)
    return step < 10

  out = train.run(m, np.zeros((10, 1), np.float32), steps=100, chunk_size=5, callback=cb)
  assert seen == [5, 10]
  assert out.info["status"] == "stopped" and out.info["steps_done"] == 10
  np.testing.assert_allclose(float(out.params["p"]), 3 * (1 - 0.8**10), rtol=1e-5)


def test_nan_stops_training_and_keeps_last_good_parameters():
  m = _Quadratic(lr=1.0)  # p grows by ~2000x a step: inf within a chunk of 50
  out = train.run(m, np.zeros((10, 1), np.float32), steps=500, chunk_size=50)
  assert out.info["status"] == "diverged"
  assert "NaN" in out.info["message"] and "learning rate" in out.info["message"]
  assert np.isfinite(float(out.params["p"])) and float(out.params["p"]) == 0.0


class _Counting(_Quadratic):
  """Counts the steps that really run (a host callback per executed step)."""

  executed = 0
  traces = 0

  def step(self, static, state, key, data):
    def bump():
      type(self).executed += 1
    jax.debug.callback(bump)
    return super().step(static, state, key, data)


@pytest.mark.parametrize("seconds, expected", [
    (100.0, [10, 10, 64, 64, 52]),       # slow target time: chunks grow to the compiled 64
    (1e-9, [10, 10] + [1] * 180)])       # tiny target time: one step a chunk
def test_timed_chunks_give_the_same_fit_without_recompiling(seconds, expected):
  """chunk_seconds sizes the chunks from the measured step time: lengths vary between chunks, the
  chunk function is traced once, only the requested steps run, and the fit equals fixed chunks'."""
  data = np.zeros((10, 1), np.float32)
  fixed = train.run(_Quadratic(lr=1e-4), data, steps=200, chunk_size=7)
  m = _Counting(lr=1e-4)
  _Counting.executed = 0
  lengths = []
  timed = train.run(m, data, steps=200, chunk_size=64, chunk_seconds=seconds,
                    callback=lambda step, record, fitted: lengths.append(step))
  jax.effects_barrier()
  assert _Counting.executed == 200  # a short chunk does not run (and mask) the compiled 64 steps
  assert m.traces == 1
  assert np.diff([0] + lengths).tolist() == expected
  np.testing.assert_array_equal(np.asarray(timed.params["p"]), np.asarray(fixed.params["p"]))
  assert [r["step"] for r in timed.history] == lengths


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_bad_chunk_seconds(bad):
  with pytest.raises(ValueError, match="chunk_seconds"):
    train.run(_Quadratic(), np.zeros((4, 1), np.float32), steps=3, chunk_seconds=bad)


class _SeesData(_Quadratic):
  """Records what each step's data look like: the fraction above the counts, and a checksum."""

  def step(self, static, state, key, data):
    frac = data - jnp.floor(data)
    return state, {"loss": jnp.mean(data), "frac_min": jnp.min(frac), "frac_max": jnp.max(frac),
                   "frac_mean": jnp.mean(frac), "counts": jnp.sum(jnp.floor(data))}


def test_dequantize_redraws_the_noise_on_the_counts_at_every_step():
  rng = np.random.default_rng(0)
  counts = rng.integers(0, 17, size=(500, 4)).astype(np.float32)
  once = counts + rng.uniform(size=counts.shape).astype(np.float32)   # as datasets.load gives them
  out = train.run(_SeesData(), once, steps=6, chunk_size=3, dequantize=True)
  h = out.history
  assert out.info["dequantize"].startswith("fresh U[0, 1) noise")
  # every step sees the same counts plus noise in [0, 1) with mean 1/2 ...
  rows = h
  assert all(r["counts"] == pytest.approx(counts.sum()) for r in rows)
  assert all(0.0 <= r["frac_min"] and r["frac_max"] < 1.0 for r in rows)
  assert all(abs(r["frac_mean"] - 0.5) < 0.02 for r in rows)
  # ... fresh at each step (chunks average their steps: draw one step per chunk to compare)
  per_step = [train.run(_SeesData(), once, steps=k, chunk_size=1, dequantize=True).history[-1]["loss"]
              for k in (1, 2, 3)]
  assert len(set(per_step)) == 3
  again = train.run(_SeesData(), once, steps=3, chunk_size=1, dequantize=True).history[-1]["loss"]
  assert again == per_step[-1]   # the same seed, the same noise
  plain = train.run(_SeesData(), once, steps=1, chunk_size=1).history[-1]["loss"]
  assert plain == pytest.approx(float(np.mean(once)))   # off: the data as given
