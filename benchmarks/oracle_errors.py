"""The convex-potential models against their exact answers; JSON to stdout (and --out).

With each model's default hyper-parameters and default steps, seed 0, 4096 training points:

- 2D Gaussian N(m, S), m = (1.5, -1), S = [[2, .9], [.9, 1]] (mm: the centred one): the relative
  Frobenius error of the base covariance of 8000 base samples against the closed form (cmm S^{1/3},
  mm S^{-1}, brenier I), the base-mean error in base standard deviations, the relative error of the
  sample covariance against S, and the held-out NLL against the true one (2000 fresh points).
- 1D bimodal ``mixture`` (cmm and mm, mm on the centred data): the mean absolute error between 49
  quantiles (2 %-98 %) of 20,000 base samples and the grid fixed-point oracle's
  (``closed_form.cmm_1d`` / ``mm_1d`` on the same sample), in units of the oracle's base std.

    python benchmarks/oracle_errors.py --out benchmarks/results/oracle_errors.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import cmm_core as cc

MEAN = np.array([1.5, -1.0])
COV = np.array([[2.0, 0.9], [0.9, 1.0]])


def _rel(a, b) -> float:
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def gaussian_errors(model: str, seed: int = 0) -> dict:
  mean = np.zeros(2) if model == "mm" else MEAN
  data = cc.targets.gaussian(mean, COV, n=4096, seed=seed)
  t0 = time.perf_counter()
  fitted = cc.fit(model, data, seed=seed)
  fit_s = time.perf_counter() - t0
  exact = {"cmm": lambda: cc.closed_form.gaussian_cmm(mean, COV),
           "mm": lambda: cc.closed_form.gaussian_mm(COV),
           "brenier": lambda: cc.closed_form.gaussian_brenier(mean, COV)}[model]()
  base = fitted.sample_base(8000, seed=1)
  base_cov, base_mean = np.atleast_2d(exact["base_cov"]), np.reshape(exact["base_mean"], -1)
  samples = fitted.sample(8000, seed=2)
  y = cc.targets.gaussian(mean, COV, n=2000, seed=7)
  d = y - mean
  true_nll = float(np.mean(0.5 * np.sum(d @ np.linalg.inv(COV) * d, 1))
                   + 0.5 * np.log(np.linalg.det(2 * np.pi * COV)))
  out = {"model": model, "target": "gaussian_2d", "steps": fitted.history[-1]["step"],
         "fit_seconds": round(fit_s, 1),
         "base_cov_rel_error": _rel(np.cov(base.T), base_cov),
         "sample_cov_rel_error": _rel(np.cov(samples.T), COV),
         "sample_mean_error_in_data_std": float(np.max(np.abs(samples.mean(0) - mean) / np.sqrt(np.diag(COV)))),
         "heldout_nll": float(-np.mean(fitted.log_prob(y))), "true_nll": true_nll}
  if model != "mm":  # the MM base is unique up to translation (it is centred at 0 here)
    out["base_mean_error_in_base_std"] = float(np.max(np.abs(base.mean(0) - base_mean)
                                                      / np.sqrt(np.diag(base_cov))))
  return out


def bimodal_errors(model: str, seed: int = 0) -> dict:
  data = cc.targets.make("mixture", n=4096, seed=seed)
  if model == "mm":
    data = data - data.mean(0)
  t0 = time.perf_counter()
  fitted = cc.fit(model, data, seed=seed)
  fit_s = time.perf_counter() - t0
  oracle = (cc.closed_form.cmm_1d(data[:, 0]) if model == "cmm"
            else cc.closed_form.mm_1d(data[:, 0], center=True))
  base = fitted.sample_base(20_000, seed=1)[:, 0]
  if model == "mm":
    base = base - base.mean()
  qs = np.linspace(0.02, 0.98, 49)
  err = float(np.mean(np.abs(np.quantile(base, qs) - oracle.base_quantile(qs))))
  return {"model": model, "target": "mixture_1d", "steps": fitted.history[-1]["step"],
          "fit_seconds": round(fit_s, 1), "base_quantile_mae": err,
          "oracle_base_std": float(oracle.base_std),
          "base_quantile_mae_in_base_std": err / float(oracle.base_std)}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  runs = [gaussian_errors(m) for m in ("cmm", "mm", "brenier")]
  runs += [bimodal_errors(m) for m in ("cmm", "mm")]
  text = json.dumps({"benchmark": "oracle_errors", "jax": __import__("jax").__version__, "runs": runs}, indent=2)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
