"""AppTest of the "Sample an energy" page: contours at once, formula errors, a short fit with the
MCMC baseline, and spin images for the Ising model."""

import pytest
from apptest_utils import TRAIN_TIMEOUT, open_app

PAGE = "app_pages/energy.py"
TIMEOUT = TRAIN_TIMEOUT  # apptest_utils


def _charts(at):
  return at.get("plotly_chart")


def _table(at):
  tables = at.table
  assert len(tables) == 1
  return tables[0].value.reset_index()


def test_opening_shows_the_ring_contours():
  at = open_app(PAGE)
  assert [t.value for t in at.title] == ["Sample an energy"]
  assert not at.error, [e.value for e in at.error]
  assert at.selectbox(key="en_name").value == "ring"
  assert len(_charts(at)) == 1  # the contours, before any training
  assert at.button(key="en_train").label == "Train"
  assert any("Press **Train**" in i.value for i in at.info)


def test_bad_formula_and_bad_settings_show_messages():
  at = open_app(PAGE)
  at.radio(key="en_source").set_value("formula")
  at.run()
  assert not at.exception and not at.error
  assert len(_charts(at)) == 1  # the default formula is the ring: contours too
  at.text_input(key="en_formula").set_value("(|x| - 2)^2 / __import__('os')")
  at.run()
  assert not at.exception and len(at.error) == 1 and "Allowed" in at.error[0].value
  assert not _charts(at) and at.button(key="en_train").disabled
  at.text_input(key="en_formula").set_value("")
  at.run()
  assert not at.exception and len(at.error) == 1 and "Type a formula" in at.error[0].value
  at.text_input(key="en_formula").set_value("x1^2 + x2^2 / 2")
  at.number_input(key="en_steps").set_value(0)
  at.run()
  assert not at.exception and len(at.error) == 1 and "Training steps" in at.error[0].value
  at.number_input(key="en_steps").set_value(10)
  at.number_input(key="en_step_size").set_value(-0.1)
  at.button(key="en_train").click()
  at.run()
  assert not at.exception and "step size" in at.error[0].value
  assert "energy_run" not in at.session_state  # nothing trained with bad settings


LABELS = {"maflow": "maflow (Monge-Ampère flow)", "cmm": "cmm (conjugate moment measure)"}


# Both models, the page's default, in the slow suite: cmm's energy step and its samples' programs
# (MALA on e^{-w}, the conjugate, the Hessian's log-determinant) compile for about 30 s of this test's
# 35-65 s. The default suite trains maflow alone here; cmm's energy route has its library tests
# (tests/fit_energy_cmm_test.py) and Compare's energy entry (tests/app/compare_energy_test.py).
@pytest.mark.parametrize("models", [pytest.param(("maflow",), id="maflow"),
                                    pytest.param(("maflow", "cmm"), id="both", marks=pytest.mark.slow)])
def test_training_the_ring_shows_curves_samples_and_the_table(models):
  at = open_app(PAGE)
  # both models by default; cmm with 16 x 16 hidden units would need the schema's widgets, so the
  # page's defaults run: 52 steps = cmm's 50 burn-in steps (chains only) + 2 training steps
  assert at.multiselect(key="en_models").value == list(LABELS.values())
  if list(models) != list(LABELS):
    at.multiselect(key="en_models").set_value([LABELS[m] for m in models])
  at.number_input(key="en_steps").set_value(52)
  at.button(key="en_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  run = at.session_state["energy_run"]
  assert list(run["models"]) == list(models)
  for name, m in run["models"].items():
    assert m["fitted"].model == name and m["fitted"].history[-1]["step"] == 52
    assert m["samples"].shape == (1024, 2)
    # the same budget: 52 steps x 256 points = 13,312 energy evaluations, MALA within it
    assert m["flow"]["grad_evals"] == 13312
  assert run["mcmc_samples"].shape[1] == 2 and 0 < run["mcmc"]["grad_evals"] <= 13312
  keys = {c.proto.id for c in _charts(at)}
  # preview; per model its samples and base; MCMC samples; the free-energy curves
  n_charts = 1 + 2 * len(models) + 1 + 1
  assert len(_charts(at)) == n_charts and len(keys) == n_charts
  curve = _charts(at)[-1]
  assert all(m in curve.proto.spec for m in models)  # one curve per model
  table = _table(at)
  assert list(table.columns) == ["quantity", *models, "MALA", "exact"]
  quantities = list(table["quantity"])
  assert "importance-weighted log Z" in quantities and "energy distance to exact samples" in quantities
  row = table[table["quantity"] == "free energy F = −ELBO"].iloc[0]
  assert row["MALA"].startswith("—") and row["exact"] != "—"
  assert all(row[m] != "—" for m in models)
  assert any("Same budget" in c.value for c in at.caption)


def test_no_model_picked_is_a_message():
  at = open_app(PAGE)
  at.multiselect(key="en_models").set_value([])
  at.run()
  assert not at.exception and any("at least one model" in e.value for e in at.error)


def test_ising_shows_spin_images():
  at = open_app(PAGE)
  at.selectbox(key="en_name").set_value("ising")
  at.run()
  assert not at.exception and not at.error
  assert at.number_input(key="en_p_ising_L").value == 4
  assert not _charts(at) and any("lattice" in i.value for i in at.info)  # no contours in 16D
  at.multiselect(key="en_models").set_value(["maflow (Monge-Ampère flow)"])
  at.number_input(key="en_steps").set_value(10)
  at.button(key="en_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  assert len(_charts(at)) == 5  # flow spins, latent, MCMC spins, magnetisation, curve
  magnetisation = next(c for c in _charts(at) if "magnetisation" in c.proto.spec)
  assert "exact (enumeration)" in magnetisation.proto.spec
  table = _table(at)
  row = table[table["quantity"] == "free energy per site F / N"].iloc[0]
  assert row["exact"] == "-2.33605"
  assert any("Free energy per site" in m.value for m in at.markdown)
  # the settings the page adds to the defaults, and why (cc.api.energy_settings)
  assert any("symmetry=reflection" in c.value and "Z2" in c.value for c in at.caption)
  # another parameter: the old results are marked as such
  at.number_input(key="en_p_ising_L").set_value(3)
  at.run()
  assert not at.exception and any("another energy" in i.value for i in at.info)


def test_a_link_restores_the_energy_and_settings_and_run_1_trains():
  from cmm_core import share
  query = {"energy": "ring", "e.radius": "1.5", "fit": "maflow", "steps": "20", "seed": "3",
           "mcmc": "nuts", "mcmc_step": "0.2"}
  at = open_app(PAGE, home_first=False, query=query)
  assert not at.exception and not at.warning, [w.value for w in at.warning]
  assert at.selectbox(key="en_name").value == "ring"
  assert at.number_input(key="en_p_ring_radius").value == 1.5
  assert at.multiselect(key="en_models").value == ["maflow (Monge-Ampère flow)"]
  assert at.number_input(key="en_steps").value == 20 and at.number_input(key="en_seed").value == 3
  assert at.selectbox(key="en_method").value.startswith("NUTS")
  assert "energy_run" not in at.session_state  # no run=1: nothing trained
  # the page writes the same settings back and shows the link with its run=1 form
  written = {k: at.query_params[k][-1] if isinstance(at.query_params[k], list) else at.query_params[k]
             for k in at.query_params}
  assert share.decode(written)["energy"] == share.decode(query)["energy"]
  assert any("energy=ring" in c.value and c.value.endswith("&run=1") for c in at.code)

  at = open_app(PAGE, home_first=False, query={**query, "run": "1"})
  assert not at.exception and not at.error, [e.value for e in at.error]
  run_ = at.session_state["energy_run"]
  assert list(run_["models"]) == ["maflow"] and run_["method"] == "nuts"
  assert run_["models"]["maflow"]["fitted"].history[-1]["step"] == 20
  # NUTS: its transitions planned from a pilot's measured cost, its evaluations counted as they ran
  plan, budget = run_["plan"], run_["budget"]
  assert plan["per_transition"] >= 1 and run_["mcmc"]["grad_evals"] >= plan["n_chains"] * (plan["n_steps"] + 1)
  assert run_["mcmc"]["grad_evals"] <= budget + plan["n_chains"] * plan["per_transition"] * 4
  assert any("pilot" in c.value for c in at.caption)


def test_a_formula_link_and_a_bad_value():
  at = open_app(PAGE, home_first=False, query={"formula": "x1^2 + x2^2 / 2", "dim": "2", "box": "3",
                                               "fit": "cmm,sdot", "steps": "0"})
  assert not at.exception
  assert at.radio(key="en_source").value == "formula"
  assert at.text_input(key="en_formula").value == "x1^2 + x2^2 / 2"
  assert at.number_input(key="en_box").value == 3.0
  assert at.multiselect(key="en_models").value == ["cmm (conjugate moment measure)"]
  text = " ".join(w.value for w in at.warning)
  assert "sdot" in text and "steps" in text  # each refused value is named
