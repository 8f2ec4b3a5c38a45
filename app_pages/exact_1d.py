"""1D, exactly: the CMM and MM of any 1D target by the grid fixed points (no training), and a
trained 1D model's base against the exact one.

Session keys used here (besides ``"target"`` and ``"fit"``, see ``app_support/state.py``):
``"ex1_model_view"``: ``{"key": tuple, "view": dict}``, the last ``exact_viz.model_base_1d``.
"""

import numpy as np
import streamlit as st

from cmm_core import report, targets
from cmm_core.viz import exact as exact_viz
from app_support import state as _state


KEEP = "session"  # widget values survive page switches
SESSION = "(session target)"
# st.cache_data of the exact solutions, shared by every session (least recently used evicted)
CACHE_BUILTIN = 64  # built-in 1D targets with their parameters
CACHE_SAMPLES = 8   # sessions' own 1D data


@st.cache_data(show_spinner="Solving the fixed points on a grid…", max_entries=CACHE_BUILTIN)
def _exact_builtin(name: str, params: tuple) -> dict:
  return exact_viz.exact_1d(name, params=dict(params))


@st.cache_data(show_spinner="Solving the fixed points on a grid…", max_entries=CACHE_SAMPLES)
def _exact_samples(data: np.ndarray, label: str) -> dict:
  return exact_viz.exact_1d(data, label=label)


def _number_widget(label: str, spec: dict, key: str):
  """A slider from a ``targets.info`` parameter spec (ints stay ints)."""
  values = [spec.get("default"), spec.get("min"), spec.get("max"), spec.get("step")]
  cast = int if all(isinstance(v, int) for v in values if v is not None) else float
  return st.slider(label, cast(spec["min"]), cast(spec["max"]), cast(spec["default"]),
                   cast(spec["step"]) if spec.get("step") is not None else None,
                   help=spec.get("help"), key=key, persist_state=KEEP)


def _session_1d():
  """The session's target when it is 1D, else None (no default target is created here)."""
  tgt = st.session_state.get("target")
  if tgt is not None and np.asarray(tgt["data"]).ndim == 2 and np.asarray(tgt["data"]).shape[1] == 1:
    return tgt
  return None


def _model_view(entry: dict, side: dict) -> dict:
  """exact_viz.model_base_1d for the session's fit, kept in session_state."""
  fitted = entry["fitted"]
  key = (entry["uid"], len(fitted.history), str(fitted.info.get("status")))
  cached = st.session_state.get("ex1_model_view")
  if cached is not None and cached["key"] == key:
    return cached["view"]
  with st.spinner("Sampling the trained model's base…"):
    view = exact_viz.model_base_1d(fitted, side, n_samples=1024, seed=0)  # the Train page's bucket
  st.session_state["ex1_model_view"] = {"key": key, "view": view}
  return view


def _draw_rows(ex: dict, model=None, model_kind=None, prefix: str = "ex1") -> None:
  figs = exact_viz.exact_1d_figures(ex, model=model, model_kind=model_kind)
  for kind, heading in (("cmm", "CMM: ρ = ∇w\\* # e^(−w)"),
                        ("mm", "MM: ρ(· + m) = ∇u # e^(−u), on the centred target")):
    side = ex[kind]
    mean = side["base_mean"] if abs(side["base_mean"]) > 1e-9 * side["base_std"] else 0.0
    st.markdown(f"**{heading}** · base mean {mean:.3g}, std {side['base_std']:.3g} · "
                f"{side['iterations']} iterations · "
                f"{'converged' if side['converged'] else 'NOT converged'} "
                f"(residual {side['residual']:.1e}) · {side['seconds']:.2f} s")
    cols = st.columns(3)
    for col, fig, name in zip(cols, figs[kind], ("base", "map", "pushed")):
      col.plotly_chart(fig, key=f"{prefix}_{kind}_{name}")


def _fit_section(entry: dict) -> None:
  fitted = entry["fitted"]
  model = getattr(fitted, "model", "")
  st.subheader("Your trained model against the exact base")
  if int(fitted.dim) != 1:
    st.caption(f"The model in this session ({model}) is {fitted.dim}D; train a 1D model to compare "
               "its base with the exact one here.")
    return
  if model not in ("cmm", "mm"):
    st.caption(f"The model in this session is {model!r}: the exact bases here are those of CMM and "
               "MM, so there is nothing to compare it with.")
    return
  data = np.asarray(entry["data"], dtype=np.float64)
  try:
    ex = _exact_samples(data, entry["target_label"])
    view = _model_view(entry, ex[model])
  except Exception as e:  # the model failed to sample or evaluate: keep the page alive
    st.error(f"Could not compare the trained model ({type(e).__name__}): {e}")
    return
  name = "CMM" if model == "cmm" else "MM"
  note = (" Both bases are centred before comparing: MM is unique only up to a translation."
          if view["centred"] else "")
  c1, c2 = st.columns([1, 2], gap="large")
  c1.metric("mean |quantile error| / base std", f"{view['quantile_error']:.3f}",
            help="The mean over 400 levels q of |Q_model(q) − Q_exact(q)|, divided by the "
                 "exact base's standard deviation.")
  c1.markdown(f"The **{model}** model trained on *{entry['target_label']}*, overlaid (orange) on "
              f"the exact {name} base of the same data (its kernel density estimate, bandwidth "
              f"{ex['bandwidth']:.3g}): base std {view['std']:.3g} (model) against "
              f"{ex[model]['base_std']:.3g} (exact).{note}")
  figs = exact_viz.exact_1d_figures(ex, model=view, model_kind=model)
  c2.plotly_chart(figs[model][0], key="ex1_fit_base")


st.title("1D, exactly")
st.caption("In 1D every factorization is a monotone map, so CMM and MM are fixed points that a grid "
           "solver computes to high precision: w′ = Q_μ ∘ F_ρ for CMM and u′ = Q_ρ ∘ F_μ for MM, "
           "with μ the base. Nothing is trained; these are the oracles the neural models are tested "
           "against.")

session = _session_1d()
options = ([SESSION] if session is not None else []) + targets.names(dim=1)
left, right = st.columns([1, 3], gap="large")
with left:
  source = st.selectbox(
      "target", options, key="ex1_source", persist_state=KEEP,
      format_func=lambda o: f"session target: {session['label']}" if o == SESSION else o)
  params = {}
  if source != SESSION:
    info = targets.info(source)
    st.caption(info["description"].replace("*", "\\*"))
    for p, spec in info["params"].items():
      params[p] = _number_widget(p, spec, key=f"ex1_{source}_{p}")
  elif session is not None:
    st.caption(f"{np.asarray(session['data']).shape[0]} points, smoothed by a Gaussian kernel "
               "density estimate (Silverman bandwidth) before solving.")

try:
  if source == SESSION:
    ex = _exact_samples(np.asarray(session["data"], dtype=np.float64), session["label"])
  else:
    ex = _exact_builtin(source, tuple(sorted(params.items())))
except ValueError as e:
  st.error(str(e))
  st.stop()

with right:
  bw = f", KDE bandwidth {ex['bandwidth']:.3g}" if ex["bandwidth"] else ""
  st.markdown(f"Target **{ex['label']}**: mean {ex['target_mean']:.3g}, std {ex['target_std']:.3g}"
              f"{bw}. CMM base std **{ex['cmm']['base_std']:.3g}**, MM base std "
              f"**{ex['mm']['base_std']:.3g}**.")
  shift = ex["shift"]
  if abs(shift) > 1e-9 * max(ex["target_std"], 1.0):
    st.info(f"MM needs a centred target (a moment measure has barycentre 0): it is solved for the "
            f"target shifted by −{shift:.3g}, and its map lands on the **centred** target.",
            icon=":material/center_focus_strong:")
  else:
    st.caption("MM needs a centred target (a moment measure has barycentre 0); this one is.")
  st.caption("Left: the base (same x range in both rows). Middle: the map T from base to data. "
             "Right: base samples (inverse CDF) pushed through T, against the target density: "
             "they match because T is exact.")

_draw_rows(ex)


def _report(ex: dict) -> str:
  figs = exact_viz.exact_1d_figures(ex)
  rows = [{"factorization": k.upper(), "base mean": ex[k]["base_mean"], "base std": ex[k]["base_std"],
           "iterations": ex[k]["iterations"], "converged": ex[k]["converged"],
           "residual": ex[k]["residual"]} for k in ("cmm", "mm")]
  return report.html_report(
      f"1D, exactly: {ex['label']}", target=ex["label"],
      sections=[("CMM: base, map, pushed samples", list(figs["cmm"])),
                ("MM (centred target): base, map, pushed samples", list(figs["mm"]))],
      settings={"target": ex["label"], "target mean": ex["target_mean"],
                "target std": ex["target_std"], "KDE bandwidth": ex["bandwidth"] or "none"},
      metrics=rows, notes=["Grid fixed points: w' = Q_mu o F_rho (CMM), u' = Q_rho o F_mu (MM); "
                           "nothing is trained."])


st.download_button("Download a report (HTML)", data=lambda: _report(ex),
                   file_name="exact_1d_report.html", mime="text/html", on_click="ignore",
                   key="ex1_report", icon=":material/description:",
                   help="The panels (interactive, opens offline; the camera button saves SVG) and "
                        "the numbers, in one file for a handout.")

entry = _state.get_fit()
if entry is not None:
  _fit_section(entry)
