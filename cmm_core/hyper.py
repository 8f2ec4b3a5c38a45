"""Hyper-parameter schemas: each model declares its settings once, everything else is derived.

A model lists its hyper-parameters as a tuple of :class:`Hyper` entries, one line each::

    schema = (
        hyper.Int("batch_size", 256, 8, 8192, "data batch = number of base points"),
        hyper.Float("learning_rate", 5e-3, 1e-6, 0.1, "Adam step size", log=True),
        hyper.Choice("latent", "uniform", ("uniform", "normal"), "latent distribution"),
        hyper.Bool("standardize", True, "fit the standardised data"),
        hyper.Widths("hidden", (64, 64), "hidden-layer widths"),
        hyper.Int("latent_dim", None, 1, 64, "latent dimension", optional="the data dimension"),
    )

From a schema come: the defaults (:func:`defaults`), validation with type coercion
(:func:`validate`, :func:`check`), the text form used by links and the command line
(:func:`parse`, :func:`format_value`), a one-line description (:func:`describe`, for
``python -m cmm_core list`` and widget help) and the edge and invalid values the fuzz tests try
(:func:`edge_values`, :func:`invalid_values`). The Train page builds its widgets from the
entries' kinds. Cross-parameter rules (e.g. cmm's ``objective='mle'`` needs ``potential='data'``)
stay in each model's ``validate``.

Plain frozen dataclasses rather than pydantic: the schema needs five value kinds and the exact
messages the app shows, a validation library would add a dependency and its own message format
to wrap, and the core stays importable without it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["Hyper", "Int", "Float", "Choice", "Bool", "Widths", "KINDS", "MAX_LAYERS", "MAX_WIDTH",
           "defaults", "by_name", "check", "validate", "check_unknown", "parse", "format_value",
           "from_json", "describe", "edge_values", "invalid_values", "replace", "without"]

KINDS = ("int", "float", "choice", "bool", "widths")
from cmm_core.limits import MAX_LAYERS, MAX_WIDTH  # noqa: F401 (re-exported)
_NONE_TEXT = ("", "none", "null", "auto")  # how None (an optional number's "auto") may be written


@dataclasses.dataclass(frozen=True)
class Hyper:
  """One hyper-parameter of a model.

  Attributes:
    name: the keyword of ``cc.fit`` / ``Model(**hyper)``.
    kind: ``"int"``, ``"float"``, ``"choice"``, ``"bool"`` or ``"widths"`` (a tuple of layer
      widths, 1 to ``MAX_LAYERS`` ints in ``[1, MAX_WIDTH]``).
    default: the value used when none is given.
    lo, hi: inclusive bounds of an int or float (``lo`` excluded when ``lo_open``).
    choices: the allowed strings of a ``"choice"``.
    help: what the setting does, in a few words.
    ui: whether the Train page shows a widget for it.
    log: a positive scale best varied by factors (learning rates): a hint for widgets and fuzzing.
    optional: for an int or a float, None is allowed too and means this (e.g. "the data
      dimension"); empty when None is not allowed.
  """

  name: str
  kind: str
  default: Any
  lo: Optional[float] = None
  hi: Optional[float] = None
  choices: tuple = ()
  help: str = ""
  ui: bool = True
  log: bool = False
  lo_open: bool = False
  optional: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"hyper-parameter {self.name}: unknown kind {self.kind!r}")
    if self.kind in ("int", "float") and (self.lo is None or self.hi is None):
      raise ValueError(f"hyper-parameter {self.name}: a number needs bounds")
    if self.kind == "choice" and self.default not in self.choices:
      raise ValueError(f"hyper-parameter {self.name}: default {self.default!r} not in the choices")


def Int(name: str, default, lo: int, hi: int, help: str = "", *, optional: str = "",
        ui: bool = True) -> Hyper:
  """An integer in ``[lo, hi]``; with ``optional`` (what None means), None is allowed too."""
  return Hyper(name, "int", default, lo, hi, help=help, ui=ui, optional=optional)


def Float(name: str, default, lo: float, hi: float, help: str = "", *, log: bool = False,
          lo_open: bool = False, ui: bool = True, optional: str = "") -> Hyper:
  """A finite number in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``); with ``optional`` (what None
  means), None is allowed too."""
  return Hyper(name, "float", None if default is None else float(default), lo, hi, help=help, ui=ui,
               log=log, lo_open=lo_open, optional=optional)


def Choice(name: str, default: str, choices: Iterable[str], help: str = "", *,
           ui: bool = True) -> Hyper:
  """One of a few strings."""
  return Hyper(name, "choice", default, choices=tuple(choices), help=help, ui=ui)


def Bool(name: str, default: bool, help: str = "", *, ui: bool = True) -> Hyper:
  """True or False."""
  return Hyper(name, "bool", bool(default), help=help, ui=ui)


def Widths(name: str, default: Sequence[int], help: str = "", *, ui: bool = True) -> Hyper:
  """Hidden-layer widths: 1 to ``MAX_LAYERS`` integers in ``[1, MAX_WIDTH]``."""
  return Hyper(name, "widths", tuple(default), 1, MAX_WIDTH, help=help, ui=ui)


# -- schemas -------------------------------------------------------------------------------------

def defaults(schema: Sequence[Hyper]) -> dict:
  """``{name: default}`` in the schema's order."""
  return {h.name: h.default for h in schema}


def by_name(schema: Sequence[Hyper]) -> dict:
  """``{name: Hyper}``."""
  return {h.name: h for h in schema}


def replace(schema: Sequence[Hyper], **new_defaults) -> tuple:
  """The schema with some defaults changed (a model sharing another's settings)."""
  unknown = set(new_defaults) - {h.name for h in schema}
  if unknown:
    raise ValueError(f"no hyper-parameter(s) {sorted(unknown)} to change")
  return tuple(dataclasses.replace(h, default=new_defaults[h.name]) if h.name in new_defaults
               else h for h in schema)


def optional(schema: Sequence[Hyper], **meanings: str) -> tuple:
  """The schema with some numbers made optional: default None ("auto"), which means
  ``meanings[name]`` (the model's ``resolve`` puts the value)."""
  unknown = set(meanings) - {h.name for h in schema}
  if unknown:
    raise ValueError(f"no hyper-parameter(s) {sorted(unknown)} to make optional")
  return tuple(dataclasses.replace(h, default=None, optional=meanings[h.name]) if h.name in meanings
               else h for h in schema)


def without(schema: Sequence[Hyper], *names: str) -> tuple:
  """The schema less the entries ``names``."""
  return tuple(h for h in schema if h.name not in names)


# -- validation ----------------------------------------------------------------------------------

def _is_number(v) -> bool:
  return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating))


def _range_text(h: Hyper) -> str:
  return f"{'(' if h.lo_open else '['}{h.lo}, {h.hi}]"


def _expected(h: Hyper) -> str:
  """What a valid value is, as the error messages say it."""
  if h.kind == "int":
    return f"an integer in {_range_text(h)}" + (" or None" if h.optional else "")
  if h.kind == "float":
    return f"a number in {_range_text(h)}" + (" or None" if h.optional else "")
  if h.kind == "choice":
    return f"one of {list(h.choices)}"
  if h.kind == "bool":
    return "True or False"
  return f"1 to {MAX_LAYERS} layer widths in [1, {MAX_WIDTH}]"


def _in_range(h: Hyper, v) -> bool:
  # the bounds first (exact for ints): float() of a huge int overflows
  return (h.lo < v if h.lo_open else h.lo <= v) and v <= h.hi and math.isfinite(float(v))


def check(model: str, h: Hyper, value):
  """``value`` checked against ``h`` and coerced to its plain Python type (int, float, str,
  bool, tuple of ints, None); raises ValueError ``"{model}: {name} must be ..., got ..."``."""
  # numpy floats compare in their own precision (float32(0.1) <= 0.1): compare their exact value
  v = float(value) if isinstance(value, np.floating) else value
  if h.kind == "int":
    if v is None and h.optional:
      return None
    if _is_number(v) and _in_range(h, v) and int(v) == v:
      return int(v)
  elif h.kind == "float":
    if v is None and h.optional:
      return None
    if _is_number(v) and _in_range(h, v):
      return float(v)
  elif h.kind == "choice":
    if isinstance(v, str) and v in h.choices:
      return str(v)
  elif h.kind == "bool":
    if isinstance(v, (bool, np.bool_)):
      return bool(v)
  elif (not isinstance(v, (str, bytes)) and hasattr(v, "__len__") and 1 <= len(v) <= MAX_LAYERS
        and all(isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_))
                and 1 <= w <= MAX_WIDTH for w in v)):
    return tuple(int(w) for w in v)
  raise ValueError(f"{model}: {h.name} must be {_expected(h)}, got {value!r}")


def check_unknown(model: str, schema: Sequence[Hyper], names: Iterable[str]) -> None:
  """Raises ValueError listing the names that are not hyper-parameters of ``model``."""
  known = [h.name for h in schema]
  unknown = set(names) - set(known)
  if unknown:
    raise ValueError(f"unknown hyper-parameter(s) for {model!r}: {sorted(unknown)}; "
                     f"known: {sorted(known)}")


def validate(model: str, schema: Sequence[Hyper], config: Mapping) -> dict:
  """The defaults updated by ``config``, every value checked and coerced (:func:`check`);
  raises ValueError for an unknown name or a bad value."""
  check_unknown(model, schema, config)
  return {h.name: check(model, h, config[h.name]) if h.name in config else h.default
          for h in schema}


# -- text form (links, command line) -------------------------------------------------------------

def _num_text(x: float) -> str:
  """Shortest text that reads back as the same float (``0.1``, ``1e-05``, ``3``)."""
  x = float(x)
  return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def format_value(h: Hyper, value) -> str:
  """The text form of a value, read back by :func:`parse`: ``64,64``, ``1``/``0`` for
  booleans, ``0.005``, ``auto`` for an optional number's None."""
  if value is None:
    return "auto"
  if h.kind == "bool" and isinstance(value, (bool, np.bool_)):
    return "1" if value else "0"
  if h.kind == "widths" and isinstance(value, (tuple, list, np.ndarray)):
    return ",".join(str(w) for w in value)
  if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
    return str(int(value))
  if h.kind in ("int", "float") and _is_number(value):
    return _num_text(value)
  return str(value)  # not a value of this kind: as written, so that parse names the problem


def parse(model: str, h: Hyper, text: str):
  """A value written as text (a link's ``hp.name=value``, the CLI's ``--hyper name=value``),
  checked like :func:`check`. Accepts ``1e-3``, ``true``/``1``/``yes``, ``64,64``, ``64 64`` or
  ``[64, 64]``, ``auto``/``none`` for an optional number; raises ValueError naming ``h``."""
  s = str(text).strip()
  value: Any = s
  if h.kind in ("int", "float") and h.optional and s.lower() in _NONE_TEXT:
    value = None
  elif h.kind in ("int", "float"):
    try:
      value = int(s) if h.kind == "int" and s.lstrip("+-").isdigit() else float(s)
    except ValueError:
      pass
  elif h.kind == "bool":
    value = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}.get(s.lower(), s)
  elif h.kind == "widths":
    parts = [p for p in re.split(r"[,;\s]+", s.strip("[]()")) if p]
    try:
      value = tuple(int(p) for p in parts) if parts else s
    except ValueError:
      pass
  elif h.kind == "choice" and len(s) > 1 and s[0] == s[-1] and s[0] in "'\"":
    value = s[1:-1]  # a quoted string, as JSON or Python would write it
  return check(model, h, value)


def from_json(model: str, schema: Sequence[Hyper], obj: Mapping) -> dict:
  """A ``{name: value}`` object read from JSON, with its values in the schema's types: lists
  become tuples of widths, strings are parsed (``"3"`` for an int) except for choices. Unknown
  names raise ValueError; bounds are left to the model (its message then names the value)."""
  check_unknown(model, schema, obj)
  entries = by_name(schema)
  out = {}
  for k, v in obj.items():
    h = entries[k]
    if isinstance(v, str) and h.kind != "choice":
      v = parse(model, h, v)
    elif isinstance(v, list) and h.kind == "widths":
      v = tuple(v)
    out[k] = v
  return out


def describe(h: Hyper) -> str:
  """``"int in [8, 8192], default 256: data batch"``: the kind, the bounds or choices, the
  default and the help text in one line."""
  if h.kind in ("int", "float"):
    what = f"{h.kind} in {_range_text(h)}" + (f" or auto ({h.optional})" if h.optional else "")
    what += ", log scale" if h.log else ""
  elif h.kind == "choice":
    what = " | ".join(h.choices)
  elif h.kind == "bool":
    what = "bool"
  else:
    what = f"widths (1 to {MAX_LAYERS} layers of 1..{MAX_WIDTH})"
  text = f"{what}, default {format_value(h, h.default)}"
  return f"{text}: {h.help}" if h.help else text


# -- fuzz cases ----------------------------------------------------------------------------------

def edge_values(h: Hyper) -> list:
  """Valid values at the edges of ``h``: the bounds, every choice, both booleans, the extreme
  widths; each is accepted by :func:`check`."""
  if h.kind == "int":
    return ([None] if h.optional else []) + [int(h.lo), int(h.hi)]
  if h.kind == "float":
    return ([None] if h.optional else []) + ([] if h.lo_open else [h.lo]) + [h.hi]
  if h.kind == "choice":
    return list(h.choices)
  if h.kind == "bool":
    return [True, False, np.True_]
  return [(1,), (MAX_WIDTH,), (1,) * MAX_LAYERS, [3, 4], np.array([2, 2])]


_WRONG_TYPES = ["abc", "", [1], (), {"a": 1}, b"1", object(), complex(1, 1)]


def invalid_values(h: Hyper) -> list:
  """Values :func:`check` refuses: beyond the bounds, NaN and infinities, huge ints, booleans
  for numbers, strings for numbers, near misses of a choice, bad widths, wrong types."""
  if h.kind in ("int", "float"):
    lo, hi = h.lo, h.hi
    out = [lo - 1, lo - abs(lo) / 2 - 1e-3, hi + 1, hi * 2 + 1, math.nan, math.inf, -math.inf,
           np.float32(math.nan), 10**400, -10**400, True, False, "1", [lo]] + _WRONG_TYPES
    if h.lo_open:
      out.append(lo)
    if h.kind == "int" and lo + 0.5 <= hi:
      out.append(lo + 0.5)
    return out if h.optional else out + [None]
  if h.kind == "choice":
    first = h.choices[0]
    return ["bogus", first.upper(), " " + first, 1, None, [], [first], (first,), {"a": 1}, True]
  if h.kind == "bool":
    return ["True", "yes", 1, 0, None, 1.0, [], [True]]
  return [(), [], (0,), (MAX_WIDTH + 1,), (64,) * (MAX_LAYERS + 1), (64.5,), ("64",), (True,),
          None, 64, "64, 64", b"64", [[64]], (math.nan,), (-1,), (10**400,), "", {"a": 1}]
