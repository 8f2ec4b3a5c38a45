"""benchmarks/gpu_run.py (the one command for a lent GPU): its plan fits one device call, the
deadline cuts steps instead of the call, and, slow, a smoke run of the plan on this CPU."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_run.py"
MAX_FILES_BACK = 8  # files a device call sends back from $OUT


@pytest.fixture(scope="module")
def gpu_run():
  spec = importlib.util.spec_from_file_location("benchmarks_gpu_run", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("smoke", [False, True])
def test_each_part_writes_few_files_under_out_with_scripts_that_exist(gpu_run, tmp_path, smoke):
  for part in gpu_run.PARTS:
    steps = gpu_run.plan(part, tmp_path, smoke)
    written = {"gpu_run.json"}
    for name, argv in steps:
      assert pathlib.Path(argv[0]).is_file() and argv[0].startswith(str(ROOT / "benchmarks")), argv
      for flag in ("--out", "--markdown"):
        path = pathlib.Path(argv[argv.index(flag) + 1])
        assert path.parent == tmp_path, (part, name, path)
        written.add(path.name)
    assert len(written) == 1 + 2 * len(steps) <= MAX_FILES_BACK, (part, written)
  full = gpu_run.plan("digits", tmp_path)[0][1]
  models = full[full.index("--models") + 1:full.index("--budget")]
  assert sorted(models) == sorted(gpu_run.ALL_MODELS) and models[:3] == ["maflow", "cmm", "sdot"]
  with pytest.raises(ValueError, match="part must be one of"):
    gpu_run.plan("everything", tmp_path)


def test_steps_past_the_deadline_are_skipped_and_recorded(gpu_run, tmp_path, monkeypatch):
  monkeypatch.setattr(gpu_run, "machine", lambda: {"backend": "test"})
  rc = gpu_run.main(["--part", "digits", "scaling", "--deadline", "5", "--out", str(tmp_path)])
  record = json.loads((tmp_path / "gpu_run.json").read_text())
  assert rc == 1 and record["machine"] == {"backend": "test"}
  assert [(s["part"], s["rc"]) for s in record["steps"]] == [("digits", "skipped"), ("scaling", "skipped")]
  assert record["steps"][0]["argv"][:2] == ["python", "benchmarks/digits.py"]


def test_failed_runs_are_counted_from_the_steps_json(gpu_run, tmp_path):
  out = tmp_path / "x.json"
  out.write_text(json.dumps({"runs": [{"model": "cmm", "error": "boom"}, {"model": "maflow"}],
                             "references": {"nested": [{"error": "again"}]}}))
  assert gpu_run.count_errors(["script.py", "--out", str(out)]) == 2
  assert gpu_run.count_errors(["script.py", "--out", str(tmp_path / "missing.json")]) == 0


@pytest.mark.slow  # three benchmark processes that import JAX and compile small fits: about a minute
def test_smoke_plan_runs_end_to_end(tmp_path):
  try:
    import flowjax  # noqa: F401  (the speed part's peers step needs it: pip install -e ".[peers]")
    parts = ["scaling", "speed"]
  except ImportError:
    parts = ["scaling"]
  proc = subprocess.run([sys.executable, str(SCRIPT), "--part", *parts, "--smoke", "--out", str(tmp_path)],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  record = json.loads((tmp_path / "gpu_run.json").read_text())
  assert proc.returncode == 0, [(s["step"], s["rc"], s["tail"][-1500:]) for s in record["steps"]]
  assert record["machine"]["backend"] == "cpu" and record["machine"]["devices"]
  for s in record["steps"]:
    assert s["rc"] == 0 and s["failed_runs"] == 0 and s["seconds"] > 0, s
  results = json.loads((tmp_path / "scaling_gpu.json").read_text())["results"]
  assert {(r["model"], r["d"]) for r in results} == {("maflow", 2), ("maflow", 3)}
  assert all(r["status"] == "done" and 0 < r["seconds_per_step"] < 1 for r in results)
  assert (tmp_path / "scaling_gpu.md").read_text().strip()
