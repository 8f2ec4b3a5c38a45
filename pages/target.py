"""Target page: choose the data set to fit (toy, Gaussian or uploaded file) with a live preview."""

import numpy as np
import streamlit as st

from cmm_core import plots, targets, views
from cmm_core.errors import DataError
from cmm_core.validation import as_dataset
from pages import _state

_state.run_through_app()

KINDS = ["1D toy", "2D toy", "Gaussian", "Upload"]
SIZES = [256, 512, 1024, 2048, 4096, 8192, 16384]
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
  seed = c2.number_input("seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
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
  data = _state.make_toy(name, n, seed, tuple(sorted(params.items())))
  _state.set_target(_state.toy_label(name, n, seed, params), data,
                    {"kind": f"{dim}D toy", "name": name, "n": n, "seed": seed, "params": params})


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
  cov = views.covariance_from_axes(stds, angle)
  data = _state.make_gaussian(tuple(float(m) for m in mean), tuple(map(tuple, cov.tolist())),
                              n, seed)
  if len(mean) == 1:
    label = f"Gaussian N({mean[0]:g}, {stds[0]:g}²) (n={n}, seed={seed})"
  else:
    label = (f"Gaussian, mean ({mean[0]:g}, {mean[1]:g}), stds {stds[0]:g} / {stds[1]:g}, "
             f"angle {angle}° (n={n}, seed={seed})")
  _state.set_target(label, data, {"kind": "Gaussian", "mean": [float(m) for m in mean],
                                  "cov": cov.tolist(), "n": n, "seed": seed})


def _upload() -> None:
  up = st.file_uploader("a table of numbers: CSV, TSV, NPY or NPZ",
                        type=["csv", "tsv", "txt", "npy", "npz"], key="tgt_upload",
                        help="One row per point, one column per coordinate. A header row is fine; "
                             "rows with missing or non-numeric values are dropped.")
  if up is None:
    st.info(f"No file yet: the current target is kept ({_state.get_target()['label']}).")
    return
  try:
    arr, report = targets.load_file_report(up.getvalue(), filename=up.name)
  except DataError as e:
    st.error(str(e))
    return
  columns = [str(c) for c in (report.get("columns") or [f"x{i + 1}" for i in range(arr.shape[1])])]
  st.caption(f"Read {report.get('rows_read', arr.shape[0])} rows and {arr.shape[1]} numeric "
             "column(s).")
  dropped = int(report.get("rows_dropped", 0) or 0)
  if dropped:
    st.warning(f"Dropped {dropped} row(s) with missing or non-numeric values.")
  ignored = report.get("ignored_columns") or []
  if ignored:
    st.caption(f"Ignored non-numeric column(s): {', '.join(map(str, ignored))}.")
  chosen = list(range(arr.shape[1]))
  if arr.shape[1] > 2:
    picked = st.multiselect("columns to fit (1 or 2)", columns, default=columns[:2],
                            max_selections=2, key="tgt_cols")
    if not picked:
      st.warning("Pick at least one column.")
      return
    chosen = [columns.index(c) for c in picked]
  try:
    data = as_dataset(arr[:, chosen], name=up.name)
  except DataError as e:
    st.error(str(e))
    return
  names = [columns[i] for i in chosen]
  _state.set_target(f"{up.name} [{', '.join(names)}] (n={data.shape[0]})", data,
                    {"kind": "Upload", "file": up.name, "columns": names, "n": int(data.shape[0])},
                    columns=names)


st.title("Target")
st.caption("Choose the distribution to fit. The preview updates as you change the settings; "
           "the Train page uses whatever is shown here.")
left, right = st.columns([5, 8], gap="large")
with left:
  kind = st.radio("kind of target", KINDS, index=1, horizontal=True, key="tgt_kind",
                  persist_state=KEEP)
  try:
    if kind == "1D toy":
      _toy(1)
    elif kind == "2D toy":
      _toy(2)
    elif kind == "Gaussian":
      _gaussian()
    else:
      _upload()
  except ValueError as e:  # DataError included: a message the user can act on
    st.error(str(e))

target = _state.get_target()
with right:
  data = np.asarray(target["data"])
  summary = views.data_summary(data)
  st.plotly_chart(plots.target_preview(data, labels=target.get("columns"), title=target["label"]),
                  key="tgt_preview")
  st.caption(f"{summary['n']} points in {summary['d']}D · mean "
             f"({', '.join(f'{m:.3g}' for m in summary['mean'])}) · std "
             f"({', '.join(f'{s:.3g}' for s in summary['std'])})")
  st.page_link("pages/train.py", label="Train on this target", icon=":material/arrow_forward:")
