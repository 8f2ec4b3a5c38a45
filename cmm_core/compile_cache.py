"""JAX's persistent compilation cache for the app and the command line: the first fit of a model
in a new process (a restarted app, a second ``python -m cmm_core fit``) reuses the programs compiled
by earlier ones instead of compiling them again (a default cmm fit of 20 steps: tens of seconds of
XLA compilation on a laptop's CPU). Several processes may share the folder: an entry is named by a
hash of the program, compiler and JAX version, and an entry another process is still writing fails
to load with a warning from JAX and is compiled again. The folder is not size-capped (about 1 MB
per model configuration); deleting it is always safe.

The library itself never turns it on: importing ``cmm_core`` changes no JAX setting; ``app.py`` and
``cmm_core.cli.main`` call :func:`enable`.

The cache lives in ``$CMM_CACHE_DIR`` (default ``~/.cache/cmm_core/jax``); ``CMM_CACHE_DIR=off``
turns it off. A ``JAX_COMPILATION_CACHE_DIR`` already set (the test suite sets one per run) wins.

``ONE_OFF`` holds the compiler options of the programs a fit runs only at its start.
"""

import importlib.util
import os
import pathlib

import jax

MIN_COMPILE_SECONDS = 0.5
"""Programs that compile faster than this are not written (they cost less than a file read)."""
MAX_CACHE_BYTES = 512 * 2**20
"""The folder's cap on disk: past it JAX removes the least recently used programs (a default fit
of each model writes about 1 MB; docs/limits.md). JAX needs the ``filelock`` package to keep a
cap (without it, a cap would make every read and write of the cache fail); without it the folder
is not capped."""


ONE_OFF = {"xla_backend_optimization_level": 0}
"""XLA options (``jax.jit(..., compiler_options=ONE_OFF)``) for programs that run once or twice per
fit (a potential's init, its start check, the first random draws): LLVM's optimisations off about
halve their compilation, and their run time is a few milliseconds either way (docs/speed.md)."""


def cache_dir() -> pathlib.Path | None:
  """Where the app keeps compiled programs, or None when the cache is off or set elsewhere."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return None
  where = os.environ.get("CMM_CACHE_DIR", "")
  if where.lower() == "off":
    return None
  return pathlib.Path(where) if where else pathlib.Path.home() / ".cache" / "cmm_core" / "jax"


def capped() -> bool:
  """Whether the cache folder can be capped at ``MAX_CACHE_BYTES`` (``filelock`` installed)."""
  return importlib.util.find_spec("filelock") is not None


def enable() -> pathlib.Path | None:
  """Points JAX at :func:`cache_dir` (once per process; later calls do nothing). Returns the
  folder used, or None. A folder that cannot be made leaves the cache off: the app still runs."""
  path = cache_dir()
  if path is None:
    return None
  if jax.config.jax_compilation_cache_dir == str(path):
    return path
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  if capped():
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
  return path
