"""Helpers shared by the AppTests: open the app on a page, and check a run went through."""

import pathlib

from streamlit.testing.v1 import AppTest

import small_fits  # tests/small_fits.py (tests/app/conftest.py puts tests/ on the path)

APP = str(pathlib.Path(__file__).resolve().parents[2] / "app.py")

# How long one AppTest run that trains may take before the test fails: a guard against a hung
# session, not a speed target (speed lives in benchmarks/). On a loaded 2-core CI machine the first
# default cmm fit of a process compiles for two to three minutes.
TRAIN_TIMEOUT = 600


def ok(at: AppTest, errors: bool = False) -> AppTest:
  """Asserts the last run raised nothing (and, with ``errors``, showed no st.error)."""
  assert not at.exception, [e.value for e in at.exception]
  if errors:
    assert not at.error, [e.value for e in at.error]
  return at


def run(at: AppTest) -> AppTest:
  at.run()
  return ok(at)


def open_app(page: str | None = None, *, target: dict | None = None, query: dict | None = None,
             home_first: bool = True) -> AppTest:
  """A new session of the app, on ``page`` (a path such as ``"app_pages/train.py"``) when given.

  Args:
    target: stored as the session's target before the page runs.
    query: the URL query parameters the session is opened with.
    home_first: run the home page once before switching (as a user arriving at ``/`` does).
  """
  at = AppTest.from_file(APP, default_timeout=TRAIN_TIMEOUT)  # a hang guard (below): links may train
  if query:
    at.query_params.update(query)
  if home_first or page is None:
    run(at)
  if target is not None:
    at.session_state["target"] = target
  if page is not None:
    at.switch_page(page)
    run(at)
  return at


def goto(at: AppTest, page: str) -> AppTest:
  """Switches the session ``at`` to ``page`` (e.g. ``"app_pages/train.py"``) and runs it."""
  at.switch_page(page)
  return run(at)



def small_target() -> dict:
  """The session target of :func:`small_fits.data` (two_moons, 512 points, seed 0): a page that
  trains on it with :func:`small_hyper` reuses the training chunk the library tests compile."""
  return {"label": "two_moons (n=512, seed=0)", "data": small_fits.data(), "columns": None,
          "spec": {"kind": "toy2d", "name": "two_moons", "n": 512, "seed": 0, "params": {}}}


def small_hyper(at: AppTest, model: str) -> None:
  """Sets the Train page's hyper-parameter widgets of ``model`` to ``small_fits.SMALL[model]``."""
  for name, value in small_fits.SMALL[model].items():
    key = f"tr_hp_{model}_{name}"
    if isinstance(value, tuple):  # layer widths: a text box
      at.text_input(key=key).set_value(", ".join(map(str, value)))
    else:
      at.number_input(key=key).set_value(value)
