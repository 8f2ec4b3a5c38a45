"""Two users of one server: each session keeps its own target, fit and samples.

Streamlit runs every session's script in its own thread of one process, so anything kept in a
module global is shared by all users. The tests here:

- run two app sessions (``AppTest``) with different targets and settings that both train, and
  check that each session's state is its own;
- refit both sessions' settings in two threads at once and check the fits are exactly the ones the
  sessions got (the library is safe to call from parallel sessions);
- hammer the compiled-chunk cache from several threads;
- scan ``cmm_core/``, ``app_pages/``, ``app_support/`` and ``app.py`` for module-level state that is mutated, and for
  cross-session caches, against an allow-list.

Why the two AppTests are interleaved, not run in two threads: ``AppTest.run`` swaps process-wide
globals for the length of a run (``Runtime._instance``, ``PagesManager.uses_pages_directory``,
and ``config.get_option`` through ``unittest.mock.patch``) and restores them at its end. Two runs
overlapping in time would reset each other's runtime mid-run (``st.cache_data`` then finds no
runtime) and could leave ``config.get_option`` patched for the rest of the test session. Tried
with Streamlit 1.67: after two threads ran AppTests, ``config.get_option`` was still a mock, and
one attempt failed inside Streamlit with ``SystemError: AST constructor recursion depth
mismatch``. So the sessions alternate, step by step, within one thread; the parallel part is done
on the library calls the sessions make (``cc.fit``), which is where a real server runs them
concurrently. ``tests/app/fit_pool_app_test.py`` does run four sessions in threads, inside a
harness (``threaded_apptests``) that pins those globals for the length of the overlap.
"""

import ast
import copy
import itertools
import pathlib
import sys
import threading

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import cmm_core as cc
from cmm_core import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 600  # a guard against a hung session (apptest_utils.TRAIN_TIMEOUT)

# Two users: different targets, seeds and hyper-parameters (maflow with one or two RK4 steps is the
# fastest model to compile).
USERS = {
    "a": {"toy": "two_moons", "n": 256, "data_seed": 1, "seed": 0,
          "hyper": {"hidden": 8, "n_steps": 1}},
    "b": {"toy": "rings", "n": 512, "data_seed": 2, "seed": 3,
          "hyper": {"hidden": 4, "n_steps": 2}},
}
STEPS = 5


def _ok(at: AppTest) -> AppTest:
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  return at


def _steps(sessions: dict, action) -> None:
  """``action(name, at, user)`` for each session in turn: one step of the interleaving."""
  for name, at in sessions.items():
    action(name, at, USERS[name])


@pytest.fixture(scope="module")
def sessions():
  """Two sessions that each choose a target and train, interleaved step by step."""
  s = {name: AppTest.from_file(APP, default_timeout=TIMEOUT) for name in USERS}
  _steps(s, lambda name, at, u: _ok(at.run()))

  def choose_target(name, at, u):
    at.switch_page("app_pages/target.py")
    _ok(at.run())
    at.selectbox(key="tgt_toy2").set_value(u["toy"])
    at.select_slider(key="tgt_toy2_n").set_value(u["n"])
    at.number_input(key="tgt_toy2_seed").set_value(u["data_seed"])
    _ok(at.run())

  def open_train(name, at, u):
    at.switch_page("app_pages/train.py")
    _ok(at.run())
    at.selectbox(key="tr_model").set_value("maflow")
    _ok(at.run())

  def click_train(name, at, u):
    at.number_input(key="tr_steps_maflow").set_value(STEPS)
    at.number_input(key="tr_seed").set_value(u["seed"])
    for hp, value in u["hyper"].items():
      at.number_input(key=f"tr_hp_maflow_{hp}").set_value(value)
    at.button(key="tr_train").click()
    _ok(at.run(timeout=TIMEOUT))

  _steps(s, choose_target)
  _steps(s, open_train)
  # What the first session holds before the second one trains.
  _steps(s, click_train)
  first = {name: at.session_state["fit"] for name, at in s.items()}
  _steps(s, lambda name, at, u: _ok(at.run(timeout=TIMEOUT)))  # each reruns after both trained
  return s, first


def test_each_session_keeps_its_own_target_and_fit(sessions):
  s, first = sessions
  fits = {}
  for name, at in s.items():
    u = USERS[name]
    target = at.session_state["target"]
    assert target["spec"]["name"] == u["toy"] and target["data"].shape == (u["n"], 2)
    np.testing.assert_array_equal(target["data"],
                                  cc.targets.make(u["toy"], u["n"], seed=u["data_seed"]))
    entry = at.session_state["fit"]
    assert entry is first[name] or entry["uid"] == first[name]["uid"]  # the other's run changed nothing
    assert at.session_state["fit_uid"] == 1  # a per-session counter, not a shared one
    assert entry["settings"] == {"model": "maflow", "steps": STEPS, "seed": u["seed"],
                                 "hyper": u["hyper"]}
    assert entry["target_spec"]["name"] == u["toy"] and entry["data"] is target["data"]
    fitted = entry["fitted"]
    assert fitted.info["n_data"] == u["n"] and fitted.info["status"] == "done"
    assert fitted.config["hidden"] == u["hyper"]["hidden"]
    assert fitted.config["n_steps"] == u["hyper"]["n_steps"]
    fits[name] = fitted
  a, b = (s[n].session_state for n in USERS)
  assert fits["a"] is not fits["b"]
  assert a["target"]["data"] is not b["target"]["data"]
  # samples: drawn from each session's own model, held in each session's own panels
  assert a["panels"]["view"] is not b["panels"]["view"]
  assert not np.array_equal(fits["a"].sample(100, seed=0), fits["b"].sample(100, seed=0))


def test_parallel_fits_reproduce_each_sessions_fit(sessions):
  s, _ = sessions
  entries = {name: at.session_state["fit"] for name, at in s.items()}
  results, errors = {}, []
  barrier = threading.Barrier(len(entries))

  def refit(name):
    st = entries[name]["settings"]
    try:
      barrier.wait()
      results[name] = cc.fit(st["model"], entries[name]["data"], steps=st["steps"], seed=st["seed"],
                             chunk_size=10, **st["hyper"])
    except Exception as e:  # reported below: an exception in a thread does not fail the test
      errors.append(e)

  threads = [threading.Thread(target=refit, args=(name,)) for name in entries]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  for name, entry in entries.items():
    np.testing.assert_array_equal(results[name].sample(200, seed=5),
                                  entry["fitted"].sample(200, seed=5))


class _FakeModel:
  """Just enough of a Model for ``train.compiled_chunk`` (which only wraps ``step`` in jit)."""

  config: dict = {}

  def step(self, static, state, key, data):
    return state, {"loss": 0.0}


def test_chunk_cache_is_safe_from_parallel_sessions(monkeypatch):
  # was: two threads evicting at once popped the same key (KeyError) and the cache outgrew its
  # size; now a lock guards it
  monkeypatch.setattr(train, "_CHUNK_CACHE", {})
  old = sys.getswitchinterval()
  sys.setswitchinterval(1e-6)  # switch threads as often as possible
  counter, errors = itertools.count(), []

  def work():
    try:
      for _ in range(400):
        k = next(counter)
        f = train.compiled_chunk(_FakeModel(), k % 40, 5)
        assert f is train.compiled_chunk(_FakeModel(), k % 40, 5) or len(train._CHUNK_CACHE) >= 16
    except Exception as e:
      errors.append(e)

  try:
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    sys.setswitchinterval(old)
  assert not errors, errors[:3]
  assert len(train._CHUNK_CACHE) <= train._CHUNK_CACHE_SIZE


def test_models_are_frozen_and_do_not_change_the_defaults():
  # defaults are class attributes, shared by every session: a model copies them and is frozen
  before = {m: copy.deepcopy(cc.models.get(m).defaults) for m in cc.models.names()}
  for m in cc.models.names():
    cls = cc.models.get(m)
    model = cls(**{k: v for k, v in cls.defaults.items() if k != "potential"})
    with pytest.raises(TypeError):
      model.config["hidden"] = "changed"
    with pytest.raises(AttributeError, match="frozen"):
      model.total_steps = 5
  assert {m: cc.models.get(m).defaults for m in cc.models.names()} == before


# ----------------------------------------------------------------------------
# Static check: no per-user state in module globals.
# ----------------------------------------------------------------------------

# (file, global) pairs that are mutated and shared by every session, each justified:
ALLOWED_MUTABLE_GLOBALS = {
    # jitted training chunks keyed by (model class, static, chunk length, devices): no data and no
    # user state (a fit's data-dependent constants travel in its training state, see
    # cmm_core.models.base); a lock guards it (test_chunk_cache_is_safe_from_parallel_sessions).
    ("cmm_core/train.py", "_CHUNK_CACHE"),
    # built-in energies keyed by name and parameter values: immutable Energy objects (no user
    # state beyond the parameters anyone could pick), bounded, under a lock; one object per setting
    # lets fits of the same setting share their compiled steps
    ("cmm_core/energies.py", "_MADE"),
}
# functools caches shared by every session, each justified:
ALLOWED_FUNCTOOLS_CACHES = {
    # the shipped data sets, read-only arrays (setflags(write=False))
    ("cmm_core/datasets.py", "_table"),
    # plotly figure skeletons keyed by panel role and labels; _fill copies them before use
    ("cmm_core/viz/exact.py", "_skeleton"),
    # jitted flow functions keyed by the flow's structure (no parameters, no data)
    ("cmm_core/models/maflow.py", "_compiled"),
  # the digits' labels, a read-only array (setflags(write=False)), for the image views only
  ("cmm_core/datasets.py", "_labels"),
  # log-density functions keyed by the potential's or the flow's structure (no parameters, no data)
  ("cmm_core/models/cmm.py", "_convex_log_density"),
  ("cmm_core/models/maflow.py", "_flow_log_density"),
}
# st.cache_resource shares one object between all sessions: none is allowed. st.cache_data is
# allowed (every call gets its own copy of the value, keyed by the arguments).
MUTATORS = {"append", "extend", "update", "pop", "popitem", "setdefault", "clear", "add", "insert",
            "remove", "discard", "appendleft", "extendleft", "move_to_end", "sort", "reverse",
            "__setitem__", "__delitem__"}


def _sources() -> list[pathlib.Path]:
  files = [*ROOT.glob("cmm_core/**/*.py"), *ROOT.glob("app_pages/*.py"), *ROOT.glob("app_support/*.py"), ROOT / "app.py"]
  assert len(files) > 20
  return sorted(files)


def _module_names(tree: ast.Module) -> set[str]:
  names = set()
  for node in tree.body:
    targets = (node.targets if isinstance(node, ast.Assign)
               else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
    for t in targets:
      for n in ast.walk(t):
        if isinstance(n, ast.Name):
          names.add(n.id)
  return names


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _shallow(fn):
  """The nodes of a function's body, not descending into nested functions or classes."""
  todo = list(ast.iter_child_nodes(fn))
  while todo:
    node = todo.pop()
    yield node
    if not isinstance(node, (*_FUNCS, ast.ClassDef, ast.Lambda)):
      todo.extend(ast.iter_child_nodes(node))


def _mutated_globals(tree: ast.Module) -> set[str]:
  """Module-level names that a function of the module mutates: item or attribute assignment or
  deletion, an in-place method (``append``, ``update``, ...), or a ``global`` rebinding. Code at
  module level runs once per import (or once per run for a page script), so it does not count."""
  names, out = _module_names(tree), set()

  def visit(fn, enclosing: set) -> None:
    a = fn.args
    params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}
    nodes = list(_shallow(fn))
    declared = {n for node in nodes if isinstance(node, ast.Global) for n in node.names}
    stored = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    local = (enclosing | params | stored) - declared
    out.update(declared)
    for node in nodes:
      targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete))
                 else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
      for t in targets:
        if isinstance(t, (ast.Subscript, ast.Attribute)) and isinstance(t.value, ast.Name):
          if t.value.id not in local:
            out.add(t.value.id)
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and isinstance(node.func.value, ast.Name) and node.func.attr in MUTATORS
          and node.func.value.id not in local):
        out.add(node.func.value.id)
    for node in nodes:
      if isinstance(node, _FUNCS):
        visit(node, local)
      elif isinstance(node, ast.ClassDef):
        for m in node.body:
          if isinstance(m, _FUNCS):
            visit(m, local)

  def top(body) -> None:
    for node in body:
      if isinstance(node, _FUNCS):
        visit(node, set())
      elif isinstance(node, ast.ClassDef):
        top(node.body)
      elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
        top([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

  top(tree.body)
  return out & names


def _decorated(tree: ast.Module, attrs: set[str]) -> set[str]:
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for dec in node.decorator_list:
        d = dec.func if isinstance(dec, ast.Call) else dec
        name = d.attr if isinstance(d, ast.Attribute) else d.id if isinstance(d, ast.Name) else ""
        if name in attrs:
          out.add(node.name)
  return out


def test_no_per_user_state_in_module_globals():
  mutable, caches, resources = set(), set(), set()
  for path in _sources():
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mutable |= {(rel, n) for n in _mutated_globals(tree)}
    caches |= {(rel, n) for n in _decorated(tree, {"lru_cache", "cache", "cached"})}
    resources |= {(rel, n) for n in _decorated(tree, {"cache_resource", "experimental_singleton",
                                                      "singleton"})}
    if "cache_resource" in path.read_text(encoding="utf-8"):
      resources.add((rel, "st.cache_resource"))
  assert mutable <= ALLOWED_MUTABLE_GLOBALS, sorted(mutable - ALLOWED_MUTABLE_GLOBALS)
  assert caches <= ALLOWED_FUNCTOOLS_CACHES, sorted(caches - ALLOWED_FUNCTOOLS_CACHES)
  assert not resources, sorted(resources)


def test_the_static_check_finds_per_user_state():
  # the scanner itself: a module keeping users in a global dict, a counter, a resource cache
  src = '''
import functools
import streamlit as st
USERS = {}
COUNT = 0
SEEN = []
CONST = {"a": 1}
class K: pass
K.x = 1

def remember(name, data):
  global COUNT
  COUNT += 1
  USERS[name] = data
  SEEN.append(name)
  return CONST["a"]

@st.cache_resource
def model():
  return object()

@functools.lru_cache(maxsize=None)
def table():
  return 1
'''
  tree = ast.parse(src)
  assert _mutated_globals(tree) == {"USERS", "COUNT", "SEEN"}
  assert _decorated(tree, {"cache_resource"}) == {"model"}
  assert _decorated(tree, {"lru_cache", "cache"}) == {"table"}
