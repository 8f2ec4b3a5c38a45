"""Data-parallel training over several devices with JAX's automatic sharding (GSPMD).

One training step stays one function of the whole batch. Sharding only tells the compiler where
the per-sample arrays live: the MALA chains (and every state leaf with a leading batch axis) and
the per-step data batch are split over a 1-D mesh axis ``"batch"``; parameters, optimiser state
and the data set are replicated. ``jax.jit`` then partitions the step (GSPMD): each device runs
the per-sample work (MALA, conjugate solves, flow integration) for its slice of the batch, and the
batch means behind the loss and the gradients become all-reduces. The result is the same fit as on
one device up to the order of floating-point sums (see ``docs/sharding.md``).

One device (or ``devices=1``) does nothing: no mesh, no placement, no constraint.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["AXIS", "mesh", "plan", "batch_sharding", "replicated", "shard_state", "replicate",
           "state_constraint", "constrain_batch", "active", "unshard"]

AXIS = "batch"

# the mesh of the training step being traced (set by cmm_core.train while it traces a chunk);
# a ContextVar, so parallel fits in other threads never see it
_ACTIVE: contextvars.ContextVar[Optional[Mesh]] = contextvars.ContextVar("cmm_mesh", default=None)


def mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis ``"batch"`` over ``devices`` (a list of devices, an int ``k`` = the
  first ``k`` of ``jax.devices()``, or None = all of them)."""
  if devices is None:
    devs = jax.devices()
  elif isinstance(devices, (int, np.integer)):
    devs = jax.devices()[:int(devices)]
  else:
    devs = list(devices)
  return Mesh(np.array(devs), (AXIS,))


def plan(devices, batch_size) -> tuple[int, Optional[str]]:
  """How many devices a fit uses: ``(k, warning or None)``.

  ``devices=None``: all visible devices when there are several and they divide ``batch_size``;
  else the largest count that divides it (1 when none does), with a warning saying why.
  An int ``k``: exactly ``k`` (ValueError when impossible). ``1``: one device, no sharding.
  """
  n = len(jax.devices())
  if devices is None:
    if n <= 1:
      return 1, None
    if not _is_int(batch_size):
      return 1, (f"{n} devices are visible but this model has no batch_size to split over them: "
                 f"trained on one device")
    k = max(j for j in range(1, n + 1) if batch_size % j == 0)
    if k == n:
      return n, None
    return k, (f"batch_size {batch_size} is not divisible by the {n} visible devices: trained on "
               f"{k} device{'s' if k > 1 else ''} (choose a batch_size divisible by {n} to use all)")
  if not _is_int(devices) or devices < 1:
    raise ValueError(f"devices must be None or a positive integer, got {devices!r}")
  devices = int(devices)
  if devices > n:
    raise ValueError(f"devices={devices} but only {n} device{'s are' if n > 1 else ' is'} visible "
                     f"({jax.devices()[0].platform})")
  if devices == 1:
    return 1, None
  if not _is_int(batch_size):
    raise ValueError(f"devices={devices}: this model has no integer batch_size to split")
  if batch_size % devices:
    raise ValueError(f"devices={devices} needs a batch_size divisible by {devices}, got "
                     f"batch_size={batch_size}")
  return devices, None


def batch_sharding(m: Mesh) -> NamedSharding:
  """Leading axis split over the mesh, the other axes whole."""
  return NamedSharding(m, P(AXIS))


def replicated(m: Mesh) -> NamedSharding:
  return NamedSharding(m, P())


def _state_shardings(state, m: Mesh, batch_size: int):
  """Per-leaf shardings: top-level fields of the state (e.g. the fields of a NamedTuple) that are
  arrays with leading axis ``batch_size`` are split; everything else (nested containers such as
  parameters and optimiser state, scalars, per-data-point arrays) is replicated. Nested leaves
  are never split, so a weight matrix whose width happens to equal the batch size stays whole."""
  rep, split = replicated(m), batch_sharding(m)

  def top(x):
    if _is_batch(x, batch_size, m.size):
      return split
    return jax.tree_util.tree_map(lambda _: rep, x)

  children, treedef = jax.tree_util.tree_flatten(state, is_leaf=lambda x: x is not state)
  if len(children) == 1 and children[0] is state:  # the state is one array
    return top(state)
  return jax.tree_util.tree_unflatten(treedef, [top(c) for c in children])


def _is_batch(x, batch_size, size) -> bool:
  shape = getattr(x, "shape", None)
  return (shape is not None and len(shape) >= 1 and shape[0] == batch_size
          and batch_size % size == 0 and not isinstance(x, (list, tuple, dict)))


def _put(x, sharding):
  """``x`` placed with ``sharding``; works on several hosts too (each host holds the same
  value and supplies the shards on its own devices)."""
  if hasattr(x, "sharding") and x.sharding == sharding:
    return x
  if sharding.is_fully_addressable:  # one host
    return jax.device_put(x, sharding)
  host = np.asarray(x)  # several hosts: every process holds the same full value
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_state(state, m: Mesh, batch_size: int):
  """The state placed on the mesh: batch leaves split (see :func:`_state_shardings`), the rest
  replicated."""
  shardings = _state_shardings(state, m, batch_size)
  return jax.tree_util.tree_map(_put, state, shardings)


def replicate(x, m: Mesh):
  """Every leaf of ``x`` replicated on every device of the mesh."""
  rep = replicated(m)
  return jax.tree_util.tree_map(lambda a: _put(a, rep), x)


def state_constraint(state, m: Mesh, batch_size: int):
  """Inside jit: pins the state's layout (as :func:`shard_state`), so a scan carry keeps it."""
  shardings = _state_shardings(state, m, batch_size)
  return jax.tree_util.tree_map(jax.lax.with_sharding_constraint, state, shardings)


@contextlib.contextmanager
def active(m: Optional[Mesh]):
  """While tracing a training step: :func:`constrain_batch` splits over ``m``."""
  token = _ACTIVE.set(m)
  try:
    yield m
  finally:
    _ACTIVE.reset(token)


def constrain_batch(x):
  """Marks a per-sample array ``[b, ...]`` as split over the devices of the fit being traced.

  Models call it on the batch they draw in ``step`` (e.g. ``data[idx]``) so that the per-sample
  work downstream is partitioned. Outside a multi-device fit it returns ``x`` unchanged (no cost).
  Arrays whose leading axis does not divide over the devices are left alone.
  """
  m = _ACTIVE.get()
  if m is None or m.size <= 1 or getattr(x, "ndim", 0) < 1 or x.shape[0] % m.size:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(m))


def unshard(tree, m: Mesh):
  """Every leaf gathered onto one device (the first local one), as a one-device fit leaves it,
  so that fitted models never carry multi-device arrays."""
  leaves = jax.tree_util.tree_leaves(tree)
  if all(getattr(a, "is_fully_addressable", True) for a in leaves):
    return jax.device_put(tree, jax.local_devices()[0])
  # several hosts: replicate (an all-gather), then keep this host's copy
  tree = jax.jit(_identity, out_shardings=replicated(m))(tree)
  return jax.tree_util.tree_map(
      lambda a: a.addressable_data(0) if hasattr(a, "addressable_data") else a, tree)


def _identity(tree):
  return tree


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
