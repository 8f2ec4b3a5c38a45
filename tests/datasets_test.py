"""Tests for cmm_core.datasets: the shipped real data sets."""

import pathlib

import numpy as np
import pytest

from cmm_core import datasets
from cmm_core.errors import DataError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPES = {"old_faithful": (272, 2), "iris": (150, 4), "penguins": (342, 4), "wine": (178, 13),
          "rivers": (141, 1), "digits": (1797, 64)}


def test_names():
  assert sorted(datasets.names()) == sorted(SHAPES)
  assert datasets.names(1) == ["rivers"]
  assert set(datasets.names(2)) == {"old_faithful", "iris", "penguins", "wine"}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_load_shapes_and_values(name):
  x = datasets.load(name)
  assert x.shape == SHAPES[name] and x.dtype == np.float32
  assert np.all(np.isfinite(x)) and np.all(x.std(axis=0) > 0)
  x[0, 0] = -12345.0  # mutating a result never changes the next one
  assert datasets.load(name)[0, 0] != -12345.0


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_info(name):
  i = datasets.info(name)
  assert i["name"] == name and (i["rows"], i["dim"]) == SHAPES[name]
  assert len(i["columns"]) == i["dim"] and i["columns"] == datasets.columns(name)
  assert set(i["default_columns"]) <= set(i["columns"])
  n_default = 1 if datasets.image_shape(name) is None else int(np.prod(datasets.image_shape(name)))
  assert n_default <= len(i["default_columns"]) <= max(2, n_default)
  for key in ("title", "description", "source", "licence"):
    assert isinstance(i[key], str) and len(i[key]) > 10, key
  i["columns"].clear()  # a copy
  assert datasets.info(name)["columns"]


def test_known_values():
  # first rows of the published tables
  np.testing.assert_allclose(datasets.load("old_faithful")[0], [3.6, 79])
  np.testing.assert_allclose(datasets.load("iris")[0], [5.1, 3.5, 1.4, 0.2])
  faithful = datasets.load("old_faithful")
  assert abs(faithful[:, 0].mean() - 3.4878) < 1e-3 and abs(faithful[:, 1].mean() - 70.897) < 1e-2
  assert datasets.load("rivers").max() == 3710


def test_columns_by_name_and_position():
  x = datasets.load("iris", columns=["petal_width_cm", "sepal_length_cm"])
  full = datasets.load("iris")
  np.testing.assert_array_equal(x, full[:, [3, 0]])
  np.testing.assert_array_equal(datasets.load("iris", columns=[2]), full[:, [2]])
  assert datasets.load("iris", columns="petal_length_cm").shape == (150, 1)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_standardize(name):
  x = datasets.load(name, standardize=True)
  np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-5)
  assert x.dtype == np.float32


def test_standardize_function():
  a = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 50.0]])
  z = datasets.standardize(a)
  np.testing.assert_allclose(z, [[-1.2247449, -1.2247449], [0, 0], [1.2247449, 1.2247449]],
                             rtol=1e-6)
  with pytest.raises(DataError, match="constant"):
    datasets.standardize([[1.0, 2.0], [1.0, 3.0]])


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "nope"}, "unknown data set.*iris"),
    ({"name": "iris", "columns": ["petal"]}, "no column 'petal'.*petal_length_cm"),
    ({"name": "iris", "columns": []}, "at least one column"),
    ({"name": "iris", "columns": [7]}, "does not exist"),
    ({"name": "iris", "columns": ["petal_length_cm", 2]}, "twice"),
    ({"name": "wine", "columns": list(range(11))}, "at most 10"),
])
def test_refusals(kwargs, match):
  with pytest.raises(DataError, match=match):
    datasets.load(**kwargs)


def test_files_ship_with_the_package_and_are_documented():
  pyproject = (ROOT / "pyproject.toml").read_text()
  assert '"data/*.csv"' in pyproject  # package-data: the CSVs are in a wheel too
  readme = (ROOT / "assets" / "README.md").read_text()
  total = 0
  for name in datasets.names():
    path = ROOT / "cmm_core" / "data" / datasets.info(name)["file"]
    assert path.is_file()
    total += path.stat().st_size
    assert f"`{name}`" in readme
  assert total < 1_000_000


def test_digits_are_dequantised_images_with_labels_apart():
  """The digits: 8 x 8 images of counts 0..16 plus uniform noise (the same at every load, and
  per column whatever else is picked); their labels come apart and are never a column."""
  assert datasets.image_shape("digits") == (8, 8) and datasets.image_shape("iris") is None
  x = datasets.load("digits")
  counts = np.floor(x)
  assert counts.min() == 0 and counts.max() == 16 and np.all(x - counts < 1)
  np.testing.assert_array_equal(x, datasets.load("digits"))
  np.testing.assert_array_equal(datasets.load("digits", columns=["p34", "p35"]), x[:, [28, 29]])
  y = datasets.labels("digits")
  assert y.shape == (1797,) and set(y.tolist()) == set(range(10)) and datasets.labels("iris") is None
  assert "label" not in datasets.columns("digits")
  # the whole image is one pick although it has more than MAX_COLUMNS columns
  assert datasets.load("digits", columns=datasets.info("digits")["default_columns"]).shape == (1797, 64)
  with pytest.raises(DataError, match="at most"):
    datasets.load("digits", columns=datasets.columns("digits")[:20])
  with pytest.raises(DataError, match="constant"):  # the raw counts: pixel p00 is always 0
    datasets.load("digits", dequantize=False)
