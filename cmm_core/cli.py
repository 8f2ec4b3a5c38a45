"""Command-line interface: ``python -m cmm_core fit|sample|list|info``.

>>> main(["fit", "--model", "cmm", "--target", "eight_gaussians", "--steps", "200",
...       "--out", "cmm.msgpack"])            # doctest: +SKIP
>>> main(["sample", "cmm.msgpack", "-n", "1000", "--out", "samples.csv"])  # doctest: +SKIP

Every user error (unknown model or target, a bad hyper-parameter, a missing or unreadable file)
prints one line ``error: ...`` to stderr and exits with status 2; no traceback. Set
``CMM_CORE_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import pathlib
import sys
import time
from typing import Optional, Sequence

__all__ = ["main", "build_parser", "parse_value", "parse_assignments", "parse_hyper", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "python -m cmm_core"
DEFAULT_TARGET = "eight_gaussians"
DEFAULT_N = 4096
PROGRESS_SECONDS = 2.0


class UsageError(ValueError):
  """A mistake in the command line; printed as ``error: ...`` with status 2."""


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage mistake is one line ``error: ...`` (status 2), not usage + message."""

  def error(self, message):  # noqa: D401 (argparse API)
    raise UsageError(f"{message} (see `{self.prog} --help`)")


# ----------------------------------------------------------------------------
# Parsing ``k=v`` options.
# ----------------------------------------------------------------------------


def parse_value(text: str):
  """A JSON-ish literal: ``3`` -> 3, ``1e-3`` -> 0.001, ``true``/``True`` -> True,
  ``[64, 64]`` or ``64,64`` -> [64, 64], ``null``/``None`` -> None; anything else stays a string."""
  s = text.strip()
  low = s.lower()
  if low in ("true", "false"):
    return low == "true"
  if low in ("null", "none"):
    return None
  for parse in (json.loads, ast.literal_eval):
    try:
      value = parse(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
      continue
    if isinstance(value, tuple):
      value = list(value)
    if isinstance(value, (bool, int, float, str, list)) or value is None:
      return value
  if "," in s:  # 64,64 without brackets
    parts = [parse_value(p) for p in s.split(",") if p.strip()]
    if parts and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
      return parts
  return s


def parse_assignments(items: Optional[Sequence[str]], what: str, parse=None) -> dict:
  """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values read by ``parse``, default
  :func:`parse_value`); UsageError for an item without ``=``."""
  parse = parse_value if parse is None else parse
  out = {}
  for item in items or []:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
      raise UsageError(f"--{what} expects NAME=VALUE, got {item!r}")
    if key in out:
      raise UsageError(f"--{what} {key} is given twice")
    out[key] = parse(value)
  return out


def parse_hyper(model: str, items: Optional[Sequence[str]], schema=None) -> dict:
  """``--hyper NAME=VALUE`` items read through the model's schema (``cmm_core.hyper.parse``; or
  ``schema``, e.g. an energy route's): UsageError for an unknown name, ValueError naming the
  parameter for a bad value."""
  from cmm_core import hyper, models
  schema = models.get(model).schema if schema is None else schema
  texts = parse_assignments(items, "hyper", parse=str)
  known = [h.name for h in schema]
  unknown = sorted(set(texts) - set(known))
  if unknown:
    raise UsageError(f"unknown hyper-parameter(s) for {model!r}: {', '.join(unknown)}; "
                     f"known: {', '.join(sorted(known))}")
  entries = hyper.by_name(schema)
  return {k: hyper.parse(model, entries[k], text) for k, text in texts.items()}


# ----------------------------------------------------------------------------
# The commands.
# ----------------------------------------------------------------------------


def _err(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _check_out(path: str, suffixes: Sequence[str]) -> pathlib.Path:
  """Fails before any work if ``path`` cannot be written (missing folder, a folder itself)."""
  p = pathlib.Path(path).expanduser()
  if p.is_dir():
    raise UsageError(f"--out {path!r} is a folder; give a file name")
  parent = p.parent if str(p.parent) else pathlib.Path(".")
  if not parent.is_dir():
    raise UsageError(f"the folder of --out {path!r} does not exist")
  if suffixes and p.suffix.lower() not in suffixes:
    raise UsageError(f"--out {path!r} must end in {' or '.join(suffixes)}")
  return p


def _load_model(path: str):
  import cmm_core as cc
  p = pathlib.Path(path).expanduser()
  if p.is_dir():
    raise cc.DataError(f"{path!r} is a folder, not a model file")
  if not p.is_file():
    raise cc.DataError(f"model file not found: {path!r}")
  return cc.load(p)


def _data_for_fit(args) -> tuple:
  """``(data [n, d], description)`` from ``--target``/``--param``/``--n`` or ``--data``."""
  from cmm_core import targets
  from cmm_core.errors import DataError
  params = parse_assignments(args.param, "param")
  if args.data is not None:
    if args.target is not None:
      raise UsageError("give either --target or --data, not both")
    if params:
      raise UsageError("--param applies to --target, not to --data")
    if args.n is not None:
      raise UsageError("--n applies to --target; a --data file is used whole")
    try:
      data = targets.load_file(args.data)
    except DataError as e:
      name = pathlib.Path(args.data).name
      raise DataError(str(e) if name in str(e) else f"{args.data}: {e}") from None
    return data, f"{pathlib.Path(args.data).name} ({data.shape[0]} points in {data.shape[1]}D)"
  name = args.target or DEFAULT_TARGET
  if name not in targets.names():
    raise UsageError(f"unknown target {name!r}; choose one of: {', '.join(targets.names())} "
                     f"(or --data FILE)")
  n = DEFAULT_N if args.n is None else args.n
  data = targets.make(name, n, seed=args.seed, **params)
  extra = "".join(f", {k}={v}" for k, v in sorted(params.items()))
  return data, f"{name} (n={n}, seed={args.seed}{extra})"


def _decode_link(link: str, pages: str) -> dict:
  """``share.decode`` of a link's query string (the whole address or the query alone); prints its
  refused values as warnings. UsageError when it holds no settings."""
  import urllib.parse

  from cmm_core import share
  text = link.strip()
  query = urllib.parse.urlsplit(text).query if "?" in text else (text if "=" in text else "")
  params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
  if not params:
    raise UsageError(f"--link: no settings found in {link!r}; copy the address of the app's {pages} page")
  decoded = share.decode(params)
  for problem in decoded["problems"]:
    _err(f"warning: {problem}")
  return decoded


def _energy_link(args) -> None:
  """Sets ``args``' energy, model, steps and seed from a Sample an energy link, or a link of
  Compare's energy entry (its budget: steps, or seconds as --max-seconds); the command line's own
  --model, --steps, --seed, --max-seconds win."""
  if any(v is not None for v in (args.energy, args.formula, args.param, args.dim)):
    raise UsageError("--link brings its own energy: drop --energy, --formula, --param and --dim")
  e = _decode_link(args.link, "Sample an energy")["energy"]
  if e is None:
    raise UsageError("--link is not a Sample an energy link (it has no energy= or formula=)")
  if e["source"] == "builtin":
    args.energy = e["name"]
    args.param = [f"{k}={v}" for k, v in e["params"].items()]
  else:
    args.formula, args.dim = e["text"], e["dim"]
  if args.model is None and e["models"]:
    if len(e["models"]) > 1:
      raise UsageError(f"--link fits {', '.join(e['models'])}; pick one with --model")
    args.model = e["models"][0]
  steps = e["steps"]
  if e["mode"] == "steps":            # a link of Compare's energy entry: its budget
    steps = int(e["value"])
  elif e["mode"] == "seconds":
    from cmm_core.limits import MAX_ENERGY_STEPS
    steps = MAX_ENERGY_STEPS
    args.max_seconds = args.max_seconds if args.max_seconds is not None else float(e["value"])
  args.steps = args.steps if args.steps is not None else steps
  args.seed = args.seed if args.seed is not None else e["seed"]


def _link_settings(args) -> dict:
  """What a shareable link asks ``fit`` for: ``{"model", "steps", "seed", "hyper": {model: {...}},
  "data" [n, d], "label", "source"}``; the link's refused values are printed as warnings."""
  from cmm_core import target_spec
  if any(v is not None for v in (args.target, args.data, args.param, args.n)):
    raise UsageError("--link brings its own target: drop --target, --data, --param and --n")
  decoded = _decode_link(args.link, "Train & explore or Compare")
  if decoded["energy"] is not None:
    raise UsageError("--link is a Sample an energy link: run `fit-energy --link URL`")
  spec = decoded["target"]
  if spec is None:
    raise UsageError("--link: the link names no target the command line can rebuild (uploads and "
                     "regions drawn with the mouse do not travel in links)")
  train, compare = decoded["train"] or {}, decoded["compare"]
  model, hyper = train.get("model"), {}
  if train.get("model") and train.get("hyper"):
    hyper = {train["model"]: dict(train["hyper"])}
  if compare is not None:
    hyper = {m: dict(h) for m, h in (compare.get("hyper") or {}).items()}
    if args.model is None:
      raise UsageError(f"--link is a Compare link (models {', '.join(compare['models'])}); "
                       "pick one with --model")
  built = target_spec.build(spec)
  source = spec.get("name") or spec["kind"].replace(" ", "_").lower()
  return {"model": model, "steps": train.get("steps"),
          "seed": train.get("seed") if train.get("seed") is not None else (compare or {}).get("seed"),
          "hyper": hyper, "data": built.data, "label": built.label, "source": source,
          "dequantize": target_spec.dequantized_counts(built.spec)}


def _cmd_fit(args) -> int:
  import dataclasses

  import cmm_core as cc
  from cmm_core.api import MAX_STEPS
  link = _link_settings(args) if args.link is not None else None
  if link is not None:
    args.model = args.model or link["model"]
    args.seed = link["seed"] if args.seed is None else args.seed
    args.steps = link["steps"] if args.steps is None else args.steps
  args.model = args.model or "cmm"
  args.seed = 0 if args.seed is None else args.seed
  if args.model not in cc.models.names():
    raise UsageError(f"unknown model {args.model!r}; choose one of: {', '.join(cc.models.names())}")
  cls = cc.models.get(args.model)
  hyper = {**(link["hyper"].get(args.model, {}) if link else {}),
           **parse_hyper(args.model, args.hyper)}
  cls(**hyper)  # the cross-parameter rules, now (ValueError naming the bad one), before any output
  if link is not None:
    source = link["source"]
    data, described = link["data"], link["label"]
  else:
    source = pathlib.Path(args.data).stem if args.data is not None else args.target or DEFAULT_TARGET
  out = _check_out(args.out or f"{args.model}_{source}.msgpack", (".msgpack",))
  if link is None:
    data, described = _data_for_fit(args)
  steps = cls.default_steps if args.steps is None else args.steps
  if steps > MAX_STEPS:
    raise UsageError(f"--steps must be at most {MAX_STEPS}, got {steps}")
  last = {"fitted": None, "printed": -math.inf}

  def progress(step, record, fitted):
    last["fitted"] = fitted
    now = time.perf_counter()
    # one line per chunk, at most one every PROGRESS_SECONDS (and always the last one)
    if not args.quiet and (now - last["printed"] >= PROGRESS_SECONDS or step >= steps):
      last["printed"] = now
      _err(f"step {step}/{steps}  loss {record['loss']:.5g}  {record['seconds']:.1f} s")

  if not args.quiet:
    _err(f"fitting {args.model} to {described}, {steps} steps, seed {args.seed}")
  t0 = time.perf_counter()
  interrupted = False
  try:
    fitted = cc.fit(args.model, data, steps=steps, seed=args.seed, callback=progress,
                    max_seconds=args.max_seconds, dequantize=bool(link and link["dequantize"]),
                    **hyper)
  except KeyboardInterrupt:
    if last["fitted"] is None:
      _err("interrupted before the first chunk of steps; nothing saved")
      return EXIT_INTERRUPTED
    interrupted, fitted = True, last["fitted"]
    done = fitted.history[-1]["step"]
    fitted = dataclasses.replace(fitted, info={
        **fitted.info, "status": "stopped", "steps_done": done,
        "message": f"interrupted at step {done}; the last completed chunk was saved"})
  seconds = time.perf_counter() - t0
  fitted = dataclasses.replace(fitted, info={**fitted.info, "trained_on": described})
  fitted.save(out)
  done = fitted.history[-1]["step"] if fitted.history else 0
  status = fitted.info.get("status", "done")
  loss = fitted.history[-1]["loss"] if fitted.history else math.nan
  if fitted.info.get("message") and status != "done":
    _err(f"warning: {fitted.info['message']}")
  for warning in fitted.info.get("warnings") or []:  # what the app shows under the fit
    _err(f"warning: {warning}")
  print(f"model {fitted.model}  steps {done}/{steps}  seconds {seconds:.1f}  status {status}  "
        f"loss {loss:.5g}  saved {out}", flush=True)
  if interrupted:
    return EXIT_INTERRUPTED
  return EXIT_DIVERGED if status == "diverged" else EXIT_OK


def _cmd_fit_energy(args) -> int:
  import cmm_core as cc
  from cmm_core import energies, formula, metrics
  from cmm_core.api import MAX_STEPS
  if args.link is not None:
    _energy_link(args)
  args.model = args.model or "maflow"
  args.seed = 0 if args.seed is None else args.seed
  if args.model not in cc.api.energy_models():
    raise UsageError(f"model {args.model!r} cannot fit an energy; choose one of: "
                     f"{', '.join(cc.api.energy_models())}")
  if (args.energy is None) == (args.formula is None):
    raise UsageError("give either --energy NAME (see `list`) or --formula TEXT")
  params = parse_assignments(args.param, "param")
  if args.formula is not None:
    if params:
      raise UsageError("--param applies to --energy, not to --formula")
    energy = formula.parse(args.formula, dim=args.dim)
    source = "formula"
  else:
    if args.energy not in energies.names():
      raise UsageError(f"unknown energy {args.energy!r}; choose one of: {', '.join(energies.names())}")
    energy, source = energies.make(args.energy, **params), args.energy
  cls = cc.api.energy_model(args.model)
  given = parse_hyper(args.model, args.hyper, cls.schema)
  settings, why = cc.api.energy_settings(args.model, energy)  # as the app: lattices, measured ones
  hyper = {**settings, **given}   # --hyper wins
  cls(energy, **hyper)  # the energy route's own settings and cross-parameter rules, before any output
  out = _check_out(args.out or f"{args.model}_{source}.msgpack", (".msgpack",))
  steps = cls.default_steps if args.steps is None else args.steps
  if steps > MAX_STEPS:
    raise UsageError(f"--steps must be at most {MAX_STEPS}, got {steps}")
  printed = [-math.inf]

  def progress(step, record, fitted):
    now = time.perf_counter()
    if not args.quiet and (now - printed[0] >= PROGRESS_SECONDS or step >= steps):
      printed[0] = now
      _err(f"step {step}/{steps}  free energy {record['loss']:.5g}  {record['seconds']:.1f} s")

  if not args.quiet:
    _err(f"fitting {args.model} to the energy {energy.label} ({energy.dim}D), {steps} steps, "
         f"seed {args.seed}")
    used = {k: v for k, v in settings.items() if k not in given}
    if used:
      _err("settings beyond the defaults, as the app uses them: "
           + ", ".join(f"{k}={v}" for k, v in used.items()) + f" ({why})")
  t0 = time.perf_counter()
  fitted = cc.fit_energy(args.model, energy, steps=steps, seed=args.seed, callback=progress,
                         max_seconds=args.max_seconds, **hyper)
  seconds = time.perf_counter() - t0
  fitted.save(out)
  status = fitted.info.get("status", "done")
  if fitted.info.get("message") and status != "done":
    _err(f"warning: {fitted.info['message']}")
  m = metrics.free_energy_metrics(fitted, energy, seed=0)
  exact = "" if m.log_z is None else f"  log Z {m.log_z:.5g}  gap {m.gap:.4f}"
  print(f"model {fitted.model}  energy {energy.label}  steps {fitted.info['steps_done']}/{steps}  "
        f"seconds {seconds:.1f}  status {status}  ELBO {m.elbo:.5g}  IW log Z {m.iw_log_z:.5g}  "
        f"ESS {m.ess / m.n:.0%}{exact}  saved {out}", flush=True)
  return EXIT_DIVERGED if status == "diverged" else EXIT_OK


def _cmd_sample(args) -> int:
  import numpy as np

  from cmm_core import io
  from cmm_core.models.base import check_n
  n = check_n(args.n)
  to_stdout = args.out in (None, "-")
  out = None if to_stdout else _check_out(args.out, (".csv", ".npy"))
  fitted = _load_model(args.model_file)
  if out is not None and out.suffix.lower() == ".npy":
    points = fitted.sample_base(n, args.seed) if args.base else fitted.sample(n, args.seed)
    np.save(out, np.asarray(points, dtype=np.float32))
  else:
    blob = io.samples_csv(fitted, n, args.seed, base=args.base)
    if to_stdout:
      sys.stdout.write(blob.decode("utf-8"))
      sys.stdout.flush()
      return EXIT_OK
    out.write_bytes(blob)
  _err(f"wrote {n} {'base ' if args.base else ''}samples of {fitted.model} ({fitted.dim}D, seed "
       f"{args.seed}) to {out}")
  return EXIT_OK


def _fmt(v) -> str:
  """A value as it would be typed after ``--hyper NAME=`` (strings bare, lists and bools as JSON)."""
  if isinstance(v, str):
    return v
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, (list, tuple, dict, bool)) or v is None:
    return json.dumps(v, default=str, ensure_ascii=False)
  return str(v)


def _cmd_list(args) -> int:
  import dataclasses

  import cmm_core as cc
  from cmm_core import api, energies, hyper, targets
  if args.json:
    out = {"models": {m: {"label": cc.models.LABELS.get(m, m),
                          "defaults": dict(cc.models.get(m).defaults),
                          "hyper": {h.name: {k: v for k, v in dataclasses.asdict(h).items()
                                             if k != "name"}
                                    for h in cc.models.get(m).schema},
                          "default_steps": cc.models.get(m).default_steps}
                      for m in cc.models.names()},
           "targets": {t: targets.info(t) for t in targets.names()},
           "energy_models": {m: {"default_steps": api.energy_model(m).default_steps,
                                 "hyper": {h.name: {k: v for k, v in dataclasses.asdict(h).items()
                                                    if k != "name"}
                                           for h in api.energy_model(m).schema}}
                             for m in api.energy_models()},
           "energies": {e: {"description": energies.describe(e),
                            "params": {h.name: {k: v for k, v in dataclasses.asdict(h).items()
                                                if k != "name"} for h in energies.schema(e)}}
                        for e in energies.names()}}
    print(json.dumps(out, indent=2, default=list, ensure_ascii=False))
    return EXIT_OK
  print("models (--model NAME; --hyper NAME=VALUE):")
  for m in cc.models.names():
    cls = cc.models.get(m)
    print(f"  {m:<9} {cc.models.LABELS.get(m, m)}")
    print(f"            {cls.default_steps} steps by default; hyper-parameters:")
    width = max(len(h.name) for h in cls.schema)
    for h in cls.schema:
      print(f"              {h.name:<{width}}  {hyper.describe(h)}")
  print("targets (--target NAME; --param NAME=VALUE):")
  for t in targets.names():
    inf = targets.info(t)
    params = ", ".join(f"{k}={_fmt(p['default'])} [{_fmt(p['min'])}, {_fmt(p['max'])}]"
                       for k, p in inf["params"].items()) or "no parameters"
    print(f"  {t:<16} {inf['dim']}D  {params}")
  print("energy models (fit-energy --model NAME; --hyper NAME=VALUE as for the model above; "
        "cmm's energy route adds:)")
  for m in api.energy_models():
    cls, base = api.energy_model(m), cc.models.get(m)
    extra = [h for h in cls.schema if h.name not in base.defaults]
    print(f"  {m:<9} {cls.default_steps} steps by default"
          + "".join(f"; {h.name}: {hyper.describe(h)}" for h in extra))
  print("energies (fit-energy --energy NAME; --param NAME=VALUE):")
  for e in energies.names():
    params = ", ".join(f"{h.name}={_fmt(h.default)}" for h in energies.schema(e)) or "mean, cov"
    print(f"  {e:<14} {energies.describe(e)}  [{params}]")
  return EXIT_OK


def _cmd_info(args) -> int:
  fitted = _load_model(args.model_file)
  last = fitted.history[-1] if fitted.history else {}
  if args.json:
    print(json.dumps({"model": fitted.model, "config": fitted.config, "info": fitted.info,
                      "last_record": last, "records": len(fitted.history)}, indent=2, default=str,
                     ensure_ascii=False))
    return EXIT_OK
  print(f"model: {fitted.model}")
  print("config:")
  for k, v in fitted.config.items():
    print(f"  {k}: {_fmt(v)}")
  print("info:")
  for k, v in fitted.info.items():
    print(f"  {k}: {_fmt(v)}")
  print(f"last record ({len(fitted.history)} in all):")
  for k, v in last.items():
    print(f"  {k}: {_fmt(v)}")
  return EXIT_OK


# ----------------------------------------------------------------------------
# The parser.
# ----------------------------------------------------------------------------


def _nonneg_int(text: str) -> int:
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
  if v < 0:
    raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
  return v


def _pos_int(text: str) -> int:
  v = _nonneg_int(text)
  if v < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return v


def _pos_float(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    v = math.nan
  if not v > 0 or not math.isfinite(v):
    raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
  return v


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog=PROG, description=(
      "Fit convex-potential generative models, sample them and inspect saved models. "
      "Models are saved as msgpack files (a JSON header and arrays, never pickle) that "
      "cmm_core.load and the app's Train & explore page read."),
      epilog="Exit status: 0 on success, 2 for a usage or data error, 1 for a diverged fit or an "
             "internal error, 130 when interrupted. Run `COMMAND --help` for the options of each.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

  f = sub.add_parser("fit", help="fit a model to a built-in target or a data file and save it",
                     description="Fit a model and save it. Progress goes to stderr, then one summary "
                                 "line (model, steps, seconds, status, loss, file) to stdout. Ctrl-C "
                                 "saves the last completed chunk of steps.")
  f.add_argument("--model", metavar="NAME",
                 help="model id (default cmm, or the link's); see `list`")
  f.add_argument("--link", metavar="URL",
                 help="fit the target, model and settings of an app's shareable link (the address "
                      "of a Train & explore or Compare page, or its query string); --model, "
                      "--steps, --seed and --hyper override the link's")
  f.add_argument("--target", metavar="NAME",
                 help=f"built-in target (default {DEFAULT_TARGET}); see `list`")
  f.add_argument("--data", metavar="FILE",
                 help="fit this CSV/TSV/NPY/NPZ file instead of a built-in target")
  f.add_argument("--param", action="append", metavar="NAME=VALUE",
                 help="a target parameter, e.g. --param noise=0.2 (repeatable)")
  f.add_argument("--n", type=_pos_int, metavar="N",
                 help=f"number of target points (default {DEFAULT_N})")
  f.add_argument("--steps", type=_pos_int, metavar="N",
                 help="training steps (default: the model's default)")
  f.add_argument("--seed", type=_nonneg_int,
                 help="seeds the target draw and the training (default 0; with --link, the "
                      "training only: the link's target keeps its own seed)")
  f.add_argument("--hyper", action="append", metavar="NAME=VALUE",
                 help="a model hyper-parameter, e.g. --hyper learning_rate=1e-3 --hyper hidden=64,64 "
                      "--hyper activation=relu --hyper latent_dim=auto (repeatable; `list` shows "
                      "each model's with its type, default and bounds)")
  _training_outputs(f, "MODEL_TARGET.msgpack")
  f.set_defaults(run=_cmd_fit)

  e = sub.add_parser("fit-energy", help="fit a model to an energy known up to a constant and save it",
                     description="Fit a model to a density exp(-E) / Z by minimising the variational "
                                 "free energy (reverse KL), and save it. Progress goes to stderr, then "
                                 "one summary line (ELBO, importance-weighted log Z, its effective "
                                 "sample size, and the gap to the exact log Z where known).")
  e.add_argument("--model", metavar="NAME", help="model id: maflow (default) or cmm")
  e.add_argument("--link", metavar="URL",
                 help="fit the energy, model and settings of a Sample an energy page's shareable link; "
                      "--model, --steps and --seed override the link's")
  e.add_argument("--energy", metavar="NAME", help="a built-in energy, e.g. ring, ising; see `list`")
  e.add_argument("--formula", metavar="TEXT",
                 help="an energy typed in x1, x2, ..., e.g. '(|x| - 2)^2 / 0.32'")
  e.add_argument("--dim", type=_pos_int, metavar="D",
                 help="the dimension of a --formula (default: the highest x_k it uses)")
  e.add_argument("--param", action="append", metavar="NAME=VALUE",
                 help="a parameter of the built-in energy, e.g. --param L=4 (repeatable)")
  e.add_argument("--steps", type=_pos_int, metavar="N",
                 help="training steps (default: the model's default)")
  e.add_argument("--seed", type=_nonneg_int, help="seeds the training (default 0)")
  e.add_argument("--hyper", action="append", metavar="NAME=VALUE",
                 help="a model hyper-parameter, as for `fit` (repeatable)")
  _training_outputs(e, "MODEL_ENERGY.msgpack")
  e.set_defaults(run=_cmd_fit_energy)

  s = sub.add_parser("sample", help="draw samples from a saved model",
                     description="Draw samples from a saved model; CSV with a header x1,x2,... "
                                 "(or .npy), to --out or stdout.")
  s.add_argument("model_file", metavar="MODEL.msgpack", help="a model saved by `fit` or the app")
  s.add_argument("-n", type=_pos_int, default=1000, metavar="N",
                 help="number of samples (default 1000)")
  s.add_argument("--seed", type=_nonneg_int, default=0,
                 help="the same seed gives the same samples (default 0)")
  s.add_argument("--base", action="store_true", help="sample the base distribution instead")
  s.add_argument("--out", metavar="FILE", help="a .csv or .npy file (default: CSV to stdout)")
  s.set_defaults(run=_cmd_sample)

  ls = sub.add_parser("list", help="the models (with their hyper-parameters) and targets",
                      description="List the model ids with their labels and hyper-parameters "
                                  "(type, bounds or choices, default, what it does), and the "
                                  "built-in targets with their parameters.")
  ls.add_argument("--json", action="store_true", help="print JSON")
  ls.set_defaults(run=_cmd_list)

  i = sub.add_parser("info", help="what a saved model file holds",
                     description="Print a saved model's id, configuration, fit info and last "
                                 "training record.")
  i.add_argument("model_file", metavar="MODEL.msgpack")
  i.add_argument("--json", action="store_true", help="print JSON")
  i.set_defaults(run=_cmd_info)
  return parser


def _training_outputs(p, default_out: str) -> None:
  """The options ``fit`` and ``fit-energy`` share: the time budget, the file, the progress lines."""
  p.add_argument("--max-seconds", type=_pos_float, metavar="S",
                 help="stop training after this many seconds (the model is kept; a decaying "
                      "learning rate decays over the steps the budget is measured to hold)")
  p.add_argument("--out", metavar="FILE.msgpack",
                 help=f"where to save the model (default {default_out})")
  p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
  from cmm_core.errors import DataError
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
      raise UsageError(f"choose a command: fit, fit-energy, sample, list or info (see `{PROG} --help`)")
    from cmm_core import compile_cache
    compile_cache.enable()  # a second run compiles nothing it compiled before
    return args.run(args)
  except (UsageError, DataError, ValueError) as e:
    _err(f"error: {e}")
    return EXIT_USAGE
  except BrokenPipeError:  # e.g. `... | head`: the reader left; not an error
    try:
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
      pass
    return EXIT_OK
  except OSError as e:
    what = f"{e.strerror}: {e.filename!r}" if e.strerror and e.filename else str(e)
    _err(f"error: {what}")
    return EXIT_USAGE
  except KeyboardInterrupt:
    _err("interrupted")
    return EXIT_INTERRUPTED
  except Exception as e:  # a bug: one line, unless debugging
    if os.environ.get("CMM_CORE_DEBUG"):
      raise
    _err(f"error: internal error ({type(e).__name__}: {e}); set CMM_CORE_DEBUG=1 for the traceback")
    return EXIT_INTERNAL
