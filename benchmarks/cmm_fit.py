"""Time CMM to a fit on eight_gaussians and a 2D Gaussian; JSON to stdout (and --out).

Quality figure: energy distance between 2000 model samples and a fresh draw of the target,
next to the same figure for two fresh draws of the target (the noise floor).

    python benchmarks/cmm_fit.py --steps 2000 --out benchmarks/results/cmm_fit.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

import cmm_core as cc

TARGETS = {
    "eight_gaussians": lambda n, seed: cc.targets.make("eight_gaussians", n=n, seed=seed),
    "gaussian_2d": lambda n, seed: cc.targets.gaussian([1.5, -1.0], [[2.0, 0.9], [0.9, 1.0]], n=n, seed=seed),
}


def run_one(name: str, steps: int, seed: int) -> dict:
  make = TARGETS[name]
  data = make(4096, seed)
  fresh, fresh2 = make(2000, 1000 + seed), make(2000, 2000 + seed)
  trace = []

  def callback(step, record, fitted):
    trace.append((step, record["seconds"]))

  t0 = time.perf_counter()
  fitted = cc.fit("cmm", data, steps=steps, seed=seed, callback=callback, chunk_size=100)
  fit_s = time.perf_counter() - t0
  t1 = time.perf_counter()
  samples = fitted.sample(2000, seed=seed)
  sample_s = time.perf_counter() - t1
  # first chunk holds the compilation; steps/s from the later chunks
  later = [(s1 - s0) / (t1_ - t0_) for (s0, t0_), (s1, t1_) in zip(trace, trace[1:])]
  return {
      "target": name, "steps": steps, "seed": seed,
      "fit_seconds": fit_s, "first_chunk_seconds": trace[0][1] if trace else None,
      "steps_per_second": float(np.median(later)) if later else None,
      "sample_seconds_2000": sample_s,
      "energy_distance": cc.metrics.energy_distance(samples, fresh),
      "energy_distance_floor": cc.metrics.energy_distance(fresh2, fresh),
      "sinkhorn_divergence": cc.metrics.sinkhorn_divergence(samples, fresh),
      "sinkhorn_divergence_floor": cc.metrics.sinkhorn_divergence(fresh2, fresh),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=None, help="training steps (default: the model's)")
  p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
  p.add_argument("--seeds", type=int, default=1, help="runs per target (medians are reported)")
  p.add_argument("--out", default=None, help="write the JSON here too")
  args = p.parse_args(argv)
  steps = args.steps or cc.models.get("cmm").default_steps
  runs = [run_one(t, steps, s) for t in args.targets for s in range(args.seeds)]
  summary = {}
  for t in args.targets:
    rs = [r for r in runs if r["target"] == t]
    summary[t] = {k: float(np.median([r[k] for r in rs])) for k in
                  ("fit_seconds", "steps_per_second", "energy_distance", "energy_distance_floor",
                   "sinkhorn_divergence", "sinkhorn_divergence_floor")}
  out = {"benchmark": "cmm_fit", "machine": platform.platform(), "cpu_count": __import__("os").cpu_count(),
         "runs": runs, "median": summary}
  text = json.dumps(out, indent=2)
  print(text)
  if args.out:
    import pathlib
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
  main()
