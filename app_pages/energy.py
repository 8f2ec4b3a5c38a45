"""Sample an energy: pick a density known as exp(-E) / Z (a built-in or a typed formula), fit a
Monge-Ampère flow or a conjugate moment measure to it by the variational free energy, and compare
it with plain MCMC (blackjax) run for the same number of energy evaluations."""

import streamlit as st

from cmm_core import limits
from app_support import energy as _energy, link as _link

KEEP = _energy.KEEP
MAX_PAGE_STEPS = limits.MAX_ENERGY_STEPS
METHODS = {label: m for m, label in _energy.METHOD_LABELS.items()}
MODELS = {label: m for m, label in _energy.MODEL_LABELS.items()}


st.title("Sample an energy")
st.caption("A target known as a density exp(−E) / Z, up to Z: fit a Monge-Ampère flow or a conjugate "
           "moment measure by minimising the variational free energy F = E_q[log q + E] ≥ −log Z, and "
           "compare it with plain MCMC given the same number of energy evaluations.")
top = st.columns([2, 3])
with top[0]:
  spec, energy = _energy.choose_energy()
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
                                persist_state=KEEP, help="MALA: x − h ∇E + √(2h) ξ; HMC and NUTS: the leapfrog step")
  train_clicked = st.button("Train", type="primary", icon=":material/play_arrow:", key="en_train",
                            disabled=energy is None)
with top[1]:
  if energy is not None:
    _energy.preview(spec, energy)

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
  settings.update(_energy.spec_settings(spec))
  with top[0]:
    _link.share_box(_link.write_url(energy=settings))

if (train_clicked or _link.run_requested("energy")) and energy is not None and not problems:
  _energy.train(spec, energy, {MODELS[m]: {"steps": int(steps_raw)} for m in model_labels}, seed,
                METHODS[method_label], float(step_size), run_key="energy_run")

run = st.session_state.get("energy_run")
if run is not None and energy is not None:
  if run["spec"] != spec:
    st.info("The results below are for another energy or other parameters; press **Train** for this one.")
    energy_of_run = _energy.energy_for(run["spec"])
  else:
    energy_of_run = energy
  _energy.show_results(run, energy_of_run)
elif energy is not None:
  st.info("Press **Train** to fit the models and run the MCMC baseline.")
