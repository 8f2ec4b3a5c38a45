"""Target descriptions: the one place where a target's settings become data.

A *spec* is the JSON-able dict that the Target page stores, a shareable link carries
(:mod:`cmm_core.share`) and a fit records: ``{"kind": ..., ...}`` with the kind's settings

========== ====================================================================================
kind       settings
========== ====================================================================================
toy1d      ``name``, ``n``, ``seed``, ``params`` (:func:`cmm_core.targets.make`)
toy2d      the same
gaussian   ``mean [d]``, ``stds [d]``, ``angle`` (degrees, 2D), ``n``, ``seed``
real       ``name``, ``columns``, ``standardize`` (:func:`cmm_core.datasets.load`)
draw       ``mode="typed"``: ``points``, ``spread``, ``n``, ``seed``; ``mode="mouse"``: ``cells``,
           ``n``, ``seed``, ``jitter``
upload     ``file``, ``columns``, ``standardize`` (the rows live with the user's session only)
========== ====================================================================================

The kinds are :class:`Kind` (a str enum: a spec holds its value; ``Kind.label`` is the Target
page's name for it).

:func:`build` makes the data and a label; :func:`fresh_draw` makes held-out points from the same
target with another seed. The app, the link codec and the CLI (``fit --link URL``) all use them.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Optional

import numpy as np

__all__ = ["Kind", "BuiltTarget", "build", "fresh_draw", "hold_out", "kind_of", "toy_label", "image_shape",
           "dequantized_counts",
           "columns_label", "table_label", "HELDOUT_SEED_OFFSET", "HOLDOUT_SHARE", "MIN_ROWS_TO_HOLD_OUT"]

HELDOUT_SEED_OFFSET = 10_007  # fresh draws use seed + this: never the training draw's seed
HOLDOUT_SHARE = 0.2           # tables (real data, uploads): the share of rows kept for held-out metrics
MIN_ROWS_TO_HOLD_OUT = 100    # smaller tables are fitted whole (fewer than 20 held-out rows say little)


class Kind(str, enum.Enum):
  """A target's kind (the specs' ``"kind"``); ``label`` is its name on the Target page."""
  TOY_1D = "toy1d"
  TOY_2D = "toy2d"
  GAUSSIAN = "gaussian"
  REAL = "real"
  UPLOAD = "upload"
  DRAW = "draw"

  @property
  def label(self) -> str:
    return _LABELS[self]

  @classmethod
  def from_label(cls, label: str) -> "Kind":
    """The kind whose page label is ``label``; ValueError for another text."""
    for kind, text in _LABELS.items():
      if text == label:
        return kind
    raise ValueError(f"no target kind is labelled {label!r}; one of {list(_LABELS.values())}")

  @classmethod
  def toy(cls, dim: int) -> "Kind":
    """The toy kind of a ``dim``-dimensional built-in target."""
    return cls.TOY_1D if int(dim) == 1 else cls.TOY_2D


_LABELS = {Kind.TOY_1D: "1D toy", Kind.TOY_2D: "2D toy", Kind.GAUSSIAN: "Gaussian",
           Kind.REAL: "Real data", Kind.UPLOAD: "Upload", Kind.DRAW: "Draw"}


@dataclasses.dataclass(frozen=True)
class BuiltTarget:
  """A target's data with what describes it.

  Attributes:
    label: a one-line description for titles, e.g. ``"two_moons (n=4096, seed=0)"``.
    data: float32 ``[n, d]``.
    spec: the spec, completed (a Gaussian's ``cov``, a table's training and held-out row counts
      ``n`` and ``n_heldout``).
    columns: the column names of a table, else None.
    heldout: a table's held-out rows ``[k, d]`` (:func:`hold_out`), else None (targets that can be
      drawn again are measured on :func:`fresh_draw`).
  """
  label: str
  data: np.ndarray
  spec: dict
  columns: Optional[list] = None
  heldout: Optional[np.ndarray] = None


def hold_out(rows, share: float = HOLDOUT_SHARE) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Splits a table's rows ``[n, d]`` into ``(training rows, held-out rows)``.

  ``round(share * n)`` rows, drawn with the fixed seed ``HELDOUT_SEED_OFFSET`` (the same table
  always splits the same way), are held out, each row's order kept; a table of fewer than
  ``MIN_ROWS_TO_HOLD_OUT`` rows is fitted whole and its held-out part is None.
  """
  rows = np.asarray(rows)
  n = rows.shape[0]
  if n < MIN_ROWS_TO_HOLD_OUT:
    return rows, None
  k = int(round(share * n))
  out = np.zeros(n, bool)
  out[np.random.default_rng(HELDOUT_SEED_OFFSET).choice(n, size=k, replace=False)] = True
  return rows[~out], rows[out]


def dequantized_counts(spec: dict) -> bool:
  """Whether the target's rows are integer counts plus ``U[0, 1)`` noise drawn once (a shipped data
  set :func:`cmm_core.datasets.dequantized` says so, or an upload whose spec has ``"dequantize"``),
  in their own units (not standardised): fits pass ``dequantize=True`` to ``cc.fit`` then, so
  every step redraws the noise."""
  from cmm_core import datasets
  try:
    kind = kind_of(spec)
  except ValueError:
    return False
  if spec.get("standardize"):
    return False
  if kind is Kind.REAL:
    return spec.get("name") in datasets.names() and datasets.dequantized(spec["name"])
  return kind is Kind.UPLOAD and bool(spec.get("dequantize"))


def image_shape(spec: dict) -> Optional[tuple[int, int]]:
  """``(rows, columns)`` when the target's points are images: a shipped image data set (the
  digits) fitted whole, or a table whose spec says ``"image_shape"``; else None."""
  if spec.get("image_shape"):
    return tuple(int(v) for v in spec["image_shape"])
  try:
    kind = kind_of(spec)
  except ValueError:
    return None
  if kind is not Kind.REAL:
    return None
  from cmm_core import datasets
  try:
    shape = datasets.image_shape(spec["name"])
  except (KeyError, ValueError):
    return None
  if shape is None or list(spec.get("columns") or []) != datasets.info(spec["name"])["default_columns"]:
    return None
  return shape


def table_label(name: str, columns: list, standardized: bool, n: int, n_heldout: int) -> str:
  """``old_faithful [eruptions_min, waiting_min] (n=218, 54 rows held out)``."""
  held = f", {n_heldout} rows held out" if n_heldout else ""
  return f"{name} {columns_label(columns, standardized)} (n={n}{held})"


ToyMaker = Callable[[str, int, int, tuple], np.ndarray]
GaussianMaker = Callable[[tuple, tuple, int, int], np.ndarray]


def _toy(name: str, n: int, seed: int, params: tuple) -> np.ndarray:
  from cmm_core import targets
  return np.asarray(targets.make(name, n, seed=seed, **dict(params)), dtype=np.float32)


def _gaussian(mean: tuple, cov: tuple, n: int, seed: int) -> np.ndarray:
  from cmm_core import targets
  return np.asarray(targets.gaussian(np.asarray(mean), np.asarray(cov), n, seed=seed),
                    dtype=np.float32)


def kind_of(spec: dict) -> Kind:
  """The :class:`Kind` of ``spec`` (its value, or its page label as specs once held);
  ValueError for an unknown one."""
  kind = spec.get("kind", "")
  try:
    return Kind(kind)
  except ValueError:
    pass
  try:
    return Kind.from_label(kind)
  except ValueError:
    raise ValueError(f"unknown target kind {kind!r}; one of {[k.value for k in Kind]}") from None


def toy_label(name: str, n: int, seed: int, params: dict) -> str:
  extra = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                    for k, v in sorted(params.items()))
  return f"{name} (n={n}, seed={seed}{', ' + extra if extra else ''})"


def columns_label(names: list, standardized: bool) -> str:
  """``[a, b]``, or ``[4 columns]`` when the names would make a long title."""
  text = ", ".join(names)
  inner = text if len(names) <= 2 or len(text) <= 36 else f"{len(names)} columns"
  return f"[{inner}{', standardised' if standardized else ''}]"


def _cov(spec: dict) -> tuple:
  from cmm_core.viz import panels
  cov = panels.covariance_from_axes(spec["stds"], spec["angle"])
  return tuple(map(tuple, np.atleast_2d(cov).tolist()))


def build(spec: dict, *, make_toy: ToyMaker = _toy,
          make_gaussian: GaussianMaker = _gaussian) -> BuiltTarget:
  """The data and label of ``spec`` (toys, Gaussians, real tables and typed points; uploads and
  mouse drawings carry their rows outside the spec and are built where they are read).

  Args:
    spec: a target spec (module docstring).
    make_toy, make_gaussian: the draws, replaceable by cached versions of the same functions
      (the app caches them across sessions).

  Raises:
    ValueError (DataError included): a spec whose data cannot be made, with the reason.
  """
  from cmm_core import datasets, targets
  spec = dict(spec)
  kind, columns, heldout = kind_of(spec), None, None
  if kind in (Kind.TOY_1D, Kind.TOY_2D):
    params = dict(spec.get("params", {}))
    data = make_toy(spec["name"], spec["n"], spec["seed"], tuple(sorted(params.items())))
    label = toy_label(spec["name"], spec["n"], spec["seed"], params)
  elif kind is Kind.GAUSSIAN:
    mean, stds, angle, n, seed = (spec[k] for k in ("mean", "stds", "angle", "n", "seed"))
    cov = _cov(spec)
    spec["cov"] = [list(r) for r in cov]
    data = make_gaussian(tuple(float(m) for m in mean), cov, n, seed)
    if len(mean) == 1:
      label = f"Gaussian N({mean[0]:g}, {stds[0]:g}²) (n={n}, seed={seed})"
    else:
      label = (f"Gaussian, mean ({mean[0]:g}, {mean[1]:g}), stds {stds[0]:g} / {stds[1]:g}, "
               f"angle {angle}° (n={n}, seed={seed})")
  elif kind is Kind.REAL:
    columns = list(spec["columns"])
    table = datasets.load(spec["name"], columns=columns, standardize=spec["standardize"])
    data, heldout = hold_out(table)
    spec.update(n=int(data.shape[0]), n_heldout=0 if heldout is None else int(heldout.shape[0]))
    label = table_label(spec["name"], columns, spec["standardize"], spec["n"], spec["n_heldout"])
  elif kind is Kind.DRAW and spec.get("mode") == "typed":
    pts = np.asarray(spec["points"], dtype=np.float64)
    data = targets.sample_points(pts, spec["n"], seed=spec["seed"], spread=float(spec["spread"]))
    spec.update(points=pts.tolist(), spread=float(spec["spread"]), n=int(data.shape[0]))
    if spec["spread"] == 0:
      label = f"typed: {pts.shape[0]} points"
    else:
      label = (f"typed: {pts.shape[0]} point(s), spread {spec['spread']:g} (n={spec['n']}, "
               f"seed={spec['seed']})")
  else:
    raise ValueError(f"a target of kind {kind.value!r} cannot be rebuilt from its settings")
  held = None if heldout is None else np.asarray(heldout, np.float32)
  return BuiltTarget(label, np.asarray(data, np.float32), spec, columns, held)


def fresh_draw(spec: dict, n: int = 2000, *, make_toy: ToyMaker = _toy,
               make_gaussian: GaussianMaker = _gaussian) -> Optional[np.ndarray]:
  """A fresh draw ``[n, d]`` of the target described by ``spec`` (seed + ``HELDOUT_SEED_OFFSET``),
  or None when the target cannot be drawn again (real data and uploads: their held-out rows,
  :func:`hold_out`, play that part; typed points without spread)."""
  from cmm_core import targets
  seed = int(spec.get("seed", 0)) + HELDOUT_SEED_OFFSET
  try:
    kind = kind_of(spec)
  except ValueError:
    return None
  if kind in (Kind.TOY_1D, Kind.TOY_2D):
    return make_toy(spec["name"], n, seed, tuple(sorted(spec.get("params", {}).items())))
  if kind is Kind.GAUSSIAN:
    cov = spec.get("cov")
    cov = _cov(spec) if cov is None else tuple(map(tuple, np.atleast_2d(np.asarray(cov)).tolist()))
    return make_gaussian(tuple(spec["mean"]), cov, n, seed)
  if kind is Kind.DRAW:
    if spec.get("mode") == "mouse":
      return targets.sample_cells(spec["cells"], targets.draw_grid(), n, seed=seed,
                                  jitter=float(spec.get("jitter", 0.1)))
    if spec.get("mode") == "typed" and float(spec.get("spread", 0)) > 0:
      return targets.sample_points(np.asarray(spec["points"]), n, seed=seed,
                                   spread=float(spec["spread"]))
  return None
