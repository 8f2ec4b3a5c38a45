"""The project's models against flowjax (issue 22): held-out NLL and energy distance against time.

Contenders: flowjax's two flows (``--flowjax coupling maf``, the default) and the project's models
(``--models``, default ``maflow cmm``; any of ``cmm mm brenier maflow sdot``), run in turn:

- ``flowjax_coupling``: ``flowjax.flows.coupling_flow`` with a ``RationalQuadraticSpline(knots=8,
  interval=4)`` transformer (flowjax's defaults otherwise: 8 layers, conditioner MLP 50 wide and 1
  deep), standard normal base, fitted to the training points standardised by their mean and std.
- ``flowjax_maf``: ``flowjax.flows.masked_autoregressive_flow`` with the same transformer.
- the project's models through ``cmm_core.fit`` with their defaults and default steps.

The flowjax contenders are trained by a copy of ``flowjax.train.fit_to_data``'s loop (same
``train_val_split``, per-epoch shuffles, ``flowjax.train.step``, ``MaximumLikelihoodLoss``,
validation loss per epoch, early stopping after ``max_patience`` fruitless epochs, best
parameters returned) with Adam at ``--flowjax-lr`` (1e-3) and batches of ``--flowjax-batch``
(256): the loop is copied, rather than ``fit_to_data`` called, only so that the held-out figures
can be taken between two steps with the clock stopped (``fit_to_data`` runs to its end in one call).

Targets (``--targets``): ``eight_gaussians``, ``two_moons``, ``checkerboard`` (cmm_core's toys),
``mixture_10d`` (a 5-component Gaussian mixture in 10-D defined here) and
``digits`` (``cmm_core.datasets.load("digits")``: 8x8 images, 64-D, dequantised at load with uniform
noise in [0, 1); the 1438 / 359 split of ``cmm_core.target_spec.hold_out``). Toys: ``--n`` (4000)
training points drawn with seed ``--seed``, ``--n-heldout`` (2000) held-out points with another seed.

Clock: each contender runs in a fresh subprocess (no compilation cache: ``JAX_ENABLE_COMPILATION_CACHE
=false``, ``JAX_COMPILATION_CACHE_DIR`` removed), pinned to one core (``taskset -c CPU``, or
``os.sched_setaffinity`` without taskset) with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``. The training clock starts just before the model is built (flowjax:
the standardisation and ``coupling_flow(...)``; the project: the call to ``cc.fit``), so it includes
JAX's tracing and compilation, and stops while the held-out figures are computed. Evaluation: after
a step (flowjax) or a chunk of ``--chunk-size`` steps (the project's models) once ``--eval-every``
seconds of training clock have passed since the last one (or every ``--eval-every-steps`` steps
instead), and at the end. The held-out NLL (nats per point, the mean of ``-log p``) is the exact
log-density for flowjax (corrected for the standardisation) and for the project's models that
have ``fitted.log_prob`` (sdot has none: no NLL). The energy distance (``cmm_core.metrics.
energy_distance``) is between as many model samples as held-out points and the held-out points.

Summary per contender: the time to reach each held-out NLL level (``--nll-levels``; by default
3.03 2.95 2.90 2.86 for eight_gaussians and ``best + 0.05 d``, ``best + 0.025 d`` elsewhere, d the
dimension, ``best`` the lowest held-out NLL any contender reached on that target in this run: +0.1
and +0.05 in 2-D, +0.5 and +0.25 for mixture_10d, +3.2 and +1.6 for the digits; the true NLL of
the held-out points is reported where it is known: all but the digits), the time to reach each
energy-distance level ``factor x floor`` (``--ed-factors``, 3 and 2; floor = the mean energy
distance between an independent draw of the target of the held-out size and the held-out points,
over ``--floor-pairs`` draws; for the digits, 359 training rows against the 359 held-out rows),
and the best of each (the lowest of the evaluations: each ED has a sampling noise of tens of per
cent near the floor, so a best below 1 floor is noise, not a better-than-perfect model).

    python benchmarks/peers.py --max-seconds 120 --out benchmarks/results/peers.json \\
        --markdown /tmp/peers.md
    python benchmarks/peers.py --quick --targets two_moons   # a ~2-minute smoke check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
  if _p not in sys.path:
    sys.path.insert(0, _p)

FLOWJAX_KINDS = {"coupling": "flowjax_coupling", "maf": "flowjax_maf"}
FLOWJAX = list(FLOWJAX_KINDS.values())
PROJECT = ["cmm", "mm", "brenier", "maflow", "sdot"]
CONTENDERS = FLOWJAX + PROJECT
DEFAULT_MODELS = ["maflow", "cmm"]
TARGETS = ["eight_gaussians", "two_moons", "checkerboard", "mixture_10d", "digits"]
TOYS = ("eight_gaussians", "two_moons", "checkerboard")
# held-out NLL levels: the for eight_gaussians; elsewhere the best seen + 0.05 d and
# + 0.025 d nats (d the dimension: 0.05 and 0.025 nats per dimension, as +0.1 and +0.05 in 2-D)
DEFAULT_NLL_LEVELS = {"eight_gaussians": ["3.03", "2.95", "2.90", "2.86"], "mixture_10d": ["+0.5", "+0.25"],
                      "digits": ["+3.2", "+1.6"]}
DEFAULT_RELATIVE = ["+0.1", "+0.05"]
ED_FACTORS = [3.0, 2.0]
RESULT_PREFIX = "PEERS_RESULT_JSON "
HELDOUT_SEED = 1_000_003   # held-out draws of the toys: seed + this
FLOOR_SEED = 2_000_003     # the floor's independent draws
XLA_FLAGS_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

FULL = dict(max_seconds=120.0, n=4000, n_heldout=2000, eval_every=2.0, floor_pairs=10, chunk_size=50)
QUICK = dict(max_seconds=15.0, n=1000, n_heldout=500, eval_every=2.0, floor_pairs=2, chunk_size=50)

# flowjax's recipe (fit_to_data's defaults, Adam 1e-3 and batches of 256 as in the issue)
FLOWJAX_RECIPE = dict(knots=8, interval=4.0, flow_layers=8, nn_width=50, nn_depth=1, learning_rate=1e-3,
                      batch_size=256, val_prop=0.1, max_epochs=100, max_patience=5)


# ----------------------------------------------------------------------------
# Targets.
# ----------------------------------------------------------------------------


def _mixture_10d_params():
  """The 10-D target: 5 Gaussians, unequal weights, correlated covariances (fixed forever)."""
  rng = np.random.default_rng(22_001)
  d, k = 10, 5
  means = 1.5 * rng.standard_normal((k, d))
  covs = []
  for _ in range(k):
    a = rng.standard_normal((d, d))
    covs.append(0.5 * a @ a.T / d + 0.1 * np.eye(d))
  weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
  return weights, means, np.stack(covs)


def _mixture_10d(n: int, seed: int) -> np.ndarray:
  weights, means, covs = _mixture_10d_params()
  rng = np.random.default_rng(seed)
  comp = rng.choice(len(weights), size=n, p=weights)
  chol = np.linalg.cholesky(covs)
  z = rng.standard_normal((n, means.shape[1]))
  return (means[comp] + np.einsum("nij,nj->ni", chol[comp], z)).astype(np.float32)


def _logsumexp(a, axis):
  m = np.max(a, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def true_log_density(target: str, x: np.ndarray):
  """The exact log-density ``[n]`` of the targets that have one here (else None)."""
  x = np.asarray(x, np.float64)
  if target == "eight_gaussians":  # cmm_core.targets._eight_gaussians with its defaults
    angle = np.arange(8) * np.pi / 4
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], 1) / 1.414
    s = 0.5 / 1.414
    d2 = np.sum((x[:, None, :] - centres[None]) ** 2, -1)
    return _logsumexp(-0.5 * d2 / s**2, 1) - np.log(8) - np.log(2 * np.pi * s**2)
  if target == "two_moons":  # _two_moons: noise 0.1 around each half circle, times 2, shifted
    t = (np.arange(2000) + 0.5) * np.pi / 2000  # the uniform angle, by the midpoint rule
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1)
    centres = 2.0 * np.concatenate([upper, lower]) + np.array([-1.0, -0.2])
    s = 2.0 * 0.1
    out = [_logsumexp(-0.5 * np.sum((x[i:i + 256, None, :] - centres[None]) ** 2, -1) / s**2, 1)
           for i in range(0, len(x), 256)]
    return np.concatenate(out) - np.log(len(centres)) - np.log(2 * np.pi * s**2)
  if target == "checkerboard":  # uniform on 8 cells of side 2: density 1/32 on them, else 0
    cell = np.floor(x / 2.0).astype(int)
    inside = np.all(np.abs(x) <= 4.0, 1) & ((cell[:, 0] + cell[:, 1]) % 2 == 0)
    return np.where(inside, -np.log(32.0), -np.inf)
  if target == "mixture_10d":
    weights, means, covs = _mixture_10d_params()
    parts = []
    for w, m, c in zip(weights, means, covs):
      diff = x - m
      _, logdet = np.linalg.slogdet(2 * np.pi * c)
      parts.append(np.log(w) - 0.5 * np.sum(diff @ np.linalg.inv(c) * diff, 1) - 0.5 * logdet)
    return _logsumexp(np.stack(parts, 1), 1)
  return None


def draw(target: str, n: int, seed: int) -> np.ndarray:
  """``n`` points ``[n, d]`` of a drawable target (not the digits)."""
  if target in TOYS:
    import cmm_core as cc
    return cc.targets.make(target, n=n, seed=seed)
  if target == "mixture_10d":
    return _mixture_10d(n, seed)
  raise ValueError(f"{target!r} cannot be drawn; choose from {TOYS + ('mixture_10d',)}")


def split(target: str, n: int, n_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(training points, held-out points) of ``target``: fresh draws, or the digits' fixed split."""
  if target == "digits":
    import cmm_core as cc
    from cmm_core import target_spec
    train, heldout = target_spec.hold_out(cc.datasets.load("digits"))  # dequantised at load
    return np.asarray(train, np.float32), np.asarray(heldout, np.float32)
  if target not in TARGETS:
    raise ValueError(f"unknown target {target!r}; choose from {TARGETS}")
  return draw(target, n, seed), draw(target, n_heldout, seed + HELDOUT_SEED)


def ed_floor(target: str, heldout: np.ndarray, pairs: int) -> float:
  """The energy distance of a perfect model: the mean over ``pairs`` independent draws of as many
  points as ``heldout`` of their energy distance to ``heldout`` (the digits: as many training rows,
  drawn without replacement, against the held-out rows). A model is scored against the same
  held-out points, with as many samples."""
  from cmm_core import metrics
  vals = []
  if target == "digits":
    train, _ = split("digits", 0, 0, 0)
    for i in range(pairs):
      rows = np.random.default_rng(FLOOR_SEED + i).choice(len(train), len(heldout), replace=False)
      vals.append(metrics.energy_distance(train[rows], heldout))
  else:
    for i in range(pairs):
      vals.append(metrics.energy_distance(draw(target, len(heldout), FLOOR_SEED + i), heldout))
  return float(np.mean(vals))


# ----------------------------------------------------------------------------
# The pure pieces: levels and times to them.
# ----------------------------------------------------------------------------


def contenders(flowjax, models) -> list[str]:
  """The contenders in running order, flowjax's flows and the project's models taken in turn (so
  that with ``--pairs`` each pair has one of each where it can). None = the defaults."""
  fj = [FLOWJAX_KINDS[k] for k in (list(FLOWJAX_KINDS) if flowjax is None else flowjax)]
  ms = list(DEFAULT_MODELS if models is None else models)
  fj, ms = list(dict.fromkeys(fj)), list(dict.fromkeys(ms))
  out = []
  for i in range(max(len(fj), len(ms))):
    out += fj[i:i + 1] + ms[i:i + 1]
  return out


def time_to_level(curve, index: int, level: float):
  """Training seconds of the first curve point ``(seconds, steps, nll, ed)`` whose entry ``index``
  is finite and ``<= level``; None if none is."""
  for point in curve:
    v = point[index]
    if v is not None and math.isfinite(v) and v <= level:
      return float(point[0])
  return None


def best_of(curve, index: int):
  vals = [p[index] for p in curve if p[index] is not None and math.isfinite(p[index])]
  return min(vals) if vals else None


def parse_nll_levels(items) -> dict:
  """``["eight_gaussians=3.03,2.95", "two_moons=+0.1,+0.05", "+0.2"]`` -> ``{target: [spec,
  ...]}``, a spec being an absolute level (``"3.03"``), one relative to the best seen (``"+0.1"``)
  or one relative to the true NLL of the held-out points where it is known (``"t+0.05"``:
  eight_gaussians, mixture_10d); an item without ``TARGET=`` sets the default for the other
  targets (key ``"*"``)."""
  out = {}
  for item in items or []:
    target, _, specs = item.rpartition("=")
    target = target or "*"
    if target != "*" and target not in TARGETS:
      raise ValueError(f"--nll-levels: unknown target {target!r}; choose from {TARGETS}")
    specs = [s.strip() for s in specs.split(",") if s.strip()]
    if not specs:
      raise ValueError(f"--nll-levels: no level in {item!r}")
    for s in specs:
      try:
        float(s[1:] if s.startswith("t+") else s)
      except ValueError:
        raise ValueError(f"--nll-levels: bad level {s!r} in {item!r}") from None
    out[target] = specs
  return out


def nll_levels_for(target: str, levels: dict, best, true_nll=None):
  """The absolute NLL levels of ``target``: those given for it, else those given for all targets
  (``"*"``), else its default (``DEFAULT_NLL_LEVELS``, ``DEFAULT_RELATIVE``); ``+x`` is ``best + x``, ``t+x`` is ``true_nll + x`` (dropped when that
  reference is None). Returns ``[(spec, level), ...]``."""
  specs = levels.get(target) or levels.get("*") or DEFAULT_NLL_LEVELS.get(target) or DEFAULT_RELATIVE
  out = []
  for s in specs:
    if s.startswith("t+"):
      if true_nll is not None:
        out.append((s, true_nll + float(s[1:])))
    elif s.startswith("+"):
      if best is not None:
        out.append((s, best + float(s)))
    else:
      out.append((s, float(s)))
  return out


def summarise(results: dict, floors: dict, nll_levels: dict, ed_factors) -> dict:
  """Per target per contender: times to the NLL and ED levels and the bests, from the curves."""
  summary = {}
  for target, per in results.items():
    bests = [best_of(r["curve"], 2) for r in per.values() if r.get("curve")]
    bests = [b for b in bests if b is not None]
    best_seen = min(bests) if bests else None
    true_nll = results_true_nll(per)
    levels = nll_levels_for(target, nll_levels, best_seen, true_nll)
    floor = floors.get(target)
    rows = {}
    for name, r in per.items():
      if "error" in r:
        rows[name] = {"error": r["error"]}
        continue
      curve = r["curve"]
      best_nll, best_ed = best_of(curve, 2), best_of(curve, 3)
      rows[name] = {
          "time_to_nll": {spec: time_to_level(curve, 2, lvl) for spec, lvl in levels},
          "time_to_ed": {f"{f:g}": (time_to_level(curve, 3, f * floor) if floor else None)
                         for f in ed_factors},
          "best_nll": best_nll, "best_ed": best_ed,
          "best_nll_minus_true": best_nll - true_nll if (best_nll is not None and true_nll is not None) else None,
          "best_ed_over_floor": best_ed / floor if (best_ed is not None and floor) else None,
          "final_nll": curve[-1][2] if curve else None, "final_ed": curve[-1][3] if curve else None,
          "train_seconds": r.get("train_seconds"), "steps_done": r.get("steps_done"),
          "stop_reason": r.get("stop_reason"), "wall_seconds": r.get("wall_seconds"),
          # maflow's evaluations whose NLL was dropped: its density depended on the RK4 grid
          "nll_dropped_by_grid_check": sum(bool(g[3]) for g in r.get("grid_checks", [])),
      }
    summary[target] = {"nll_levels": {spec: lvl for spec, lvl in levels}, "best_nll_seen": best_seen,
                       "ed_floor": floor, "ed_levels": {f"{f:g}": f * floor if floor else None for f in ed_factors},
                       "true_nll": true_nll, "contenders": rows}
  return summary


def results_true_nll(per: dict):
  for r in per.values():
    if r.get("true_nll") is not None:
      return r["true_nll"]
  return None


# ----------------------------------------------------------------------------
# One contender on one target (in its own process).
# ----------------------------------------------------------------------------


class Clock:
  """Training seconds since ``start()``, not counting the spans between ``pause()`` and ``resume()``."""

  def __init__(self):
    self.t0, self.paused_at, self.paused = None, None, 0.0

  def start(self):
    self.t0 = time.perf_counter()

  def now(self) -> float:
    t = self.paused_at if self.paused_at is not None else time.perf_counter()
    return t - self.t0 - self.paused

  def pause(self) -> float:
    self.paused_at = time.perf_counter()
    return self.now()

  def resume(self):
    self.paused += time.perf_counter() - self.paused_at
    self.paused_at = None


def _finite_or_none(v):
  v = float(v)
  return v if math.isfinite(v) else None


def _held_out_figures(nll_fn, sample, heldout: np.ndarray, k: int):
  """(held-out NLL, energy distance) of a model given as ``nll_fn() -> float`` (None: no density)
  and ``sample(n, seed) -> [n, d]``; a non-finite figure is None."""
  from cmm_core import metrics
  nll = None
  if nll_fn is not None:
    try:
      nll = _finite_or_none(nll_fn())
    except NotImplementedError:  # a model without a data density (sdot)
      nll = None
  samples = np.asarray(sample(len(heldout), 7919 + k), np.float64)
  ed = None
  if np.all(np.isfinite(samples)):
    ed = _finite_or_none(metrics.energy_distance(samples, heldout))
  return nll, ed


def run_flowjax(kind: str, train: np.ndarray, heldout: np.ndarray, *, seed: int, max_seconds: float,
                eval_every: float, eval_every_steps, recipe: dict) -> dict:
  import equinox as eqx
  import jax
  import jax.numpy as jnp
  import jax.random as jr
  import optax
  import paramax
  from flowjax.bijections import RationalQuadraticSpline
  from flowjax.distributions import Normal
  from flowjax.flows import coupling_flow, masked_autoregressive_flow
  from flowjax.train import step as fj_step
  from flowjax.train.losses import MaximumLikelihoodLoss
  from flowjax.train.train_utils import count_fruitless, get_batches, train_val_split

  clock = Clock()
  clock.start()
  mean, std = train.mean(0), train.std(0)
  std = np.where(std > 0, std, 1.0)
  log_scale = float(np.sum(np.log(std)))
  x = jnp.asarray((train - mean) / std, jnp.float32)
  make = coupling_flow if kind == "flowjax_coupling" else masked_autoregressive_flow
  key, flow_key = jr.split(jr.key(seed))
  flow = make(flow_key, base_dist=Normal(jnp.zeros(train.shape[1])),
              transformer=RationalQuadraticSpline(knots=recipe["knots"], interval=recipe["interval"]),
              flow_layers=recipe["flow_layers"], nn_width=recipe["nn_width"], nn_depth=recipe["nn_depth"])
  loss_fn = MaximumLikelihoodLoss()
  optimizer = optax.adam(recipe["learning_rate"])
  params, static = eqx.partition(flow, eqx.is_inexact_array,
                                 is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
  best_params = params
  opt_state = optimizer.init(params)
  key, subkey = jr.split(key)
  (train_x,), (val_x,) = train_val_split(subkey, (x,), val_prop=recipe["val_prop"])

  held = jnp.asarray((heldout - mean) / std, jnp.float32)

  @eqx.filter_jit
  def _nll(params):
    dist = paramax.unwrap(eqx.combine(params, static))
    return -dist.log_prob(held).mean() + log_scale

  @eqx.filter_jit
  def _sample(params, key, n: int):
    dist = paramax.unwrap(eqx.combine(params, static))
    return dist.sample(key, (n,))

  curve, st = [], {"steps": 0, "last_eval": 0.0, "last_eval_step": 0, "k": 0}

  def evaluate(p):
    jax.block_until_ready(p)
    t = clock.pause()
    nll, ed = _held_out_figures(lambda: float(_nll(p)),
                                lambda n, s: np.asarray(_sample(p, jr.key(s), n)) * std + mean,
                                heldout, st["k"])
    st["k"] += 1
    curve.append([t, st["steps"], nll, ed])
    st["last_eval"], st["last_eval_step"] = t, st["steps"]
    clock.resume()

  def due() -> bool:
    if eval_every_steps:
      return st["steps"] - st["last_eval_step"] >= eval_every_steps
    return clock.now() - st["last_eval"] >= eval_every

  losses = {"train": [], "val": []}
  stop = "max_epochs"
  for _ in range(recipe["max_epochs"]):  # flowjax.train.fit_to_data's loop, evaluations added
    key, *subkeys = jr.split(key, 3)
    train_x = jr.permutation(subkeys[0], train_x)
    val_x = jr.permutation(subkeys[1], val_x)
    batch_losses = []
    out_of_time = False
    for (batch,) in zip(*get_batches((train_x,), recipe["batch_size"]), strict=True):
      key, subkey = jr.split(key)
      params, opt_state, loss_i = fj_step(params, static, batch, optimizer=optimizer, opt_state=opt_state,
                                          loss_fn=loss_fn, key=subkey)
      batch_losses.append(loss_i)
      st["steps"] += 1
      if due():
        evaluate(params)
      if clock.now() >= max_seconds:
        out_of_time = True
        break
    if out_of_time:
      stop = "max_seconds"
      break
    losses["train"].append((sum(batch_losses) / len(batch_losses)).item())
    batch_losses = []
    for (batch,) in zip(*get_batches((val_x,), recipe["batch_size"]), strict=True):
      key, subkey = jr.split(key)
      batch_losses.append(eqx.filter_jit(loss_fn)(params, static, batch, key=subkey))
    losses["val"].append((sum(batch_losses) / len(batch_losses)).item())
    if losses["val"][-1] == min(losses["val"]):
      best_params = params
    elif recipe["max_patience"] >= 0 and count_fruitless(losses["val"]) > recipe["max_patience"]:
      stop = "early_stopping"
      break
  # fit_to_data returns the parameters of the best validation loss (return_best=True)
  if stop != "max_seconds":
    evaluate(best_params)
  elif not curve or curve[-1][1] != st["steps"]:
    evaluate(params)
  return {"steps_done": st["steps"], "epochs": len(losses["val"]), "stop_reason": stop,
          "train_seconds": curve[-1][0], "curve": curve,
          "last_val_loss": losses["val"][-1] if losses["val"] else None,
          "recipe": recipe, "standardised": True}


def run_project(model: str, train: np.ndarray, heldout: np.ndarray, *, seed: int, max_seconds: float,
                eval_every: float, eval_every_steps, chunk_size: int, steps) -> dict:
  import cmm_core as cc
  from cmm_core.models.maflow import GRID_CHECK_NATS
  steps = int(steps or cc.models.get(model).default_steps)
  clock = Clock()
  curve, grid_checks = [], []
  st = {"last_eval": 0.0, "last_eval_step": 0, "k": 0, "stop": None, "steps": 0}

  def evaluate(fitted, step):
    t = clock.pause()
    nll, ed = _held_out_figures(lambda: -np.mean(np.asarray(fitted.log_prob(heldout), np.float64)),
                                lambda n, s: fitted.sample(n, seed=s), heldout, st["k"])
    st["k"] += 1
    if hasattr(fitted, "grid_error"):  # maflow: a density that depends on its RK4 grid is no score
      err = _finite_or_none(fitted.grid_error())
      flagged = err is None or abs(err) > GRID_CHECK_NATS
      grid_checks.append([int(step), err, nll, flagged])
      nll = None if flagged else nll
    curve.append([t, int(step), nll, ed])
    st["last_eval"], st["last_eval_step"] = t, step
    clock.resume()

  def callback(step, record, fitted):
    st["steps"] = int(step)
    now = clock.now()
    out_of_time = now >= max_seconds and step < steps
    due = (step - st["last_eval_step"] >= eval_every_steps) if eval_every_steps else (
        now - st["last_eval"] >= eval_every)
    if due or out_of_time or step >= steps:
      evaluate(fitted, step)
    if out_of_time:
      st["stop"] = "max_seconds"
      return False
    return None

  clock.start()
  fitted = cc.fit(model, train, steps=steps, seed=seed, callback=callback, chunk_size=chunk_size)
  done = int(fitted.info.get("steps_done", st["steps"]))
  if not curve or curve[-1][1] != done:  # e.g. diverged: the kept parameters
    evaluate(fitted, done)
  stop = st["stop"] or ("steps_done" if fitted.info.get("status") == "done" else fitted.info.get("status"))
  return {"steps_done": done, "steps_planned": steps, "status": fitted.info.get("status"),
          "stop_reason": stop, "train_seconds": curve[-1][0], "curve": curve,
          "chunk_size": chunk_size, "config": fitted.config,
          **({"grid_checks": grid_checks} if grid_checks else {})}


def run_one(contender: str, target: str, args) -> dict:
  import jax
  train, heldout = split(target, args.n, args.n_heldout, args.seed)
  out = {"contender": contender, "target": target, "seed": args.seed, "dim": int(train.shape[1]),
         "n_train": int(train.shape[0]), "n_heldout": int(heldout.shape[0]),
         "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
         "xla_flags": os.environ.get("XLA_FLAGS"), "jax_devices": [str(d) for d in jax.devices()]}
  true_lp = true_log_density(target, heldout)
  out["true_nll"] = float(-np.mean(true_lp)) if true_lp is not None else None
  t = time.perf_counter()
  if contender in FLOWJAX:
    recipe = dict(FLOWJAX_RECIPE, learning_rate=args.flowjax_lr, batch_size=args.flowjax_batch,
                  max_epochs=args.flowjax_max_epochs, max_patience=args.flowjax_patience)
    r = run_flowjax(contender, train, heldout, seed=args.seed, max_seconds=args.max_seconds,
                    eval_every=args.eval_every, eval_every_steps=args.eval_every_steps, recipe=recipe)
  elif contender in PROJECT:
    r = run_project(contender, train, heldout, seed=args.seed, max_seconds=args.max_seconds,
                    eval_every=args.eval_every, eval_every_steps=args.eval_every_steps,
                    chunk_size=args.chunk_size, steps=args.steps)
  else:
    raise ValueError(f"unknown contender {contender!r}; choose from {CONTENDERS}")
  out.update(r)
  out["wall_seconds"] = time.perf_counter() - t
  return out


# ----------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------


def cpu_model() -> str | None:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.lower().startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def machine() -> dict:
  from run import machine_info  # benchmarks/run.py
  info = machine_info()
  info["cpu_model"] = cpu_model()
  try:
    from importlib.metadata import version
    info["flowjax_version"] = version("flowjax")
  except Exception:  # noqa: BLE001 - not installed
    info["flowjax_version"] = None
  try:
    info["load_average"] = [round(v, 2) for v in os.getloadavg()]
  except OSError:
    info["load_average"] = None
  return info


def child_command(contender: str, target: str, args, cpu) -> tuple[list[str], dict, str]:
  """(argv, env, how it is pinned) of the subprocess that runs one contender on one target."""
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--one", contender, target,
         "--seed", str(args.seed), "--max-seconds", str(args.max_seconds), "--n", str(args.n),
         "--n-heldout", str(args.n_heldout), "--eval-every", str(args.eval_every),
         "--chunk-size", str(args.chunk_size), "--flowjax-lr", str(args.flowjax_lr),
         "--flowjax-batch", str(args.flowjax_batch), "--flowjax-max-epochs", str(args.flowjax_max_epochs),
         "--flowjax-patience", str(args.flowjax_patience)]
  if args.eval_every_steps:
    cmd += ["--eval-every-steps", str(args.eval_every_steps)]
  if args.steps:
    cmd += ["--steps", str(args.steps)]
  env = dict(os.environ, XLA_FLAGS=XLA_FLAGS_ONE_THREAD, JAX_ENABLE_COMPILATION_CACHE="false",
             JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  pin = "none"
  if cpu is not None:
    if shutil.which("taskset"):
      cmd = ["taskset", "-c", str(cpu)] + cmd
      pin = f"taskset -c {cpu}"
    else:
      cmd += ["--pin", str(cpu)]
      pin = f"os.sched_setaffinity(0, {{{cpu}}})"
  return cmd, env, pin


def launch(contender: str, target: str, args, cpu):
  cmd, env, pin = child_command(contender, target, args, cpu)
  print(f"[peers] {contender} / {target} on cpu {cpu} ...", file=sys.stderr, flush=True)
  # output to files, not pipes: a pipe nobody reads while the pair's other process is awaited
  # could fill up and stall its writer
  out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
  proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=str(ROOT))
  return (proc, out, err), pin, time.perf_counter()


def collect(launched, pin, started, contender, target, timeout) -> dict:
  proc, out, err = launched
  try:
    proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - started)))
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    return {"contender": contender, "target": target, "error": f"timed out after {timeout:g} s", "pin": pin}
  finally:
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    out.close()
    err.close()
  for line in stdout.splitlines():
    if line.startswith(RESULT_PREFIX):
      r = json.loads(line[len(RESULT_PREFIX):])
      r["pin"] = pin
      best = best_of(r["curve"], 2)
      print(f"[peers]   {contender} / {target}: {r['steps_done']} steps in {r['train_seconds']:.1f} s, "
            f"best NLL {best if best is None else round(best, 3)}, "
            f"best ED {best_of(r['curve'], 3)} ({time.perf_counter() - started:.0f} s wall)",
            file=sys.stderr, flush=True)
      return r
  return {"contender": contender, "target": target, "pin": pin,
          "error": f"exited {proc.returncode} without a result: {stderr[-2000:]}"}


def _fmt(v, spec="{:.2f}"):
  return "-" if v is None else spec.format(v)


def markdown(out: dict) -> str:
  mi, cfg = out["machine"], out["config"]
  lines = [f"Machine: {mi.get('cpu_model')}, {mi['cpu_count']} cores ({mi['cpus_usable']} usable), load "
           f"average at start {mi.get('load_average')}; jax {mi['jax_version']}, flowjax "
           f"{mi.get('flowjax_version')}. {cfg['n']} training / {cfg['n_heldout']} held-out points "
           f"(digits: 1438 / 359), at most {cfg['max_seconds']:g} s of training clock per contender, "
           f"{'two at a time' if cfg['pairs'] else 'one at a time'}, one core each.", ""]
  for target, s in out["summary"].items():
    specs = list(s["nll_levels"])
    facs = list(s["ed_levels"])
    lines += [f"**{target}** (true NLL {_fmt(s['true_nll'], '{:.3f}')}; ED floor "
              f"{_fmt(s['ed_floor'], '{:.4f}')}; NLL levels "
              + ", ".join(f"{k} = {v:.3f}" for k, v in s["nll_levels"].items()) + ")", "",
              "| contender | steps | train s | stop | " + " | ".join(f"s to NLL {k}" for k in specs)
              + " | best NLL | " + " | ".join(f"s to ED {f}x floor" for f in facs) + " | best ED / floor |",
              "|" + "---|" * (5 + len(specs) + len(facs) + 1)]
    for name, r in s["contenders"].items():
      if "error" in r:
        lines.append(f"| {name} | error | " + " | ".join("" for _ in range(3 + len(specs) + len(facs) + 1)) + " |")
        continue
      lines.append(f"| {name} | {r['steps_done']} | {_fmt(r['train_seconds'], '{:.1f}')} | {r['stop_reason']} | "
                   + " | ".join(_fmt(r["time_to_nll"][k], "{:.1f}") for k in specs)
                   + f" | {_fmt(r['best_nll'], '{:.3f}')} | "
                   + " | ".join(_fmt(r["time_to_ed"][f], "{:.1f}") for f in facs)
                   + f" | {_fmt(r['best_ed_over_floor'], '{:.2f}')} |")
    lines += [f"{name}: the NLL of {r['nll_dropped_by_grid_check']} evaluation(s) is left out: its "
              "density depended on its RK4 grid (maflow's grid check)"
              for name, r in s["contenders"].items() if r.get("nll_dropped_by_grid_check")]
    lines.append("")
  return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--models", nargs="*", default=None, choices=PROJECT,
                 help="the project's models (default: maflow cmm; none: --models with no name)")
  p.add_argument("--flowjax", nargs="*", default=None, choices=list(FLOWJAX_KINDS),
                 help="flowjax's flows (default: coupling maf; none: --flowjax with no name)")
  p.add_argument("--targets", nargs="+", default=None, choices=TARGETS, help="default: all")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max-seconds", type=float, default=None, help="training clock per contender (default 120; quick 15)")
  p.add_argument("--n", type=int, default=None, help="training points of the drawn targets (default 4000; quick 1000)")
  p.add_argument("--n-heldout", type=int, default=None, help="held-out points of the drawn targets (default 2000; quick 500)")
  p.add_argument("--eval-every", type=float, default=None, help="training seconds between evaluations (default 2)")
  p.add_argument("--eval-every-steps", type=int, default=None, help="evaluate every this many steps instead")
  p.add_argument("--floor-pairs", type=int, default=None, help="fresh draws averaged for the ED floor (default 10; quick 2)")
  p.add_argument("--chunk-size", type=int, default=None, help="steps per cc.fit chunk (default 50)")
  p.add_argument("--steps", type=int, default=None, help="steps of the project's models (default: each model's)")
  p.add_argument("--nll-levels", nargs="+", default=None, metavar="[TARGET=]L1,L2",
                 help="held-out NLL levels: absolute (3.03), relative to the best seen (+0.1) or to "
                      "the true NLL (t+0.05); no TARGET= means every target not named; default "
                      "eight_gaussians=3.03,2.95,2.90,2.86, best + 0.05 d and + 0.025 d elsewhere")
  p.add_argument("--ed-factors", nargs="+", type=float, default=ED_FACTORS, help="ED levels in floors (default 3 2)")
  p.add_argument("--flowjax-lr", type=float, default=FLOWJAX_RECIPE["learning_rate"])
  p.add_argument("--flowjax-batch", type=int, default=FLOWJAX_RECIPE["batch_size"])
  p.add_argument("--flowjax-max-epochs", type=int, default=FLOWJAX_RECIPE["max_epochs"],
                 help="fit_to_data's max_epochs (default 100)")
  p.add_argument("--flowjax-patience", type=int, default=FLOWJAX_RECIPE["max_patience"],
                 help="fit_to_data's max_patience (default 5; -1: no early stopping)")
  p.add_argument("--pairs", action="store_true", help="run two contenders at once, one core each")
  p.add_argument("--cpus", type=int, nargs="+", default=[0], help="cores to pin to (default 0; --pairs: 0 1)")
  p.add_argument("--no-pin", action="store_true", help="do not pin the subprocesses to a core")
  p.add_argument("--quick", action="store_true", help="tiny settings: a smoke check, not a measurement")
  p.add_argument("--timeout", type=float, default=None, help="wall seconds per subprocess (default 10 x max-seconds + 300)")
  p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/peers.json; quick peers_quick.json)")
  p.add_argument("--markdown", default=None, help="also write a markdown table here")
  p.add_argument("--one", nargs=2, metavar=("CONTENDER", "TARGET"), help=argparse.SUPPRESS)
  p.add_argument("--pin", type=int, default=None, help=argparse.SUPPRESS)
  return p


def parse_args(argv=None):
  p = build_parser()
  args = p.parse_args(argv)
  base = QUICK if args.quick else FULL
  for k, v in base.items():
    if getattr(args, k, None) is None:
      setattr(args, k, v)
  args.contenders = contenders(args.flowjax, args.models)
  if not args.contenders and not args.one:
    p.error("no contender: give --models and/or --flowjax names")
  args.targets = args.targets or list(TARGETS)
  try:
    args.nll_levels_parsed = parse_nll_levels(args.nll_levels)
  except ValueError as e:
    p.error(str(e))
  if args.pairs and len(args.cpus) < 2 and not args.no_pin:
    args.cpus = [0, 1]
  if args.max_seconds <= 0 or args.n < 2 or args.n_heldout < 2:
    p.error("--max-seconds must be > 0 and --n, --n-heldout at least 2")
  return args


def main(argv=None):
  args = parse_args(argv)
  if args.one:
    if args.pin is not None:
      os.sched_setaffinity(0, {args.pin})
    r = run_one(args.one[0], args.one[1], args)
    print(RESULT_PREFIX + json.dumps(r), flush=True)
    return r

  timeout = args.timeout or 10 * args.max_seconds + 300
  cpus = [None] if args.no_pin else args.cpus
  info = machine()
  results, floors = {}, {}
  for target in args.targets:
    floors[target] = ed_floor(target, split(target, args.n, args.n_heldout, args.seed)[1], args.floor_pairs)
    per = {}
    group = 2 if args.pairs else 1
    for i in range(0, len(args.contenders), group):
      batch = args.contenders[i:i + group]
      procs = [(c, launch(c, target, args, cpus[j % len(cpus)])) for j, c in enumerate(batch)]
      for c, (proc, pin, started) in procs:
        per[c] = collect(proc, pin, started, c, target, timeout)
    results[target] = per
  out = {
      "benchmark": "peers",
      "command": " ".join(["python", "benchmarks/peers.py"] + list(sys.argv[1:] if argv is None else argv)),
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "machine": info,
      "config": {"contenders": args.contenders, "targets": args.targets, "seed": args.seed,
                 "max_seconds": args.max_seconds, "n": args.n, "n_heldout": args.n_heldout,
                 "eval_every": args.eval_every, "eval_every_steps": args.eval_every_steps,
                 "floor_pairs": args.floor_pairs, "chunk_size": args.chunk_size, "steps": args.steps,
                 "nll_levels": args.nll_levels_parsed, "ed_factors": args.ed_factors,
                 "flowjax_recipe": dict(FLOWJAX_RECIPE, learning_rate=args.flowjax_lr,
                                        batch_size=args.flowjax_batch, max_epochs=args.flowjax_max_epochs,
                                        max_patience=args.flowjax_patience),
                 "pairs": args.pairs, "cpus": None if args.no_pin else args.cpus, "quick": args.quick,
                 "xla_flags": XLA_FLAGS_ONE_THREAD, "compilation_cache": "off",
                 "load_average_end": [round(v, 2) for v in os.getloadavg()]},
      "ed_floors": floors,
      "results": results,
      "summary": summarise(results, floors, args.nll_levels_parsed, args.ed_factors),
  }
  from run import write_outputs  # benchmarks/run.py
  out_path = args.out or ("benchmarks/results/peers_quick.json" if args.quick else "benchmarks/results/peers.json")
  write_outputs(out, out_path, args.markdown, markdown, "peers")
  return out


if __name__ == "__main__":
  main()
