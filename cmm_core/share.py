"""An experiment as a URL query string, and back: what a shareable link of the app holds.

The app writes the current target, the model and its settings into the address bar so that a
link opens the same experiment. Everything here is pure (no Streamlit): :func:`encode` turns the
app's dicts into ``{name: str}`` query parameters and :func:`decode` reads them back, checking
every value and keeping only those the app can use (a link may be edited by hand).

Query parameters (all optional):

- target: ``target=<toy name>`` with ``n``, ``data_seed`` and ``t.<param>``;
  ``target=normal`` (a Gaussian of chosen mean and covariance) with ``mean=0,0``,
  ``std=2,0.5``, ``angle=30``, ``n``, ``data_seed``;
  ``target=data.<data set>`` with ``columns=a,b`` and ``standardize=1``;
  ``target=points`` with ``points=x,y;x,y;...``, ``spread``, ``n``, ``data_seed``.
  Uploaded files and regions drawn with the mouse have no link form.
- Train page: ``model``, ``steps``, ``seed``, ``hp.<name>`` (hyper-parameters that differ from
  the model's defaults, in the text form of ``cmm_core.hyper``: layer widths as ``64,64``,
  booleans as ``1``/``0``; each is checked against the model's schema).
- Compare page: ``models=cmm,maflow``, ``budget=default|steps:N|seconds:S``, ``seed``,
  ``hp.<model>.<name>``.
- Sample an energy page: ``energy=<built-in>`` with ``e.<param>`` (its parameters), or
  ``formula=<text>`` with ``dim`` and ``box`` (the half-width); ``fit=maflow,cmm`` (the models),
  ``steps``, ``seed``, ``mcmc=mala|hmc|nuts`` and ``mcmc_step``. The same with ``budget`` instead of
  ``steps`` is the Compare page's energy entry (its models fitted under one budget).
- ``run=1``: start training (Train page, Sample an energy page) or the comparison (Compare page) as
  the link opens.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from cmm_core import datasets, hyper, models, target_spec, targets
from cmm_core.target_spec import Kind

__all__ = ["encode", "decode", "SIZES", "TARGET_KEYS"]

from cmm_core.limits import MAX_APP_SEED, SIZES, MAX_SPREAD, MAX_POINTS, MAX_SECONDS  # noqa: F401 (re-exported)
from cmm_core.limits import MAX_ENERGY_STEPS, MAX_FORMULA_DIM
MAX_SEED = MAX_APP_SEED  # links carry the pages' seeds
GAUSSIAN_BOUNDS = {"mean": (-10.0, 10.0), "std": (0.01, 10.0), "angle": (0, 180)}
TARGET_KEYS = ("target", "n", "data_seed", "mean", "std", "angle", "columns", "standardize",
               "points", "spread")


def _num(x: float) -> str:
  """Shortest text that reads back as the same float (``0.1``, ``1e-05``, ``3``)."""
  x = float(x)
  return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _value_text(v: Any) -> str:
  if isinstance(v, bool):
    return "1" if v else "0"
  if isinstance(v, (int, float)):
    return _num(v)
  if isinstance(v, (tuple, list)):
    return ",".join(_value_text(x) for x in v)
  return str(v)


def _encode_target(spec: Mapping) -> dict:
  try:
    kind = target_spec.kind_of(spec)
  except ValueError:
    return {}
  if kind in (Kind.TOY_1D, Kind.TOY_2D):
    out = {"target": spec["name"], "n": str(spec["n"]), "data_seed": str(spec["seed"])}
    info = targets.info(spec["name"])["params"]
    for p, v in sorted(spec.get("params", {}).items()):
      if p in info and v != info[p]["default"]:
        out[f"t.{p}"] = _num(v)
    return out
  if kind is Kind.GAUSSIAN:
    out = {"target": "normal", "mean": _value_text(spec["mean"]),
           "std": _value_text(spec["stds"]), "n": str(spec["n"]), "data_seed": str(spec["seed"])}
    if len(spec["mean"]) == 2:
      out["angle"] = _num(spec["angle"])
    return out
  if kind is Kind.REAL:
    out = {"target": f"data.{spec['name']}", "columns": ",".join(spec["columns"])}
    if datasets.image_shape(spec["name"]) is not None:  # images are fitted whole: no column list
      out.pop("columns")
    if spec.get("standardize"):
      out["standardize"] = "1"
    return out
  if kind is Kind.DRAW and spec.get("mode") == "typed":
    pts = ";".join(",".join(_num(round(c, 4)) for c in p) for p in spec["points"])
    return {"target": "points", "points": pts, "spread": _num(spec["spread"]),
            "n": str(spec["n"]), "data_seed": str(spec["seed"])}
  return {}


def _hyper_params(model: str, values: Optional[Mapping], prefix: str) -> dict:
  """``{prefix}{name}: text`` for hyper-parameters, in the schema's text form (``64,64``, ``1``
  for True); a name the model does not have is written as plain text (decode reports it)."""
  entries = hyper.by_name(models.get(model).schema) if model in models.names() else {}
  return {f"{prefix}{k}": hyper.format_value(entries[k], v) if k in entries else _value_text(v)
          for k, v in sorted((values or {}).items())}


def encode(target_spec: Optional[Mapping] = None, train: Optional[Mapping] = None,
           compare: Optional[Mapping] = None, energy: Optional[Mapping] = None) -> dict:
  """Query parameters ``{name: str}`` for a target spec (as the Target page stores it) and the
  settings of the Train page (``{"model", "steps", "seed", "hyper"}``) or of the Compare page
  (``{"models", "mode", "value", "seed", "hyper": {model: {...}}}``). ``hyper`` holds only the
  values that differ from the defaults. A target with no link form (an upload, a drawing) gives
  no target parameters. ``energy``: the Sample an energy page's ``{"source": "builtin", "name",
  "params"}`` or ``{"source": "formula", "text", "dim", "box"}``, with ``"models"``, ``"steps"``,
  ``"seed"``, ``"method"``, ``"step_size"`` (then no target); with ``"mode"`` (and ``"value"``) a
  Compare budget in place of ``"steps"`` (the Compare page's energy entry)."""
  if energy:
    return _encode_energy(energy)
  out = _encode_target(target_spec) if target_spec else {}
  if train:
    out.update(model=train["model"], steps=str(int(train["steps"])), seed=str(int(train["seed"])))
    out.update(_hyper_params(train["model"], train.get("hyper"), "hp."))
  if compare:
    out["models"] = ",".join(compare["models"])
    out["budget"] = _budget_text(compare.get("mode", "default"), compare.get("value"))
    out["seed"] = str(int(compare["seed"]))
    for m, values in sorted((compare.get("hyper") or {}).items()):
      out.update(_hyper_params(m, values, f"hp.{m}."))
  return out


def _encode_energy(e: Mapping) -> dict:
  if e["source"] == "builtin":
    from cmm_core import energies
    defaults = {h.name: h.default for h in energies.schema(e["name"])}
    out = {"energy": e["name"]}
    out.update({f"e.{k}": _value_text(v) for k, v in sorted(e.get("params", {}).items())
                if k not in defaults or v != defaults[k]})   # the parameters that differ
  else:
    out = {"formula": e["text"], "dim": str(int(e["dim"])), "box": _num(float(e["box"]))}
  out["fit"] = ",".join(e["models"])
  if e.get("mode") is not None:   # the Compare page's energy entry: a budget instead of steps
    out["budget"] = _budget_text(e["mode"], e.get("value"))
  else:
    out["steps"] = str(int(e["steps"]))
  out.update(seed=str(int(e["seed"])), mcmc=e["method"], mcmc_step=_num(float(e["step_size"])))
  return out


def _budget_text(mode: str, value) -> str:
  return mode if mode == "default" else f"{mode}:{_num(value)}"


class _Reader:
  """Reads values from query parameters; each bad value becomes a problem and ``None``."""

  def __init__(self, params: Mapping[str, Any]):
    self.params = {str(k): (v[-1] if isinstance(v, (list, tuple)) else str(v))
                   for k, v in params.items()}
    self.problems: list[str] = []

  def bad(self, key: str, why: str) -> None:
    self.problems.append(f"{key}={self.params.get(key, '')!r} in the link: {why}; it is ignored.")

  def number(self, key: str, lo: float, hi: float, integer: bool = False, text=None):
    text = self.params.get(key) if text is None else text
    if text is None:
      return None
    try:
      x = float(text)
    except ValueError:
      return self.bad(key, "not a number")
    if not math.isfinite(x) or not lo <= x <= hi or (integer and not x.is_integer()):
      kind = "an integer" if integer else "a number"
      return self.bad(key, f"must be {kind} from {_num(lo)} to {_num(hi)}")
    return int(x) if integer else x

  def numbers(self, key: str, count: int, lo: float, hi: float):
    text = self.params.get(key)
    if text is None:
      return None
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) != count:
      return self.bad(key, f"needs {count} number(s) separated by commas")
    values = [self.number(key, lo, hi, text=p) for p in parts]
    return None if any(v is None for v in values) else values

  def flag(self, key: str):
    text = self.params.get(key)
    if text is None:
      return None
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    return self.bad(key, "must be 1 or 0")


def _decode_target(r: _Reader) -> Optional[dict]:
  name = r.params.get("target")
  if name is None:
    return None
  n = r.number("n", 1, max(SIZES), integer=True)
  if n is not None and n not in SIZES:
    n = r.bad("n", f"must be one of {', '.join(map(str, SIZES))}")
  n = 4096 if n is None else n
  seed = r.number("data_seed", 0, MAX_SEED, integer=True) or 0
  if name in targets.names():
    params = {}
    for p, s in targets.info(name)["params"].items():
      v = r.number(f"t.{p}", s["min"], s["max"], integer=isinstance(s["default"], int))
      params[p] = s["default"] if v is None else v
    for key in r.params:
      if key.startswith("t.") and key[2:] not in params:
        r.bad(key, f"{name} has no parameter {key[2:]!r}")
    return {"kind": Kind.toy(targets.info(name)["dim"]).value, "name": name, "n": n, "seed": seed,
            "params": params}
  if name == "normal":
    lo, hi = GAUSSIAN_BOUNDS["mean"]
    mean = r.numbers("mean", len(r.params.get("mean", "0,0").split(",")), lo, hi)
    if mean is None or len(mean) not in (1, 2):
      if mean is not None:
        r.bad("mean", "a Gaussian of the app has 1 or 2 coordinates")
      mean = [0.0, 0.0]
    stds = r.numbers("std", len(mean), *GAUSSIAN_BOUNDS["std"])
    stds = stds or ([1.0] if len(mean) == 1 else [2.0, 0.5])
    angle = 0
    if len(mean) == 2:
      angle = r.number("angle", *GAUSSIAN_BOUNDS["angle"])
      angle = 30 if angle is None else int(5 * round(angle / 5))
    return {"kind": Kind.GAUSSIAN.value, "mean": mean, "stds": stds, "angle": angle, "n": n, "seed": seed}
  if name.startswith("data.") and name[5:] in datasets.names():
    info = datasets.info(name[5:])
    cols = [c for c in r.params.get("columns", "").split(",") if c]
    unknown = [c for c in cols if c not in info["columns"]]
    if unknown or len(cols) > datasets.MAX_COLUMNS or len(set(cols)) != len(cols):
      r.bad("columns", f"pick 1 to {datasets.MAX_COLUMNS} different columns of "
                       f"{name[5:]}: {', '.join(info['columns'])}")
      cols = []
    return {"kind": Kind.REAL.value, "name": name[5:], "columns": cols or list(info["default_columns"]),
            "standardize": bool(r.flag("standardize"))}
  if name == "points":
    pts = _points(r)
    if pts is None:
      return None
    spread = r.number("spread", 0.0, MAX_SPREAD)
    return {"kind": Kind.DRAW.value, "mode": "typed", "points": pts,
            "spread": 0.3 if spread is None else spread, "n": n, "seed": seed}
  r.bad("target", "not a built-in target, 'normal', 'points' or 'data.<name>' with <name> one "
                  f"of {', '.join(datasets.names())}")
  return None


def _points(r: _Reader) -> Optional[list]:
  """``points=x,y;x,y`` -> ``[[x, y], ...]`` or None (a problem is recorded)."""
  rows = [p for p in r.params.get("points", "").split(";") if p.strip()]
  if not 1 <= len(rows) <= MAX_POINTS:
    return r.bad("points", f"give 1 to {MAX_POINTS} points as x,y;x,y;...")
  pts = []
  for row in rows:
    xy = row.split(",")
    try:
      p = [float(c) for c in xy]
    except ValueError:
      p = []
    if len(p) != 2 or not all(math.isfinite(c) and abs(c) <= 1e6 for c in p):
      return r.bad("points", f"{row!r} is not a point x,y")
    pts.append(p)
  return pts


def _hypers(r: _Reader, model: str, prefix: str) -> dict:
  """The ``{prefix}{name}`` parameters read through the model's schema (type and bounds);
  values equal to the defaults are left out."""
  entries = hyper.by_name(models.get(model).schema)
  out = {}
  for key in r.params:
    if not key.startswith(prefix):
      continue
    name = key[len(prefix):]
    if name not in entries:
      r.bad(key, f"{model} has no hyper-parameter {name!r}")
      continue
    try:
      v = hyper.parse(model, entries[name], r.params[key])
    except ValueError as e:
      r.bad(key, str(e).removeprefix(f"{model}: "))
      continue
    if v != entries[name].default:
      out[name] = v
  return out


def _model_name(r: _Reader, key: str, text: str) -> Optional[str]:
  if text in models.names():
    return text
  return r.bad(key, f"{text!r} is not a model; models: {', '.join(models.names())}")


def _decode_train(r: _Reader) -> Optional[dict]:
  from cmm_core.api import MAX_STEPS
  if "model" not in r.params:
    return None
  model = _model_name(r, "model", r.params["model"])
  if model is None:
    return None
  steps = r.number("steps", 1, MAX_STEPS, integer=True)
  seed = r.number("seed", 0, MAX_SEED, integer=True)
  return {"model": model, "steps": steps, "seed": seed, "hyper": _hypers(r, model, "hp.")}


def _budget(r: _Reader, max_steps: int) -> tuple:
  """``budget=default|steps:N|seconds:S`` -> ``(mode, value)`` (``("default", None)`` if refused)."""
  mode, _, text = r.params.get("budget", "default").partition(":")
  value = None
  if mode == "steps":
    value = r.number("budget", 1, max_steps, integer=True, text=text)
  elif mode == "seconds":
    value = r.number("budget", 1.0, MAX_SECONDS, text=text)
  elif mode != "default":
    r.bad("budget", "must be default, steps:N or seconds:S")
  return ("default", None) if value is None else (mode, value)


def _decode_compare(r: _Reader) -> Optional[dict]:
  from cmm_core.api import MAX_STEPS
  if "models" not in r.params:
    return None
  picked = []
  for m in r.params["models"].split(","):
    if m and _model_name(r, "models", m) and m not in picked:
      picked.append(m)
  mode, value = _budget(r, MAX_STEPS)
  hyper = {m: h for m in picked if (h := _hypers(r, m, f"hp.{m}."))}
  seed = r.number("seed", 0, MAX_SEED, integer=True)
  return {"models": picked, "mode": mode, "value": value, "seed": seed, "hyper": hyper}


ENERGY_KEYS = ("energy", "formula", "dim", "box", "fit", "mcmc", "mcmc_step")
MCMC_METHODS = ("mala", "hmc", "nuts")


def _decode_energy(r: _Reader) -> Optional[dict]:
  from cmm_core import api, energies
  if "energy" in r.params:
    name = r.params["energy"]
    if name not in energies.names():
      r.bad("energy", f"not a built-in energy; built-ins: {', '.join(energies.names())}")
      return None
    schema = {h.name: h for h in energies.schema(name)}
    params = {}
    for key in [k for k in r.params if k.startswith("e.")]:
      h = schema.get(key[2:])
      if h is None:
        r.bad(key, f"not a parameter of {name}")
        continue
      try:
        params[h.name] = hyper.check(name, h, hyper.parse(name, h, r.params[key]))
      except ValueError as err:
        r.bad(key, str(err))
    out = {"source": "builtin", "name": name, "params": params}
  else:
    text = r.params["formula"]
    out = {"source": "formula", "text": text, "dim": r.number("dim", 1, MAX_FORMULA_DIM, integer=True),
           "box": r.number("box", 0.5, 100.0)}
  models = []
  for m in r.params.get("fit", "").split(","):
    if m and m not in api.energy_models():
      r.bad("fit", f"{m!r} cannot fit an energy; models: {', '.join(api.energy_models())}")
    elif m and m not in models:
      models.append(m)
  method = r.params.get("mcmc")
  if method is not None and method not in MCMC_METHODS:
    method = r.bad("mcmc", f"must be one of {', '.join(MCMC_METHODS)}")
  out.update(models=models or None, steps=r.number("steps", 1, MAX_ENERGY_STEPS, integer=True),
             seed=r.number("seed", 0, MAX_SEED, integer=True), method=method,
             step_size=r.number("mcmc_step", 1e-6, 10.0), mode=None, value=None)
  if "budget" in r.params:   # a link of the Compare page's energy entry
    out["mode"], out["value"] = _budget(r, MAX_ENERGY_STEPS)
  return out


def decode(params: Mapping[str, Any]) -> dict:
  """Reads query parameters written by :func:`encode` (or by hand).

  Args:
    params: ``{name: str}`` (a list of values keeps the last).

  Returns:
    ``{"target": spec or None, "train": dict or None, "compare": dict or None, "energy": dict or
    None, "run": bool, "problems": [str]}``: the target spec in the Target page's form (defaults filled in), the
    Train page's ``{"model", "steps", "seed", "hyper"}`` and the Compare page's ``{"models",
    "mode", "value", "seed", "hyper"}``; a value that is missing or was refused is ``None``
    (the page keeps its own); ``energy``: the Sample an energy page's settings as
    :func:`encode` takes them (a link with ``energy`` or ``formula`` holds nothing else).
    ``run``: the link asks to start training (or the comparison) at once; only with train,
    compare or energy settings. ``problems`` says, for each refused value, why.
  """
  r = _Reader(params)
  if "energy" in r.params or "formula" in r.params:
    out = {"target": None, "train": None, "compare": None, "energy": _decode_energy(r)}
    out["run"] = bool(r.flag("run")) and out["energy"] is not None
    for key in r.params:
      if key not in set(ENERGY_KEYS) | {"steps", "budget", "seed", "run"} and not key.startswith("e."):
        r.bad(key, "not a setting of the Sample an energy page or Compare's energy entry")
    out["problems"] = r.problems
    return out
  out = {"target": _decode_target(r), "energy": None}
  if "models" in r.params:
    out.update(train=None, compare=_decode_compare(r))
  else:
    out.update(train=_decode_train(r), compare=None)
  out["run"] = bool(r.flag("run")) and (out["train"] or out["compare"]) is not None
  known = set(TARGET_KEYS) | {"model", "steps", "seed", "models", "budget", "run"}
  for key in r.params:
    if key not in known and not key.startswith(("t.", "hp.")):
      r.bad(key, "not a setting of this app")
  out["problems"] = r.problems
  return out
