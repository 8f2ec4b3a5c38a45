"""Real-browser end-to-end test: the app under `streamlit run`, driven in Chromium like a user.

Home -> Target (two_moons, preview drawn) -> Train & explore (maflow, 60 steps, Train: base / map /
samples panels and the status line) -> Compare (maflow and sdot, 20 steps each: metrics table and a
row of panels per model). After every step: a screenshot, and no exception or error box on the page.
Fixtures (server, browser, screenshot folder) are in conftest.py; CMM_SKIP_BROWSER=1 skips it.
"""

from __future__ import annotations

import math
import pathlib
import re
import time

import pytest

pytestmark = pytest.mark.e2e

VIEWPORT = {"width": 1400, "height": 2400}  # tall: a page's charts all fit in one screenshot
PAGE_TIMEOUT_MS = 120_000    # a page's first run (imports jax and cmm_core in the server)
TRAIN_TIMEOUT_MS = 360_000  # maflow, 60 steps, then its panels and views
COMPARE_TIMEOUT_MS = 420_000  # maflow and sdot, 20 steps each, then metrics and panels

APP = '[data-testid="stApp"]'
TEXT_BLOCKS = '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"]'
PROBLEMS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
TARGET = "two_moons"
TRAIN_MODEL, TRAIN_STEPS = "maflow", 60
COMPARE_MODELS, COMPARE_STEPS = ("maflow", "sdot"), 20
PANELS = ("base", "map", "samples")

# Counts what a plotly chart holds (its data) and what it drew (SVG marks, heatmap images).
CHART_JS = """gd => {
  const traces = gd._fullData || gd.data || [];
  const size = a => (a && a.length) || 0;
  return {
    traces: traces.map(t => [t.type, t.name, size(t.x) + size(t.z)]),
    values: traces.reduce((n, t) => n + size(t.x) + size(t.z), 0),
    drawn: gd.querySelectorAll(
        '.point, path.js-line, .heatmaplayer image, .contourlayer path').length,
    svg: gd.querySelectorAll('svg.main-svg').length,
  };
}"""


class User:
  """A browser page on the app with the checks every step makes."""

  def __init__(self, page, server, shots: pathlib.Path):
    self.page, self.server, self.shots = page, server, shots
    self.n_shots = 0
    self.t0 = time.monotonic()
    self.timings: list[str] = []
    self.page_errors: list[str] = []
    page.on("pageerror", lambda e: self.page_errors.append(str(e)))

  # --- waiting -----------------------------------------------------------------------------
  def fail(self, what: str) -> None:
    """Fails with a screenshot, what the page shows as errors and the server's log."""
    path = self.shots / f"FAILED_{self.n_shots + 1:02d}.png"
    try:
      self.page.screenshot(path=str(path))
    except Exception:  # noqa: BLE001 - the failure message matters more than the picture
      path = None
    pytest.fail(f"{what}\npage: {self.page.url}\nerrors shown on the page: {self.problems()}\n"
                f"screenshot: {path}\nbrowser errors: {self.page_errors}\n{self.server.log()}",
                pytrace=False)

  def wait(self, selector, what: str, timeout: int = PAGE_TIMEOUT_MS):
    """Waits for `selector` (CSS or a Locator) to be visible; fails early when the page shows an
    exception."""
    loc = (self.page.locator(selector) if isinstance(selector, str) else selector).first
    deadline = time.monotonic() + timeout / 1000
    while True:
      try:
        loc.wait_for(state="visible", timeout=500)
        return loc
      except Exception:  # noqa: BLE001 - playwright's TimeoutError: poll again
        pass
      if self.page.locator('[data-testid="stException"]').count():
        self.fail(f"an exception appeared while waiting for {what} ({loc})")
      if time.monotonic() > deadline:
        self.fail(f"{what} did not appear within {timeout / 1000:.0f} s ({loc})")

  def settle(self, timeout: int = PAGE_TIMEOUT_MS, quiet: float = 0.5) -> None:
    """Waits until the script has not been running for `quiet` seconds."""
    app = self.page.locator(APP)
    deadline = time.monotonic() + timeout / 1000
    idle_since = None
    while time.monotonic() < deadline:
      if app.get_attribute("data-test-script-state") == "notRunning":
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since >= quiet:
          return
      else:
        idle_since = None
      time.sleep(0.1)
    self.fail(f"the app was still running after {timeout / 1000:.0f} s")

  # --- checks ------------------------------------------------------------------------------
  def problems(self) -> list[str]:
    boxes = self.page.locator(PROBLEMS)
    return [boxes.nth(i).inner_text()[:2000] for i in range(boxes.count())]

  def step_done(self, name: str) -> pathlib.Path:
    """Screenshot, then: no exception and no error box on the page."""
    self.n_shots += 1
    path = self.shots / f"{self.n_shots:02d}_{name}.png"
    self.page.screenshot(path=str(path))
    self.timings.append(f"{name} {time.monotonic() - self.t0:.1f} s")
    found = self.problems()
    if found:
      self.fail(f"step {name!r}: the page shows {len(found)} exception(s)/error(s): {found}")
    return path

  def chart(self, key: str, what: str, min_values: int = 1) -> dict:
    """The plotly chart in the element of `key`: drawn, with data."""
    gd = self.wait(f".st-key-{key} .js-plotly-plot", what)
    info = gd.evaluate(CHART_JS)
    if info["svg"] == 0 or info["drawn"] == 0 or info["values"] < min_values:
      self.fail(f"{what}: the chart is empty or not drawn: {info}")
    return info

  def text(self, pattern: str, what: str, timeout: int = PAGE_TIMEOUT_MS):
    """The first markdown or caption block whose text matches the regular expression."""
    blocks = self.page.locator(TEXT_BLOCKS)
    loc = blocks.filter(has_text=re.compile(pattern))
    return self.wait(loc, what, timeout)

  # --- widgets -----------------------------------------------------------------------------
  def choose(self, label: str, option, within: str = "") -> None:
    """Picks `option` (text or regex) in the select box labelled `label`."""
    scope = self.page.locator(within) if within else self.page
    scope.get_by_role("combobox", name=label, exact=True).click()
    self.page.get_by_role("option", name=option, exact=isinstance(option, str)).click()
    self.settle()

  def number(self, key: str, value: int) -> None:
    box = self.wait(f".st-key-{key} input", f"the number input {key}")
    box.fill(str(value))
    box.press("Enter")
    self.settle()
    assert box.input_value() == str(value), (key, box.input_value())

  def click_button(self, key: str, label: str) -> None:
    self.page.locator(f".st-key-{key}").get_by_role("button", name=label).click()


def _home(u: User) -> None:
  u.page.goto(u.server.url)
  u.wait("h1:has-text('Convex-potential generative models')", "the home page title")
  u.settle()
  for link in ("Choose a target", "Train & explore", "Compare models"):
    u.wait(u.page.get_by_role("link", name=link), f"the link {link!r}")
  u.step_done("home")


def _target(u: User) -> None:
  u.page.get_by_role("link", name="Choose a target").click()
  u.page.wait_for_url(re.compile(r"/target(\?|#|$)"), timeout=PAGE_TIMEOUT_MS)
  u.chart("tgt_preview", "the target preview")
  u.settle()
  assert u.page.locator(".st-key-tgt_kind").get_by_role("radio", name="2D toy").is_checked()
  u.choose("data set", TARGET, within=".st-key-tgt_toy2")
  u.wait(f".st-key-tgt_preview .gtitle:has-text('{TARGET}')", f"the preview of {TARGET}")
  info = u.chart("tgt_preview", f"the preview of {TARGET}", min_values=4096)
  assert info["traces"][0][2] == 4096, info
  u.text(r"^4096 points in 2D", "the preview's summary")
  u.step_done(f"target_{TARGET}")


def _train(u: User) -> None:
  u.page.get_by_role("link", name="Train on this target").click()
  u.page.wait_for_url(re.compile(r"/train(\?|#|$)"), timeout=PAGE_TIMEOUT_MS)
  u.wait(".st-key-tr_train button", "the Train button")
  u.settle()
  u.text(f"Target: {TARGET}", "the target line of the Train page")
  u.choose("model", re.compile(f"^{TRAIN_MODEL}:"), within=".st-key-tr_model")
  u.number(f"tr_steps_{TRAIN_MODEL}", TRAIN_STEPS)
  u.click_button("tr_train", "Train")
  status = u.text(rf"^{TRAIN_MODEL} on {TARGET}.* / {TRAIN_STEPS} steps", "the status line",
                  timeout=TRAIN_TIMEOUT_MS)
  for name in PANELS:
    u.wait(f".st-key-tr_panel_{name} .js-plotly-plot", f"the {name} panel",
           timeout=TRAIN_TIMEOUT_MS)
  u.wait(".st-key-tr_loss .js-plotly-plot", "the loss curve", timeout=TRAIN_TIMEOUT_MS)
  u.settle(TRAIN_TIMEOUT_MS)
  line = status.inner_text()
  assert re.search(rf"{TRAIN_STEPS} / {TRAIN_STEPS} steps .* status done", line), line
  for name in PANELS:
    u.chart(f"tr_panel_{name}", f"the {name} panel", min_values=10)
  u.chart("tr_loss", "the loss curve")
  u.step_done(f"train_{TRAIN_MODEL}")


def _table(u: User) -> dict:
  """{model: [cell texts]} of the metrics table (the grid's accessible rows)."""
  rows = u.page.locator('[data-testid="stDataFrame"] [role="row"]')
  table = {}
  for i in range(rows.count()):
    cells = rows.nth(i).locator('[role="gridcell"]').all_inner_texts()
    if cells:
      table[cells[0].strip()] = [c.strip() for c in cells]
  return table


def _compare(u: User) -> None:
  u.page.get_by_test_id("stSidebarNavLink").filter(has_text="Compare").click()
  u.page.wait_for_url(re.compile(r"/compare(\?|#|$)"), timeout=PAGE_TIMEOUT_MS)
  u.wait(".st-key-cmp_go button", "the Compare button")
  u.settle()
  boxes = u.page.locator('[class*="st-key-cmp_use_"]')
  seen = set()
  for i in range(boxes.count()):
    box = boxes.nth(i)
    model = re.search(r"st-key-cmp_use_(\w+)", box.get_attribute("class")).group(1)
    seen.add(model)
    if box.locator("input[type=checkbox]").is_checked() != (model in COMPARE_MODELS):
      box.locator("label").click()
      u.settle()
  assert set(COMPARE_MODELS) <= seen, seen
  for i in range(boxes.count()):
    box = boxes.nth(i)
    model = re.search(r"st-key-cmp_use_(\w+)", box.get_attribute("class")).group(1)
    assert box.locator("input[type=checkbox]").is_checked() == (model in COMPARE_MODELS), model
  u.page.locator(".st-key-cmp_budget").get_by_text("same steps for all").click()
  u.settle()
  u.number("cmp_steps", COMPARE_STEPS)
  u.click_button("cmp_go", "Compare")
  u.wait('[data-testid="stDataFrame"]', "the metrics table", timeout=COMPARE_TIMEOUT_MS)
  for m in COMPARE_MODELS:
    for name in PANELS:
      u.wait(f".st-key-cmp_panel_{m}_{name} .js-plotly-plot", f"the {name} panel of {m}",
             timeout=COMPARE_TIMEOUT_MS)
  u.settle(COMPARE_TIMEOUT_MS)
  table = _table(u)
  assert set(table) == set(COMPARE_MODELS), table
  for m, cells in table.items():
    # model, status, steps, fit s, Sinkhorn div., energy dist., held-out NLL, params, cached
    assert cells[1] == "done" and cells[2] == str(COMPARE_STEPS), (m, cells)
    assert math.isfinite(float(cells[4])) and math.isfinite(float(cells[5])), (m, cells)
    for name in PANELS:
      u.chart(f"cmp_panel_{m}_{name}", f"the {name} panel of {m}", min_values=10)
  u.step_done("compare_" + "_".join(COMPARE_MODELS))


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: the whole journey in Chromium, 65 s; each page has its own fast test
def test_a_user_goes_from_target_to_training_to_comparison(browser, streamlit_app,
                                                           screenshot_dir):
  context = browser.new_context(viewport=VIEWPORT)
  page = context.new_page()
  page.set_default_timeout(30_000)
  u = User(page, streamlit_app, screenshot_dir)
  try:
    _home(u)
    _target(u)
    _train(u)
    _compare(u)
    if "Traceback" in streamlit_app.stderr_path.read_text(errors="replace"):
      u.fail("the server printed a traceback")
  finally:
    context.close()
  print(f"e2e: {u.n_shots} screenshots in {screenshot_dir}; steps done at: "
        f"{', '.join(u.timings)}; browser errors: {u.page_errors}")
