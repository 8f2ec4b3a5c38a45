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

__all__ = ["fit", "fit_energy", "load", "targets", "datasets", "energies", "image_metrics", "models",
           "metrics", "closed_form", "DataError", "TrainingError", "FittedModel"]

_SUBMODULES = ("closed_form", "datasets", "energies", "image_metrics", "metrics", "models", "targets")
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
