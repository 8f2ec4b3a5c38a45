"""Shareable links: the experiment in the URL query string (``cmm_core.share``) and back.

``restore_from_url`` runs once per session, in ``app.py`` before the page: it rebuilds the target
of the link and presets the widgets of the Target, Train, Compare and Sample an energy pages (by
their keys). Each of those pages then calls ``write_url`` with its settings, so the address bar
always holds the experiment on screen, and ``share_box`` shows the link ready to copy.
"""

from __future__ import annotations

import json
import urllib.parse

import streamlit as st

from cmm_core import hyper as hyper_lib, share, target_spec
from cmm_core.target_spec import Kind
from app_support import state as _state

PROBLEMS_KEY = "url_problems"
RUN_KEY = "url_run"  # "train", "compare" or "energy": the page that starts at once (a link with run=1)
DRAW_TYPED = "type points"  # app_pages/target.py DRAW_MODES[1]
ENERGY_ENTRY = "an energy"  # app_pages/compare.py: the "compare on" choice of an energy


def _target_widgets(spec: dict) -> dict:
  """Widget keys of the Target page -> values that show ``spec``."""
  kind = target_spec.kind_of(spec)
  if kind in (Kind.TOY_1D, Kind.TOY_2D):
    dim = 1 if kind is Kind.TOY_1D else 2
    keys = {"tgt_kind": kind.label, f"tgt_toy{dim}": spec["name"], f"tgt_toy{dim}_n": spec["n"],
            f"tgt_toy{dim}_seed": spec["seed"]}
    keys.update({f"tgt_{spec['name']}_{p}": v for p, v in spec["params"].items()})
    return keys
  if kind is Kind.GAUSSIAN:
    keys = {"tgt_kind": kind.label, "tgt_gauss_n": spec["n"], "tgt_gauss_seed": spec["seed"]}
    if len(spec["mean"]) == 1:
      keys.update(tgt_gauss_dim="1D", tgt_g1_mean=float(spec["mean"][0]),
                  tgt_g1_std=float(spec["stds"][0]))
    else:
      keys.update(tgt_gauss_dim="2D", tgt_g2_mx=float(spec["mean"][0]),
                  tgt_g2_my=float(spec["mean"][1]), tgt_g2_s1=float(spec["stds"][0]),
                  tgt_g2_s2=float(spec["stds"][1]), tgt_g2_angle=int(spec["angle"]))
    return keys
  if kind is Kind.REAL:
    return {"tgt_kind": kind.label, "tgt_real": spec["name"],
            f"tgt_real_cols_{spec['name']}": list(spec["columns"]),
            "tgt_real_std": bool(spec["standardize"])}
  text = "\n".join(", ".join(f"{c:g}" for c in p) for p in spec["points"]) + "\n"
  return {"tgt_kind": Kind.DRAW.label, "tgt_draw_mode": DRAW_TYPED, "tgt_draw_text": text,
          "tgt_draw_spread": float(spec["spread"]), "tgt_type_n": spec["n"],
          "tgt_type_seed": spec["seed"]}


def widget_value(h, value) -> object:
  """A hyper-parameter value (of ``cmm_core.hyper.Hyper`` ``h``) as its Train-page widget holds
  it: widths as ``"64, 64"``, floats as floats, an optional int's None as None (empty box)."""
  if h.kind == "widths" and isinstance(value, (tuple, list)):
    return ", ".join(map(str, value))
  if h.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  return value


def _train_widgets(train: dict) -> dict:
  import cmm_core as cc
  model = train["model"]
  keys = {"tr_model": model}
  if train["steps"] is not None:
    keys[f"tr_steps_{model}"] = train["steps"]
  if train["seed"] is not None:
    keys["tr_seed"] = train["seed"]
  entries = hyper_lib.by_name(cc.models.get(model).schema)
  keys.update({f"tr_hp_{model}_{k}": widget_value(entries[k], v) for k, v in train["hyper"].items()
               if entries[k].ui})
  return keys


def _compare_widgets(compare: dict) -> dict:
  import cmm_core as cc
  keys = {f"cmp_use_{m}": m in compare["models"] for m in cc.models.names()}
  keys["cmp_budget"] = compare["mode"]
  if compare["mode"] == "steps":
    keys["cmp_steps"] = int(compare["value"])
  elif compare["mode"] == "seconds":
    keys["cmp_seconds"] = float(compare["value"])
  if compare["seed"] is not None:
    keys["cmp_seed"] = compare["seed"]
  for m, hyper in compare["hyper"].items():
    keys[f"cmp_hp_{m}"] = json.dumps(hyper)
  return keys


def _energy_widgets(e: dict) -> dict:
  """Widget keys of the Sample an energy page (``en_*``), or of the Compare page's energy entry
  (``cmpe_*``, a link with a budget), -> values that show the link's settings."""
  from app_support import energy as _energy
  on_compare = e.get("mode") is not None
  p = "cmpe" if on_compare else "en"
  keys = {f"{p}_source": _energy.SOURCE_LABELS[e["source"]]}
  if e["source"] == "builtin":
    keys[f"{p}_name"] = e["name"]
    keys.update({f"{p}_p_{e['name']}_{k}": v for k, v in e["params"].items()})
  else:
    keys[f"{p}_formula"] = e["text"]
    keys.update({f"{p}_{k}": e[k] for k in ("dim", "box") if e[k] is not None})
  for name in ("seed", "step_size") + (() if on_compare else ("steps",)):
    if e[name] is not None:
      keys[f"{p}_{name}"] = e[name]
  if on_compare:
    keys["cmp_on"] = ENERGY_ENTRY
    if e["models"] is not None:
      keys.update({f"cmpe_use_{m}": m in e["models"] for m in _energy.MODEL_LABELS})
    keys["cmpe_budget"] = e["mode"]
    if e["mode"] in ("steps", "seconds"):
      keys[f"cmpe_{e['mode']}"] = int(e["value"]) if e["mode"] == "steps" else float(e["value"])
    if e["method"] is not None:
      keys["cmpe_method"] = e["method"]
    return keys
  if e["models"] is not None:
    keys["en_models"] = [_energy.MODEL_LABELS[m] for m in e["models"]]
  if e["method"] is not None:
    keys["en_method"] = _energy.METHOD_LABELS[e["method"]]
  return keys


def restore_from_url(page: str = "") -> None:
  """Once per session: the experiment in the query string becomes the session's (target built,
  widgets preset); values the app cannot use are listed for :func:`show_problems`. ``page`` is
  the URL path of the page opened ("train", "compare", ...): ``run=1`` starts only that page."""
  if st.session_state.get("url_restored"):
    return
  st.session_state["url_restored"] = True
  params = st.query_params.to_dict()
  if not params:
    return
  got = share.decode(params)
  problems = list(got["problems"])
  keys = {}
  if got["target"] is not None:
    try:
      spec = _state.use_target(got["target"])["spec"]
      keys.update(_target_widgets(spec))
    except ValueError as e:  # e.g. typed points that make no data set
      problems.append(f"The link's target could not be made: {e} The default target is used.")
  if got["train"] is not None:
    keys.update(_train_widgets(got["train"]))
  if got["compare"] is not None:
    keys.update(_compare_widgets(got["compare"]))
  if got["energy"] is not None:
    keys.update(_energy_widgets(got["energy"]))
  if got["run"]:
    wanted = ("train" if got["train"] is not None else
              "energy" if got["energy"] is not None and got["energy"].get("mode") is None
              else "compare")
    if page == wanted:
      st.session_state[RUN_KEY] = wanted
    else:
      problems.append(f"run=1 starts training on the {wanted} page only; press the button there.")
  for k, v in keys.items():
    st.session_state[k] = v
  if problems:
    st.session_state[PROBLEMS_KEY] = problems


def show_problems() -> None:
  """Shows, once, what the opening link held that could not be used."""
  problems = st.session_state.pop(PROBLEMS_KEY, None)
  if problems:
    st.warning("Part of this link could not be used:\n\n" + "\n".join(f"- {p}" for p in problems))


def run_requested(page: str) -> bool:
  """True once if the opening link asked ``page`` ("train", "compare", "energy") to start at once."""
  if st.session_state.get(RUN_KEY) == page:
    del st.session_state[RUN_KEY]
    return True
  return False


def write_url(train: dict | None = None, compare: dict | None = None, energy: dict | None = None) -> dict:
  """Puts the current target and the page's settings in the address bar (the Sample an energy
  page and Compare's energy entry: the energy and settings only); returns the params."""
  params = (share.encode(energy=energy) if energy is not None
            else share.encode(_state.get_target()["spec"], train, compare))
  if st.query_params.to_dict() != params:
    st.query_params.from_dict(params)
  return params


def url_for(params: dict) -> str:
  """The app's address with ``params`` (from :func:`cmm_core.share.encode`) as its query."""
  return (st.context.url or "") + "?" + urllib.parse.urlencode(params, safe=",;:")


def share_box(params: dict) -> None:
  """The link to this experiment, ready to copy, and what it does not carry."""
  with st.expander("share this experiment", icon=":material/link:"):
    link = url_for(params)
    st.code(link, language=None, wrap_lines=True)
    if "model" in params or "models" in params or "fit" in params:
      st.caption("The same link that also starts training as it opens (for a demo):")
      st.code(link + "&run=1", language=None, wrap_lines=True)
    if "energy" in params or "formula" in params:
      st.caption("The address bar holds the same link: whoever opens it gets this energy and these "
                 "settings.")
      return
    spec = _state.get_target()["spec"]
    try:
      kind = target_spec.kind_of(spec).label.lower()
    except ValueError:  # e.g. a loaded model's data
      kind = str(spec.get("kind", "")).lower()
    if not any(k in params for k in share.TARGET_KEYS):
      st.caption(f"A link cannot carry this target ({kind or 'its data'}): whoever opens it "
                 "gets the settings and chooses the data again.")
    else:
      st.caption("The address bar holds the same link: whoever opens it gets this target and these "
                 "settings (then presses the button to train).")
