"""Target specs: the one place where a target's settings become data (app, links and CLI)."""

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import datasets, share, target_spec, targets
from cmm_core.target_spec import Kind


def test_toy_spec_builds_the_toy_and_a_fresh_draw_with_another_seed():
  spec = {"kind": "toy2d", "name": "two_moons", "n": 300, "seed": 4, "params": {"noise": 0.05}}
  built = target_spec.build(spec)
  np.testing.assert_array_equal(built.data, targets.make("two_moons", 300, seed=4, noise=0.05))
  assert built.label.startswith("two_moons (n=300, seed=4") and built.columns is None
  fresh = target_spec.fresh_draw(spec, 200)
  assert fresh.shape == (200, 2)
  np.testing.assert_array_equal(
      fresh, targets.make("two_moons", 200, seed=4 + target_spec.HELDOUT_SEED_OFFSET, noise=0.05))


def test_gaussian_spec_completes_its_covariance():
  spec = {"kind": "gaussian", "mean": [1.0, -1.0], "stds": [2.0, 0.5], "angle": 0, "n": 4000,
          "seed": 0}
  built = target_spec.build(spec)
  np.testing.assert_allclose(built.spec["cov"], [[4.0, 0.0], [0.0, 0.25]], atol=1e-9)
  np.testing.assert_allclose(built.data.mean(0), [1.0, -1.0], atol=0.1)
  assert target_spec.fresh_draw(built.spec, 100).shape == (100, 2)
  assert target_spec.fresh_draw(spec, 100).shape == (100, 2)  # without the completed cov too


def test_real_data_holds_out_a_fixed_share_of_its_rows():
  spec = {"kind": Kind.REAL.value, "name": "old_faithful", "columns": ["waiting_min"],
          "standardize": False}
  built = target_spec.build(spec)
  table = datasets.load("old_faithful", columns=["waiting_min"])
  n, k = built.data.shape[0], built.heldout.shape[0]
  assert n + k == table.shape[0] and k == round(target_spec.HOLDOUT_SHARE * table.shape[0])
  assert built.spec["n"] == n and built.spec["n_heldout"] == k and "54 rows held out" in built.label
  # the two parts are the table's rows, each once, in the table's order
  np.testing.assert_array_equal(np.sort(np.concatenate([built.data, built.heldout]), 0),
                                np.sort(table, 0))
  again = target_spec.build(spec)
  np.testing.assert_array_equal(again.heldout, built.heldout)  # always the same rows
  assert built.columns == ["waiting_min"]
  assert target_spec.fresh_draw(spec) is None  # a table cannot be drawn again: the rows play that part


def test_small_tables_are_fitted_whole():
  rows = np.arange(2 * (target_spec.MIN_ROWS_TO_HOLD_OUT - 1), dtype=np.float32).reshape(-1, 2)
  train, held = target_spec.hold_out(rows)
  assert held is None and train.shape == rows.shape
  rows = np.arange(200, dtype=np.float32).reshape(100, 2)
  train, held = target_spec.hold_out(rows)
  assert held.shape == (20, 2) and train.shape == (80, 2)
  assert np.all(np.diff(train[:, 0]) > 0) and np.all(np.diff(held[:, 0]) > 0)  # order kept
  assert not set(train[:, 0]) & set(held[:, 0])


def test_unknown_kinds_are_refused_with_the_known_ones():
  with pytest.raises(ValueError, match="unknown target kind"):
    target_spec.build({"kind": "3D toy"})
  with pytest.raises(ValueError, match="cannot be rebuilt"):
    target_spec.build({"kind": "upload", "file": "x.csv"})
  assert target_spec.fresh_draw({"kind": "nonsense"}) is None


def test_every_link_target_kind_builds():
  # what the link codec decodes is what build takes
  for query in ({"target": "rings", "n": "512"}, {"target": "normal", "mean": "1,2", "std": "1,0.5"},
                {"target": "data.iris"}, {"target": "points", "points": "0,0;1,1", "spread": "0.1"}):
    spec = share.decode(query)["target"]
    assert spec is not None, query
    built = target_spec.build(spec)
    assert built.data.ndim == 2 and len(built.data) >= 2, query


def test_dequantized_counts_are_the_digits_as_given_and_dequantised_uploads():
  digits = {"kind": "real", "name": "digits", "columns": None, "standardize": False}
  assert target_spec.dequantized_counts(digits)
  assert not target_spec.dequantized_counts({**digits, "standardize": True})  # no longer counts
  assert not target_spec.dequantized_counts({"kind": "real", "name": "old_faithful", "standardize": False})
  assert target_spec.dequantized_counts({"kind": "upload", "file": "x.csv", "dequantize": True})
  assert not target_spec.dequantized_counts({"kind": "upload", "file": "x.csv"})
  assert not target_spec.dequantized_counts({"kind": "toy2d", "name": "two_moons"})
  assert not target_spec.dequantized_counts({"kind": "nonsense"})
  with pytest.raises(ValueError, match="dequantize must be True or False"):
    cc.fit("maflow", np.zeros((10, 2)) + np.arange(10)[:, None], steps=1, dequantize="yes")
