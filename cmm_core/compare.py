"""Several models fitted to one target under one budget, and the figures that compare them.

Pure logic for the app's Compare page (no Streamlit), usable from a script or a notebook:

>>> jobs = [{"model": m, "budget": budget_for(m, "steps", 500)} for m in ("cmm", "maflow")]
>>> for result in run_compare(target, jobs, seed=0, heldout=fresh_draw):
...   print(result["model"], result["status"], result["metrics"]["sinkhorn"])

- :func:`budget_for` / :func:`budget_label`: the same budget for every model (its own default
  number of steps, one number of steps, or a wall-clock time).
- :func:`cache_key`: what identifies a fit (target, model, budget, seed, hyper-parameters), so a
  comparison run again with the same settings reuses its fits.
- :func:`compare_metrics`: the table's numbers for one fit (its facts, the parameter count and
  :func:`cmm_core.metrics.heldout_metrics`: Sinkhorn divergence and energy distance to a held-out
  draw, held-out NLL where the model has a density).
- :func:`run_compare`: the driver; fits the models one after another, calls back after every
  chunk of steps (return False to stop; what was trained is kept) and yields one result per model.
- :func:`share_ranges`: gives the panel data of every row the same axes (:mod:`cmm_core.viz.panels`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from typing import Any, Callable, Iterator, MutableMapping, Optional, Sequence

import numpy as np

from cmm_core.viz import geometry

__all__ = [
    "BUDGET_MODES",
    "budget_for",
    "budget_label",
    "data_digest",
    "cache_key",
    "param_count",
    "nll_cell",
    "bits_cell",
    "compare_metrics",
    "run_compare",
    "share_ranges",
    "mark_stopped",
    "table_rows",
    "CACHEABLE",
]

# "default": each model its own ``default_steps``; "steps": one number for all; "seconds": one
# wall-clock budget for all (compilation included).
BUDGET_MODES = ("default", "steps", "seconds")
from cmm_core.limits import MAX_BUDGET_SECONDS  # noqa: F401 (re-exported)

# Statuses of a result that is the complete outcome of its settings (may be reused).
CACHEABLE = ("done", "diverged", "time budget")

# -- budgets and keys ----------------------------------------------------------------------------

def budget_for(model: str, mode: str, value: Optional[float] = None, *, energy: bool = False) -> dict:
  """The budget of ``model`` under a comparison's budget ``mode``.

  Returns ``{"steps": int}`` (``"default"``: the model's ``default_steps``; ``"steps"``:
  ``value``) or ``{"steps": the step cap, "seconds": float}`` (``"seconds"``: train until ``value``
  seconds have passed). ``energy``: the model's energy route (``cc.fit_energy``: its default
  steps, at most ``limits.MAX_ENERGY_STEPS``). Raises ValueError for a bad mode or value.
  """
  from cmm_core import api, models
  from cmm_core.limits import MAX_ENERGY_STEPS
  max_steps = MAX_ENERGY_STEPS if energy else api.MAX_STEPS
  if mode == "default":
    cls = api.energy_model(model) if energy else models.get(model)
    return {"steps": int(cls.default_steps)}
  number = (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))
  if mode == "steps":
    if not number or not 1 <= value <= max_steps or int(value) != value:  # bounds first: int(inf)
      raise ValueError(f"steps must be an integer in [1, {max_steps}], got {value!r}")
    return {"steps": int(value)}
  if mode == "seconds":
    if not number or not 0 < value <= MAX_BUDGET_SECONDS:
      raise ValueError(f"seconds must be a positive number (at most a day), got {value!r}")
    return {"steps": int(max_steps), "seconds": float(value)}
  raise ValueError(f"unknown budget mode {mode!r}; choose one of {list(BUDGET_MODES)}")


def budget_label(budget: dict) -> str:
  """``"500 steps"`` or ``"30 s"``."""
  if budget.get("seconds") is not None:
    return f"{budget['seconds']:g} s"
  return f"{int(budget['steps'])} steps"


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return repr(x)
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  return repr(x)


def _canonical(x: Any) -> str:
  return json.dumps(_jsonable(x), sort_keys=True, separators=(",", ":"))


def data_digest(data) -> str:
  """A short fingerprint of a data set ``[n, d]`` (its float32 values and shape)."""
  arr = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
  h = hashlib.sha1(str(arr.shape).encode())
  h.update(arr.tobytes())
  return h.hexdigest()[:16]


def cache_key(target: dict, model: str, budget: dict, seed: int, hyper: Optional[dict] = None) -> tuple:
  """What identifies a fit in a comparison: a hashable tuple of strings and ints.

  Args:
    target: ``{"label", "spec", "data"}`` (as the app stores it); the data enter by a digest, so
      two uploads with the same name but other values get other keys.
    model, budget, seed, hyper: as passed to :func:`run_compare` (``hyper`` defaults to ``{}``:
      the model's defaults).
  """
  return (str(target.get("label", "")), _canonical(target.get("spec", {})),
          data_digest(target["data"]), str(model), _canonical(budget), int(seed),
          _canonical(hyper or {}))


# -- metrics -------------------------------------------------------------------------------------

def param_count(fitted) -> int:
  """Number of trainable numbers: the sum of the sizes of the leaves of ``fitted.params``."""
  import jax
  return int(sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(fitted.params)))


def compare_metrics(fitted, heldout, seed: int = 0, *, images_of=None) -> dict:
  """The comparison table's numbers for one fit: its facts and :func:`cmm_core.metrics.heldout_metrics`.

  Args:
    fitted: a fitted model (the FittedModel protocol).
    heldout: reference points ``[m, d]``: a fresh draw of the target (not seen in training), or
      the training data when there is none (an upload).
    seed: seeds the model's samples and the subsets.
    images_of: for images (the digits), the training rows ``[n, d]``: adds ``"c2st"`` (accuracy
      of a classifier telling samples from training rows, 0.5 = indistinguishable), ``"nn_ratio"``
      (nearest-training-row distance of samples over that of the held-out rows; copies give 0)
      and ``"bits_per_dim"`` (:mod:`cmm_core.image_metrics`).

  Returns:
    ``{"steps", "seconds", "status", "message", "params", "n", "sinkhorn", "energy", "nll",
    "n_nonfinite", "errors"}``: the fit's facts (:func:`cmm_core.viz.panels.fit_summary`, the
    parameter count) and the fields of :class:`cmm_core.metrics.HeldoutMetrics` (``errors`` a
    list), so the Train page shows the same numbers for the same fit; plus the image figures.
  """
  from cmm_core import metrics
  from cmm_core.viz import panels
  s = panels.fit_summary(fitted)
  held = metrics.heldout_metrics(fitted, heldout, seed)
  out = {"steps": s["steps"], "seconds": s["seconds"], "status": s["status"],
         "message": s["message"], "params": param_count(fitted), **held._asdict(),
         "errors": list(held.errors)}
  if images_of is not None:
    out.update(image_figures(fitted, images_of, heldout, held.nll, seed, out["errors"]))
  return out


N_IMAGE_SAMPLES = 2000  # model samples scored by the classifier two-sample test


def image_figures(fitted, train, heldout, nll, seed: int, errors: list) -> dict:
  """``{"c2st", "nn_ratio", "bits_per_dim"}`` of a model of images (NaN where one could not be
  computed; its reason appended to ``errors``)."""
  from cmm_core import image_metrics
  out = {"c2st": float("nan"), "nn_ratio": float("nan"), "bits_per_dim": None}
  if nll is not None and np.isfinite(nll):
    out["bits_per_dim"] = image_metrics.bits_per_dim(float(nll), int(np.shape(train)[1]))
  try:
    samples = np.asarray(fitted.sample(N_IMAGE_SAMPLES, seed=seed + 1))
    samples = samples[np.all(np.isfinite(samples), 1)]
    out.update(image_metrics.image_scores(samples, train, heldout, seed=seed))
  except ValueError as e:  # DataError included: too few finite samples, ...
    errors.append(f"image metrics: {e}")
  return out


# -- the driver ----------------------------------------------------------------------------------

Progress = Callable[[str, int, dict, Any], Any]


def _status(fitted, budget: dict, user_stopped: bool) -> str:
  status = str(fitted.info.get("status", "done"))
  if status == "stopped" and not user_stopped and budget.get("seconds") is not None:
    return "time budget"
  return status


def _result(job: dict, key: tuple, **kw) -> dict:
  out = {"model": job["model"], "key": key, "budget": dict(job["budget"]),
         "hyper": dict(job.get("hyper") or {}), "fitted": None, "metrics": None,
         "status": "not run", "message": "", "cached": False}
  out.update(kw)
  return out


def _fit_one(job, key, data, reference, seed, on_chunk, on_fitted, metrics_seed, chunking,
             user_stopped, images_of=None) -> dict:
  """One model of :func:`run_compare`: its fit and metrics, or its error, as a result."""
  from cmm_core import api
  model, budget = job["model"], job["budget"]
  t0 = time.perf_counter()
  try:
    fitted = api.fit(model, data, steps=int(budget["steps"]), seed=int(seed), callback=on_chunk,
                     max_seconds=budget.get("seconds"), **(chunking or {}),
                     **(job.get("hyper") or {}))
  except ValueError as e:  # DataError, TrainingError, a bad hyper-parameter: a user message
    return _result(job, key, status="error", message=str(e))
  except Exception as e:  # a bug, not the user's fault: in the row, not a traceback
    return _result(job, key, status="error",
                   message=f"internal error ({type(e).__name__}: {e}) after "
                           f"{time.perf_counter() - t0:.1f} s")
  status = _status(fitted, budget, user_stopped())
  if on_fitted is not None:
    on_fitted(model, fitted)
  stats = compare_metrics(fitted, reference, metrics_seed, images_of=images_of)
  return _result(job, key, fitted=fitted, metrics=stats, status=status,
                 message=str(fitted.info.get("message", "") or ""))


def run_compare(target: dict, jobs: Sequence[dict], *, seed: int = 0, heldout=None,
                cache: Optional[MutableMapping] = None, callback: Optional[Progress] = None,
                on_fitted: Optional[Callable[[str, Any], Any]] = None,
                metrics_seed: int = 0, chunking: Optional[dict] = None,
                slot: Optional[Callable[[str], Any]] = None) -> Iterator[dict]:
  """Fits the models of ``jobs`` one after another on ``target["data"]``; yields one result each.

  Args:
    target: ``{"label", "spec", "data" [n, d]}``.
    jobs: ``[{"model": id, "budget": budget_for(...), "hyper": {...}}, ...]`` (``hyper``
      optional: the model's defaults).
    seed: the training seed (the same for every model).
    heldout: reference points for :func:`compare_metrics`; None uses the training data.
    cache: a mapping ``cache_key -> result``; a complete result found there is yielded again
      (with ``cached=True``) instead of training, and new complete results are stored in it.
    callback: ``callback(model, step, record, fitted_so_far)`` after every chunk of steps;
      returning False stops: the current model keeps what it has trained (status ``"stopped"``)
      and the models after it are yielded with status ``"not run"``.
    on_fitted: ``on_fitted(model, fitted)`` when a model has finished training, before its
      metrics are computed (to say what is happening).
    metrics_seed: seeds the metrics' samples.
    chunking: ``{"chunk_size", "chunk_seconds"}`` passed to :func:`cmm_core.fit` (how often
      ``callback`` comes; the fits are the same); None: the defaults.
    slot: ``slot(model)`` -> a context manager entered around each model's fit and metrics (not
      around a cached result): the app's fit pool, one slot per model fit. What it yields, when it
      has ``place`` and ``waited`` (``app_support.fit_pool.Ticket``), is kept in the result as
      ``"wait": {"place", "seconds"}``. An exception it raises (the session was stopped while
      waiting) propagates.

  Yields:
    ``{"model", "key", "budget", "hyper", "fitted" (FittedModel or None), "metrics" (dict of
    :func:`compare_metrics` or None), "status", "message", "cached"}``. ``status`` is ``"done"``,
    ``"time budget"`` (a seconds budget ran out), ``"diverged"`` (the parameters before the
    NaN are kept), ``"stopped"`` (by the callback), ``"error"`` (bad settings or a failure; the
    message says which) or ``"not run"``. Errors never propagate: they are the row's status.
  """
  from cmm_core import target_spec
  data = np.asarray(target["data"])
  reference = data if heldout is None else heldout
  images_of = data if target_spec.image_shape(target.get("spec") or {}) is not None else None
  # counts dequantised once (the digits): every step redraws the noise (cc.fit's dequantize)
  fit_args = {**(chunking or {}), "dequantize": target_spec.dequantized_counts(target.get("spec") or {})}
  stopped = False
  for job in jobs:
    model = job["model"]
    key = cache_key(target, model, job["budget"], seed, job.get("hyper"))
    if stopped:
      yield _result(job, key, message="not run: the comparison was stopped")
      continue
    if cache is not None and key in cache and cache[key].get("status") in CACHEABLE:
      yield {**cache[key], "cached": True}
      continue
    user_stopped = False

    def on_chunk(step, record, fitted, _model=model):
      nonlocal user_stopped
      if callback is None:
        return None
      if callback(_model, step, record, fitted) is False:
        user_stopped = True
        return False
      return None

    with (contextlib.nullcontext() if slot is None else slot(model)) as ticket:
      result = _fit_one(job, key, data, reference, seed, on_chunk, on_fitted, metrics_seed,
                        fit_args, lambda: user_stopped, images_of)
    if cache is not None and result["status"] in CACHEABLE:
      cache[key] = result
    if hasattr(ticket, "place") and hasattr(ticket, "waited"):  # this run's wait, not cached
      result = {**result, "wait": {"place": int(ticket.place), "seconds": float(ticket.waited)}}
    yield result
    if user_stopped:
      stopped = True


def mark_stopped(fitted, step: int, seconds: float, message: str):
  """A fit captured mid-training (status ``"running"``), relabelled ``"stopped"`` with
  ``message`` (for a comparison interrupted between two callbacks)."""
  info = {**fitted.info, "status": "stopped", "message": message, "steps_done": int(step),
          "fit_seconds": float(seconds)}
  return dataclasses.replace(fitted, info=info)


def table_rows(results: Sequence[dict], labels: Optional[dict] = None) -> list:
  """One row per result for the comparison table: ``model``, ``status``, ``steps``,
  ``fit seconds``, ``Sinkhorn div.``, ``energy dist.``, ``held-out NLL``, ``params``, ``cached``
  (None where a number does not exist: no fit, or no density for the NLL; NaN where it failed);
  for images also ``c2st``, ``NN ratio`` and ``bits/dim`` (:func:`image_figures`)."""
  images = any("c2st" in (r.get("metrics") or {}) for r in results)
  rows = []
  for r in results:
    m = r.get("metrics") or {}
    fitted = r.get("fitted")
    model = r["model"] if labels is None else str(labels.get(r["model"], r["model"])).split(":")[0]
    rows.append({
        "model": model,
        "status": r["status"],
        "steps": m.get("steps", None if fitted is None else int(fitted.info.get("steps_done", 0))),
        "fit seconds": m.get("seconds"),
        "Sinkhorn div.": m.get("sinkhorn"),
        "energy dist.": m.get("energy"),
        "held-out NLL": m.get("nll"),
        "params": m.get("params", None if fitted is None else param_count(fitted)),
        "cached": bool(r.get("cached", False)),
    })
    if images:
      rows[-1].update({"c2st": m.get("c2st"), "NN ratio": m.get("nn_ratio"),
                       "bits/dim": m.get("bits_per_dim")})
  return rows


def nll_cell(result: dict) -> str:
  """The table's held-out NLL as the page shows it: ``"1.234"``, ``"no density"`` (sdot), ``"not
  finite"``, or ``""`` (no fit); a blank numeric cell would read "None"."""
  m = result.get("metrics")
  if result.get("fitted") is None or not m:
    return ""
  value = m.get("nll")
  if value is None:
    return "no density"
  return f"{value:.3f}" if math.isfinite(value) else "not finite"


def bits_cell(result: dict) -> str:
  """The table's bits/dim (images) as the page shows it: :func:`nll_cell`'s number in bits per
  pixel, or its reason why there is none."""
  text = nll_cell(result)
  if text in ("", "no density", "not finite"):
    return text
  return f"{result['metrics']['bits_per_dim']:.3f}"


# -- shared axes ---------------------------------------------------------------------------------

def share_ranges(panel_views: Sequence[Optional[dict]]) -> list:
  """The :func:`cmm_core.viz.panels.panel_data` dicts of several models with common axes.

  Each of the ranges ``base``, ``map``, ``data`` and ``common`` becomes the union over the rows,
  so a column of panels (all the bases, all the maps, all the samples) is drawn on one range and
  ``figures.panel_figures(view, same_axes=True)`` draws every panel of every row on one range. 2D
  ranges stay square when every row had equal aspect. ``None`` entries (a row without panels)
  are passed through; the inputs are not modified.
  """
  ok = [v for v in panel_views if v is not None]
  if not ok:
    return list(panel_views)
  if len({v["view_dim"] for v in ok}) > 1:
    raise ValueError("the panels to share axes must all be 1D or all 2D")
  eq = all(bool(v.get("equal_aspect")) for v in ok)
  shared = {}
  for name in ok[0]["ranges"]:
    r = geometry.union(*[v["ranges"][name] for v in ok])
    if eq and ok[0]["view_dim"] == 2:
      r = geometry.square(r)
    shared[name] = r
  return [None if v is None else {**v, "ranges": dict(shared), "equal_aspect": eq}
          for v in panel_views]
