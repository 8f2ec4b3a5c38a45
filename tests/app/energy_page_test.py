"""AppTest of the "Sample an energy" page: contours at once, formula errors, a short fit with the
MCMC baseline, and spin images for the Ising model."""

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


def test_training_the_ring_shows_curves_samples_and_the_table():
  at = open_app(PAGE)
  at.number_input(key="en_steps").set_value(10)
  at.button(key="en_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  run = at.session_state["energy_run"]
  assert run["fitted"].history[-1]["step"] == 10
  assert run["flow_samples"].shape == (1024, 2) and run["mcmc_samples"].shape[1] == 2
  # the same budget: 10 steps x 256 points = 2560 gradient evaluations, MALA within it
  assert run["flow"]["grad_evals"] == 2560 and 0 < run["mcmc"]["grad_evals"] <= 2560
  keys = {c.proto.id for c in _charts(at)}
  assert len(_charts(at)) == 5  # preview, flow samples, MCMC samples, latent, free-energy curve
  assert len(keys) == 5
  table = _table(at)
  quantities = list(table["quantity"])
  assert "importance-weighted log Z" in quantities and "energy distance to exact samples" in quantities
  row = table[table["quantity"] == "free energy F = −ELBO"].iloc[0]
  assert row["MALA"].startswith("—") and row["exact"] != "—"
  assert any("Same budget" in c.value for c in at.caption)


def test_ising_shows_spin_images():
  at = open_app(PAGE)
  at.selectbox(key="en_name").set_value("ising")
  at.run()
  assert not at.exception and not at.error
  assert at.number_input(key="en_p_ising_L").value == 4
  assert not _charts(at) and any("lattice" in i.value for i in at.info)  # no contours in 16D
  at.number_input(key="en_steps").set_value(10)
  at.button(key="en_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  assert len(_charts(at)) == 4  # flow spins, MCMC spins, latent, curve
  table = _table(at)
  row = table[table["quantity"] == "free energy per site F / N"].iloc[0]
  assert row["exact"] == "-2.33605"
  assert any("Free energy per site" in m.value for m in at.markdown)
  # another parameter: the old results are marked as such
  at.number_input(key="en_p_ising_L").set_value(3)
  at.run()
  assert not at.exception and any("another energy" in i.value for i in at.info)
