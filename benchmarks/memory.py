"""Memory of fits in one process, as a Streamlit server holds them: the resident set size (RSS)
after importing the app's libraries, then after one default fit of each model on the app's default
target (eight_gaussians, 4096 points, seed 0), the fits kept alive as sessions keep them.

    python benchmarks/memory.py --out benchmarks/results/memory.json
    python benchmarks/memory.py --models maflow --steps 100

Prints JSON: ``{"machine", "baseline_mb", "fits": [{"model", "steps", "seconds", "rss_mb",
"delta_mb", "peak_mb"}], "peak_mb"}``; ``delta_mb`` is what the fit (its compiled programs, its
kept model, JAX's buffers) added to the process, ``peak_mb`` the high-water mark so far.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import time

import psutil

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _mb(x: float) -> float:
  return round(x / 2**20, 1)


def _peak() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="cmm,mm,brenier,maflow,sdot")
  p.add_argument("--steps", type=int, default=None, help="default: each model's default steps")
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  proc = psutil.Process()
  import streamlit  # noqa: F401  (the server's own imports)
  import cmm_core as cc
  data = cc.targets.make("eight_gaussians", 4096, seed=0)
  base = proc.memory_info().rss
  out = {"machine": {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]},
         "baseline_mb": _mb(base), "fits": []}
  kept, last = [], base
  for m in args.models.split(","):
    steps = args.steps or int(cc.models.get(m).default_steps)
    t0 = time.perf_counter()
    kept.append(cc.fit(m, data, steps=steps, seed=0))
    kept[-1].sample(1000, seed=0)  # the panels draw from it
    rss = proc.memory_info().rss
    out["fits"].append({"model": m, "steps": steps, "seconds": round(time.perf_counter() - t0, 1),
                        "rss_mb": _mb(rss), "delta_mb": _mb(rss - last), "peak_mb": _mb(_peak())})
    last = rss
    print(json.dumps(out["fits"][-1]), file=sys.stderr, flush=True)
  out["peak_mb"] = _mb(_peak())
  text = json.dumps(out, indent=1)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  print(text)
  return out


if __name__ == "__main__":
  main()
