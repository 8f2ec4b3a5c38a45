"""Train & explore page: fit a model to the chosen target, watch the loss, then compare the
base, the transport map and the samples side by side."""

import dataclasses
import re

import numpy as np
import streamlit as st

import cmm_core as cc
from cmm_core import limits
from cmm_core import hyper as hyper_lib, io, metrics, report, share, target_spec
from cmm_core.viz import figures, geometry, panels, registry
from cmm_core.api import MAX_STEPS
from cmm_core.models.base import MAX_SAMPLES
from app_support import link as _link, state as _state


KEEP = "session"  # widget values survive page switches
LAYERS = ["density", "base samples", "grid", "warped grid", "arrows", "data", "samples"]
POINTS = [500, 1000, 2000, 4000]
def _hyper_widget(col, model: str, h: hyper_lib.Hyper):
  """The widget of one hyper-parameter, by its kind; returns what it holds (widths as text)."""
  key, helptext = f"tr_hp_{model}_{h.name}", hyper_lib.describe(h)
  if h.kind == "bool":
    return col.checkbox(h.name, value=h.default, key=key, help=helptext, persist_state=KEEP)
  if h.kind == "choice":
    return col.selectbox(h.name, h.choices, index=h.choices.index(h.default), key=key,
                         help=helptext, persist_state=KEEP)
  if h.kind == "int":  # an optional int left empty is None: "auto"
    value = col.number_input(h.name, value=h.default, step=1, key=key, help=helptext,
                             placeholder=f"auto: {h.optional}" if h.optional else None,
                             persist_state=KEEP)
    return None if value is None else int(value)
  if h.kind == "float":  # an optional float left empty is None too
    step = h.default / 10 if h.default else max(float(h.lo), 1e-3)  # a tenth of the default: rates
    value = col.number_input(h.name, value=h.default, step=step, format="%g", key=key,
                             help=helptext, persist_state=KEEP,
                             placeholder=f"auto: {h.optional}" if h.optional else None)
    return None if value is None else float(value)
  return col.text_input(f"{h.name} (comma-separated)", value=_link.widget_value(h, h.default),
                        key=key, help=helptext, persist_state=KEEP)


def _hyper_widgets(model: str) -> tuple[dict, list]:
  """One widget per hyper-parameter of the model's schema shown in the UI; returns (the values
  that differ from the defaults, error messages for values the schema refuses)."""
  changed, errors = {}, []
  cols = st.columns(3)
  for i, h in enumerate(h for h in cc.models.get(model).schema if h.ui):
    value = _hyper_widget(cols[i % 3], model, h)
    try:  # widths are typed as text
      value = (hyper_lib.parse if h.kind == "widths" else hyper_lib.check)(model, h, value)
    except ValueError as e:
      errors.append(str(e))
      continue
    if value != h.default:
      changed[h.name] = value
  return changed, errors


def _apply_suggestion(model: str, suggestion: dict) -> None:
  """on_click: puts a suggested step count and hyper-parameters into the widgets (before they draw)."""
  st.session_state[f"tr_steps_{model}"] = int(suggestion["steps"])
  for h in cc.models.get(model).schema:
    if h.ui:
      st.session_state[f"tr_hp_{model}_{h.name}"] = _link.widget_value(
          h, suggestion["hyper"].get(h.name, h.default))


def _suggestion_box(model: str, target: dict) -> None:
  """When the model has measured settings for this built-in target, offer them in one click."""
  spec = target.get("spec") or {}
  toy = spec.get("kind") in (target_spec.Kind.TOY_1D, target_spec.Kind.TOY_2D)
  whole = spec.get("kind") == target_spec.Kind.REAL and target_spec.image_shape(spec)  # digits, whole
  name = spec.get("name") if toy or whole else None
  suggestion = cc.models.get(model).suggested.get(name)
  if suggestion is None:
    return
  hyper = ", ".join(f"{k}={v}" for k, v in suggestion["hyper"].items()) or "the defaults"
  state = st.session_state
  in_use = state.get(f"tr_steps_{model}") == suggestion["steps"] and all(
      state.get(f"tr_hp_{model}_{h.name}", _link.widget_value(h, h.default))
      == _link.widget_value(h, suggestion["hyper"].get(h.name, h.default))
      for h in cc.models.get(model).schema if h.ui)
  if in_use:
    st.caption(f"Using the settings measured for **{name}** ({hyper}, {suggestion['steps']} steps): "
               f"{suggestion['why']}.")
    return
  c1, c2 = st.columns([4, 1], vertical_alignment="center")
  how = (f"{hyper} and {suggestion['steps']} steps" if suggestion["hyper"]
         else f"{suggestion['steps']} steps (the default settings otherwise)")
  c1.info(f"For **{name}**, {model} fits much better with {how}: {suggestion['why']}.",
          icon=":material/tips_and_updates:")
  c2.button("Use these settings", key=f"tr_suggest_{model}_{name}", on_click=_apply_suggestion,
            args=(model, suggestion), icon=":material/tune:")


def _train(model: str, steps: int, seed: int, hyper: dict, target: dict) -> None:
  """Runs cc.fit with a live progress bar and loss chart; every chunk is kept in session_state."""
  uid = _state.new_fit_uid()
  settings = {"model": model, "steps": steps, "seed": seed, "hyper": hyper}
  box = st.empty()  # the place in the queue while the fit waits, then the progress bar
  live = st.empty()
  compiling = "compiling the training step (the first chunk takes longest)…"
  wait = None

  def callback(step, record, fitted):
    _state.store_fit(fitted, uid, target, settings, wait)  # first: a rerun here must not lose it
    box.progress(min(1.0, step / steps),
                 text=f"step {step} / {steps} · loss {record['loss']:.4g} · "
                      f"{record['seconds']:.1f} s")
    live.plotly_chart(figures.loss_figure(panels.history_arrays(fitted.history),
                                          title="training loss (live)", total_steps=steps),
                      key=f"tr_live_{uid}_{step}")

  box.progress(0.0, text=compiling)
  try:
    with _state.fit_slot(lambda text: box.info(text, icon=":material/hourglass_top:"),
                         on_start=lambda: box.progress(0.0, text=compiling)) as ticket:
      wait = {"place": ticket.place, "seconds": ticket.waited}
      fitted = cc.fit(model, target["data"], steps=steps, seed=seed, callback=callback,
                      dequantize=target_spec.dequantized_counts(target.get("spec") or {}),
                      **_state.LIVE_CHUNK, **hyper)
  except ValueError as e:  # DataError and TrainingError are ValueErrors with a user message
    box.empty()
    st.error(str(e))
    return
  except Exception as e:  # a bug, not the user's fault: say so without a traceback
    box.empty()
    st.error(f"Training failed with an internal error ({type(e).__name__}: {e}). "
             "Try other settings; the last completed chunk, if any, is kept below.")
    return
  _state.store_fit(fitted, uid, target, settings, wait)
  box.empty()
  live.empty()


def _panels(entry: dict, n_points: int, dims) -> dict:
  """panels.panel_data for the fit, cached in session_state (recomputed when anything changes)."""
  fitted = entry["fitted"]
  key = (entry["uid"], panels.fit_summary(fitted)["steps"], n_points, tuple(dims))
  cached = st.session_state.get("panels")
  if cached is not None and cached["key"] == key:
    return cached["view"]
  with st.spinner("Sampling the base and mapping it to data space…"):
    view = panels.panel_data(fitted, entry["data"], n_samples=n_points, seed=0, dims=dims,
                             labels=entry.get("columns"))
  st.session_state["panels"] = {"key": key, "view": view}
  return view


def _draw_panels(entry: dict, model: str, n_points: int, dims, same_axes: bool, layers) -> None:
  """The three panels side by side: base, transport map, samples vs data."""
  if len(set(dims)) < len(dims):
    st.warning("Pick two different coordinates.")
    return
  latent = entry["fitted"].config.get("latent_dim")
  d = int(np.asarray(entry["data"]).shape[1])
  if latent not in (None, d):
    st.info(f"The generator's latent has {latent} dimension(s) and the data {d}: the base / map / "
            "samples panels need equal dimensions. The generator's own views are below.")
    return
  try:
    view = _panels(entry, n_points, dims)
  except Exception as e:  # the model failed to sample or map: show it, keep the page alive
    st.error(f"Could not draw the panels ({type(e).__name__}): {e}")
    return
  if view["n_nonfinite"]:
    st.warning(f"{view['n_nonfinite']} base sample(s) or their images were NaN/inf and are not shown.")
  figs = figures.panel_figures(view, model=model, same_axes=same_axes, layers=layers)
  squeezed = figures.squeezed_panels(view) if same_axes else ()
  if squeezed:
    what = " and ".join({"base": "the base", "samples": "the data and samples"}[n] for n in squeezed)
    verb = "fills" if squeezed == ("base",) else "fill"
    st.caption(f"On one common range {what} {verb} only a thin strip: in the data's own units (grams "
               "next to millimetres, or far from 0) the base lies far from the data or is much "
               "narrower than it. Turn **same axes** off to see each panel in its own range.")
  cols = st.columns(3)
  for col, fig, name in zip(cols, figs, ("base", "map", "samples")):
    col.plotly_chart(fig, key=f"tr_panel_{name}")


def _image_scores_line(entry: dict) -> str:
  """The Markdown line of the image figures (c2st, NN ratio, bits/dim) of the fit, computed once
  and kept ("" when the fit has no held-out images or cannot be sampled)."""
  from cmm_core import compare
  fitted = entry["fitted"]
  key = (entry["uid"], panels.fit_summary(fitted)["steps"])
  cached = st.session_state.get("image_scores")
  if cached is None or cached["key"] != key:
    held, _, _ = _heldout(entry)
    points = entry.get("heldout")
    value = None
    if points is not None:
      errors = []
      with st.spinner("Scoring the samples against the training images…"):
        value = compare.image_figures(fitted, np.asarray(entry["data"]), points,
                                      None if held is None else held.nll, 0, errors)
    cached = {"key": key, "value": value}
    st.session_state["image_scores"] = cached
  v = cached["value"]
  if not v or not np.isfinite(v["c2st"]):
    return ""
  bpd = f" · **{v['bits_per_dim']:.3f}** bits/dim" if v["bits_per_dim"] is not None else ""
  return f"images: c2st **{v['c2st']:.3f}** · NN ratio **{v['nn_ratio']:.2f}**{bpd}"


def _draw_image_views(entry: dict, shape: tuple) -> None:
  """Images instead of points (the digits): base samples and their images under the map, the
  nearest training images, a mapped path between two base points, training images."""
  from cmm_core.viz import images
  fitted = entry["fitted"]
  key = (entry["uid"], panels.fit_summary(fitted)["steps"], tuple(shape))
  cached = st.session_state.get("image_views")
  if cached is None or cached["key"] != key:
    try:
      with st.spinner("Sampling the base and mapping it to images…"):
        view = images.image_views(fitted, entry["data"], shape, seed=0)
    except Exception as e:  # a latent of another dimension, a model that fails to sample
      st.info(f"No image views for this model: {e}")
      return
    cached = {"key": key, "view": view}
    st.session_state["image_views"] = cached
  view = cached["view"]
  line = _image_scores_line(entry)
  if line:
    st.markdown(line, help="c2st: accuracy of a small classifier telling 2,000 samples from the "
                "training images (0.5 = indistinguishable; a Gaussian fitted to the digits scores "
                "about 0.83). NN ratio: median distance from a sample to its nearest training image "
                "over the same for held-out images (about 1: as novel as new images; 0: copies). "
                "bits/dim: the held-out NLL per pixel (of the dequantised density)."
                + (" Training drew fresh dequantisation noise at every step." if fitted.info.get("dequantize")
                   else ""))
  labels = registry.labels_for(fitted.model)
  if view["n_nonfinite"]:
    st.warning(f"{view['n_nonfinite']} base sample(s) or their images were NaN/inf.")
  base_fig, mapped_fig = images.base_and_mapped_figures(
      view, base_title=f"{labels['base']}: samples", map_title=f"their images under {labels['map_symbol']}")
  c1, c2 = st.columns(2)
  c1.plotly_chart(base_fig, key="tr_img_base")
  c2.plotly_chart(mapped_fig, key="tr_img_mapped")
  st.caption("Tile k on the right is tile k on the left mapped to data space. The base grid is "
             "drawn in its own range (a Gaussian base is not in pixel units).")
  t1, t2, t3, t4 = st.tabs(["nearest training images", "a path between two base points",
                            "training images", "complete a hidden part"])
  t1.plotly_chart(images.nearest_figure(view), key="tr_img_nearest")
  t2.plotly_chart(images.interpolation_figure(view), key="tr_img_path")
  t3.plotly_chart(images.grid_figure(view["data"], view["shape"], title="training images",
                                     value_range=view["data_range"]), key="tr_img_data")
  with t4:
    _inpainting(entry, view)


@st.cache_data(show_spinner=False, max_entries=4)
def _digit_classifier(name: str):
  """A digit classifier trained on the training rows of a labelled image data set (pure in the
  shipped data; st.cache_data hands every session its own copy of the numpy weights)."""
  from cmm_core import datasets, image_metrics
  train, _ = target_spec.hold_out(datasets.load(name))
  labels, _ = target_spec.hold_out(datasets.labels(name))
  return image_metrics.fit_classifier(train, labels, seed=0)


def _heldout_labels(entry: dict):
  """The labels of a shipped labelled data set's held-out rows (the digits), else None."""
  from cmm_core import datasets
  spec = entry.get("target_spec") or {}
  name = spec.get("name")
  if (spec.get("kind") != target_spec.Kind.REAL.value or name not in datasets.names()
      or spec.get("standardize")):  # the classifier reads images in their own units
    return None
  labels = datasets.labels(name)
  return None if labels is None else target_spec.hold_out(labels)[1]


def _inpainting(entry: dict, view: dict) -> None:
  """Hide part of a held-out image; the model completes it (``fitted.inpaint``), next to the exact
  conditional of a Gaussian fitted to the training images."""
  from cmm_core import image_metrics, inpaint
  from cmm_core.viz import images
  held = entry.get("heldout")
  fitted = entry["fitted"]
  if held is None or not len(held):
    st.info("This target keeps no held-out images to complete.")
    return
  c1, c2, c3, c4, c5 = st.columns([1, 2, 1, 1, 1], vertical_alignment="bottom")
  idx = int(c1.number_input("held-out image", 0, len(held) - 1, 0, 1, key="tr_inp_idx"))
  mask_name = c2.selectbox("hide", (*images.MASKS, images.BRUSH), key="tr_inp_mask")
  k = int(c3.number_input("completions", 1, 8, 4, 1, key="tr_inp_k"))
  steps = int(c4.number_input("MALA steps", 2, limits.MAX_INPAINT_STEPS, inpaint.DEFAULT_STEPS, 100, key="tr_inp_steps",
                              help="transitions of each completion's chain, the first half adapting its "
                                   "step size: fewer finish sooner, more mix better"))
  go_clicked = c5.button("Complete", key="tr_inp_go", icon=":material/draw:")
  if mask_name == images.BRUSH:
    mask = _brushed_mask(held[idx], idx, view)
    if mask.all():
      st.caption("Select the pixels to hide on the image above with the box or lasso tool (each "
                 "selection adds to the hidden pixels), then press **Complete**.")
      return
  else:
    mask = images.mask_preset(view["shape"], mask_name, seed=idx)
  key = (entry["uid"], panels.fit_summary(fitted)["steps"], idx, mask_name, k, steps, mask.tobytes())
  cached = st.session_state.get("inpaint")
  if go_clicked and (cached is None or cached["key"] != key):
    x = np.repeat(np.where(mask, held[idx], np.nan)[None], k, axis=0)
    masks = np.repeat(mask[None], k, axis=0)
    train = np.asarray(entry["data"])
    mean, cov = image_metrics.gaussian_baseline(train)
    rows, problems = [], []
    with st.spinner(f"Completing the image {k} times…"):
      try:
        rows.append((fitted.model, np.asarray(fitted.inpaint(x, masks, seed=idx, steps=steps))))
      except (NotImplementedError, ValueError) as e:
        problems.append(f"{fitted.model} cannot complete images: {e}")
      except Exception as e:  # keep the page alive
        problems.append(f"{fitted.model} failed to complete ({type(e).__name__}: {e})")
      rows.append(("Gaussian conditional", inpaint.gaussian_inpaint(mean, cov, x, masks, seed=idx)))
    cached = {"key": key, "rows": rows, "problems": problems, "mask": mask}
    st.session_state["inpaint"] = cached
  if cached is None or cached["key"] != key:
    st.caption("Pick a held-out image and what to hide, then press **Complete**: the model draws the "
               "hidden pixels from its own conditional density given the visible ones; the "
               "Gaussian fitted to the training images does the same exactly, as a baseline.")
    return
  for p in cached["problems"]:
    st.warning(p)
  st.plotly_chart(images.inpainting_figure(held[idx], cached["mask"], cached["rows"], view["shape"],
                                           value_range=view["data_range"]), key="tr_inp_fig")
  labels = _heldout_labels(entry)
  if labels is not None:
    clf = _digit_classifier(entry["target_spec"]["name"])
    reads = [f"{name}: {', '.join(str(int(v)) for v in clf.predict(c))}" for name, c in cached["rows"]]
    st.caption(f"A digit classifier (trained on the training images) reads the completions as "
               f"{' · '.join(reads)}; the image is a {int(labels[idx])}.")


def _brush_select(shape) -> None:
  """on_select callback of the brush: the selected pixels join the hidden ones."""
  from cmm_core.viz import images
  state = st.session_state.get("tr_inp_brush") or {}
  points = (state.get("selection") or {}).get("points") or []
  brushed = st.session_state.get("tr_inp_hidden")
  if brushed is not None and points:
    hidden = np.asarray(brushed["hidden"], bool) | ~images.mask_from_selection(points, shape)
    brushed["hidden"] = hidden.tolist()


def _brushed_mask(image, idx: int, view: dict) -> np.ndarray:
  """The brush: the image with a marker per pixel; each box or lasso selection hides the selected
  pixels (kept in the session across reruns, per held-out image). Returns the observed-pixel mask,
  bool ``[d]`` (all True before any selection)."""
  from cmm_core.viz import images
  d = int(np.asarray(image).size)
  brushed = st.session_state.get("tr_inp_hidden")
  if brushed is None or brushed["idx"] != idx or len(brushed["hidden"]) != d:
    brushed = st.session_state["tr_inp_hidden"] = {"idx": idx, "hidden": [False] * d}
  hidden = np.asarray(brushed["hidden"], bool)
  c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
  with c1:
    st.plotly_chart(images.brush_figure(image, view["shape"], hidden, value_range=view["data_range"]),
                    key="tr_inp_brush", on_select=lambda: _brush_select(view["shape"]),
                    selection_mode=("box", "lasso"), width="content", config={"displaylogo": False})
  if c2.button("show every pixel again", key="tr_inp_clear", disabled=not hidden.any()):
    brushed["hidden"] = [False] * d
    st.rerun()
  return ~hidden


SWEEP_EPSILONS = (0.0, 0.025, 0.05, 0.1)


def _epsilon_experiment(target: dict) -> None:
  """Houdard et al.'s experiment in one click: sdot fitted at several epsilon, side by side."""
  from cmm_core.models import sdot
  from cmm_core.viz import sdot as sdot_viz
  with st.expander("the epsilon experiment: sdot at ε = " + ", ".join(f"{e:g}" for e in SWEEP_EPSILONS),
                   expanded="sdot_sweep" in st.session_state):
    st.caption("Without entropic regularisation (ε = 0) the transport cost need not have a gradient "
               "in the generator's parameters, which can make training erratic (Houdard, Leclaire, "
               "Papadakis & Rabin 2021); a large ε always has one but biases the fit: the samples shrink "
               "toward the data's modes. One click fits sdot once per ε on this target (600 steps each, "
               "seed 0, other settings default) and shows the samples with their energy distance to the "
               "data. With the default (Fourier) generator the shrinkage at large ε is the stronger effect "
               "on eight_gaussians; with the plain MLP of earlier versions ε = 0 did worst (docs/sdot.md).")
    if st.button("Run the epsilon experiment", key="tr_sweep", icon=":material/science:"):
      progress = st.progress(0.0, text="fitting ε = 0…")
      results = []
      try:
        for i, eps in enumerate(SWEEP_EPSILONS):  # one slot of the fit pool per fit
          with _state.fit_slot(lambda text, i=i: progress.progress(i / len(SWEEP_EPSILONS), text=text)):
            progress.progress(i / len(SWEEP_EPSILONS), text=f"fitting ε = {eps:g}…")
            results += sdot.epsilon_sweep(target["data"], (eps,), steps=600, seed=0)
          progress.progress((i + 1) / len(SWEEP_EPSILONS),
                            text=f"ε = {eps:g} done ({results[-1]['seconds']:.0f} s)")
      except ValueError as e:
        st.error(str(e))
        return
      progress.empty()
      st.session_state["sdot_sweep"] = {
          "spec": target["spec"], "data": target["data"],
          "results": [{k: r[k] for k in ("epsilon", "energy_distance", "seconds", "samples")} for r in results]}
    sweep = st.session_state.get("sdot_sweep")
    if sweep is None:
      return
    if sweep["spec"] != target["spec"]:
      st.info("These results are for a previous target; run the experiment again for this one.")
    st.plotly_chart(sdot_viz.epsilon_sweep_figure(sweep["results"], sweep["data"]), key="tr_sweep_fig")


def _heldout(entry: dict) -> tuple:
  """``(held-out metrics or None, their source in words, training-data NLL or None)`` of the fit,
  computed once per fit and kept. The held-out metrics are ``metrics.heldout_metrics`` on a table's
  held-out rows or a fresh draw of the target, the Compare page's numbers for the same fit (None
  when there is neither); the training-data NLL is taken on as many training points (None without
  a density)."""
  fitted = entry["fitted"]
  if np.asarray(entry["data"]).shape[0] == 0:  # a saved model shown without data
    return None, "", None
  key = (entry["uid"], panels.fit_summary(fitted)["steps"])
  cached = st.session_state.get("heldout")
  if cached is not None and cached["key"] == key:
    return cached["value"]
  held = train_nll = None
  source = ""
  try:
    with st.spinner("Measuring the model on held-out points…"):
      points, source = _state.heldout_points(entry["target_spec"], entry.get("heldout"))
      if points is not None:
        held = metrics.heldout_metrics(fitted, points, seed=0)
      train = geometry.subsample(np.asarray(entry["data"]), metrics.N_HELDOUT, seed=0)
      train_nll = metrics.nll(fitted.log_prob, train)
  except NotImplementedError:
    train_nll = None
  except Exception as e:  # keep the page alive
    st.warning(f"Could not evaluate the model ({type(e).__name__}): {e}")
  value = (held, source, train_nll)
  st.session_state["heldout"] = {"key": key, "value": value}
  return value


def _heldout_line(held, source, train_nll) -> str:
  """The Markdown line of the held-out numbers ("" when there is nothing to show)."""
  parts = []
  if held is not None:
    if held.nll is not None:
      parts.append(f"held-out NLL **{held.nll:.3f}** nats/point")
    parts.append(f"energy distance **{held.energy:.4f}**")
    parts.append(f"Sinkhorn div. **{held.sinkhorn:.4f}** ({held.n} {source}, as on the Compare "
                 "page)")
  elif train_nll is not None:
    parts.append("no held-out points exist for this target (a small table, or typed points "
                 "without spread)")
  if train_nll is not None:
    parts.append(f"training-data NLL {train_nll:.3f}")
  return " · ".join(parts)


def _draw_model_figures(entry: dict) -> None:
  """The model's own views (animation, cells, ...), computed once per fit and kept."""
  fitted = entry["fitted"]
  if not registry.has_figures(fitted.model) or np.asarray(entry["data"]).shape[0] == 0:
    return
  key = (entry["uid"], panels.fit_summary(fitted)["steps"])
  cached = st.session_state.get("model_figures")
  if cached is None or cached["key"] != key:
    try:
      with st.spinner("Drawing the model's own views…"):
        figs = registry.model_figures(fitted, entry["data"], seed=0)
    except Exception as e:  # keep the page alive, say what failed
      st.error(f"Could not draw the {fitted.model} views ({type(e).__name__}): {e}")
      return
    cached = {"key": key, "figs": figs}
    st.session_state["model_figures"] = cached
  if not cached["figs"]:
    return
  st.subheader(f"{fitted.model}: its own views")
  tabs = st.tabs([title for title, _ in cached["figs"]])
  for i, (tab, (title, fig)) in enumerate(zip(tabs, cached["figs"])):
    tab.plotly_chart(fig, key=f"tr_model_fig_{i}")


def use_saved_model(blob: bytes, filename: str, target: dict):
  """Loads a model file (``cmm_core.io.from_bytes``) and makes it the current fit, shown against
  ``target`` when the dimensions match and without data otherwise. Returns an error message for a
  file that cannot be used (the current fit is then kept), else None."""
  try:
    fitted = io.from_bytes(blob)
    d = fitted.dim
  except cc.DataError as e:
    return f"{filename}: {e}"
  except Exception as e:  # a damaged file the reader did not catch: say so, keep the page alive
    return f"{filename}: this model file could not be used ({type(e).__name__}: {e})."
  td = int(np.asarray(target["data"]).shape[1])
  if td != d:
    target = {"label": f"no data (a {d}D model, the current target is {td}D)",
              "data": np.zeros((0, d), np.float32), "spec": {"kind": "saved model", "file": filename},
              "columns": None}
  steps = panels.fit_summary(fitted)["steps"]
  settings = {"model": fitted.model, "steps": steps, "seed": None, "hyper": dict(fitted.config)}
  _state.store_fit(fitted, _state.new_fit_uid(), target, settings)
  st.session_state["fit"]["file"] = filename
  return None


def _saved_model_uploader(target: dict) -> None:
  """"Explore a saved model": a model file becomes the current fit (once per file)."""
  with st.expander("explore a saved model", icon=":material/upload_file:",
                   expanded=st.session_state.get("tr_saved") is not None):
    up = st.file_uploader(
        "a model file (.msgpack) downloaded from this page or written by `python -m cmm_core fit`",
        type=["msgpack"], key="tr_saved_upload", max_upload_size=io.MAX_MODEL_BYTES // 2**20,
        help="The model replaces the current fit. It is shown against the current target when their "
             "dimensions match, otherwise its samples are shown alone.")
    if up is None:
      st.session_state.pop("tr_saved", None)
      return
    file_id = getattr(up, "file_id", None) or up.name
    saved = st.session_state.get("tr_saved")
    if saved is None or saved["id"] != file_id:  # a new file (reruns keep the old one in the widget)
      saved = {"id": file_id, "error": use_saved_model(up.getvalue(), up.name, target)}
      st.session_state["tr_saved"] = saved
    if saved["error"]:
      st.error(saved["error"])


def _model_file_name(entry: dict) -> str:
  if entry.get("file"):  # a loaded model keeps its file's name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(entry["file"]).removesuffix(".msgpack")) + ".msgpack"
  spec = entry.get("target_spec") or {}
  what = spec.get("name") or spec.get("kind") or "data"
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{entry['fitted'].model}_{what}") + ".msgpack"


@st.fragment
def _downloads(entry: dict) -> None:
  """The model file and samples as CSV; both are made when the button is clicked."""
  fitted = entry["fitted"]
  if "trained_on" not in fitted.info and not entry.get("file"):  # say what it was trained on
    fitted = dataclasses.replace(fitted, info={**fitted.info, "trained_on": entry["target_label"]})
  c1, c2, c3 = st.columns([2, 1, 2], vertical_alignment="bottom")
  c1.download_button(
      "Download the model", data=lambda: io.to_bytes(fitted), file_name=_model_file_name(entry),
      mime="application/octet-stream", on_click="ignore", key="tr_dl_model",
      icon=":material/download:", width="stretch",
      help="Explore it here later (explore a saved model, above), load it with "
           "`cmm_core.load(path)` or sample it with `python -m cmm_core sample FILE`.")
  n = int(c2.number_input("samples in the CSV", 1, MAX_SAMPLES, 2000, 500, key="tr_dl_n",
                          persist_state=KEEP))
  c3.download_button(
      f"Download {n} samples (CSV)", data=lambda: io.samples_csv(fitted, n, seed=0),
      file_name=_model_file_name(entry)[:-len(".msgpack")] + "_samples.csv", mime="text/csv",
      on_click="ignore", key="tr_dl_samples", icon=":material/table_view:", width="stretch",
      help="fitted.sample(n, seed=0) with a header x1, x2, ...")
  if np.asarray(entry["data"]).shape[0]:
    # the address is known while the page runs (not in the download's callback); a loaded
    # model file has no training seed, so no link reproduces it
    link = (None if entry.get("file") or entry["settings"].get("seed") is None
            else _link.url_for(share.encode(entry["target_spec"], entry["settings"])))
    st.download_button(
        "Download a report (HTML)", data=lambda: _report_html(entry, link),
        file_name=_model_file_name(entry)[:-len(".msgpack")] + "_report.html", mime="text/html",
        on_click="ignore", key="tr_dl_report", icon=":material/description:",
        help="One file for a handout: the panels, the model's own views and the training curve "
             "(interactive, opens offline), the target, the settings, the metrics and the link. "
             "A figure's camera button saves it as SVG there (PNG here).")


def _report_html(entry: dict, link: str) -> str:
  """The Train page's handout for ``entry`` (cmm_core.report), made when the button is clicked."""
  fitted = entry["fitted"]
  s = panels.fit_summary(fitted)
  sections = report.fit_sections(fitted, entry["data"], columns=entry.get("columns"))
  held, source, train_nll = _heldout(entry)
  row = {"model": s["model"], "status": s["status"], "steps": s["steps"],
         "fit seconds": round(float(s["seconds"]), 1), "final loss": s["final_loss"]}
  if held is not None:
    row.update({"held-out NLL": held.nll if held.nll is not None else "n/a",
                "energy distance": held.energy, "Sinkhorn div.": held.sinkhorn,
                "held-out points": f"{held.n} {source}"})
  if train_nll is not None:
    row["training-data NLL"] = train_nll
  settings = {"model": s["model"], "steps": entry["settings"]["steps"],
              "seed": entry["settings"]["seed"], **fitted.config}
  return report.html_report(f"{s['model']} on {entry['target_label']}", sections=sections,
                            target=entry["target_label"], settings=settings, metrics=[row],
                            link=link, notes=s["warnings"])


@st.fragment
def _explore(entry: dict) -> None:
  fitted = entry["fitted"]
  s = panels.fit_summary(fitted)
  requested = entry["settings"]["steps"]
  status = "interrupted" if s["status"] == "running" else s["status"]
  loss = f"{s['final_loss']:.4g}" if np.isfinite(s["final_loss"]) else "n/a"
  waited = _state.wait_note(entry.get("wait"))
  st.markdown(f"**{s['model']}** on *{entry['target_label']}* · {s['steps']} / {requested} steps · "
              f"{s['seconds']:.1f} s · status **{status}** · final loss {loss}"
              + (f" · {waited}" if waited else ""))
  if s["status"] == "running":
    st.warning(f"Training was interrupted at step {s['steps']} of {requested}; "
               "showing the model as it was then. Press Train to start again.")
  elif s["status"] in ("diverged", "stopped"):
    st.warning(s["message"] or f"Training {s['status']}.")
  for w in s["warnings"]:
    st.info(w)
  auto = dict(fitted.info.get("auto") or {})
  if auto:
    st.caption("Chosen for this data (settings left on auto): "
               + " · ".join(f"{k} **{v:g}**" if isinstance(v, float) else f"{k} **{v}**"
                            for k, v in sorted(auto.items())))
  if s["status"] != "running":
    line = _heldout_line(*_heldout(entry))
    if line:
      st.markdown(line, help=(
          "Negative log-likelihood -mean log p(y) of the model's exact density (cmm, mm and brenier "
          "by the change of variables through the map, maflow by integrating the flow backward), "
          "energy distance and Sinkhorn divergence between model samples and fresh points of the "
          "target. Lower is better; compare models on the same target."))
  no_data = np.asarray(entry["data"]).shape[0] == 0
  if entry.get("file"):
    trained_on = fitted.info.get("trained_on")
    st.info(f"Loaded from **{entry['file']}**" + (f" (trained on {trained_on})" if trained_on else "")
            + (": its samples are shown without data, since the current target has "
               f"{_state.get_target()['data'].shape[1]} dimension(s) and the model {fitted.dim}. "
               "Choose a matching target to compare them." if no_data else
               f", shown against the target *{entry['target_label']}*."))
  elif entry["target_spec"] != _state.get_target()["spec"]:
    st.info("The target has changed since this fit was trained; press Train to fit the new one. "
            "The panels below show the data the model was trained on.")

  d = int(np.asarray(entry["data"]).shape[1])
  shape = target_spec.image_shape(entry.get("target_spec") or {})
  if shape is not None and np.asarray(entry["data"]).shape[0]:
    _draw_image_views(entry, shape)
    if st.toggle(f"also the three panels, two of the {d} pixels at a time", value=False,
                 key="tr_pixel_panels"):
      _draw_point_panels(entry, s, d)
  else:
    _draw_point_panels(entry, s, d)

  _draw_model_figures(entry)

  hist = panels.history_arrays(fitted.history)
  curves = [k for k in hist if k not in ("step", "seconds")]
  lc1, lc2 = st.columns([4, 1])
  curve = lc2.selectbox("curve", curves, key="tr_curve")
  lc1.plotly_chart(figures.loss_figure(hist, metric=curve, title=f"training {curve}"),
                   key="tr_loss")


def _draw_point_panels(entry: dict, s: dict, d: int) -> None:
  """The layers, points and axes controls and the three panels (any dimension: two coordinates
  at a time)."""
  c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
  layers = c1.pills("show", LAYERS, selection_mode="multi", default=LAYERS, key="tr_layers",
                    persist_state=KEEP)
  n_points = c2.select_slider("points drawn", POINTS, value=1000, key="tr_points",
                              persist_state=KEEP)
  same_axes = c3.toggle("same axes", value=True, key="tr_same_axes",
                        persist_state=KEEP,
                        help="One common range for the three panels, to compare sizes at a glance.")
  dims = (0, 1)
  if d > 2:
    names = entry.get("columns") or [f"x{i + 1}" for i in range(d)]
    a, b = st.columns(2)
    i = a.selectbox("horizontal axis", range(d), 0, format_func=lambda k: names[k], key="tr_dim_x")
    j = b.selectbox("vertical axis", range(d), 1, format_func=lambda k: names[k], key="tr_dim_y")
    dims = (i, j)
    st.caption("With more than two coordinates, the base density and the grid are drawn on the "
               "plane through the base mean (a slice); the points are projections.")
  _draw_panels(entry, s["model"], int(n_points), dims, same_axes, layers or [])


st.title("Train & explore")
target = _state.get_target()
tdata = np.asarray(target["data"])
st.caption(f"Target: **{target['label']}**, {tdata.shape[0]} points in {tdata.shape[1]}D.")
st.page_link("app_pages/target.py", label="change the target", icon=":material/scatter_plot:")

names = cc.models.names()
c = st.columns([3, 1, 1, 1, 1], vertical_alignment="bottom")
model = c[0].selectbox("model", names, key="tr_model", persist_state=KEEP,
                       format_func=lambda m: cc.models.LABELS.get(m, m))
cls = cc.models.get(model)
steps = int(c[1].number_input("steps", 1, MAX_STEPS, int(cls.default_steps), 50,
                              key=f"tr_steps_{model}", persist_state=KEEP))
seed = int(c[2].number_input("seed", 0, limits.MAX_APP_SEED, 0, 1, key="tr_seed", persist_state=KEEP))
train_clicked = c[3].button("Train", type="primary", icon=":material/play_arrow:",
                            width="stretch", key="tr_train")
c[4].button("Stop", icon=":material/stop:", width="stretch", key="tr_stop",
            help="Stops training; the model keeps its last completed chunk of steps.")
_suggestion_box(model, target)
with st.expander("advanced: hyper-parameters"):
  hyper_values, hyper_errors = _hyper_widgets(model)
  for msg in hyper_errors:
    st.error(msg)

if train_clicked or _link.run_requested("train"):
  if hyper_errors:
    st.error(f"Fix the hyper-parameters first: {'; '.join(hyper_errors)}")
  else:
    _train(model, steps, seed, hyper_values, target)

_link.share_box(_link.write_url(train={"model": model, "steps": steps, "seed": seed,
                                        "hyper": hyper_values}))
if model == "sdot":
  _epsilon_experiment(target)
_saved_model_uploader(target)

entry = _state.get_fit()
if entry is None:
  st.info("No model yet: choose the settings above and press **Train**, or explore a saved model.")
else:
  _explore(entry)
  _downloads(entry)
