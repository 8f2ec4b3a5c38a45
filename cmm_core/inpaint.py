"""Inpainting: complete rows with some entries observed by drawing the rest from a model.

>>> import cmm_core as cc
>>> fitted = cc.fit("cmm", data, seed=0)                       # data [n, d]
>>> mask = np.isfinite(x)                                       # x [m, d], NaN where unobserved
>>> y = fitted.inpaint(x, mask, seed=0)                         # [m, d]; y[mask] == x[mask]

Each row's unobserved entries are drawn from the model's conditional density given its observed
ones, ``rho(y_free | y_obs) ~ rho(y_free, y_obs)``, by MALA (blackjax) in data space on the model's
exact, unnormalised log-density (``fitted.log_density_fn()``, differentiable), the observed
entries clamped. One chain per row:

- start and preconditioner: a Gaussian ``N(m, S)`` fitted to samples of the model (computed once
  per fitted model); the chain runs in whitened coordinates ``y_free = m_c + L_c w`` where
  ``(m_c, L_c L_c^T)`` is that Gaussian's conditional given the row's observed entries, and starts
  from a draw of it (``w ~ N(0, I)``), so an elongated conditional needs no tuning;
- step size: per row, blackjax's dual averaging towards an acceptance of
  :data:`TARGET_ACCEPT` during the first half of the steps, then fixed (the second half is plain
  MALA, which leaves the conditional invariant); the completion is the chain's last state.

:func:`gaussian_inpaint` draws exactly from the conditional of a Gaussian: the oracle of the
tests and the app's baseline. Models without a density (``sdot``) refuse to inpaint. Method,
measured timings and limits: ``docs/inpainting.md``.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from cmm_core import batching
from cmm_core.limits import MAX_SAMPLES, MAX_STEPS
from cmm_core.models.base import check_seed
from cmm_core.sampling import TARGET_ACCEPT

__all__ = ["inpaint", "run", "gaussian_inpaint", "gaussian_conditional", "check_inputs",
           "InpaintResult", "DEFAULT_STEPS", "TARGET_ACCEPT", "GUESS_SAMPLES"]

DEFAULT_STEPS = 400
"""MALA transitions per row when ``steps`` is None: half adapt the step size, half sample."""
GUESS_SAMPLES = 2048
"""Model samples behind the Gaussian start and preconditioner."""
_CHUNK = 1024            # rows per compiled batch of chains
_BUCKETS = (4, 8, 32, 128, 512, _CHUNK)  # batch sizes of the chains (few compilations)


class InpaintResult(NamedTuple):
  """What :func:`run` returns.

  Attributes:
    samples: ``[m, d]`` completions (observed entries exactly as given).
    acceptance: ``[m]`` mean acceptance probability of each row's sampling half (NaN for a
      fully observed row, which is not sampled).
    step_size: ``[m]`` each row's adapted MALA step size, in whitened units (NaN likewise).
    steps: transitions per row.
    seconds: wall-clock time, compilation included.
  """
  samples: np.ndarray
  acceptance: np.ndarray
  step_size: np.ndarray
  steps: int
  seconds: float


# -- inputs ------------------------------------------------------------------------------------

def check_inputs(x, mask, dim: int, name: str = "inpaint"):
  """Validates an inpainting request.

  Args:
    x: ``[m, d]`` rows; entries where ``mask`` is False are ignored (NaN allowed there).
    mask: ``[m, d]`` boolean, True where the entry of ``x`` is observed.
    dim: the model's dimension ``d``.

  Returns:
    ``(x, mask)``: ``x`` a float array (float32 input stays float32, others float64; observed
    entries unchanged), ``mask`` a bool array.

  Raises:
    ValueError: shapes, dtype, or a non-finite observed entry (the message names the rows).
  """
  mask_arr = np.asarray(mask)
  if mask_arr.dtype != np.bool_:
    raise ValueError(f"{name}: mask must be a boolean array (True = observed), got dtype "
                     f"{mask_arr.dtype}; e.g. mask = np.isfinite(x)")
  try:
    x_arr = np.asarray(x)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: x must be a numeric array [m, {dim}]: {e}") from None
  if x_arr.dtype.kind not in "fiu":
    raise ValueError(f"{name}: x must be a numeric array [m, {dim}], got dtype {x_arr.dtype}")
  if x_arr.ndim != 2 or x_arr.shape[1] != dim or x_arr.shape[0] < 1:
    raise ValueError(f"{name}: x must have shape [m, {dim}] with m >= 1 (the model's dimension "
                     f"is {dim}), got {x_arr.shape}")
  if mask_arr.shape != x_arr.shape:
    raise ValueError(f"{name}: mask must have the shape of x {x_arr.shape}, got {mask_arr.shape}")
  if x_arr.shape[0] > MAX_SAMPLES:
    raise ValueError(f"{name}: at most {MAX_SAMPLES} rows at once, got {x_arr.shape[0]}")
  x_arr = x_arr if x_arr.dtype == np.float32 else x_arr.astype(np.float64)
  bad = mask_arr & ~np.isfinite(x_arr)
  if bad.any():
    rows = np.flatnonzero(bad.any(1))
    shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
    raise ValueError(f"{name}: x has NaN or infinite entries where mask says observed, in "
                     f"{len(rows)} row(s): {shown}; set mask False there (mask = np.isfinite(x))")
  return x_arr, mask_arr


def _check_steps(steps) -> int:
  if steps is None:
    return DEFAULT_STEPS
  if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) or not (
      1 <= steps <= MAX_STEPS):
    raise ValueError(f"inpaint: steps must be None or an integer in [1, {MAX_STEPS}], got {steps!r}")
  return int(steps)


# -- the Gaussian conditional -------------------------------------------------------------------

def _check_gaussian(mean, cov):
  mean = np.asarray(mean, np.float64)
  if mean.ndim != 1 or mean.size < 1 or not np.all(np.isfinite(mean)):
    raise ValueError(f"gaussian_inpaint: mean must be a finite vector [d], got shape {mean.shape}")
  d = mean.size
  cov = np.asarray(cov, np.float64)
  if cov.shape != (d, d) or not np.all(np.isfinite(cov)):
    raise ValueError(f"gaussian_inpaint: cov must be a finite matrix [{d}, {d}], got shape {cov.shape}")
  if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12 * np.abs(cov).max()):
    raise ValueError("gaussian_inpaint: cov must be symmetric")
  if np.linalg.eigvalsh(cov).min() < -1e-9 * max(np.abs(cov).max(), 1e-300):
    raise ValueError("gaussian_inpaint: cov must be positive semi-definite")
  return mean, 0.5 * (cov + cov.T)


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
  """A square root ``R`` with ``R R^T = c`` for a PSD ``c`` (Cholesky, eigh when singular)."""
  if c.size == 0:
    return c
  try:
    return np.linalg.cholesky(c)
  except np.linalg.LinAlgError:
    ev, V = np.linalg.eigh(c)
    return V * np.sqrt(np.maximum(ev, 0.0))


def _patterns(mean, cov, mask):
  """Per distinct mask row: ``(index of each row [m], regression [p, d, d], root [p, d, d])``.

  For pattern ``k`` with free set F and observed set O: ``mean_F + R_k[F, O] (x_O - mean_O)`` is the
  conditional mean, ``root_k[F, F]`` a square root of the conditional covariance
  ``S_FF - S_FO S_OO^+ S_OF`` (zero outside F x F).
  """
  pats, index = np.unique(mask, axis=0, return_inverse=True)
  d = mean.size
  reg = np.zeros((len(pats), d, d))
  root = np.zeros((len(pats), d, d))
  for k, obs in enumerate(pats):
    free = ~obs
    if not free.any():
      continue
    S_ff = cov[np.ix_(free, free)]
    if obs.any():
      S_fo = cov[np.ix_(free, obs)]
      K = S_fo @ np.linalg.pinv(cov[np.ix_(obs, obs)], hermitian=True)
      reg[k][np.ix_(free, obs)] = K
      S_ff = S_ff - K @ S_fo.T
    root[k][np.ix_(free, free)] = _sqrt_psd(0.5 * (S_ff + S_ff.T))
  return np.reshape(index, -1), reg, root


def gaussian_conditional(mean, cov, x, mask):
  """The conditional of ``N(mean, cov)`` given each row's observed entries.

  Args:
    mean: ``[d]``; cov: ``[d, d]`` symmetric positive semi-definite.
    x: ``[m, d]`` rows, mask: ``[m, d]`` boolean (True = observed), as in :func:`gaussian_inpaint`.

  Returns:
    ``(means [m, d], covs [m, d, d])``: the conditional means (observed entries equal to ``x``)
    and covariances (zero on observed rows and columns).
  """
  mean, cov = _check_gaussian(mean, cov)
  x, mask = check_inputs(x, mask, mean.size, "gaussian_inpaint")
  return _conditional(mean, cov, x, mask)


def _conditional(mean, cov, x, mask):
  index, reg, root = _patterns(mean, cov, mask)
  xo = np.where(mask, x, mean).astype(np.float64)
  means = mean + np.einsum("mij,mj->mi", reg[index], xo - mean)
  means = np.where(mask, x, means)
  covs = np.einsum("mij,mkj->mik", root[index], root[index])
  return means, covs


def gaussian_inpaint(mean, cov, x, mask, *, seed: int = 0, n_draws: int = 1) -> np.ndarray:
  """Exact draws from the conditional of ``N(mean, cov)`` given each row's observed entries.

  Args:
    mean: ``[d]``; cov: ``[d, d]`` symmetric positive semi-definite.
    x: ``[m, d]`` rows (NaN allowed where unobserved); mask: ``[m, d]`` boolean, True = observed.
    seed: seeds the draws (a numpy Generator).
    n_draws: completions per row.

  Returns:
    ``[m, d]`` when ``n_draws`` is 1, else ``[n_draws, m, d]``; observed entries exactly ``x``'s.

  Raises:
    ValueError: a bad argument (the message says which).
  """
  mean, cov = _check_gaussian(mean, cov)
  x, mask = check_inputs(x, mask, mean.size, "gaussian_inpaint")
  if isinstance(n_draws, (bool, np.bool_)) or not isinstance(n_draws, (int, np.integer)) or not (
      1 <= n_draws <= MAX_SAMPLES):
    raise ValueError(f"gaussian_inpaint: n_draws must be an integer in [1, {MAX_SAMPLES}], got {n_draws!r}")
  rng = np.random.default_rng(check_seed(seed))
  index, reg, root = _patterns(mean, cov, mask)
  xo = np.where(mask, x, mean).astype(np.float64)
  means = mean + np.einsum("mij,mj->mi", reg[index], xo - mean)
  z = rng.standard_normal((int(n_draws),) + x.shape)
  draws = means + np.einsum("mij,nmj->nmi", root[index], z)
  out = np.where(mask, x, draws).astype(_out_dtype(x))
  return out[0] if n_draws == 1 else out


def _out_dtype(x: np.ndarray):
  return np.float32 if x.dtype == np.float32 else np.float64


# -- the model's conditional by MALA ------------------------------------------------------------

def _row_pieces(n: int) -> list[tuple[int, int, int]]:
  """``(start, stop, batch size)`` pieces covering ``n`` rows: each the largest of :data:`_BUCKETS`
  that the remaining rows fill, the last (fewer than the smallest) padded to it. A padded chain
  costs as much as a real one, so at most ``_BUCKETS[0] - 1`` are run (200 rows: 128 + 32 + 32 +
  8, not 512)."""
  pieces, start = [], 0
  while start < n:
    rest = n - start
    size = max([b for b in _BUCKETS if b <= rest], default=_BUCKETS[0])
    pieces.append((start, min(n, start + size), size))
    start += size
  return pieces


def _gaussian_guess(fitted) -> tuple[np.ndarray, np.ndarray]:
  """``(mean [d], cov [d, d])`` of :data:`GUESS_SAMPLES` samples of the model, once per model."""
  cached = fitted.__dict__.get("_inpaint_guess")
  if cached is None:
    s = np.asarray(fitted.sample(GUESS_SAMPLES, seed=0), np.float64)
    s = s[np.all(np.isfinite(s), 1)]
    if len(s) < 2:
      raise ValueError(f"inpaint: model {fitted.model!r} draws no finite samples; refit it")
    d = s.shape[1]
    cov = np.atleast_2d(np.cov(s.T))
    cov = cov + 1e-6 * max(np.trace(cov) / d, 1e-12) * np.eye(d)  # a floor for flat directions
    cached = (s.mean(0), cov)
    fitted.__dict__["_inpaint_guess"] = cached
  return cached


@functools.partial(jax.jit, static_argnames=("log_density",))
def _chains(log_density, args, keys, x_obs, mask, mu, L, n_warm, n_keep):
  """One MALA chain per row in whitened coordinates ``w``: ``y = where(mask, x_obs, mu + L w)``.

  ``keys [m]`` one key per row; ``x_obs, mu [m, d]``, ``mask [m, d]``, ``L [m, d, d]`` (zero on
  observed rows/columns); ``n_warm`` adapting then ``n_keep`` sampling transitions (traced: any
  count runs the same compiled code). Returns ``(y [m, d], acceptance [m], step size [m])``.
  """
  kernel = blackjax.mala.build_kernel()
  da_init, da_update, _ = blackjax.adaptation.step_size.dual_averaging_adaptation(TARGET_ACCEPT)
  n_free = jnp.sum(~mask, 1).astype(jnp.float32)
  rows = (x_obs, mask, mu, L)

  def to_y(w, row):
    xo, mk, m, Lr = row
    return jnp.where(mk, xo, m + Lr @ w)

  def logp(row):
    return lambda w: log_density(args, to_y(w, row))

  def step(t, states, h):
    def one(k, state, h, row):
      state, info = kernel(jax.random.fold_in(k, t), state, logp(row), h)
      acc = info.acceptance_rate
      return state, jnp.where(jnp.isfinite(acc), acc, 0.0)   # a non-finite proposal is rejected
    return jax.vmap(one)(keys, states, h, rows)

  w0 = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), x_obs.shape[1:], x_obs.dtype))(keys)
  states = jax.vmap(lambda w, row: blackjax.mala.init(w, logp(row)))(w0, rows)
  # start near the optimal scaling for a whitened Gaussian, about 1.36 d^{-1/3}
  h0 = jnp.maximum(n_free, 1.0) ** (-1.0 / 3.0)
  da = jax.vmap(da_init)(h0)

  def body(t, carry):
    # one loop for both phases (the kernel is traced once): adapt while t <= n_warm, then sample
    # with the averaged step size, which stops changing when adaptation stops
    states, da, acc_sum = carry
    adapting = t <= n_warm
    h = jnp.where(adapting, jnp.exp(da.log_step_size), jnp.exp(da.log_step_size_avg))
    h = jnp.where(n_warm > 0, h, h0)
    states, acc = step(t, states, h)
    new_da = jax.vmap(da_update)(da, acc)
    da = jax.tree_util.tree_map(lambda a, b: jnp.where(adapting, a, b), new_da, da)
    return states, da, acc_sum + jnp.where(adapting, 0.0, acc)

  states, da, acc_sum = jax.lax.fori_loop(1, n_warm + n_keep + 1, body, (states, da, jnp.zeros_like(h0)))
  h = jnp.where(n_warm > 0, jnp.exp(da.log_step_size_avg), h0)
  y = jax.vmap(to_y)(states.position, rows)
  return y, acc_sum / jnp.maximum(n_keep, 1), h


def run(fitted, x, mask, *, seed: int = 0, steps=None) -> InpaintResult:
  """Completions of ``x`` drawn from ``fitted``'s conditional density, with diagnostics.

  Args:
    fitted: a fitted model with a density (``log_density_fn``): cmm, mm, brenier, maflow.
    x: ``[m, d]`` rows (NaN allowed where unobserved); mask: ``[m, d]`` boolean, True = observed.
    seed: seeds the chains (row ``i`` uses ``fold_in(seed, i)``: a row's completion does not
      depend on the other rows, up to float rounding).
    steps: MALA transitions per row (None: :data:`DEFAULT_STEPS`); the first half adapt the
      step size.

  Returns:
    An :class:`InpaintResult`.

  Raises:
    ValueError: a bad argument. NotImplementedError: the model has no density (sdot).
  """
  t0 = time.perf_counter()
  x, mask = check_inputs(x, mask, fitted.dim)
  seed, steps = check_seed(seed), _check_steps(steps)
  hook = getattr(fitted, "log_density_fn", None)
  if hook is None:
    why = {"sdot": "its generator pushes a latent forward with no density (no log-det), so "
                   "there is no conditional to sample from"}.get(fitted.model, "it has no data log-density")
    raise NotImplementedError(f"inpaint: model {fitted.model!r} cannot inpaint: {why}; fit a model with "
                              "a density (cmm, mm, brenier or maflow) to inpaint")
  m, d = x.shape
  out = x.astype(_out_dtype(x), copy=True)
  acceptance = np.full(m, np.nan)
  step_size = np.full(m, np.nan)
  active = np.flatnonzero(~mask.all(1))   # fully observed rows are returned as given
  if active.size:
    log_density, args = hook()
    mean, cov = _gaussian_guess(fitted)
    index, reg, root = _patterns(mean, cov, mask[active])
    xa = np.where(mask[active], x[active], mean).astype(np.float64)
    mu = mean + np.einsum("mij,mj->mi", reg[index], xa - mean)
    base = jax.random.key(seed)
    n_warm = steps // 2
    for start, stop, size in _row_pieces(active.size):
      rows = active[start:stop]
      sl = slice(start, stop)
      padded = lambda a: batching.pad_rows(a, size)
      keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(padded(rows), jnp.uint32))
      y, acc, h = _chains(log_density, args, keys,
                          jnp.asarray(padded(xa[sl]), jnp.float32),
                          jnp.asarray(padded(mask[rows])),
                          jnp.asarray(padded(mu[sl]), jnp.float32),
                          jnp.asarray(padded(root[index[sl]]), jnp.float32),
                          jnp.int32(n_warm), jnp.int32(steps - n_warm))
      y = np.asarray(y)[:rows.size]
      if not np.all(np.isfinite(y)):
        bad = rows[~np.all(np.isfinite(y), 1)]
        raise FloatingPointError(f"inpaint: the chains of rows {bad[:10].tolist()} left the model's "
                                 "support (non-finite values); try another seed or more steps")
      out[rows] = np.where(mask[rows], out[rows], y)
      acceptance[rows] = np.asarray(acc)[:rows.size]
      step_size[rows] = np.asarray(h)[:rows.size]
  return InpaintResult(samples=out, acceptance=acceptance, step_size=step_size, steps=steps,
                       seconds=time.perf_counter() - t0)


def inpaint(fitted, x, mask, *, seed: int = 0, steps=None) -> np.ndarray:
  """``[m, d]`` completions of ``x`` drawn from ``fitted``'s conditional density given the
  entries where ``mask`` is True, which are kept exactly (see :func:`run`)."""
  return run(fitted, x, mask, seed=seed, steps=steps).samples
