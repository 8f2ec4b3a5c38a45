"""How often the app's Train page redraws its live plots while a model trains (headless Chromium).

Starts ``streamlit run app.py`` on a free port (or uses ``--url``), and for each model opens
``/train?target=TARGET&model=MODEL&run=1`` (the shared-link form that trains with the defaults).
A MutationObserver in the page records, on the browser's clock, every new ``step N / S · loss``
text of the progress bar; the live loss chart is redrawn in the same callback. Redraw rate =
(progress updates - 1) / (last update - first update): the first update comes after compilation,
so this is the rate during training. Also the median and largest gap between updates.

    python benchmarks/redraw.py --out benchmarks/results/redraw.json
    python benchmarks/redraw.py --models maflow --target two_moons

Needs Debian's Chromium (``/usr/bin/chromium``) and the ``playwright`` client (``.[dev]``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
  if _p not in sys.path:
    sys.path.insert(0, _p)
from run import MODELS, machine_info  # noqa: E402  (benchmarks/run.py)

OBSERVE = r"""
() => { window.__steps = []; const seen = new Set();
  new MutationObserver(() => {
    const m = document.body.innerText.match(/step (\d+) \/ (\d+) · loss/);
    if (m && !seen.has(m[1])) { seen.add(m[1]); window.__steps.push([performance.now(), +m[1], +m[2]]); }
  }).observe(document.body, {subtree: true, childList: true, characterData: true}); }
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_healthy(url: str, seconds: float = 90.0) -> None:
  t0 = time.time()
  while time.time() - t0 < seconds:
    try:
      if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
        return
    except OSError:
      time.sleep(1)
  raise RuntimeError(f"the app at {url} did not answer /_stcore/health in {seconds:.0f} s")


def measure(page, url: str, target: str, model: str, timeout_s: float) -> dict:
  page.goto(f"{url}/train?target={target}&model={model}&run=1")
  page.wait_for_function("document.body && document.body.innerText.length > 0", timeout=60_000)
  page.evaluate(OBSERVE)
  t0 = time.time()
  # the fit's summary line ("S / S steps · ... · status done"); sdot has no density, so no NLL line
  page.wait_for_function(r"/ \d+ steps · [^\n]* · status (done|stopped|diverged)/.test(document.body.innerText)",
                         timeout=timeout_s * 1000)
  page.wait_for_timeout(2000)
  steps = page.evaluate("window.__steps")
  text = page.evaluate("document.body.innerText")
  row = {"model": model, "target": target, "updates": len(steps), "wall_s": time.time() - t0,
         "error_on_page": "Traceback" in text or "internal error" in text}
  if len(steps) >= 3:
    ts = [s[0] / 1000 for s in steps]
    gaps = sorted(b - a for a, b in zip(ts, ts[1:]))
    row.update(total_steps=steps[-1][2], last_step=steps[-1][1], training_s=ts[-1] - ts[0],
               redraws_per_s=(len(ts) - 1) / (ts[-1] - ts[0]), median_gap_s=gaps[len(gaps) // 2],
               max_gap_s=gaps[-1], steps_per_s=(steps[-1][1] - steps[0][1]) / (ts[-1] - ts[0]))
  return row


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
  p.add_argument("--target", default="eight_gaussians")
  p.add_argument("--url", default=None, help="a running app (default: start one)")
  p.add_argument("--timeout", type=float, default=900.0, help="seconds per model")
  p.add_argument("--out", default="benchmarks/results/redraw.json")
  args = p.parse_args(argv)
  from playwright.sync_api import sync_playwright

  server = None
  url = args.url
  if url is None:
    port = _free_port()
    url = f"http://localhost:{port}"
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless",
                               "true", "--server.port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  rows = []
  try:
    _wait_healthy(url)
    with sync_playwright() as pw:
      browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
      for model in args.models:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        row = measure(page, url, args.target, model, args.timeout)
        page.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
      browser.close()
  finally:
    if server is not None:
      server.terminate()
      server.wait(timeout=30)
  out = {"benchmark": "redraw", "machine": machine_info(), "rows": rows}
  path = pathlib.Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=2))
  print(f"[redraw] wrote {path}", file=sys.stderr)


if __name__ == "__main__":
  main()
