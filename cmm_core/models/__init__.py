"""Registry of the factorizations: model id -> Model class."""

from __future__ import annotations

from cmm_core.models.base import FittedModel, Model

__all__ = ["FittedModel", "Model", "get", "names", "fitted_class"]

_MODELS: dict = {}


def _registry() -> dict:
  if not _MODELS:
    from cmm_core.models import cmm
    _MODELS.update({"cmm": cmm.CMM})
  return _MODELS


def names() -> list[str]:
  """The model ids that can be fitted, e.g. ``["cmm"]``."""
  return list(_registry())


def get(name: str) -> type[Model]:
  """The Model class for ``name``; raises ValueError for an unknown id."""
  reg = _registry()
  if name not in reg:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(reg)}")
  return reg[name]


def fitted_class(name: str) -> type[FittedModel]:
  """The FittedModel subclass that a saved model with id ``name`` loads into."""
  return get(name).fitted_cls
