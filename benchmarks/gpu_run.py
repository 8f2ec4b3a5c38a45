"""One command for a lent GPU (the ``device`` tool): the benchmarks that issues 19 (item 7) and 22
(item 5) ask to run there, sized to end inside one device call, their files written where the
device sends files back (``$OUT``).

Parts (``--part``), each planned to fit one call of at most 10 minutes:

- ``digits``: ``benchmarks/digits.py`` for every model (maflow, cmm and sdot first: the issue's
  targets), the issue's image figures included (c2st, NN ratio, completions of half-hidden digits).
- ``scaling``: ``benchmarks/scaling.py``, time per step of every model for d = 2, 16, 64, 256 at
  n = 100,000 and for n = 1,000 and 100,000 at d = 64 (written after each point).
- ``speed``: ``benchmarks/run.py`` (maflow and cmm on eight_gaussians, n = 100,000: time to 3x
  the energy-distance floor) and ``benchmarks/peers.py`` (maflow and cmm against flowjax's two
  flows on eight_gaussians at n = 100,000); 45-s budgets.

Every step is a subprocess with a timeout: what is left of ``--deadline`` (seconds from the start)
minus a margin, so a slow or failing step is cut and recorded, the next steps still run, and the
command ends before the device call does. ``gpu_run.json`` (rewritten after each step) holds the
machine (JAX's devices), each step's command, exit status, seconds, the runs its JSON records as
failed (the benchmarks go on past a failed fit) and the tail of its output; the exit status is 1 if
any step failed, was cut or was skipped.
Each benchmark writes its own JSON and markdown next to it (at most 8 files come back from a call).
``--smoke``: tiny settings, to check the plan end to end on a CPU (not a measurement).

On the device, whose ``python3`` has JAX with CUDA, flax and optax but not ott-jax, blackjax, jaxopt,
flowjax or paramax: ``bash benchmarks/gpu_wheels.sh`` here first (those as wheels, into the ignored
``.whl/``), then the device call, with ``carry=[".whl"]`` (docs/benchmarks.md, "On a GPU")::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \\
      && python3 benchmarks/gpu_run.py --part digits --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ("digits", "scaling", "speed")
MARGIN_S = 20.0      # left at the end of the deadline: the last write and the device's transfer
MIN_STEP_S = 30.0    # a step with less time than this left is skipped, not started
TAIL_CHARS = 3000    # of each step's output kept in gpu_run.json
DIGITS_MODELS = ["maflow", "cmm", "sdot", "mm", "brenier"]
ALL_MODELS = ["cmm", "mm", "brenier", "maflow", "sdot"]


def plan(part: str, out_dir: pathlib.Path, smoke: bool = False) -> list[tuple[str, list[str]]]:
  """``[(step name, argv after the python executable)]`` of one part, in the order they run."""
  if part not in PARTS:
    raise ValueError(f"part must be one of {PARTS}, got {part!r}")
  o = lambda name: str(out_dir / name)
  b = lambda script: str(HERE / f"{script}.py")
  if part == "digits":
    if smoke:
      sizes = ["--models", "maflow", "--budget", "5", "--steps", "20", "--inpaint-steps", "4"]
    else:
      sizes = ["--models", *DIGITS_MODELS, "--budget", "60", "--inpaint-steps", "100"]
    return [("digits", [b("digits"), *sizes, "--out", o("digits_gpu.json"),
                        "--markdown", o("digits_gpu.md")])]
  if part == "scaling":
    if smoke:
      sizes = ["--quick", "--models", "maflow", "--ns", "128", "--ds", "2", "3", "--n-fixed", "128"]
    else:
      sizes = ["--models", *ALL_MODELS, "--ns", "1000", "100000", "--d-fixed", "64",
               "--ds", "2", "16", "64", "256", "--n-fixed", "100000"]
    return [("scaling", [b("scaling"), *sizes, "--out", o("scaling_gpu.json"),
                         "--markdown", o("scaling_gpu.md")])]
  if smoke:
    run_sizes = ["--quick", "--models", "maflow", "--targets", "gaussian_2d", "--max-seconds", "2"]
    peer_sizes = ["--quick", "--models", "maflow", "--flowjax", "coupling", "--targets",
                  "eight_gaussians", "--max-seconds", "3"]
  else:
    run_sizes = ["--models", "maflow", "cmm", "--targets", "eight_gaussians", "--n", "100000",
                 "--repeats", "1", "--max-seconds", "45"]
    peer_sizes = ["--targets", "eight_gaussians", "--n", "100000", "--max-seconds", "45"]
  return [("run", [b("run"), *run_sizes, "--out", o("run_gpu.json"), "--markdown", o("run_gpu.md")]),
          ("peers", [b("peers"), *peer_sizes, "--no-pin", "--out", o("peers_gpu.json"),
                     "--markdown", o("peers_gpu.md")])]


def machine() -> dict:
  """JAX's view of the machine, from a subprocess (this process never imports JAX)."""
  code = ("import json, jax; d = jax.devices(); print(json.dumps({'jax': jax.__version__, "
          "'backend': jax.default_backend(), 'devices': [str(x) for x in d], "
          "'kind': d[0].device_kind if d else None}))")
  try:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])
  except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as e:
    return {"error": repr(e)}


def run_step(argv: list[str], timeout: float) -> dict:
  """Runs ``python argv`` from the repository root with ``timeout`` seconds; its record."""
  t0 = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, *argv], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=timeout)
    rc, output = proc.returncode, proc.stdout + proc.stderr
  except subprocess.TimeoutExpired as e:
    rc = "timeout"
    output = "".join(x.decode() if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr))
  return {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "tail": output[-TAIL_CHARS:]}


def count_errors(argv: list[str]) -> int:
  """Runs recorded as failed (dicts with an ``"error"`` key) in the JSON the step wrote (its
  ``--out``): the benchmarks record a failed fit and go on, so their exit status is 0 regardless."""
  path = argv[argv.index("--out") + 1] if "--out" in argv else None
  if not path or not pathlib.Path(path).is_file():
    return 0

  def walk(v) -> int:
    if isinstance(v, dict):
      return int("error" in v) + sum(walk(x) for x in v.values())
    return sum(walk(x) for x in v) if isinstance(v, list) else 0
  try:
    return walk(json.loads(pathlib.Path(path).read_text()))
  except json.JSONDecodeError:
    return 0


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--part", nargs="+", choices=PARTS, default=["digits"],
                  help="what to run, in order (default: digits)")
  ap.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "results" / "gpu"),
                  help="folder of the files (default: $OUT, else benchmarks/results/gpu)")
  ap.add_argument("--deadline", type=float, default=560.0,
                  help="seconds from the start by which everything has ended (default 560: one "
                       "device call runs at most 600)")
  ap.add_argument("--smoke", action="store_true", help="tiny settings: a check of the plan, not a measurement")
  args = ap.parse_args(argv)
  start = time.perf_counter()
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  record = {"parts": args.part, "smoke": args.smoke, "deadline": args.deadline,
            "machine": machine(), "steps": []}
  log = out_dir / "gpu_run.json"
  log.write_text(json.dumps(record, indent=2))
  print(json.dumps(record["machine"]), flush=True)
  failed = False
  for part in args.part:
    for name, step in plan(part, out_dir, args.smoke):
      left = args.deadline - (time.perf_counter() - start) - MARGIN_S
      entry = {"part": part, "step": name, "argv": ["python", *[os.path.relpath(a, ROOT)
                                                              if a.startswith(str(ROOT)) else a for a in step]]}
      if left < MIN_STEP_S:
        entry.update(rc="skipped", seconds=0.0, tail=f"{left:.0f} s left before the deadline")
      else:
        entry.update(run_step(step, left), failed_runs=count_errors(step))
      failed |= entry["rc"] != 0 or bool(entry.get("failed_runs"))
      record["steps"].append(entry)
      log.write_text(json.dumps(record, indent=2))
      print(f"[gpu_run] {part}/{name}: rc {entry['rc']} in {entry['seconds']} s, "
            f"{entry.get('failed_runs', 0)} failed run(s) in its JSON", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
