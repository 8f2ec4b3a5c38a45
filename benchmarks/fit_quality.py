"""Time every model to a fit on the 2D toys; JSON to stdout (and --out).

Figures per (model, target): fit seconds (compilation included, as a user waits for it), steps/s
after the first chunk, the energy distance and the Sinkhorn divergence between 2000 model samples
and a fresh draw of the target, next to the same figures for two fresh draws (the noise floor),
the held-out NLL where the model has a density, and for eight_gaussians the fraction of samples
within two standard deviations of a mode centre and the smallest / largest mode weight (a ring
without modes scores about 0.55; the data about 0.87 with weights near 1/8).

    python benchmarks/fit_quality.py --models cmm brenier sdot maflow --targets eight_gaussians \\
        --out benchmarks/results/fit_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import cmm_core as cc

TARGETS = {
    "eight_gaussians": lambda n, seed: cc.targets.make("eight_gaussians", n=n, seed=seed),
    "two_moons": lambda n, seed: cc.targets.make("two_moons", n=n, seed=seed),
    "gaussian_2d": lambda n, seed: cc.targets.gaussian([1.5, -1.0], [[2.0, 0.9], [0.9, 1.0]], n=n, seed=seed),
}
EIGHT_CENTRES = 4 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1) / 1.414
EIGHT_STD = 0.5 / 1.414


def mode_figures(x: np.ndarray) -> dict:
  """eight_gaussians: fraction of ``x`` ``[n, 2]`` within 2 std of a centre, min/max mode weight."""
  d = np.linalg.norm(x[:, None] - EIGHT_CENTRES[None], axis=-1)
  near = d.min(1) < 2 * EIGHT_STD
  w = np.bincount(d.argmin(1)[near], minlength=8) / len(x)
  return {"in_mode_fraction": float(near.mean()), "min_mode_weight": float(w.min()),
          "max_mode_weight": float(w.max())}


def run_one(model: str, target: str, steps, seed: int) -> dict:
  make = TARGETS[target]
  data = make(4096, seed)
  fresh, fresh2 = make(2000, 1000 + seed), make(2000, 2000 + seed)
  trace = []

  def callback(step, record, fitted):
    trace.append((step, record["seconds"]))

  t0 = time.perf_counter()
  fitted = cc.fit(model, data, steps=steps, seed=seed, callback=callback, chunk_size=100)
  fit_s = time.perf_counter() - t0
  t1 = time.perf_counter()
  samples = fitted.sample(2000, seed=seed)
  sample_s = time.perf_counter() - t1
  later = [(s1 - s0) / (u1 - u0) for (s0, u0), (s1, u1) in zip(trace, trace[1:])]
  out = {
      "model": model, "target": target, "steps": fitted.info["steps_done"], "seed": seed,
      "fit_seconds": fit_s, "first_chunk_seconds": trace[0][1] if trace else None,
      "steps_per_second": float(np.median(later)) if later else None,
      "sample_seconds_2000": sample_s,
      "energy_distance": cc.metrics.energy_distance(samples, fresh),
      "energy_distance_floor": cc.metrics.energy_distance(fresh2, fresh),
      "sinkhorn_divergence": cc.metrics.sinkhorn_divergence(samples, fresh),
      "sinkhorn_divergence_floor": cc.metrics.sinkhorn_divergence(fresh2, fresh),
  }
  try:
    out["heldout_nll"] = float(-np.mean(fitted.log_prob(fresh)))
  except NotImplementedError:
    out["heldout_nll"] = None
  if target == "eight_gaussians":
    out.update(mode_figures(samples))
    out.update({f"data_{k}": v for k, v in mode_figures(fresh).items()})
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", nargs="+", default=["cmm"], choices=cc.models.names())
  p.add_argument("--targets", nargs="+", default=["eight_gaussians", "gaussian_2d"], choices=list(TARGETS))
  p.add_argument("--steps", type=int, default=None, help="training steps (default: each model's)")
  p.add_argument("--seeds", type=int, default=1, help="runs per pair (medians are reported)")
  p.add_argument("--out", default=None, help="write the JSON here too")
  args = p.parse_args(argv)
  runs = [run_one(m, t, args.steps, s) for m in args.models for t in args.targets for s in range(args.seeds)]
  median = {}
  for m in args.models:
    for t in args.targets:
      rs = [r for r in runs if r["model"] == m and r["target"] == t]
      keys = [k for k, v in rs[0].items() if isinstance(v, float)]
      median[f"{m}/{t}"] = {k: float(np.median([r[k] for r in rs])) for k in keys}
  out = {"benchmark": "fit_quality", "machine": platform.platform(), "cpu_count": os.cpu_count(),
         "runs": runs, "median": median}
  text = json.dumps(out, indent=2)
  print(text)
  if args.out:
    import pathlib
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
  main()
