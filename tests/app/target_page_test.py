"""AppTest of the Target page's kinds: real data, uploads with column picking, drawn targets."""

import numpy as np
from streamlit.testing.v1 import AppTest

from apptest_utils import open_app, run

from app_support import selection
from cmm_core import datasets, targets

KINDS = ["1D toy", "2D toy", "Gaussian", "Real data", "Upload", "Draw"]


def _target_page() -> AppTest:
  return open_app("app_pages/target.py", home_first=False)


_run = run


def _kind(at: AppTest, kind: str) -> AppTest:
  at.radio(key="tgt_kind").set_value(kind)
  return _run(at)


def test_every_kind_renders():
  at = _target_page()
  assert at.radio(key="tgt_kind").options == KINDS
  for kind in KINDS:
    _kind(at, kind)
    assert not at.error, (kind, [e.value for e in at.error])
    assert at.get("plotly_chart"), kind  # at least the preview
    tgt = at.session_state["target"]
    assert tgt["data"].dtype == np.float32 and np.all(np.isfinite(tgt["data"]))


def test_real_data_sets_the_target():
  at = _kind(_target_page(), "Real data")
  box = at.selectbox(key="tgt_real")
  assert box.options and len(box.options) == len(datasets.names())
  assert at.session_state["target"]["spec"]["kind"] == "real"
  # source and licence are on the page
  captions = " ".join(c.value for c in at.caption)
  assert "Source" in captions and "Licence" in captions

  box.set_value("old_faithful")
  _run(at)
  tgt = at.session_state["target"]
  # 272 rows: 218 fitted, 54 held out for the held-out metrics, as the page says
  assert tgt["data"].shape == (218, 2) and tgt["heldout"].shape == (54, 2)
  assert tgt["columns"] == ["eruptions_min", "waiting_min"]
  assert tgt["spec"] == {"kind": "real", "name": "old_faithful",
                         "columns": ["eruptions_min", "waiting_min"], "standardize": False,
                         "n": 218, "n_heldout": 54}
  assert any("54 rows (20%, always the same ones) are held out" in c.value for c in at.caption)

  at.multiselect(key="tgt_real_cols_old_faithful").set_value(["eruptions_min"])
  _run(at)
  assert at.session_state["target"]["data"].shape == (218, 1)


def test_real_data_with_more_than_two_columns_keeps_them_all():
  at = _kind(_target_page(), "Real data")
  at.selectbox(key="tgt_real").set_value("iris")
  _run(at)
  cols = datasets.columns("iris")
  at.multiselect(key="tgt_real_cols_iris").set_value(cols)
  at.checkbox(key="tgt_real_std").check()
  _run(at)
  assert not at.error
  tgt = at.session_state["target"]
  assert tgt["data"].shape == (120, 4) and tgt["heldout"].shape == (30, 4) and tgt["columns"] == cols
  whole = np.concatenate([tgt["data"], tgt["heldout"]])  # standardised as a table, then split
  np.testing.assert_allclose(whole.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(whole.std(0), 1, atol=1e-5)
  # the preview shows a chosen pair of the four columns
  x, y = at.selectbox(key="tgt_view_x_4"), at.selectbox(key="tgt_view_y_4")
  assert (x.value, y.value) == (0, 1)
  y.set_value(3)
  _run(at)
  assert not at.error and at.session_state["target"]["data"].shape == (120, 4)
  fig = at.get("plotly_chart")[-1]
  assert "petal_width_cm" in fig.proto.spec  # the preview's vertical axis


def test_wine_column_picker_allows_at_most_ten():
  at = _kind(_target_page(), "Real data")
  at.selectbox(key="tgt_real").set_value("wine")
  _run(at)
  ms = at.multiselect(key="tgt_real_cols_wine")
  assert ms.max_selections == 10 and len(ms.options) == 13
  ms.set_value(datasets.columns("wine")[:10])
  _run(at)
  assert at.session_state["target"]["data"].shape == (142, 10)  # 178 rows, 36 held out


def _csv(rows: int, cols: int, missing_at=None) -> bytes:
  rng = np.random.default_rng(0)
  table = rng.standard_normal((rows, cols))
  names = [f"c{j}" for j in range(cols)]
  lines = [",".join(names)]
  for i, r in enumerate(table):
    fields = [f"{v:.4f}" for v in r]
    if missing_at is not None and i == missing_at[0]:
      fields[missing_at[1]] = ""
    lines.append(",".join(fields))
  return ("\n".join(lines) + "\n").encode()


def test_upload_fits_all_columns_and_drops_missing_rows():
  at = _kind(_target_page(), "Upload")
  at.file_uploader(key="tgt_upload").set_value(("four.csv", _csv(40, 4, (5, 2)), "text/csv"))
  _run(at)
  assert not at.error
  assert at.multiselect(key="tgt_cols").value == ["c0", "c1", "c2", "c3"]
  tgt = at.session_state["target"]
  assert tgt["data"].shape == (39, 4) and tgt["columns"] == ["c0", "c1", "c2", "c3"]
  assert any("Dropped 1 row" in w.value for w in at.warning)
  assert at.selectbox(key="tgt_view_x_4").value == 0

  # the missing value is in c2: without c2 no row is dropped
  at.multiselect(key="tgt_cols").set_value(["c3", "c0"])
  _run(at)
  tgt = at.session_state["target"]
  assert tgt["data"].shape == (40, 2) and tgt["columns"] == ["c3", "c0"]
  assert not any("Dropped" in w.value for w in at.warning)

  at.checkbox(key="tgt_upload_std").check()
  _run(at)
  data = at.session_state["target"]["data"]
  np.testing.assert_allclose(data.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(data.std(0), 1, atol=1e-5)


def test_upload_refusals_keep_the_previous_target():
  at = _kind(_target_page(), "Upload")
  before = at.session_state["target"]["label"]
  at.file_uploader(key="tgt_upload").set_value(("few.csv", _csv(9, 2), "text/csv"))
  _run(at)
  assert len(at.error) == 1 and "at least 10" in at.error[0].value
  assert at.session_state["target"]["label"] == before
  # 12 rows but 3 incomplete in the chosen columns: 9 usable rows are refused too
  raw = b"a,b\n" + b"".join(f"{i},{(i * 7) % 5}\n".encode() for i in range(9)) + b"1,\n,2\nx,y\n"
  at.file_uploader(key="tgt_upload").set_value(("holes.csv", raw, "text/csv"))
  _run(at)
  assert len(at.error) == 1 and "at least 10" in at.error[0].value
  assert at.session_state["target"]["label"] == before


def test_draw_with_regions_in_session_state():
  at = _kind(_target_page(), "Draw")
  assert at.radio(key="tgt_draw_mode").value == "draw with the mouse"
  assert any("Nothing drawn" in i.value for i in at.info)
  grid = targets.draw_grid()
  left = selection.cells_from_selection({"box": [{"x": [-3, -1], "y": [-3, 3]}]}, grid)
  right = selection.cells_from_selection({"lasso": [{"x": [1, 3, 3], "y": [0, 0, 2]}]}, grid)
  at.session_state["tgt_draw_regions"] = [left, right]
  at.select_slider(key="tgt_draw_n").set_value(1024)
  _run(at)
  tgt = at.session_state["target"]
  assert tgt["spec"]["kind"] == "draw" and tgt["data"].shape == (1024, 2)
  assert tgt["spec"]["cells"] == sorted(set(left) | set(right))
  assert np.any(tgt["data"][:, 0] < -1) and np.any(tgt["data"][:, 0] > 1)

  at.button(key="tgt_draw_undo").click()
  _run(at)
  assert at.session_state["tgt_draw_regions"] == [left]
  assert np.all(at.session_state["target"]["data"][:, 0] < -0.5)
  at.button(key="tgt_draw_clear").click()
  _run(at)
  assert at.session_state["tgt_draw_regions"] == []
  assert at.button(key="tgt_draw_clear").disabled


def test_draw_typed_points():
  at = _kind(_target_page(), "Draw")
  at.radio(key="tgt_draw_mode").set_value("type points")
  _run(at)
  assert not at.error
  tgt = at.session_state["target"]
  assert tgt["spec"]["mode"] == "typed" and tgt["data"].shape == (4096, 2)
  at.text_area(key="tgt_draw_text").set_value("1, 2\noops\n")
  _run(at)
  assert len(at.error) == 1 and "line(s) 2" in at.error[0].value
  at.text_area(key="tgt_draw_text").set_value("\n".join(f"{i}, {i * i % 7}" for i in range(12)))
  at.slider(key="tgt_draw_spread").set_value(0.0)
  _run(at)
  assert not at.error and at.session_state["target"]["data"].shape == (12, 2)


def test_every_real_data_set_with_its_default_columns():
  at = _kind(_target_page(), "Real data")
  for name in datasets.names():
    at.selectbox(key="tgt_real").set_value(name)
    _run(at)
    assert not at.error, name
    info = datasets.info(name)
    tgt = at.session_state["target"]
    n, k = tgt["data"].shape[0], tgt["spec"]["n_heldout"]
    assert n + k == info["rows"] and tgt["data"].shape[1] == len(info["default_columns"]), name
    assert tgt["columns"] == info["default_columns"]


def test_real_data_choice_survives_a_page_switch():
  at = _kind(_target_page(), "Real data")
  at.selectbox(key="tgt_real").set_value("iris")
  _run(at)
  at.multiselect(key="tgt_real_cols_iris").set_value(datasets.columns("iris")[:3])
  _run(at)
  at.switch_page("app_pages/train.py")
  _run(at)
  at.switch_page("app_pages/target.py")
  _run(at)
  tgt = at.session_state["target"]
  assert tgt["spec"]["name"] == "iris" and tgt["data"].shape == (120, 3)
