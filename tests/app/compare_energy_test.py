"""AppTest of the Compare page's energy entry: models fitted to exp(-E) under one budget (steps or
seconds), MCMC beside them, the table with its CSV and a handout, and links that preset it."""

from apptest_utils import TRAIN_TIMEOUT, open_app

from cmm_core import share
from cmm_core.viz import panels

PAGE = "app_pages/compare.py"
ENERGY = "an energy"  # app_support/link.py ENERGY_ENTRY


def _only(at, models) -> None:
  for m in ("maflow", "cmm"):
    box = at.checkbox(key=f"cmpe_use_{m}")
    box.check() if m in models else box.uncheck()


def _written(at) -> dict:
  return {k: at.query_params[k][-1] if isinstance(at.query_params[k], list) else at.query_params[k]
          for k in at.query_params}


def test_the_energy_entry_fits_under_a_time_budget_next_to_mcmc():
  at = open_app(PAGE)
  assert at.radio(key="cmp_on").value == "the target's samples"
  at.radio(key="cmp_on").set_value(ENERGY)
  at.run()
  assert not at.exception and not at.error, [e.value for e in at.error]
  assert at.selectbox(key="cmpe_name").value == "ring"
  assert len(at.get("plotly_chart")) == 1  # the contours at once
  assert any("No comparison on an energy yet" in i.value for i in at.info)
  _only(at, ["maflow"])
  at.radio(key="cmpe_budget").set_value("seconds")
  at.run()
  at.number_input(key="cmpe_seconds").set_value(4.0)
  at.run()
  assert _written(at)["budget"] == "seconds:4" and _written(at)["fit"] == "maflow"
  at.button(key="cmpe_go").click()
  at.run(timeout=TRAIN_TIMEOUT)
  assert not at.exception and not at.error, [e.value for e in at.error]
  run = at.session_state["cmpe_run"]
  fitted = run["models"]["maflow"]["fitted"]
  # trained until the first chunk past 4 s, not for the 20,000-step cap
  summary = panels.fit_summary(fitted)
  assert summary["status"] == "stopped" and summary["message"].startswith("time budget of 4 s")
  assert 0 < fitted.history[-1]["step"] < 20_000 and not at.warning
  assert any("status **time budget**" in m.value for m in at.markdown)
  # why so few steps: the compilation's share of the budget (or, when the first chunk alone ran past
  # the budget on a loaded machine, that all of it went to compiling and that chunk)
  assert any("compil" in c.value and "first chunk" in c.value for c in at.caption), [c.value for c in at.caption]
  assert fitted.history[-1]["seconds"] >= 4.0
  evals = run["models"]["maflow"]["flow"]["grad_evals"]
  assert evals == fitted.history[-1]["step"] * fitted.config["batch_size"]
  assert 0 < run["mcmc"]["grad_evals"] <= evals  # MCMC within the same budget
  assert "same time for all: 4 s" in run["budget_text"]
  assert "budget=seconds:4" in run["link"] and "fit=maflow" in run["link"]  # the handout's link
  table = at.table[0].value.reset_index()
  assert list(table.columns) == ["quantity", "maflow", "MALA", "exact"]
  labels = [b.proto.label for b in at.get("download_button")]
  assert "Download the table (CSV)" in labels and "Download a report (HTML)" in labels
  # preview, samples, base, MALA samples, the free-energy curves
  assert len(at.get("plotly_chart")) == 5


def test_a_compare_energy_link_presets_the_entry_and_run_1_compares():
  query = {"energy": "ring", "e.radius": "1.5", "fit": "maflow", "budget": "steps:20", "seed": "2",
           "mcmc": "hmc", "mcmc_step": "0.05"}
  at = open_app(PAGE, home_first=False, query=query)
  assert not at.exception and not at.warning, [w.value for w in at.warning]
  assert at.radio(key="cmp_on").value == ENERGY
  assert at.number_input(key="cmpe_p_ring_radius").value == 1.5
  assert at.checkbox(key="cmpe_use_maflow").value and not at.checkbox(key="cmpe_use_cmm").value
  assert at.radio(key="cmpe_budget").value == "steps" and at.number_input(key="cmpe_steps").value == 20
  assert at.selectbox(key="cmpe_method").value == "hmc" and at.number_input(key="cmpe_seed").value == 2
  assert share.decode(_written(at))["energy"] == share.decode(query)["energy"]
  assert "cmpe_run" not in at.session_state

  at = open_app(PAGE, home_first=False, query={**query, "run": "1"})
  assert not at.exception and not at.error, [e.value for e in at.error]
  run = at.session_state["cmpe_run"]
  assert list(run["models"]) == ["maflow"] and run["method"] == "hmc" and run["seed"] == 2
  assert run["models"]["maflow"]["fitted"].history[-1]["step"] == 20
  # the same link opened on the Sample an energy page does not start there
  at = open_app("app_pages/energy.py", home_first=False, query={**query, "run": "1"})
  assert "energy_run" not in at.session_state
  assert any("Compare" in w.value or "compare" in w.value for w in at.warning)
