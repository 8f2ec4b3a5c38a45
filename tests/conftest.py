import numpy as np
import pytest

# The longest test files first (summed seconds of a clean-clone run, docs/testing.md): pytest-xdist's
# `--dist loadfile` hands files to the two workers in collection order, so a long file collected
# last would run alone at the end while the other worker idles.
LONGEST_FIRST = [
    "tests/models/cmm_test.py", "tests/models/mm_test.py", "tests/app/train_models_test.py",
    "tests/app/app_test.py", "tests/io_test.py", "tests/app/compare_page_test.py",
    "tests/compile_count_test.py", "tests/models/maflow_test.py", "tests/cli_test.py",
    "tests/models/sdot_test.py", "tests/e2e/browser_test.py", "tests/real_units_test.py",
    "tests/viz/panels_test.py", "tests/potentials_test.py", "tests/models/brenier_test.py",
    "tests/benchmarks_test.py", "tests/sharding_test.py", "tests/compare_test.py",
]


def pytest_collection_modifyitems(config, items):
  rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


@pytest.fixture
def rng():
  return np.random.default_rng(0)
