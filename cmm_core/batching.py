"""Row counts padded to a few sizes, so that jitted functions compile once per size class.

A jitted function compiles once per input shape; the app and the library ask models for 2,000
samples, a 60 x 60 grid, 300 held-out rows... Padding every request to one of a few sizes keeps
the compilations to a handful per function (each is seconds of XLA time on a CPU).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIZES", "bucket", "pad_rows"]

SIZES = (256, 1024, 4096)


def bucket(n: int, sizes: tuple = SIZES) -> int:
  """The smallest of ``sizes`` holding ``n`` rows; past the last, a multiple of the last."""
  n = max(int(n), 1)
  for size in sizes:
    if n <= size:
      return int(size)
  return int(sizes[-1] * -(-n // sizes[-1]))


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
  """``a`` ``[n, ...]`` (n >= 1) padded to ``size`` rows with copies of its last row."""
  pad = size - a.shape[0]
  return np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad > 0 else a
