"""Streamlit AppTest of the app: every page runs without exception and trains end to end."""

import dataclasses

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import cmm_core as cc

from apptest_utils import TRAIN_TIMEOUT, APP, goto, open_app, small_hyper, small_target

import small_fits  # tests/small_fits.py

TIMEOUT = TRAIN_TIMEOUT  # apptest_utils


def _charts(at: AppTest) -> list:
  return at.get("plotly_chart")


def test_home_page():
  at = open_app()
  assert at.title[0].value == "Convex-potential generative models"
  assert len(at.latex) == 1
  assert "factorization" in at.markdown[0].value
  assert not at.error


@pytest.mark.parametrize("page,title", [("app_pages/target.py", "Target"),
                                        ("app_pages/train.py", "Train & explore")])
def test_deep_link_as_first_request(page, title):
  # The first run goes straight to a page (a shared link): it must render once, through app.py.
  at = AppTest.from_file(APP, default_timeout=60)
  at.switch_page(page)
  at.run()
  assert not at.exception, [e.value for e in at.exception]
  assert [t.value for t in at.title] == [title]
  assert at.session_state["target"]["data"].shape == (4096, 2)


def test_target_page_toys_and_gaussian():
  at = goto(open_app(), "app_pages/target.py")
  kind = at.radio(key="tgt_kind")
  assert kind.value == "2D toy" and kind.options == ["1D toy", "2D toy", "Gaussian", "Real data", "Upload", "Draw"]
  tgt = at.session_state["target"]
  assert tgt["spec"]["name"] == "eight_gaussians" and tgt["data"].shape == (4096, 2)
  assert len(_charts(at)) == 1

  toy = at.selectbox(key="tgt_toy2")
  other = [o for o in toy.options if o != "eight_gaussians"][0]
  toy.set_value(other)
  at.select_slider(key="tgt_toy2_n").set_value(1024)
  at.run()
  assert not at.exception and not at.error
  tgt = at.session_state["target"]
  assert tgt["spec"]["name"] == other and tgt["data"].shape == (1024, 2)
  assert tgt["data"].dtype == np.float32 and np.all(np.isfinite(tgt["data"]))

  at.radio(key="tgt_kind").set_value("1D toy")
  at.run()
  assert not at.exception and not at.error
  assert at.session_state["target"]["data"].shape[1] == 1
  assert at.session_state["target"]["spec"]["kind"] == "toy1d"

  at.radio(key="tgt_kind").set_value("Gaussian")
  at.run()
  assert at.session_state["target"]["data"].shape == (4096, 2)
  at.number_input(key="tgt_g2_mx").set_value(3.0)
  at.run()
  assert not at.exception and not at.error
  assert abs(at.session_state["target"]["data"][:, 0].mean() - 3.0) < 0.2
  at.radio(key="tgt_gauss_dim").set_value("1D")
  at.run()
  assert not at.exception and at.session_state["target"]["data"].shape == (4096, 1)


def test_target_page_upload():
  at = goto(open_app(), "app_pages/target.py")
  at.radio(key="tgt_kind").set_value("Upload")
  at.run()
  assert not at.exception and len(at.info) == 1  # "no file yet, the current target is kept"
  rng = np.random.default_rng(0)
  rows = "\n".join(",".join(f"{v:.4f}" for v in r) for r in rng.standard_normal((50, 3)))
  csv = ("a,b,c\n" + rows + "\n1.0,oops,2.0\n").encode()
  at.file_uploader(key="tgt_upload").set_value(("points.csv", csv, "text/csv"))
  at.run()
  assert not at.exception and not at.error
  assert at.multiselect(key="tgt_cols").value == ["a", "b", "c"]
  tgt = at.session_state["target"]
  assert tgt["data"].shape == (50, 3) and tgt["columns"] == ["a", "b", "c"]
  assert tgt["heldout"] is None and any("All 50 rows are fitted" in c.value for c in at.caption)
  assert any("dropped" in w.value.lower() for w in at.warning)
  at.multiselect(key="tgt_cols").set_value(["c"])
  at.run()
  assert at.session_state["target"]["data"].shape == (51, 1)

  at.file_uploader(key="tgt_upload").set_value(("bad.csv", b"x,y\nfoo,bar\n", "text/csv"))
  at.run()
  assert not at.exception and len(at.error) == 1  # a DataError message, not a traceback
  assert at.session_state["target"]["data"].shape == (51, 1)  # the previous target is kept


def test_train_page_trains_and_shows_the_panels():
  at = goto(open_app(), "app_pages/train.py")
  assert not at.error
  assert at.selectbox(key="tr_model").value == "cmm"
  assert at.button(key="tr_train").label == "Train"
  assert len(at.info) == 1 and not _charts(at)  # no model yet
  # The default target is created when the user comes straight here.
  assert at.session_state["target"]["spec"]["name"] == "eight_gaussians"

  # the shared small settings and target (tests/small_fits.py): their training chunk and the
  # panels' functions are compiled once for the whole run
  at.session_state["target"] = small_target()
  at.run()
  small_hyper(at, "cmm")
  at.number_input(key="tr_steps_cmm").set_value(small_fits.STEPS)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  entry = at.session_state["fit"]
  fitted = entry["fitted"]
  assert fitted.info["status"] == "done" and fitted.history[-1]["step"] == 20
  assert fitted.config == small_fits.fit("cmm").config  # the page passes the widgets' settings
  keys = [c.proto.id for c in _charts(at)]
  assert len(keys) == 4  # base, map, samples + loss
  assert any("20 / 20 steps" in m.value for m in at.markdown)

  # Layer toggles redraw without retraining.
  at.toggle(key="tr_same_axes").set_value(False)
  at.run(timeout=TIMEOUT)
  assert not at.exception and len(_charts(at)) == 4
  assert at.session_state["fit"]["uid"] == entry["uid"]

  # A fit captured mid-training (a rerun interrupted it) is still shown, with a warning.
  running = dataclasses.replace(fitted, info={**fitted.info, "status": "running"})
  at.session_state["fit"] = {**entry, "fitted": running}
  at.run(timeout=TIMEOUT)
  assert not at.exception and len(_charts(at)) == 4
  assert any("interrupted" in w.value for w in at.warning)


def test_train_page_shows_errors_not_tracebacks():
  at = goto(open_app(), "app_pages/train.py")
  at.text_input(key="tr_hp_cmm_hidden").set_value("64, wide")
  at.run()
  assert not at.exception and len(at.error) == 1
  at.button(key="tr_train").click()
  at.run()
  assert not at.exception and "Fix the hyper-parameters" in at.error[-1].value
  at.text_input(key="tr_hp_cmm_hidden").set_value("64, 64")
  at.number_input(key="tr_hp_cmm_learning_rate").set_value(0.5)  # out of the model's bounds
  at.number_input(key="tr_steps_cmm").set_value(5)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception
  assert any("learning_rate" in e.value for e in at.error)
  assert "fit" not in at.session_state


def test_sdot_epsilon_experiment_results_are_drawn():
  at = goto(open_app(), "app_pages/train.py")
  at.selectbox(key="tr_model").set_value("sdot")
  at.run()
  assert not at.exception and at.button(key="tr_sweep").label == "Run the epsilon experiment"
  rng = np.random.default_rng(0)
  target = at.session_state["target"]
  at.session_state["sdot_sweep"] = {
      "spec": target["spec"], "data": target["data"],
      "results": [{"epsilon": e, "energy_distance": 0.01, "seconds": 1.0,
                   "samples": rng.normal(size=(100, 2))} for e in (0.0, 0.1)]}
  at.run()
  assert not at.exception, [e.value for e in at.exception]
  assert len(_charts(at)) == 1


def _rings_with_the_measured_settings() -> AppTest:
  """The Train page on rings with maflow, after the one-click measured settings."""
  at = goto(open_app(), "app_pages/train.py")
  assert not any("fits much better" in i.value for i in at.info)  # eight_gaussians: nothing to offer
  spec = {"kind": "toy2d", "name": "rings", "n": 512, "seed": 0, "params": {}}
  at.session_state["target"] = {"label": "rings", "spec": spec, "columns": None,
                                "data": cc.targets.make("rings", n=512, seed=0)}
  at.selectbox(key="tr_model").set_value("maflow")
  at.run()
  assert not at.exception and any("segments=5" in i.value for i in at.info)
  at.button(key="tr_suggest_maflow_rings").click()
  at.run()
  assert not at.exception and not at.warning, [w.value for w in at.warning]
  suggestion = cc.models.get("maflow").suggested["rings"]
  assert at.number_input(key="tr_steps_maflow").value == suggestion["steps"]
  for name, value in suggestion["hyper"].items():
    assert at.number_input(key=f"tr_hp_maflow_{name}").value == value
  assert not any("fits much better" in i.value for i in at.info)  # applied: said as a caption
  assert any("Using the settings measured for **rings**" in c.value for c in at.caption)
  return at


def test_train_page_offers_measured_settings_for_hard_targets():
  """maflow on rings: the page offers the settings of docs/maflow.md in one click."""
  _rings_with_the_measured_settings()


# a maflow of five segments compiles for half a minute: the slow suite (docs/testing.md)
@pytest.mark.slow
def test_the_measured_settings_train():
  at = _rings_with_the_measured_settings()
  suggestion = cc.models.get("maflow").suggested["rings"]
  at.number_input(key="tr_steps_maflow").set_value(5)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception and not at.error, [e.value for e in at.error]
  fitted = at.session_state["fit"]["fitted"]
  assert {k: fitted.config[k] for k in suggestion["hyper"]} == suggestion["hyper"]
