"""A calibration for the digits' inpainting figure: flowjax's masked autoregressive flow (a peer with
a better held-out likelihood than ours) completing the same half-hidden digits through the same MALA.

The flow is trained by ``flowjax.train.fit_to_data`` with its documented recipe (the one of
``benchmarks/peers.py``) on the standardised training rows of ``benchmarks/digits.py``'s split; its
exact log-density is handed to :func:`cmm_core.inpaint.run` through a small adapter (``sample``,
``log_density_fn``), so the sampler, the start, the 200 digits and the classifier are those of the
benchmark. Needs the ``peers`` extra (``pip install -e ".[peers]"``).

    python benchmarks/digits_peer_inpaint.py --out benchmarks/results/digits_peer_inpaint.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
  if p not in sys.path:
    sys.path.insert(0, p)

import digits as bench  # noqa: E402  (benchmarks/digits.py)
from peers import FLOWJAX_RECIPE  # noqa: E402  (benchmarks/peers.py)


class FlowAdapter:
  """What :func:`cmm_core.inpaint.run` reads of a fitted model, for a flowjax distribution fitted
  to ``(y - mean) / std``."""

  model = "flowjax_maf"

  def __init__(self, flow, mean: np.ndarray, std: np.ndarray):
    import equinox as eqx
    import jax.numpy as jnp
    import paramax
    self.flow, self.mean, self.std, self.dim = flow, mean, std, int(mean.shape[0])
    self._params, static = eqx.partition(flow, eqx.is_inexact_array,
                                         is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
    m, s = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

    def log_density(params, y):  # [d] -> [], up to the constant sum(log std)
      return paramax.unwrap(eqx.combine(params, static)).log_prob((y - m) / s)
    self._fn = log_density

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    import jax.random as jr
    return np.asarray(self.flow.sample(jr.key(seed), (n,))) * self.std + self.mean

  def log_density_fn(self):
    return self._fn, self._params


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--steps", type=int, nargs="+", default=[100, 400], help="MALA transitions per digit")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=None)
  args = ap.parse_args(argv)
  import jax.numpy as jnp
  import jax.random as jr
  from flowjax.bijections import RationalQuadraticSpline
  from flowjax.distributions import Normal
  from flowjax.flows import masked_autoregressive_flow
  from flowjax.train import fit_to_data

  from cmm_core import image_metrics, inpaint
  train, heldout = bench.digits_split()
  train_labels, heldout_labels = bench.digits_labels()
  mean, std = train.mean(0), np.where(train.std(0) > 0, train.std(0), 1.0)
  r = FLOWJAX_RECIPE
  flow = masked_autoregressive_flow(
      jr.key(args.seed), base_dist=Normal(jnp.zeros(train.shape[1])),
      transformer=RationalQuadraticSpline(knots=r["knots"], interval=r["interval"]),
      flow_layers=r["flow_layers"], nn_width=r["nn_width"], nn_depth=r["nn_depth"])
  t = time.perf_counter()
  flow, losses = fit_to_data(jr.key(args.seed + 1), flow, jnp.asarray((train - mean) / std, jnp.float32),
                             learning_rate=r["learning_rate"], batch_size=r["batch_size"],
                             val_prop=r["val_prop"], max_epochs=r["max_epochs"],
                             max_patience=r["max_patience"], show_progress=False)
  out = {"fit_seconds": time.perf_counter() - t, "epochs": len(losses["val"]), "recipe": r}
  held = jnp.asarray((heldout - mean) / std, jnp.float32)
  out["nll"] = float(-flow.log_prob(held).mean() + np.log(std).sum())
  model = FlowAdapter(flow, mean, std)
  out.update(image_metrics.image_scores(model.sample(2 * bench.N_SAMPLES, seed=0), train, heldout, seed=0))
  clf = image_metrics.fit_classifier(train, train_labels, seed=0)
  x = heldout[:bench.INPAINT_ROWS].copy()
  mask = bench.bottom_half_mask(len(x))
  x[~mask] = np.nan
  out["inpainting"] = []
  for steps in args.steps:
    res = inpaint.run(model, x, mask, seed=0, steps=steps)
    out["inpainting"].append({"steps": steps, "seconds": res.seconds,
                              "accuracy": clf.accuracy(res.samples, heldout_labels[:len(x)]),
                              "acceptance": float(np.nanmean(res.acceptance))})
  print(json.dumps(out, indent=1))
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
