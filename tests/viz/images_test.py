"""Tests for cmm_core.viz.images: tiling, nearest training rows, the image views of a model."""

import numpy as np
import pytest

from cmm_core import datasets, target_spec
from cmm_core.viz import images


class AffineModel:
  """A model with a known map: base N(0, I) in d dimensions, transport x -> a + s x."""

  def __init__(self, a, s):
    self.a, self.s, self.model = np.asarray(a, float), float(s), "brenier"

  def sample_base(self, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, self.a.size)).astype(np.float32)

  def transport(self, x):
    return self.a + self.s * np.asarray(x, float)


def test_tile_places_each_image_row_major_with_gaps():
  imgs = np.arange(5 * 6, dtype=float).reshape(5, 6)  # five 2 x 3 images
  z = images.tile(imgs, (2, 3), n_cols=2)
  assert z.shape == (3 * 3 - 1, 2 * 4 - 1)
  np.testing.assert_array_equal(z[0:2, 0:3], imgs[0].reshape(2, 3))
  np.testing.assert_array_equal(z[0:2, 4:7], imgs[1].reshape(2, 3))
  np.testing.assert_array_equal(z[6:8, 0:3], imgs[4].reshape(2, 3))
  assert np.all(np.isnan(z[2])) and np.all(np.isnan(z[:, 3]))   # the gaps
  assert np.all(np.isnan(z[6:8, 4:7]))                          # the empty slot
  with pytest.raises(ValueError, match="rows x columns = 6"):
    images.tile(imgs, (4, 4), n_cols=2)


def test_infer_shape():
  assert images.infer_shape(64) == (8, 8) and images.infer_shape(256) == (16, 16)
  assert images.infer_shape(63) is None and images.infer_shape(4) is None


def test_nearest_rows_match_brute_force():
  rng = np.random.default_rng(0)
  train, samples = rng.normal(size=(700, 5)), rng.normal(size=(600, 5))
  idx, dist = images.nearest_rows(samples, train, chunk=128)
  full = np.linalg.norm(samples[:, None] - train[None], axis=-1)
  np.testing.assert_array_equal(idx, full.argmin(1))
  np.testing.assert_allclose(dist, full.min(1), rtol=1e-9, atol=1e-9)
  idx, dist = images.nearest_rows(train[:10], train)   # copies are at distance 0
  np.testing.assert_array_equal(idx, np.arange(10))
  np.testing.assert_allclose(dist, 0.0, atol=1e-6)


def test_image_views_of_a_known_map_on_the_digits():
  spec = {"kind": "real", "name": "digits", "columns": datasets.info("digits")["default_columns"],
          "standardize": False}
  built = target_spec.build(spec)
  shape = target_spec.image_shape(built.spec)
  assert shape == (8, 8)
  data = built.data
  model = AffineModel(data.mean(0), 2.0)
  view = images.image_views(model, data, shape, seed=3)
  base = model.sample_base(images.N_GRID, seed=3)
  np.testing.assert_allclose(view["base"], base, rtol=1e-6)
  np.testing.assert_allclose(view["mapped"], model.transport(base), rtol=1e-6)  # same order
  # the nearest rows are training rows, at the distances given
  np.testing.assert_allclose(np.linalg.norm(view["mapped"][:len(view["nearest"])] - view["nearest"], axis=1),
                             view["nearest_dist"], rtol=1e-6)
  assert all(np.any(np.all(data == r, axis=1)) for r in view["nearest"])
  # the path runs straight between two base samples, and is mapped
  np.testing.assert_allclose(view["path_base"][0], base[0], rtol=1e-6)
  np.testing.assert_allclose(view["path_base"][-1], base[1], rtol=1e-6)
  np.testing.assert_allclose(view["path"], model.transport(view["path_base"]), rtol=1e-6)
  assert view["data_range"][0] == 0.0 and 16 < view["data_range"][1] <= 17
  assert 0 < view["nearest_typical"] < 60 and view["n_nonfinite"] == 0
  figs = [*images.base_and_mapped_figures(view), images.nearest_figure(view),
          images.interpolation_figure(view),
          images.grid_figure(view["data"], shape, value_range=view["data_range"])]
  for fig in figs:
    assert len(fig.data) == 1 and fig.data[0].type == "heatmap"
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isfinite(z).sum() >= 8 * 8 * 2
  # the mapped grid is drawn in the data's units, 4 rows of 8 images
  assert np.asarray(figs[1].data[0].z, dtype=float).shape == (4 * 9 - 1, 8 * 9 - 1)
  assert (figs[1].data[0].zmin, figs[1].data[0].zmax) == pytest.approx(view["data_range"])


def test_a_latent_of_another_dimension_is_refused():
  class Generator(AffineModel):
    def sample_base(self, n, seed=0):
      return np.zeros((n, 3), np.float32)
  with pytest.raises(ValueError, match="base has 3 dimension"):
    images.image_views(Generator(np.zeros(64), 1.0), np.random.default_rng(0).random((50, 64)), (8, 8))


def test_image_shape_of_specs():
  cols = datasets.info("digits")["default_columns"]
  assert target_spec.image_shape({"kind": "real", "name": "digits", "columns": cols}) == (8, 8)
  assert target_spec.image_shape({"kind": "real", "name": "digits", "columns": cols[:2]}) is None
  assert target_spec.image_shape({"kind": "real", "name": "iris", "columns": ["petal_length_cm"]}) is None
  assert target_spec.image_shape({"kind": "toy2d", "name": "two_moons"}) is None
  assert target_spec.image_shape({"kind": "upload", "image_shape": [4, 4]}) == (4, 4)


def test_mask_presets_and_the_inpainting_figure():
  top = images.mask_preset((8, 8), "bottom half hidden")
  assert top.shape == (64,) and top[:32].all() and not top[32:].any()
  left = images.mask_preset((8, 8), "right half hidden").reshape(8, 8)
  assert left[:, :4].all() and not left[:, 4:].any()
  rand = images.mask_preset((8, 8), "random half hidden", seed=3)
  assert rand.sum() == 32
  np.testing.assert_array_equal(rand, images.mask_preset((8, 8), "random half hidden", seed=3))
  for name in images.MASKS:  # each preset hides exactly half
    assert images.mask_preset((8, 8), name).sum() == 32
  with pytest.raises(ValueError, match="unknown mask"):
    images.mask_preset((8, 8), "everything")
  x = np.arange(64.0)
  fig = images.inpainting_figure(x, top, [("model", np.ones((3, 64))), ("Gaussian", np.zeros((2, 64)))],
                                 (8, 8), value_range=(0, 17))
  z = np.asarray(fig.data[0].z, dtype=float)
  assert z.shape == (3 * 9 - 1, 3 * 9 - 1)             # 3 rows (image, model, Gaussian) x 3 columns
  np.testing.assert_array_equal(z[:8, :8], x.reshape(8, 8))          # the image
  assert np.isnan(z[4:8, 9:17]).all() and (z[:4, 9:17] == x.reshape(8, 8)[:4]).all()  # observed half
  assert (z[9:17, 18:26] == 1).all() and np.isnan(z[18:26, 18:26]).all()  # 3 completions, then 2


def test_candidate_shapes_are_every_rectangle_squarest_first():
  assert images.candidate_shapes(64)[0] == (8, 8)
  assert images.candidate_shapes(24) == [(4, 6), (6, 4), (3, 8), (8, 3), (2, 12), (12, 2)]
  assert images.candidate_shapes(17) == []  # a prime: no rectangle with both sides >= 2
  assert all(h * w == 60 for h, w in images.candidate_shapes(60))


def test_the_brush_hides_the_selected_pixels():
  pts = [{"x": 0, "y": 0}, {"x": 7.0, "y": 2.0}, {"x": 9, "y": 1}, {"y": 3}]  # one off the image, one broken
  keep = images.mask_from_selection(pts, (8, 8))
  assert keep.dtype == bool and keep.shape == (64,)
  assert not keep[0] and not keep[2 * 8 + 7] and keep.sum() == 62
  assert images.mask_from_selection([], (8, 8)).all()
  img = np.arange(64.0)
  fig = images.brush_figure(img, (8, 8), ~keep, value_range=(0, 63))
  heat, dots = fig.data
  assert np.isnan(heat.z[0][0]) and heat.z[2][7] != heat.z[2][7] and heat.z[1][1] == 9.0
  assert len(dots.x) == 64 and list(dots.marker.symbol).count("x-thin") == 2
