"""The Train page trains every model (a file of its own, so that the two test workers share the
long page tests)."""

import pytest
from streamlit.testing.v1 import AppTest

from apptest_utils import TRAIN_TIMEOUT, goto, open_app, small_hyper, small_target

import small_fits  # tests/small_fits.py

TIMEOUT = TRAIN_TIMEOUT  # apptest_utils


def _charts(at: AppTest) -> list:
  return at.get("plotly_chart")


# brenier's page is cmm's and mm's (tests/app/app_test.py, mm here): the slow suite runs it
@pytest.mark.parametrize("model,extra", [("mm", 0), pytest.param("brenier", 0, marks=pytest.mark.slow),
                                         ("maflow", 1), ("sdot", 1)])
def test_train_page_every_model(model, extra):
  at = goto(open_app(), "app_pages/train.py")
  at.selectbox(key="tr_model").set_value(model)
  at.run()
  # the shared small settings and target (tests/small_fits.py): compiled once a run
  at.session_state["target"] = small_target()
  at.run()
  small_hyper(at, model)
  steps = small_fits.STEPS
  at.number_input(key=f"tr_steps_{model}").set_value(steps)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  fitted = at.session_state["fit"]["fitted"]
  assert fitted.model == model and fitted.history[-1]["step"] == steps
  # base, map, samples, loss; maflow and sdot add their own views in tabs
  assert len(_charts(at)) >= 4 + 3 * extra
  if model == "mm":
    assert any("centred" in i.value for i in at.info)
  has_density = model != "sdot"
  assert any("held-out NLL" in m.value for m in at.markdown) == has_density




def test_train_page_measures_a_table_on_its_held_out_rows():
  from cmm_core import target_spec
  built = target_spec.build({"kind": "real", "name": "old_faithful",
                             "columns": ["eruptions_min", "waiting_min"], "standardize": False})
  at = goto(open_app(), "app_pages/train.py")
  at.session_state["target"] = {"label": built.label, "data": built.data, "spec": built.spec,
                                "columns": built.columns, "heldout": built.heldout}
  at.selectbox(key="tr_model").set_value("maflow")
  at.run()
  small_hyper(at, "maflow")
  at.number_input(key="tr_steps_maflow").set_value(10)
  at.button(key="tr_train").click()
  at.run(timeout=TIMEOUT)
  assert not at.exception and not at.error
  assert at.session_state["fit"]["heldout"].shape == (54, 2)
  line = next(m.value for m in at.markdown if "held-out NLL" in m.value)
  assert "54 held-out rows of the table" in line and "training-data NLL" in line
  # what "auto" picked for 218 training rows (the few-rows learning rate), said under the status
  auto = next(c.value for c in at.caption if c.value.startswith("Chosen for this data"))
  assert "learning_rate **0.005**" in auto and "hidden" not in auto  # hidden was set: not auto
