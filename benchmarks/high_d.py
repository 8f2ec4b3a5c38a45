"""cmm (or mm, brenier) above 16-D: the guess's quadratic fixed, damped or trained, on Gaussian mixtures.

Above ``HIGH_DIM`` (16) cmm's ``"auto"`` settings have no affine pieces, so the ICNN's quadratic
carries the Gaussian guess. Kept fixed, ``w`` is the guess plus a convex part: its curvature is
nowhere below the guess's, and a mixture's clusters need flatter stretches between them. This script
fits cmm (its defaults but ``quadratic``) to a 5-component Gaussian mixture in d dimensions (weights
0.3 to 0.1, means N(0, 1.5^2 I), covariances ``0.5 A A^T / d + 0.1 I``, all from ``default_rng(123)``;
4000 training and 2000 held-out points) and reports per setting: the held-out NLL against the
mixture's own and a fitted Gaussian's, and the energy distance of 2000 samples to the held-out
points against a fitted Gaussian's 2000 samples'.

Each fit runs in a process of its own, ``--jobs`` at a time, each pinned to one core: the fit
seconds are those of a machine running ``--jobs`` fits (quality, not speed, is the point here).

    python benchmarks/high_d.py --out benchmarks/results/high_d.json --markdown /tmp/high_d.md
    python benchmarks/high_d.py --dims 24 --quadratic fixed damped --steps 200   # a quick look
    python benchmarks/high_d.py --model mm --dims 24 --quadratic fixed trained --out benchmarks/results/high_d_mm.json
    # at d = 10 (the dense path by default): the high-d settings forced, then the defaults
    python benchmarks/high_d.py --dims 10 --quadratic fixed damped --hyper '{"pieces": 0, "logdet": "hutchinson",
        "conjugate_solver": "newton_cg", "conjugate_iters": 1}' --out benchmarks/results/high_d_10_forced.json
    python benchmarks/high_d.py --dims 10 --quadratic default --out benchmarks/results/high_d_10_dense.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

from run import machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)
from digits import _gaussian_nll  # noqa: E402  (benchmarks/digits.py: a fitted Gaussian's held-out NLL)

WEIGHTS = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def mixture(d: int):
  """``(weights [K], means [K, d], covs [K, d, d])`` of the d-dimensional mixture."""
  rng = np.random.default_rng(123)
  means = rng.normal(0.0, 1.5, (len(WEIGHTS), d))
  covs = []
  for _ in WEIGHTS:
    a = rng.normal(size=(d, d))
    covs.append(0.5 * a @ a.T / d + 0.1 * np.eye(d))
  return WEIGHTS, means, np.stack(covs)


def draw(d: int, n: int, seed: int) -> np.ndarray:
  """``[n, d]`` points of the mixture."""
  w, means, covs = mixture(d)
  rng = np.random.default_rng(seed)
  comp = rng.choice(len(w), n, p=w)
  chol = np.linalg.cholesky(covs)
  return means[comp] + np.einsum("nij,nj->ni", chol[comp], rng.standard_normal((n, d)))


def mixture_nll(x: np.ndarray) -> float:
  """Mean negative log-density of ``x`` ``[n, d]`` under the mixture."""
  d = x.shape[1]
  w, means, covs = mixture(d)
  logs = []
  for wk, m, c in zip(w, means, covs):
    diff = x - m
    _, logdet = np.linalg.slogdet(2 * np.pi * c)
    logs.append(np.log(wk) - 0.5 * np.sum(diff @ np.linalg.inv(c) * diff, 1) - 0.5 * logdet)
  logs = np.stack(logs)
  top = logs.max(0)
  return float(-np.mean(top + np.log(np.exp(logs - top).sum(0))))


def gaussian_figures(train: np.ndarray, heldout: np.ndarray) -> dict:
  from cmm_core import metrics
  samples = np.random.default_rng(5).multivariate_normal(train.mean(0), np.cov(train.T), len(heldout))
  return {"nll": _gaussian_nll(train, heldout), "ed": float(metrics.energy_distance(samples, heldout))}


def run_one(d: int, quadratic: str, steps: int, seed: int, model: str = "cmm", hyper=None) -> dict:
  import cmm_core as cc
  from cmm_core import metrics
  train, heldout = draw(d, 4000, 0), draw(d, 2000, 1)
  t = time.perf_counter()
  hyper = dict(hyper or {})
  if quadratic != "default":
    hyper["quadratic"] = quadratic
  fitted = cc.fit(model, train, steps=steps, seed=seed, **hyper)
  fit_s = time.perf_counter() - t
  samples = np.asarray(fitted.sample(len(heldout), seed=1), np.float64)
  return {"model": model, "hyper": hyper, "d": d, "quadratic": quadratic, "steps": fitted.info["steps_done"], "seed": seed,
          "fit_seconds": fit_s, "auto": fitted.info.get("auto"),
          "nll": float(-np.mean(np.asarray(fitted.log_prob(heldout), np.float64))),
          "ed": float(metrics.energy_distance(samples, heldout)),
          "true_nll": mixture_nll(heldout), "gaussian": gaussian_figures(train, heldout)}


def _child(args, d: int, quadratic: str, cpu) -> dict:
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child",
         json.dumps({"d": d, "quadratic": quadratic, "steps": args.steps, "seed": args.seed,
                     "model": args.model, "hyper": args.hyper})]
  env = dict(os.environ)
  env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None and hasattr(os, "sched_setaffinity") else None
  print(f"[high_d] {args.model} d={d} quadratic={quadratic} ...", file=sys.stderr)
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec)
  if proc.returncode != 0:
    return {"model": args.model, "d": d, "quadratic": quadratic, "error": proc.stderr[-2000:]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(out: dict) -> str:
  lines = ["| model | d | quadratic | steps | fit s | held-out NLL | mixture's NLL | Gaussian's NLL | "
           "energy distance | Gaussian's |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in out["results"]:
    if "error" in r:
      lines.append(f"| {r.get('model', 'cmm')} | {r['d']} | {r['quadratic']} | error | | | | | | |")
      continue
    lines.append(f"| {r.get('model', 'cmm')} | {r['d']} | {r['quadratic']} | {r['steps']} | {r['fit_seconds']:.0f} | "
                 f"{r['nll']:.2f} | {r['true_nll']:.2f} | {r['gaussian']['nll']:.2f} | "
                 f"{r['ed']:.3f} | {r['gaussian']['ed']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--dims", type=int, nargs="+", default=[24, 64])
  ap.add_argument("--quadratic", nargs="+", default=["fixed", "damped", "trained"],
                  help='values of the quadratic setting, "default": the model\'s own')
  ap.add_argument("--model", default="cmm", choices=["cmm", "mm", "brenier"])
  ap.add_argument("--hyper", type=json.loads, default={},
                  help='JSON {name: value} for every fit, e.g. the high-d settings forced at d <= 16')
  ap.add_argument("--steps", type=int, default=1000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
  ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
  ap.add_argument("--out", default="benchmarks/results/high_d.json")
  ap.add_argument("--markdown", default=None)
  args = ap.parse_args(argv)
  if args.child:
    print(json.dumps(run_one(**json.loads(args.child))))
    return
  jobs = [(d, q) for d in args.dims for q in args.quadratic]
  start = [round(v, 2) for v in os.getloadavg()]
  free = queue.Queue()  # the cores not running a fit: each fit gets one to itself
  for cpu in range(args.jobs):
    free.put(cpu if args.jobs > 1 else None)

  def one(job):
    cpu = free.get()
    try:
      return _child(args, *job, cpu)
    finally:
      free.put(cpu)

  with ThreadPoolExecutor(max_workers=args.jobs) as pool:
    results = list(pool.map(one, jobs))
  out = {"machine": machine_info(), "config": {**vars(args), "load_average_start": start,
                                               "load_average_end": [round(v, 2) for v in os.getloadavg()]},
         "results": results}
  write_outputs(out, args.out, args.markdown, markdown, "high_d")
  print(markdown(out))


if __name__ == "__main__":
  main()
