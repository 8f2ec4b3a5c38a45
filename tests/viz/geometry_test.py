"""Tests for cmm_core.viz.geometry: the shared boxes, subsets, grid lines and polylines."""

import numpy as np
import pytest

from cmm_core.viz import geometry


def test_as_points_reads_a_vector_as_a_column_and_checks_the_dimension():
  assert geometry.as_points([1.0, 2.0]).shape == (2, 1)
  assert geometry.as_points(np.zeros((3, 2)), dim=2).dtype == np.float64
  with pytest.raises(ValueError, match=r"\[n, 3\].*2 column"):
    geometry.as_points(np.zeros((3, 2)), dim=3)
  with pytest.raises(ValueError):
    geometry.as_points(np.zeros((2, 2, 2)))


def test_subsample_is_seeded_keeps_order_and_leaves_small_sets_alone(rng):
  x = np.arange(100)[:, None]
  a, b = geometry.subsample(x, 10, seed=3), geometry.subsample(x, 10, seed=3)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (10, 1) and np.all(np.diff(a[:, 0]) > 0)
  assert geometry.subsample(x, 200) is x
  np.testing.assert_array_equal(x[geometry.subsample_index(100, 10, 3)], a)


def test_axis_ranges_pads_by_the_margin_and_ignores_non_finite_rows():
  x = np.stack([np.linspace(0, 10, 1001), np.linspace(-1, 1, 1001)], 1)
  x = np.concatenate([x, [[np.nan, 0.0], [np.inf, 1.0]]])
  r = geometry.axis_ranges(x, lo=0, hi=100, margin=0.1)
  np.testing.assert_allclose(r, [[-1.0, 11.0], [-1.2, 1.2]])
  # several clouds: the union of their boxes
  r2 = geometry.axis_ranges(np.zeros((5, 1)) + 3, np.zeros((5, 1)) - 3, margin=0.0)
  np.testing.assert_allclose(r2, [[-3.0, 3.0]])
  # a point mass still gets a positive width; no points at all gives [-1, 1]
  assert np.all(np.diff(geometry.axis_ranges(np.ones((4, 2)))) > 0)
  np.testing.assert_array_equal(geometry.axis_ranges(np.full((3, 1), np.nan)), [[-1.0, 1.0]])


def test_union_square_and_squared():
  a, b = np.array([[0.0, 1.0], [0.0, 2.0]]), np.array([[-1.0, 0.5], [1.0, 3.0]])
  np.testing.assert_array_equal(geometry.union(a, b), [[-1.0, 1.0], [0.0, 3.0]])
  np.testing.assert_array_equal(geometry.square(a), [[-0.5, 1.5], [0.0, 2.0]])
  box, equal = geometry.squared(a)
  assert equal and np.allclose(box[:, 1] - box[:, 0], 2.0)
  wide = np.array([[0.0, 10.0], [0.0, 1.0]])
  box, equal = geometry.squared(wide)
  assert not equal and box is not None and np.array_equal(box, wide)
  assert geometry.comparable([1.0, 4.0]) and not geometry.comparable([1.0, 4.5])
  assert not geometry.comparable([0.0, 1.0])


def test_grid_lines_cover_the_box_vertical_then_horizontal():
  g = geometry.grid_lines([[-1.0, 3.0], [0.0, 2.0]], 3, 5)
  assert g.shape == (6, 5, 2)
  np.testing.assert_allclose(g[:3, :, 0], [[-1.0] * 5, [1.0] * 5, [3.0] * 5])  # x fixed
  np.testing.assert_allclose(g[0, :, 1], np.linspace(0.0, 2.0, 5))
  np.testing.assert_allclose(g[3:, :, 1], [[0.0] * 5, [1.0] * 5, [2.0] * 5])  # y fixed


def test_polylines_and_segments_break_with_nan():
  lines = np.arange(12, dtype=float).reshape(2, 3, 2)
  xs, ys = geometry.polylines(lines)
  assert xs.shape == (8,) and np.isnan(xs[3]) and np.isnan(ys[7])
  np.testing.assert_array_equal(xs[:3], [0.0, 2.0, 4.0])
  sx, sy = geometry.segments(np.zeros((2, 2)), np.ones((2, 2)))
  np.testing.assert_array_equal(sx[[0, 1, 3, 4]], [0.0, 1.0, 0.0, 1.0])
  assert np.isnan(sx[2]) and np.isnan(sy[5])


def test_bucket_and_pad_to_bucket():
  assert [geometry.bucket(n) for n in (0, 1, 512, 513)] == [512, 512, 512, 1024]
  x = np.arange(6, dtype=float).reshape(3, 2)
  padded = geometry.pad_to_bucket(x, size=4)
  assert padded.shape == (4, 2) and np.array_equal(padded[3], x[0])
  assert geometry.pad_to_bucket(np.zeros((0, 2))).shape == (0, 2)
