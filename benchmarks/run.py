"""Speed to a good fit: time for each model to reach a fixed sample quality; JSON + markdown.

For each (model, target, repeat) a fresh subprocess (``run.py --one MODEL TARGET SEED``) fits the
model with its default hyper-parameters and ``steps = models.get(model).default_steps`` on ``--n``
training points, stopping once the training clock passes ``--max-seconds``.

Training clock: seconds since ``cc.fit`` was called (data preparation, ``init`` and compilation
included: what a user waits for) minus the time spent in the benchmark's callback (evaluation).

Quality: the energy distance (``cmm_core.metrics.energy_distance``, V-statistic) between
``fitted.sample(EVAL_N)`` and a fresh draw of EVAL_N target points. Its noise floor ``floor`` is the
mean energy distance between two fresh target draws of EVAL_N points (mean of ``FLOOR_PAIRS`` pairs,
fixed seeds, so every model and repeat of a target shares it). Two independent EVAL_N-samples give
in expectation ``E|X - X'| * 2 / EVAL_N``; a model at population distance D measures about
``D + floor``. The quality level is

    level = LEVEL_FACTOR * floor      (LEVEL_FACTOR = 3: the model's excess over the floor <= 2 floors)

and ``time_to_level`` is the training clock at the first evaluation with ``ED <= level`` (None if
never; ``best_ed`` is then the best value reached). Times to the looser levels 5 and 10 x floor are
reported too. Evaluation runs after a chunk once at least ``--eval-every`` seconds of training
clock have passed since the previous one (so at most every ~2 s, or every chunk if chunks are
longer), and always at the last chunk: a time to a level is therefore late by at most one
evaluation interval. A run stops at the level unless ``--no-stop-at-level``; it never stops
(level or time) before 3 chunks, so that the speed figures exist.

Stopping: the callback returns ``False`` (``cmm_core.train.run`` then keeps the last parameters,
status "stopped"); the library's own ``max_seconds`` is not used since it counts evaluation time.

Speed: steps/s is the median over full chunks after the first (chunk time = callback exit to next
callback entry); compile seconds = first chunk time - median later chunk time (plus jax's own
backend-compile seconds for the training chunk, from ``jax.monitoring``). Memory: the subprocess's
``ru_maxrss`` and, on GPU, the device's ``memory_stats()["peak_bytes_in_use"]``.

    python benchmarks/run.py --models maflow sdot --targets eight_gaussians --repeats 3 \\
        --out benchmarks/results/run.json --markdown docs/speed.md
    python benchmarks/run.py --quick --models maflow --targets gaussian_2d   # ~1 min check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

MODELS = ["cmm", "mm", "brenier", "maflow", "sdot"]
TARGETS = ["bimodal_1d", "eight_gaussians", "two_moons", "checkerboard", "gaussian_2d", "gaussian_10d"]
LEVEL_FACTOR = 3.0
EXTRA_FACTORS = (5.0, 10.0)
FLOOR_PAIRS = 5
MIN_CHUNKS = 3
RESULT_PREFIX = "RUN_RESULT_JSON "

FULL = dict(max_seconds=120.0, repeats=3, n=4096, eval_n=2000, eval_every=2.0, floor_pairs=FLOOR_PAIRS,
            chunk_size=50)
QUICK = dict(max_seconds=10.0, repeats=1, n=1024, eval_n=500, eval_every=1.0, floor_pairs=2,
             chunk_size=50)


def _gaussian_10d_params():
  rng = np.random.default_rng(12345)  # fixed: the target is the same for every seed
  a = rng.standard_normal((10, 10))
  cov = a @ a.T / 10 + 0.1 * np.eye(10)
  return rng.standard_normal(10), cov


def make_target(name: str, n: int, seed: int) -> np.ndarray:
  """``n`` points ``[n, d]`` of the benchmark target ``name`` (float32)."""
  import cmm_core as cc
  if name == "bimodal_1d":  # 0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.5^2)
    return cc.targets.make("mixture", n=n, seed=seed, separation=1.0, std=0.5, weight=0.3)
  if name in ("eight_gaussians", "two_moons", "checkerboard"):
    return cc.targets.make(name, n=n, seed=seed)
  if name == "gaussian_2d":
    return cc.targets.gaussian([1.5, -1.0], [[2.0, 0.9], [0.9, 1.0]], n=n, seed=seed)
  if name == "gaussian_10d":
    mean, cov = _gaussian_10d_params()
    return cc.targets.gaussian(mean, cov, n=n, seed=seed)
  raise ValueError(f"unknown target {name!r}; choose from {TARGETS}")


def noise_floor(target: str, eval_n: int, pairs: int) -> float:
  """Mean energy distance between two fresh ``eval_n``-draws of ``target`` (fixed seeds)."""
  import cmm_core as cc
  vals = [cc.metrics.energy_distance(make_target(target, eval_n, 900_001 + 2 * i),
                                     make_target(target, eval_n, 900_002 + 2 * i)) for i in range(pairs)]
  return float(np.mean(vals))


def device_peak_bytes():
  import jax
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # noqa: BLE001 - backends without memory stats
    return None
  if not stats:
    return None
  return int(stats.get("peak_bytes_in_use", 0)) or None


def machine_info() -> dict:
  import jax
  import jaxlib
  devs = jax.devices()
  try:
    cpus_usable = len(os.sched_getaffinity(0))
  except AttributeError:
    cpus_usable = os.cpu_count()
  return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
          "python": platform.python_version(), "cpu_count": os.cpu_count(), "cpus_usable": cpus_usable,
          "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
          "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in devs],
          "device_kind": devs[0].device_kind if devs else None}


# ----------------------------------------------------------------------------
# One run (in its own process).
# ----------------------------------------------------------------------------


def run_one(model: str, target: str, seed: int, *, max_seconds: float, n: int, eval_n: int,
            eval_every: float, floor_pairs: int, chunk_size: int, level_factor: float = LEVEL_FACTOR,
            stop_at_level: bool = True) -> dict:
  import jax
  import cmm_core as cc

  compile_s = {"run_chunk": 0.0, "run_chunk_count": 0}

  def on_duration(event, duration, **kw):
    if event.endswith("backend_compile_duration") and kw.get("fun_name") in ("run_chunk", "jit(run_chunk)"):
      compile_s["run_chunk"] += duration
      compile_s["run_chunk_count"] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  steps = cc.models.get(model).default_steps
  data = make_target(target, n, seed)
  floor = noise_floor(target, eval_n, floor_pairs)
  level = level_factor * floor
  factors = (level_factor,) + tuple(f for f in EXTRA_FACTORS if f != level_factor)
  reached = {f: None for f in factors}
  st = {"overhead": 0.0, "last_exit": None, "last_eval_clock": -math.inf, "n_eval": 0,
        "chunk1": None, "first_clock": None, "chunks": [], "evals": [], "best": math.inf, "stop": None, "clock": 0.0}

  def evaluate(fitted, clock, step):
    k = st["n_eval"]
    st["n_eval"] += 1
    t = time.perf_counter()
    try:
      samples = fitted.sample(eval_n, seed=(seed * 7919 + k) % (2**31))
      fresh = make_target(target, eval_n, 500_000 + 1000 * seed + k)
      ed = cc.metrics.energy_distance(samples, fresh)
      if not math.isfinite(ed):
        ed = math.inf
      err = None
    except Exception as e:  # noqa: BLE001 - a failed evaluation is a result, not a crash
      ed, err = math.inf, f"{type(e).__name__}: {e}"
    st["evals"].append({"step": step, "clock": clock, "ed": ed if math.isfinite(ed) else None,
                        "eval_seconds": time.perf_counter() - t, **({"error": err} if err else {})})
    st["best"] = min(st["best"], ed)
    for f in factors:
      if reached[f] is None and ed <= f * floor:
        reached[f] = clock
    st["last_eval_clock"] = clock

  def callback(step, record, fitted):
    entry = time.perf_counter()
    clock = entry - t_start - st["overhead"]
    if st["last_exit"] is None:
      st["chunk1"], st["first_clock"] = record["seconds"], clock
    else:
      st["chunks"].append((entry - st["last_exit"], record["step"] - prev_step[0]))
    prev_step[0] = record["step"]
    n_chunks = len(st["chunks"]) + 1
    out_of_time = clock >= max_seconds and n_chunks >= MIN_CHUNKS
    last = step >= steps or out_of_time
    if last or clock - st["last_eval_clock"] >= eval_every:
      evaluate(fitted, clock, step)
    st["clock"] = clock
    stop = None
    if out_of_time and step < steps:
      stop = "max_seconds"
    elif stop_at_level and step < steps and reached[level_factor] is not None and n_chunks >= MIN_CHUNKS:
      stop = "level_reached"
    st["stop"] = stop
    exit_ = time.perf_counter()
    st["overhead"] += exit_ - entry
    st["last_exit"] = exit_
    if stop is not None and step < steps:
      return False
    return None

  prev_step = [0]
  t_start = time.perf_counter()
  fitted = cc.fit(model, data, steps=steps, seed=seed, callback=callback, chunk_size=chunk_size)
  wall = time.perf_counter() - t_start
  full = [(dt, s) for dt, s in st["chunks"] if s == min(chunk_size, steps)]
  steady = float(np.median([dt for dt, _ in full])) if full else None
  sps = float(np.median([s / dt for dt, s in full])) if full else None
  chunk_steps = min(chunk_size, steps)
  best = st["best"] if math.isfinite(st["best"]) else None
  return {
      "model": model, "target": target, "seed": seed, "dim": int(data.shape[1]), "n_data": int(data.shape[0]),
      "steps_planned": steps, "steps_done": int(fitted.info.get("steps_done", 0)),
      "status": fitted.info.get("status"), "stop_reason": st["stop"] or "steps_done",
      "chunk_size": chunk_steps, "max_seconds": max_seconds, "eval_n": eval_n, "eval_every": eval_every,
      "floor": floor, "level_factor": level_factor, "level": level,
      "time_to_level": reached[level_factor],
      "time_to_factor": {f"{f:g}": reached[f] for f in factors},
      "best_ed": best, "best_ed_over_floor": best / floor if best is not None else None,
      "final_ed": st["evals"][-1]["ed"] if st["evals"] else None,
      "train_clock": st["clock"], "eval_seconds": st["overhead"], "wall_seconds": wall,
      "first_chunk_seconds": st["chunk1"],
      "init_seconds": (st["first_clock"] - st["chunk1"]) if st["chunk1"] is not None else None,
      "steady_chunk_seconds": steady, "steps_per_second": sps,
      "compile_seconds": (st["chunk1"] - steady) if (steady is not None and st["chunk1"] is not None) else None,
      "jax_compile_seconds": compile_s["run_chunk"], "jax_compiles": compile_s["run_chunk_count"],
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
      "device_peak_mb": (lambda b: b / 2**20 if b else None)(device_peak_bytes()),
      "evals": st["evals"],
      "chunk_steps_seconds": [[s, dt] for dt, s in st["chunks"]],
  }


# ----------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------


def _finite(v):
  return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _median(vals, none_as_inf=False):
  vals = [math.inf if v is None else v for v in vals] if none_as_inf else [v for v in vals if _finite(v)]
  if not vals:
    return None
  m = float(np.median(vals))
  return m if math.isfinite(m) else None


def summarise(runs: list[dict], models, targets) -> dict:
  summary = {}
  for t in targets:
    rows = {}
    for m in models:
      rs = [r for r in runs if r["model"] == m and r["target"] == t and "error" not in r]
      if not rs:
        rows[m] = {"runs": 0, "errors": [r["error"] for r in runs if r["model"] == m and r["target"] == t]}
        continue
      factors = list(rs[0]["time_to_factor"])
      rows[m] = {
          "runs": len(rs),
          "reached": sum(r["time_to_level"] is not None for r in rs),
          "time_to_level": _median([r["time_to_level"] for r in rs], none_as_inf=True),
          "time_to_factor": {f: _median([r["time_to_factor"][f] for r in rs], none_as_inf=True) for f in factors},
          "best_ed_over_floor": _median([r["best_ed_over_floor"] for r in rs]),
          "floor": rs[0]["floor"], "level": rs[0]["level"],
          "steps_per_second": _median([r["steps_per_second"] for r in rs]),
          "compile_seconds": _median([r["compile_seconds"] for r in rs]),
          "jax_compile_seconds": _median([r["jax_compile_seconds"] for r in rs]),
          "first_chunk_seconds": _median([r["first_chunk_seconds"] for r in rs]),
          "peak_rss_mb": _median([r["peak_rss_mb"] for r in rs]),
          "device_peak_mb": _median([r["device_peak_mb"] for r in rs]),
      }
    times = [v["time_to_level"] for v in rows.values() if _finite(v.get("time_to_level"))]
    fastest = min(times) if times else None
    for v in rows.values():
      ttl = v.get("time_to_level")
      v["ratio_to_fastest"] = ttl / fastest if (_finite(ttl) and fastest) else None
    summary[t] = rows
  return summary


def _fmt(v, spec="{:.3g}"):
  return "-" if v is None else spec.format(v)


def markdown(out: dict) -> str:
  mi, cfg = out["machine"], out["config"]
  lines = [
      "# Speed to a good fit",
      "",
      "Generated by `benchmarks/run.py` (see its docstring for the method); command:",
      "",
      "```", out["command"], "```", "",
      f"Machine: {mi['platform']}, {mi['cpu_count']} CPUs ({mi['cpus_usable']} usable), "
      f"jax {mi['jax_version']} on {mi['jax_backend']} ({', '.join(mi['jax_devices'])}). "
      f"{'**Quick settings: a smoke check, not a measurement.** ' if cfg['quick'] else ''}",
      "",
      f"Settings: {cfg['n']} training points, each model's defaults and default steps, at most "
      f"{cfg['max_seconds']:g} s of training clock, medians over {cfg['repeats']} seed(s). Training "
      "clock = seconds since `cc.fit` was called (preparation, init and compilation included) minus "
      "evaluation time. Quality = energy distance (ED) between "
      f"{cfg['eval_n']} model samples and a fresh draw of {cfg['eval_n']} target points, evaluated "
      f"at most every {cfg['eval_every']:g} s of training clock (and at the last chunk). "
      f"floor = mean ED of two fresh target draws ({cfg['floor_pairs']} pairs); "
      f"**level = {cfg['level_factor']:g} x floor**. Time to level: median over seeds (a seed that "
      "never reaches it counts as infinite; '-' = the median never reached it). x fastest: that time "
      "over the fastest model's on the target. Compile s = first chunk - median later chunk.",
      "",
  ]
  f_extra = [f for f in next(iter(next(iter(out["summary"].values())).values()), {}).get("time_to_factor", {})
             if float(f) != cfg["level_factor"]] if out["summary"] else []
  for t, rows in out["summary"].items():
    any_row = next((v for v in rows.values() if v.get("runs")), None)
    floor = any_row["floor"] if any_row else None
    lines += [f"## {t}", "", f"floor {_fmt(floor, '{:.2e}')}, level {_fmt(any_row and any_row['level'], '{:.2e}')}", ""]
    head = (["model", "reached", f"time to {cfg['level_factor']:g}x floor (s)", "x fastest"]
            + [f"time to {f}x (s)" for f in f_extra]
            + ["best ED / floor", "steps/s", "compile s", "peak RSS MB", "peak device MB"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, v in rows.items():
      if not v.get("runs"):
        lines.append(f"| {m} | error | " + " | ".join("-" * 1 for _ in head[2:]) + " |")
        continue
      cells = [m, f"{v['reached']}/{v['runs']}", _fmt(v["time_to_level"], "{:.1f}"),
               _fmt(v["ratio_to_fastest"], "{:.2f}")]
      cells += [_fmt(v["time_to_factor"].get(f), "{:.1f}") for f in f_extra]
      cells += [_fmt(v["best_ed_over_floor"], "{:.2f}"), _fmt(v["steps_per_second"], "{:.0f}"),
                _fmt(v["compile_seconds"], "{:.1f}"), _fmt(v["peak_rss_mb"], "{:.0f}"),
                _fmt(v["device_peak_mb"], "{:.0f}")]
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def _child(model, target, seed, args) -> dict:
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--one", model, target, str(seed),
         "--max-seconds", str(args.max_seconds), "--n", str(args.n), "--eval-n", str(args.eval_n),
         "--eval-every", str(args.eval_every), "--floor-pairs", str(args.floor_pairs),
         "--chunk-size", str(args.chunk_size), "--level-factor", str(args.level_factor)]
  if not args.stop_at_level:
    cmd.append("--no-stop-at-level")
  timeout = args.timeout if args.timeout else 30 * args.max_seconds + 600
  print(f"[run] {model} / {target} / seed {seed} ...", file=sys.stderr, flush=True)
  t = time.perf_counter()
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, cwd=str(ROOT))
  except subprocess.TimeoutExpired:
    return {"model": model, "target": target, "seed": seed, "error": f"timed out after {timeout:g} s"}
  for line in proc.stdout.splitlines():
    if line.startswith(RESULT_PREFIX):
      r = json.loads(line[len(RESULT_PREFIX):])
      print(f"[run]   time to level {_fmt(r['time_to_level'], '{:.1f}')} s, best ED/floor "
            f"{_fmt(r['best_ed_over_floor'], '{:.2f}')}, {_fmt(r['steps_per_second'], '{:.0f}')} steps/s "
            f"({time.perf_counter() - t:.0f} s wall)", file=sys.stderr, flush=True)
      return r
  return {"model": model, "target": target, "seed": seed,
          "error": f"subprocess exited {proc.returncode} without a result"}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
  p.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS)
  p.add_argument("--repeats", type=int, default=None, help="seeds per pair (default 3; quick 1)")
  p.add_argument("--max-seconds", type=float, default=None, help="training clock budget (default 120; quick 10)")
  p.add_argument("--n", type=int, default=None, help="training points (default 4096; quick 1024)")
  p.add_argument("--eval-n", type=int, default=None, help="points per ED evaluation (default 2000; quick 500)")
  p.add_argument("--eval-every", type=float, default=None, help="min training seconds between evaluations (default 2; quick 1)")
  p.add_argument("--floor-pairs", type=int, default=None, help="draw pairs averaged for the floor (default 5; quick 2)")
  p.add_argument("--chunk-size", type=int, default=None, help="steps per compiled chunk (default 50, cc.fit's)")
  p.add_argument("--level-factor", type=float, default=LEVEL_FACTOR, help="level = factor x floor (default 3)")
  p.add_argument("--no-stop-at-level", dest="stop_at_level", action="store_false",
                 help="keep training after the level is reached")
  p.add_argument("--quick", action="store_true", help="tiny budgets: an end-to-end check, not a measurement")
  p.add_argument("--timeout", type=float, default=None, help="wall seconds per subprocess (default 30 x max-seconds + 600)")
  p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/run.json; quick run_quick.json)")
  p.add_argument("--markdown", nargs="?", const="docs/speed.md", default=None,
                 help="write a markdown table here (docs/speed.md when given without a path)")
  p.add_argument("--one", nargs=3, metavar=("MODEL", "TARGET", "SEED"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  base = QUICK if args.quick else FULL
  for k, v in base.items():
    if getattr(args, k, None) is None:
      setattr(args, k, v)

  if args.one:
    model, target, seed = args.one[0], args.one[1], int(args.one[2])
    r = run_one(model, target, seed, max_seconds=args.max_seconds, n=args.n, eval_n=args.eval_n,
                eval_every=args.eval_every, floor_pairs=args.floor_pairs, chunk_size=args.chunk_size,
                level_factor=args.level_factor, stop_at_level=args.stop_at_level)
    print(RESULT_PREFIX + json.dumps(r), flush=True)
    return r

  out_path = pathlib.Path(args.out or ("benchmarks/results/run_quick.json" if args.quick
                                       else "benchmarks/results/run.json"))
  runs = [_child(m, t, s, args) for t in args.targets for m in args.models for s in range(args.repeats)]
  out = {
      "benchmark": "speed_to_quality",
      "command": " ".join(["python", "benchmarks/run.py"] + list(sys.argv[1:] if argv is None else argv)),
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "machine": machine_info(),
      "config": {"models": args.models, "targets": args.targets, "repeats": args.repeats,
                 "max_seconds": args.max_seconds, "n": args.n, "eval_n": args.eval_n,
                 "eval_every": args.eval_every, "floor_pairs": args.floor_pairs,
                 "chunk_size": args.chunk_size, "level_factor": args.level_factor,
                 "extra_factors": list(EXTRA_FACTORS), "stop_at_level": args.stop_at_level,
                 "quick": args.quick,
                 "level_formula": "level = level_factor * floor; floor = mean ED of two fresh "
                                  "eval_n-draws of the target"},
      "runs": runs,
      "summary": summarise(runs, args.models, args.targets),
  }
  write_outputs(out, out_path, args.markdown, markdown, "run")
  return out


def write_outputs(out: dict, out_path, markdown_path, to_markdown, tag: str) -> None:
  """Writes ``out`` as JSON to ``out_path`` and, when ``markdown_path`` is set, ``to_markdown(out)``
  there; says so on stderr as ``[tag] wrote ...``."""
  for path, text in ((out_path, json.dumps(out, indent=2)),
                     (markdown_path, to_markdown(out) if markdown_path else None)):
    if path:
      path = pathlib.Path(path)
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(text)
      print(f"[{tag}] wrote {path}", file=sys.stderr)


if __name__ == "__main__":
  main()
