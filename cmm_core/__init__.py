"""cmm_core: convex-potential generative models in JAX.

>>> import cmm_core as cc
>>> data = cc.targets.make("eight_gaussians", n=4096, seed=0)
>>> fitted = cc.fit("cmm", data, seed=0)
>>> fitted.sample(1000, seed=1).shape
(1000, 2)
"""

from cmm_core import closed_form, datasets, energies, image_metrics, metrics, models, targets
from cmm_core.api import fit, fit_energy
from cmm_core.errors import DataError, TrainingError
from cmm_core.io import load
from cmm_core.models.base import FittedModel

__all__ = ["fit", "fit_energy", "load", "targets", "datasets", "energies", "image_metrics", "models", "metrics", "closed_form",
           "DataError", "TrainingError", "FittedModel"]
