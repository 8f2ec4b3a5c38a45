"""Tests for cmm_core.metrics.heldout_metrics: the one held-out evaluation of a fit."""

import dataclasses
import math

import numpy as np

from cmm_core import compare, metrics
from cmm_core.viz import geometry


@dataclasses.dataclass
class _Gaussian:
  """Samples and the density of N(shift, I) through the FittedModel protocol."""
  shift: float = 0.0
  density: bool = True

  def sample(self, n, seed=0):
    return (self.shift + np.random.default_rng(seed).standard_normal((n, 2))).astype(np.float32)

  def log_prob(self, y):
    if not self.density:
      raise NotImplementedError
    return -0.5 * np.sum((np.asarray(y) - self.shift) ** 2, 1) - np.log(2 * np.pi)


def test_heldout_metrics_uses_a_seeded_subset_of_n_points():
  held = np.random.default_rng(1).standard_normal((3000, 2))
  m = metrics.heldout_metrics(_Gaussian(), held, seed=0)
  assert isinstance(m, metrics.HeldoutMetrics) and m.n == metrics.N_HELDOUT and not m.errors
  # the NLL is that of the same seeded subset the distances use
  ref = geometry.subsample(held.astype(np.float32), metrics.N_HELDOUT, 0)
  assert m.nll == metrics.nll(_Gaussian().log_prob, ref)
  assert m == metrics.heldout_metrics(_Gaussian(), held, seed=0)  # deterministic
  far = metrics.heldout_metrics(_Gaussian(shift=1.0), held, seed=0)
  assert far.nll > m.nll and far.energy > m.energy and far.sinkhorn > m.sinkhorn
  small = metrics.heldout_metrics(_Gaussian(), held[:100], seed=0, n=50, n_sinkhorn=50)
  assert small.n == 50


def test_heldout_metrics_without_a_density_or_with_a_broken_model():
  held = np.random.default_rng(1).standard_normal((500, 2))
  m = metrics.heldout_metrics(_Gaussian(density=False), held)
  assert m.nll is None and math.isfinite(m.energy) and not m.errors

  class Broken(_Gaussian):
    def sample(self, n, seed=0):
      raise RuntimeError("boom")

  b = metrics.heldout_metrics(Broken(), held)
  assert math.isnan(b.energy) and math.isfinite(b.nll) and "boom" in b.errors[0]


def test_compare_metrics_shows_the_heldout_metrics_of_the_fit():
  held = np.random.default_rng(1).standard_normal((2000, 2))

  @dataclasses.dataclass
  class Fitted(_Gaussian):
    model: str = "fake"
    params: dict = dataclasses.field(default_factory=lambda: {"w": np.zeros(3)})
    info: dict = dataclasses.field(default_factory=lambda: {"status": "done", "steps_done": 5})
    history: list = dataclasses.field(default_factory=list)

  fitted = Fitted()
  row = compare.compare_metrics(fitted, held, 0)
  m = metrics.heldout_metrics(fitted, held, 0)
  assert (row["nll"], row["energy"], row["sinkhorn"], row["n"]) == (m.nll, m.energy, m.sinkhorn, m.n)
  assert row["params"] == 3 and row["steps"] == 5
