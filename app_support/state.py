"""Session-state helpers shared by the pages (per-user state only; nothing in module globals).

Keys in ``st.session_state``:

- ``"target"``: the chosen data set, ``{"label": str, "data": float32 [n, d], "spec": dict,
  "columns": list[str] | None, "heldout": float32 [k, d] | None}`` (``heldout``: a table's
  held-out rows, :func:`cmm_core.target_spec.hold_out`). Missing -> the default target (eight_gaussians, n=4096, seed=0).
- ``"fit"``: the last fit, ``{"fitted": FittedModel, "uid": int, "target_label": str,
  "target_spec": dict, "data": [n, d], "heldout": [k, d] | None, "columns": list | None, "settings": {"model", "steps",
  "seed", "hyper"}}``. Written at every training callback, so a rerun (Stop, any widget) keeps
  the last completed chunk.
- ``"fit_uid"``: counter giving each training run a new ``uid``.
- ``"panels"``: ``{"key": tuple, "view": dict}``, the last ``cmm_core.viz.panels.panel_data`` result.

Fits take a slot of the server's fit pool first (:func:`fit_slot`, ``app_support/fit_pool.py``).
"""

from __future__ import annotations

import contextlib

import streamlit as st

DEFAULT_SPEC = {"kind": "toy2d", "name": "eight_gaussians", "n": 4096, "seed": 0, "params": {}}
# st.cache_data of the target draws, shared by every session (each gets a copy): at most this many
# draws of each kind are kept, least recently used evicted (docs/limits.md)
CACHE_DRAWS = 64
# live fits: chunks of ~0.3 s (at most 100 steps), so a page redraws ~3 times a second
LIVE_CHUNK = {"chunk_size": 100, "chunk_seconds": 0.3}


@st.cache_data(show_spinner=False, max_entries=CACHE_DRAWS)
def make_toy(name: str, n: int, seed: int, params: tuple) -> "object":
  """``cmm_core.targets.make`` (pure, so cached across sessions); ``params`` as sorted items."""
  import numpy as np
  from cmm_core import targets
  return np.asarray(targets.make(name, n, seed=seed, **dict(params)), dtype=np.float32)


@st.cache_data(show_spinner=False, max_entries=CACHE_DRAWS)
def make_gaussian(mean: tuple, cov: tuple, n: int, seed: int) -> "object":
  """``cmm_core.targets.gaussian`` (pure, cached); ``cov`` as a tuple of rows."""
  import numpy as np
  from cmm_core import targets
  return np.asarray(targets.gaussian(np.asarray(mean), np.asarray(cov), n, seed=seed),
                    dtype=np.float32)


def heldout_points(spec: dict, heldout=None, n: int = 2000):
  """``(points, source)``: what a fit of a target is measured on. A table's held-out rows
  ``heldout`` when there are some, else a fresh draw ``[n, d]`` of the target of ``spec``
  (:func:`cmm_core.target_spec.fresh_draw`, through the cached draws); ``source`` says which in
  words; ``(None, "")`` when there is neither."""
  from cmm_core import target_spec
  if heldout is not None:
    return heldout, "held-out rows of the table"
  fresh = target_spec.fresh_draw(spec, n, make_toy=make_toy, make_gaussian=make_gaussian)
  return fresh, ("" if fresh is None else "fresh points of the same target")


def heldout_note(spec: dict) -> str:
  """The Target page's sentence on a table's held-out rows ("" for other targets)."""
  from cmm_core import target_spec
  k = spec.get("n_heldout")
  if k is None:
    return ""
  if not k:
    return (f"All {spec['n']} rows are fitted: tables under {target_spec.MIN_ROWS_TO_HOLD_OUT} "
            "rows keep no held-out rows, so there are no held-out metrics.")
  return (f"{spec['n']} rows are fitted; {k} rows ({target_spec.HOLDOUT_SHARE:.0%}, always the "
          "same ones) are held out for the held-out NLL and energy distance on the Train and "
          "Compare pages.")


def build_target(spec: dict) -> dict:
  """The target ``{"label", "data" [n, d], "spec", "columns"}`` described by a spec
  (:func:`cmm_core.target_spec.build`, through the cached draws).

  Raises:
    ValueError (DataError included): a spec whose data cannot be made, with the reason.
  """
  from cmm_core import target_spec
  built = target_spec.build(spec, make_toy=make_toy, make_gaussian=make_gaussian)
  return {"label": built.label, "data": built.data, "spec": built.spec, "columns": built.columns,
          "heldout": built.heldout}


def use_target(spec: dict) -> dict:
  """Builds the target of ``spec`` (see :func:`build_target`) and makes it the current one."""
  tgt = build_target(spec)
  set_target(tgt["label"], tgt["data"], tgt["spec"], columns=tgt["columns"], heldout=tgt["heldout"])
  return st.session_state["target"]


def set_target(label: str, data, spec: dict, columns=None, heldout=None) -> None:
  """Stores the chosen data set ``[n, d]`` (and a table's held-out rows ``[k, d]``)."""
  st.session_state["target"] = {"label": label, "data": data, "spec": dict(spec),
                                "columns": list(columns) if columns is not None else None,
                                "heldout": heldout}


def get_target() -> dict:
  """The chosen data set; creates the default (eight_gaussians, n=4096, seed=0) if none."""
  tgt = st.session_state.get("target")
  if tgt is None:
    from cmm_core import targets
    s = dict(DEFAULT_SPEC)
    # the same spec (defaults filled in) as the Target page would store for these settings
    s["params"] = {p: v["default"] for p, v in targets.info(s["name"])["params"].items()}
    tgt = use_target(s)
  return tgt


def new_fit_uid() -> int:
  uid = int(st.session_state.get("fit_uid", 0)) + 1
  st.session_state["fit_uid"] = uid
  return uid


def session_id():
  """This browser session's id (None outside a Streamlit run)."""
  from streamlit.runtime.scriptrunner import get_script_run_ctx
  ctx = get_script_run_ctx()
  return None if ctx is None else ctx.session_id


@contextlib.contextmanager
def fit_slot(show, on_start=None):
  """Holds a slot of the server's fit pool for the ``with`` block (yields the
  ``fit_pool.Ticket``). While the fit waits, ``show(text)`` draws its place in the queue and the
  estimated wait every half second; drawing is where Streamlit stops a session that pressed Stop
  or left, and the pool then frees its place. ``on_start()`` runs when a fit that had to wait
  gets its slot (to say "compiling" again)."""
  from app_support import fit_pool
  pool = fit_pool.pool()

  def on_wait(place, n_waiting, seconds):
    show(fit_pool.wait_text(place, n_waiting, seconds, pool.size))

  with pool.slot(session_id(), on_wait=on_wait) as ticket:
    if ticket.place and on_start is not None:
      on_start()
    yield ticket


def wait_note(wait) -> str:
  """``"waited 12 s for a training slot (place 2 in the queue)"``; "" when it did not wait."""
  if not wait or not wait.get("place"):
    return ""
  return (f"waited {wait['seconds']:.0f} s for a training slot (place {wait['place']} in the "
          "queue)")


def store_fit(fitted, uid: int, target: dict, settings: dict, wait=None) -> None:
  """Keeps ``fitted`` (final or captured during training) with what it was trained on, and
  ``wait`` (``{"place", "seconds"}``: its wait for a slot of the fit pool, None if none)."""
  st.session_state["fit"] = {
      "fitted": fitted, "uid": uid, "target_label": target["label"],
      "target_spec": target["spec"], "data": target["data"], "heldout": target.get("heldout"),
      "columns": target.get("columns"),
      "settings": dict(settings), "wait": wait,
  }


def get_fit():
  """The last fit entry (see module docstring) or None."""
  return st.session_state.get("fit")
