"""cmm_core.compare: budgets, cache keys, metrics, the driver and shared axes (no Streamlit)."""

import dataclasses
import math

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import compare, limits, metrics
from cmm_core.api import MAX_STEPS


def _target(n=256, seed=0, label="eight_gaussians (n=256, seed=0)"):
  data = cc.targets.make("eight_gaussians", n, seed=seed).astype(np.float32)
  spec = {"kind": "toy2d", "name": "eight_gaussians", "n": n, "seed": seed, "params": {}}
  return {"label": label, "spec": spec, "data": data}


TINY = {"hidden": 4}  # maflow with 4 hidden units: 4 * 2 + 4 + 4 = 16 parameters in 2D


@pytest.fixture(scope="module")
def tiny_fit():
  return cc.fit("maflow", _target()["data"], steps=20, seed=0, chunk_size=10, **TINY)


# -- metrics -------------------------------------------------------------------------------------

def test_sinkhorn_divergence_is_zero_on_itself_and_grows_with_a_shift():
  x = cc.targets.make("eight_gaussians", 500, seed=0)
  y = cc.targets.make("eight_gaussians", 500, seed=1)
  self_div = metrics.sinkhorn_divergence(x, x, accelerate=True)
  other = metrics.sinkhorn_divergence(x, y, accelerate=True)
  shifted = metrics.sinkhorn_divergence(x + np.array([1.0, 0.0]), y, accelerate=True)
  assert abs(self_div) < 1e-4
  assert other > 10 * abs(self_div)
  # a shift by a vector v adds about |v|^2 = 1 to the (squared-cost) divergence
  assert shifted > other + 0.5
  assert shifted == pytest.approx(other + 1.0, abs=0.3)
  # the plain solver agrees with the accelerated one
  assert metrics.sinkhorn_divergence(x, y) == pytest.approx(other, rel=0.05, abs=1e-3)


def test_param_count_matches_a_hand_count(tiny_fit):
  assert set(tiny_fit.params) == {"W", "b", "v"}
  assert compare.param_count(tiny_fit) == 4 * 2 + 4 + 4


@dataclasses.dataclass
class _Fake:
  """Just enough of the FittedModel protocol for compare_metrics."""
  points: np.ndarray
  params: dict
  model: str = "fake"
  info: dict = dataclasses.field(default_factory=lambda: {"status": "done", "steps_done": 7,
                                                          "fit_seconds": 1.5})
  history: list = dataclasses.field(default_factory=list)
  density: bool = False

  def sample(self, n, seed=0):
    return self.points[np.random.default_rng(seed).integers(0, len(self.points), n)]

  def log_prob(self, y):
    if not self.density:
      raise NotImplementedError
    return -0.5 * np.sum(np.asarray(y) ** 2, 1) - np.log(2 * np.pi)


def test_compare_metrics_ranks_a_good_model_above_a_bad_one():
  held = cc.targets.make("eight_gaussians", 1024, seed=1)
  good = _Fake(cc.targets.make("eight_gaussians", 2048, seed=2), {"w": np.zeros((3, 2))})
  bad = _Fake(np.random.default_rng(0).normal(size=(2048, 2)), {"w": np.zeros(5)}, density=True)
  mg, mb = compare.compare_metrics(good, held, 0), compare.compare_metrics(bad, held, 0)
  assert mg["sinkhorn"] < mb["sinkhorn"] and mg["energy"] < mb["energy"]
  assert mg["nll"] is None and math.isfinite(mb["nll"])  # no density -> None, not an error
  assert mb["nll"] == pytest.approx(-np.mean(bad.log_prob(held)))
  assert (mg["params"], mb["params"]) == (6, 5)
  assert (mg["steps"], mg["seconds"], mg["status"]) == (7, 1.5, "done")
  assert not mg["errors"] and not mb["errors"]


def test_compare_metrics_of_a_broken_model_reports_instead_of_raising():
  held = cc.targets.make("eight_gaussians", 512, seed=1)
  nan = _Fake(np.full((100, 2), np.nan), {"w": np.zeros(2)})
  m = compare.compare_metrics(nan, held, 0)
  assert math.isnan(m["sinkhorn"]) and math.isnan(m["energy"]) and m["errors"]
  assert m["n_nonfinite"] == metrics.N_HELDOUT

  class Failing(_Fake):
    def sample(self, n, seed=0):
      raise RuntimeError("boom")

    def log_prob(self, y):
      raise FloatingPointError("bad")

  m = compare.compare_metrics(Failing(held, {}), held, 0)
  assert math.isnan(m["sinkhorn"]) and math.isnan(m["nll"]) and len(m["errors"]) == 2
  assert "boom" in m["errors"][0]


def test_compare_metrics_on_a_real_model_with_a_density(tiny_fit):
  held = cc.targets.make("eight_gaussians", 512, seed=1)
  m = compare.compare_metrics(tiny_fit, held, 0)
  assert m["steps"] == 20 and m["params"] == 16 and not m["errors"]
  assert math.isfinite(m["sinkhorn"]) and math.isfinite(m["energy"]) and math.isfinite(m["nll"])


# -- budgets and keys ----------------------------------------------------------------------------

def test_budgets():
  assert compare.budget_for("cmm", "default") == {"steps": cc.models.get("cmm").default_steps}
  assert compare.budget_for("maflow", "steps", 30) == {"steps": 30}
  assert compare.budget_for("mm", "seconds", 5) == {"steps": MAX_STEPS, "seconds": 5.0}
  assert compare.budget_label({"steps": 30}) == "30 steps"
  assert compare.budget_label(compare.budget_for("mm", "seconds", 2.5)) == "2.5 s"
  # the energy route: its own default steps and its own cap
  assert compare.budget_for("cmm", "default", energy=True) == {
      "steps": cc.api.energy_model("cmm").default_steps}
  assert compare.budget_for("maflow", "seconds", 5, energy=True) == {
      "steps": limits.MAX_ENERGY_STEPS, "seconds": 5.0}
  with pytest.raises(ValueError, match="steps must be an integer"):
    compare.budget_for("maflow", "steps", limits.MAX_ENERGY_STEPS + 1, energy=True)
  with pytest.raises(ValueError, match="cannot fit an energy"):
    compare.budget_for("sdot", "default", energy=True)
  for mode, value in [("steps", 0), ("steps", 2.5), ("seconds", -1), ("weeks", 1)]:
    with pytest.raises(ValueError):
      compare.budget_for("mm", mode, value)


def test_cache_key_changes_with_every_setting_and_only_then():
  t = _target()
  base = compare.cache_key(t, "mm", {"steps": 20}, 0, {})
  assert base == compare.cache_key(_target(), "mm", {"steps": 20}, 0, None)  # same settings
  hash(base)
  # hyper given as a tuple or a list (JSON) is the same setting
  assert (compare.cache_key(t, "mm", {"steps": 20}, 0, {"hidden": (8, 8)})
          == compare.cache_key(t, "mm", {"steps": 20}, 0, {"hidden": [8, 8]}))
  other_data = dict(t, data=t["data"] + 1e-3)  # same label and spec, other numbers (an upload)
  variants = [
      compare.cache_key(t, "cmm", {"steps": 20}, 0, {}),
      compare.cache_key(t, "mm", {"steps": 21}, 0, {}),
      compare.cache_key(t, "mm", {"steps": MAX_STEPS, "seconds": 20.0}, 0, {}),
      compare.cache_key(t, "mm", {"steps": 20}, 1, {}),
      compare.cache_key(t, "mm", {"steps": 20}, 0, {"learning_rate": 1e-3}),
      compare.cache_key(_target(label="other"), "mm", {"steps": 20}, 0, {}),
      compare.cache_key(_target(seed=1), "mm", {"steps": 20}, 0, {}),
      compare.cache_key(other_data, "mm", {"steps": 20}, 0, {}),
  ]
  assert base not in variants and len(set(variants)) == len(variants)


# -- the driver ----------------------------------------------------------------------------------

def test_run_compare_yields_one_result_per_model_and_reuses_the_cache():
  t = _target()
  held = cc.targets.make("eight_gaussians", 512, seed=1)
  jobs = [{"model": "maflow", "budget": {"steps": 20}, "hyper": TINY},
          {"model": "maflow", "budget": {"steps": 20}, "hyper": {"hidden": 3}},
          {"model": "maflow", "budget": {"steps": 20}, "hyper": {"no_such_thing": 1}}]
  calls = []
  cache = {}
  out = list(compare.run_compare(t, jobs, seed=0, heldout=held, cache=cache,
                                 callback=lambda m, step, rec, f: calls.append((m, step))))
  assert [r["status"] for r in out] == ["done", "done", "error"]
  assert "no_such_thing" in out[2]["message"] and out[2]["fitted"] is None
  assert out[0]["metrics"]["params"] == 16 and out[1]["metrics"]["params"] == 3 * 4
  assert calls.count(("maflow", 20)) == 2 and not any(r["cached"] for r in out)
  assert len(cache) == 2  # errors are not cached

  again = list(compare.run_compare(t, jobs[:2], seed=0, heldout=held, cache=cache,
                                   callback=lambda *a: pytest.fail("trained again")))
  assert [r["cached"] for r in again] == [True, True]
  assert again[0]["fitted"] is out[0]["fitted"]
  # another seed is another fit
  other = list(compare.run_compare(t, jobs[:1], seed=1, heldout=held, cache=cache))
  assert not other[0]["cached"] and len(cache) == 3


def test_run_compare_stops_when_the_callback_says_so_and_keeps_the_fit():
  t = _target()
  jobs = [{"model": "maflow", "budget": {"steps": 60}, "hyper": TINY},
          {"model": "maflow", "budget": {"steps": 20}, "hyper": {"hidden": 5}}]
  cache = {}
  out = list(compare.run_compare(t, jobs, seed=0, cache=cache, chunking={"chunk_size": 10},
                                 callback=lambda m, step, rec, f: step < 20))
  assert [r["status"] for r in out] == ["stopped", "not run"]
  assert out[0]["metrics"]["steps"] == 20 and out[0]["fitted"] is not None
  assert "stopped by the user" in out[0]["message"]
  assert out[1]["fitted"] is None and "stopped" in out[1]["message"]
  assert not cache  # a stopped fit is not the result of its settings: train it again next time


def test_run_compare_turns_a_crash_into_a_row(monkeypatch):
  from cmm_core import api

  def boom(*a, **k):
    raise RuntimeError("kaboom")

  monkeypatch.setattr(api, "fit", boom)
  out = list(compare.run_compare(_target(), [{"model": "mm", "budget": {"steps": 5}}]))
  assert out[0]["status"] == "error" and "kaboom" in out[0]["message"]


def test_run_compare_labels_a_time_budget_and_a_divergence(monkeypatch):
  from cmm_core import api
  real = api.fit
  statuses = iter(["stopped", "diverged"])

  def fake_fit(model, data, **kw):
    f = real("maflow", data, steps=10, seed=0, chunk_size=10, **TINY)
    return dataclasses.replace(f, info={**f.info, "status": next(statuses), "message": "m"})

  monkeypatch.setattr(api, "fit", fake_fit)
  jobs = [{"model": "maflow", "budget": compare.budget_for("maflow", "seconds", 1)},
          {"model": "maflow", "budget": {"steps": 10}}]
  cache = {}
  out = list(compare.run_compare(_target(), jobs, cache=cache))
  assert [r["status"] for r in out] == ["time budget", "diverged"]
  assert len(cache) == 2  # both are the complete outcome of their settings


def test_mark_stopped(tiny_fit):
  f = compare.mark_stopped(tiny_fit, 10, 1.0, "stopped by the user at step 10")
  assert f.info["status"] == "stopped" and f.info["steps_done"] == 10
  assert tiny_fit.info["status"] == "done"  # not modified in place


def test_table_rows():
  fake = _Fake(np.zeros((4, 2)), {"w": np.zeros(3)})
  rows = compare.table_rows(
      [{"model": "mm", "status": "done", "cached": True, "fitted": fake,
        "metrics": {"steps": 20, "seconds": 1.0, "sinkhorn": 0.1, "energy": 0.2, "nll": None,
                    "params": 3}},
       {"model": "sdot", "status": "error", "cached": False, "fitted": None, "metrics": None}],
      cc.models.LABELS)
  assert [r["model"] for r in rows] == ["mm", "sdot"]
  assert rows[0]["held-out NLL"] is None and rows[0]["cached"] and rows[0]["params"] == 3
  assert rows[1]["steps"] is None and rows[1]["status"] == "error"


# -- shared axes ---------------------------------------------------------------------------------

def _view(k, lo, hi, eq=True):
  r = np.tile([lo, hi], (k, 1)).astype(float)
  return {"view_dim": k, "equal_aspect": eq,
          "ranges": {"base": r, "data": r + 1, "map": r - 1, "common": r * 2}}


def test_share_ranges_takes_the_union_per_panel_and_keeps_inputs():
  a, b = _view(2, -1.0, 1.0), _view(2, -3.0, 0.5)
  a["ranges"]["base"] = np.array([[-1.0, 1.0], [-0.5, 0.5]])
  out = compare.share_ranges([a, None, b])
  assert out[1] is None
  for name in ("base", "data", "map", "common"):
    np.testing.assert_array_equal(out[0]["ranges"][name], out[2]["ranges"][name])
  np.testing.assert_allclose(out[0]["ranges"]["data"], [[-2.0, 2.0], [-2.0, 2.0]])
  w = out[0]["ranges"]["base"]
  assert w[0, 1] - w[0, 0] == pytest.approx(w[1, 1] - w[1, 0])  # still square
  assert w[0, 0] <= -3.0 and w[0, 1] >= 1.0
  np.testing.assert_array_equal(a["ranges"]["base"], [[-1.0, 1.0], [-0.5, 0.5]])
  assert compare.share_ranges([None]) == [None]


def test_share_ranges_in_1d_and_without_equal_aspect():
  out = compare.share_ranges([_view(1, 0.0, 1.0, eq=False), _view(1, -2.0, 0.5, eq=False)])
  np.testing.assert_array_equal(out[0]["ranges"]["base"], [[-2.0, 1.0]])
  assert out[0]["equal_aspect"] is False
  out = compare.share_ranges([_view(2, 0.0, 1.0, eq=True), _view(2, -2.0, 0.5, eq=False)])
  assert out[0]["equal_aspect"] is False
  with pytest.raises(ValueError):
    compare.share_ranges([_view(1, 0.0, 1.0), _view(2, 0.0, 1.0)])


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: 9 s; the image views have their own fast tests
def test_compare_metrics_of_images_add_the_image_figures():
  """For images (the digits), the table adds c2st, NN ratio and bits/dim: a model that copies its
  training images is caught by the NN ratio (0) while its c2st is at chance or below; a fitted Gaussian is
  caught by the c2st."""
  from cmm_core import datasets, image_metrics, target_spec
  train, held = target_spec.hold_out(datasets.load("digits"))
  copies = _Fake(train, {"w": np.zeros(3)})
  mean, cov = image_metrics.gaussian_baseline(train)
  gauss = _Fake(image_metrics.gaussian_samples(mean, cov, 4000, seed=0), {"w": np.zeros(3)})
  mc = compare.compare_metrics(copies, held, 0, images_of=train)
  mg = compare.compare_metrics(gauss, held, 0, images_of=train)
  # copies are no more distinguishable than chance (below it: a copied row sits in both classes)
  assert mc["nn_ratio"] == 0.0 and mc["c2st"] < 0.56
  assert mg["c2st"] > 0.7 and mg["nn_ratio"] > 1.3
  assert mc["bits_per_dim"] is None and not mc["errors"]  # no density: no bits/dim
  rows = compare.table_rows([{"model": "a", "status": "done", "metrics": mc, "fitted": copies},
                             {"model": "b", "status": "done", "metrics": mg, "fitted": gauss}])
  assert rows[1]["c2st"] == mg["c2st"] and rows[0]["NN ratio"] == 0.0 and "bits/dim" in rows[0]
  assert "c2st" not in compare.table_rows([{"model": "c", "status": "done", "metrics": {}}])[0]


def test_the_nll_and_bits_cells_say_why_a_number_is_missing():
  """What the table shows: a number, or the reason there is none (never "None")."""
  fitted = object()
  cell = lambda **m: {"fitted": fitted, "metrics": m}
  assert compare.nll_cell(cell(nll=1.23456, bits_per_dim=2.5)) == "1.235"
  assert compare.bits_cell(cell(nll=1.23456, bits_per_dim=2.5)) == "2.500"
  assert compare.nll_cell(cell(nll=None)) == compare.bits_cell(cell(nll=None, bits_per_dim=None)) == "no density"
  nan = cell(nll=float("nan"), bits_per_dim=None)
  assert compare.nll_cell(nan) == compare.bits_cell(nan) == "not finite"
  for empty in ({"fitted": None, "metrics": {"nll": 1.0}}, {"fitted": fitted, "metrics": None}):
    assert compare.nll_cell(empty) == compare.bits_cell(empty) == ""
