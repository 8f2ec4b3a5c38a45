"""Fixtures of the real-browser end-to-end test: a `streamlit run app.py` server on a free loopback
port, Debian's Chromium driven by Playwright (never a downloaded browser), a screenshot folder.

Missing Chromium skips the test with the command that installs it, and fails it when
CMM_REQUIRE_BROWSER=1 (.ci/run sets it: CI must not pass without the browser); a missing Playwright
package fails it. Set CMM_SKIP_BROWSER=1 to skip it on purpose, CMM_CHROMIUM=PATH to use another
Chromium binary. CMM_E2E_SCREENSHOTS=DIR keeps the screenshots in DIR (default: a pytest temporary
folder); the folder is printed at the end of the run.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 90  # seconds until /_stcore/health answers "ok"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (see .ci/run)"

_screenshot_dirs: list[pathlib.Path] = []


def _skip_requested() -> bool:
  return os.environ.get("CMM_SKIP_BROWSER", "").strip() == "1"


def _tail(path: pathlib.Path, n: int = 6000) -> str:
  try:
    text = path.read_text(errors="replace")
  except OSError:
    return "(no output)"
  return text[-n:] if text.strip() else "(empty)"


@pytest.fixture(scope="session")
def chromium_path() -> str:
  """The system Chromium (or CMM_CHROMIUM=PATH); fails (does not skip) when it is missing, unless
  CMM_SKIP_BROWSER=1."""
  if _skip_requested():
    pytest.skip("CMM_SKIP_BROWSER=1: the real-browser test is skipped on request")
  chosen = os.environ.get("CMM_CHROMIUM", "").strip()
  if chosen:
    if not os.access(chosen, os.X_OK):
      pytest.fail(f"CMM_CHROMIUM={chosen} is not an executable file: {INSTALL_HINT}",
                  pytrace=False)
    return chosen
  for name in CHROMIUM_NAMES:
    found = shutil.which(name)
    if found:
      return found
  if os.access("/usr/bin/chromium", os.X_OK):
    return "/usr/bin/chromium"
  if os.environ.get("CMM_REQUIRE_BROWSER", "").strip() != "1":  # .ci/run sets it: CI must not skip
    pytest.skip(f"Chromium was not found: {INSTALL_HINT}; the real-browser test is skipped "
                "(CMM_REQUIRE_BROWSER=1 makes this a failure)")
  pytest.fail(f"Chromium was not found (looked for {', '.join(CHROMIUM_NAMES)} on PATH and "
              f"/usr/bin/chromium): {INSTALL_HINT}, or set CMM_SKIP_BROWSER=1 to skip this test.",
              pytrace=False)


@pytest.fixture(scope="session")
def playwright_api():
  """playwright.sync_api.sync_playwright; fails when the package is missing."""
  if _skip_requested():
    pytest.skip("CMM_SKIP_BROWSER=1: the real-browser test is skipped on request")
  try:
    from playwright.sync_api import sync_playwright as sp
  except ImportError as e:
    missing = str(e)
  else:
    return sp
  pytest.fail(f"the Python package playwright is missing ({missing}): `pip install -e \".[dev]\"`, "
              "or set CMM_SKIP_BROWSER=1 to skip this test.", pytrace=False)


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _healthy(url: str) -> bool:
  try:
    with urllib.request.urlopen(url, timeout=2) as r:
      return r.status == 200 and r.read().strip() == b"ok"
  except (urllib.error.URLError, OSError):
    return False


def _stop(proc: subprocess.Popen) -> None:
  if proc.poll() is not None:
    return
  proc.terminate()
  try:
    proc.wait(timeout=10)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait(timeout=10)


class Server:
  def __init__(self, url: str, proc: subprocess.Popen, stdout: pathlib.Path,
               stderr: pathlib.Path):
    self.url, self.proc, self.stdout_path, self.stderr_path = url, proc, stdout, stderr

  def log(self) -> str:
    """The server's stdout and stderr so far (Streamlit prints a script's traceback there)."""
    return (f"--- server stdout ---\n{_tail(self.stdout_path)}\n"
            f"--- server stderr ---\n{_tail(self.stderr_path)}")


@pytest.fixture(scope="module")
def streamlit_app(chromium_path, playwright_api, tmp_path_factory):
  """`streamlit run app.py` from the repository root on a free loopback port; yields a Server.
  Depends on the browser fixtures so that a missing browser fails before the server starts."""
  port = _free_port()
  logs = tmp_path_factory.mktemp("streamlit_server")
  out, err = logs / "stdout.txt", logs / "stderr.txt"
  cmd = [sys.executable, "-m", "streamlit", "run", "app.py",
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false",  # no network calls from CI
         "--server.fileWatcherType", "none"]      # edits made during the run do not reload pages
  with open(out, "wb") as fo, open(err, "wb") as fe:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
  server = Server(f"http://127.0.0.1:{port}", proc, out, err)
  try:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not _healthy(f"{server.url}/_stcore/health"):
      if proc.poll() is not None:
        pytest.fail(f"`{' '.join(cmd)}` exited with status {proc.returncode} before answering "
                    f"{server.url}/_stcore/health\n{server.log()}", pytrace=False)
      if time.monotonic() > deadline:
        pytest.fail(f"`{' '.join(cmd)}` did not answer \"ok\" on {server.url}/_stcore/health "
                    f"within {SERVER_START_TIMEOUT} s\n{server.log()}", pytrace=False)
      time.sleep(0.2)
    yield server
  finally:
    _stop(proc)


@pytest.fixture(scope="module")
def browser(playwright_api, chromium_path):
  with playwright_api() as p:
    try:
      b = p.chromium.launch(executable_path=chromium_path, headless=True)
    except Exception as e:  # noqa: BLE001 - a broken browser install: say which and how to fix
      pytest.fail(f"Chromium at {chromium_path} did not start under Playwright: {e}\n"
                  f"{INSTALL_HINT}", pytrace=False)
    try:
      yield b
    finally:
      b.close()


@pytest.fixture
def screenshot_dir(tmp_path_factory) -> pathlib.Path:
  env = os.environ.get("CMM_E2E_SCREENSHOTS", "").strip()
  if env:
    d = pathlib.Path(env).expanduser().resolve()
    d.mkdir(parents=True, exist_ok=True)
  else:
    d = tmp_path_factory.mktemp("e2e_screenshots")
  _screenshot_dirs.append(d)
  print(f"e2e screenshots: {d}")
  return d


def pytest_terminal_summary(terminalreporter):
  for d in dict.fromkeys(_screenshot_dirs):
    terminalreporter.write_line(f"e2e screenshots: {d}")
