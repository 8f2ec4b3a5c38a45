"""Every model's training chunk compiles once: no recompilation after the first chunk.

Compilations are counted with ``jax.monitoring`` duration events (the jaxpr trace and the backend
compile of ``jit(run_chunk)``, the chunk function of ``cmm_core.train``). A fit runs three chunks,
the last one partial (masked, not recompiled); only events after the first chunk's callback count.
"""

import jax
import pytest

import cmm_core as cc

TRACE = "jaxpr_trace_duration"
COMPILE = "backend_compile_duration"
CHUNK_FNS = ("run_chunk", "jit(run_chunk)")

# tiny settings; an unusual learning rate keeps the chunk cache (shared by fits with equal
# settings) from hitting
_ICNN = dict(hidden=(8,), batch_size=16, burn_in=1, learning_rate=1.2345e-3, conjugate_iters=1,
             langevin_steps=1)
TINY = {
    "cmm": _ICNN, "mm": _ICNN, "brenier": _ICNN,
    "maflow": dict(hidden=8, n_steps=2, batch_size=16, learning_rate=1.2345e-3),
    "sdot": dict(hidden=(8,), psi_steps=2, batch_size=16, learning_rate=1.2345e-3),
}


@pytest.fixture
def events():
  log = []

  def listener(event, duration, **kw):
    kind = "trace" if event.endswith(TRACE) else "compile" if event.endswith(COMPILE) else None
    if kind:
      log.append((phase[0], kind, kw.get("fun_name")))

  phase = [0]
  jax.monitoring.register_event_duration_secs_listener(listener)
  yield log, phase
  jax.monitoring.unregister_event_duration_listener(listener)


# cmm, mm and brenier share one convex-potential model class and its compiled machinery (chains,
# conjugates; 14-30 s each): the check runs for them in the slow suite, for maflow and sdot in both
SLOW_TO_COMPILE = ("cmm", "mm", "brenier")


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_TO_COMPILE
                                   else m for m in cc.models.names()])
def test_training_chunk_compiles_once(model, events):
  log, phase = events
  assert set(TINY) == set(cc.models.names())
  data = cc.targets.make("eight_gaussians", n=128, seed=0)
  chunk = 3

  def callback(step, record, fitted):
    phase[0] += 1  # events after the first callback belong to chunks 2 and 3

  hyper = {k: v for k, v in TINY[model].items() if k in cc.models.get(model).defaults}
  fitted = cc.fit(model, data, steps=2 * chunk + 1, seed=0, chunk_size=chunk, callback=callback, **hyper)
  assert fitted.info["steps_done"] == 2 * chunk + 1 and phase[0] == 3
  first = [e for e in log if e[0] == 0 and e[2] in CHUNK_FNS]
  later = [e for e in log if e[0] >= 1 and e[2] in CHUNK_FNS]
  assert any(kind == "compile" for _, kind, _ in first), f"{model}: no chunk compilation seen: {log}"
  assert later == [], f"{model}: the training chunk was traced/compiled again after chunk 1: {later}"
  # nothing else compiles during chunks 2 and 3 either (NaN checks, finalize: shapes are fixed)
  others = sorted({e[2] for e in log if e[0] >= 1})
  assert others == [], f"{model}: traced/compiled after chunk 1: {others}"
