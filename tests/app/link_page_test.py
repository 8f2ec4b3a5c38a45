"""Shareable links: a session opened with a query string gets its target and settings, and the
pages write what is on screen back into the query string."""

import json

import numpy as np

from apptest_utils import open_app, run

import cmm_core as cc
from cmm_core import share, targets


def _query(at) -> dict:
  return {k: at.query_params[k][-1] if isinstance(at.query_params[k], list) else at.query_params[k]
          for k in at.query_params}


def test_a_train_link_restores_the_target_model_and_settings():
  at = open_app("app_pages/train.py", query={
      "target": "two_moons", "n": "1024", "data_seed": "5", "t.noise": "0.2", "model": "cmm",
      "steps": "300", "seed": "4", "hp.learning_rate": "0.005", "hp.hidden": "32,32"})
  assert not at.warning, [w.value for w in at.warning]
  tgt = at.session_state["target"]
  expected = targets.make("two_moons", 1024, seed=5, noise=0.2)
  np.testing.assert_array_equal(np.asarray(tgt["data"]), expected.astype(np.float32))
  assert at.selectbox(key="tr_model").value == "cmm"
  assert at.number_input(key="tr_steps_cmm").value == 300
  assert at.number_input(key="tr_seed").value == 4
  assert at.number_input(key="tr_hp_cmm_learning_rate").value == 0.005
  assert at.text_input(key="tr_hp_cmm_hidden").value == "32, 32"
  # the page writes the same experiment back, and shows the link
  got = share.decode(_query(at))
  assert got["problems"] == [] and got["target"] == tgt["spec"]
  assert got["train"] == {"model": "cmm", "steps": 300, "seed": 4,
                          "hyper": {"learning_rate": 0.005, "hidden": (32, 32)}}
  assert any("target=two_moons" in c.value and "hp.hidden=32,32" in c.value for c in at.code)


def test_a_sdot_link_with_latent_dim_fills_its_widget():
  # was: latent_dim (default None) had no widget, so the link's value was dropped without a word
  at = open_app("app_pages/train.py", query={"target": "two_moons", "model": "sdot",
                                         "hp.latent_dim": "3"})
  assert not at.warning, [w.value for w in at.warning]
  assert not at.error, [e.value for e in at.error]
  assert at.selectbox(key="tr_model").value == "sdot"
  assert at.number_input(key="tr_hp_sdot_latent_dim").value == 3
  assert share.decode(_query(at))["train"]["hyper"] == {"latent_dim": 3}
  at.number_input(key="tr_hp_sdot_latent_dim").set_value(None)  # empty: auto, the default
  run(at)
  assert "hp.latent_dim" not in _query(at)


def test_the_target_page_shows_the_linked_target_and_follows_the_widgets():
  at = open_app("app_pages/target.py", home_first=False, query={
      "target": "normal", "mean": "1,-2", "std": "0.5,1.5", "angle": "45", "n": "512"})
  assert at.radio(key="tgt_kind").value == "Gaussian"
  assert at.radio(key="tgt_gauss_dim").value == "2D"
  assert (at.number_input(key="tgt_g2_mx").value, at.number_input(key="tgt_g2_my").value) == (1, -2)
  assert at.slider(key="tgt_g2_angle").value == 45
  assert at.session_state["target"]["data"].shape == (512, 2)
  at.slider(key="tgt_g2_angle").set_value(90)
  run(at)
  assert _query(at)["angle"] == "90" and _query(at)["target"] == "normal"
  at.radio(key="tgt_kind").set_value("Real data")
  run(at)
  assert _query(at)["target"] == "data.old_faithful" or _query(at)["target"].startswith("data.")


def test_a_real_data_link_and_a_typed_points_link():
  at = open_app("app_pages/target.py", home_first=False, query={
      "target": "data.iris", "columns": "petal_length_cm,sepal_width_cm", "standardize": "1"})
  assert at.selectbox(key="tgt_real").value == "iris"
  assert at.multiselect(key="tgt_real_cols_iris").value == ["petal_length_cm", "sepal_width_cm"]
  tgt = at.session_state["target"]
  whole = np.concatenate([tgt["data"], tgt["heldout"]])  # the table standardised, then split
  np.testing.assert_allclose(whole.mean(0), 0, atol=1e-5)
  assert tgt["data"].shape == (120, 2) and tgt["heldout"].shape == (30, 2)
  at = open_app("app_pages/target.py", home_first=False, query={
      "target": "points", "points": "0,2;-1.7,-1;1.7,-1", "spread": "0.2", "n": "256"})
  assert at.radio(key="tgt_kind").value == "Draw"
  assert at.session_state["target"]["spec"]["points"] == [[0, 2], [-1.7, -1], [1.7, -1]]
  assert at.session_state["target"]["data"].shape == (256, 2)


def test_a_compare_link_ticks_the_models_and_sets_the_budget():
  at = open_app("app_pages/compare.py", query={
      "target": "rings", "models": "maflow,sdot", "budget": "steps:120", "seed": "3",
      "hp.sdot.learning_rate": "0.002"})
  assert [m for m in ("cmm", "mm", "brenier", "maflow", "sdot")
          if at.checkbox(key=f"cmp_use_{m}").value] == ["maflow", "sdot"]
  assert at.radio(key="cmp_budget").value == "steps"
  assert at.number_input(key="cmp_steps").value == 120
  assert at.number_input(key="cmp_seed").value == 3
  assert json.loads(at.text_input(key="cmp_hp_sdot").value) == {"learning_rate": 0.002}
  got = share.decode(_query(at))
  assert got["compare"]["models"] == ["maflow", "sdot"] and got["compare"]["value"] == 120
  assert got["target"]["name"] == "rings"


def test_a_bad_link_says_what_was_ignored_and_keeps_the_rest():
  at = open_app("app_pages/train.py", home_first=False, query={
      "target": "two_moons", "n": "999", "model": "cmm", "steps": "-3",
      "hp.learning_rate": "fast"})
  text = "\n".join(w.value for w in at.warning)
  assert "n='999'" in text and "steps='-3'" in text and "hp.learning_rate='fast'" in text
  assert at.session_state["target"]["spec"]["name"] == "two_moons"  # the rest is used
  assert at.session_state["target"]["data"].shape == (4096, 2)
  assert at.number_input(key="tr_steps_cmm").value == cc.models.get("cmm").default_steps
  assert not at.error
  run(at)  # the warning is shown once
  assert not at.warning


def test_an_uploaded_target_gives_a_link_without_data():
  data = targets.make("two_moons", 64, seed=0).astype(np.float32)
  upload = {"label": "mine.csv", "data": data, "columns": ["a", "b"],
            "spec": {"kind": "upload", "file": "mine.csv", "columns": ["a", "b"], "n": 64}}
  at = open_app("app_pages/train.py", target=upload)
  q = _query(at)
  assert "target" not in q and q["model"] == at.selectbox(key="tr_model").value
  assert any("cannot carry this target" in c.value for c in at.caption)


def test_run_1_starts_the_comparison_as_the_link_opens_and_only_once():
  at = open_app("app_pages/compare.py", home_first=False, query={
      "target": "two_moons", "n": "256", "models": "maflow", "budget": "steps:20", "run": "1"})
  assert not at.error, [e.value for e in at.error]
  df = at.dataframe[0].value
  assert list(df["model"]) == ["maflow"] and list(df["steps"]) == [20]
  assert "run" not in _query(at)  # not written back: a reload is a new session anyway
  n_fits = len(at.session_state["cmp_cache"])
  run(at)
  assert len(at.session_state["cmp_cache"]) == n_fits


def test_run_1_trains_on_the_train_page_but_not_elsewhere():
  query = {"target": "two_moons", "n": "256", "model": "maflow", "steps": "20", "run": "1"}
  at = open_app("app_pages/train.py", home_first=False, query=query)
  assert at.session_state["fit"]["fitted"].model == "maflow"
  assert at.session_state["fit"]["settings"]["steps"] == 20
  at = open_app("app_pages/target.py", home_first=False, query=query)
  assert "fit" not in at.session_state
  assert any("run=1 starts training on the train page" in w.value for w in at.warning)
