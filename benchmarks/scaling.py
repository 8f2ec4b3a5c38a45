"""Time per training step of each model as a function of the data size n and the dimension d.

Each point fits a model with its default hyper-parameters (default batch sizes) on a correlated
Gaussian ``[n, d]`` (random covariance, fixed seed) for ``1 + --timed-chunks`` chunks of
``--chunk-size`` steps. The first chunk holds the compilation; the time per step is the median
later chunk time / chunk size (chunk time = from one callback's exit to the next one's entry,
including the loop's NaN check and ``finalize``, as in a real fit). compile s = first chunk -
median later chunk. Two sweeps: n in ``--ns`` at d = ``--d-fixed``, and d in ``--ds`` at
n = ``--n-fixed`` (``--full-grid``: every (n, d) pair). A model's remaining (larger) points of a
sweep are skipped once one of its steps takes longer than ``--max-step-seconds`` or a point fails.
Everything runs in this process, in order; JSON (``--out``) and a markdown table (``--markdown``).

    python benchmarks/scaling.py --out benchmarks/results/scaling.json --markdown docs/scaling.md
    python benchmarks/scaling.py --quick --models maflow      # seconds: a check, not a measurement
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

from run import MODELS, machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)

FULL = dict(ns=[1000, 4000, 16000, 64000], ds=[2, 4, 8, 16, 32, 64], n_fixed=4000, d_fixed=2,
            chunk_size=10, timed_chunks=3, max_step_seconds=5.0)
QUICK = dict(ns=[256, 1024], ds=[2, 4], n_fixed=256, d_fixed=2, chunk_size=5, timed_chunks=2,
             max_step_seconds=2.0)


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
  """A correlated Gaussian ``[n, d]``: covariance ``A A^T / d + 0.5 I`` (A seeded by d)."""
  import cmm_core as cc
  rng = np.random.default_rng(1000 + d)
  a = rng.standard_normal((d, d))
  return cc.targets.gaussian(rng.standard_normal(d), a @ a.T / d + 0.5 * np.eye(d), n=n, seed=seed)


class ChunkTimer:
  """A fit callback that times the chunks between callbacks: ``first`` is the first chunk's
  reported seconds (compilation included), ``chunks`` the seconds of each later chunk and
  ``sizes`` its number of steps (the callback's own time is left out)."""

  def __init__(self):
    self.first, self.chunks, self.sizes = None, [], []
    self._last_exit, self._step = None, 0

  def __call__(self, step, record, fitted):
    entry = time.perf_counter()
    if self._last_exit is None:
      self.first = record["seconds"]
    else:
      self.chunks.append(entry - self._last_exit)
      self.sizes.append(step - self._step)
    self._step = step
    self._last_exit = time.perf_counter()


def time_point(model: str, n: int, d: int, chunk_size: int, timed_chunks: int) -> dict:
  import cmm_core as cc
  data = make_data(n, d)
  st = ChunkTimer()
  t0 = time.perf_counter()
  fitted = cc.fit(model, data, steps=chunk_size * (1 + timed_chunks), seed=0, callback=st,
                  chunk_size=chunk_size)
  wall = time.perf_counter() - t0
  steady = float(np.median(st.chunks)) if st.chunks else None
  return {"model": model, "n": n, "d": d, "n_used": int(fitted.info.get("n_data", n)),
          "status": fitted.info.get("status"), "chunk_size": chunk_size, "timed_chunks": len(st.chunks),
          "seconds_per_step": steady / chunk_size if steady else None,
          # the least-disturbed chunk: on a shared machine the median carries the other jobs' load
          "min_seconds_per_step": min(st.chunks) / chunk_size if st.chunks else None,
          "chunk_times": [float(c) for c in st.chunks],
          "steps_per_second": chunk_size / steady if steady else None,
          "first_chunk_seconds": st.first,
          "compile_seconds": (st.first - steady) if steady and st.first is not None else None,
          "wall_seconds": wall}


EXPONENT_MIN_D = 32  # every model's "auto" settings have switched to their high-d path


def fitted_exponent(pairs) -> "tuple[float, int, int] | None":
  """``(slope, d_lo, d_hi)`` of ``log t`` against ``log d`` over the pairs ``(d, t)`` with
  ``d >= EXPONENT_MIN_D`` and a time; None with fewer than two such points."""
  pts = [(d, t) for d, t in pairs if d >= EXPONENT_MIN_D and t]
  if len(pts) < 2:
    return None
  ds, ts = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
  return float(np.polyfit(np.log(ds), np.log(ts), 1)[0]), int(ds.min()), int(ds.max())


def points(args) -> list[tuple[str, int, int]]:
  """(sweep, n, d) in order; a point in both sweeps is listed (and timed) once, in the n sweep."""
  if args.full_grid:
    return [("grid", n, d) for d in args.ds for n in args.ns]
  pts = [("n", n, args.d_fixed) for n in args.ns]
  pts += [("d", args.n_fixed, d) for d in args.ds if (args.n_fixed, d) not in {(n, dd) for _, n, dd in pts}]
  return pts


def markdown(out: dict) -> str:
  mi, cfg = out["machine"], out["config"]
  lines = ["# Time per training step", "",
           "Generated by `benchmarks/scaling.py` (method in its docstring); command:", "",
           "```", out["command"], "```", "",
           f"Machine: {mi['platform']}, {mi['cpu_count']} CPUs ({mi['cpus_usable']} usable), jax "
           f"{mi['jax_version']} on {mi['jax_backend']} ({', '.join(mi['jax_devices'])}). Default "
           f"hyper-parameters and batch sizes; milliseconds per step (median of {cfg['timed_chunks']} "
           f"chunks of {cfg['chunk_size']} steps after the compiling one), compile seconds in "
           "brackets; '-' = skipped or failed. "
           f"{'**Quick settings: a smoke check, not a measurement.**' if cfg['quick'] else ''}", ""]
  res = out["results"]

  def cell(r):
    if r is None or r.get("seconds_per_step") is None:
      return "-"
    c = r.get("compile_seconds")
    return f"{1000 * r['seconds_per_step']:.3g}" + (f" ({c:.0f})" if c is not None else "")

  def table(title, key_vals, pick, exponent=False):
    head = "| model | " + " | ".join(str(v) for v in key_vals) + (" | exponent |" if exponent else " |")
    lines.extend([f"## {title}", "", head, "|---|" + "---|" * (len(key_vals) + exponent)])
    for m in cfg["models"]:
      row = f"| {m} | " + " | ".join(cell(pick(m, v)) for v in key_vals) + " |"
      if exponent:
        fit = fitted_exponent([(v, (pick(m, v) or {}).get("seconds_per_step")) for v in key_vals])
        row += " - |" if fit is None else f" {fit[0]:.2f} (d {fit[1]}-{fit[2]}) |"
      lines.append(row)
    lines.append("")

  def find(m, n, d):
    return next((r for r in res if r["model"] == m and r["n"] == n and r["d"] == d), None)

  if cfg["full_grid"]:
    for d in cfg["ds"]:
      table(f"d = {d}: ms per step by n", cfg["ns"], lambda m, n, d=d: find(m, n, d))
  else:
    table(f"By data size n (d = {cfg['d_fixed']})", cfg["ns"], lambda m, n: find(m, n, cfg["d_fixed"]))
    table(f"By dimension d (n = {cfg['n_fixed']})", cfg["ds"], lambda m, d: find(m, cfg["n_fixed"], d),
          exponent=True)
    lines.append(f"exponent: the slope of log(time per step) against log(d) by least squares over the "
                 f"measured d >= {EXPONENT_MIN_D} (where every model runs its high-d 'auto' settings; "
                 "below, the 2D-tuned dense paths and fixed costs).")
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
  p.add_argument("--ns", nargs="+", type=int, default=None, help="data sizes (default 1000 4000 16000 64000)")
  p.add_argument("--ds", nargs="+", type=int, default=None, help="dimensions (default 2 4 8 16 32 64)")
  p.add_argument("--n-fixed", type=int, default=None, help="n of the d sweep (default 4000)")
  p.add_argument("--d-fixed", type=int, default=None, help="d of the n sweep (default 2)")
  p.add_argument("--full-grid", action="store_true", help="every (n, d) pair instead of two sweeps")
  p.add_argument("--chunk-size", type=int, default=None, help="steps per chunk (default 10)")
  p.add_argument("--timed-chunks", type=int, default=None, help="chunks timed after the first (default 3)")
  p.add_argument("--max-step-seconds", type=float, default=None,
                 help="skip a model's larger points once a step takes longer (default 5)")
  p.add_argument("--quick", action="store_true", help="tiny sizes: a check, not a measurement")
  p.add_argument("--out", default=None, help="JSON (default benchmarks/results/scaling.json; quick scaling_quick.json)")
  p.add_argument("--markdown", nargs="?", const="docs/scaling.md", default=None,
                 help="write a markdown table here (docs/scaling.md when given without a path)")
  args = p.parse_args(argv)
  for k, v in (QUICK if args.quick else FULL).items():
    if getattr(args, k, None) is None:
      setattr(args, k, v)

  def snapshot() -> dict:
    return {"benchmark": "scaling",
            "command": " ".join(["python", "benchmarks/scaling.py"] + list(sys.argv[1:] if argv is None else argv)),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(),
            "config": {"models": args.models, "ns": args.ns, "ds": args.ds, "n_fixed": args.n_fixed,
                       "d_fixed": args.d_fixed, "full_grid": args.full_grid, "chunk_size": args.chunk_size,
                       "timed_chunks": args.timed_chunks, "max_step_seconds": args.max_step_seconds,
                       "quick": args.quick},
            "results": results}
  out_path = pathlib.Path(args.out or ("benchmarks/results/scaling_quick.json" if args.quick
                                       else "benchmarks/results/scaling.json"))
  results = []
  for m in args.models:
    too_slow = set()  # sweeps where this model stopped
    for sweep, n, d in points(args):
      if sweep in too_slow:
        results.append({"model": m, "n": n, "d": d, "sweep": sweep, "skipped": "a smaller point was too slow or failed"})
        continue
      print(f"[scaling] {m} n={n} d={d} ...", file=sys.stderr, flush=True)
      try:
        r = time_point(m, n, d, args.chunk_size, args.timed_chunks)
      except Exception as e:  # noqa: BLE001 - e.g. out of memory: record it and go on
        r = {"model": m, "n": n, "d": d, "error": f"{type(e).__name__}: {e}"[:500]}
      r["sweep"] = sweep
      results.append(r)
      sps = r.get("seconds_per_step")
      print(f"[scaling]   {'-' if sps is None else f'{1000 * sps:.3g} ms/step'}"
            f"{'  ' + r['error'] if 'error' in r else ''}", file=sys.stderr, flush=True)
      if sps is None or sps > args.max_step_seconds:
        too_slow.add(sweep)
      # after each point: a run cut short (a device call's deadline) keeps the points it timed
      write_outputs(snapshot(), out_path, args.markdown, markdown, "scaling")
  out = snapshot()
  write_outputs(out, out_path, args.markdown, markdown, "scaling")
  return out


if __name__ == "__main__":
  main()
