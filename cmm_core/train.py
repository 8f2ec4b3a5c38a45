"""The one training loop: any model's ``init``/``step`` run in jit-compiled ``lax.scan`` chunks.

Python overhead is paid once per chunk. Each chunk has the same shapes, so it compiles once
(a final partial chunk masks the extra steps instead of recompiling). After each chunk the
loop checks for NaN/inf, records a history entry and calls the user's callback.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmm_core import sharding
from cmm_core.models.base import Callback, FittedModel, Model

__all__ = ["run", "compiled_chunk"]


_CHUNK_CACHE: dict = {}
_CHUNK_CACHE_SIZE = 16
_CHUNK_LOCK = threading.Lock()  # the app's sessions fit in parallel threads


def compiled_chunk(model: Model, chunk: int, dim: int | None = None, n_devices: int = 1):
  """Returns a jitted ``f(state, key, data, n_active, start) -> (state, metrics [chunk])``.

  Step ``start + i`` draws with ``fold_in(key, start + i)``: the random stream of a fit depends on
  its seed only, not on how its steps are cut into chunks (the app, the CLI and a link that opens
  the same experiment give the same fit). Steps with index ``>= n_active`` leave the state
  unchanged; :func:`run` ignores their metrics.
  Models whose ``cache_key()`` is not None share the compiled function between fits with the
  same settings, data dimension ``dim`` and device count (refitting in the app then skips
  compilation). ``n_devices > 1``: the step is partitioned over the first ``n_devices`` devices
  (:mod:`cmm_core.sharding`).
  """
  key = model.cache_key()
  if key is not None:
    key = (type(model).__name__, key, chunk, dim, n_devices)
    with _CHUNK_LOCK:
      if key in _CHUNK_CACHE:
        return _CHUNK_CACHE[key]
  if n_devices > 1:
    run_chunk = _make_chunk(model, chunk, sharding.mesh(n_devices), int(model.config["batch_size"]))
  else:
    run_chunk = _make_chunk(model, chunk)
  if key is not None:
    with _CHUNK_LOCK:
      while len(_CHUNK_CACHE) >= _CHUNK_CACHE_SIZE and key not in _CHUNK_CACHE:
        _CHUNK_CACHE.pop(next(iter(_CHUNK_CACHE)))
      run_chunk = _CHUNK_CACHE.setdefault(key, run_chunk)  # a parallel fit may have added it
  return run_chunk


def _make_chunk(model: Model, chunk: int, mesh=None, batch_size: int = 0):
  # mesh: None = one device (the plain path); else the state keeps its batch layout through the
  # scan and the model's sharding.constrain_batch calls split the per-step batch over the mesh
  pin = ((lambda s: s) if mesh is None
         else (lambda s: sharding.state_constraint(s, mesh, batch_size)))

  @jax.jit
  def run_chunk(state, key, data, n_active, start):

    def body(state, i):
      new_state, metrics = model.step(state, jax.random.fold_in(key, start + i), data)
      active = i < n_active
      state = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new_state, state)
      return pin(state), metrics

    with sharding.active(mesh):
      state, metrics = jax.lax.scan(body, pin(state), jnp.arange(chunk))
    return pin(state), metrics

  return run_chunk


def run(model: Model, data: np.ndarray, *, steps: int, seed: int = 0,
        callback: Optional[Callback] = None, chunk_size: int = 50,
        max_seconds: Optional[float] = None, info: Optional[dict] = None,
        devices: Optional[int] = None) -> FittedModel:
  """Trains ``model`` on ``data`` ``[n, d]`` for ``steps`` steps and returns the fit.

  Args:
    model: a :class:`~cmm_core.models.base.Model`.
    data: float32 ``[n, d]``, already validated and prepared.
    steps: number of training steps (>= 1).
    seed: seeds the initialisation and every random draw.
    callback: ``callback(step, record, fitted_so_far)`` after each chunk; returning
      ``False`` stops training, keeping the last parameters.
    chunk_size: steps per compiled chunk.
    max_seconds: optional wall-clock budget; training stops at the first chunk past it.
    info: facts about the data recorded in ``FittedModel.info``.
    devices: None = every visible device when there are several (the batch is split over them;
      see :func:`cmm_core.sharding.plan`), an int ``k`` = the first ``k`` devices, 1 = one device.
      ``info["devices"]`` records the count used.

  Raises:
    ValueError: ``devices`` is impossible (more than visible, or not dividing the batch size).
  """
  info = dict(info or {})
  info.setdefault("dim", int(data.shape[1]))
  info.setdefault("n_data", int(data.shape[0]))
  info.setdefault("warnings", [])
  batch_size = getattr(model, "config", {}).get("batch_size")
  n_dev, why = sharding.plan(devices, batch_size)
  if why:
    info["warnings"] = [*info["warnings"], why]
  info["devices"] = n_dev
  chunk = int(max(1, min(chunk_size, steps)))
  data_j = jnp.asarray(data, dtype=jnp.float32)
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  state = model.init(init_key, data_j)
  run_chunk = compiled_chunk(model, chunk, int(data.shape[1]), n_dev)
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
  while done < steps:
    n_active = min(chunk, steps - done)
    new_state, metrics = run_chunk(state, key, data_j, n_active, done)
    metrics = {k: np.asarray(v)[:n_active] for k, v in metrics.items()}
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
      fitted = model.finalize(local(state), list(history),
                              {**info, "status": "running", "message": ""})
      if callback(done, record, fitted) is False:
        status, message = "stopped", f"stopped by the user at step {done}"
        break
    if max_seconds is not None and record["seconds"] >= max_seconds and done < steps:
      status, message = "stopped", f"time budget of {max_seconds:g} s reached at step {done}"
      break
  info.update(status=status, message=message, steps_done=done,
              fit_seconds=time.perf_counter() - t0)
  return model.finalize(local(state), history, info)
