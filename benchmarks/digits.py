"""The models on 64-dimensional data: the UCI digits (8x8 images, issue 19).

Each model is fitted with its default settings (the convex models' ``"auto"`` values resolve for
d = 64: Newton-CG conjugates, no affine pieces, the quadratic kept fixed, and for cmm the likelihood
with a Hutchinson/CG log-determinant gradient; see ``ConvexFixedPoint.resolve``) on
the 1438 training rows of ``cmm_core.target_spec.hold_out(load("digits"))`` for its default number
of steps or until ``--budget`` seconds, whichever comes first, in a process of its own (so the
compile time is its own). Reported per model:

- seconds per step (median over the timed chunks after the first, which holds the compilation),
  compile seconds (first chunk - median chunk), fit seconds (``cc.fit``, compile included);
- seconds to draw 1000 samples (first call, compile included, and a second call);
- held-out NLL of the 359 held-out rows (nats per image, and bits per dim = nll / (64 ln 2)) and
  the seconds it took;
- the energy distance of 1000 samples to the held-out rows (median over 3 draws: one draw varies by
  ~10%), against a Gaussian fitted to the training rows (1000 draws, ``default_rng(0..2)``) and
  1000 of the training rows (the floor; 3 subsets);
- what the samples look like: per-pixel mean and std against the held-out rows' (RMS gaps), the
  distance of each sample to its nearest training image against that of the held-out rows, the
  range of the pixel values, and four samples as 8x8 arrays of rounded values.

``--dims``: one training step of cmm, mm and brenier on the high-d path (the settings ``"auto"``
gives above d = 16, forced at every d) on a correlated Gaussian ``[4000, d]`` for d in 2..64:
median seconds per step over ``--timed-chunks`` chunks and the fitted exponent of time vs d.

    python benchmarks/digits.py --out benchmarks/results/digits.json --markdown /tmp/digits.md
    python benchmarks/digits.py --models cmm --budget 60 --hyper '{"cmm": {"learning_rate": 0.01}}'
    python benchmarks/digits.py --dims --models cmm mm brenier --out benchmarks/results/digits_dims.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

from run import machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)
from scaling import ChunkTimer  # noqa: E402  (benchmarks/scaling.py)

MODELS = ["cmm", "mm", "brenier", "maflow", "sdot"]
N_SAMPLES = 1000
N_SEEDS = 3       # energy distances: the median over this many draws of 1000 (one draw varies by ~10%)
DIMS = [2, 4, 8, 16, 32, 64]
# the settings "auto" resolves to above d = 16 (ConvexFixedPoint.resolve), forced for the d sweep
_HIGH = dict(pieces=0, conjugate_solver="newton_cg", quadratic="fixed")
HIGH_D_PATH = {"cmm": dict(_HIGH, objective="mle", logdet="hutchinson", conjugate_iters=1),
               "mm": dict(_HIGH, conjugate_iters=3), "brenier": dict(_HIGH, conjugate_iters=3)}


def digits_split():
  import cmm_core as cc
  from cmm_core import target_spec
  return target_spec.hold_out(cc.datasets.load("digits"))


INPAINT_ROWS = 200  # held-out digits whose bottom half each model completes (one completion each)


def digits_labels() -> tuple[np.ndarray, np.ndarray]:
  """The labels of :func:`digits_split`'s training and held-out rows (the same split)."""
  import cmm_core as cc
  from cmm_core import target_spec
  return target_spec.hold_out(cc.datasets.labels("digits"))


def bottom_half_mask(m: int) -> np.ndarray:
  """``[m, 64]``: True on the top four pixel rows (observed), False on the bottom four."""
  mask = np.zeros((m, 64), bool)
  mask[:, :32] = True
  return mask


def image_figures(samples: np.ndarray, train: np.ndarray, heldout: np.ndarray, inpaint_fn) -> dict:
  """The issue's image figures: c2st and NN ratio of ``samples`` ``[n, 64]`` (image_metrics), and
  the share of :data:`INPAINT_ROWS` held-out digits, bottom half hidden and completed by
  ``inpaint_fn(x [m, 64] with NaN, mask [m, 64]) -> [m, 64]``, that a digit classifier trained on
  the training rows reads as their label; with the seconds the completion took."""
  from cmm_core import image_metrics
  train_labels, heldout_labels = digits_labels()
  out = image_metrics.image_scores(samples, train, heldout, seed=0)
  clf = image_metrics.fit_classifier(train, train_labels, seed=0)
  x = heldout[:INPAINT_ROWS].copy()
  mask = bottom_half_mask(len(x))
  x[~mask] = np.nan
  t = time.perf_counter()
  try:
    done = inpaint_fn(x, mask)
  except NotImplementedError:
    return {**out, "inpaint_accuracy": None}
  out["inpaint_seconds"] = time.perf_counter() - t
  out["inpaint_accuracy"] = clf.accuracy(done, heldout_labels[:INPAINT_ROWS])
  out["classifier_heldout_accuracy"] = clf.accuracy(heldout, heldout_labels)
  return out


def knn_conditional_accuracy(train: np.ndarray, heldout: np.ndarray, ks=(1, 3, 5, 10, 20)) -> dict:
  """How well the data's own conditional reads, approximately: each of :data:`INPAINT_ROWS`
  held-out digits completed with the bottom half of one of the ``k`` training digits nearest by the
  top half (drawn at random, ``default_rng(0)``), read by the same classifier: ``{k: share}``."""
  from cmm_core import image_metrics
  train_labels, heldout_labels = digits_labels()
  clf = image_metrics.fit_classifier(train, train_labels, seed=0)
  x = heldout[:INPAINT_ROWS]
  d2 = ((x[:, None, :32] - train[None, :, :32]) ** 2).sum(-1)
  order = np.argsort(d2, 1)
  out = {}
  for k in ks:
    rng = np.random.default_rng(0)
    pick = order[np.arange(len(x)), rng.integers(0, k, len(x))]
    done = x.copy()
    done[:, 32:] = train[pick, 32:]
    out[str(k)] = clf.accuracy(done, heldout_labels[:INPAINT_ROWS])
  return out


def references(train: np.ndarray, heldout: np.ndarray, scores: bool = True) -> dict:
  """The energy distances a fit is read against: a fitted Gaussian's and the training rows'; with
  ``scores``, the Gaussian's image figures (its samples, its conditional for the inpainting)."""
  from cmm_core import metrics
  gauss = [np.random.default_rng(s).multivariate_normal(train.mean(0), np.cov(train.T), size=N_SAMPLES)
           for s in range(N_SEEDS)]
  floor = [train[np.random.default_rng(s).choice(len(train), N_SAMPLES, replace=False)]
           for s in range(N_SEEDS)]
  gauss_eds = [metrics.energy_distance(g, heldout) for g in gauss]
  floor_eds = [metrics.energy_distance(f, heldout) for f in floor]
  out = {"gaussian_ed": float(np.median(gauss_eds)), "gaussian_eds": gauss_eds,
         "floor_ed": float(np.median(floor_eds)), "floor_eds": floor_eds,
         "gaussian_nll": _gaussian_nll(train, heldout),
         "gaussian_looks": looks(gauss[0], train, heldout)}
  if scores:
    from cmm_core import image_metrics, inpaint
    mean, cov = image_metrics.gaussian_baseline(train)
    samples = image_metrics.gaussian_samples(mean, cov, 2 * N_SAMPLES, seed=0)
    out["gaussian_images"] = image_figures(
        samples, train, heldout, lambda x, mask: inpaint.gaussian_inpaint(mean, cov, x, mask, seed=0))
    out["knn_conditional_accuracy"] = knn_conditional_accuracy(train, heldout)
  return out


def _gaussian_nll(train, heldout) -> float:
  mean, cov = train.mean(0), np.cov(train.T)
  diff = heldout - mean
  _, logdet = np.linalg.slogdet(2 * np.pi * cov)
  return float(np.mean(0.5 * np.sum(diff @ np.linalg.inv(cov) * diff, 1) + 0.5 * logdet))


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Distance of each row of ``a`` to its nearest row of ``b``."""
  d2 = np.sum(a**2, 1)[:, None] - 2 * a @ b.T + np.sum(b**2, 1)[None]
  return np.sqrt(np.maximum(d2.min(1), 0.0))


def looks(samples: np.ndarray, train: np.ndarray, heldout: np.ndarray) -> dict:
  """Figures of what samples look like, against the held-out rows."""
  samples = np.asarray(samples, np.float64)
  return {"mean_rms_gap": float(np.sqrt(np.mean((samples.mean(0) - heldout.mean(0)) ** 2))),
          "std_rms_gap": float(np.sqrt(np.mean((samples.std(0) - heldout.std(0)) ** 2))),
          "nearest_train_median": float(np.median(_nearest(samples, train))),
          "heldout_nearest_train_median": float(np.median(_nearest(heldout, train))),
          "min": float(samples.min()), "max": float(samples.max()),
          "share_outside_0_17": float(np.mean((samples < -1) | (samples > 18))),
          "examples": [np.round(s).astype(int).reshape(8, 8).tolist() for s in samples[:4]]}


def run_model(model: str, budget: float, steps, hyper: dict, chunk_size: int, seed: int,
              scores: bool = True, dequantize: bool = True, inpaint_steps=None) -> dict:
  import cmm_core as cc
  from cmm_core import metrics
  train, heldout = digits_split()
  timer = ChunkTimer()

  import os
  load_start = [round(v, 2) for v in os.getloadavg()]
  t0 = time.perf_counter()
  # as the app fits the digits: their dequantisation noise redrawn at every step
  fitted = cc.fit(model, train, steps=steps, seed=seed, max_seconds=budget, chunk_size=chunk_size,
                  callback=timer, dequantize=dequantize, **hyper)
  fit_s = time.perf_counter() - t0
  per_step = [c / n for c, n in zip(timer.chunks, timer.sizes)]
  sps = float(np.median(per_step)) if per_step else None
  out = {"model": model, "hyper": hyper, "dequantize": dequantize, "config": {k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in fitted.config.items()},
         "auto": fitted.info.get("auto"), "status": fitted.info.get("status"),
         "steps_done": fitted.info.get("steps_done"), "fit_seconds": fit_s,
         "seconds_per_step": sps, "chunk_size": chunk_size,
         "compile_seconds": timer.first - chunk_size * sps if sps and timer.first else None,
         "last_record": fitted.history[-1] if fitted.history else None}
  t = time.perf_counter()
  samples = np.asarray(fitted.sample(N_SAMPLES, seed=1), np.float64)
  out["sample_seconds_first"] = time.perf_counter() - t
  t = time.perf_counter()
  draws = [samples, np.asarray(fitted.sample(N_SAMPLES, seed=2), np.float64)]
  out["sample_seconds"] = time.perf_counter() - t  # compiled: what a second draw costs
  draws += [np.asarray(fitted.sample(N_SAMPLES, seed=s), np.float64) for s in range(3, N_SEEDS + 1)]
  t = time.perf_counter()
  fitted.sample(32, seed=3)
  out["sample_32_seconds"] = time.perf_counter() - t
  finite = np.all(np.isfinite(samples), 1)
  out["n_nonfinite"] = int((~finite).sum())
  good = samples[finite]
  eds = []
  for draw in draws:
    draw = draw[np.all(np.isfinite(draw), 1)]
    eds.append(metrics.energy_distance(draw, heldout) if len(draw) > 1 else None)
  out["eds"] = eds
  out["ed"] = float(np.median([e for e in eds if e is not None])) if any(e is not None for e in eds) else None
  out["looks"] = looks(good, train, heldout) if len(good) > 1 else None
  try:
    t = time.perf_counter()
    lp = np.asarray(fitted.log_prob(heldout), np.float64)
    out["nll_seconds"] = time.perf_counter() - t
    out["nll"] = float(-np.mean(lp)) if np.all(np.isfinite(lp)) else None
    out["nll_nonfinite"] = int((~np.isfinite(lp)).sum())
    out["bits_per_dim"] = out["nll"] / (64 * math.log(2)) if out["nll"] is not None else None
  except NotImplementedError:
    out["nll"] = None
  if scores and len(good) > 1:
    two = np.concatenate([samples, draws[1]])
    two = two[np.all(np.isfinite(two), 1)]
    out["images"] = image_figures(two, train, heldout,
                                  lambda x, mask: fitted.inpaint(x, mask, seed=0, steps=inpaint_steps))
    from cmm_core import inpaint
    out["images"]["inpaint_steps"] = inpaint_steps or inpaint.DEFAULT_STEPS
  out["load_average"] = {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]}
  return out


def time_dims(model: str, dims, chunk_size: int, timed_chunks: int) -> list[dict]:
  import cmm_core as cc
  from scaling import make_data  # benchmarks/scaling.py: a correlated Gaussian [n, d]
  rows = []
  for d in dims:
    data = make_data(4000, d)
    timer = ChunkTimer()
    cc.fit(model, data, steps=chunk_size * (1 + timed_chunks), seed=0, chunk_size=chunk_size,
           callback=timer, **HIGH_D_PATH[model])
    sps = float(np.median(timer.chunks)) / chunk_size
    rows.append({"model": model, "d": d, "seconds_per_step": sps,
                 "min_seconds_per_step": min(timer.chunks) / chunk_size,
                 "compile_seconds": timer.first - chunk_size * sps})
    print(json.dumps(rows[-1]), flush=True)
  ds = np.array([r["d"] for r in rows if r["d"] >= 8], float)
  ts = np.array([r["seconds_per_step"] for r in rows if r["d"] >= 8], float)
  slope = float(np.polyfit(np.log(ds), np.log(ts), 1)[0]) if len(ds) >= 2 else None
  for r in rows:
    r["exponent_d8_to_64"] = slope
  return rows


def _child(args, model) -> dict:
  cmd = [sys.executable, __file__, "--child", model, "--budget", str(args.budget),
         "--chunk-size", str(args.chunk_size), "--seed", str(args.seed),
         "--hyper", json.dumps(args.hyper)] + (["--no-scores"] if args.no_scores else []) + (
             ["--fixed-noise"] if args.fixed_noise else [])
  if args.steps:
    cmd += ["--steps", str(args.steps)]
  if args.inpaint_steps:
    cmd += ["--inpaint-steps", str(args.inpaint_steps)]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    return {"model": model, "error": proc.stderr[-3000:]}
  return json.loads(lines[-1][len("RESULT "):])


def _image_cells(v) -> str:
  if not v:
    return "- | - | - |"
  acc = v.get("inpaint_accuracy")
  return (f"{v['c2st']:.3f} | {v['nn_ratio']:.2f} | "
          + ("-" if acc is None else f"{acc:.0%} ({v['inpaint_seconds']:.0f} s)") + " |")


def markdown(out: dict) -> str:
  ref = out.get("references", {})
  lines = [f"Machine: {out['machine']['platform']}, {out['machine']['cpus_usable']} CPUs, "
           f"jax {out['machine']['jax_version']}; load average at start {out['load_average']}.", ""]
  if out.get("runs"):
    lines += [f"Budget {out['config']['budget']} s per fit (compile included), 1000 samples, "
              f"359 held-out rows. Gaussian fitted to the training rows: ED "
              f"{ref.get('gaussian_ed', float('nan')):.4f}, NLL {ref.get('gaussian_nll', float('nan')):.1f}; "
              f"floor (1000 training rows): ED {ref.get('floor_ed', float('nan')):.4f}.", "",
              "| model | steps | s/step | compile s | fit s | 1000 samples s | NLL (nats) | bits/dim "
              "| NLL s | ED | mean / std RMS gap | c2st | NN ratio | inpainting read right |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
      if "error" in r:
        lines.append(f"| {r['model']} | failed | | | | | | | | | | | | |")
        continue
      f = lambda v, spec="{:.3g}": "-" if v is None else spec.format(v)
      lk = r.get("looks") or {}
      lines.append(
          f"| {r['model']} | {r['steps_done']} | {f(r['seconds_per_step'])} | "
          f"{f(r['compile_seconds'], '{:.0f}')} | {f(r['fit_seconds'], '{:.0f}')} | "
          f"{f(r['sample_seconds_first'], '{:.1f}')} ({f(r['sample_seconds'], '{:.1f}')}) | "
          f"{f(r.get('nll'), '{:.1f}')} | {f(r.get('bits_per_dim'), '{:.3f}')} | "
          f"{f(r.get('nll_seconds'), '{:.1f}')} | {f(r['ed'], '{:.4f}')} | "
          f"{f(lk.get('mean_rms_gap'), '{:.2f}')} / {f(lk.get('std_rms_gap'), '{:.2f}')} | "
          + _image_cells(r.get("images")))
    g = ref.get("gaussian_images")
    if g:
      lines.append("| fitted Gaussian (its conditional for inpainting) | | | | | | | | | | | "
                   + _image_cells(g))
    knn = ref.get("knn_conditional_accuracy")
    if knn:
      lines += ["", "The data's own conditional, approximately (bottom half of one of the k training "
                "digits nearest by the top half): " + ", ".join(f"k = {k}: {v:.0%}" for k, v in knn.items())
                + "."]
  if out.get("dims"):
    lines += ["", "| model | " + " | ".join(f"d={d}" for d in out["config"]["dim_list"])
              + " | exponent (d 8-64) |", "|---" * (len(out["config"]["dim_list"]) + 2) + "|"]
    for model in dict.fromkeys(r["model"] for r in out["dims"]):
      rows = [r for r in out["dims"] if r["model"] == model]
      lines.append(f"| {model} | " + " | ".join(f"{1e3 * r['seconds_per_step']:.0f} ms" for r in rows)
                   + f" | {rows[0]['exponent_d8_to_64']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--models", nargs="+", default=MODELS)
  ap.add_argument("--budget", type=float, default=270.0, help="seconds per fit (cc.fit max_seconds)")
  ap.add_argument("--steps", type=int, default=None, help="steps (default: the model's default)")
  ap.add_argument("--chunk-size", type=int, default=25)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--hyper", type=json.loads, default={}, help='JSON {"model": {name: value}}')
  ap.add_argument("--dims", action="store_true", help="the per-d timing of the high-d path instead")
  ap.add_argument("--dim-list", type=int, nargs="+", default=DIMS)
  ap.add_argument("--timed-chunks", type=int, default=3)
  ap.add_argument("--no-scores", action="store_true",
                  help="skip the image figures (c2st, NN ratio, inpainting accuracy)")
  ap.add_argument("--fixed-noise", action="store_true",
                  help="train on the one dequantisation draw (default: redrawn every step, as the app)")
  ap.add_argument("--inpaint-steps", type=int, default=None,
                  help="MALA transitions per completed digit (default: inpaint.DEFAULT_STEPS)")
  ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
  ap.add_argument("--out", default=None)
  ap.add_argument("--markdown", default=None)
  args = ap.parse_args(argv)
  if args.child:
    r = run_model(args.child, args.budget, args.steps, args.hyper.get(args.child, {}),
                  args.chunk_size, args.seed, scores=not args.no_scores,
                  dequantize=not args.fixed_noise, inpaint_steps=args.inpaint_steps)
    print("RESULT " + json.dumps(r), flush=True)
    return
  import os
  out = {"machine": machine_info(), "load_average": [round(v, 2) for v in os.getloadavg()],
         "config": {k: v for k, v in vars(args).items() if k not in ("out", "markdown", "child")}}
  if args.dims:
    out["dims"] = [r for m in args.models for r in time_dims(m, args.dim_list, 10, args.timed_chunks)]
  else:
    train, heldout = digits_split()
    out["references"] = references(train, heldout, scores=not args.no_scores)
    print(json.dumps({k: v for k, v in out["references"].items() if k != "gaussian_looks"}), flush=True)
    out["runs"] = []
    for m in args.models:
      r = _child(args, m)
      out["runs"].append(r)
      print(json.dumps({k: v for k, v in r.items() if k not in ("looks", "config")}), flush=True)
      if r.get("looks"):
        for ex in r["looks"]["examples"][:2]:
          print("\n".join(" ".join(f"{v:3d}" for v in row) for row in ex), "\n", flush=True)
      # after each model: a run cut short (a device call's deadline) keeps the models it finished
      write_outputs(out, args.out, args.markdown, markdown, "digits")
  out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
  write_outputs(out, args.out, args.markdown, markdown, "digits")


if __name__ == "__main__":
  main()
