"""End-to-end checks of the benchmark harnesses (benchmarks/run.py, scaling.py, restart.py) on tiny settings."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MACHINE = ["platform", "cpu_count", "cpus_usable", "jax_version", "jax_backend", "jax_devices"]


def _run(script, *args, tmp_path, timeout=240):
  out, md = tmp_path / f"{script}.json", tmp_path / f"{script}.md"
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args,
                         "--out", str(out), "--markdown", str(md)],
                        cwd=ROOT, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.read_text()), md.read_text()


def _finite(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Each harness below is a fresh process that imports JAX and compiles a fit (13-16 s in the suite):
# in the slow suite, which CI runs after the default one (docs/testing.md, session 43).
@pytest.mark.slow
def test_run_quick_end_to_end(tmp_path):
  out, md = _run("run", "--quick", "--models", "maflow", "--targets", "gaussian_2d",
                 "--max-seconds", "2", tmp_path=tmp_path)
  assert all(k in out["machine"] for k in MACHINE)
  assert out["config"]["quick"] and out["config"]["level_factor"] == 3.0
  (r,) = out["runs"]
  assert "error" not in r, r
  assert (r["model"], r["target"], r["seed"], r["dim"]) == ("maflow", "gaussian_2d", 0, 2)
  for k in ("floor", "level", "best_ed", "best_ed_over_floor", "final_ed", "train_clock", "eval_seconds",
            "first_chunk_seconds", "init_seconds", "steady_chunk_seconds", "steps_per_second",
            "compile_seconds", "jax_compile_seconds", "peak_rss_mb"):
    assert _finite(r[k]), (k, r[k])
  assert r["level"] == r["level_factor"] * r["floor"] and r["floor"] > 0 and r["peak_rss_mb"] > 10
  assert r["steps_per_second"] > 0 and r["steps_done"] >= 3 * r["chunk_size"]  # never stops before 3 chunks
  assert r["time_to_level"] is None or r["time_to_level"] <= r["train_clock"]
  assert set(r["time_to_factor"]) == {"3", "5", "10"}
  assert r["evals"] and all(_finite(e["clock"]) and _finite(e["ed"]) for e in r["evals"])
  assert r["stop_reason"] in ("max_seconds", "level_reached", "steps_done")
  s = out["summary"]["gaussian_2d"]["maflow"]
  assert s["runs"] == 1 and _finite(s["steps_per_second"]) and _finite(s["peak_rss_mb"])
  assert s["ratio_to_fastest"] in (None, 1.0)
  assert "## gaussian_2d" in md and "| maflow |" in md


@pytest.mark.slow
def test_scaling_quick_end_to_end(tmp_path):
  out, md = _run("scaling", "--quick", "--models", "maflow", "--ns", "128", "--ds", "2", "3",
                 "--n-fixed", "128", tmp_path=tmp_path)
  assert all(k in out["machine"] for k in MACHINE)
  rs = out["results"]
  assert [(r["n"], r["d"], r["sweep"]) for r in rs] == [(128, 2, "n"), (128, 3, "d")]
  for r in rs:
    assert "error" not in r and r["status"] == "done", r
    for k in ("seconds_per_step", "steps_per_second", "first_chunk_seconds", "compile_seconds"):
      assert _finite(r[k]), (k, r[k])
    assert r["seconds_per_step"] > 0 and r["first_chunk_seconds"] > 0
  assert "By dimension d" in md and "| maflow |" in md


@pytest.mark.slow  # two fresh processes that import JAX and fit
def test_restart_measures_a_second_process_reading_the_cache(tmp_path):
  out, md = _run("restart", "--models", "maflow", "--steps", "2", tmp_path=tmp_path, timeout=600)
  (r,) = out["results"]
  assert "error" not in r["first"] and "error" not in r["second"], r
  assert r["first"]["cache"] == r["second"]["cache"] and r["cache_entries"] > 0
  for run in (r["first"], r["second"]):
    assert run["status"] == "done" and run["finite"] and _finite(run["fit_seconds"])
  # the second process reads the training chunk instead of compiling it
  assert r["second"]["fit_seconds"] < r["first"]["fit_seconds"], r
  assert "| maflow |" in md


# slow (20 s in the suite): the measuring tool's end-to-end run, not the product; .ci/run runs it
@pytest.mark.slow
def test_energies_end_to_end(tmp_path):
  out, md = _run("energies", "--models", "maflow", "--energies", "gaussian", "--max-seconds", "20",
                 "--eval-n", "512", "--hyper", "maflow.standardize=1", tmp_path=tmp_path)
  assert all(k in out["machine"] for k in MACHINE)
  (fit,) = out["fits"]
  assert (fit["model"], fit["energy"], fit["dim"]) == ("maflow", "gaussian", 2)
  assert fit["hyper"] == {"standardize": True} and out["config"]["hyper"] == ["maflow.standardize=1"]
  # it stops at the first measurement within the gap, or at the time budget
  last = fit["last"]
  assert fit["reached"] == (last["gap"] <= 0.05)
  assert fit["reached"] or last["train_seconds"] >= 20
  assert [e["step"] for e in fit["evals"]] == [50 * (i + 1) for i in range(len(fit["evals"]))]
  assert all(_finite(e["gap"]) and 0 < e["ess_fraction"] <= 1 for e in fit["evals"])
  assert _finite(fit["energy_distance"]) and fit["energy_distance_floor"] > 0
  assert [r["model"] for r in out["mcmc"]] == ["mala", "nuts"]  # the default baselines
  for chain in out["mcmc"]:
    last = chain["last"]
    assert chain["runs"][0]["n_steps"] == 25
    # NUTS counts its trajectories' leapfrog steps: at least one per transition and chain
    assert last["grad_evals"] >= 256 * (last["n_steps"] + 1)
    assert chain["reached"] == (last["energy_distance"] <= chain["energy_distance_floor"] + 0.01)
  assert "| gaussian | maflow |" in md
  assert "| gaussian | MALA (0.1) |" in md and "| gaussian | NUTS (0.1) |" in md


@pytest.mark.slow
def test_energies_with_a_time_budget_measures_once_at_the_end(tmp_path):
  out, md = _run("energies", "--models", "maflow", "--energies", "gaussian", "--max-seconds", "6",
                 "--budget", "--mcmc", tmp_path=tmp_path)
  (fit,) = out["fits"]
  assert fit["budget"] and out["config"]["budget"] and out["mcmc"] == []  # --mcmc alone: no chains
  (last,) = fit["evals"]  # one measurement, after the budget
  assert last["train_seconds"] >= 6 and last["step"] == fit["steps"]
  # the rate decays over the steps the budget holds: planned from the measured speed, near the steps done
  assert fit["planned_steps"] is not None and 0.5 * fit["steps"] <= fit["planned_steps"] <= 2 * fit["steps"]
  assert fit["reached"] == (last["gap"] <= 0.05) and "a time budget, measured at the end" in md


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: a benchmark's reference figures; 8 s
def test_digits_image_figures_of_the_gaussian_baseline(monkeypatch):
  # the reference figures: a fitted Gaussian's c2st about 0.79-0.83, its conditional's
  # completions of the bottom half read right about 64% of the time, the classifier ~97% on clean digits
  monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
  import digits
  from cmm_core import image_metrics, inpaint
  train, heldout = digits.digits_split()
  mask = digits.bottom_half_mask(3)
  assert mask.shape == (3, 64) and mask[:, :32].all() and not mask[:, 32:].any()
  mean, cov = image_metrics.gaussian_baseline(train)
  samples = image_metrics.gaussian_samples(mean, cov, 2000, seed=0)
  seen = {}

  def complete(x, m):
    seen["hidden"] = np.isnan(x).sum()
    return inpaint.gaussian_inpaint(mean, cov, x, m, seed=0)

  v = digits.image_figures(samples, train, heldout, complete)
  assert seen["hidden"] == digits.INPAINT_ROWS * 32       # the bottom half, hidden
  assert 0.75 <= v["c2st"] <= 0.9 and 1.2 <= v["nn_ratio"] <= 2.5
  assert 0.5 <= v["inpaint_accuracy"] <= 0.8 and v["classifier_heldout_accuracy"] >= 0.95
  copies = train[:200]                                    # copies of training rows: NN ratio 0
  assert digits.image_figures(copies, train, heldout, complete)["nn_ratio"] == 0.0


def test_digits_knn_conditional_reads_like_the_true_conditional(monkeypatch):
  # completing with the nearest training digit's bottom half reads right far more often than the
  # Gaussian conditional (about 64%); drawing among more neighbours blurs it towards the marginal
  monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
  import digits
  train, heldout = digits.digits_split()
  acc = digits.knn_conditional_accuracy(train, heldout, ks=(1, 200))
  assert acc["1"] >= 0.8 and acc["200"] <= acc["1"] - 0.1, acc


def test_scaling_exponent_is_the_log_log_slope_from_32_on(monkeypatch):
  monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
  import scaling
  t = {16: 5.0, 32: 1.0, 64: 4.0, 128: 16.0, 256: None}  # d^2 from 32 on; d = 16 and a gap ignored
  assert scaling.fitted_exponent(t.items()) == pytest.approx((2.0, 32, 128))
  assert scaling.fitted_exponent([(2, 1.0), (32, 1.0)]) is None
