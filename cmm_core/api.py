"""``cc.fit``: one entry point for every model."""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from cmm_core import models, train
from cmm_core.models.base import Callback, FittedModel, check_seed
from cmm_core.validation import as_dataset

__all__ = ["fit", "fit_energy", "energy_models", "energy_model", "energy_settings", "MAX_STEPS"]

from cmm_core.limits import MAX_STEPS  # noqa: F401 (re-exported)


def fit(model: str, data, *, steps: Optional[int] = None, seed: int = 0,
        callback: Optional[Callback] = None, max_seconds: Optional[float] = None,
        chunk_size: int = 50, devices: Optional[int] = None,
        chunk_seconds: Optional[float] = None, dequantize: bool = False, **hyper) -> FittedModel:
  """Fits the factorization ``model`` to ``data`` ``[n, d]``.

  Args:
    model: a model id from :func:`cmm_core.models.names`, e.g. ``"cmm"``.
    data: array-like ``[n, d]`` (or ``[n]`` for 1D).
    steps: training steps; ``None`` uses the model's default.
    seed: seeds everything (an integer in ``[0, MAX_SEED]``); the same seed and settings give
      the same fit.
    callback: ``callback(step, record, fitted_so_far)`` after each chunk of steps;
      return ``False`` to stop (the last parameters are kept).
    max_seconds: optional wall-clock budget.
    chunk_size: steps per compiled chunk (callbacks come once per chunk).
    chunk_seconds: None, or size the chunks to take about this many seconds each (at most
      ``chunk_size`` steps): callbacks at a steady rate whatever the model's speed; same fit.
    devices: devices to split each batch over (``docs/sharding.md``): None = all visible ones
      when there are several (falling back, with a warning, when they do not divide the
      batch size), ``k`` = the first ``k`` (the batch size must divide by ``k``), 1 = one device.
      The fit is the same up to float rounding.
    dequantize: the data are integer counts plus ``U[0, 1)`` noise drawn once (the digits as
      :func:`cmm_core.datasets.load` gives them, not standardised): every step redraws the noise
      on ``floor(data)`` (a regulariser; ``info["dequantize"]`` records it). docs/images.md.
    **hyper: the model's hyper-parameters (``cc.models.get(model).schema``; ``python -m cmm_core list``).

  Returns:
    A :class:`~cmm_core.models.base.FittedModel`.

  Raises:
    DataError: the data cannot be used. ValueError: a bad model id, hyper-parameter or argument.
  """
  cls = models.get(model)
  data = as_dataset(data)
  steps, seed, chunk_size, devices, chunk_seconds = _run_args(
      cls, steps, seed, callback, max_seconds, chunk_size, devices, chunk_seconds)
  if not isinstance(dequantize, (bool, np.bool_)):
    raise ValueError(f"dequantize must be True or False, got {dequantize!r}")
  m = cls(**hyper)
  prepared, info = m.prepare(data)
  return train.run(m, prepared, steps=steps, seed=seed, callback=callback,
                   chunk_size=chunk_size, max_seconds=max_seconds, info=info, devices=devices,
                   chunk_seconds=chunk_seconds, dequantize=bool(dequantize))


# model id -> "module:Class" of the models that fit an energy
_ENERGY_MODELS = {"maflow": "cmm_core.models.maflow:MAFlowEnergy",
                  "cmm": "cmm_core.models.cmm_energy:CMMEnergy"}


def energy_models() -> list[str]:
  """The model ids :func:`fit_energy` accepts."""
  return list(_ENERGY_MODELS)


def energy_model(model: str) -> type:
  """The model class :func:`fit_energy` runs for ``model`` (its ``schema``, ``default_steps``);
  ValueError for a model that cannot fit an energy."""
  import importlib
  if not isinstance(model, str) or model not in _ENERGY_MODELS:
    raise ValueError(f"model {model!r} cannot fit an energy; choose one of {sorted(_ENERGY_MODELS)}")
  module, name = _ENERGY_MODELS[model].split(":")
  return getattr(importlib.import_module(module), name)


def energy_settings(model: str, energy) -> tuple[dict, str]:
  """``(hyper, why)``: the settings the app and the benchmark use for ``model`` on ``energy``
  beyond the defaults: an even potential (``symmetry="reflection"``) on a lattice (the Ising
  model's Z2 symmetry) and, for sides from ``lattice_min_side`` (up to ``lattice_max_side`` where
  the model has one), the model's ``lattice_suggested`` settings; the model's ``suggested``
  settings measured for a built-in energy (``{}`` and ``""`` when there are none)."""
  cls = energy_model(model)
  hyper, why = {}, []
  side = getattr(energy, "L", None)
  if side:
    hyper["symmetry"] = "reflection"
    why.append("an even potential for the lattice's Z2 symmetry")
    lattice = getattr(cls, "lattice_suggested", None)
    if lattice and cls.lattice_min_side <= side <= getattr(cls, "lattice_max_side", side):
      hyper.update(lattice["hyper"])
      why.append(lattice["why"])
  suggestion = None if side else cls.suggested.get(getattr(energy, "name", None))
  if suggestion:
    hyper.update(suggestion["hyper"])
    why.append(suggestion["why"])
  return hyper, "; ".join(why)


def fit_energy(model: str, energy, *, steps: Optional[int] = None, seed: int = 0,
               callback: Optional[Callback] = None, max_seconds: Optional[float] = None,
               chunk_size: int = 50, devices: Optional[int] = None,
               chunk_seconds: Optional[float] = None, **hyper) -> FittedModel:
  """Fits ``model`` to an energy: a density ``exp(-E) / Z`` known up to its normalisation.

  The loss is the variational free energy ``F = E_q[log q + E] >= -log Z`` (``-F`` is the ELBO),
  estimated on fresh model samples each step; the history's ``loss`` is ``F``. The same training
  loop as :func:`fit` (chunks, callbacks, stop, NaN guard, determinism, save/load).

  Args:
    model: one of :func:`energy_models`: ``"maflow"`` (the flow's exact log-density, reverse KL)
      or ``"cmm"`` (the Monge-Ampère relation, reverse KL by its score-function gradient).
    energy: a :class:`cmm_core.energies.Energy` (``cc.energies.make("ring")``, a typed formula
      from :func:`cmm_core.formula.parse`, or your own).
    steps, seed, callback, max_seconds, chunk_size, devices, chunk_seconds, **hyper: as in :func:`fit`.

  Returns:
    The model's :class:`~cmm_core.models.base.FittedModel`; ``info`` records the energy's
    ``energy`` name, ``dim`` and ``log_z`` (None when unknown).

  Raises:
    ValueError: a bad model id, energy, hyper-parameter or argument.
  """
  from cmm_core import energies
  cls = energy_model(model)
  if not isinstance(energy, energies.Energy):
    raise ValueError(f"energy must be a cmm_core.energies.Energy (e.g. cc.energies.make('ring')), "
                     f"got {type(energy).__name__}")
  steps, seed, chunk_size, devices, chunk_seconds = _run_args(
      cls, steps, seed, callback, max_seconds, chunk_size, devices, chunk_seconds)
  m = cls(energy, **hyper)
  info = {"dim": energy.dim, "n_data": 0, "energy": energy.label, "log_z": energy.log_z}
  placeholder = np.zeros((1, energy.dim), np.float32)  # the loop's data argument; the step draws its own
  return train.run(m, placeholder, steps=steps, seed=seed, callback=callback, chunk_size=chunk_size,
                   max_seconds=max_seconds, info=info, devices=devices, chunk_seconds=chunk_seconds)


def _run_args(cls, steps, seed, callback, max_seconds, chunk_size, devices, chunk_seconds):
  """Checks the arguments shared by :func:`fit` and :func:`fit_energy`; returns them normalised."""
  if steps is None:
    steps = cls.default_steps
  if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
    raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
  seed = check_seed(seed)
  if not _is_int(chunk_size) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  number = (int, float, np.integer, np.floating)
  if max_seconds is not None and (isinstance(max_seconds, (bool, np.bool_))
                                  or not isinstance(max_seconds, number) or not max_seconds > 0):
    raise ValueError(f"max_seconds must be a positive number of seconds or None, "
                     f"got {max_seconds!r}")
  if callback is not None and not callable(callback):
    raise ValueError(f"callback must be a function or None, got {callback!r}")
  if chunk_seconds is not None and (isinstance(chunk_seconds, (bool, np.bool_))
                                    or not isinstance(chunk_seconds, number)
                                    or not 0 < chunk_seconds < float("inf")):
    raise ValueError(f"chunk_seconds must be a positive number of seconds or None, "
                     f"got {chunk_seconds!r}")
  if devices is not None:
    n_visible = len(jax.devices())
    if not _is_int(devices) or not 1 <= devices <= n_visible:
      raise ValueError(f"devices must be None or an integer in [1, {n_visible}] (the number of "
                       f"visible devices), got {devices!r}")
    devices = int(devices)
  return (int(steps), seed, int(chunk_size), devices,
          None if chunk_seconds is None else float(chunk_seconds))


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
