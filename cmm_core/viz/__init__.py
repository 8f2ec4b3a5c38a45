"""Views of fitted models and of the exact factorizations: arrays and plotly figures (pure; no
Streamlit). Submodules are imported on first use, so ``cmm_core.viz.geometry`` does not load plotly.

- :mod:`~cmm_core.viz.geometry`: point arrays, seeded subsets, boxes (robust ranges, squaring),
  grid lines, polylines, bucketed lengths: the one copy every other module uses.
- :mod:`~cmm_core.viz.panels`: the arrays of the three panels (base, map, samples) of any fitted
  model, its training history and fit summary.
- :mod:`~cmm_core.viz.figures`: the shared style and the figure builders of those panels, the loss
  curve, the target preview and the drawing canvas.
- :mod:`~cmm_core.viz.registry`: model id -> panel titles and the model's own figures.
- :mod:`~cmm_core.viz.flow` (maflow), :mod:`~cmm_core.viz.sdot` (sdot): a model's own figures.
- :mod:`~cmm_core.viz.exact`: arrays and figures of the exact (closed-form and grid) pages.
- :mod:`~cmm_core.viz.energy`: energies ``exp(-E)``: contours, the free-energy curve, spin images,
  the flow / MCMC table (the "Sample an energy" page).
- :mod:`~cmm_core.viz.images`: models of images (the digits): base and mapped grids, nearest
  training images, a mapped path between two base points.

>>> from cmm_core.viz import figures, panels, registry
>>> view = panels.panel_data(fitted, data, n_samples=1000, seed=0)
>>> base_fig, map_fig, samples_fig = figures.panel_figures(view, model=fitted.model)
>>> extra = registry.model_figures(fitted, data, seed=0)      # [(title, figure), ...]
"""

import importlib

__all__ = ["geometry", "panels", "figures", "registry", "flow", "sdot", "exact", "energy", "images"]


def __getattr__(name: str):
  if name in __all__:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
