"""cmm_core.hyper: the hyper-parameter schemas and what derives from them (defaults, validation,
the text form of links and the CLI, the app's link restore)."""

import json
import pathlib
import sys
import types
import urllib.parse

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import cli, hyper, models, share
from cmm_core.models import sdot

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the app's helper modules (app_support/link.py), as the app imports them
  sys.path.insert(0, str(ROOT))

ENTRIES = [(m, h) for m in models.names() for h in models.get(m).schema]
IDS = [f"{m}.{h.name}" for m, h in ENTRIES]


def _through_url(params: dict) -> dict:
  query = urllib.parse.urlencode(params, safe=",;:")
  return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


@pytest.mark.parametrize("model", models.names())
def test_defaults_and_unknown_names_come_from_the_schema(model):
  cls = models.get(model)
  assert cls.defaults == hyper.defaults(cls.schema)
  assert len({h.name for h in cls.schema}) == len(cls.schema)
  assert cls().config == cls.defaults
  with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) for .*'nope'"):
    cls(nope=1)


@pytest.mark.parametrize("model, h", ENTRIES, ids=IDS)
def test_every_entry_round_trips_through_its_text_form(model, h):
  assert hyper.check(model, h, h.default) == h.default
  for value in [h.default] + hyper.edge_values(h):
    value = hyper.check(model, h, value)
    text = hyper.format_value(h, value)
    assert hyper.parse(model, h, text) == value, (text, value)
    # and through a link
    params = share.encode(None, train={"model": model, "steps": 5, "seed": 0,
                                       "hyper": {h.name: value}})
    got = share.decode(_through_url(params))
    assert got["problems"] == []
    assert got["train"]["hyper"] == ({} if value == h.default else {h.name: value})


@pytest.mark.parametrize("model, h", ENTRIES, ids=IDS)
def test_every_entry_refuses_invalid_values_by_name(model, h):
  for value in hyper.invalid_values(h):
    with pytest.raises(ValueError) as e:
      hyper.check(model, h, value)
    assert str(e.value).startswith(f"{model}: {h.name} must be "), str(e.value)


def test_messages_say_what_is_expected():
  h = hyper.by_name(sdot.SDOT.schema)["latent_dim"]
  with pytest.raises(ValueError) as e:
    hyper.check("sdot", h, "x")
  assert str(e.value) == "sdot: latent_dim must be an integer in [1, 64] or None, got 'x'"
  with pytest.raises(ValueError, match=r"sdot: learning_rate must be a number in \(0.0, 1.0\]"):
    sdot.SDOT(learning_rate=0.0)
  with pytest.raises(ValueError, match=r"maflow: symmetry must be one of \['none', 'reflection'"):
    cc.models.get("maflow")(symmetry="mirror")
  with pytest.raises(ValueError, match="cmm: hidden must be 1 to 6 layer widths"):
    cc.models.get("cmm")(hidden="64")


def test_values_are_coerced_to_plain_types():
  m = cc.models.get("maflow")(hidden=np.int64(8), step_size=np.float32(0.25), standardize=np.False_,
                              n_steps=10.0)
  assert type(m.config["hidden"]) is int and type(m.config["n_steps"]) is int
  assert type(m.config["step_size"]) is float and m.config["standardize"] is False
  assert sdot.SDOT(hidden=[8, np.int32(4)]).config["hidden"] == (8, 4)


def test_parse_reads_the_usual_spellings():
  by = hyper.by_name(sdot.SDOT.schema)
  assert hyper.parse("sdot", by["latent_dim"], "3") == 3
  assert hyper.parse("sdot", by["latent_dim"], "auto") is None
  assert hyper.parse("sdot", by["latent_dim"], "None") is None
  assert hyper.parse("sdot", by["learning_rate"], "1e-3") == 0.001
  assert hyper.parse("sdot", by["hidden"], "[64, 32]") == (64, 32)
  assert hyper.parse("sdot", by["hidden"], "64 32") == (64, 32)
  assert hyper.parse("sdot", by["activation"], '"tanh"') == "tanh"
  flag = hyper.by_name(cc.models.get("maflow").schema)["standardize"]
  assert [hyper.parse("maflow", flag, t) for t in ("true", "1", "no", "Off")] == [True, True, False,
                                                                               False]
  for h, text in [(by["latent_dim"], "2.5"), (by["hidden"], "64,wide"), (by["epsilon"], "fast"),
                  (flag, "maybe"), (by["latent"], "gaussian"), (by["batch_size"], "1e9")]:
    with pytest.raises(ValueError, match=f"sdot: {h.name} must be|maflow: {h.name} must be"):
      hyper.parse("sdot" if h is not flag else "maflow", h, text)


def test_describe_says_kind_bounds_default_and_help():
  by = hyper.by_name(sdot.SDOT.schema)
  assert hyper.describe(by["latent_dim"]) == (
      "int in [1, 64] or auto (the data dimension), default auto: dimension of the latent")
  assert "log scale" in hyper.describe(by["learning_rate"])
  assert hyper.describe(by["latent"]).startswith("uniform | normal, default uniform")


def test_latent_dim_from_a_link_reaches_the_train_and_compare_pages():
  from app_support import link as _link
  got = share.decode({"target": "two_moons", "model": "sdot", "hp.latent_dim": "3"})
  assert got["problems"] == [] and got["train"]["hyper"] == {"latent_dim": 3}
  assert _link._train_widgets(got["train"])["tr_hp_sdot_latent_dim"] == 3
  got = share.decode({"models": "sdot", "hp.sdot.latent_dim": "3"})
  assert got["problems"] == [] and got["compare"]["hyper"] == {"sdot": {"latent_dim": 3}}
  box = _link._compare_widgets(got["compare"])["cmp_hp_sdot"]
  # what the Compare page reads from its box (app_pages/compare.py _parse_hyper)
  values = hyper.from_json("sdot", sdot.SDOT.schema, json.loads(box))
  assert values == {"latent_dim": 3} and sdot.SDOT(**values).config["latent_dim"] == 3
  assert hyper.from_json("sdot", sdot.SDOT.schema, {"latent_dim": "3", "hidden": [8, 8]}) == {
      "latent_dim": 3, "hidden": (8, 8)}


def test_a_link_value_outside_the_bounds_is_named_and_ignored():
  got = share.decode({"model": "sdot", "hp.latent_dim": "65", "hp.epsilon": "0.5"})
  assert got["train"]["hyper"] == {"epsilon": 0.5}
  assert len(got["problems"]) == 1 and got["problems"][0].startswith("hp.latent_dim='65'")
  assert "[1, 64]" in got["problems"][0]


def test_cli_hyper_is_read_through_the_schema():
  assert cli.parse_hyper("sdot", ["latent_dim=3", "hidden=32,32", "latent=normal"]) == {
      "latent_dim": 3, "hidden": (32, 32), "latent": "normal"}
  assert cli.parse_hyper("maflow", ["standardize=false"]) == {"standardize": False}
  with pytest.raises(ValueError, match="sdot: latent_dim must be"):
    cli.parse_hyper("sdot", ["latent_dim=x"])
  with pytest.raises(cli.UsageError, match="unknown hyper-parameter"):
    cli.parse_hyper("sdot", ["nope=1"])


def test_cli_list_shows_every_hyper_parameter(capsys):
  assert cli.main(["list"]) == 0
  text = capsys.readouterr().out
  for m, h in ENTRIES:
    assert hyper.describe(h) in text, (m, h.name)
  assert cli.main(["list", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["models"]["sdot"]["hyper"]["latent_dim"]["optional"] == "the data dimension"


def test_a_new_hyper_parameter_is_one_line(monkeypatch):
  """A model whose schema gains one entry: defaults, validation, links and the CLI know it."""
  module = types.ModuleType("_hyper_test_models")

  class Extra(sdot.SDOT):
    name = "extra"
    schema = sdot.SDOT.schema + (hyper.Int("extra_steps", 3, 1, 9, "a new setting"),)

  module.Extra = Extra
  monkeypatch.setitem(sys.modules, module.__name__, module)
  monkeypatch.setitem(models._ENTRIES, "extra", f"{module.__name__}:Extra")
  assert Extra.defaults["extra_steps"] == 3 and Extra(extra_steps=9).config["extra_steps"] == 9
  with pytest.raises(ValueError, match=r"extra: extra_steps must be an integer in \[1, 9\]"):
    Extra(extra_steps=10)
  got = share.decode(share.encode(None, train={"model": "extra", "steps": 5, "seed": 0,
                                               "hyper": {"extra_steps": 7}}))
  assert got["problems"] == [] and got["train"]["hyper"] == {"extra_steps": 7}
  assert cli.parse_hyper("extra", ["extra_steps=5"]) == {"extra_steps": 5}
  assert "extra_steps" not in sdot.SDOT.defaults
