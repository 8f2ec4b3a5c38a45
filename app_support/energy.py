"""App-only helpers of the "Sample an energy" page and of the Compare page's energy entry: the
energy widgets (:func:`choose_energy`, :func:`preview`), the chosen energy (cached by its spec, so a
rerun reuses the same ``Energy`` object and therefore JAX's compilations), the run (:func:`train`:
the fits under their budgets, then :func:`evaluate`: each model's metrics, the MCMC baseline with
the same budget, exact references) and its results (:func:`show_results`). Widget and chart keys
start with a prefix: ``"en"`` on the energy page, ``"cmpe"`` on Compare.

Keys in ``st.session_state``: ``"energy_run"`` (energy page) and ``"cmpe_run"`` (Compare), the last
run (see :func:`evaluate` and :func:`train`), with the ``spec`` of the energy it was trained on;
``"energy_objects"``, ``{spec: Energy}`` for the
last few specs (per session: a cross-session resource cache would share objects between users).

A spec is a hashable tuple: ``("builtin", name, ((param, value), ...))`` or
``("formula", text, dim, half_width)``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pandas as pd
import streamlit as st

import cmm_core as cc
from cmm_core import energies, formula, mcmc, metrics
from cmm_core.viz import energy as viz, figures, panels
from cmm_core.limits import MAX_FORMULA_DIM  # noqa: F401  (the page's largest formula dimension)
from app_support import state as _state

FORMULA_BOX = 4.0  # default half-width of a typed 2D formula's box
MCMC_CHAINS_PER_BATCH = 1  # MCMC chains per flow batch point (chains = the flow's batch size)


MAX_KEPT_ENERGIES = 8
# the page's widget labels (links preset the widgets by them, app_support/link.py)
MODEL_LABELS = {"maflow": "maflow (Monge-Ampère flow)", "cmm": "cmm (conjugate moment measure)"}
METHOD_LABELS = {"mala": "MALA", "hmc": "HMC (10 leapfrog steps)", "nuts": "NUTS (no-U-turn)"}
NUTS_PILOT = 8  # NUTS transitions of a pilot run that measures its cost per transition
SOURCE_LABELS = {"builtin": "built-in", "formula": "formula"}


def energy_for(spec: tuple):
  """The :class:`~cmm_core.energies.Energy` of a spec, one object per spec and session (kept in
  ``st.session_state``, so reruns reuse it and its JAX compilations).

  A 2D formula gets the box ``[-h, h]^2`` and its ``log Z`` by the midpoint rule on that box
  (None when the energy is not finite there).

  Raises:
    ValueError (FormulaError included): the message says what is wrong.
  """
  kept = st.session_state.setdefault("energy_objects", {})
  if spec not in kept:
    kept[spec] = _build(spec)
    while len(kept) > MAX_KEPT_ENERGIES:
      kept.pop(next(iter(kept)))
  return kept[spec]


def _build(spec: tuple):
  if spec[0] == "builtin":
    return energies.make(spec[1], **dict(spec[2]))
  text, dim, half = spec[1], int(spec[2]), float(spec[3])
  if not text.strip():
    raise formula.FormulaError("Type a formula in x1, x2, for example (|x| - 2)^2 / 0.32. " + formula.ALLOWED)
  e = formula.parse(text, dim=dim)
  if e.dim == 2:
    e = dataclasses.replace(e, box=((-half, half), (-half, half)))
    try:
      e = dataclasses.replace(e, log_z=energies.grid_log_z(e, n_grid=256))
    except ValueError:
      pass
  return e


def spec_settings(spec: tuple) -> dict:
  """A spec as a link's energy settings (``cmm_core.share.encode``): ``{"source": "builtin", "name",
  "params"}`` or ``{"source": "formula", "text", "dim", "box"}``."""
  if spec[0] == "builtin":
    return {"source": "builtin", "name": spec[1], "params": dict(spec[2])}
  return {"source": "formula", "text": spec[1], "dim": spec[2], "box": spec[3]}


@st.cache_data(show_spinner=False, max_entries=32)
def grid_for(spec: tuple, n_grid: int = 120) -> dict:
  """``cmm_core.viz.energy.energy_grid`` of the spec's energy (cached)."""
  return viz.energy_grid(energy_for(spec), n_grid=n_grid)


@st.cache_data(show_spinner=False, max_entries=32)
def exact_reference(spec: tuple, n: int = 1024) -> dict:
  """Exact-side numbers of the spec's energy: ``log_z`` and where it comes from, and for a 2D
  energy with a box, ``stats`` of exact grid samples against a second draw (the energy distance
  floor at ``n`` points) and ``samples`` ``[n, 2]``."""
  e = energy_for(spec)
  out = {"log_z": e.log_z, "log_z_source": None, "stats": None, "samples": None,
         "free_energy_per_site": None}
  if e.log_z is not None:
    out["log_z_source"] = "exact" if spec[0] == "builtin" else "quadrature on the box"
  if e.dim == 2 and e.box is not None:
    try:
      a = energies.grid_samples(e, n, seed=101)
      b = energies.grid_samples(e, n, seed=202)
      out["samples"] = a
      out["stats"] = viz.sample_stats(e, a, reference=b, n=n)
    except ValueError:
      pass
  if e.L is not None and e.log_z is not None:
    out["free_energy_per_site"] = -e.log_z / e.dim
  return out


def mcmc_plan(budget: int, method: str, n_chains: int, per_transition: float, n_leapfrog: int = 10) -> dict:
  """How the MCMC baseline spends ``budget`` gradient evaluations: ``{"n_chains", "n_steps",
  "keep", "thin", "per_transition"}`` (four states per chain from its second half, so ``4 n_chains``
  samples). ``per_transition``: :func:`cmm_core.mcmc.evals_per_transition` (NUTS's from a pilot run)."""
  n_steps = mcmc.steps_for_budget(budget, method, n_chains, n_leapfrog, per_transition=per_transition)
  keep = min(4, n_steps)
  thin = max(1, (n_steps // 2) // keep)
  return {"n_chains": int(n_chains), "n_steps": int(n_steps), "keep": int(keep), "thin": int(thin),
          "per_transition": float(per_transition)}


def mcmc_budget_text(run: dict, mlabel: str) -> str:
  """How the MCMC baseline spent its budget, in a sentence (for the results' caption)."""
  plan = run["plan"]
  if run["method"] == "nuts":
    spent = (run.get("mcmc") or {}).get("grad_evals")
    cost = (f"each NUTS transition doubles its trajectory until it turns back: about "
            f"{plan['per_transition']:.1f} ∇E per transition on a pilot of {NUTS_PILOT} transitions, which "
            f"sets the transitions to fit the budget"
            + (f"; counted as they ran: {spent:,} ∇E in all, pilot excluded (its seconds are included)"
               if spent else ""))
  else:
    cost = f"{plan['per_transition']:g} ∇E per transition, plus one per chain to start"
  return (f" {mlabel} runs {plan['n_chains']} chains from N(0, I) for {plan['n_steps']} transitions ({cost}) "
          f"and keeps {plan['keep']} states per chain, {plan['thin']} apart, from the end.")


def mcmc_settings_text(run: dict) -> str:
  """``"mala (256 chains, 199 transitions)"``, or the method alone where no plan was made."""
  plan = run.get("plan")
  return (f"{run['method']} ({plan['n_chains']} chains, {plan['n_steps']} transitions)" if plan
          else run["method"])


def evaluate(spec: tuple, fits: dict, *, seed: int, method: str, step_size: float, n_leapfrog: int = 10) -> dict:
  """Everything the results section shows, computed once after training.

  Args:
    fits: ``{model id: fitted}`` in the page's order (maflow, cmm).

  Returns:
    ``{"spec", "models": {model id: {"fitted", "flow", "samples" [n, d], "latent" [n, d]}},
    "mcmc": {...} | None, "mcmc_error": str | None, "mcmc_samples", "plan", "method", "budget",
    "exact": exact_reference(spec)}``; ``flow`` and ``mcmc`` as
    :func:`cmm_core.viz.energy.comparison_rows` takes them. MCMC gets as many gradient
    evaluations as the largest of the models' budgets (steps x batch size).
  """
  e = energy_for(spec)
  exact = exact_reference(spec)
  ref = exact["samples"]
  n_eval = 4096 if e.dim <= 16 else 1024
  models, budget, batch = {}, 0, 1
  for name, fitted in fits.items():
    summary = panels.fit_summary(fitted)
    batch = max(batch, int(fitted.config["batch_size"]))
    evals = int(summary["steps"]) * int(fitted.config["batch_size"])
    budget = max(budget, evals)
    latent = fitted.sample_base(1024, seed=seed)
    samples = fitted.transport(latent)
    flow = {"metrics": metrics.free_energy_metrics(fitted, e, seed=seed, n=n_eval), "grad_evals": evals,
            "seconds": float(summary["seconds"]), "stats": viz.sample_stats(e, samples, reference=ref)}
    models[name] = {"fitted": fitted, "flow": flow, "samples": samples, "latent": latent}
  out = {"spec": spec, "models": models, "exact": exact, "mcmc": None, "mcmc_samples": None,
         "mcmc_error": None, "plan": None, "method": method, "budget": budget}
  try:
    t0 = time.perf_counter()
    chains = batch * MCMC_CHAINS_PER_BATCH  # NUTS's cost per transition varies: a short pilot measures it
    per = mcmc.evals_per_transition(e, chains, float(step_size), seed, method=method, n_leapfrog=n_leapfrog,
                                    n_pilot=NUTS_PILOT)
    out["plan"] = plan = mcmc_plan(budget, method, chains, per, n_leapfrog)
    res = mcmc.sample(e, plan["n_chains"], plan["n_steps"], seed, method=method, step_size=float(step_size),
                      keep=plan["keep"], thin=plan["thin"], n_leapfrog=n_leapfrog)
    out["mcmc"] = {"grad_evals": res.n_grad_evals, "seconds": time.perf_counter() - t0,
                   "acceptance": res.acceptance, "n_chains": res.n_chains, "n_steps": res.n_steps,
                   "stats": viz.sample_stats(e, res.samples, reference=ref)}
    out["mcmc_samples"] = res.samples
    if not math.isfinite(res.acceptance) or not np.all(np.isfinite(res.samples)):
      out["mcmc_error"] = "some MCMC samples are NaN/inf (lower the step size)"
  except ValueError as err:
    out["mcmc_error"] = str(err)
  return out


# -- widgets and results, shared by the Sample an energy page and Compare's energy entry ----------

KEEP = "session"  # widget values survive page switches
DEFAULT_FORMULA = "(|x| - 2)^2 / 0.32"
# what each model's steps spend of the energy, per point of a batch (the budget MCMC gets)
BUDGET_TEXT = {
    "maflow": "Each flow step pushes a batch of {b} base points through the flow and differentiates E "
              "once at each image",
    "cmm": "Each cmm step maps the {b} points of its MALA chains on e^(−w) through ∇w* and evaluates E "
           "once at each (E's value only: the score-function gradient never differentiates E)",
}


def _param_widget(col, name: str, h, prefix: str):
  key, helptext = f"{prefix}_p_{name}_{h.name}", h.help
  if h.kind == "bool":
    return col.checkbox(h.name, value=h.default, key=key, help=helptext, persist_state=KEEP)
  if h.kind == "int":
    return int(col.number_input(h.name, value=int(h.default), step=1, key=key, help=helptext,
                                persist_state=KEEP))
  return float(col.number_input(h.name, value=float(h.default), format="%g", key=key, help=helptext,
                                step=max(abs(float(h.default)) / 10, 0.01), persist_state=KEEP))


def choose_energy(prefix: str = "en"):
  """The energy widgets (keys ``{prefix}_source``, ``{prefix}_name``, ``{prefix}_p_<energy>_<param>``,
  ``{prefix}_formula``, ``{prefix}_dim``, ``{prefix}_box``); returns ``(spec, energy)`` or
  ``(None, None)`` after an error message."""
  source = st.radio("energy", list(SOURCE_LABELS.values()), horizontal=True, key=f"{prefix}_source",
                    persist_state=KEEP)
  if source == SOURCE_LABELS["builtin"]:
    names = list(energies.names())
    name = st.selectbox("built-in energy", names, index=names.index("ring"), key=f"{prefix}_name",
                        persist_state=KEEP)
    st.caption(energies.describe(name))
    params = {}
    schema = energies.schema(name)
    if schema:
      cols = st.columns(min(3, len(schema)))
      for i, h in enumerate(schema):
        params[h.name] = _param_widget(cols[i % len(cols)], name, h, prefix)
    else:
      st.caption("The default mean and covariance (type a formula for another Gaussian).")
    spec = ("builtin", name, tuple(sorted(params.items())))
  else:
    text = st.text_input("E(x1, x2) =", value=DEFAULT_FORMULA, key=f"{prefix}_formula", persist_state=KEEP,
                         max_chars=formula.MAX_CHARS,
                         help="Variables x1, x2 (x3, ... for more dimensions), |x| for the norm, "
                              "+ - * / ^, exp log sqrt abs sin cos tanh cosh log1p, min max logaddexp.")
    c = st.columns(2)
    dim = c[0].number_input("dimension", value=2, min_value=1, max_value=MAX_FORMULA_DIM, step=1,
                            key=f"{prefix}_dim", persist_state=KEEP,
                            help="the number of variables x1 .. xd (at least the highest k of the x_k used)")
    half = c[1].number_input("box half-width h", value=FORMULA_BOX, min_value=0.5, max_value=100.0,
                             step=0.5, key=f"{prefix}_box", persist_state=KEEP,
                             help="2D: contours and the quadrature of log Z on [−h, h]²")
    spec = ("formula", text, int(dim), float(half))
  try:
    with st.spinner("Building the energy…"):
      return spec, energy_for(spec)
  except ValueError as e:  # FormulaError and out-of-bounds parameters: a message, not a traceback
    st.error(str(e))
    return None, None


def samples_figure(run: dict, e, samples, label: str, color: str):
  """Samples over the contours (2D), as spin images (lattices), or None (other dimensions)."""
  if e.dim == 2 and run["exact"]["stats"] is not None:
    return viz.contour_figure(grid_for(run["spec"]), samples=samples, title=f"{label} samples",
                              sample_name=label, color=color)
  if e.L:
    return viz.spin_figure(samples, e.L, title=f"{label} samples: spins sign(x)")
  return None


def show_results(run: dict, e, prefix: str = "en", caption: str = "") -> tuple:
  """The results of an :func:`evaluate` run on energy ``e``: a row of panels per model, MCMC, the
  magnetisation (Ising), the free-energy curves and the table (chart keys start with ``prefix``).

  Returns ``(table, sections)``: the table as a DataFrame (a row per quantity, a column per
  sampler) and the figures shown as ``[(heading, [figures])]`` (for a handout)."""
  sections = []
  mlabel = METHOD_LABELS[run["method"]].split(" ")[0]
  st.subheader("Results")
  if caption:
    st.caption(caption)
  summaries = {name: panels.fit_summary(m["fitted"]) for name, m in run["models"].items()}
  for name, s in summaries.items():
    timed = s["status"] == "stopped" and (s["message"] or "").startswith("time budget")
    status = "time budget" if timed else s["status"]   # as Compare's table says of a seconds budget
    st.markdown(f"**{name}** on *{e.label}* · {s['steps']} steps · {s['seconds']:.1f} s · status **{status}**")
    hyper, why = run.get("settings", {}).get(name, ({}, ""))
    if hyper:
      st.caption(f"{name} settings beyond its defaults: " + ", ".join(f"{k}={v}" for k, v in hyper.items())
                 + f" ({why}).")
    if timed:
      st.caption(f"{name}: {panels.budget_note(s)}.")   # a Compare time budget: the plan, not a problem
    elif s["status"] in ("diverged", "stopped"):
      st.warning(f"{name}: " + (s["message"] or f"training {s['status']}."))
  for name, m in run["models"].items():
    fm = m["flow"]["metrics"]
    if fm.density_suspect:
      st.warning(f"{name}: the importance-weighted log Z is {fm.iw_log_z - fm.log_z:.2f} nats above the "
                 "exact log Z, which a correct density almost never gives: its log q is too low on some "
                 "samples, so its ELBO and gap are optimistic. For maflow the trained RK4 map likely "
                 "folds; more RK4 steps (n_steps) or the kinetic penalty keep it invertible "
                 "(docs/energies.md).")
  if run["mcmc_error"]:
    st.warning(f"MCMC: {run['mcmc_error']}")
  plan = run["plan"] or {}
  spent = " ".join(BUDGET_TEXT[name].format(b=m["fitted"].config["batch_size"]) + ": "
                   f"{summaries[name]['steps']} steps × {m['fitted'].config['batch_size']} = "
                   f"{m['flow']['grad_evals']:,}." for name, m in run["models"].items())
  st.caption(
      "**Same budget** = as many evaluations of ∇E for MCMC as the model spent on E. " + spent
      + (mcmc_budget_text(run, mlabel) if plan else "")
      + " The models' own cost (integrating the flow's potential, cmm's chains and conjugates) is not "
      "counted; the seconds are shown too.")
  # one row per model: its samples and its base; MCMC's samples beside the first
  for i, (name, m) in enumerate(run["models"].items()):
    cols = st.columns(3)
    row = []
    fig = samples_figure(run, e, m["samples"], name, figures.COLORS["samples"])
    if fig is None:
      cols[0].info("Samples are drawn for 2D energies and lattices; the numbers below hold for any dimension.")
    else:
      cols[0].plotly_chart(fig, key=f"{prefix}_samples_{name}")
      row.append(fig)
    if e.dim >= 2:
      if name == "cmm":
        base = viz.latent_figure(m["latent"], m["samples"], base_name="x ~ e^(−w)", labels=("x1", "x2"),
                                 title="cmm base e^(−w) (colour: where they go)")
      else:
        base = viz.latent_figure(m["latent"], m["samples"], title="flow base samples z (colour: where they go)")
      cols[1].plotly_chart(base, key=f"{prefix}_base_{name}")
      row.append(base)
    if row:   # nothing drawn in 1D (no samples panel, no base)
      sections.append((f"{MODEL_LABELS.get(name, name)}: samples and base", row))
    if i == 0 and run["mcmc_samples"] is not None:
      fig = samples_figure(run, e, run["mcmc_samples"], mlabel, figures.COLORS["map"])
      if fig is not None:
        cols[2].plotly_chart(fig, key=f"{prefix}_mcmc")
        sections.append((f"{mlabel} with the same budget", [fig]))
  if e.L and e.name == "ising":
    drawn = {name: m["samples"] for name, m in run["models"].items()}
    if run["mcmc_samples"] is not None:
      drawn[mlabel] = run["mcmc_samples"]
    exact = None
    if e.dim <= energies.MAX_ENUM_SITES:
      exact = energies.ising_magnetisation(e.L, bool(e.params.get("periodic", True)),
                                           float(e.params.get("T", energies.T_C)))
    fig = viz.magnetisation_figure(drawn, e.L, exact=exact)
    st.plotly_chart(fig, key=f"{prefix}_magnetisation")
    sections.append(("magnetisation", [fig]))
    st.caption("Spins drawn from each sampler's relaxed samples by the exact conditional "
               "P(sᵢ = 1 | x) = sigmoid(2xᵢ): exact relaxed samples give exact Ising spins. At the critical "
               "temperature the mass sits near m = ±1; a sampler stuck in one mode shows one side only."
               + (" The dashed line is the exact distribution (all 2^N states enumerated)." if exact else ""))
  c1, c2 = st.columns([3, 2])
  fig = viz.free_energy_figure({name: panels.history_arrays(m["fitted"].history)
                                for name, m in run["models"].items()},
                               log_z=e.log_z, n_sites=e.dim if e.L else None)
  c1.plotly_chart(fig, key=f"{prefix}_curve")
  sections.append(("free energy during training", [fig]))
  c2.markdown(
      "**Reading the numbers.** Each model has a density q (cmm's through the Monge-Ampère relation, "
      "with its base's normaliser by quadrature or importance sampling), so it gets a variational bound: "
      "the ELBO E_q[−E − log q] ≤ log Z (equality when q = p), and the importance-weighted log Z, "
      "log mean exp(−E − log q), which is tighter; the effective sample size (ESS) of those weights says "
      "how far to trust it (near 100%: q ≈ p). MCMC has no density, so no bound: its column has only what "
      "samples give, the mean energy and (2D) the energy distance to exact samples drawn on a fine grid; "
      "the *exact* column's distance is exact samples against a second exact draw: differences below it "
      "are noise at this sample size.")
  rows = viz.comparison_rows(models={name: m["flow"] for name, m in run["models"].items()},
                             mcmc=run["mcmc"], exact=run["exact"], n_sites=e.dim if e.L else None,
                             mcmc_label=mlabel)
  table = pd.DataFrame(rows)
  st.table(table.set_index("quantity"))
  if e.L and e.log_z is not None:
    paper = energies.PAPER_FREE_ENERGY.get((e.L, bool(e.params.get("periodic", True))))
    exact = run["exact"]["free_energy_per_site"]
    per_model = "; ".join(f"{name} **{-m['flow']['metrics'].elbo / e.dim:.5f}** (gap "
                          f"{(-m['flow']['metrics'].elbo / e.dim) - exact:.2e})"
                          for name, m in run["models"].items())
    st.markdown(f"Free energy per site (an upper bound, gap in nats per site): {per_model}; exact "
                f"**{exact:.5f}**" + (f" (the Monge-Ampère flow paper's table: {paper:.5f})" if paper is not None
                                     and abs(e.params.get("T", energies.T_C) - energies.T_C) < 1e-9 else "")
                + ".")
  return table, sections


def preview(spec: tuple, e, prefix: str = "en") -> None:
  """The energy's contours (2D with a box), or a line that says why there are none."""
  if e.dim != 2:
    what = f"a {e.L} × {e.L} lattice ({e.dim} variables)" if e.L else f"{e.dim} dimension(s)"
    st.info(f"**{e.label}** has {what}: contours are drawn for 2D energies only"
            + ("; the samples are shown as spin images after training." if e.L else "."))
    return
  if e.box is None:
    st.info("This energy has no box to draw on.")
    return
  show = st.segmented_control("contours of", ["exp(−E)", "E"], default="exp(−E)", key=f"{prefix}_show",
                              persist_state=KEEP) or "exp(−E)"
  try:
    g = grid_for(spec)
  except ValueError as err:
    st.error(str(err))
    return
  st.plotly_chart(viz.contour_figure(g, title=f"{e.label}: {show}", show="density" if show == "exp(−E)" else "energy"),
                  key=f"{prefix}_preview")


def train(spec: tuple, e, budgets: dict, seed: int, method: str, step_size: float, *,
          run_key: str) -> bool:
  """Fits the models of ``budgets`` (``{model: budget}``, in order) to ``e`` one after another, each
  under its budget (``{"steps": n}``, or ``{"steps": n, "seconds": s}``: train until ``s`` seconds,
  compilation included), with a progress bar and the live free-energy curves, then :func:`evaluate`
  (MCMC with the same budget of energy evaluations). The run goes to ``st.session_state[run_key]``;
  returns False after an error message (nothing stored)."""
  models = list(budgets)
  progress = st.progress(0.0, text="compiling the training step (the first chunk takes longest)…")
  live = st.empty()
  n_sites = e.dim if e.L else None
  fits, curves = {}, {}
  timed = any(b.get("seconds") for b in budgets.values())
  settings = {}
  longest = None if timed else max(b["steps"] for b in budgets.values())

  def callback(step, record, fitted):
    steps, seconds = budgets[fitted.model]["steps"], budgets[fitted.model].get("seconds")
    frac = record["seconds"] / seconds if seconds else step / steps
    what = f"step {step}" if seconds else f"step {step} / {steps}"
    progress.progress(min(1.0, (len(fits) + min(1.0, frac)) / len(models)),
                      text=f"{fitted.model}: {what} · F {record['loss']:.4g} · {record['seconds']:.1f} s")
    curves[fitted.model] = panels.history_arrays(fitted.history)
    live.plotly_chart(viz.free_energy_figure(dict(curves), log_z=e.log_z, n_sites=n_sites,
                                             total_steps=None if longest is None else int(longest),
                                             title="free energy F = −ELBO (live)"),
                      key=f"{run_key}_live_{fitted.model}_{step}")

  def fail(text: str) -> bool:
    progress.empty()
    st.error(text)
    return False

  # one slot of the server's fit pool for the models and their MCMC baseline (app_support/fit_pool.py)
  with _state.fit_slot(lambda text: progress.progress(0.0, text=text)):
    for model in models:
      hyper, why = cc.api.energy_settings(model, e)  # lattices: even; built-ins: measured settings
      settings[model] = (hyper, why)
      try:
        fits[model] = cc.fit_energy(model, e, steps=int(budgets[model]["steps"]), seed=seed,
                                    callback=callback, max_seconds=budgets[model].get("seconds"),
                                    **_state.LIVE_CHUNK, **hyper)
      except ValueError as err:
        return fail(f"{model}: {err}")
      except Exception as err:  # a bug, not the user's fault: say so without a traceback
        return fail(f"{model}: training failed with an internal error ({type(err).__name__}: {err}).")
    progress.progress(1.0, text=f"measuring the fits and running {method.upper()} with the same budget…")
    try:
      run = evaluate(spec, fits, seed=seed, method=method, step_size=step_size)
    except Exception as err:
      return fail(f"Evaluating the fits failed ({type(err).__name__}: {err}).")
  run.update(budgets=dict(budgets), seed=int(seed), settings=settings)
  st.session_state[run_key] = run
  progress.empty()
  live.empty()
  return True
