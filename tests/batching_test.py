import numpy as np

from cmm_core import batching


def test_bucket_is_the_smallest_size_holding_n_then_multiples_of_the_last():
  assert [batching.bucket(n) for n in (0, 1, 256, 257, 1024, 1025, 4096)] == \
      [256, 256, 256, 1024, 1024, 4096, 4096]
  assert batching.bucket(4097) == 8192 and batching.bucket(8193) == 12288
  assert batching.bucket(9, sizes=(8, 32)) == 32 and batching.bucket(33, sizes=(8, 32)) == 64


def test_pad_rows_repeats_the_last_row():
  a = np.arange(6.0).reshape(3, 2)
  padded = batching.pad_rows(a, 5)
  assert padded.shape == (5, 2)
  np.testing.assert_array_equal(padded[:3], a)
  np.testing.assert_array_equal(padded[3:], [[4.0, 5.0], [4.0, 5.0]])
  assert batching.pad_rows(a, 3) is a
