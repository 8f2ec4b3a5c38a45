"""The first and the second fit of each model in a new process: what the persistent compilation
cache (``cmm_core.compile_cache``) saves a restarted app or a second ``python -m cmm_core fit``.

For each model, two fresh Python processes run one after the other with the same, initially empty,
cache folder. Each process imports ``cmm_core``, turns the cache on (as ``app.py`` and the CLI do),
fits the model with its defaults on eight_gaussians (4096 points) for ``--steps`` steps and draws
2,000 samples, timing the fit and the sampling separately. The first process compiles everything;
the second reads what the first wrote. ``--no-cache`` runs the second process with the cache off
(the figures without the cache, for the same machine and load). JSON (``--out``), markdown
(``--markdown``).

    python benchmarks/restart.py --out benchmarks/results/restart.json --markdown docs/restart.md
    python benchmarks/restart.py --models maflow --steps 5      # seconds: a check
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

from run import MODELS, machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from cmm_core import compile_cache
cache = compile_cache.enable()
import cmm_core as cc
t_import = time.perf_counter() - t0
data = cc.targets.make("eight_gaussians", n=4096, seed=0)
t = time.perf_counter()
fitted = cc.fit(sys.argv[1], data, steps=int(sys.argv[2]), seed=0)
t_fit = time.perf_counter() - t
t = time.perf_counter()
samples = fitted.sample(2000, seed=1)
t_sample = time.perf_counter() - t
print(json.dumps({"import_seconds": t_import, "fit_seconds": t_fit, "sample_seconds": t_sample,
                  "cache": str(cache) if cache else None, "status": fitted.info["status"],
                  "finite": bool((abs(samples) < float("inf")).all())}))
"""


def one_process(model: str, steps: int, cache_dir: str | None) -> dict:
  """Runs the fit in a new process; ``cache_dir`` None turns the cache off."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  env["CMM_CACHE_DIR"] = cache_dir or "off"
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  out = subprocess.run([sys.executable, "-c", CHILD, model, str(steps)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
  if out.returncode != 0:
    return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
  return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model: str, steps: int, no_cache: bool) -> dict:
  with tempfile.TemporaryDirectory(prefix="cmm_restart_") as folder:
    first = one_process(model, steps, folder)
    second = one_process(model, steps, folder)
    files = sum(1 for _ in pathlib.Path(folder).iterdir())
  row = {"model": model, "steps": steps, "first": first, "second": second, "cache_entries": files}
  if no_cache:
    row["second_without_cache"] = one_process(model, steps, None)
  if "error" not in first and "error" not in second:
    row["fit_speedup"] = first["fit_seconds"] / second["fit_seconds"]
    row["sample_speedup"] = first["sample_seconds"] / second["sample_seconds"]
  return row


def to_markdown(out: dict) -> str:
  lines = ["| model | first fit (s) | second fit (s) | first sampling (s) | second sampling (s) | "
           "fit speed-up |", "|---|---:|---:|---:|---:|---:|"]
  for r in out["results"]:
    a, b = r["first"], r["second"]
    if "error" in a or "error" in b:
      lines.append(f"| {r['model']} | {a.get('error', '')} | {b.get('error', '')} | | | |")
      continue
    lines.append(f"| {r['model']} | {a['fit_seconds']:.1f} | {b['fit_seconds']:.1f} | "
                 f"{a['sample_seconds']:.1f} | {b['sample_seconds']:.1f} | {r['fit_speedup']:.1f}x |")
  m = out["machine"]
  return (f"First and second fit in a new process ({out['config']['steps']} steps, eight_gaussians, "
          f"defaults; {m['cpu_count']} CPUs, jax {m['jax_version']}):\n\n" + "\n".join(lines) + "\n")


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--no-cache", action="store_true",
                      help="also run a second process with the cache off")
  parser.add_argument("--out")
  parser.add_argument("--markdown")
  args = parser.parse_args(argv)
  results = []
  for model in args.models:
    row = measure(model, args.steps, args.no_cache)
    print(f"[restart] {model}: {json.dumps(row)}", file=sys.stderr)
    results.append(row)
  out = {"machine": machine_info(), "config": {"steps": args.steps, "models": args.models},
         "results": results}
  write_outputs(out, args.out, args.markdown, to_markdown, "restart")
  if not args.out:
    print(json.dumps(out, indent=2))
  return out


if __name__ == "__main__":
  main()
