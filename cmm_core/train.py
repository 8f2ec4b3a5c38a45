"""The one training loop: any model's ``init``/``step`` run in jit-compiled chunks of steps.

Python overhead is paid once per chunk. A chunk is a ``lax.fori_loop`` whose trip count is a
traced argument (at most the compiled ``chunk_size``), so it compiles once and a chunk of any
length up to that size runs only its own steps: the final partial chunk, and the time-sized chunks
of ``chunk_seconds`` (the app: a redraw every ~0.3 s whatever the model's speed), never recompile.
After each chunk the loop checks for NaN/inf, records a history entry and calls the user's callback.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmm_core import sharding
from cmm_core.models.base import Callback, FittedModel, Model, Static

__all__ = ["run", "compiled_chunk"]


_CHUNK_CACHE: dict = {}
_CHUNK_CACHE_SIZE = 16
_CHUNK_LOCK = threading.Lock()  # the app's sessions fit in parallel threads
FIRST_TIMED_CHUNK = 10  # steps of the first two chunks of a ``chunk_seconds`` fit (before a timing)
DEQUANTIZE_TAG = 0x5EED  # folded into a step's key for its fresh dequantisation noise


def compiled_chunk(model: Model, static: Static, chunk: int, n_devices: int = 1,
                   dequantize: bool = False):
  """Returns a jitted ``f(state, key, data, n_active, start) -> (state, metrics [chunk])``.

  Runs ``model.step(static, ...)`` for steps ``start .. start + n_active - 1``
  (``1 <= n_active <= chunk``, traced: any length runs without recompiling, and costs only its own
  steps). Step ``start + i`` draws with ``fold_in(key, start + i)``: the random stream of a fit
  depends on its seed only, not on how its steps are cut into chunks (the app, the CLI and a link
  that opens the same experiment give the same fit). Metrics past ``n_active`` are zeros;
  :func:`run` ignores them.

  The function is cached on ``(model class, static, chunk, n_devices)``: ``step`` is a function of
  its arguments and ``static`` holds everything it reads besides arrays, so fits with the same
  settings share it whatever their data (refitting in the app skips compilation).
  ``n_devices > 1``: the step is partitioned over the first ``n_devices`` devices
  (:mod:`cmm_core.sharding`). ``dequantize``: ``data`` holds whole numbers (integer counts) and
  each step sees ``data + U[0, 1)`` with fresh noise (drawn with ``fold_in(step key,
  DEQUANTIZE_TAG)``, so the model's own draws are those of a plain fit).
  """
  key = (type(model).__module__, type(model).__qualname__, static, chunk, n_devices, bool(dequantize))
  with _CHUNK_LOCK:
    if key in _CHUNK_CACHE:
      _CHUNK_CACHE[key] = _CHUNK_CACHE.pop(key)  # most recently used last
      return _CHUNK_CACHE[key]
  step = functools.partial(model.step, static)
  if dequantize:
    plain = step

    def step(state, key, counts):
      noise = jax.random.uniform(jax.random.fold_in(key, DEQUANTIZE_TAG), counts.shape, counts.dtype)
      return plain(state, key, counts + noise)
  if n_devices > 1:
    run_chunk = _make_chunk(step, chunk, sharding.mesh(n_devices), int(_batch_size(model, static)))
  else:
    run_chunk = _make_chunk(step, chunk)
  with _CHUNK_LOCK:
    while len(_CHUNK_CACHE) >= _CHUNK_CACHE_SIZE and key not in _CHUNK_CACHE:
      _CHUNK_CACHE.pop(next(iter(_CHUNK_CACHE)))  # least recently used
    run_chunk = _CHUNK_CACHE.setdefault(key, run_chunk)  # a parallel fit may have added it
  return run_chunk


def _make_chunk(step_fn, chunk: int, mesh=None, batch_size: int = 0):
  # step_fn(state, key, data) -> (state, metrics)
  # mesh: None = one device (the plain path); else the state keeps its batch layout through the
  # loop and the model's sharding.constrain_batch calls split the per-step batch over the mesh
  pin = ((lambda s: s) if mesh is None
         else (lambda s: sharding.state_constraint(s, mesh, batch_size)))
  # jitted (a fresh wrapper per chunk, so no other chunk shares its trace cache): the metric
  # shapes below and the loop body call it with the same abstract arguments, so the step, most of
  # a chunk's tracing time, is traced once instead of twice
  step = jax.jit(lambda state, key, data: step_fn(state, key, data))

  @jax.jit
  def run_chunk(state, key, data, n_active, start):
    # steps start .. start + n_active - 1 (n_active <= chunk, traced); metrics [chunk] per name,
    # entries past n_active are zeros
    with sharding.active(mesh):
      shapes = jax.eval_shape(lambda s: step(s, key, data)[1], state)  # trace only
      buffers = jax.tree_util.tree_map(lambda a: jnp.zeros((chunk,) + a.shape, a.dtype), shapes)

      def body(i, carry):
        state, buffers = carry
        new_state, metrics = step(state, jax.random.fold_in(key, start + i), data)
        new_state = jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), new_state, state)
        buffers = jax.tree_util.tree_map(lambda buf, m: buf.at[i].set(m), buffers, metrics)
        return pin(new_state), buffers

      state, buffers = jax.lax.fori_loop(0, n_active, body, (pin(state), buffers))
    return pin(state), buffers

  return run_chunk


def _batch_size(model: Model, static: Static):
  """The batch size a fit runs with: the fit's resolved settings (``static.config``: an "auto"
  batch size replaced), else the model's; None for a model without one."""
  value = static.config.get("batch_size")
  return model.config.get("batch_size") if value is None else value


def run(model: Model, data: np.ndarray, *, steps: int, seed: int = 0,
        callback: Optional[Callback] = None, chunk_size: int = 50,
        max_seconds: Optional[float] = None, info: Optional[dict] = None,
        devices: Optional[int] = None, chunk_seconds: Optional[float] = None,
        dequantize: bool = False) -> FittedModel:
  """Trains ``model`` on ``data`` ``[n, d]`` for ``steps`` steps and returns the fit.

  Args:
    model: a :class:`~cmm_core.models.base.Model`.
    data: float32 ``[n, d]``, already validated and prepared.
    steps: number of training steps (>= 1).
    seed: seeds the initialisation and every random draw.
    callback: ``callback(step, record, fitted_so_far)`` after each chunk; returning
      ``False`` stops training, keeping the last parameters.
    chunk_size: steps per compiled chunk (with ``chunk_seconds``: the most steps in a chunk).
    max_seconds: optional wall-clock budget; training stops at the first chunk past it. After
      each chunk from the second on, the steps the rest of the budget holds at the speed measured
      since the first chunk are passed to ``model.set_horizon`` (a learning rate that decays over
      the fit decays over the budget, not over ``steps``) and recorded in ``info["planned_steps"]``.
    info: facts about the data recorded in ``FittedModel.info``.
    devices: None = every visible device when there are several (the batch is split over them;
      see :func:`cmm_core.sharding.plan`), an int ``k`` = the first ``k`` devices, 1 = one device.
      ``info["devices"]`` records the count used.
    chunk_seconds: None = every chunk has ``chunk_size`` steps. A number: chunks are sized to take
      about that many seconds (the steps of the previous chunk timed, the first chunk
      ``FIRST_TIMED_CHUNK`` steps), so callbacks come at a steady rate whatever the model's speed
      (the app's live redraws). The fit is the same as with any other chunking.
    dequantize: ``data`` are integer counts dequantised once (``counts + U[0, 1)``, as
      :func:`cmm_core.datasets.load` gives the digits): ``init`` sees them as given, every step
      sees ``floor(data)`` plus fresh ``U[0, 1)`` noise (see :func:`compiled_chunk`).

  Raises:
    ValueError: ``devices`` is impossible (more than visible, or not dividing the batch size).
  """
  info = dict(info or {})
  info.setdefault("dim", int(data.shape[1]))
  info.setdefault("n_data", int(data.shape[0]))
  info.setdefault("warnings", [])
  chunk = int(max(1, min(chunk_size, steps)))
  if chunk_seconds is not None and not (np.isfinite(chunk_seconds) and chunk_seconds > 0):
    raise ValueError(f"chunk_seconds must be a positive number of seconds, got {chunk_seconds!r}")
  data_j = jnp.asarray(data, dtype=jnp.float32)
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  static, state = model.init(init_key, data_j, total_steps=steps)
  batch_size = _batch_size(model, static)  # "auto" batch sizes are known once init has seen the rows
  n_dev, why = sharding.plan(devices, batch_size)
  if why:
    info["warnings"] = [*info["warnings"], why]
  info["devices"] = n_dev
  run_chunk = compiled_chunk(model, static, chunk, n_dev, dequantize)
  if dequantize:
    data_j = jnp.floor(data_j)   # the counts; each step adds its own noise
    info["dequantize"] = "fresh U[0, 1) noise on the counts at every step"
  mesh = None
  if n_dev > 1:
    mesh = sharding.mesh(n_dev)
    state = sharding.shard_state(state, mesh, int(batch_size))
    data_j, key = sharding.replicate((data_j, key), mesh)
  # fitted models hold one-device arrays, as in a one-device fit
  local = (lambda s: s) if mesh is None else (lambda s: sharding.unshard(s, mesh))

  history: list = []
  status, message = "done", ""
  t0 = time.perf_counter()
  done = 0
  timed_from = None  # (steps, seconds) at the end of the first chunk, which holds the compilation
  length = chunk if chunk_seconds is None else min(chunk, FIRST_TIMED_CHUNK)
  while done < steps:
    n_active = min(length, steps - done)
    t_chunk = time.perf_counter()
    new_state, metrics = run_chunk(state, key, data_j, n_active, done)
    metrics = {k: np.asarray(v)[:n_active] for k, v in metrics.items()}
    if chunk_seconds is not None and done > 0:  # the first chunk holds the compilation
      per_step = (time.perf_counter() - t_chunk) / n_active
      length = int(min(chunk, max(1, round(chunk_seconds / max(per_step, 1e-9)))))
    finite = all(np.all(np.isfinite(v)) for v in metrics.values()) and model.params_finite(new_state)
    if not finite:
      status = "diverged"
      message = (f"training produced NaN/inf between steps {done} and {done + n_active}; "
                 f"kept the parameters of step {done}. {model.divergence_hint()}")
      break
    state = new_state
    done += n_active
    record = {"step": done, "seconds": time.perf_counter() - t0}
    record.update({k: float(np.mean(v)) for k, v in metrics.items()})
    history.append(record)
    if callback is not None:
      fitted = model.finalize(static, local(state), list(history),
                              {**info, "status": "running", "message": ""})
      if callback(done, record, fitted) is False:
        status, message = "stopped", f"stopped by the user at step {done}"
        break
    if max_seconds is not None and record["seconds"] >= max_seconds and done < steps:
      status, message = "stopped", f"time budget of {max_seconds:g} s reached at step {done}"
      break
    if max_seconds is not None:  # the schedule's horizon: the steps the budget's rest will hold
      if timed_from is None:
        timed_from = (done, record["seconds"])
      elif record["seconds"] > timed_from[1]:
        per_step = (record["seconds"] - timed_from[1]) / (done - timed_from[0])
        planned = done + int((max_seconds - record["seconds"]) / per_step)
        info["planned_steps"] = int(min(steps, max(done + 1, planned)))
        state = model.set_horizon(static, state, info["planned_steps"])
  info.update(status=status, message=message, steps_done=done,
              fit_seconds=time.perf_counter() - t0)
  return model.finalize(static, local(state), history, info)
