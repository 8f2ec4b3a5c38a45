"""cmm_core: convex-potential generative models in JAX.

>>> import cmm_core as cc
>>> data = cc.targets.make("eight_gaussians", n=4096, seed=0)
>>> fitted = cc.fit("cmm", data, seed=0)
>>> fitted.sample(1000, seed=1).shape
(1000, 2)

The names below are imported on first use (PEP 562), so ``import cmm_core`` and the command
line's ``--help`` and usage errors do not wait for JAX and ott-jax to import (about 6 s on a
2-core machine); ``cc.fit`` and friends import them when called.
"""

import importlib
import os
import sys

# XLA:CPU's concurrency-optimised scheduler deadlocks (all threads idle, forever) in the training
# chunk of cmm's energy route from d = 16 with 256 chains (jaxlib 0.10.2; docs/energies.md). The
# option is read when JAX starts its CPU backend, so it is set here, before any computation; a
# user's own XLA_FLAGS setting of it wins.
XLA_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # a private API: assume the worst
    return True


if "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_SCHEDULER_FLAG).strip()
  XLA_SCHEDULER_OFF = not _backend_started()
else:
  XLA_SCHEDULER_OFF = XLA_SCHEDULER_FLAG in os.environ["XLA_FLAGS"]

__all__ = ["fit", "fit_energy", "load", "targets", "datasets", "energies", "image_metrics", "models",
           "metrics", "closed_form", "DataError", "TrainingError", "FittedModel"]

_SUBMODULES = ("api", "closed_form", "datasets", "energies", "image_metrics", "metrics", "models", "targets")
_NAMES = {"fit": "cmm_core.api", "fit_energy": "cmm_core.api", "load": "cmm_core.io",
          "DataError": "cmm_core.errors", "TrainingError": "cmm_core.errors",
          "FittedModel": "cmm_core.models.base"}


def __getattr__(name: str):
  if name in _SUBMODULES:
    return importlib.import_module(f"cmm_core.{name}")
  if name in _NAMES:
    value = getattr(importlib.import_module(_NAMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
  raise AttributeError(f"module 'cmm_core' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
