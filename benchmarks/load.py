"""A class at once: N headless Chromium sessions open a Train link that fits at once while one
more session keeps opening the home page; how long the home page takes to show its title, how long
each fit waited for a slot of the fit pool and trained, and the server's peak memory.

Starts ``streamlit run app.py`` on a free port with the settings of ``docs/deploy.md`` (headless, no
file watcher) and ``CMM_MAX_FITS`` from ``--max-fits`` (default: unset, the number of cores), or
uses ``--url``. Each fit session opens ``/train?target=two_moons&model=maflow&steps=100&run=1``
(``--link``); its wait is the one the page reports ("waited N s for a training slot"), its run
time the rest of the time from opening the link to the fit's summary line. The home prober opens
``/`` in a fresh page again and again while fits run and times each until the title shows.

    python benchmarks/load.py --sessions 4 --out benchmarks/results/load_4.json
    python benchmarks/load.py --sessions 4 --max-fits 100   # no bound in practice, to compare
    python benchmarks/load.py --sessions 8 --max-fits 1 --students-nice 10

``--students-nice N`` runs the fit sessions' pages in a second Chromium under ``nice -n N``: on one
machine the benchmark's browsers share the server's cores, which a class's students' browsers (on
their own machines) do not; the home prober's Chromium and the server keep the normal priority.

Prints and writes JSON: ``{"machine", "settings", "home_title_s": {"n", "p50", "p90", "max"},
"fits": [{"session", "wait_s", "run_s", "total_s", "place", "status"}], "server_peak_rss_mb",
"wall_s"}``. Needs Debian's Chromium (``/usr/bin/chromium``) and the ``playwright`` client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import threading
import time

import psutil

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
  if _p not in sys.path:
    sys.path.insert(0, _p)
from redraw import _free_port, _wait_healthy  # noqa: E402  (benchmarks/redraw.py)
from run import machine_info  # noqa: E402  (benchmarks/run.py)

TITLE = "Convex-potential generative models"
DONE = re.compile(r"/ \d+ steps · [^\n]* · status (done|stopped|diverged|interrupted)")
WAITED = re.compile(r"waited (\d+) s for a training slot \(place (\d+) in the queue\)")


def _percentile(xs: list, q: float):
  if not xs:
    return None
  xs = sorted(xs)
  return round(xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 2)


class _PeakRSS(threading.Thread):
  """The server's resident memory (with its children), sampled every 0.2 s."""

  def __init__(self, pid: int):
    super().__init__(daemon=True)
    self.proc, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

  def run(self):
    while not self.stop.is_set():
      try:
        procs = [self.proc, *self.proc.children(recursive=True)]
        self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
      except psutil.Error:
        pass
      time.sleep(0.2)


async def _fit_session(browser, url: str, link: str, i: int, timeout_s: float) -> dict:
  page = await browser.new_page(viewport={"width": 1400, "height": 1000})
  t0 = time.monotonic()
  await page.goto(f"{url}{link}")
  saw_queue = False
  text = ""
  while time.monotonic() - t0 < timeout_s:
    text = await page.evaluate("document.body ? document.body.innerText : ''")
    saw_queue = saw_queue or "Waiting for a free training slot" in text
    if DONE.search(text):
      break
    await asyncio.sleep(0.25)
  total = time.monotonic() - t0
  done = DONE.search(text)
  waited = WAITED.search(text)
  await page.close()
  wait_s = float(waited.group(1)) if waited else 0.0
  return {"session": i, "status": done.group(1) if done else "timeout", "total_s": round(total, 1),
          "wait_s": wait_s, "run_s": round(total - wait_s, 1),
          "place": int(waited.group(2)) if waited else 0, "saw_queue": saw_queue}


async def _home_prober(browser, url: str, stop: asyncio.Event, times: list) -> None:
  while not stop.is_set():
    page = await browser.new_page()
    t0 = time.monotonic()
    try:
      await page.goto(url)
      await page.get_by_text(TITLE).first.wait_for(timeout=120_000)
      times.append(time.monotonic() - t0)
    finally:
      await page.close()
    await asyncio.sleep(0.5)


def _niced(executable: str, niceness: int, folder: pathlib.Path) -> str:
  """A wrapper that starts ``executable`` under ``nice -n niceness`` (its child processes inherit it)."""
  wrapper = folder / "chromium-niced"
  wrapper.write_text(f'#!/bin/sh\nexec nice -n {int(niceness)} "{executable}" "$@"\n')
  wrapper.chmod(0o755)
  return str(wrapper)


async def _drive(url: str, args) -> dict:
  import tempfile

  from playwright.async_api import async_playwright
  chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
  async with async_playwright() as pw:
    browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    students = browser
    with tempfile.TemporaryDirectory() as tmp:
      if args.students_nice:
        # the fit sessions' pages in their own Chromium at a lower CPU priority: on a class's server
        # the students' browsers run on their own machines, not on the server's cores
        students = await pw.chromium.launch(
            executable_path=_niced(chromium, args.students_nice, pathlib.Path(tmp)),
            args=["--no-sandbox"])
      warm = await browser.new_page()  # the server's first page load imports the app: not timed
      await warm.goto(url)
      await warm.get_by_text(TITLE).first.wait_for(timeout=300_000)
      await warm.close()
      stop, times = asyncio.Event(), []
      prober = asyncio.create_task(_home_prober(browser, url, stop, times))
      fits = await asyncio.gather(*[_fit_session(students, url, args.link, i, args.timeout)
                                    for i in range(args.sessions)])
      stop.set()
      await prober
      if students is not browser:
        await students.close()
    await browser.close()
  return {"home_title_s": {"n": len(times), "p50": _percentile(times, 0.5),
                           "p90": _percentile(times, 0.9),
                           "max": round(max(times), 2) if times else None,
                           "mean": round(statistics.mean(times), 2) if times else None},
          "fits": list(fits)}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sessions", type=int, default=4, help="browser sessions that fit at once")
  p.add_argument("--link", default="/train?target=two_moons&model=maflow&steps=100&run=1")
  p.add_argument("--max-fits", type=int, default=None, help="CMM_MAX_FITS of the started server")
  p.add_argument("--url", default=None, help="a running app (default: start one)")
  p.add_argument("--timeout", type=float, default=900.0, help="seconds per fit session")
  p.add_argument("--students-nice", type=int, default=0,
                 help="run the fit sessions' Chromium under nice -n N (0: one Chromium for all at "
                      "normal priority); the home prober's Chromium and the server stay at 0")
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  server, url, rss = None, args.url, None
  if url is None:
    port = _free_port()
    url = f"http://localhost:{port}"
    env = dict(os.environ)
    env.pop("CMM_MAX_FITS", None)
    if args.max_fits is not None:
      env["CMM_MAX_FITS"] = str(args.max_fits)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.fileWatcherType", "none",
         "--server.runOnSave", "false", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss = _PeakRSS(server.pid)
    rss.start()
  t0 = time.monotonic()
  try:
    _wait_healthy(url)
    out = asyncio.run(_drive(url, args))
  finally:
    if server is not None:
      rss.stop.set()
      server.terminate()
      server.wait(timeout=30)
  out = {"benchmark": "load", "machine": machine_info(),
         "settings": {"sessions": args.sessions, "link": args.link,
                      "CMM_MAX_FITS": args.max_fits if args.max_fits else f"unset ({os.cpu_count()} cores)",
                      "students_nice": args.students_nice},
         **out, "server_peak_rss_mb": round(rss.peak / 2**20) if rss else None,
         "wall_s": round(time.monotonic() - t0, 1)}
  text = json.dumps(out, indent=1)
  if args.out:
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
  print(text)
  return out


if __name__ == "__main__":
  main()
