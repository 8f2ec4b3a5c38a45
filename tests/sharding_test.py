"""Training over several devices (cmm_core.sharding): the same fit as on one device.

The device count is fixed when JAX starts, so the two-device checks run in a subprocess with two
fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``). There each model is fitted
with ``devices=1`` and ``devices=2`` (same seed, data, settings) and the subprocess reports the
largest differences; the sharding itself is checked there too (the cmm chains split over both
devices, the maflow batch split in the partitioned program, one compilation per fit).

Tolerances (two devices reorder the batch sums, so results are close, not bitwise equal):
  * training history (each metric), parameters, cmm chains: ``max |a - b| <= 1e-5 * (1 + max |a|)``;
    measured (jax 0.10.2, CPU): history <= 1.5e-6, parameters <= 2.4e-7, chains <= 3.6e-7;
  * samples of maflow and sdot (deterministic maps of the parameters):
    ``max |a - b| <= 1e-5 * max |a|``; measured 4.8e-7 at scales 6.9 and 4.5;
  * samples of cmm: ``sample`` runs 200 MALA steps from the chains, then 12 damped-Newton steps
    whose backtracking picks one of five step lengths, so a 1e-7 parameter difference moves a few
    points much more; measured: median 4.8e-7, max 1.0e-3 at scale 7.1; asserted: median
    <= 1e-5 * scale, max <= 1e-2 * scale.

The cmm check uses the ICNN alone (``pieces=0``): the default soft max of affine pieces
(temperature 0.05) amplifies the reordered sums, and with ``pieces=16`` the two fits differ after 20
steps by 1.2e-5 relative in the parameters and 4e-5 in the conjugate residual (measured),
beyond these tolerances though still close; the sharding itself is the same code path.

By default one subprocess checks maflow (two fits, the batch split and the device plan); the sdot and
cmm checks compile four more fits in a second subprocess and are ``slow``.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import cmm_core as cc
from cmm_core import sharding

HYPER = {
    "maflow": dict(hidden=16, n_steps=4, batch_size=64),
    "sdot": dict(hidden=(16,), psi_steps=3, batch_size=64, max_data=256),
    # the semi-dual objective: the same MALA chains as the default "mle", half the compile time
    "cmm": dict(hidden=(8,), batch_size=32, burn_in=2, langevin_steps=1, conjugate_iters=1,
                objective="semidual", pieces=0, learning_rate=1e-2),
}
STEPS, CHUNK = 20, 10
TOL = 1e-5

_SCRIPT = textwrap.dedent(r"""
  import functools, json, sys
  import jax, numpy as np
  import cmm_core as cc
  from cmm_core import sharding, train

  assert len(jax.devices()) == 2, jax.devices()
  HYPER, STEPS, CHUNK = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
  data = cc.targets.make("eight_gaussians", n=256, seed=0)
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda ev, d, **kw: compiles.append(kw.get("fun_name"))
      if ev.endswith("backend_compile_duration") and kw.get("fun_name") in ("run_chunk", "jit(run_chunk)")
      else None)

  def maxdiff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(a)))

  out = {}
  for name, hyper in HYPER.items():
    fits = {}
    for k in (1, 2):
      del compiles[:]
      fits[k] = cc.fit(name, data, steps=STEPS, seed=0, chunk_size=CHUNK, devices=k, **hyper)
      assert fits[k].info["devices"] == k and fits[k].info["status"] == "done", fits[k].info
      assert len(compiles) == 1, (name, k, compiles)  # one compilation, none for later chunks
    a, b = fits[1], fits[2]
    # per metric: [max |1 device - 2 devices|, max |1 device|] over the history
    r = {"history": {m: maxdiff([h[m] for h in a.history], [h[m] for h in b.history])
                     for m in a.history[0] if m != "seconds"}}
    leaves = [maxdiff(x, y) for x, y in zip(jax.tree_util.tree_leaves(a.params),
                                            jax.tree_util.tree_leaves(b.params))]
    r["params"] = [max(l[0] for l in leaves), max(l[1] for l in leaves)]
    assert all(l.sharding.device_set == {jax.devices()[0]}
               for l in jax.tree_util.tree_leaves(b.params)), "fitted params left on several devices"
    s1, s2 = a.sample(256, seed=3), b.sample(256, seed=3)
    d = np.max(np.abs(np.asarray(s1, np.float64) - s2), axis=1)
    r["sample_max"], r["sample_median"] = float(d.max()), float(np.median(d))
    r["sample_scale"] = float(np.max(np.abs(s1)))
    if "chains" in a.extras:
      r["chains"] = maxdiff(a.extras["chains"], b.extras["chains"])
    out[name] = r

  # -- the layout: cmm's chains split over both devices, parameters replicated ----------------
  if "cmm" in HYPER:
    m = cc.models.get("cmm")(**HYPER["cmm"])
    x, _ = m.prepare(data)
    x = jax.numpy.asarray(x)
    static, state = m.init(jax.random.PRNGKey(0), x, total_steps=STEPS)
    mesh = sharding.mesh(2)
    state = sharding.shard_state(state, mesh, HYPER["cmm"]["batch_size"])
    x, key = sharding.replicate((x, jax.random.PRNGKey(1)), mesh)
    del compiles[:]
    new, _ = train.compiled_chunk(m, static, CHUNK, 2)(state, key, x, CHUNK, 0)
    assert compiles == [], compiles  # the fit's compiled chunk (cache keyed on the device count)
    for field in ("chains", "chain_conj", "warm"):
      arr = getattr(new, field)
      assert len(arr.sharding.device_set) == 2 and not arr.sharding.is_fully_replicated, (field, arr.sharding)
      assert {s.data.shape[0] for s in arr.addressable_shards} == {HYPER["cmm"]["batch_size"] // 2}
    assert all(l.sharding.is_fully_replicated and len(l.sharding.device_set) == 2
               for l in jax.tree_util.tree_leaves((new.params, new.opt_state)))
    out["cmm_layout"] = str(new.chains.sharding)

  # -- the per-step batch: the partitioned maflow program works on [b/2, d] per device ---------
  if "maflow" in HYPER:
    b = HYPER["maflow"]["batch_size"]

    def compiled_text():
      m = cc.models.get("maflow")(**HYPER["maflow"])
      x = jax.numpy.asarray(data)
      static, state = m.init(jax.random.PRNGKey(0), x, total_steps=STEPS)
      mesh = sharding.mesh(2)
      args = (sharding.shard_state(state, mesh, b), *sharding.replicate((jax.random.PRNGKey(1), x), mesh))
      f = train._make_chunk(functools.partial(m.step, static), CHUNK, mesh, b)
      return f.lower(*args, CHUNK, 0).compile().as_text()

    half = f"f32[{b // 2},2]"
    text = compiled_text()
    out["maflow_split"] = half in text and "all-reduce" in text
    constrain = sharding.constrain_batch
    sharding.constrain_batch = lambda v: v  # control: without the constraint nothing is split
    text = compiled_text()
    sharding.constrain_batch = constrain
    out["maflow_split_without_constraint"] = half in text

  # -- how many devices a fit uses (the rules need two visible devices) -----------------------
  import pytest
  assert sharding.plan(None, 64) == (2, None)
  k, why = sharding.plan(None, 63)
  assert k == 1 and "not divisible" in why, why
  assert sharding.plan(None, None)[0] == 1
  assert sharding.plan(2, 64) == (2, None) and sharding.plan(1, 64) == (1, None)
  with pytest.raises(ValueError, match="divisible by 2"):
    sharding.plan(2, 63)
  with pytest.raises(ValueError, match="only 2 devices are visible"):
    sharding.plan(3, 64)
  tiny = dict(hidden=4, n_steps=1)
  with pytest.raises(ValueError, match="batch_size divisible by 2"):
    cc.fit("maflow", data, steps=1, devices=2, batch_size=17, **tiny)
  f = cc.fit("maflow", data, steps=1, batch_size=17, **tiny)
  assert f.info["devices"] == 1 and any("not divisible" in w for w in f.info["warnings"]), f.info
  f = cc.fit("maflow", data, steps=1, batch_size=16, **tiny)
  assert f.info["devices"] == 2 and f.info["warnings"] == [], f.info
  out["plan_checked"] = True
  print("RESULT " + json.dumps(out))
""")


def _run_two_devices(models: tuple) -> dict:
  """Runs the two-device checks of ``models`` in one subprocess (JAX start-up and compiles shared)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                        + " --xla_force_host_platform_device_count=2").strip())
  hyper = {name: HYPER[name] for name in models}
  proc = subprocess.run(
      [sys.executable, "-c", _SCRIPT, json.dumps(hyper), str(STEPS), str(CHUNK)],
      env=env, capture_output=True, text=True, timeout=1800,  # a hang guard: four fits compile there (11 min on a loaded machine)
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def two_devices() -> dict:
  """maflow on two devices (the fastest model to compile), the batch split and the device plan."""
  return _run_two_devices(("maflow",))


@pytest.fixture(scope="module")
def two_devices_plan() -> dict:
  """Only the device plan and its errors on two devices (no model's comparison fits)."""
  return _run_two_devices(())


@pytest.fixture(scope="module")
def two_devices_slow() -> dict:
  """sdot and cmm on two devices, and the layout of cmm's chains (several minutes of compiling)."""
  return _run_two_devices(("sdot", "cmm"))


def _check_fit(name: str, r: dict) -> None:
  for metric, (diff, scale) in r["history"].items():
    assert diff <= TOL * (1 + scale), (name, metric, r)
  diff, scale = r["params"]
  assert diff <= TOL * (1 + scale), (name, r)
  if "chains" in r:
    assert r["chains"][0] <= TOL * (1 + r["chains"][1]), (name, r)


@pytest.mark.slow  # 23 s for its two-device subprocess: the default suite's time (session 44)
def test_two_devices_match_one(two_devices):
  r = two_devices["maflow"]
  _check_fit("maflow", r)
  assert r["sample_max"] <= TOL * r["sample_scale"], r


@pytest.mark.slow
def test_two_devices_match_one_sdot(two_devices_slow):
  r = two_devices_slow["sdot"]
  _check_fit("sdot", r)
  assert r["sample_max"] <= TOL * r["sample_scale"], r


@pytest.mark.slow
def test_two_devices_match_one_cmm_chains(two_devices_slow):
  c = two_devices_slow["cmm"]
  _check_fit("cmm", c)
  assert c["sample_median"] <= TOL * c["sample_scale"], c
  assert c["sample_max"] <= 1e-2 * c["sample_scale"], c
  assert "'batch'" in two_devices_slow["cmm_layout"], two_devices_slow["cmm_layout"]


@pytest.mark.slow  # shares the 23-s two-device fixture above
def test_two_devices_split_the_batch(two_devices):
  assert two_devices["maflow_split"], "the maflow batch was not split over the two devices"
  assert not two_devices["maflow_split_without_constraint"], "the split check cannot tell"


def test_two_devices_plan_and_errors(two_devices_plan):
  assert two_devices_plan["plan_checked"]


# -- in-process (one visible device) --------------------------------------------------------------


def test_devices_argument_is_validated():
  n = len(jax.devices())
  data = cc.targets.make("eight_gaussians", n=64, seed=0)
  for bad in (0, -1, n + 1, 1.0, True, "2"):
    with pytest.raises(ValueError, match="devices must be None or an integer"):
      cc.fit("maflow", data, steps=1, devices=bad)
  with pytest.raises(ValueError, match="only 1 device is visible" if n == 1 else "visible"):
    sharding.plan(n + 1, 64)
  with pytest.raises(ValueError, match="positive integer"):
    sharding.plan(0, 64)


def test_plan():
  n = len(jax.devices())
  assert sharding.plan(1, 63) == (1, None)
  if n == 1:
    assert sharding.plan(None, 63) == (1, None)
    assert sharding.plan(None, None) == (1, None)


def test_one_device_is_the_plain_path():
  data = cc.targets.make("eight_gaussians", n=64, seed=0)
  hyper = dict(hidden=4, n_steps=1, batch_size=16)
  a = cc.fit("maflow", data, steps=3, seed=0, chunk_size=2, devices=1, **hyper)
  assert a.info["devices"] == 1 and a.info["warnings"] == []
  assert all(l.sharding.device_set == {jax.devices()[0]} for l in jax.tree_util.tree_leaves(a.params))
  x = jnp.ones((16, 2))
  assert sharding.constrain_batch(x) is x  # no mesh: nothing added to the traced step
