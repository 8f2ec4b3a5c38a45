import numpy as np
import pytest

import cmm_core as cc

from small_fits import fit as _fit  # tests/small_fits.py: tests/ is on pytest's path


# cmm in the default suite; mm and brenier (the same model class, 9-11 s each to fit) in the slow one
@pytest.fixture(scope="module", params=["cmm", pytest.param("mm", marks=pytest.mark.slow),
                                        pytest.param("brenier", marks=pytest.mark.slow)])
def small_fit(request):
  return _fit(request.param)


def test_save_load_round_trip_gives_identical_samples(small_fit, tmp_path):
  path = tmp_path / "model.msgpack"
  small_fit.save(path)
  loaded = cc.load(path)
  assert loaded.model == small_fit.model and loaded.config["batch_size"] == 64
  assert loaded.history == small_fit.history
  np.testing.assert_array_equal(loaded.sample(300, seed=4), small_fit.sample(300, seed=4))
  np.testing.assert_array_equal(loaded.sample_base(300, seed=4), small_fit.sample_base(300, seed=4))


def test_same_seed_same_fit():
  # the settings of small_fit: the second and third fits reuse its compiled training chunk
  a, b = _fit("cmm", seed=3), _fit("cmm", seed=3)
  np.testing.assert_array_equal(a.sample(100, seed=0), b.sample(100, seed=0))
  assert not np.array_equal(a.sample(100, seed=0), _fit("cmm", seed=4).sample(100, seed=0))


@pytest.mark.parametrize("blob", [b"", b"not a model", b"\x93NUMPY garbage", b"\x80\x04K\x01."])
def test_loading_garbage_gives_data_error(tmp_path, blob):
  path = tmp_path / "bad.msgpack"
  path.write_bytes(blob)
  with pytest.raises(cc.DataError):
    cc.load(path)
