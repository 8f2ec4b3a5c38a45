"""Fitting energies (issue 18): time to a free-energy gap, cmm and maflow, next to MALA and NUTS.

For each model and energy, ``cc.fit_energy`` runs with the model's defaults (maflow with
``symmetry="reflection"`` on lattices, as the page does), in chunks of ``--eval-every`` steps; after
each chunk the fit so far is measured with ``cmm_core.metrics.free_energy_metrics`` (``--eval-n``
samples; its time is not counted) and the run stops at the first chunk whose ELBO gap
``log Z - ELBO`` is at most ``--gap`` nats (``--gap-per-site`` nats per site on lattices), or after
``--max-seconds`` of training. Reported: the training seconds (compilation included) and steps to
the gap, the last measurement (ELBO gap, importance-weighted log Z gap, ESS) and, in 2D, the energy
distance of 1024 samples to exact grid samples against the distance between two exact draws.

``--budget`` runs each fit the way the app's seconds budget does instead: ``--max-seconds`` is the
fit's time budget (its learning rate decays over the steps the budget holds) and the fit is measured
once, at the end.

MCMC (``--mcmc``, default MALA and NUTS; blackjax, 256 chains from N(0, I), fixed steps
``--mala-step`` and ``--nuts-step``): in 2D, the transitions are doubled from 25 until the energy
distance of four states per chain (from the second half) to the exact draw is within the two-draw
distance + 0.01 (the models' sample check in tests/), reporting the gradient evaluations (NUTS's as
its trajectories took them) and seconds of that run. MCMC gives no density, so no gap.

    python benchmarks/energies.py --out benchmarks/results/energies.json --markdown /tmp/energies.md
    python benchmarks/energies.py --models cmm --energies ring --max-seconds 60
    python benchmarks/energies.py --lattices 4 --models maflow cmm --max-seconds 300
    python benchmarks/energies.py --energies --lattices 8 --models maflow --eval-every 2500 --honesty
    python benchmarks/energies.py --energies --lattices 8 --models maflow --max-seconds 900 --budget --honesty

``--honesty`` checks at each measurement that a flow's density is that of its samples (the round
trip and a 4x finer integration, :func:`flow_honesty`; docs/energies.md).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time
from typing import Optional

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

import cmm_core  # noqa: E402,F401  (before JAX starts: XLA_FLAGS, see cmm_core/__init__.py)
from run import machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)

ENERGIES_2D = ["gaussian", "ring", "two_gaussians", "banana", "double_well", "wave", "rings"]
MODELS = ["maflow", "cmm"]
N_EXACT = 1024


@functools.lru_cache(maxsize=None)
def _exact(energy):
  from cmm_core import energies, metrics
  a = energies.grid_samples(energy, N_EXACT, seed=101)
  b = energies.grid_samples(energy, N_EXACT, seed=202)
  return a, float(metrics.energy_distance(a, b))


def flow_honesty(fitted, energy, *, n: int, seed: int, finer: int = 4) -> dict:
  """Is a trained flow's density the density of its samples? (docs/energies.md: a coarse RK4 map
  can learn to exploit its integrator.) For ``n`` base points ``z``: the round trip
  ``|inverse_transport(transport(z)) - z|`` (median, max), and the same field integrated with
  ``finer`` times smaller RK4 steps to the same end time: its ELBO gap per site, its importance-
  weighted log Z gap, and how far its samples lie from the trained map's (median)."""
  import numpy as np

  from cmm_core import metrics
  sites = energy.dim if energy.L else 1
  z = fitted.sample_base(n, seed=seed)
  x = fitted.transport(z)
  back = np.linalg.norm(fitted.inverse_transport(x) - z, axis=1)
  fine = fitted.on_finer_grid(finer)
  m = metrics.free_energy_metrics(fine, energy, seed=seed, n=n)
  moved = np.linalg.norm(fine.transport(z) - x, axis=1)
  return {"round_trip_median": float(np.median(back)), "round_trip_max": float(back.max()),
          f"gap_per_site_{finer}x_finer": m.gap / sites, f"iw_gap_{finer}x_finer": energy.log_z - m.iw_log_z,
          f"ess_fraction_{finer}x_finer": m.ess / m.n, "samples_moved_median": float(np.median(moved))}


def fit_to_gap(model: str, energy, *, gap: float, max_seconds: float, eval_every: int, eval_n: int,
               seed: int = 0, hyper: Optional[dict] = None, steps: Optional[int] = None,
               honesty: bool = False, budget: bool = False) -> dict:
  """One model on one energy until its ELBO gap is at most ``gap`` (per site on a lattice).
  ``honesty``: each measurement of a flow also runs :func:`flow_honesty` (not counted either).
  ``budget``: instead, one fit with ``max_seconds`` as its time budget (the app's seconds budget:
  the rate decays over it), measured once at the end."""
  import cmm_core as cc
  from cmm_core import metrics
  sites = energy.dim if energy.L else 1
  evals, spent = [], [0.0]   # spent: seconds of evaluation inside the callbacks (not training)

  def measure(step, clock, fitted):
    m = metrics.free_energy_metrics(fitted, energy, seed=step, n=eval_n)
    evals.append({"step": step, "train_seconds": round(clock, 2), "gap": m.gap, "gap_per_site": m.gap / sites,
                  "iw_gap": energy.log_z - m.iw_log_z, "ess_fraction": m.ess / m.n})
    if honesty and hasattr(fitted, "inverse_transport") and model == "maflow":
      evals[-1].update(flow_honesty(fitted, energy, n=eval_n, seed=step))
    return m

  def callback(step, record, fitted):
    clock = record["seconds"] - spent[0]   # the fit's clock, less the earlier measurements
    t0 = time.perf_counter()
    m = measure(step, clock, fitted)
    spent[0] += time.perf_counter() - t0
    return not (m.gap / sites <= gap or clock >= max_seconds)

  # the app's settings for this energy (an even potential on lattices, the model's suggestion for a
  # built-in), then the command line's --hyper
  hyper = {**cc.api.energy_settings(model, energy)[0], **(hyper or {})}
  t0 = time.perf_counter()
  # steps: the fit's planned length (its learning-rate schedule decays over it); by default so many
  # that the rate stays at its start for the whole run
  if budget:
    fitted = cc.fit_energy(model, energy, steps=steps or cc.api.MAX_STEPS, seed=seed, max_seconds=max_seconds,
                           **hyper)
    measure(fitted.info["steps_done"], fitted.info["fit_seconds"], fitted)
  else:
    fitted = cc.fit_energy(model, energy, steps=steps or cc.api.MAX_STEPS, seed=seed, chunk_size=eval_every,
                           callback=callback, **hyper)
  wall = time.perf_counter() - t0
  last = evals[-1]
  out = {"model": model, "energy": energy.label, "dim": energy.dim, "hyper": hyper, "budget": budget,
         "planned_steps": fitted.info.get("planned_steps"), "grid_error": fitted.info.get("grid_error"),
         "reached": last["gap_per_site"] <= gap,
         "seconds_to_gap": last["train_seconds"] if last["gap_per_site"] <= gap else None,
         "steps": last["step"], "wall_seconds_with_evals": round(wall, 1), "last": last, "evals": evals}
  if energy.dim == 2 and energy.box is not None:
    from cmm_core import metrics as mt
    exact, floor = _exact(energy)
    out["energy_distance"] = float(mt.energy_distance(fitted.sample(N_EXACT, seed=7), exact))
    out["energy_distance_floor"] = floor
  return out


def mcmc_to_level(energy, method: str, *, step_size: float, n_chains: int = 256, max_steps: int = 6400) -> dict:
  """MCMC (``"mala"``, ``"nuts"``, ``"hmc"``) transitions doubled until the chains match exact samples
  (2D): within the two-draw energy distance + 0.01."""
  from cmm_core import mcmc, metrics
  exact, floor = _exact(energy)
  n_steps, runs = 25, []
  while True:
    res = mcmc.sample(energy, n_chains, n_steps, seed=0, method=method, step_size=step_size, keep=4,
                      thin=max(1, n_steps // 8))
    ed = float(metrics.energy_distance(res.samples, exact))
    runs.append({"n_steps": n_steps, "grad_evals": res.n_grad_evals, "seconds": round(res.seconds, 2),
                 "energy_distance": ed, "acceptance": res.acceptance})
    if ed <= floor + 0.01 or n_steps >= max_steps:
      break
    n_steps *= 2
  last = runs[-1]
  return {"model": method, "step_size": step_size, "energy": energy.label,
          "reached": last["energy_distance"] <= floor + 0.01, "energy_distance_floor": floor, "last": last,
          "runs": runs}


def to_markdown(out: dict) -> str:
  cfg = out["config"]
  when = ("a time budget, measured at the end" if cfg.get("budget") else
          f"at most, measured every {cfg['eval_every']} steps")
  lines = [f"Gap target {cfg['gap']} nats ({cfg['gap_per_site']} per site on lattices), "
           f"{cfg['max_seconds']} s of training per fit ({when}) on "
           f"{cfg['eval_n']} samples; {out['machine']['cpus_usable']} CPUs, jax {out['machine']['jax_version']}.",
           "", "| energy | model | reached | seconds to gap | steps | last gap | IW log Z gap | ESS | energy distance (floor) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in out["fits"]:
    last = r["last"]
    ed = (f"{r['energy_distance']:.4f} ({r['energy_distance_floor']:.4f})" if "energy_distance" in r else "-")
    lines.append(f"| {r['energy']} | {r['model']} | {'yes' if r['reached'] else 'no'} | "
                 f"{r['seconds_to_gap'] if r['seconds_to_gap'] is not None else '-'} | {r['steps']} | "
                 f"{last['gap']:.4f} | {last['iw_gap']:.4f} | {last['ess_fraction']:.0%} | {ed} |")
  if out["mcmc"]:
    lines += ["", "| energy | MCMC (step) | reached | transitions | gradient evaluations | seconds | energy distance (floor) | acceptance |",
              "|---|---|---|---|---|---|---|---|"]
    for r in out["mcmc"]:
      last = r["last"]
      lines.append(f"| {r['energy']} | {r['model'].upper()} ({r['step_size']:g}) | "
                   f"{'yes' if r['reached'] else 'no'} | {last['n_steps']} | "
                   f"{last['grad_evals']:,} | {last['seconds']} | {last['energy_distance']:.4f} "
                   f"({r['energy_distance_floor']:.4f}) | {last['acceptance']:.0%} |")
  return "\n".join(lines) + "\n"


def _hypers(items: list, models: list) -> dict:
  """``["maflow.standardize=0"]`` -> ``{model: {name: value}}``, checked by the model's schema."""
  import cmm_core as cc
  from cmm_core import hyper
  out = {m: {} for m in models}
  for item in items:
    key, _, text = item.partition("=")
    model, _, name = key.partition(".")
    if model not in out or not text:
      raise SystemExit(f"--hyper {item!r}: write MODEL.NAME=VALUE for one of {models}")
    entries = hyper.by_name(cc.api.energy_model(model).schema)
    if name not in entries:
      raise SystemExit(f"--hyper {item!r}: {model} has no {name!r}; it has {sorted(entries)}")
    out[model][name] = hyper.parse(model, entries[name], text)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
  p.add_argument("--energies", nargs="*", default=ENERGIES_2D, help="2D built-ins (default: all)")
  p.add_argument("--lattices", nargs="*", type=int, default=[], help="Ising lattice sides L (periodic, T_c)")
  p.add_argument("--gap", type=float, default=0.05, help="ELBO gap target, nats (2D)")
  p.add_argument("--gap-per-site", type=float, default=0.01, help="ELBO gap target per site (lattices)")
  p.add_argument("--max-seconds", type=float, default=120.0, help="training seconds per fit")
  p.add_argument("--eval-every", type=int, default=50, help="steps between measurements")
  p.add_argument("--eval-n", type=int, default=2048, help="samples per measurement")
  p.add_argument("--mcmc", nargs="*", default=["mala", "nuts"], choices=["mala", "nuts", "hmc"],
                 help="MCMC baselines in 2D (none: --mcmc with no name, or --no-mala)")
  p.add_argument("--mala-step", type=float, default=0.1, help="MALA's fixed step size")
  p.add_argument("--nuts-step", type=float, default=0.1, help="NUTS's (and HMC's) fixed step size")
  p.add_argument("--no-mala", action="store_true", help="no MCMC baseline (as --mcmc with no name)")
  p.add_argument("--budget", action="store_true",
                 help="--max-seconds as each fit's time budget (the rate decays over it, as in the app), "
                      "measured once at the end")
  p.add_argument("--steps", type=int, default=None,
                 help="each fit's planned steps (its learning rate decays over them; default: constant)")
  p.add_argument("--hyper", action="append", default=[], metavar="MODEL.NAME=VALUE",
                 help="a hyper-parameter of one model's energy route, e.g. maflow.standardize=0")
  p.add_argument("--honesty", action="store_true",
                 help="at each measurement of maflow, the round trip and the 4x finer integration "
                      "(flow_honesty): is the density the one of its samples?")
  p.add_argument("--out", default="benchmarks/results/energies.json")
  p.add_argument("--markdown", default=None)
  args = p.parse_args(argv)
  from cmm_core import energies
  hypers = _hypers(args.hyper, args.models)
  fits, chains = [], []
  targets = [(energies.make(n), args.gap) for n in args.energies]
  targets += [(energies.make("ising", L=L), args.gap_per_site) for L in args.lattices]
  for energy, gap in targets:
    for model in args.models:
      r = fit_to_gap(model, energy, gap=gap, max_seconds=args.max_seconds, eval_every=args.eval_every,
                     eval_n=args.eval_n, hyper=hypers[model], steps=args.steps, honesty=args.honesty,
                     budget=args.budget)
      fits.append(r)
      print(f"[energies] {energy.label} {model}: reached {r['reached']} in {r['seconds_to_gap']} s, "
            f"{r['steps']} steps, last gap {r['last']['gap']:.4f}", file=sys.stderr, flush=True)
    for method in ([] if energy.dim != 2 or args.no_mala else args.mcmc):
      step = args.mala_step if method == "mala" else args.nuts_step
      r = mcmc_to_level(energy, method, step_size=step)
      chains.append(r)
      print(f"[energies] {energy.label} {method.upper()}: reached {r['reached']} with {r['last']['n_steps']} "
            f"transitions", file=sys.stderr, flush=True)
  config = {k: getattr(args, k) for k in ("gap", "gap_per_site", "max_seconds", "eval_every", "eval_n", "mala_step",
                                          "nuts_step", "mcmc", "hyper", "steps", "honesty", "budget")}
  out = {"machine": machine_info(), "config": config, "fits": fits, "mcmc": chains}
  write_outputs(out, args.out, args.markdown, to_markdown, "energies")
  return 0


if __name__ == "__main__":
  sys.exit(main())
