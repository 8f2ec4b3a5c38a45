"""App-only helpers of the "Sample an energy" page: the chosen energy (cached by its spec, so a
rerun reuses the same ``Energy`` object and therefore JAX's compilations), and the evaluation run
after training (each model's metrics, the MCMC baseline with the same budget, exact references).

Keys in ``st.session_state``: ``"energy_run"``, the last run of the page (see :func:`evaluate`),
with the ``spec`` of the energy it was trained on; ``"energy_objects"``, ``{spec: Energy}`` for the
last few specs (per session: a cross-session resource cache would share objects between users).

A spec is a hashable tuple: ``("builtin", name, ((param, value), ...))`` or
``("formula", text, dim, half_width)``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import streamlit as st

from cmm_core.limits import MAX_FORMULA_DIM  # noqa: F401  (the page's largest formula dimension)

FORMULA_BOX = 4.0  # default half-width of a typed 2D formula's box
MCMC_CHAINS_PER_BATCH = 1  # MCMC chains per flow batch point (chains = the flow's batch size)


MAX_KEPT_ENERGIES = 8
# the page's widget labels (links preset the widgets by them, app_support/link.py)
MODEL_LABELS = {"maflow": "maflow (Monge-Ampère flow)", "cmm": "cmm (conjugate moment measure)"}
METHOD_LABELS = {"mala": "MALA", "hmc": "HMC (10 leapfrog steps)"}
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
  from cmm_core import energies, formula
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


@st.cache_data(show_spinner=False, max_entries=32)
def grid_for(spec: tuple, n_grid: int = 120) -> dict:
  """``cmm_core.viz.energy.energy_grid`` of the spec's energy (cached)."""
  from cmm_core.viz import energy as viz
  return viz.energy_grid(energy_for(spec), n_grid=n_grid)


@st.cache_data(show_spinner=False, max_entries=32)
def exact_reference(spec: tuple, n: int = 1024) -> dict:
  """Exact-side numbers of the spec's energy: ``log_z`` and where it comes from, and for a 2D
  energy with a box, ``stats`` of exact grid samples against a second draw (the energy distance
  floor at ``n`` points) and ``samples`` ``[n, 2]``."""
  from cmm_core import energies
  from cmm_core.viz import energy as viz
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


def mcmc_plan(budget: int, method: str, n_chains: int, n_leapfrog: int = 10) -> dict:
  """How the MCMC baseline spends ``budget`` gradient evaluations: ``{"n_chains", "n_steps",
  "keep", "thin"}`` (four states per chain from its second half, so ``4 n_chains`` samples)."""
  from cmm_core import mcmc
  n_steps = mcmc.steps_for_budget(budget, method, n_chains, n_leapfrog)
  keep = min(4, n_steps)
  thin = max(1, (n_steps // 2) // keep)
  return {"n_chains": int(n_chains), "n_steps": int(n_steps), "keep": int(keep), "thin": int(thin)}


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
  from cmm_core import mcmc, metrics
  from cmm_core.viz import energy as viz, panels
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
  plan = mcmc_plan(budget, method, batch * MCMC_CHAINS_PER_BATCH, n_leapfrog)
  out = {"spec": spec, "models": models, "exact": exact, "mcmc": None, "mcmc_samples": None,
         "mcmc_error": None, "plan": plan, "method": method, "budget": budget}
  try:
    t0 = time.perf_counter()
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
