"""Tests for cmm_core.viz.registry: every model has its views in one entry."""

import numpy as np

import cmm_core as cc
from cmm_core.viz import registry


def test_every_model_has_an_entry_and_every_figures_function_exists():
  assert set(registry.VIEWS) == set(cc.models.names())
  for model, entry in registry.VIEWS.items():
    labels = registry.labels_for(model)
    assert labels["base"] == entry.base and labels["samples"] == "samples vs data"
    if entry.figures is not None:
      module, name = entry.figures.split(":")
      assert callable(getattr(__import__(module, fromlist=[name]), name)), model


def test_labels_and_figures_of_models_without_an_entry():
  assert "e<sup>−u</sup>" in registry.labels_for("mm")["base"]
  assert registry.labels_for("something-new")["map"] == "transport map T"
  assert registry.labels_for(None) == registry.labels_for("something-new")
  assert registry.has_figures("maflow") and registry.has_figures("sdot")
  assert not registry.has_figures("cmm") and not registry.has_figures("something-new")

  class Fitted:
    model = "cmm"

  assert registry.model_figures(Fitted(), np.zeros((10, 2))) == []
