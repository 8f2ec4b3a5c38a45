"""cmm_core.share: experiments written as query strings and read back."""

import urllib.parse

import pytest

from cmm_core import datasets, models, share, targets

TOY = {"kind": "toy2d", "name": "two_moons", "n": 1024, "seed": 7,
       "params": {"noise": 0.2, "scale": 1.0}}
GAUSS_2D = {"kind": "gaussian", "mean": [1.0, -2.5], "stds": [2.0, 0.25], "angle": 35,
            "n": 512, "seed": 3}
GAUSS_1D = {"kind": "gaussian", "mean": [0.5], "stds": [1.5], "angle": 0, "n": 256, "seed": 0}
REAL = {"kind": "real", "name": "iris", "columns": ["petal_length_cm", "sepal_width_cm"],
        "standardize": True}
TYPED = {"kind": "draw", "mode": "typed", "points": [[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]],
         "spread": 0.3, "n": 2048, "seed": 1}


def _through_url(params: dict) -> dict:
  """What a browser hands back: the params written into a URL and parsed again."""
  query = urllib.parse.urlencode(params, safe=",;:")
  return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


@pytest.mark.parametrize("spec", [TOY, GAUSS_2D, GAUSS_1D, REAL, TYPED],
                         ids=["toy", "gauss2d", "gauss1d", "real", "typed"])
def test_target_round_trip(spec):
  got = share.decode(_through_url(share.encode(spec)))
  assert got["problems"] == []
  assert got["target"] == spec
  assert got["train"] is None and got["compare"] is None


def test_toy_link_lists_only_parameters_that_differ_from_the_defaults():
  params = share.encode({**TOY, "params": {"noise": targets.info("two_moons")["params"]["noise"]
                                                     ["default"], "scale": 1.0}})
  assert not [k for k in params if k.startswith("t.")]
  decoded = share.decode(params)["target"]
  assert decoded["params"] == {p: v["default"] for p, v in
                               targets.info("two_moons")["params"].items()}


def test_train_settings_round_trip_with_typed_hyper_parameters():
  defaults = dict(models.get("cmm").defaults)
  hyper = {"learning_rate": 0.005, "hidden": (32, 16, 8), "langevin_steps": 5,
           "objective": "semidual"}
  bools = [k for k, v in defaults.items() if isinstance(v, bool)]
  if bools:
    hyper[bools[0]] = not defaults[bools[0]]
  train = {"model": "cmm", "steps": 321, "seed": 9, "hyper": hyper}
  got = share.decode(_through_url(share.encode(TOY, train=train)))
  assert got["problems"] == []
  assert got["train"] == train
  assert got["target"] == TOY


def test_compare_settings_round_trip():
  compare = {"models": ["maflow", "cmm", "sdot"], "mode": "seconds", "value": 12.5, "seed": 2,
             "hyper": {"maflow": {"learning_rate": 0.01}, "cmm": {"hidden": (32, 16)}}}
  got = share.decode(_through_url(share.encode(REAL, compare=compare)))
  assert got["problems"] == []
  assert got["compare"] == compare and got["train"] is None
  steps = {**compare, "mode": "steps", "value": 200, "hyper": {}}
  assert share.decode(share.encode(None, compare=steps))["compare"] == steps


def test_uploads_and_drawings_have_no_link_form():
  assert share.encode({"kind": "upload", "file": "x.csv", "columns": ["a"], "n": 20}) == {}
  assert share.encode({"kind": "draw", "mode": "mouse", "cells": [[1, 2]], "n": 9, "seed": 0}) == {}
  got = share.decode({})
  assert got == {"target": None, "train": None, "compare": None, "energy": None, "run": False,
                 "problems": []}


def test_run_is_read_only_with_settings_to_run():
  assert share.decode({"model": "cmm", "run": "1"})["run"] is True
  assert share.decode({"models": "cmm,mm", "run": "1"})["run"] is True
  assert share.decode({"target": "rings", "run": "1"})["run"] is False
  assert share.decode({"model": "cmm"})["run"] is False
  assert "run" not in share.encode(None, train={"model": "cmm", "steps": 5, "seed": 0})


@pytest.mark.parametrize("params, key", [
    ({"target": "nowhere"}, "target"),
    ({"target": "two_moons", "n": "1000"}, "n"),           # not one of the page's sizes
    ({"target": "two_moons", "n": "abc"}, "n"),
    ({"target": "two_moons", "t.noise": "99"}, "t.noise"),  # beyond the slider
    ({"target": "two_moons", "t.turns": "2"}, "t.turns"),   # not a two_moons parameter
    ({"target": "two_moons", "data_seed": "-1"}, "data_seed"),
    ({"target": "normal", "mean": "1,2,3"}, "mean"),
    ({"target": "normal", "std": "0,1"}, "std"),
    ({"target": "normal", "angle": "nan"}, "angle"),
    ({"target": "data.iris", "columns": "petal_length_cm,nope"}, "columns"),
    ({"target": "points", "points": "1,2;3"}, "points"),
    ({"target": "points", "points": "1,2", "spread": "5"}, "spread"),
    ({"model": "gan"}, "model"),
    ({"model": "cmm", "steps": "0"}, "steps"),
    ({"model": "cmm", "steps": "1e9"}, "steps"),
    ({"model": "cmm", "seed": "1.5"}, "seed"),
    ({"model": "cmm", "hp.learning_rate": "fast"}, "hp.learning_rate"),
    ({"model": "cmm", "hp.hidden": "64,x"}, "hp.hidden"),
    ({"model": "cmm", "hp.nothing": "1"}, "hp.nothing"),
    ({"models": "cmm,gan"}, "models"),
    ({"models": "cmm", "budget": "hours:3"}, "budget"),
    ({"models": "cmm", "budget": "steps:-4"}, "budget"),
    ({"models": "cmm", "hp.cmm.nothing": "1"}, "hp.cmm.nothing"),
    ({"model": "cmm", "utm_source": "mail"}, "utm_source"),
])
def test_a_bad_value_is_named_and_ignored(params, key):
  got = share.decode(params)
  assert len(got["problems"]) == 1, got["problems"]
  assert got["problems"][0].startswith(f"{key}=")
  if key == "target" or key == "points":
    assert got["target"] is None
  elif "target" in params:  # the rest of the target is still usable
    assert got["target"] is not None
  if key == "model":
    assert got["train"] is None
  elif "model" in params:
    assert got["train"]["model"] == "cmm" and key[3:] not in got["train"]["hyper"]
  if key in ("steps", "seed"):
    assert got["train"][key] is None
  if key == "budget":
    assert got["compare"]["mode"] == "default"


def test_decoded_values_are_usable_by_the_library():
  """What decode accepts, the library accepts: the toy and the data set are made as decoded."""
  got = share.decode({"target": "rings", "n": "256", "t.n_rings": "3", "t.noise": "0.05"})
  spec = got["target"]
  data = targets.make(spec["name"], spec["n"], seed=spec["seed"], **spec["params"])
  assert data.shape == (256, 2) and spec["params"]["n_rings"] == 3
  assert isinstance(spec["params"]["n_rings"], int)
  real = share.decode({"target": "data.wine"})["target"]
  assert real["columns"] == datasets.info("wine")["default_columns"]
  assert datasets.load("wine", columns=real["columns"]).shape[1] == len(real["columns"])


def test_energy_settings_round_trip_and_bad_values():
  settings = {"source": "builtin", "name": "ising", "params": {"L": 8, "periodic": True, "T": 2.5},
              "models": ["maflow", "cmm"], "steps": 300, "seed": 2, "method": "hmc", "step_size": 0.05}
  params = share.encode(energy=settings)
  assert "e.periodic" not in params and params["e.L"] == "8"  # only what differs from the defaults
  got = share.decode(params)
  assert got["problems"] == [] and got["target"] is None and got["train"] is None
  assert got["energy"] == {**settings, "params": {"L": 8, "T": 2.5}, "mode": None, "value": None}
  assert not got["run"]
  formula = {"source": "formula", "text": "(|x| - 2)^2 / 0.32", "dim": 2, "box": 4.0, "models": ["cmm"],
             "steps": 100, "seed": 0, "method": "nuts", "step_size": 0.1}
  got = share.decode({**share.encode(energy=formula), "run": "1"})
  assert got["energy"] == {**formula, "mode": None, "value": None} and got["run"]
  got = share.decode({"energy": "ising", "e.L": "99", "e.nope": "1", "fit": "sdot", "mcmc": "gibbs",
                      "model": "cmm"})
  assert got["energy"]["params"] == {} and got["energy"]["models"] is None and got["energy"]["method"] is None
  assert len(got["problems"]) == 5 and all("ignored" in p for p in got["problems"])
  assert share.decode({"energy": "nope"})["energy"] is None


def test_a_compare_energy_link_carries_a_budget_instead_of_steps():
  settings = {"source": "builtin", "name": "ring", "params": {}, "models": ["maflow", "cmm"],
              "mode": "seconds", "value": 20.0, "seed": 1, "method": "mala", "step_size": 0.1}
  params = share.encode(energy=settings)
  assert params["budget"] == "seconds:20" and "steps" not in params
  got = share.decode({**params, "run": "1"})
  assert got["problems"] == [] and got["run"]
  assert got["energy"] == {**settings, "steps": None}
  got = share.decode({"energy": "ring", "budget": "steps:99999"})  # over MAX_ENERGY_STEPS
  assert got["energy"]["mode"] == "default" and len(got["problems"]) == 1
  assert share.decode({"energy": "ring", "budget": "steps:300"})["energy"]["value"] == 300
