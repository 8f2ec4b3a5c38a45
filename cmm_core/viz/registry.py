"""The view registry, beside the model registry (:mod:`cmm_core.models`): model id -> its panel
titles and its own figures. A new model adds its views here, in one entry.

Every model gets the three panels of :func:`cmm_core.viz.figures.panel_figures` (base, map,
samples), titled by its entry; a model with more to show names a function
``explore(fitted, data, seed=0) -> [(title, go.Figure), ...]`` that :func:`model_figures` calls
(its module is imported on first use).

>>> labels_for("cmm")["base"]
'base e<sup>−w</sup>'
>>> has_figures("maflow"), has_figures("cmm")
(True, False)
>>> figs = model_figures(fitted, data, seed=0)   # [(title, figure), ...]; [] for cmm
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Optional

__all__ = ["ModelViews", "VIEWS", "GENERIC", "views_for", "labels_for", "has_figures",
           "model_figures"]


@dataclasses.dataclass(frozen=True)
class ModelViews:
  """What a model's views are called and which extra figures it has.

  Attributes:
    base: title of the base panel (plotly HTML allowed).
    map: title of the map panel.
    map_symbol: the map's name in legends and hovers, e.g. ``"∇w*(x)"``.
    figures: ``"module:function"`` building the model's own figures, or None.
  """

  base: str
  map: str
  map_symbol: str
  figures: Optional[str] = None


VIEWS = {
    "cmm": ModelViews("base e<sup>−w</sup>", "transport map ∇w*", "∇w*(x)"),
    "mm": ModelViews("base e<sup>−u</sup>", "transport map ∇u", "∇u(x)"),
    "brenier": ModelViews("base N(0, I)", "Brenier map ∇φ", "∇φ(x)"),
    "maflow": ModelViews("base N(0, I)", "Monge-Ampère flow map", "T(x)",
                         figures="cmm_core.viz.flow:explore_figures"),
    "sdot": ModelViews("latent U[−1, 1]", "generator g<sub>θ</sub>", "g(z)",
                       figures="cmm_core.viz.sdot:explore_figures"),
}
# any model without an entry
GENERIC = ModelViews("base (latent) distribution", "transport map T", "T(x)")


def views_for(model: Optional[str]) -> ModelViews:
  """The entry of ``model`` (:data:`GENERIC` for an id without one)."""
  return VIEWS.get(model or "", GENERIC)


def labels_for(model: Optional[str]) -> dict:
  """Panel titles for a model id: ``{"base", "map", "map_symbol", "samples"}`` (HTML for plotly)."""
  v = views_for(model)
  return {"base": v.base, "map": v.map, "map_symbol": v.map_symbol, "samples": "samples vs data"}


def has_figures(model: Optional[str]) -> bool:
  """Whether ``model`` has figures of its own beyond the three panels."""
  return views_for(model).figures is not None


def model_figures(fitted, data, seed: int = 0) -> list:
  """The extra views a model has beyond the three panels, ``[(title, go.Figure), ...]``.

  ``maflow``: the flow animated, its density over time, its warped grid; ``sdot``: the warped
  latent grid, psi on the data, the (soft) Laguerre cells. Other models: ``[]``.
  """
  spec = views_for(getattr(fitted, "model", None)).figures
  if spec is None:
    return []
  module, name = spec.split(":")
  return getattr(importlib.import_module(module), name)(fitted, data, seed=seed)
