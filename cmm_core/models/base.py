"""The model protocol shared by every factorization.

A *model* is a frozen configuration (its validated hyper-parameters) with pure functions run by
:mod:`cmm_core.train`:

- ``prepare(data) -> (data, info)``: checks and data-independent preparation (subsampling);
- ``init(key, data, total_steps=None) -> (static, state)``: ``static`` is a hashable
  :class:`Static` holding everything ``step`` depends on besides arrays (the settings, the data
  dimension, the planned number of steps); ``state`` is a pytree of arrays: parameters,
  optimiser state, persistent sampler state (e.g. Langevin chains) and data-dependent constants;
- ``step(static, state, key, data) -> (state, metrics)``: one training step, a function of its
  arguments only; ``metrics`` is a dict of scalars, always containing ``"loss"``;
- ``finalize(static, state, history, info) -> FittedModel``: wraps the trained state into the
  model's declared ``fitted_cls``.

Compiled training chunks are cached on ``(model class, static)``: fits with equal statics share
them whatever their data (:func:`cmm_core.train.compiled_chunk`).
"""

from __future__ import annotations

import abc
import dataclasses
import types
from typing import Any, Callable, ClassVar, Optional

import numpy as np

from cmm_core import hyper as hyper_lib

__all__ = ["FittedModel", "Model", "Static", "check_points", "check_n", "check_seed", "MAX_SAMPLES",
           "MAX_SEED", "UNITS_STD_RATIO", "columns_in_different_units"]

from cmm_core.limits import MAX_SAMPLES, MAX_SEED  # noqa: F401 (re-exported)


@dataclasses.dataclass
class FittedModel(abc.ABC):
  """A trained factorization: parameters, configuration and training history.

  Attributes:
    model: the model id, e.g. ``"cmm"``.
    config: the hyper-parameters used (JSON-serialisable dict).
    params: the parameters (pytree of arrays).
    extras: other arrays the model needs at use time (pytree), e.g. data statistics.
    history: per-record dicts with at least ``step``, ``loss``, ``seconds``.
    info: JSON-serialisable facts about the fit: ``dim``, ``n_data``, ``status``
      (``"done"``, ``"stopped"``, ``"diverged"``), ``message``, ``warnings``.
  """

  model: ClassVar[str] = ""
  config: dict
  params: Any
  extras: Any
  history: list = dataclasses.field(default_factory=list)
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.config = dict(self.config)  # a plain copy (a model's own config is read-only)

  @property
  def dim(self) -> int:
    return int(self.info["dim"])

  # -- the protocol --------------------------------------------------------
  @abc.abstractmethod
  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """Samples in data space, ``[n, d]``."""

  @abc.abstractmethod
  def sample_base(self, n: int, seed: int = 0) -> np.ndarray:
    """Samples of the base / latent distribution, ``[n, d]``."""

  @abc.abstractmethod
  def transport(self, x: np.ndarray) -> np.ndarray:
    """The base -> data map applied to ``x`` of shape ``[n, d]``; returns ``[n, d]``."""

  @abc.abstractmethod
  def base_log_density(self, x: np.ndarray) -> np.ndarray:
    """Log-density of the base at ``x`` ``[n, d]``; returns ``[n]``."""

  def log_prob(self, y: np.ndarray) -> np.ndarray:
    """Data log-density at ``y`` ``[n, d]`` -> ``[n]``, where the model has one."""
    raise NotImplementedError(f"model {self.model!r} has no data log-density")

  def inpaint(self, x, mask, *, seed: int = 0, steps=None) -> np.ndarray:
    """Completes rows ``x`` ``[m, d]``: entries where ``mask`` ``[m, d]`` (bool) is True are kept
    exactly, the others drawn from the model's conditional density given them (MALA; NaN allowed
    where unobserved). ``steps``: MALA steps per row (None: a default). See :mod:`cmm_core.inpaint`."""
    from cmm_core import inpaint
    return inpaint.inpaint(self, x, mask, seed=seed, steps=steps)

  def save(self, path) -> None:
    """Writes the model to ``path`` (JSON header + msgpack arrays, never pickle)."""
    from cmm_core import io
    io.save(self, path)

  # -- helpers -------------------------------------------------------------
  def _points(self, x, name: str = "x") -> np.ndarray:
    return check_points(x, self.dim, name)


def check_points(x, dim: int, name: str = "x") -> np.ndarray:
  """Validates ``x`` as finite float points of shape ``[n, dim]`` (1D arrays allowed when dim is 1)."""
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim == 1 and dim == 1:
    arr = arr[:, None]
  if arr.ndim != 2 or arr.shape[1] != dim:
    raise ValueError(f"{name} must have shape [n, {dim}], got {arr.shape}")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} contains NaN or infinite values")
  return arr.astype(np.float32)


def check_n(n) -> int:
  """A sample count in ``[1, MAX_SAMPLES]``; raises ValueError otherwise."""
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
    raise ValueError(f"n must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
  return int(n)


def check_seed(seed, name: str = "seed") -> int:
  """A seed in ``[0, MAX_SEED]``; raises ValueError otherwise."""
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not (
      0 <= seed <= MAX_SEED):
    raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
  return int(seed)


UNITS_STD_RATIO = 10.0  # columns whose standard deviations differ by more than this: different units


def columns_in_different_units(x) -> bool:
  """Whether the columns of ``x`` ``[n, d]`` have standard deviations more than
  :data:`UNITS_STD_RATIO` apart (grams next to millimetres): the models that standardise with one
  scalar switch to one scale per column (or the covariance) then."""
  std = np.std(np.asarray(x, np.float64), axis=0)
  return bool(np.max(std) > UNITS_STD_RATIO * max(float(np.min(std)), 1e-300))


@dataclasses.dataclass(frozen=True)
class Static:
  """The hashable part of a fit that ``step`` depends on besides arrays.

  Attributes:
    hyper: the validated hyper-parameters as sorted ``(name, value)`` pairs.
    dim: the data dimension ``d``.
    total_steps: the planned number of training steps where ``step`` depends on it (a
      learning-rate schedule), else 0, so that fits of any length share their compiled steps.
    extra: model-specific hashable facts fixed at init, ``(name, value)`` pairs (e.g. the
      latent dimension, the Laplacian mode).
  """

  hyper: tuple
  dim: int
  total_steps: int
  extra: tuple = ()

  @property
  def config(self) -> dict:
    """The hyper-parameters as a dict."""
    return dict(self.hyper)

  def get(self, name: str):
    """A value of ``extra``."""
    return dict(self.extra)[name]


def _hashable(v):
  return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


class Model(abc.ABC):
  """A training recipe: a frozen configuration plus pure ``init``/``step``/``finalize``."""

  name: ClassVar[str] = ""
  schema: ClassVar[tuple] = ()
  """The hyper-parameters, one :class:`cmm_core.hyper.Hyper` each: ``defaults``, validation,
  the app's widgets, links, the CLI and the fuzz tests all derive from it."""
  defaults: ClassVar[dict] = {}
  """``{name: default}``, derived from ``schema``."""
  default_steps: ClassVar[int] = 1000
  fitted_cls: ClassVar[type]
  """The :class:`FittedModel` subclass that ``finalize`` returns (and ``cc.load`` reads)."""

  suggested: ClassVar[dict] = {}
  """Settings measured to fit some built-in targets (toys, or data sets fitted whole) much better
  than the defaults: ``{target name: {"steps": int, "hyper": {...}, "why": str}}`` (the Train page
  offers them)."""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if "schema" in cls.__dict__:
      cls.defaults = hyper_lib.defaults(cls.schema)

  def __init__(self, **hyper):
    config = hyper_lib.validate(self.name, self.schema, hyper)
    self.validate(config)
    object.__setattr__(self, "config", types.MappingProxyType(config))

  def __setattr__(self, name, value):
    raise AttributeError(f"a {type(self).__name__} is a frozen configuration; per-fit values "
                         "belong in the (static, state) pair that init returns")

  def __repr__(self) -> str:
    return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config.items())})"

  def validate(self, config: dict) -> None:
    """Cross-parameter rules (each value alone was checked against ``schema``); may adjust
    ``config`` in place before it is frozen; raises ValueError naming the bad hyper-parameter."""

  def prepare(self, data: np.ndarray) -> tuple[np.ndarray, dict]:
    """Model-specific checks and data preparation; returns data and info (e.g. warnings)."""
    return data, {}

  def static(self, data, total_steps: Optional[int] = None, *, config: Optional[dict] = None,
             **extra) -> Static:
    """The :class:`Static` of a fit of this model on ``data`` ``[n, d]`` (``total_steps``: None =
    ``default_steps``; pass 0 when ``step`` does not depend on it). ``config``: the settings the
    step runs with, when they differ from ``self.config`` (``"auto"`` values resolved for ``d``)."""
    steps = int(self.default_steps) if total_steps is None else int(total_steps)
    config = self.config if config is None else config
    return Static(hyper=tuple(sorted((k, _hashable(v)) for k, v in config.items())),
                  dim=int(data.shape[1]), total_steps=steps,
                  extra=tuple(sorted((k, _hashable(v)) for k, v in extra.items())))

  @abc.abstractmethod
  def init(self, key, data, total_steps: Optional[int] = None) -> tuple[Static, Any]:
    """-> ``(static, state)`` for training on ``data`` ``[n, d]`` for ``total_steps`` steps
    (None: ``default_steps``)."""

  @abc.abstractmethod
  def step(self, static: Static, state, key, data):
    """-> (state, metrics dict of scalars with "loss"); depends on its arguments only."""

  @abc.abstractmethod
  def finalize(self, static: Static, state, history: list, info: dict) -> FittedModel:
    """Wraps a training state into a ``fitted_cls``."""

  def set_horizon(self, static, state, total_steps: int):
    """``state`` with its learning-rate decay running over ``total_steps`` training steps instead
    of the number it was planned on: the training loop's plan for a time budget, set between chunks
    (:mod:`cmm_core.schedules`). A state without an ``opt_state``, or a constant rate, is kept."""
    if not hasattr(state, "opt_state"):
      return state
    from cmm_core import schedules  # JAX: not at import (the command line's help stays fast)
    updates = self.schedule_steps(static, total_steps)
    return state._replace(opt_state=schedules.with_horizon(state.opt_state, updates))

  def schedule_steps(self, static, total_steps: int) -> int:
    """The optimiser updates that ``total_steps`` training steps make: the decay's horizon."""
    del static
    return int(total_steps)

  def divergence_hint(self) -> str:
    """What the user should change when training diverges."""
    return "Lower the learning rate or the number of steps per update."

  def params_finite(self, state) -> bool:
    import jax
    import jax.numpy as jnp
    # on the host: a jitted isfinite would compile once per leaf shape, seconds per new model
    return bool(all(np.isfinite(np.asarray(l)).all() for l in jax.tree_util.tree_leaves(state)
                    if hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.floating)))


Callback = Callable[[int, dict, FittedModel], Any]
