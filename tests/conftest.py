import atexit
import os
import shutil
import tempfile

# One JAX compilation cache for the whole run, shared by the xdist workers and the processes they
# start (the CLI, the Streamlit server of the browser test): the same training chunks and samplers
# are compiled by many test files, and XLA's compile is most of the suite's time. It starts empty,
# so a run from a clean clone is timed honestly; set JAX_COMPILATION_CACHE_DIR to keep one across
# runs. Set before JAX is imported (JAX reads these variables at import).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="cmm_test_jax_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)  # xdist workers inherit the variable
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The longest test files first (summed seconds of a clean-clone run, docs/testing.md): pytest-xdist's
# `--dist loadgroup` hands files to the two workers in this order, so a long file collected last
# would run alone at the end while the other worker idles. The Train page's test compiles the
# shared small convex settings (tests/small_fits.py) while the other worker runs the browser test,
# so the files after them that use those settings read their programs from the run's cache.
LONGEST_FIRST = [
    "tests/app/app_test.py", "tests/e2e/browser_test.py", "tests/models/maflow_test.py",
    "tests/models/sdot_test.py", "tests/io_test.py", "tests/cli_test.py", "tests/potentials_test.py",
    "tests/app/compare_page_test.py", "tests/compare_test.py", "tests/app/train_models_test.py",
    "tests/benchmarks_test.py", "tests/fit_energy_test.py", "tests/app/energy_page_test.py",
    "tests/sharding_test.py", "tests/app/images_page_test.py", "tests/fit_energy_cmm_test.py",
    "tests/app/link_page_test.py",
    "tests/compile_count_test.py", "tests/app/isolation_test.py", "tests/models/cmm_test.py",
    "tests/app/fit_pool_app_test.py", "tests/inpaint_test.py", "tests/app/fault_page_test.py",
    "tests/determinism_test.py", "tests/mcmc_test.py", "tests/viz/sdot_test.py",
    "tests/app/io_page_test.py", "tests/app/target_page_test.py", "tests/image_metrics_test.py",
    "tests/fuzz_test.py", "tests/energies_test.py", "tests/models/mm_test.py",
    "tests/real_units_test.py", "tests/viz/panels_test.py",
]


# Files whose tests are independent fits with no shared fixture: their tests go to whichever worker
# is free (the slow suite's 36 real-data fits and 25 bound fits would otherwise run on one worker).
# Every other file's tests stay together on one worker (its module fixtures are computed once).
SPREAD = ("tests/real_units_test.py", "tests/fuzz_test.py")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
  rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
  for item in items:
    path = item.nodeid.split("::")[0]
    if path not in SPREAD:
      item.add_marker(pytest.mark.xdist_group(path))


@pytest.fixture
def rng():
  return np.random.default_rng(0)
