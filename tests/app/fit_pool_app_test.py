"""Four sessions of the app start fits at once on a server whose fit pool has one slot
(``app_support.fit_pool.POOL`` swapped for ``FitPool(1)``, as ``CMM_MAX_FITS=1`` gives): every fit
finishes with the result the session asked for, never more than one trains at once, and the ones
that waited showed their place in the queue.

``AppTest`` is not made to run from several threads (``tests/app/isolation_test.py`` says why: a
run swaps process-wide globals for its length). :func:`threaded_apptests` makes those globals the
same for every run while the sessions overlap: one ``global.appTest`` config patch around them all
instead of one per run, one mock runtime (one cache storage, as on a real server) that no run
resets to None, and one lock around compiling a page script (CPython 3.11's compiler is not safe
from several threads at once: the "AST constructor recursion depth mismatch" seen there).
"""

import contextlib
import threading
import time
from unittest.mock import MagicMock

import numpy as np
import pandas  # noqa: F401  (imported here once: runs in threads must not import it at once)
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as at_mod
from streamlit.testing.v1.util import patch_config_options

import cmm_core as cc
from cmm_core import api
from app_support import fit_pool
from apptest_utils import TRAIN_TIMEOUT, APP

TIMEOUT = TRAIN_TIMEOUT  # apptest_utils
TRAIN = {  # three sessions on the Train page, each with its own target and settings
    "a": {"target": "two_moons", "n": "256", "seed": "0", "hp.hidden": "8", "hp.n_steps": "1"},
    "b": {"target": "rings", "n": "512", "seed": "3", "hp.hidden": "4", "hp.n_steps": "2"},
    "c": {"target": "two_moons", "n": "256", "seed": "5", "hp.hidden": "8", "hp.n_steps": "1"},
}
STEPS = 5


class RecordingPool(fit_pool.FitPool):
  """A FitPool that also records what each waiting fit was told (place, of how many), by the
  script thread that waits (AppTest gives every session the same session id).

  ``queued_before_first``: the first fit to get the slot holds it until that many others wait (or
  ``HOLD_SECONDS`` pass), so that the queue forms however fast a fit runs on this machine."""

  HOLD_SECONDS = 60.0

  def __init__(self, size, queued_before_first=0):
    super().__init__(size, poll=0.2)
    self.told = {}
    self.queued_before_first = queued_before_first
    self._first = threading.Event()

  @contextlib.contextmanager
  def slot(self, session_id=None, on_wait=None):
    who = threading.get_ident()

    def wait(place, n, seconds):
      self.told.setdefault(who, []).append((place, n))
      if on_wait is not None:
        on_wait(place, n, seconds)
    with super().slot(session_id, on_wait=wait) as ticket:
      if not self._first.is_set():
        self._first.set()
        deadline = time.monotonic() + self.HOLD_SECONDS
        while self.status().waiting < self.queued_before_first and time.monotonic() < deadline:
          time.sleep(0.02)  # polls the queue's length: the wait ends as soon as it has formed
      yield ticket


@contextlib.contextmanager
def threaded_apptests(monkeypatch):
  """AppTest runs may overlap in time inside this block (see the module's docstring)."""
  class SharedRuntime(at_mod.Runtime):  # a run's `Runtime._instance = ...` lands here, ignored
    pass

  runtime = MagicMock(spec=at_mod.Runtime)
  runtime.media_file_mgr = at_mod.MediaFileManager(at_mod.MemoryMediaFileStorage("/mock/media"))
  runtime.dataframe_source_mgr = at_mod.DataframeSourceManager()
  runtime.cache_storage_manager = at_mod.MemoryCacheStorageManager()
  components = at_mod.BidiComponentManager()
  components.discover_and_register_components(start_file_watching=False)
  runtime.bidi_component_registry = components
  compile_lock = threading.Lock()
  get_bytecode = at_mod.ScriptCache.get_bytecode

  def locked_get_bytecode(self, path):
    with compile_lock:
      return get_bytecode(self, path)

  monkeypatch.setattr(at_mod, "Runtime", SharedRuntime)
  monkeypatch.setattr(at_mod, "patch_config_options", lambda options: contextlib.nullcontext())
  monkeypatch.setattr(at_mod.ScriptCache, "get_bytecode", locked_get_bytecode)
  with patch_config_options({"global.appTest": True}):
    SharedRuntime.__base__._instance = runtime
    try:
      yield
    finally:
      SharedRuntime.__base__._instance = None


@pytest.fixture
def counted_fits(monkeypatch):
  """Wraps the library's fit (the Train page calls ``cc.fit``, Compare ``api.fit``): how many
  train at this moment, and the most at once."""
  fit, lock, count = api.fit, threading.Lock(), {"now": 0, "most": 0, "calls": 0}

  def counting_fit(*args, **kw):
    with lock:
      count["now"] += 1
      count["calls"] += 1
      count["most"] = max(count["most"], count["now"])
    try:
      return fit(*args, **kw)
    finally:
      with lock:
        count["now"] -= 1

  monkeypatch.setattr(api, "fit", counting_fit)
  monkeypatch.setattr(cc, "fit", counting_fit)
  return count


def test_four_sessions_share_one_slot_in_turn(monkeypatch, counted_fits):
  pool = RecordingPool(1, queued_before_first=2)  # at least two sessions queue, on any machine
  monkeypatch.setattr(fit_pool, "POOL", pool)
  queries = {name: {**q, "model": "maflow", "steps": str(STEPS), "run": "1"}
             for name, q in TRAIN.items()}
  queries["cmp"] = {"target": "two_moons", "n": "256", "models": "maflow", "budget": f"steps:{STEPS}",
                    "run": "1"}
  pages = {name: "app_pages/train.py" for name in TRAIN} | {"cmp": "app_pages/compare.py"}
  sessions, errors = {}, []
  barrier = threading.Barrier(len(queries))

  def open_and_fit(name):
    try:
      at = AppTest.from_file(APP, default_timeout=TIMEOUT)
      at.query_params.update(queries[name])
      at.switch_page(pages[name])
      barrier.wait(TIMEOUT)
      sessions[name] = at.run()  # run=1: the page fits as it opens
    except BaseException as e:  # reported below: an exception in a thread does not fail the test
      errors.append((name, e))

  with threaded_apptests(monkeypatch):
    threads = [threading.Thread(target=open_and_fit, args=(n,)) for n in queries]
    for t in threads:
      t.start()
    for t in threads:
      t.join(TIMEOUT * 2)
  assert not errors, errors
  for name, at in sessions.items():
    assert not at.exception, (name, [e.value for e in at.exception])
    assert not at.error, (name, [e.value for e in at.error])

  # never more than one fit at once, in the library and in the pool
  assert counted_fits["calls"] == 4 and counted_fits["most"] == 1
  assert pool.peak == 1 and pool.status() == fit_pool.Status(1, 0, 0, 1, pool.status().median_seconds)
  # the sessions that came while a fit ran waited and were told their place, moving up to 1
  # (the first fit holds its slot until two others wait: at least two of four here)
  assert len(pool.told) >= 2, pool.told
  for told in pool.told.values():
    assert all(1 <= place <= n <= 3 for place, n in told), told
    places = [place for place, _ in told]
    assert places == sorted(places, reverse=True) and places[-1] == 1, told
  # (two sessions may both first hear "place 1": one that arrives after another left the queue;
  # that tickets are served in arrival order is fit_pool_test.py's check, with controlled timing)

  # each Train session got the fit it asked for, and says whether (and where) it waited
  waited = 0
  for name, q in TRAIN.items():
    at = sessions[name]
    entry = at.session_state["fit"]
    fitted = entry["fitted"]
    assert fitted.info["status"] == "done" and fitted.info["steps_done"] == STEPS
    assert entry["target_spec"]["name"] == q["target"] and entry["data"].shape[0] == int(q["n"])
    hyper = {"hidden": int(q["hp.hidden"]), "n_steps": int(q["hp.n_steps"])}
    assert entry["settings"] == {"model": "maflow", "steps": STEPS, "seed": int(q["seed"]),
                                 "hyper": hyper}
    reference = cc.fit("maflow", entry["data"], steps=STEPS, seed=int(q["seed"]), chunk_size=10,
                       **hyper)
    np.testing.assert_array_equal(reference.sample(200, seed=5), fitted.sample(200, seed=5))
    wait = entry["wait"]
    if wait["place"]:
      waited += 1
      text = "\n".join(m.value for m in at.markdown)
      assert f"for a training slot (place {wait['place']} in the queue)" in text, text
  cmp = sessions["cmp"].session_state["cmp_run"]
  assert cmp["done"] and cmp["results"]["maflow"]["status"] == "done"
  assert waited + bool(cmp["results"]["maflow"].get("wait", {}).get("place")) == len(pool.told)


def test_the_epsilon_experiment_takes_one_slot_per_fit(monkeypatch):
  # the sweep itself is replaced by a quick stand-in: what is checked is the page's use of the pool
  from cmm_core.models import sdot
  pool = RecordingPool(1)
  monkeypatch.setattr(fit_pool, "POOL", pool)
  held = []

  def sweep(data, epsilons, **kw):
    held.append(pool.status().running)
    return [{"epsilon": e, "energy_distance": 0.01, "seconds": 1.0, "loss": [], "steps": [],
             "samples": np.zeros((10, 2)), "fitted": None} for e in epsilons]

  monkeypatch.setattr(sdot, "epsilon_sweep", sweep)
  at = AppTest.from_file(APP, default_timeout=TIMEOUT)
  at.query_params.update({"target": "two_moons", "n": "256", "model": "sdot"})
  at.switch_page("app_pages/train.py")
  at.run()
  at.button(key="tr_sweep").click()
  at.run()
  assert not at.exception, [e.value for e in at.exception]
  assert held == [1, 1, 1, 1] and len(pool.started_order) == 4  # one slot per epsilon
  results = at.session_state["sdot_sweep"]["results"]
  assert [r["epsilon"] for r in results] == [0.0, 0.025, 0.05, 0.1]
