"""Where cmm's start goes: init, and the XLA compilation of its step's parts (issue 22).

cmm's first chunk of steps holds the compilation of its whole step. This script times, in one
process on the current core(s):

- ``init``: ``model.init`` (the potential's construction, its start-scale checks, the chains),
  with the XLA compilations it triggers;
- ``chunk``: tracing and compiling ``train.compiled_chunk`` (the step in its loop), and one run of
  it;
- the step's parts, each jitted and compiled alone on the fit's potential: the potential's value,
  its value and gradient, its Hessian, one warm Newton conjugate iteration, two MALA steps, and the
  likelihood's loss and its parameter gradient (w(grad w(y)) - log det Hess w(y), the Hessian in
  closed form: ``potential_jet``).

Run it pinned to one core with single-threaded XLA to match ``benchmarks/peers.py``:

    taskset -c 0 env XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        JAX_ENABLE_COMPILATION_CACHE=false python benchmarks/compile_parts.py --out /tmp/compile_parts.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

from run import machine_info, write_outputs  # noqa: E402  (benchmarks/run.py)


def _timed_compile(f, *args) -> dict:
  import jax
  t0 = time.perf_counter()
  lowered = jax.jit(f).lower(*args)
  t1 = time.perf_counter()
  lowered.compile()
  t2 = time.perf_counter()
  return {"trace_seconds": t1 - t0, "compile_seconds": t2 - t1, "hlo_lines": lowered.as_text().count("\n")}


def measure(model_name: str, target: str, n: int, seed: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import cmm_core as cc
  from cmm_core import potentials, sampling, train
  from cmm_core.api import as_dataset
  from cmm_core.models import cmm as cmm_module
  data_np = np.asarray(cc.targets.make(target, n, seed))
  model = cc.models.get(model_name)()
  prepared, _ = model.prepare(as_dataset(data_np))
  data = jnp.asarray(prepared, jnp.float32)
  out = {"model": model_name, "target": target, "n": n}
  t = time.perf_counter()
  static, state = model.init(jax.random.PRNGKey(seed), data, total_steps=1000)
  jax.block_until_ready(state)
  out["init_seconds"] = time.perf_counter() - t
  chunk = train.compiled_chunk(model, static, 50)
  args = (state, jax.random.PRNGKey(1), data, 50, 0)
  t = time.perf_counter()
  lowered = chunk.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  out["chunk"] = {"trace_seconds": t1 - t, "compile_seconds": t2 - t1,
                  "hlo_lines": lowered.as_text().count("\n"), "run_50_steps_seconds": time.perf_counter() - t2}
  pot, consts, params = cmm_module._potential(static), state.consts, state.params
  # the step's own energy: closed-form derivatives where potential_jet has them
  pot_energy = lambda p: potentials.PotentialEnergy(pot, {"params": p, "consts": consts})
  energy = lambda p, z: pot_energy(p)(z)
  y = data[: int(static.config["batch_size"])]

  def nll_loss(p, y):
    f = pot_energy(p)
    _, g, hess = potentials.batch_value_grad_hessian(f, y)
    return jnp.mean(f(g) - jnp.linalg.slogdet(hess)[1]) - jnp.mean(f(y))

  parts = {
      "value": lambda p, z: energy(p, z),
      "value_and_grad": lambda p, z: potentials.batch_value_and_grad(pot_energy(p), z),
      "hessian": lambda p, z: potentials.batch_hessian(pot_energy(p), z),
      "newton_conjugate_1_iteration": lambda p, z: potentials.conjugate_argmax(
          pot_energy(p), z, z, max_iter=1),
      "mala_2_steps": lambda p, z: sampling.mala(pot_energy(p), z, 0.1,
                                                 jax.random.PRNGKey(0), 2, state.precond),
      "likelihood_loss": nll_loss,
      "likelihood_loss_gradient": jax.grad(nll_loss),
  }
  out["parts"] = {name: _timed_compile(f, params, y) for name, f in parts.items()}
  return out


def markdown(out: dict) -> str:
  r = out["result"]
  lines = [f"{r['model']} on {r['target']} (n = {r['n']}): init {r['init_seconds']:.1f} s; the 50-step "
           f"chunk: trace {r['chunk']['trace_seconds']:.1f} s, XLA compile {r['chunk']['compile_seconds']:.1f} s "
           f"({r['chunk']['hlo_lines']} HLO lines), 50 steps {r['chunk']['run_50_steps_seconds']:.2f} s", "",
           "| part | trace s | XLA compile s | HLO lines |", "|---|---:|---:|---:|"]
  for name, p in r["parts"].items():
    lines.append(f"| {name} | {p['trace_seconds']:.2f} | {p['compile_seconds']:.2f} | {p['hlo_lines']} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--model", default="cmm", choices=["cmm"])
  ap.add_argument("--target", default="eight_gaussians")
  ap.add_argument("--n", type=int, default=4000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=None)
  ap.add_argument("--markdown", default=None)
  args = ap.parse_args(argv)
  import os
  out = {"machine": machine_info(), "config": {**vars(args), "xla_flags": os.environ.get("XLA_FLAGS"),
                                               "load_average": os.getloadavg()},
         "result": measure(args.model, args.target, args.n, args.seed)}
  write_outputs(out, args.out, args.markdown, markdown, "compile_parts")
  print(markdown(out))
  print(json.dumps(out["result"]["chunk"]))


if __name__ == "__main__":
  main()
