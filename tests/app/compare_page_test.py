"""AppTest of the Compare page: renders, compares two tiny fits, reuses them, keeps a stopped one."""

import dataclasses
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from apptest_utils import TRAIN_TIMEOUT, open_app, small_target

import small_fits  # tests/small_fits.py

import cmm_core as cc

PAGE = "app_pages/compare.py"
TIMEOUT = TRAIN_TIMEOUT  # apptest_utils


def _page(target=None) -> AppTest:
  return open_app(PAGE, target=target)


def _toy(name: str, n: int, d: int) -> dict:
  data = cc.targets.make(name, n, seed=0).astype(np.float32)
  assert data.shape[1] == d
  return {"label": f"{name} (n={n}, seed=0)", "data": data, "columns": None,
          "spec": {"kind": f"{d}D toy", "name": name, "n": n, "seed": 0, "params": {}}}


def _tick(at: AppTest, models) -> None:
  for m in cc.models.names():
    box = at.checkbox(key=f"cmp_use_{m}")
    box.check() if m in models else box.uncheck()


def _steps(at: AppTest, steps: int) -> None:
  at.radio(key="cmp_budget").set_value("steps")
  at.run()
  at.number_input(key="cmp_steps").set_value(steps)


def _charts(at: AppTest) -> list:
  return at.get("plotly_chart")


def test_the_page_renders_with_the_default_target():
  at = _page()
  assert [t.value for t in at.title] == ["Compare models"]
  assert not at.error
  assert at.session_state["target"]["spec"]["name"] == "eight_gaussians"  # created on the way
  assert at.button(key="cmp_go").label == "Compare"
  assert [m for m in cc.models.names() if at.checkbox(key=f"cmp_use_{m}").value] == ["cmm", "maflow"]
  assert any("No comparison yet" in i.value for i in at.info) and not _charts(at)
  at.radio(key="cmp_budget").set_value("seconds")
  at.run()
  assert not at.exception and at.number_input(key="cmp_seconds").value == 30.0


def test_a_tiny_comparison_shows_a_row_per_model_then_reuses_the_cache():
  # mm with the shared small settings on their target (tests/small_fits.py): compiled once a run
  at = _page(small_target())
  _tick(at, ["maflow", "mm"])
  _steps(at, small_fits.STEPS)
  at.text_input(key="cmp_hp_mm").set_value(json.dumps(small_fits.SMALL["mm"]))
  at.button(key="cmp_go").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  df = at.dataframe[0].value
  assert list(df["model"]) == ["mm", "maflow"] and list(df["status"]) == ["done", "done"]
  assert list(df["steps"]) == [20, 20] and not df["cached"].any()
  assert np.all(np.isfinite(df["Sinkhorn div."])) and np.all(np.isfinite(df["held-out NLL"].astype(float)))
  assert (df["params"] > 0).all()
  assert len(_charts(at)) == 6  # base, map, samples for each model
  assert len(at.session_state["cmp_cache"]) == 2
  assert [b.key for b in at.get("download_button")] == ["cmp_table_csv", "cmp_report"]
  fits = {m: at.session_state["cmp_run"]["results"][m]["fitted"] for m in ("mm", "maflow")}

  # The same settings again: nothing is trained, and the page says so.
  at.button(key="cmp_go").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  df = at.dataframe[0].value
  assert df["cached"].all() and len(df) == 2
  assert any("reused from this session's cache" in i.value for i in at.info)
  assert all(at.session_state["cmp_run"]["results"][m]["fitted"] is fits[m] for m in fits)
  assert len(_charts(at)) == 6

  # Redrawing on one range does not retrain.
  at.toggle(key="cmp_one_range").set_value(True)
  at.run(timeout=TIMEOUT)
  assert not at.exception and len(_charts(at)) == 6

  # A comparison cut short (Stop reruns the page mid-training): the model in training is kept as
  # it was at its last chunk, the ones after it are "not run".
  run = at.session_state["cmp_run"]
  mm = run["results"].pop("mm")
  run["results"].pop("maflow")
  running = dataclasses.replace(mm["fitted"], info={**mm["fitted"].info, "status": "running"})
  run["partial"] = {"mm": {"fitted": running, "step": 10, "seconds": 1.0}}
  run["done"] = False
  at.session_state["cmp_run"] = run
  at.button(key="cmp_stop").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  df = at.dataframe[0].value
  assert list(df["status"]) == ["stopped", "not run"] and list(df["steps"])[0] == 10
  assert any("stopped by the user" in w.value for w in at.warning)
  assert len(_charts(at)) == 3  # the stopped model's row; "not run" has no panels


def test_a_1d_target_and_a_model_that_fails_in_its_row():
  at = _page(_toy("mixture", 256, 1))
  _tick(at, ["maflow", "mm"])
  _steps(at, 20)
  at.text_input(key="cmp_hp_maflow").set_value('{"hidden": 4}')
  at.text_input(key="cmp_hp_mm").set_value('{"learning_rate": 5}')  # outside the model's bounds
  at.button(key="cmp_go").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  df = at.dataframe[0].value
  assert list(df["model"]) == ["mm", "maflow"] and list(df["status"]) == ["error", "done"]
  assert list(df["params"])[1] == 4 * 1 + 4 + 4
  assert any("learning_rate" in e.value for e in at.error)  # the message, in mm's row
  assert len(_charts(at)) == 3  # maflow's 1D panels


def test_bad_hyper_parameters_and_no_model_are_messages():
  at = _page(_toy("eight_gaussians", 256, 2))
  at.text_input(key="cmp_hp_maflow").set_value("{hidden: 4")
  at.run()
  assert not at.exception and len(at.error) == 1 and "JSON" in at.error[0].value
  at.text_input(key="cmp_hp_maflow").set_value('{"widht": 4}')
  at.button(key="cmp_go").click()
  at.run()
  assert not at.exception and "widht" in at.error[0].value
  assert "cmp_run" not in at.session_state
  _tick(at, [])
  at.button(key="cmp_go").click()
  at.run()
  assert not at.exception and any("Tick at least one model" in w.value for w in at.warning)


def test_a_3d_target_is_shown_through_the_picked_pair_of_columns():
  data = cc.targets.gaussian(np.zeros(3), np.diag([1.0, 4.0, 0.25]), 256, seed=0).astype(np.float32)
  target = {"label": "3D Gaussian", "data": data, "columns": ["a", "b", "c"],
            "spec": {"kind": "upload", "file": "g.csv", "columns": ["a", "b", "c"], "n": 256}}
  at = _page(target)
  _tick(at, ["maflow"])
  _steps(at, 20)
  at.button(key="cmp_go").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert len(_charts(at)) == 3
  x, y = at.selectbox(key="cmp_dim_x_3"), at.selectbox(key="cmp_dim_y_3")
  assert (x.value, y.value) == (0, 1) and x.options == ["a", "b", "c"]
  y.set_value(2)
  at.run(timeout=TIMEOUT)
  assert not at.exception and len(_charts(at)) == 3
  keys = [k[-1] for k in at.session_state["cmp_panels"]]
  assert (0, 1) in keys and (0, 2) in keys  # drawn again on the new pair
  at.selectbox(key="cmp_dim_x_3").set_value(2)
  at.run(timeout=TIMEOUT)
  assert any("two different" in w.value for w in at.warning) and not _charts(at)
