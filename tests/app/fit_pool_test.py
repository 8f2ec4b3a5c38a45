"""The fit pool (app_support/fit_pool.py) with plain threads: at most K fits at once, tickets
served in arrival order, a place freed by an exception while waiting or running, the estimate,
and CMM_MAX_FITS."""

import threading
import time

import pytest

from app_support import fit_pool
from app_support.fit_pool import FitPool


def _start(fn, *args):
  t = threading.Thread(target=fn, args=args, daemon=True)
  t.start()
  return t


def _until(cond, timeout=10.0):
  t0 = time.monotonic()
  while not cond():
    assert time.monotonic() - t0 < timeout, "timed out"
    time.sleep(0.005)


def _queue_ready(pool, running, waiting):
  _until(lambda: (pool.status().running, pool.status().waiting) == (running, waiting))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_never_more_than_k_and_every_fit_runs(k):
  pool = FitPool(k, poll=0.01)
  now, most, lock, done = [0], [0], threading.Lock(), []

  def fit(i):
    with pool.slot(f"s{i}"):
      with lock:
        now[0] += 1
        most[0] = max(most[0], now[0])
      time.sleep(0.02)
      with lock:
        now[0] -= 1
    done.append(i)

  threads = [_start(fit, i) for i in range(10)]
  for t in threads:
    t.join(10)
  assert sorted(done) == list(range(10))
  assert most[0] == k and pool.peak == k
  assert pool.status() == fit_pool.Status(k, 0, 0, k, pool.status().median_seconds)


def test_tickets_are_served_in_arrival_order():
  pool = FitPool(1, poll=0.01)
  release = threading.Event()
  order = []

  def holder():
    with pool.slot("first"):
      release.wait(10)

  def fit(i):
    with pool.slot(f"s{i}"):
      order.append(i)

  threads = [_start(holder)]
  _queue_ready(pool, 1, 0)
  for i in range(6):  # they queue one after another, in this order
    threads.append(_start(fit, i))
    _queue_ready(pool, 1, i + 1)
  release.set()
  for t in threads:
    t.join(10)
  assert order == list(range(6))
  assert list(pool.started_order) == list(range(7))


def test_a_free_slot_is_not_taken_out_of_turn():
  # K=2, one running: the next gets the free slot at once; a latecomer waits for a slot to free
  pool = FitPool(2, poll=0.01)
  release = threading.Event()
  got = {}

  def fit(name, hold):
    with pool.slot(name) as ticket:
      got[name] = ticket
      if hold:
        release.wait(10)

  with pool.slot("a") as ta:
    assert ta.place == 0 and ta.waited < 1
    tb = _start(fit, "b", True)
    _until(lambda: "b" in got)
    assert got["b"].place == 0 and pool.peak == 2
    tc = _start(fit, "c", False)
    _queue_ready(pool, 2, 1)
    time.sleep(0.05)
    assert "c" not in got
  tc.join(10)  # "a" left: "c" gets its slot
  assert got["c"].place == 1 and got["c"].waited >= 0.05
  release.set()
  tb.join(10)
  assert pool.peak == 2


def test_on_wait_reports_place_and_total_periodically():
  pool = FitPool(1, poll=0.02)
  release = threading.Event()
  seen = {1: [], 2: []}

  def holder():
    with pool.slot("h"):
      release.wait(10)

  def waiter(i):
    with pool.slot(f"w{i}", on_wait=lambda p, n, est: seen[i].append((p, n, est))):
      time.sleep(0.1)

  threads = [_start(holder)]
  _queue_ready(pool, 1, 0)
  threads.append(_start(waiter, 1))
  _queue_ready(pool, 1, 1)
  threads.append(_start(waiter, 2))
  _queue_ready(pool, 1, 2)
  time.sleep(0.15)
  release.set()
  for t in threads:
    t.join(10)
  assert seen[1][0][:2] == (1, 1) and (1, 2) in [s[:2] for s in seen[1]]
  assert seen[2][0][:2] == (2, 2)
  assert (1, 1) in [s[:2] for s in seen[2]]  # moved up when the first waiter started
  assert len(seen[2]) >= 4  # periodic: about every 0.02 s over 0.15 s
  assert all(est is None for *_, est in seen[1])  # no fit had finished yet
  # once the holder finished, its duration gives an estimate: w1's remaining time
  assert all(est is not None and 0 <= est < 1 for p, n, est in seen[2] if p == 1)


class _Stop(BaseException):
  """What Streamlit raises in a script thread on Stop / rerun / tab closed (a BaseException)."""


@pytest.mark.parametrize("exc", [_Stop, RuntimeError])
def test_an_exception_while_waiting_frees_the_place(exc):
  pool = FitPool(1, poll=0.01)
  release = threading.Event()
  order, raised = [], []

  def holder():
    with pool.slot("h"):
      release.wait(10)

  def leaver(p, n, est):
    raise exc("stop pressed")

  def quitter():
    try:
      with pool.slot("q", on_wait=leaver):
        order.append("q")
    except exc:
      raised.append(True)

  def fit():
    with pool.slot("f"):
      order.append("f")

  threads = [_start(holder)]
  _queue_ready(pool, 1, 0)
  threads.append(_start(quitter))
  _until(lambda: raised)
  assert pool.status().waiting == 0  # it left the queue at once
  threads.append(_start(fit))
  _queue_ready(pool, 1, 1)
  release.set()
  for t in threads:
    t.join(10)
  assert order == ["f"]
  assert pool.status().running == 0 and pool.status().waiting == 0


def test_a_waiter_in_the_middle_that_leaves_lets_the_next_one_move_up():
  pool = FitPool(1, poll=0.01)
  release, leave = threading.Event(), threading.Event()
  places = []

  def holder():
    with pool.slot("h"):
      release.wait(10)

  def maybe_leave(p, n, est):
    if leave.is_set():
      raise _Stop()

  def quitter():
    try:
      with pool.slot("q", on_wait=maybe_leave):
        pass
    except _Stop:
      pass

  def last():
    with pool.slot("l", on_wait=lambda p, n, est: places.append((p, n))):
      pass

  threads = [_start(holder)]
  _queue_ready(pool, 1, 0)
  threads.append(_start(quitter))
  _queue_ready(pool, 1, 1)
  threads.append(_start(last))
  _queue_ready(pool, 1, 2)
  leave.set()
  _queue_ready(pool, 1, 1)
  _until(lambda: places and places[-1] == (1, 1))
  release.set()
  for t in threads:
    t.join(10)
  assert places[0] == (2, 2)


def test_an_exception_while_running_frees_the_slot_and_is_not_a_duration():
  pool = FitPool(1)
  with pytest.raises(_Stop):
    with pool.slot("a"):
      raise _Stop()
  with pytest.raises(ValueError):
    with pool.slot("b"):
      raise ValueError("bad settings")
  assert pool.status() == fit_pool.Status(1, 0, 0, 1, None)
  with pool.slot("c"):  # free again, at once
    pass
  assert pool.status().median_seconds is not None


def test_the_estimate():
  pool = FitPool(2)
  assert pool.estimate(1) is None  # no fit has finished yet
  pool._durations.extend([10.0, 30.0, 20.0])  # median 20
  assert pool.estimate(1) == 0.0  # nothing runs: the first in line starts at once
  assert pool.estimate(3) == 20.0  # two start now; the third when the first of them ends
  now = time.monotonic()
  pool._running = {0: fit_pool.Ticket(0, "a", started=now - 5), 1: fit_pool.Ticket(1, "b", started=now - 15)}
  assert pool.estimate(1) == pytest.approx(5, abs=0.5)   # b has about 5 s left
  assert pool.estimate(2) == pytest.approx(15, abs=0.5)  # a has about 15 s left
  assert pool.estimate(3) == pytest.approx(25, abs=0.5)  # after the first in line, 5 + 20
  pool._running[1].started = now - 100  # overdue: taken to end now, not in the past
  assert pool.estimate(1) == 0.0
  assert pool.status().median_seconds == 20.0


def test_the_estimate_reaches_on_wait_after_a_fit_finished():
  pool = FitPool(1, poll=0.01)
  with pool.slot("a"):
    time.sleep(0.05)
  release, seen = threading.Event(), []

  def holder():
    with pool.slot("h"):
      release.wait(10)

  t = _start(holder)
  _queue_ready(pool, 1, 0)
  t2 = _start(lambda: pool.slot("w", on_wait=lambda *a: seen.append(a)).__enter__())
  _until(lambda: seen)
  release.set()
  t.join(10)
  t2.join(10)
  place, n, est = seen[0]
  assert (place, n) == (1, 1) and 0 <= est <= 0.1


def test_durations_kept_are_the_recent_ones():
  pool = FitPool(1, history=3)
  for _ in range(5):
    with pool.slot():
      pass
  assert len(pool._durations) == 3


def test_size_from_the_environment(monkeypatch):
  monkeypatch.setattr(fit_pool.os, "cpu_count", lambda: 6)
  assert fit_pool.size_from_env({}) == (6, None)
  assert fit_pool.size_from_env({"CMM_MAX_FITS": " 3 "}) == (3, None)
  assert fit_pool.size_from_env({"CMM_MAX_FITS": ""}) == (6, None)
  for bad in ("0", "-2", "two", "1.5"):
    size, problem = fit_pool.size_from_env({"CMM_MAX_FITS": bad})
    assert size == 6 and f"CMM_MAX_FITS={bad!r} is not an integer >= 1" in problem
  monkeypatch.setattr(fit_pool.os, "cpu_count", lambda: None)
  assert fit_pool.size_from_env({}) == (1, None)


def test_the_pool_reads_the_environment_and_warns_on_a_bad_value(monkeypatch):
  monkeypatch.setattr(fit_pool.os, "cpu_count", lambda: 4)
  monkeypatch.setenv("CMM_MAX_FITS", "2")
  assert FitPool().size == 2
  monkeypatch.setenv("CMM_MAX_FITS", "lots")
  with pytest.warns(RuntimeWarning, match="not an integer >= 1; using the number of cores, 4"):
    pool = FitPool()
  assert pool.size == 4 and "lots" in pool.problem
  monkeypatch.delenv("CMM_MAX_FITS")
  assert FitPool().size == 4
  with pytest.raises(ValueError, match="at least one slot"):
    FitPool(0)


def test_the_wait_text():
  assert fit_pool.wait_text(2, 3, 40.2, 2) == (
      "Waiting for a free training slot: place 2 of 3 in the queue; about 40 s (an estimate from "
      "recent fits). The server trains at most 2 fit(s) at once; Stop leaves the queue.")
  assert "about 3 min" in fit_pool.wait_text(1, 1, 170, 1)
  assert "no estimate yet" in fit_pool.wait_text(1, 1, None, 1)
