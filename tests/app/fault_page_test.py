"""A real model that diverges: training stops, the last good fit is kept, the page says what to do.

sdot with learning_rate=1.0 (allowed, at its bound) produces NaN within its first chunk on
two_moons; it is opened through a link with run=1, as a user following a shared link would.
"""

import jax
import numpy as np

import cmm_core as cc
from apptest_utils import open_app

DIVERGING = {"target": "two_moons", "n": "256", "model": "sdot", "steps": "40", "seed": "0",
             "hp.learning_rate": "1.0", "run": "1"}


def test_a_diverging_real_fit_is_stopped_with_the_last_good_parameters():
  x = cc.targets.make("two_moons", 256, seed=0)
  fitted = cc.fit("sdot", x, steps=40, seed=0, chunk_size=10, learning_rate=1.0)
  assert fitted.info["status"] == "diverged"
  assert "NaN" in fitted.info["message"] and "learning_rate" in fitted.info["message"]
  assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree_util.tree_leaves(fitted.params))
  assert np.all(np.isfinite(fitted.sample(100)))  # the kept parameters still sample


def test_the_train_page_reports_the_divergence_and_shows_the_kept_fit():
  at = open_app("app_pages/train.py", home_first=False, query=DIVERGING)
  assert not at.exception, [e.value for e in at.exception]
  fit = at.session_state["fit"]["fitted"]
  assert fit.model == "sdot" and fit.info["status"] == "diverged"
  warnings = [w.value for w in at.warning]
  assert any("NaN" in w and "learning_rate" in w for w in warnings), warnings
  assert len(at.get("plotly_chart")) >= 3  # base, map, samples of the kept parameters
