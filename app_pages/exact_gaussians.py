"""Gaussians, exactly: MM, CMM and Brenier of a 1D or 2D Gaussian in closed form (no training)."""

import streamlit as st

from cmm_core import report
from cmm_core.viz import exact as exact_viz


KEEP = "session"  # widget values survive page switches


def _params_1d() -> dict:
  c1, c2 = st.columns(2)
  mean = c1.slider("mean m", -5.0, 5.0, 0.0, 0.1, key="exg_mean", persist_state=KEEP)
  std = c2.slider("std s", 0.1, 5.0, 1.0, 0.05, key="exg_std", persist_state=KEEP,
                  help="Try 0.25: a narrow target gives MM a very wide base (std 1/s).")
  return {"mean": float(mean), "std": float(std)}


def _params_2d() -> dict:
  c1, c2, c3 = st.columns(3)
  s1 = c1.slider("std along axis 1", 0.1, 5.0, 2.0, 0.05, key="exg_s1", persist_state=KEEP)
  s2 = c2.slider("std along axis 2", 0.1, 5.0, 0.5, 0.05, key="exg_s2", persist_state=KEEP)
  angle = c3.slider("angle of axis 1 (degrees)", 0, 180, 30, 5, key="exg_angle",
                    persist_state=KEEP)
  c1, c2 = st.columns(2)
  mx = c1.slider("mean x", -5.0, 5.0, 0.0, 0.1, key="exg_mx", persist_state=KEEP)
  my = c2.slider("mean y", -5.0, 5.0, 0.0, 0.1, key="exg_my", persist_state=KEEP)
  return {"mean": [float(mx), float(my)], "stds": [float(s1), float(s2)], "angle": float(angle)}


def _what_changed(dim: str, params: dict) -> str:
  """The change since the last redraw of this dimension (the standard normal the first time)."""
  last = st.session_state.get(f"exg_last_{dim}")
  if last is None:
    text = exact_viz.what_changed(None, params)
  elif last["params"] == params:
    text = last["text"]
  else:
    text = exact_viz.what_changed(last["params"], params)
  st.session_state[f"exg_last_{dim}"] = {"params": params, "text": text}
  return text


st.title("Gaussians, exactly")
st.caption("For a Gaussian target ρ = N(m, S) all three factorizations have closed forms, so "
           "nothing is trained: move a slider and every panel is redrawn at once. All panels "
           "share one axis range, so the widths of the bases compare at a glance.")

dim = st.radio("dimension", ["1D", "2D"], horizontal=True, key="exg_dim", persist_state=KEEP)
try:
  if dim == "1D":
    params = _params_1d()
    panels = exact_viz.gaussian_panels_1d(params["mean"], params["std"])
    mean_is_zero = params["mean"] == 0
  else:
    params = _params_2d()
    panels = exact_viz.gaussian_panels_2d(params["stds"], params["angle"], params["mean"])
    mean_is_zero = not any(params["mean"])
  figs = exact_viz.gaussian_figures(panels)
  changed = _what_changed(dim, params)
except ValueError as e:
  st.error(str(e))
  st.stop()

st.info(changed, icon=":material/compare_arrows:")

cols = st.columns(3, gap="medium")
for col, kind in zip(cols, exact_viz.KINDS):
  with col:
    short, long = exact_viz.KIND_NAMES[kind]
    st.subheader(short, anchor=False)
    st.caption(long)
    st.latex(exact_viz.LATEX[kind])
    st.markdown(exact_viz.gaussian_numbers(panels, kind))
    if kind == "mm":
      if mean_is_zero:
        st.caption("MM needs a centred target (a moment measure has barycentre 0); this one is.")
      else:
        st.caption("MM needs a centred target (a moment measure has barycentre 0): the mean m is "
                   "**dropped** and MM factorizes the centred N(0, S); add m back after the map.")
# One row of bases, one of maps, so that the panels line up.
for row, part in enumerate(("base", "map")):
  for col, kind in zip(st.columns(3, gap="medium"), exact_viz.KINDS):
    col.plotly_chart(figs[kind][row], key=f"exg_{part}_{kind}")

def _report() -> str:
  notes = [exact_viz.gaussian_numbers(panels, k).replace("**", "") for k in exact_viz.KINDS]
  return report.html_report(
      f"Gaussians, exactly ({dim})", target=f"N(m, S) with {params}",
      sections=[(exact_viz.KIND_NAMES[k][0], list(figs[k])) for k in exact_viz.KINDS],
      settings={k: v for k, v in params.items()}, notes=notes)


st.download_button("Download a report (HTML)", data=_report, file_name=f"exact_gaussians_{dim}_report.html",
                   mime="text/html", on_click="ignore", key="exg_report",
                   icon=":material/description:",
                   help="The panels (interactive, opens offline; the camera button saves SVG) and "
                        "the closed forms' numbers, in one file for a handout.")
st.caption("1D: dashed grey is the target (centred for MM); the map is thick where the base has 95% "
           "of its mass. 2D: ellipses at 1 and 2 standard deviations; the map panel warps a grid "
           "laid along the target's axes over ±2 base stds, so its image is the target's ±2 std box.")
