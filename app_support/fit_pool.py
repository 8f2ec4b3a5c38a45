"""A process-wide bounded pool for fits: Streamlit runs every browser session as a thread of one
process, so without a bound thirty students pressing Train run thirty fits at once, each getting a
sliver of the CPU, and the pages of everyone else stall. Here at most ``size`` fits train at once;
the others wait in a fair queue (first come, first served: tickets in arrival order).

Usage (a page)::

    with fit_pool.pool().slot(session_id, on_wait=show) as ticket:
      fitted = cc.fit(...)

``on_wait(place, n_waiting, estimated_seconds)`` is called at once and then every ``poll`` seconds
(default 0.5) while the fit waits, and whenever its place changes: ``place`` is 1 for the next fit
to start, ``n_waiting`` how many wait in all, ``estimated_seconds`` a rough wait (None until a fit
has finished; see :meth:`FitPool.estimate`). The page draws the place there; drawing is also where
Streamlit raises ``StopException``/``RerunException`` in a script thread whose session pressed Stop,
closed its tab or reran, which frees the place (``try``/``finally``): a waiting fit never blocks the
queue after its user left, nor does a running one after its training callback raised.

The size is ``CMM_MAX_FITS`` (an integer >= 1) when set, else ``os.cpu_count()``. A value that is
not an integer >= 1 is not fatal (the app must still start for the class): a ``RuntimeWarning``
says so on the server's console and the default is used; :attr:`FitPool.problem` keeps the sentence.

Pure Python (no Streamlit), so the unit tests drive it with plain threads
(``tests/app/fit_pool_test.py``). Which work takes a slot: a fit on the Train page, each model's fit
of a Compare run (one slot per model, not per comparison) and each fit of the sdot epsilon
experiment; the exact pages, the target previews and the drawing of panels never do
(``docs/deploy.md``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import heapq
import os
import statistics
import threading
import time
import warnings
from typing import Callable, Iterator, Optional

ENV = "CMM_MAX_FITS"
POLL_SECONDS = 0.5   # how often on_wait is called while a fit waits
HISTORY = 20         # recent fit durations the estimate's median is taken over

OnWait = Callable[[int, int, Optional[float]], object]


def default_size() -> int:
  """The number of cores (``os.cpu_count()``, 1 when unknown)."""
  return max(1, os.cpu_count() or 1)


def size_from_env(environ=None) -> tuple[int, Optional[str]]:
  """``(size, problem)``: ``CMM_MAX_FITS`` when it is an integer >= 1, else the default with the
  reason in words (``problem`` is None when the variable is unset or valid)."""
  environ = os.environ if environ is None else environ
  raw = environ.get(ENV)
  if raw is None or not raw.strip():
    return default_size(), None
  try:
    value = int(raw.strip())
  except ValueError:
    value = None
  if value is None or value < 1:
    return default_size(), (f"{ENV}={raw!r} is not an integer >= 1; using the number of cores, "
                            f"{default_size()}, fits at once")
  return value, None


@dataclasses.dataclass(eq=False)
class Ticket:
  """A place in the pool: what ``slot`` yields. ``waited`` is the seconds spent in the queue,
  ``place`` the place it got on arrival (0 when a slot was free at once)."""
  number: int
  session_id: Optional[str]
  place: int = 0
  waited: float = 0.0
  started: Optional[float] = None   # time.monotonic() when it got a slot


@dataclasses.dataclass(frozen=True)
class Status:
  """A snapshot of the pool for display: ``size`` slots, ``running`` and ``waiting`` fits, the
  most that ever ran at once (``peak``), and the median of recent fit durations (None before
  the first)."""
  size: int
  running: int
  waiting: int
  peak: int
  median_seconds: Optional[float]


class FitPool:
  """At most ``size`` fits at once, the rest in a first-come-first-served queue."""

  def __init__(self, size: Optional[int] = None, *, poll: float = POLL_SECONDS,
               history: int = HISTORY, problem: Optional[str] = None):
    if size is None:
      size, problem = size_from_env()
      if problem:
        warnings.warn(problem, RuntimeWarning, stacklevel=2)
    if not isinstance(size, int) or size < 1:
      raise ValueError(f"a fit pool needs at least one slot, got {size!r}")
    self.size = size
    self.poll = poll
    self.problem = problem
    self._cond = threading.Condition()
    self._next = 0
    self._queue: collections.deque = collections.deque()   # waiting tickets, arrival order
    self._running: dict = {}                                # ticket number -> Ticket
    self._durations: collections.deque = collections.deque(maxlen=history)
    self.peak = 0                                           # most fits ever running at once
    self.started_order: collections.deque = collections.deque(maxlen=1000)  # ticket numbers

  # -- the slot -------------------------------------------------------------------------------
  @contextlib.contextmanager
  def slot(self, session_id: Optional[str] = None, on_wait: Optional[OnWait] = None
           ) -> Iterator[Ticket]:
    """Waits for a free slot in turn, holds it for the ``with`` block, frees it after, whatever
    happens (an exception while waiting, from ``on_wait`` included, leaves the queue)."""
    t0 = time.monotonic()
    with self._cond:
      ticket = Ticket(self._next, session_id)
      self._next += 1
      self._queue.append(ticket)
      if not self._may_start(ticket):
        ticket.place = self._queue.index(ticket) + 1
    try:
      self._wait(ticket, on_wait)
    except BaseException:
      with self._cond:
        if ticket in self._queue:
          self._queue.remove(ticket)
        self._running.pop(ticket.number, None)
        self._cond.notify_all()   # the one behind may start now
      raise
    ticket.waited = time.monotonic() - t0
    ok = False
    try:
      yield ticket
      ok = True
    finally:
      with self._cond:
        self._running.pop(ticket.number, None)
        if ok:
          self._durations.append(time.monotonic() - ticket.started)
        self._cond.notify_all()

  def _may_start(self, ticket: Ticket) -> bool:
    return self._queue[0] is ticket and len(self._running) < self.size

  def _wait(self, ticket: Ticket, on_wait: Optional[OnWait]) -> None:
    next_report, last = 0.0, None
    while True:
      with self._cond:
        if self._may_start(ticket):
          self._queue.popleft()
          ticket.started = time.monotonic()
          self._running[ticket.number] = ticket
          self.peak = max(self.peak, len(self._running))
          self.started_order.append(ticket.number)
          self._cond.notify_all()   # the next in line may start too when slots are left
          return
        place = self._queue.index(ticket) + 1
        info = (place, len(self._queue))
        now = time.monotonic()
        if on_wait is None or (now < next_report and info == last):
          self._cond.wait(timeout=None if on_wait is None else next_report - now)
          continue
        estimate = self._estimate(place)
      last, next_report = info, now + self.poll
      on_wait(place, info[1], estimate)   # outside the lock: it draws, and may raise

  # -- what the pages show -----------------------------------------------------------------------
  def _estimate(self, place: int) -> Optional[float]:
    if not self._durations:
      return None
    typical = statistics.median(self._durations)
    now = time.monotonic()
    free = [max(0.0, typical - (now - t.started)) for t in self._running.values()]
    free += [0.0] * (self.size - len(free))
    heapq.heapify(free)
    for _ in range(place - 1):   # each fit ahead takes the earliest free slot for `typical`
      heapq.heappush(free, heapq.heappop(free) + typical)
    return free[0]

  def estimate(self, place: int) -> Optional[float]:
    """Seconds until the fit at ``place`` starts, roughly: every running fit is taken to last the
    median of the last ``HISTORY`` fits' durations (from its start), and each fit ahead to take the
    first slot to free up for as long. None before any fit has finished. An estimate: fits of
    different models and steps differ by far more than this can know."""
    with self._cond:
      return self._estimate(place)

  def status(self) -> Status:
    with self._cond:
      median = statistics.median(self._durations) if self._durations else None
      return Status(self.size, len(self._running), len(self._queue), self.peak, median)


def wait_text(place: int, n_waiting: int, seconds: Optional[float], size: int) -> str:
  """The sentence a page shows while its fit waits."""
  when = ("no estimate yet (no fit has finished since the server started)" if seconds is None
          else f"about {_duration(seconds)} (an estimate from recent fits)")
  return (f"Waiting for a free training slot: place {place} of {n_waiting} in the queue; "
          f"{when}. The server trains at most {size} fit(s) at once; Stop leaves the queue.")


def _duration(seconds: float) -> str:
  if seconds < 60:
    return f"{max(1, round(seconds))} s"
  return f"{round(seconds / 60)} min"


POOL = FitPool()
"""The pool of this server process (every session's thread shares it)."""


def pool() -> FitPool:
  """The process's pool (tests swap ``POOL`` for a small one)."""
  return POOL
