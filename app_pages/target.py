"""Target page: choose the data set to fit (toy, Gaussian, real data, uploaded file or drawn by
hand) with a live preview."""

import numpy as np
import streamlit as st

from cmm_core import limits
from cmm_core import datasets, share, target_spec, targets
from cmm_core.viz import figures, panels
from cmm_core.errors import DataError
from cmm_core.validation import MIN_ROWS
from cmm_core.target_spec import Kind
from app_support import link as _link, selection as _selection, state as _state


KINDS = [k.label for k in Kind]  # the radio's options, in the enum's order
MAX_COLUMNS = datasets.MAX_COLUMNS
MAX_UPLOAD_MB = targets.MAX_FILE_BYTES // 2**20
SIZES = list(share.SIZES)
KEEP = "session"  # widget values survive page switches


def _number_widget(label: str, spec: dict, key: str):
  """A slider from a ``targets.info`` parameter spec (ints stay ints)."""
  values = [spec.get("default"), spec.get("min"), spec.get("max"), spec.get("step")]
  is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None)
  cast = int if is_int else float
  kwargs = {"min_value": cast(spec["min"]), "max_value": cast(spec["max"]),
            "value": cast(spec["default"])}
  if spec.get("step") is not None:
    kwargs["step"] = cast(spec["step"])
  return st.slider(label, help=spec.get("help"), key=key, persist_state=KEEP, **kwargs)


def _size_and_seed(prefix: str) -> tuple[int, int]:
  c1, c2 = st.columns(2)
  n = c1.select_slider("number of points n", SIZES, value=4096, key=f"{prefix}_n",
                       persist_state=KEEP)
  seed = c2.number_input("seed", min_value=0, max_value=limits.MAX_APP_SEED, value=0, step=1,
                         key=f"{prefix}_seed", persist_state=KEEP,
                         help="The same seed gives exactly the same data set.")
  return int(n), int(seed)


def _toy(dim: int) -> None:
  names = targets.names(dim=dim)
  default = "eight_gaussians" if "eight_gaussians" in names else names[0]
  name = st.selectbox("data set", names, index=names.index(default), key=f"tgt_toy{dim}",
                      persist_state=KEEP)
  info = targets.info(name)
  st.caption(info.get("description", ""))
  params = {}
  for p, spec in info.get("params", {}).items():
    params[p] = _number_widget(p, spec, key=f"tgt_{name}_{p}")
  n, seed = _size_and_seed(f"tgt_toy{dim}")
  _state.use_target({"kind": Kind.toy(dim).value, "name": name, "n": n, "seed": seed, "params": params})


def _gaussian() -> None:
  dim = st.radio("dimension", ["1D", "2D"], index=1, horizontal=True, key="tgt_gauss_dim",
                 persist_state=KEEP)
  if dim == "1D":
    c1, c2 = st.columns(2)
    mean = [c1.number_input("mean", -10.0, 10.0, 0.0, 0.1, key="tgt_g1_mean", persist_state=KEEP)]
    stds = [c2.number_input("std", 0.01, 10.0, 1.0, 0.1, key="tgt_g1_std", persist_state=KEEP)]
    angle = 0.0
  else:
    c1, c2 = st.columns(2)
    mean = [c1.number_input("mean x", -10.0, 10.0, 0.0, 0.1, key="tgt_g2_mx", persist_state=KEEP),
            c2.number_input("mean y", -10.0, 10.0, 0.0, 0.1, key="tgt_g2_my", persist_state=KEEP)]
    stds = [c1.number_input("std along axis 1", 0.01, 10.0, 2.0, 0.1, key="tgt_g2_s1",
                            persist_state=KEEP),
            c2.number_input("std along axis 2", 0.01, 10.0, 0.5, 0.1, key="tgt_g2_s2",
                            persist_state=KEEP)]
    angle = st.slider("angle of axis 1 (degrees)", 0, 180, 30, 5, key="tgt_g2_angle",
                      persist_state=KEEP)
  n, seed = _size_and_seed("tgt_gauss")
  _state.use_target({"kind": Kind.GAUSSIAN.value, "mean": [float(m) for m in mean],
                     "stds": [float(s) for s in stds], "angle": int(angle), "n": n, "seed": seed})


def _column_picker(columns: list[str], default: list[str], key: str,
                   persist: bool = False) -> list[str]:
  """Columns to fit (1 to ``MAX_COLUMNS``), in the order picked; ``[]`` when none is picked."""
  if len(columns) == 1:
    return list(columns)
  picked = st.multiselect(f"columns to fit (1 to {MAX_COLUMNS})", columns, default=default,
                          max_selections=MAX_COLUMNS, key=key, wrap=True,
                          persist_state=KEEP if persist else None,
                          help="All the columns picked are fitted together (a d-dimensional "
                               "target); the preview shows two of them at a time.")
  if not picked:
    st.warning("Pick at least one column.")
  return list(picked)


def _standardize_box(key: str) -> bool:
  return st.checkbox("standardise each column (mean 0, std 1)", value=False, key=key,
                     persist_state=KEEP,
                     help="Off: the data is fitted as measured. The models are not "
                          "scale-equivariant, so the base and the map you see depend on the "
                          "units; standardising puts every column on the same scale.")


def _real_data() -> None:
  names = datasets.names()

  def label(k: str) -> str:
    i = datasets.info(k)
    return f"{i['title']} ({i['rows']} rows × {i['dim']} column{'s' if i['dim'] > 1 else ''})"

  name = st.selectbox("data set", names, format_func=label, key="tgt_real", persist_state=KEEP)
  info = datasets.info(name)
  st.caption(info["description"])
  st.caption(f"**Source**: {info['source']}  \n**Licence**: {info['licence']}")
  shape = datasets.image_shape(name)
  if shape is not None:  # images are fitted whole: every pixel is a column
    picked = list(info["default_columns"])
    st.caption(f"Images of {shape[0]} × {shape[1]} pixels: all {len(picked)} pixels are fitted "
               "together (a 64-dimensional target); the views show images.")
  else:
    picked = _column_picker(info["columns"], info["default_columns"], key=f"tgt_real_cols_{name}",
                            persist=True)
  std = _standardize_box("tgt_real_std")
  if not picked:
    return
  tgt = _state.use_target({"kind": Kind.REAL.value, "name": name, "columns": picked,
                           "standardize": std})
  st.caption(_state.heldout_note(tgt["spec"]))


def _image_upload_shape(n_columns: int):
  """``(rows, columns)`` when the user says that each row of the file is an image (pixels row by
  row) and picks its shape, else None. Offered for 16 or more columns that make a rectangle of
  sides >= 2; ticked at first only when the count is a square number (the shape is then inferred)."""
  from cmm_core.viz import images
  shapes = images.candidate_shapes(n_columns)
  if n_columns < 16 or n_columns > limits.MAX_IMAGE_PIXELS or not shapes:
    return None
  square = images.infer_shape(n_columns)
  yes = st.checkbox("each row is an image (pixels row by row)", value=square is not None,
                    key=f"tgt_upload_images_{n_columns}",
                    help=f"The file has {n_columns} numeric columns. As images, all of them are "
                         "fitted together and the views show images.")
  if not yes:
    return None
  label = lambda s: f"{s[0]} × {s[1]} pixels (rows × columns)"
  shape = st.selectbox("image shape", shapes, index=0, format_func=label,
                       key=f"tgt_upload_shape_{n_columns}",
                       help="Inferred when the count is a square number; else pick the rows and "
                            "columns the pixels were written in.")
  return tuple(int(v) for v in shape)


def _dequantize_box(table) -> bool:
  """Whether to add uniform noise in [0, 1) to images of whole numbers (offered then, on by
  default): a density cannot be fitted to integers, and pixels that are always 0 would be refused
  as constant columns."""
  values = np.asarray(table)[np.isfinite(table)]
  if values.size == 0 or not np.all(values == np.round(values)):
    return False
  return st.checkbox("dequantise: add uniform noise in [0, 1) to the whole-number pixels",
                     value=True, key="tgt_upload_dequantize",
                     help="The same noise (a fixed seed) at every load, as for the shipped digits; "
                          "training redraws it at every step.")


def _refused(e: DataError) -> None:
  st.error(str(e))
  st.caption(f"The current target is kept ({_state.get_target()['label']}).")


def _upload() -> None:
  up = st.file_uploader(
      "a table of numbers: CSV, TSV, NPY or NPZ", type=["csv", "tsv", "txt", "npy", "npz"],
      key="tgt_upload", max_upload_size=MAX_UPLOAD_MB,
      help=f"One row per point, one column per coordinate, at most {MAX_UPLOAD_MB} MB and at "
           f"least {MIN_ROWS} complete rows. A header row is fine; rows with missing or "
           "non-numeric values in the chosen columns are dropped.")
  if up is None:
    st.info(f"No file yet: the current target is kept ({_state.get_target()['label']}).")
    return
  file_id = getattr(up, "file_id", None) or up.name
  if st.session_state.get("tgt_upload_id") != file_id:  # a new file: forget the old columns
    st.session_state["tgt_upload_id"] = file_id
    st.session_state.pop("tgt_cols", None)
  try:
    table, report = targets.load_table(up.getvalue(), filename=up.name)
  except DataError as e:
    _refused(e)
    return
  columns = [str(c) for c in report["columns"]]
  ignored = report.get("ignored_columns") or []
  shape = _image_upload_shape(len(columns))
  if shape is not None:  # images are fitted whole
    picked = list(columns)
  else:
    picked = _column_picker(columns, columns[:MAX_COLUMNS], key="tgt_cols")
  std = _standardize_box("tgt_upload_std")
  if ignored:
    st.caption(f"Ignored non-numeric column(s): {', '.join(map(str, ignored))}.")
  if not picked:
    return
  dequantized = shape is not None and _dequantize_box(table)
  if dequantized:
    table = table + np.random.default_rng(datasets.DEQUANTIZE_SEED).uniform(size=table.shape)
  try:
    data, sel = targets.select_columns(table, picked, names=columns, standardize=std,
                                       max_columns=len(columns) if shape else MAX_COLUMNS,
                                       label=up.name, rows_malformed=report.get("rows_malformed", 0))
  except DataError as e:
    _refused(e)
    return
  st.caption(f"Read {sel['rows_read']} rows and {len(columns)} numeric column(s); "
             f"{sel['rows']} complete rows are used.")
  if sel["rows_dropped"]:
    st.warning(f"Dropped {sel['rows_dropped']} row(s) with missing or non-numeric values "
               "in the chosen columns.")
  data, heldout = target_spec.hold_out(data)
  spec = {"kind": Kind.UPLOAD.value, "file": up.name, "columns": picked, "standardize": std,
          "n": int(data.shape[0]), "n_heldout": 0 if heldout is None else int(heldout.shape[0])}
  if shape is not None:
    spec["image_shape"] = list(shape)
  if dequantized:
    spec["dequantize"] = True   # fits redraw the noise at every step (cc.fit's dequantize)
  _state.set_target(target_spec.table_label(up.name, picked, std, spec["n"], spec["n_heldout"]),
                    data, spec, columns=picked, heldout=heldout)
  st.caption(_state.heldout_note(spec))


DRAW_MODES = ["draw with the mouse", "type points"]
DRAW_EXAMPLE = "# one point per line: x, y\n0, 2\n-1.7, -1\n1.7, -1\n"


def _bump_canvas() -> None:
  """A new canvas widget: its selection starts empty (each selection is added once)."""
  st.session_state["tgt_draw_v"] = int(st.session_state.get("tgt_draw_v", 0)) + 1


def _add_selection(key: str) -> None:
  """on_select callback: the cells of the new box/lasso selection become one more region."""
  state = st.session_state.get(key)
  selection = state.get("selection") if state is not None else None
  new = _selection.cells_from_selection(selection, targets.draw_grid())
  if new:
    st.session_state.setdefault("tgt_draw_regions", []).append(new)
    _bump_canvas()


def _undo_region() -> None:
  regions = st.session_state.get("tgt_draw_regions") or []
  if regions:
    regions.pop()
  _bump_canvas()


def _clear_regions() -> None:
  st.session_state["tgt_draw_regions"] = []
  _bump_canvas()


def _draw() -> None:
  mode = st.radio("how", DRAW_MODES, horizontal=True, key="tgt_draw_mode", persist_state=KEEP,
                  label_visibility="collapsed")
  if mode == DRAW_MODES[0]:
    _draw_mouse()
  else:
    _draw_typed()


def _draw_mouse() -> None:
  grid = targets.draw_grid()
  regions = st.session_state.setdefault("tgt_draw_regions", [])
  cells = sorted({c for r in regions for c in r})
  tool = st.segmented_control("tool", ["box", "lasso"], default="box", required=True,
                              key="tgt_draw_tool", persist_state=KEEP,
                              help="Drag on the canvas: every box or lasso adds a region.")
  key = f"tgt_draw_canvas_{int(st.session_state.get('tgt_draw_v', 0))}"
  st.plotly_chart(figures.draw_canvas(grid, cells, title="drag a box or a lasso to paint",
                                      dragmode="lasso" if tool == "lasso" else "select"),
                  key=key, on_select=lambda: _add_selection(key),
                  selection_mode=("box", "lasso"), config={"displaylogo": False})
  c1, c2 = st.columns(2)
  c1.button("Undo last region", icon=":material/undo:", key="tgt_draw_undo",
            disabled=not regions, on_click=_undo_region, width="stretch")
  c2.button("Clear all", icon=":material/delete:", key="tgt_draw_clear", disabled=not regions,
            on_click=_clear_regions, width="stretch")
  jitter = st.slider("blur the edges (noise std, in cell sides)", 0.0, 1.0, 0.1, 0.05,
                     key="tgt_draw_jitter", persist_state=KEEP)
  n, seed = _size_and_seed("tgt_draw")
  if not cells:
    st.info("Nothing drawn yet: drag a box or a lasso on the canvas. The current target is kept "
            f"({_state.get_target()['label']}).")
    return
  area = len(cells) * grid["size"] ** 2
  st.caption(f"{len(regions)} region(s), {len(cells)} cell(s) of {grid['size']:g} × "
             f"{grid['size']:g}, area {area:.3g}. The data is drawn uniformly on them.")
  data = targets.sample_cells(cells, grid, n, seed=seed, jitter=float(jitter))
  _state.set_target(f"drawn: {len(regions)} region(s) (n={n}, seed={seed})", data,
                    {"kind": Kind.DRAW.value, "mode": "mouse", "cells": cells, "n": n, "seed": seed,
                     "jitter": float(jitter)})


def _draw_typed() -> None:
  text = st.text_area("points, one \"x, y\" per line", value=DRAW_EXAMPLE, height=170,
                      key="tgt_draw_text", persist_state=KEEP,
                      help="Each typed point becomes a Gaussian blob of the chosen spread; with "
                           f"spread 0 the points themselves are the data (at least {MIN_ROWS}).")
  spread = st.slider("spread around each point (std)", 0.0, 2.0, 0.3, 0.05,
                     key="tgt_draw_spread", persist_state=KEEP)
  n, seed = _size_and_seed("tgt_type")
  pts = targets.parse_points(text)  # DataError -> shown by the caller
  if spread == 0:
    st.caption(f"Spread 0: the {pts.shape[0]} typed points are the data (n is ignored).")
  _state.use_target({"kind": Kind.DRAW.value, "mode": "typed", "points": pts.tolist(),
                     "spread": float(spread), "n": n, "seed": seed})


def _preview_dims(d: int, names: list[str]) -> tuple[int, int]:
  """The pair of columns the preview shows (a choice only when d > 2)."""
  if d <= 2:
    return (0, 1)
  a, b = st.columns(2)
  i = a.selectbox("preview: horizontal axis", range(d), index=0, format_func=lambda k: names[k],
                  key=f"tgt_view_x_{d}")
  j = b.selectbox("preview: vertical axis", range(d), index=1, format_func=lambda k: names[k],
                  key=f"tgt_view_y_{d}")
  if i == j:
    st.warning("Pick two different columns for the preview.")
    return (0, 1)
  return (int(i), int(j))


st.title("Target")
st.caption("Choose the distribution to fit. The preview updates as you change the settings; "
           "the Train page uses whatever is shown here.")
left, right = st.columns([5, 8], gap="large")
with left:
  kind = st.radio("kind of target", KINDS, index=1, horizontal=True, key="tgt_kind",
                  persist_state=KEEP)
  try:
    {Kind.TOY_1D: lambda: _toy(1), Kind.TOY_2D: lambda: _toy(2), Kind.GAUSSIAN: _gaussian,
     Kind.REAL: _real_data, Kind.UPLOAD: _upload, Kind.DRAW: _draw}[Kind.from_label(kind)]()
  except ValueError as e:  # DataError included: a message the user can act on
    st.error(str(e))

def _image_preview(target: dict, shape: tuple) -> None:
  """A grid of the target's images (the first 48 rows, seeded) instead of a scatter plot."""
  from cmm_core.viz import images
  data = np.asarray(target["data"])
  rows = data[np.random.default_rng(0).choice(data.shape[0], min(48, data.shape[0]), replace=False)]
  st.plotly_chart(images.grid_figure(rows, shape, title=target["label"], n_cols=12,
                                     value_range=(0.0, float(np.percentile(data, 99.9)))
                                     if data.min() >= 0 else None),
                  key="tgt_preview_images")
  st.caption(f"{data.shape[0]} images of {shape[0]} × {shape[1]} pixels ({data.shape[1]} "
             f"dimensions), values {data.min():.3g} to {data.max():.3g}.")


target = _state.get_target()
with right:
  data = np.asarray(target["data"])
  d = data.shape[1]
  shape = target_spec.image_shape(target["spec"])
  if shape is not None:
    _image_preview(target, shape)
  else:
    names = [str(c) for c in (target.get("columns") or [f"x{i + 1}" for i in range(d)])]
    dims = _preview_dims(d, names)
    summary = panels.data_summary(data)
    st.plotly_chart(figures.target_preview(data, dims=dims, labels=names, title=target["label"]),
                    key="tgt_preview")
    st.caption(f"{summary['n']} points in {summary['d']}D · mean "
               f"({', '.join(f'{m:.3g}' for m in summary['mean'])}) · std "
               f"({', '.join(f'{s:.3g}' for s in summary['std'])})")
    if d > 2:
      st.caption(f"All {d} columns are fitted; the preview shows two of them.")
  st.page_link("app_pages/train.py", label="Train on this target", icon=":material/arrow_forward:")
  _link.share_box(_link.write_url())
