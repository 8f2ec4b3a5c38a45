"""Sample an energy: pick a density known as exp(-E) / Z (a built-in or a typed formula), fit a
Monge-Ampère flow or a conjugate moment measure to it by the variational free energy, and compare
it with plain MCMC (blackjax) run for the same number of energy evaluations."""

import pandas as pd
import streamlit as st

import cmm_core as cc
from cmm_core import energies, formula, limits
from cmm_core.viz import energy as viz, figures, panels
from app_support import energy as _energy, link as _link, state as _state

KEEP = "session"
MAX_PAGE_STEPS = limits.MAX_ENERGY_STEPS
METHODS = {label: m for m, label in _energy.METHOD_LABELS.items()}
DEFAULT_FORMULA = "(|x| - 2)^2 / 0.32"
MODELS = {label: m for m, label in _energy.MODEL_LABELS.items()}
# what each model's steps spend of the energy, per point of a batch (the budget MCMC gets)
BUDGET_TEXT = {
    "maflow": "Each flow step pushes a batch of {b} base points through the flow and differentiates E "
              "once at each image",
    "cmm": "Each cmm step maps the {b} points of its MALA chains on e^(−w) through ∇w* and evaluates E "
           "once at each (E's value only: the score-function gradient never differentiates E)",
}


def _param_widget(col, name: str, h):
  key, helptext = f"en_p_{name}_{h.name}", h.help
  if h.kind == "bool":
    return col.checkbox(h.name, value=h.default, key=key, help=helptext, persist_state=KEEP)
  if h.kind == "int":
    return int(col.number_input(h.name, value=int(h.default), step=1, key=key, help=helptext,
                                persist_state=KEEP))
  return float(col.number_input(h.name, value=float(h.default), format="%g", key=key, help=helptext,
                                step=max(abs(float(h.default)) / 10, 0.01), persist_state=KEEP))


def _choose_energy():
  """The energy widgets; returns ``(spec, energy)`` or ``(None, None)`` after an error message."""
  source = st.radio("energy", list(_energy.SOURCE_LABELS.values()), horizontal=True, key="en_source",
                    persist_state=KEEP)
  if source == _energy.SOURCE_LABELS["builtin"]:
    names = list(energies.names())
    name = st.selectbox("built-in energy", names, index=names.index("ring"), key="en_name",
                        persist_state=KEEP)
    st.caption(energies.describe(name))
    params = {}
    schema = energies.schema(name)
    if schema:
      cols = st.columns(min(3, len(schema)))
      for i, h in enumerate(schema):
        params[h.name] = _param_widget(cols[i % len(cols)], name, h)
    else:
      st.caption("The default mean and covariance (type a formula for another Gaussian).")
    spec = ("builtin", name, tuple(sorted(params.items())))
  else:
    text = st.text_input("E(x1, x2) =", value=DEFAULT_FORMULA, key="en_formula", persist_state=KEEP,
                         max_chars=formula.MAX_CHARS,
                         help="Variables x1, x2 (x3, ... for more dimensions), |x| for the norm, "
                              "+ - * / ^, exp log sqrt abs sin cos tanh cosh log1p, min max logaddexp.")
    c = st.columns(2)
    dim = c[0].number_input("dimension", value=2, min_value=1, max_value=_energy.MAX_FORMULA_DIM, step=1,
                            key="en_dim", persist_state=KEEP,
                            help="the number of variables x1 .. xd (at least the highest k of the x_k used)")
    half = c[1].number_input("box half-width h", value=_energy.FORMULA_BOX, min_value=0.5, max_value=100.0,
                             step=0.5, key="en_box", persist_state=KEEP,
                             help="2D: contours and the quadrature of log Z on [−h, h]²")
    spec = ("formula", text, int(dim), float(half))
  try:
    with st.spinner("Building the energy…"):
      return spec, _energy.energy_for(spec)
  except ValueError as e:  # FormulaError and out-of-bounds parameters: a message, not a traceback
    st.error(str(e))
    return None, None


def _preview(spec, e) -> None:
  if e.dim != 2:
    what = f"a {e.L} × {e.L} lattice ({e.dim} variables)" if e.L else f"{e.dim} dimension(s)"
    st.info(f"**{e.label}** has {what}: contours are drawn for 2D energies only"
            + ("; the samples are shown as spin images after training." if e.L else "."))
    return
  if e.box is None:
    st.info("This energy has no box to draw on.")
    return
  show = st.segmented_control("contours of", ["exp(−E)", "E"], default="exp(−E)", key="en_show",
                              persist_state=KEEP) or "exp(−E)"
  try:
    g = _energy.grid_for(spec)
  except ValueError as err:
    st.error(str(err))
    return
  st.plotly_chart(viz.contour_figure(g, title=f"{e.label}: {show}", show="density" if show == "exp(−E)" else "energy"),
                  key="en_preview")


def _train(spec, e, models: list, steps: int, seed: int, method: str, step_size: float) -> None:
  progress = st.progress(0.0, text="compiling the training step (the first chunk takes longest)…")
  live = st.empty()
  n_sites = e.dim if e.L else None
  fits, curves = {}, {}

  def callback(step, record, fitted):
    i = len(fits)
    progress.progress(min(1.0, (i + step / steps) / len(models)),
                      text=f"{fitted.model}: step {step} / {steps} · F {record['loss']:.4g} · "
                           f"{record['seconds']:.1f} s")
    curves[fitted.model] = panels.history_arrays(fitted.history)
    live.plotly_chart(viz.free_energy_figure(dict(curves), log_z=e.log_z, n_sites=n_sites,
                                             total_steps=steps, title="free energy F = −ELBO (live)"),
                      key=f"en_live_{fitted.model}_{step}")

  # one slot of the server's fit pool for the models and their MCMC baseline (app_support/fit_pool.py)
  with _state.fit_slot(lambda text: progress.progress(0.0, text=text)):
    for model in models:
      hyper = {"symmetry": "reflection"} if e.L else {}   # the Z2 symmetry: an even potential
      try:
        fits[model] = cc.fit_energy(model, e, steps=steps, seed=seed, callback=callback,
                                    **_state.LIVE_CHUNK, **hyper)
      except ValueError as err:
        progress.empty()
        st.error(f"{model}: {err}")
        return
      except Exception as err:  # a bug, not the user's fault: say so without a traceback
        progress.empty()
        st.error(f"{model}: training failed with an internal error ({type(err).__name__}: {err}).")
        return
    progress.progress(1.0, text=f"measuring the fits and running {method.upper()} with the same budget…")
    try:
      run = _energy.evaluate(spec, fits, seed=seed, method=method, step_size=step_size)
    except Exception as err:
      progress.empty()
      st.error(f"Evaluating the fits failed ({type(err).__name__}: {err}).")
      return
  st.session_state["energy_run"] = run
  progress.empty()
  live.empty()


def _samples_figure(run: dict, e, samples, label: str, color: str):
  """Samples over the contours (2D), as spin images (lattices), or None (other dimensions)."""
  if e.dim == 2 and run["exact"]["stats"] is not None:
    return viz.contour_figure(_energy.grid_for(run["spec"]), samples=samples, title=f"{label} samples",
                              sample_name=label, color=color)
  if e.L:
    return viz.spin_figure(samples, e.L, title=f"{label} samples: spins sign(x)")
  return None


def _results(run: dict, e) -> None:
  mlabel = next(k for k, v in METHODS.items() if v == run["method"]).split(" ")[0]
  st.subheader("Results")
  summaries = {name: panels.fit_summary(m["fitted"]) for name, m in run["models"].items()}
  for name, s in summaries.items():
    st.markdown(f"**{name}** on *{e.label}* · {s['steps']} steps · {s['seconds']:.1f} s · status **{s['status']}**")
    if s["status"] in ("diverged", "stopped"):
      st.warning(f"{name}: " + (s["message"] or f"training {s['status']}."))
  if run["mcmc_error"]:
    st.warning(f"MCMC: {run['mcmc_error']}")
  plan = run["plan"]
  spent = " ".join(BUDGET_TEXT[name].format(b=m["fitted"].config["batch_size"]) + ": "
                   f"{summaries[name]['steps']} steps × {m['fitted'].config['batch_size']} = "
                   f"{m['flow']['grad_evals']:,}." for name, m in run["models"].items())
  st.caption(
      "**Same budget** = as many evaluations of ∇E for MCMC as the model spent on E. " + spent
      + f" {mlabel} runs {plan['n_chains']} chains from N(0, I) for {plan['n_steps']} transitions "
      f"({'1' if run['method'] == 'mala' else '10'} ∇E per transition, plus one per chain to start) and "
      f"keeps {plan['keep']} states per chain, {plan['thin']} apart, from the end. The models' own cost "
      "(integrating the flow's potential, cmm's chains and conjugates) is not counted; the seconds are "
      "shown too.")
  # one row per model: its samples and its base; MCMC's samples beside the first
  for i, (name, m) in enumerate(run["models"].items()):
    cols = st.columns(3)
    fig = _samples_figure(run, e, m["samples"], name, figures.COLORS["samples"])
    if fig is None:
      cols[0].info("Samples are drawn for 2D energies and lattices; the numbers below hold for any dimension.")
    else:
      cols[0].plotly_chart(fig, key=f"en_samples_{name}")
    if e.dim >= 2:
      if name == "cmm":
        base = viz.latent_figure(m["latent"], m["samples"], base_name="x ~ e^(−w)", labels=("x1", "x2"),
                                 title="cmm base e^(−w) (colour: where they go)")
      else:
        base = viz.latent_figure(m["latent"], m["samples"], title="flow base samples z (colour: where they go)")
      cols[1].plotly_chart(base, key=f"en_base_{name}")
    if i == 0 and run["mcmc_samples"] is not None:
      fig = _samples_figure(run, e, run["mcmc_samples"], mlabel, figures.COLORS["map"])
      if fig is not None:
        cols[2].plotly_chart(fig, key="en_mcmc")
  if e.L and e.name == "ising":
    drawn = {name: m["samples"] for name, m in run["models"].items()}
    if run["mcmc_samples"] is not None:
      drawn[mlabel] = run["mcmc_samples"]
    exact = None
    if e.dim <= energies.MAX_ENUM_SITES:
      exact = energies.ising_magnetisation(e.L, bool(e.params.get("periodic", True)),
                                           float(e.params.get("T", energies.T_C)))
    st.plotly_chart(viz.magnetisation_figure(drawn, e.L, exact=exact), key="en_magnetisation")
    st.caption("Spins drawn from each sampler's relaxed samples by the exact conditional "
               "P(sᵢ = 1 | x) = sigmoid(2xᵢ): exact relaxed samples give exact Ising spins. At the critical "
               "temperature the mass sits near m = ±1; a sampler stuck in one mode shows one side only."
               + (" The dashed line is the exact distribution (all 2^N states enumerated)." if exact else ""))
  c1, c2 = st.columns([3, 2])
  c1.plotly_chart(viz.free_energy_figure({name: panels.history_arrays(m["fitted"].history)
                                          for name, m in run["models"].items()},
                                         log_z=e.log_z, n_sites=e.dim if e.L else None), key="en_curve")
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
  st.table(pd.DataFrame(rows).set_index("quantity"))
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


st.title("Sample an energy")
st.caption("A target known as a density exp(−E) / Z, up to Z: fit a Monge-Ampère flow or a conjugate "
           "moment measure by minimising the variational free energy F = E_q[log q + E] ≥ −log Z, and "
           "compare it with plain MCMC given the same number of energy evaluations.")
top = st.columns([2, 3])
with top[0]:
  spec, energy = _choose_energy()
  model_labels = st.multiselect("models", list(MODELS), default=list(MODELS), key="en_models",
                                persist_state=KEEP, help="maflow: reverse KL through the flow's exact log-density; cmm: the "
                                  "Monge-Ampère relation log ρ_w = −w(∇w) + log det ∇²w − log Z_w, "
                                  "reverse KL by its score-function gradient (docs/energies.md)")
  c = st.columns(2)
  steps_raw = c[0].number_input("training steps", value=200, step=50, key="en_steps", persist_state=KEEP,
                                help=f"1 to {MAX_PAGE_STEPS}; each step uses one batch of 256 points")
  seed = int(c[1].number_input("seed", 0, limits.MAX_APP_SEED, 0, 1, key="en_seed", persist_state=KEEP))
  c = st.columns(2)
  method_label = c[0].selectbox("MCMC baseline", list(METHODS), key="en_method", persist_state=KEEP)
  step_size = c[1].number_input("MCMC step size (fixed)", value=0.1, step=0.01, format="%g", key="en_step_size",
                                persist_state=KEEP, help="MALA: x − h ∇E + √(2h) ξ; HMC: the leapfrog step")
  train_clicked = st.button("Train", type="primary", icon=":material/play_arrow:", key="en_train",
                            disabled=energy is None)
with top[1]:
  if energy is not None:
    _preview(spec, energy)

problems = []
if steps_raw is None or steps_raw != int(steps_raw) or not 1 <= steps_raw <= MAX_PAGE_STEPS:
  problems.append(f"Training steps must be a whole number from 1 to {MAX_PAGE_STEPS}, got {steps_raw}.")
if step_size is None or not step_size > 0 or step_size > 10:
  problems.append(f"The MCMC step size must be a number in (0, 10], got {step_size}.")
if not model_labels:
  problems.append("Pick at least one model to fit.")
for p in problems:
  st.error(p)

if spec is not None and not problems:
  settings = {"models": [MODELS[m] for m in model_labels], "steps": int(steps_raw), "seed": seed,
              "method": METHODS[method_label], "step_size": float(step_size)}
  if spec[0] == "builtin":
    settings.update(source="builtin", name=spec[1], params=dict(spec[2]))
  else:
    settings.update(source="formula", text=spec[1], dim=spec[2], box=spec[3])
  with top[0]:
    _link.share_box(_link.write_url(energy=settings))

if (train_clicked or _link.run_requested("energy")) and energy is not None and not problems:
  _train(spec, energy, [MODELS[m] for m in model_labels], int(steps_raw), seed, METHODS[method_label], float(step_size))

run = st.session_state.get("energy_run")
if run is not None and energy is not None:
  if run["spec"] != spec:
    st.info("The results below are for another energy or other parameters; press **Train** for this one.")
    energy_of_run = _energy.energy_for(run["spec"])
  else:
    energy_of_run = energy
  _results(run, energy_of_run)
elif energy is not None:
  st.info("Press **Train** to fit the models and run the MCMC baseline.")
