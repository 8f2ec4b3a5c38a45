"""The model protocol shared by every factorization.

A *model* is a pair of pure functions run by :mod:`cmm_core.train`:

- ``init(key, data) -> state``: a pytree holding parameters, optimiser state and any
  persistent sampler state (e.g. Langevin chains).
- ``step(state, key, data) -> (state, metrics)``: one training step; ``metrics`` is a dict
  of scalars, always containing ``"loss"``.

and a ``finalize(state, history, info) -> FittedModel`` that wraps the trained parameters.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from cmm_core import hyper as hyper_lib

__all__ = ["FittedModel", "Model", "check_points", "check_n", "check_seed", "MAX_SAMPLES",
           "MAX_SEED"]

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


class Model(abc.ABC):
  """A training recipe: hyper-parameters plus pure ``init``/``step`` functions."""

  name: ClassVar[str] = ""
  schema: ClassVar[tuple] = ()
  """The hyper-parameters, one :class:`cmm_core.hyper.Hyper` each: ``defaults``, validation,
  the app's widgets, links, the CLI and the fuzz tests all derive from it."""
  defaults: ClassVar[dict] = {}
  """``{name: default}``, derived from ``schema``."""
  default_steps: ClassVar[int] = 1000

  suggested: ClassVar[dict] = {}
  """Settings measured to fit some built-in targets much better than the defaults:
  ``{target name: {"steps": int, "hyper": {...}, "why": str}}`` (the Train page offers them)."""

  total_steps: int = 0
  """The number of training steps planned (set by ``cc.fit``); schedules may use it."""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if "schema" in cls.__dict__:
      cls.defaults = hyper_lib.defaults(cls.schema)

  def __init__(self, **hyper):
    self.config = hyper_lib.validate(self.name, self.schema, hyper)
    self.validate(self.config)

  def validate(self, config: dict) -> None:
    """Cross-parameter rules (each value alone was checked against ``schema``); may adjust
    ``config`` in place; raises ValueError naming the bad hyper-parameter."""

  def prepare(self, data: np.ndarray) -> tuple[np.ndarray, dict]:
    """Model-specific data preparation (e.g. centring); returns data and info."""
    return data, {}

  @abc.abstractmethod
  def init(self, key, data):
    """-> initial training state (pytree)."""

  @abc.abstractmethod
  def step(self, state, key, data):
    """-> (state, metrics dict of scalars with "loss")."""

  @abc.abstractmethod
  def finalize(self, state, history: list, info: dict) -> FittedModel:
    """Wraps a training state into a FittedModel."""

  def cache_key(self):
    """A hashable key such that models with equal keys have identical ``step`` functions
    (given the data dimension), or None (the default) to compile every fit afresh. Only
    return a key when ``step`` depends on nothing but the configuration and the state."""
    return None

  def divergence_hint(self) -> str:
    """What the user should change when training diverges."""
    return "Lower the learning rate or the number of steps per update."

  def params_finite(self, state) -> bool:
    import jax
    import jax.numpy as jnp
    leaves = jax.tree_util.tree_leaves(state)
    return bool(all(jnp.all(jnp.isfinite(l)) for l in leaves
                    if hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.floating)))


Callback = Callable[[int, dict, FittedModel], Any]
