"""The digits in the app: the Target page previews images, and the Train page shows a fitted
model's base grid, mapped grid, nearest training images and mapped path (a file of its own: one
fit of 64-dimensional data)."""

import numpy as np

from apptest_utils import TRAIN_TIMEOUT, goto, ok, open_app


def test_digits_from_the_target_page_to_the_image_views():
  at = goto(open_app(), "app_pages/target.py")
  at.radio(key="tgt_kind").set_value("Real data")
  ok(at.run())
  at.selectbox(key="tgt_real").set_value("digits")
  ok(at.run(), errors=True)
  tgt = at.session_state["target"]
  assert tgt["data"].shape == (1438, 64) and tgt["heldout"].shape == (359, 64)
  assert not at.multiselect  # images are fitted whole: no column picker
  preview = [c for c in at.get("plotly_chart") if "tgt_preview_images" in str(c.proto.id)]
  assert preview, "the preview is a grid of images"

  goto(at, "app_pages/train.py")
  at.selectbox(key="tr_model").set_value("maflow")
  at.run()
  assert any("time_dependent=True" in i.value for i in at.info)  # the settings measured on the digits
  at.number_input(key="tr_steps_maflow").set_value(5)
  at.button(key="tr_train").click()
  ok(at.run(timeout=TRAIN_TIMEOUT), errors=True)
  fitted = at.session_state["fit"]["fitted"]
  assert fitted.dim == 64 and fitted.history[-1]["step"] == 5
  assert "fresh U[0, 1) noise" in fitted.info["dequantize"]  # the counts' noise redrawn every step
  ids = " ".join(str(c.proto.id) for c in at.get("plotly_chart"))
  for key in ("tr_img_base", "tr_img_mapped", "tr_img_nearest", "tr_img_path", "tr_img_data"):
    assert key in ids, key
  assert "tr_panel_base" not in ids  # the pixel-pair panels only on request
  line = next(m.value for m in at.markdown if "c2st" in m.value)
  assert "NN ratio" in line and "bits/dim" in line
  view = at.session_state["image_views"]["view"]
  assert view["mapped"].shape == (32, 64) and np.all(np.isfinite(view["mapped"]))
  # complete the hidden bottom half of a held-out digit, twice, next to the Gaussian conditional
  at.number_input(key="tr_inp_k").set_value(2)
  from cmm_core import inpaint
  assert at.number_input(key="tr_inp_steps").value == inpaint.DEFAULT_STEPS
  at.number_input(key="tr_inp_steps").set_value(20)  # 400 steps took 13-15 s per click here
  at.button(key="tr_inp_go").click()
  ok(at.run(timeout=TRAIN_TIMEOUT), errors=True)
  rows = at.session_state["inpaint"]["rows"]
  assert [name for name, _ in rows] == ["maflow", "Gaussian conditional"], at.warning
  held = at.session_state["fit"]["heldout"][0]
  for _, completions in rows:
    assert completions.shape == (2, 64)
    np.testing.assert_array_equal(completions[:, :32], np.repeat(held[None, :32], 2, 0))  # kept
  assert any("digit classifier" in c.value for c in at.caption)
  # the brush: the image with a marker per pixel, nothing hidden until the user selects some
  from cmm_core.viz import images
  at.selectbox(key="tr_inp_mask").set_value(images.BRUSH)
  ok(at.run(timeout=TRAIN_TIMEOUT), errors=True)
  assert "tr_inp_brush" in " ".join(str(c.proto.id) for c in at.get("plotly_chart"))
  assert any("Select the pixels to hide" in c.value for c in at.caption)
  # what a box selection over the lower-right quarter leaves in the session (the on_select callback)
  hidden = np.zeros((8, 8), bool)
  hidden[4:, 4:] = True
  at.session_state["tr_inp_hidden"] = {"idx": 0, "hidden": hidden.ravel().tolist()}
  at.button(key="tr_inp_go").click()
  ok(at.run(timeout=TRAIN_TIMEOUT), errors=True)
  done = at.session_state["inpaint"]
  np.testing.assert_array_equal(done["mask"], ~hidden.ravel())
  for _, completions in done["rows"]:
    np.testing.assert_array_equal(completions[:, ~hidden.ravel()],
                                  np.repeat(held[None, ~hidden.ravel()], 2, 0))
  at.toggle(key="tr_pixel_panels").set_value(True)
  ok(at.run(timeout=TRAIN_TIMEOUT), errors=True)
  assert "tr_panel_base" in " ".join(str(c.proto.id) for c in at.get("plotly_chart"))


def test_an_upload_of_square_images_is_fitted_whole_and_dequantised():
  from cmm_core import datasets, target_spec
  rows = np.floor(datasets.load("digits")[:150]).astype(int)
  text = ",".join(f"px{j}" for j in range(64)) + "\n" + "\n".join(",".join(map(str, r)) for r in rows)
  at = goto(open_app(), "app_pages/target.py")
  at.radio(key="tgt_kind").set_value("Upload")
  ok(at.run())
  at.file_uploader(key="tgt_upload").set_value(("digits.csv", text.encode(), "text/csv"))
  ok(at.run(), errors=True)
  tgt = at.session_state["target"]
  assert target_spec.image_shape(tgt["spec"]) == (8, 8) and tgt["data"].shape == (120, 64)
  frac = tgt["data"] - np.floor(tgt["data"])
  assert 0.3 < frac.mean() < 0.7  # uniform noise on whole numbers (constant pixels would be refused)
  assert target_spec.dequantized_counts(tgt["spec"])  # so fits redraw that noise at every step
  assert "tgt_preview_images" in " ".join(str(c.proto.id) for c in at.get("plotly_chart"))
  # not images: a column picker with the first ten columns, no image views
  at.checkbox(key="tgt_upload_images_64").uncheck()
  ok(at.run())
  assert at.multiselect(key="tgt_cols").value == [f"px{j}" for j in range(10)]


def test_an_upload_of_rectangular_images_takes_the_shape_the_user_picks():
  from cmm_core import target_spec
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(100, 24))
  text = ",".join(f"px{j}" for j in range(24)) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in rows)
  at = goto(open_app(), "app_pages/target.py")
  at.radio(key="tgt_kind").set_value("Upload")
  ok(at.run())
  at.file_uploader(key="tgt_upload").set_value(("rects.csv", text.encode(), "text/csv"))
  ok(at.run(), errors=True)
  # 24 is not a square: not taken as images until the user says so
  assert target_spec.image_shape(at.session_state["target"]["spec"]) is None
  at.checkbox(key="tgt_upload_images_24").check()
  ok(at.run(), errors=True)
  box = at.selectbox(key="tgt_upload_shape_24")
  assert tuple(box.value) == (4, 6)  # the squarest first
  box.set_value((3, 8))
  ok(at.run(), errors=True)
  tgt = at.session_state["target"]
  assert target_spec.image_shape(tgt["spec"]) == (3, 8) and tgt["data"].shape[1] == 24
  assert not target_spec.dequantized_counts(tgt["spec"])  # not whole numbers: nothing to redraw
  assert "tgt_preview_images" in " ".join(str(c.proto.id) for c in at.get("plotly_chart"))


def test_compare_on_the_digits_shows_image_rows_and_image_scores():
  at = open_app("app_pages/compare.py", home_first=False, query={
      "target": "data.digits", "models": "maflow", "budget": "steps:5", "run": "1"})
  ok(at, errors=True)
  df = at.dataframe[0].value
  assert {"c2st", "NN ratio", "bits/dim"} <= set(df.columns)
  assert 1.0 < float(df["bits/dim"][0]) < 10.0  # a number (sdot's "no density": compare_test.py)
  assert "dequantize" in at.session_state["cmp_run"]["results"]["maflow"]["fitted"].info
  assert 0.4 <= float(df["c2st"][0]) <= 1.0 and float(df["NN ratio"][0]) > 0
  ids = " ".join(str(c.proto.id) for c in at.get("plotly_chart"))
  assert "cmp_panel_maflow_base" in ids and "cmp_panel_maflow_samples" in ids
  assert "cmp_panel_maflow_path" in ids  # the mapped straight path between two base points
