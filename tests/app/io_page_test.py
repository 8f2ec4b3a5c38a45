"""Train & explore page: downloading the model and samples, and exploring a saved model file."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest_utils import TRAIN_TIMEOUT, open_app, small_hyper

import cmm_core as cc
import small_fits  # tests/small_fits.py
from cmm_core import io

TIMEOUT = TRAIN_TIMEOUT  # apptest_utils


def _train_page() -> AppTest:
  return open_app("app_pages/train.py")


def _ok(at: AppTest) -> None:
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]


def _download_keys(at: AppTest) -> list:
  return [b.key for b in at.get("download_button")]


@pytest.fixture(scope="module")
def saved_model():
  """The shared small maflow fit (tests/small_fits.py) and its file's bytes, as the library saves them."""
  fitted = small_fits.fit("maflow")
  return fitted, io.to_bytes(fitted)


def test_download_buttons_appear_after_a_fit():
  at = _train_page()
  assert not _download_keys(at)  # no model yet
  at.selectbox(key="tr_model").set_value("maflow")
  at.run()
  small_hyper(at, "maflow")  # tests/small_fits.py's settings: compiled once a run
  at.number_input(key="tr_steps_maflow").set_value(10)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  _ok(at)
  assert at.session_state["fit"]["fitted"].history[-1]["step"] == 10
  assert _download_keys(at) == ["tr_dl_model", "tr_dl_samples", "tr_dl_report"]
  assert at.get("download_button")[0].label == "Download the model"
  assert at.get("download_button")[1].label == "Download 2000 samples (CSV)"
  at.number_input(key="tr_dl_n").set_value(500)
  at.run(timeout=TIMEOUT)
  _ok(at)
  assert at.get("download_button")[1].label == "Download 500 samples (CSV)"


def test_a_saved_model_becomes_the_current_fit(saved_model):
  fitted, blob = saved_model
  at = _train_page()
  at.file_uploader(key="tr_saved_upload").set_value(("moons.msgpack", blob, "application/octet-stream"))
  at.run(timeout=TIMEOUT)
  _ok(at)
  entry = at.session_state["fit"]
  assert entry["file"] == "moons.msgpack" and entry["fitted"].model == "maflow"
  assert entry["data"].shape == (4096, 2)  # the current target (2D, like the model)
  np.testing.assert_array_equal(entry["fitted"].sample(200, seed=1), fitted.sample(200, seed=1))
  assert any("Loaded from **moons.msgpack**" in i.value for i in at.info)
  assert len(at.get("plotly_chart")) >= 4  # base, map, samples, loss (+ maflow's own views)
  assert any("held-out NLL" in m.value for m in at.markdown)
  assert _download_keys(at) == ["tr_dl_model", "tr_dl_samples", "tr_dl_report"]
  uid = entry["uid"]

  # A rerun keeps the file in the widget: the model is not loaded again.
  at.toggle(key="tr_same_axes").set_value(False)
  at.run(timeout=TIMEOUT)
  _ok(at)
  assert at.session_state["fit"]["uid"] == uid


def test_a_saved_model_of_another_dimension_is_shown_without_data(saved_model):
  _, blob = saved_model
  at = _train_page()
  one_d = cc.targets.make("gaussian", n=500, seed=0)
  at.session_state["target"] = {"label": "gaussian", "data": one_d, "columns": None,
                                "spec": {"kind": "toy1d", "name": "gaussian", "n": 500, "seed": 0,
                                         "params": {}}}
  at.file_uploader(key="tr_saved_upload").set_value(("moons.msgpack", blob, "application/octet-stream"))
  at.run(timeout=TIMEOUT)
  _ok(at)
  entry = at.session_state["fit"]
  assert entry["data"].shape == (0, 2)
  assert any("without data" in i.value for i in at.info)
  assert len(at.get("plotly_chart")) == 4  # the three panels and the loss
  assert not any("NLL" in m.value for m in at.markdown)


def test_a_bad_model_file_gives_an_error_and_keeps_the_fit(saved_model):
  _, blob = saved_model
  at = _train_page()
  at.file_uploader(key="tr_saved_upload").set_value(("bad.msgpack", b"not a model", "application/octet-stream"))
  at.run(timeout=TIMEOUT)
  assert not at.exception
  assert len(at.error) == 1 and "not a cmm_core model file" in at.error[0].value
  assert "fit" not in at.session_state and not _download_keys(at)

  at.file_uploader(key="tr_saved_upload").set_value(("good.msgpack", blob, "application/octet-stream"))
  at.run(timeout=TIMEOUT)
  _ok(at)
  uid = at.session_state["fit"]["uid"]
  truncated = blob[: len(blob) // 2]
  at.file_uploader(key="tr_saved_upload").set_value(("cut.msgpack", truncated, "application/octet-stream"))
  at.run(timeout=TIMEOUT)
  assert not at.exception and len(at.error) == 1 and "cut.msgpack" in at.error[0].value
  assert at.session_state["fit"]["uid"] == uid  # the previous fit is kept
