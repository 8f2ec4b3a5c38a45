"""Compare page: several models fitted to the current target with one budget and one seed, then
their base / map / samples panels row by row on shared axes, and a table of metrics.

Session keys used here (per user; see also ``app_support/state.py``):

- ``"cmp_cache"``: ``{cmm_core.compare.cache_key: result}``, the last ``CACHE_MAX`` complete fits
  of this session (least recently used evicted); a comparison run again with the same target,
  budget, seed and hyper-parameters reuses them.
- ``"cmp_run"``: the last comparison: ``{"order": [model], "jobs": {model: job},
  "results": {model: result}, "partial": {model: {"fitted", "step", "seconds"}}, "done": bool,
  "stopped": str | None, "target_label", "target_digest", "data", "columns", "heldout",
  "reference", "budget_text", "seed"}``. ``partial`` holds the last chunk of the model in
  training, so a Stop (which reruns the page and interrupts the training) keeps it.
- ``"cmp_panels"``: ``{(cache key, steps, status, points): panels.panel_data dict}``, at most
  ``PANELS_MAX`` (least recently used evicted).

Each model's fit takes one slot of the server's fit pool (``app_support/fit_pool.py``), not the
whole comparison: between two models the comparison queues again behind fits that arrived
meanwhile, so a five-model comparison does not hold a slot five fits long (docs/deploy.md).
"""

import json
import re

import numpy as np
import pandas as pd
import streamlit as st

import cmm_core as cc
from cmm_core import limits
from cmm_core import compare, hyper as hyper_lib, metrics, report, share, target_spec
from cmm_core.viz import figures, panels
from cmm_core.api import MAX_STEPS
from app_support import energy as _energy, link as _link, state as _state


KEEP = "session"  # widget values survive page switches
POINTS = [500, 1000, 2000]
DEFAULT_TICKED = ("cmm", "maflow")
CACHE_MAX = 10    # complete fits kept per session (least recently used evicted)
PANELS_MAX = 24   # panel data kept per session (least recently used evicted)
SAMPLES_ENTRY = "the target's samples"
BUDGET_TEXT = {"default": "each model's default steps", "steps": "same steps for all",
               "seconds": "same time for all"}


def _label(model: str) -> str:
  return cc.models.LABELS.get(model, model)


def _short(model: str) -> str:
  return _label(model).split(":")[0]


def _parse_hyper(model: str, text: str) -> dict:
  """``'{"learning_rate": 0.001}'`` -> dict; raises ValueError with a readable message."""
  text = (text or "").strip()
  if not text:
    return {}
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{model}: the hyper-parameters are not valid JSON ({e.msg}); "
                     'write them like {"learning_rate": 0.001}') from None
  if not isinstance(value, dict):
    raise ValueError(f'{model}: give the hyper-parameters as a JSON object, like {{"hidden": [32, 32]}}')
  # types from the model's schema (widths as tuples, "3" as 3); bounds are checked by the fit,
  # whose message then shows in the model's row
  return hyper_lib.from_json(model, cc.models.get(model).schema, value)


def _schema_help(model: str) -> str:
  """The model's hyper-parameters, one line each: type, bounds or choices, default, what it does."""
  return "\n".join(f"- `{h.name}`: {hyper_lib.describe(h)}" for h in cc.models.get(model).schema)


def _hyper_widgets(models: list) -> tuple[dict, list]:
  hyper, errors = {}, []
  st.caption("Leave empty for the model's defaults (those of the Train page). JSON, e.g. "
             '`{"learning_rate": 0.001, "hidden": [32, 32]}`.')
  cols = st.columns(2)
  for i, m in enumerate(models):
    text = cols[i % 2].text_input(f"{_short(m)}", key=f"cmp_hp_{m}", persist_state=KEEP,
                                  placeholder='{"learning_rate": 0.001}', help=_schema_help(m))
    try:
      hyper[m] = _parse_hyper(m, text)
    except ValueError as e:
      errors.append(str(e))
  return hyper, errors


def _metrics_or_none(fitted, heldout):
  try:
    return compare.compare_metrics(fitted, heldout, 0)
  except Exception as e:  # keep the page alive
    st.warning(f"Could not compute the metrics of {fitted.model} ({type(e).__name__}: {e}).")
    return None


def _finish_interrupted(stop_clicked: bool) -> None:
  """A comparison that a rerun cut short (Stop, or any other widget): keep what was trained."""
  run = st.session_state.get("cmp_run")
  if run is None or run["done"]:
    return
  why = "stopped by the user" if stop_clicked else "interrupted (the page was rerun)"
  for m in run["order"]:
    if m in run["results"]:
      continue
    job, part = run["jobs"][m], run["partial"].get(m)
    result = {"model": m, "key": job["key"], "budget": job["budget"], "hyper": job["hyper"],
              "fitted": None, "metrics": None, "status": "not run", "cached": False,
              "message": f"not run: the comparison was {why}"}
    if part is not None:
      msg = f"{why} at step {part['step']}; the model as it was then is kept"
      fitted = compare.mark_stopped(part["fitted"], part["step"], part["seconds"], msg)
      with st.spinner(f"Computing the metrics of the stopped {m} fit…"):
        metrics = _metrics_or_none(fitted, run["heldout"])
      result.update(fitted=fitted, metrics=metrics, status="stopped", message=msg)
    run["results"][m] = result
  run["partial"] = {}
  run["done"] = True
  run["stopped"] = why


def _trim(d: dict, keep: int) -> None:
  """Keeps the ``keep`` most recently used entries (a dict in order of use: see :func:`_touch`)."""
  for k in list(d)[:max(0, len(d) - keep)]:
    del d[k]


def _touch(d: dict, key) -> None:
  """Marks ``d[key]`` as used now (moves it last)."""
  if key in d:
    d[key] = d.pop(key)


def _compare(target: dict, models: list, mode: str, value, seed: int, hyper: dict) -> None:
  """Fits the models one after another, a progress bar each; results go to session_state."""
  jobs = []
  for m in models:
    budget = compare.budget_for(m, mode, value)
    jobs.append({"model": m, "budget": budget, "hyper": hyper.get(m, {}),
                 "key": compare.cache_key(target, m, budget, seed, hyper.get(m, {}))})
  heldout, source = _state.heldout_points(target["spec"], target.get("heldout"))
  run = {"order": list(models), "jobs": {j["model"]: j for j in jobs}, "results": {},
         "partial": {}, "done": False, "stopped": None, "target_label": target["label"],
         "target_digest": compare.data_digest(target["data"]), "data": target["data"],
         "columns": target.get("columns"),
         "heldout": target["data"] if heldout is None else heldout,
         "reference": ("training data" if heldout is None else
                       f"{min(len(heldout), metrics.N_HELDOUT)} {source}"),
         "budget_text": BUDGET_TEXT[mode] + ("" if mode == "default" else
                                            f": {compare.budget_label(jobs[0]['budget'])}"),
         "seed": seed, "target_spec": target["spec"],
         "link_settings": {"models": list(models), "mode": mode, "value": value, "seed": seed,
                           "hyper": hyper}}
  st.session_state["cmp_run"] = run  # first: a Stop rerun must find it
  cache = st.session_state.setdefault("cmp_cache", {})

  slot = st.empty()  # cleared when done: the table below says the rest
  box = slot.container(border=True)
  box.markdown("**Training, one model after another** (Stop keeps what has been trained)")
  bars = {}
  for j in jobs:
    state = "reused from the cache" if j["key"] in cache else "waiting"
    bars[j["model"]] = box.progress(0.0, text=f"{_short(j['model'])}: {state}")

  def starting(model):
    if model is not None:
      bars[model].progress(0.0, text=f"{_short(model)}: compiling the training step "
                                     "(the first chunk takes longest)…")

  def callback(model, step, record, fitted):
    run["partial"][model] = {"fitted": fitted, "step": step, "seconds": record["seconds"]}
    budget = run["jobs"][model]["budget"]
    if budget.get("seconds"):
      frac, what = record["seconds"] / budget["seconds"], f"step {step}"
    else:
      frac, what = step / budget["steps"], f"step {step} / {budget['steps']}"
    bars[model].progress(min(1.0, frac), text=f"{_short(model)}: {what} · loss {record['loss']:.4g} · "
                                              f"{record['seconds']:.1f} s")

  def on_fitted(model, fitted):
    bars[model].progress(1.0, text=f"{_short(model)}: trained; computing the metrics…")

  def pool_slot(model):  # one slot of the fit pool per model; its bar shows the place in the queue
    return _state.fit_slot(lambda text: bars[model].progress(0.0, text=f"{_short(model)}: {text}"),
                           on_start=lambda: starting(model))

  pending = [j["model"] for j in jobs if j["key"] not in cache]
  starting(pending[0] if pending else None)
  for result in compare.run_compare(target, jobs, seed=seed, heldout=run["heldout"], cache=cache,
                                    callback=callback, on_fitted=on_fitted,
                                    chunking=_state.LIVE_CHUNK, slot=pool_slot):
    m = result["model"]
    _touch(cache, result["key"])
    run["results"][m] = result
    run["partial"].pop(m, None)
    s = result["metrics"] or {}
    note = " (reused from the cache)" if result["cached"] else ""
    bars[m].progress(1.0, text=f"{_short(m)}: {result['status']}{note}"
                               + (f" · {s['steps']} steps · {s['seconds']:.1f} s" if s else ""))
    rest = [j["model"] for j in jobs if j["model"] not in run["results"] and j["key"] not in cache]
    starting(rest[0] if rest else None)
  run["done"] = True
  _trim(cache, CACHE_MAX)
  slot.empty()


def _panel_view(result: dict, data, n_points: int, columns, dims=(0, 1)):
  """panels.panel_data of a result on the coordinates ``dims``, kept in session_state."""
  fitted = result["fitted"]
  key = (result["key"], panels.fit_summary(fitted)["steps"], result["status"], n_points,
         tuple(dims))
  store = st.session_state.setdefault("cmp_panels", {})
  _touch(store, key)
  if key not in store:
    store[key] = panels.panel_data(fitted, data, n_samples=n_points, seed=0, dims=tuple(dims),
                                   labels=columns)
    _trim(store, PANELS_MAX)
  return store[key]


def _image_view(result: dict, data, shape: tuple):
  """images.image_views of a result (the digits), kept in session_state with the panels."""
  from cmm_core.viz import images
  fitted = result["fitted"]
  key = (result["key"], panels.fit_summary(fitted)["steps"], result["status"], "images", tuple(shape))
  store = st.session_state.setdefault("cmp_panels", {})
  _touch(store, key)
  if key not in store:
    store[key] = images.image_views(fitted, data, shape, seed=0)
    _trim(store, PANELS_MAX)
  return store[key]


def _figures(view: dict, model: str, one_range: bool) -> list:
  """A row's figures: base, map and samples panels, or for images the base grid, the mapped
  grid, the nearest training images and a straight base path with its image under the map."""
  if "shape" not in view:
    return list(figures.panel_figures(view, model=model, same_axes=one_range))
  from cmm_core.viz import images, registry
  labels = registry.labels_for(model)
  base_fig, mapped_fig = images.base_and_mapped_figures(
      view, base_title=f"{labels['base']}: samples", map_title=f"mapped by {labels['map_symbol']}",
      n_cols=8)  # N_GRID = 32 samples: four full rows
  return [base_fig, mapped_fig, images.nearest_figure(view),
          images.interpolation_figure(view, base_title=f"straight path in {labels['base']}")]


def _table(results: list, reference: str) -> pd.DataFrame:
  """Draws the metrics table and returns it."""
  df = pd.DataFrame(compare.table_rows(results, cc.models.LABELS))
  # a number, or why there is none (a blank numeric cell would read "None" on the page)
  df["held-out NLL"] = [compare.nll_cell(r) for r in results]
  if "bits/dim" in df:
    df["bits/dim"] = [compare.bits_cell(r) for r in results]
  num = st.column_config.NumberColumn
  st.dataframe(df, hide_index=True, width="stretch", column_config={
      "model": st.column_config.TextColumn("model", width="small"),
      "steps": num("steps", format="%d"),
      "fit seconds": num("fit s", format="%.1f", help="training time, compilation included"),
      "Sinkhorn div.": num("Sinkhorn div. ↓", format="%.4f",
                           help=f"debiased Sinkhorn divergence (ott-jax, ε = 1% of the variance) between "
                                f"{metrics.N_SINKHORN} model samples and the reference "
                                f"({reference}); 0 = same distribution"),
      "energy dist.": num("energy dist. ↓", format="%.4f",
                          help=f"energy distance between model samples and the reference ({reference})"),
      "held-out NLL": st.column_config.TextColumn(
          "held-out NLL ↓", help=f"-mean log p on the reference ({reference}), nats per point; "
                                 "'no density': the model gives samples only (sdot)"),
      "c2st": num("c2st ↓", format="%.3f",
                  help="images: accuracy of a small classifier telling 2,000 model samples from the "
                       "training images (0.5 = indistinguishable; a Gaussian fitted to the digits "
                       "scores about 0.83)"),
      "NN ratio": num("NN ratio", format="%.2f",
                      help="images: median distance from a sample to its nearest training image, over "
                           "the same for held-out images (about 1 = as novel as new data; 0 = copies)"),
      "bits/dim": st.column_config.TextColumn(
          "bits/dim ↓", help="held-out NLL in bits per pixel (of the dequantised density: an upper "
                             "bound on the pixel counts' own); 'no density': samples only (sdot)"),
      "params": num("params", format="%d", help="number of trained parameters"),
      "cached": st.column_config.CheckboxColumn("cached", help="reused from this session's cache"),
  })
  return df


def _csv_name(target_label: str) -> str:
  return "compare_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", target_label).strip("_")[:60] + ".csv"


def _row(result: dict, view, problem, one_range: bool) -> None:
  m, fitted, s = result["model"], result["fitted"], result["metrics"] or {}
  st.markdown(f"#### {_label(m)}")
  facts = [f"status **{result['status']}**"]
  if s:
    facts = [f"{s['steps']} steps", f"{s['seconds']:.1f} s"] + facts
  if result["cached"]:
    facts.append("reused from the cache")
  if _state.wait_note(result.get("wait")):
    facts.append(_state.wait_note(result.get("wait")))
  st.caption(" · ".join(facts))
  if result["status"] == "error":
    st.error(result["message"] or "Training failed.")
    return
  if result["status"] == "not run":
    st.info(result["message"] or "Not run.")
    return
  if result["status"] in ("diverged", "stopped"):
    st.warning(result["message"] or f"Training {result['status']}.")
  elif result["status"] == "time budget":
    st.caption(panels.budget_note({**panels.fit_summary(fitted), "message": result["message"]}))
  for w in (fitted.info.get("warnings") or []):
    st.caption(f":material/info: {w}")
  for e in s.get("errors", []):
    st.caption(f":material/warning: metrics: {e}")
  if problem is not None:
    kind, text = problem
    (st.info if kind == "info" else st.error)(text)
    return
  if view["n_nonfinite"]:
    st.caption(f"{view['n_nonfinite']} base sample(s) or their images were NaN/inf and are not shown.")
  figs = _figures(view, m, one_range)
  for col, fig, name in zip(st.columns(3), figs, ("base", "map", "samples")):
    col.plotly_chart(fig, key=f"cmp_panel_{m}_{name}")
  if len(figs) > 3:  # images: the mapped path, full width below
    st.plotly_chart(figs[3], key=f"cmp_panel_{m}_path")


def _results() -> None:
  run = st.session_state.get("cmp_run")
  if run is None:
    st.info("No comparison yet: tick two or more models, choose a budget and press **Compare**.")
    return
  results = [run["results"][m] for m in run["order"] if m in run["results"]]
  st.subheader("Results")
  st.caption(f"*{run['target_label']}* · budget: {run['budget_text']} · seed {run['seed']} · "
             f"metrics against {run['reference']} of the target")
  if run["target_digest"] != compare.data_digest(_state.get_target()["data"]):
    st.info("The target has changed since this comparison; press **Compare** to fit the current one. "
            "The panels below show the data these models were trained on.")
  n_cached = sum(bool(r["cached"]) for r in results)
  if n_cached:
    st.info(f"{n_cached} of {len(results)} fit(s) reused from this session's cache: same target, "
            "model, budget, seed and hyper-parameters as an earlier run. Change any of them to "
            "train afresh.", icon=":material/cached:")
  if run["stopped"]:
    st.warning(f"The comparison was {run['stopped']}: the models trained so far are kept, the "
               "model in training as it was at its last chunk of steps.")
  if run["reference"] == "training data":
    st.caption("This target has no held-out points (a table under 100 rows, or typed points "
               "without spread): the metrics compare with the training data.")
  table = _table(results, run["reference"])
  st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(),
                     file_name=_csv_name(run["target_label"]), mime="text/csv", on_click="ignore",
                     key="cmp_table_csv", icon=":material/download:")

  c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
  n_points = int(c1.select_slider("points drawn", POINTS, value=1000, key="cmp_points",
                                  persist_state=KEEP))
  one_range = c2.toggle("one range for all panels", value=False, key="cmp_one_range", persist_state=KEEP,
            help="Off: each column (bases, maps, samples) has one range shared by every model. "
                 "On: every panel of every row is drawn on one common range, to compare sizes.")
  d = int(np.asarray(run["data"]).shape[1])
  dims = (0, 1)
  shape = target_spec.image_shape(run.get("target_spec") or {})
  if shape is not None:
    st.caption("Images: each row shows base samples, the same samples mapped (in order) and "
               "samples above their nearest training images.")
  elif d > 2:
    names = run.get("columns") or [f"x{i + 1}" for i in range(d)]
    a, b = st.columns(2)
    dims = (a.selectbox("horizontal axis", range(d), 0, format_func=lambda k: names[k],
                        key=f"cmp_dim_x_{d}"),
            b.selectbox("vertical axis", range(d), 1, format_func=lambda k: names[k],
                        key=f"cmp_dim_y_{d}"))
    st.caption("With more than two coordinates the panels show the two picked; the base density "
               "and the grid are a slice through the base mean, the points are projections.")
    if dims[0] == dims[1]:
      st.warning("Pick two different coordinates.")
      return
  shown, problems = [], []
  with st.spinner("Sampling the bases and mapping them to data space…"):
    for r in results:
      view, problem = None, None
      fitted = r["fitted"]
      if fitted is not None:
        latent = fitted.config.get("latent_dim")
        if latent not in (None, d):
          problem = ("info", f"The generator's latent has {latent} dimension(s) and the data {d}: "
                             "the base / map / samples panels need equal dimensions.")
        else:
          try:
            view = (_image_view(r, run["data"], shape) if shape is not None else
                    _panel_view(r, run["data"], n_points, run.get("columns"), dims))
          except Exception as e:  # the model failed to sample or map: in its row
            problem = ("error", f"Could not draw the panels ({type(e).__name__}): {e}")
      shown.append(view)
      problems.append(problem)
  try:
    shared = shown if shape is not None else compare.share_ranges(shown)
  except ValueError:
    shared = shown
  for r, view, problem in zip(results, shared, problems):
    with st.container(border=True):
      _row(r, view, problem, one_range)
  # the address is known while the page runs (not in the download's callback)
  link = _link.url_for(share.encode(run.get("target_spec") or {}, compare=run.get("link_settings")))
  st.download_button(
      "Download a report (HTML)", data=lambda: _report_html(run, results, shared, table, one_range, link),
      file_name=_csv_name(run["target_label"])[:-len(".csv")] + "_report.html", mime="text/html",
      on_click="ignore", key="cmp_report", icon=":material/description:",
      help="One file for a handout: the table, every model's panels (interactive, opens offline), "
           "the target, the budget, the settings and the link. A figure's camera button saves it "
           "as SVG there (PNG here).")


def _report_html(run: dict, results: list, views: list, table: pd.DataFrame, one_range: bool,
                 link: str) -> str:
  """The Compare page's handout (cmm_core.report), made when the button is clicked."""
  sections = []
  for r, view in zip(results, views):
    if view is not None:
      sections.append((f"{_label(r['model'])}: {r['status']}", _figures(view, r["model"], one_range)))
  settings = {"models": ", ".join(run["order"]), "budget": run["budget_text"], "seed": run["seed"],
              "metrics against": run["reference"]}
  settings.update({f"{m} hyper-parameters": run["jobs"][m].get("hyper") or "defaults"
                   for m in run["order"]})
  return report.html_report(f"Compare on {run['target_label']}", sections=sections,
                            target=run["target_label"], settings=settings,
                            metrics=table.to_dict("records"), link=link)


def _samples_entry() -> None:
  """Models fitted to the current target's samples (the page before energies)."""
  target = _state.get_target()
  tdata = np.asarray(target["data"])
  st.caption(f"Target: **{target['label']}**, {tdata.shape[0]} points in {tdata.shape[1]}D. "
             "Every ticked model is fitted to it with the same budget and seed, one after another; "
             "then each gets a row of panels (base, map, samples) on shared axes, and the table "
             "ranks them on a fresh draw of the target.")
  st.page_link("app_pages/target.py", label="change the target", icon=":material/scatter_plot:")

  names = cc.models.names()
  left, right = st.columns([3, 2], gap="large")
  with left:
    st.markdown("**models**")
    ticked = [m for m in names
              if st.checkbox(_label(m), value=m in DEFAULT_TICKED, key=f"cmp_use_{m}",
                             persist_state=KEEP)]
  with right:
    mode, value, seed = _budget_widgets("cmp", MAX_STEPS,
                                        {m: cc.models.get(m).default_steps for m in names})
    c1, c2 = st.columns(2)
    go = c1.button("Compare", type="primary", icon=":material/play_arrow:", width="stretch",
                   key="cmp_go")
    stop = c2.button("Stop", icon=":material/stop:", width="stretch", key="cmp_stop",
                     help="Stops the comparison; the models trained so far are kept, and the one in "
                          "training as it was at its last chunk of steps.")
  with st.expander("advanced: hyper-parameters"):
    hyper, hyper_errors = _hyper_widgets(ticked)

  _link.share_box(_link.write_url(compare={"models": ticked, "mode": mode, "value": value,
                                            "seed": seed, "hyper": hyper}))
  _finish_interrupted(stop)
  for msg in hyper_errors:
    st.error(msg)
  if go or _link.run_requested("compare"):
    if not ticked:
      st.warning("Tick at least one model.")
    elif hyper_errors:
      st.error("Fix the hyper-parameters first.")
    else:
      _compare(target, ticked, mode, value, seed, hyper)
  _results()


def _budget_widgets(prefix: str, max_steps: int, defaults: dict) -> tuple:
  """The budget radio, its steps or seconds, and the seed (keys ``{prefix}_budget``,
  ``{prefix}_steps``, ``{prefix}_seconds``, ``{prefix}_seed``); ``defaults``: ``{model: steps}``.
  Returns ``(mode, value, seed)``."""
  mode = st.radio("budget", compare.BUDGET_MODES, format_func=BUDGET_TEXT.get, key=f"{prefix}_budget",
                  persist_state=KEEP, horizontal=True)
  a, b = st.columns(2)
  value = None
  if mode == "steps":
    value = int(a.number_input("steps per model", 1, max_steps, 500, 50, key=f"{prefix}_steps",
                               persist_state=KEEP))
  elif mode == "seconds":
    value = float(a.number_input("seconds per model", 1.0, 3600.0, 30.0, 5.0, format="%g",
                                 key=f"{prefix}_seconds", persist_state=KEEP,
                                 help="Wall-clock time, compilation included; training stops at the "
                                      "first chunk of steps past it. A model whose learning rate "
                                      "decays over its fit decays it over the steps this time is "
                                      "measured to hold."))
  else:
    a.caption("default steps: " + ", ".join(f"{m} {n}" for m, n in defaults.items()))
  seed = int(b.number_input("seed", 0, limits.MAX_APP_SEED, 0, 1, key=f"{prefix}_seed", persist_state=KEEP))
  return mode, value, seed


def _energy_entry() -> None:
  """Models fitted to an energy known up to Z under one budget, next to MCMC with the same number of
  energy evaluations (the Sample an energy page's views, with a time budget and a handout)."""
  top = st.columns([2, 3])
  with top[0]:
    spec, energy = _energy.choose_energy("cmpe")
  with top[1]:
    if energy is not None:
      _energy.preview(spec, energy, "cmpe")
  names = list(_energy.MODEL_LABELS)
  left, right = st.columns([3, 2], gap="large")
  with left:
    st.markdown("**models** (each fitted by its free energy; MCMC runs beside them)")
    ticked = [m for m in names if st.checkbox(_energy.MODEL_LABELS[m], value=True, key=f"cmpe_use_{m}",
                                              persist_state=KEEP)]
    c = st.columns(2)
    method = c[0].selectbox("MCMC baseline", list(_energy.METHOD_LABELS), format_func=_energy.METHOD_LABELS.get,
                            key="cmpe_method", persist_state=KEEP,
                            help="given as many evaluations of ∇E as the largest model budget spent on E")
    step_size = float(c[1].number_input("MCMC step size (fixed)", 1e-6, 10.0, 0.1, 0.01, format="%g",
                                        key="cmpe_step_size", persist_state=KEEP,
                                        help="MALA: x − h ∇E + √(2h) ξ; HMC: the leapfrog step"))
  with right:
    mode, value, seed = _budget_widgets(
        "cmpe", limits.MAX_ENERGY_STEPS, {m: cc.api.energy_model(m).default_steps for m in names})
    go = st.button("Compare", type="primary", icon=":material/play_arrow:", width="stretch",
                   key="cmpe_go", disabled=energy is None)
  params = None
  if spec is not None and ticked:
    settings = {"models": ticked, "mode": mode, "value": value, "seed": seed, "method": method,
                "step_size": step_size}
    settings.update(_energy.spec_settings(spec))
    params = _link.write_url(energy=settings)
    _link.share_box(params)
  if (go or _link.run_requested("compare")) and energy is not None:
    if not ticked:
      st.warning("Tick at least one model.")
    else:
      budgets = {m: compare.budget_for(m, mode, value, energy=True) for m in ticked}
      if _energy.train(spec, energy, budgets, seed, method, step_size, run_key="cmpe_run"):
        st.session_state["cmpe_run"].update(
            budget_text=BUDGET_TEXT[mode] + ("" if mode == "default" else
                                            f": {compare.budget_label(budgets[ticked[0]])}"),
            link=_link.url_for(params))   # the handout's link: these settings, not later ones
  run = st.session_state.get("cmpe_run")
  if run is None:
    st.info("No comparison on an energy yet: pick the energy, tick the models, choose a budget and "
            "press **Compare**.")
    return
  if energy is None or run["spec"] != spec:
    st.info("The results below are for another energy or other parameters; press **Compare** for this one.")
  e = _energy.energy_for(run["spec"])
  table, sections = _energy.show_results(
      run, e, prefix="cmpe", caption=f"*{e.label}* · budget: {run['budget_text']} · seed {run['seed']}")
  c1, c2 = st.columns(2)
  name = _csv_name(f"energy_{e.label}")
  c1.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), file_name=name,
                     mime="text/csv", on_click="ignore", key="cmpe_table_csv", icon=":material/download:")
  c2.download_button(
      "Download a report (HTML)", on_click="ignore", key="cmpe_report", icon=":material/description:",
      data=lambda: report.html_report(
          f"Compare on the energy {e.label}", sections=sections, target=f"exp(−E) / Z, E = {e.label}",
          settings={"models": ", ".join(run["models"]), "budget": run["budget_text"], "seed": run["seed"],
                    "MCMC": _energy.mcmc_settings_text(run)},
          metrics=table.to_dict("records"), link=run["link"]),
      file_name=name[:-len(".csv")] + "_report.html", mime="text/html",
      help="One file for a handout: the table, the panels and curves (interactive, opens offline), the "
           "settings and the link.")


st.title("Compare models")
entry = st.radio("compare on", [SAMPLES_ENTRY, _link.ENERGY_ENTRY], horizontal=True, key="cmp_on",
                 persist_state=KEEP,
                 help="the current target's samples (Target page), or a density known as exp(−E) / Z up to Z "
                      "(the Sample an energy page's energies and formulas)")
if entry == SAMPLES_ENTRY:
  _samples_entry()
else:
  _energy_entry()
