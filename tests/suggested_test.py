"""Every model's measured settings (``Model.suggested``, offered on the Train page) are usable."""

import pytest

import cmm_core as cc


@pytest.mark.parametrize("model", cc.models.names())
def test_suggested_settings_name_targets_and_pass_validation(model):
  cls = cc.models.get(model)
  for target, suggestion in cls.suggested.items():
    assert target in cc.targets.names() + cc.datasets.names(), target
    assert set(suggestion) == {"steps", "hyper", "why"}, target
    assert isinstance(suggestion["steps"], int) and suggestion["steps"] > 0
    assert suggestion["why"].strip()
    assert set(suggestion["hyper"]) <= set(cls.defaults), target
    cls(**suggestion["hyper"])  # raises ValueError on a bad value

