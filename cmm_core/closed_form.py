"""Closed-form and grid oracles for moment measures (MM) and conjugate moment measures (CMM).

These are the references the neural models are tested against, so everything here is
numpy float64 and favours precision over speed.

Gaussian rho = N(m, S):

* CMM: ``w(x) = 1/2 (x - a)^T B (x - a)`` with ``B = S^{-1/3}``; base ``e^{-w} = N(a, S^{1/3})``;
  ``w*(z) = 1/2 z^T S^{1/3} z + a^T z`` so the map is ``grad w*(z) = a + S^{1/3} z`` and
  ``a = (I + S^{1/3})^{-1} m`` (the pushed mean ``a + S^{1/3} a`` is ``m``, the pushed covariance
  ``S^{1/3} S^{1/3} S^{1/3}`` is ``S``).
* MM: ``u(x) = 1/2 x^T S x``; base ``e^{-u} = N(0, S^{-1})``; map ``grad u(x) = S x``; needs
  ``m = 0``.
* Brenier baseline: base ``N(0, I)``; map ``x -> m + S^{1/2} x``.

Each Gaussian function returns a dict with ``base_mean``, ``base_cov``, ``map_matrix``,
``map_offset`` and ``potential_matrix``; the map is ``transport(x) = map_matrix @ x + map_offset``
(see :func:`affine_transport`).

1D, any rho: :func:`cmm_1d` and :func:`mm_1d` solve the fixed points ``w' = Q_mu o F_rho`` and
``u' = Q_rho o F_mu`` (``mu = e^{-w}`` or ``e^{-u}``) on a fine grid, in log space so the tails
stay accurate.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import numpy as np

__all__ = [
    "psd_power", "gaussian_cmm", "gaussian_cmm_transport", "gaussian_mm", "gaussian_brenier",
    "affine_transport", "Grid1DResult", "cmm_1d", "mm_1d", "silverman_bandwidth",
]


# ----------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------


def psd_power(S, p: float) -> np.ndarray:
  """``S^p`` for a symmetric positive semi-definite matrix ``S`` ``[d, d]`` (via eigh, float64).

  Raises:
    ValueError: ``S`` is not square, not symmetric, or has a negative eigenvalue (or a zero
      one when ``p < 0``).
  """
  S = np.asarray(S, dtype=np.float64)
  if S.ndim != 2 or S.shape[0] != S.shape[1]:
    raise ValueError(f"expected a square matrix [d, d], got shape {S.shape}")
  scale = max(float(np.abs(S).max()), 1e-300)
  if not np.allclose(S, S.T, rtol=1e-8, atol=1e-12 * scale):
    raise ValueError("the matrix must be symmetric")
  eig, vec = np.linalg.eigh((S + S.T) / 2)
  tol = 1e-12 * max(eig[-1], 0.0)
  if eig[0] < -tol:
    raise ValueError(f"the matrix is not positive semi-definite (eigenvalue {eig[0]:.3g})")
  if p < 0 and eig[0] <= tol:
    raise ValueError(f"a negative power needs a positive definite matrix (eigenvalue {eig[0]:.3g})")
  eig = np.maximum(eig, 0.0)
  return (vec * eig**p) @ vec.T


def _mean_cov(mean, cov) -> tuple[np.ndarray, np.ndarray]:
  """float64 ``mean [d]`` and symmetric positive definite ``cov [d, d]`` (scalars: 1D)."""
  cov = np.asarray(cov, dtype=np.float64)
  if cov.ndim == 0:
    cov = cov.reshape(1, 1)
  if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
    raise ValueError(f"cov must be a scalar variance or a [d, d] matrix, got shape {cov.shape}")
  d = cov.shape[0]
  mean = np.zeros(d) if mean is None else np.atleast_1d(np.asarray(mean, dtype=np.float64))
  if mean.shape != (d,):
    raise ValueError(f"mean must have shape [{d}] to match cov, got {mean.shape}")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
    raise ValueError("mean and cov must be finite")
  psd_power(cov, -1.0)  # checks symmetric positive definite
  return mean, cov


def gaussian_cmm(mean, cov) -> dict:
  """Conjugate moment measure of N(mean, cov).

  Args:
    mean: ``[d]`` or a scalar (1D).
    cov: ``[d, d]`` symmetric positive definite, or a scalar variance (1D).

  Returns:
    ``{"base_mean": a [d], "base_cov": S^{1/3} [d, d], "map_matrix": S^{1/3},
    "map_offset": a, "potential_matrix": B = S^{-1/3}}`` with ``a = (I + S^{1/3})^{-1} m``.
    The potential is ``w(x) = 1/2 (x - a)^T B (x - a)``; the map from the base to the data is
    ``grad w*(z) = map_matrix @ z + map_offset``.
  """
  m, S = _mean_cov(mean, cov)
  root3 = psd_power(S, 1 / 3)
  a = np.linalg.solve(np.eye(len(m)) + root3, m)
  return {"base_mean": a, "base_cov": root3, "map_matrix": root3, "map_offset": a,
          "potential_matrix": psd_power(S, -1 / 3)}


def gaussian_mm(cov, mean=None, *, atol: Optional[float] = None) -> dict:
  """Moment measure of N(0, cov): ``u(x) = 1/2 x^T S x``, base N(0, S^{-1}), map ``S x``.

  Args:
    cov: ``[d, d]`` symmetric positive definite, or a scalar variance (1D).
    mean: optional ``[d]``; must be zero (within ``atol``, default ``1e-6`` times the largest
      standard deviation): a moment measure has barycentre 0.
    atol: tolerance on ``|mean|``.

  Returns:
    The same keys as :func:`gaussian_cmm` (``potential_matrix = map_matrix = S``).

  Raises:
    ValueError: a non-zero mean.
  """
  m, S = _mean_cov(mean, cov)
  if atol is None:
    atol = 1e-6 * math.sqrt(float(np.linalg.eigvalsh(S)[-1]))
  if np.linalg.norm(m) > atol:
    raise ValueError(f"a moment measure needs a centred target; centre the data first "
                     f"(|mean| = {np.linalg.norm(m):.3g})")
  d = len(m)
  return {"base_mean": np.zeros(d), "base_cov": psd_power(S, -1.0), "map_matrix": S.copy(),
          "map_offset": np.zeros(d), "potential_matrix": S.copy()}


def gaussian_brenier(mean, cov) -> dict:
  """The classical split: base N(0, I), Brenier map ``x -> m + S^{1/2} x``.

  Returns:
    The same keys as :func:`gaussian_cmm`; the potential is
    ``1/2 x^T S^{1/2} x + m^T x``.
  """
  m, S = _mean_cov(mean, cov)
  root = psd_power(S, 0.5)
  return {"base_mean": np.zeros(len(m)), "base_cov": np.eye(len(m)), "map_matrix": root,
          "map_offset": m, "potential_matrix": root}


def affine_transport(params: dict, x) -> np.ndarray:
  """Applies ``map_matrix @ x + map_offset`` to base points ``x`` ``[n, d]`` (or ``[n]`` in 1D)."""
  x = np.asarray(x, dtype=np.float64)
  flat = x.ndim == 1 and params["map_matrix"].shape == (1, 1)
  xx = x[:, None] if flat else x
  y = xx @ params["map_matrix"].T + params["map_offset"]
  return y[:, 0] if flat else y


def gaussian_cmm_transport(x, mean, cov) -> np.ndarray:
  """The CMM map ``a + S^{1/3} x`` of N(mean, cov) applied to base points ``x`` ``[n, d]``."""
  return affine_transport(gaussian_cmm(mean, cov), x)


# ----------------------------------------------------------------------------
# 1D grid oracles: helpers.
# ----------------------------------------------------------------------------


class Grid1DResult(NamedTuple):
  """A 1D fixed point solved on a grid.

  Attributes:
    x: ``[m]`` the grid.
    w: ``[m]`` the potential (``w`` for CMM, ``u`` for MM) on the grid, its constant chosen so
      that ``e^{-w}`` integrates to 1 on the grid.
    base_density: ``[m]`` the base ``e^{-w}`` (normalised on the grid).
    base_quantile: callable ``q -> z``, the base's quantile function.
    map_x: ``[m]`` base points (the grid).
    map_y: ``[m]`` the monotone map to the data ``T = Q_rho o F_mu`` at ``map_x``
      (``grad w*`` for CMM, ``grad u`` for MM; with ``shift != 0`` it maps to the centred
      target: add ``shift`` for data coordinates).
    iterations: fixed-point iterations done.
    residual: the last root-mean-square change of ``w'`` relative to the base's (CMM) or the
      target's (MM) standard deviation.
    converged: ``residual <= tol``.
    kind: ``"cmm"`` or ``"mm"``.
    base_mean, base_std: of the base, by quadrature.
    target_density: ``[m]`` the target as solved (KDE for samples, centred when ``shift != 0``).
    shift: the mean subtracted from the target (``center=True`` in :func:`mm_1d`), else 0.
    bandwidth: the KDE bandwidth for sample input, else ``None``.
    damping: the damping used at the end.
  """
  x: np.ndarray
  w: np.ndarray
  base_density: np.ndarray
  base_quantile: Callable[[np.ndarray], np.ndarray]
  map_x: np.ndarray
  map_y: np.ndarray
  iterations: int
  residual: float
  converged: bool
  kind: str
  base_mean: float
  base_std: float
  target_density: np.ndarray
  shift: float
  bandwidth: Optional[float]
  damping: float


def _log_trapz_cum(x: np.ndarray, logf: np.ndarray) -> np.ndarray:
  """``log int_{x_0}^{x_i} f`` by the trapezoid rule, computed in log space."""
  seg = np.logaddexp(logf[:-1], logf[1:]) + np.log(np.diff(x) / 2)
  out = np.empty_like(logf)
  out[0] = -np.inf
  out[1:] = np.logaddexp.accumulate(seg)
  return out


class _Cdf(NamedTuple):
  """Log-CDF and log-survival function on a grid, and where each can be trusted."""
  logF: np.ndarray
  logS: np.ndarray
  okF: np.ndarray
  okS: np.ndarray


_TRIM = 15.0  # nats: a tail value is trusted where the mass cut off by the grid is e^-15 of it


def _log_tail(x: np.ndarray, logf: np.ndarray, right: bool) -> float:
  """Rough log-mass beyond a grid end, ``f(end) / decay rate`` (exact for exponential tails)."""
  i, j = (-1, -2) if right else (0, 1)
  if not np.isfinite(logf[i]):
    return -math.inf
  rate = (logf[j] - logf[i]) / abs(x[i] - x[j])
  return float(logf[i] - math.log(max(rate, 1.0 / (x[-1] - x[0]))))


def _log_cdfs(x: np.ndarray, logf: np.ndarray) -> tuple[_Cdf, float]:
  """Trapezoid log-CDF and log-survival of ``e^{logf}`` normalised on the grid, and log Z.

  Near the grid ends they miss the mass beyond the grid; ``okF``/``okS`` mark where that
  mass is below ``e^-15`` of the value (the quantile matching uses only those points)."""
  left = _log_trapz_cum(x, logf)
  right = _log_trapz_cum(-x[::-1], logf[::-1])[::-1]
  logz = left[-1]
  with np.errstate(invalid="ignore"):
    okF = np.isfinite(left) & (left > _log_tail(x, logf, False) + _TRIM)
    okS = np.isfinite(right) & (right > _log_tail(x, logf, True) + _TRIM)
  return _Cdf(left - logz, right - logz, okF, okS), float(logz)


def _cumtrapz(x: np.ndarray, f: np.ndarray) -> np.ndarray:
  return np.concatenate([[0.0], np.cumsum(np.diff(x) * (f[1:] + f[:-1]) / 2)])


def _trapz(x: np.ndarray, f: np.ndarray) -> float:
  return float(np.sum(np.diff(x) * (f[1:] + f[:-1]) / 2))


def _moments(x: np.ndarray, logf: np.ndarray) -> tuple[float, float]:
  p = np.exp(logf - logf.max())
  p /= _trapz(x, p)
  mean = _trapz(x, x * p)
  return mean, math.sqrt(max(_trapz(x, (x - mean) ** 2 * p), 0.0))


_LOG_HALF = math.log(0.5)


def _match(q: _Cdf, table: _Cdf, t: np.ndarray) -> np.ndarray:
  """Quantile matching: for each query (log F, log S), the point ``t`` where the table has
  the same probability. Lower half by log-CDF, upper half by log-survival, so the tails keep
  their precision. NaN where the query or the table cannot be trusted."""
  out = np.full(q.logF.shape, np.nan)
  lower = q.logF <= _LOG_HALF
  use = lower & q.okF
  ok = table.okF
  out[use] = np.interp(q.logF[use], table.logF[ok], t[ok], left=np.nan, right=np.nan)
  use = ~lower & q.okS
  ok = table.okS
  out[use] = np.interp(-q.logS[use], -table.logS[ok], t[ok], left=np.nan, right=np.nan)
  return out


def _clamped_match(q: _Cdf, table: _Cdf, t: np.ndarray) -> np.ndarray:
  """:func:`_match` with untrusted points sent to the ends of the table's trusted range."""
  out = _match(q, table, t)
  lo = t[table.okF][0] if table.okF.any() else t[0]
  hi = t[table.okS][-1] if table.okS.any() else t[-1]
  return np.where(np.isnan(out), np.where(q.logF <= _LOG_HALF, lo, hi), out)


def _extrapolate(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
  """Fills NaNs at the ends of ``y`` by lines fitted to the first/last ``k`` valid points
  (slopes clipped at 0 so ``y`` stays non-decreasing)."""
  bad = np.isnan(y)
  if not bad.any():
    return y
  idx = np.nonzero(~bad)[0]
  if len(idx) < 2:
    raise ValueError("the fixed point left the grid; pass a wider grid (or bounds)")
  y = y.copy()
  first, last = idx[0], idx[-1]
  if first > 0:
    slope = max(np.polyfit(x[idx[:k]], y[idx[:k]], 1)[0], 0.0)
    y[:first] = y[first] + slope * (x[:first] - x[first])
  if last < len(y) - 1:
    slope = max(np.polyfit(x[idx[-k:]], y[idx[-k:]], 1)[0], 0.0)
    y[last + 1:] = y[last] + slope * (x[last + 1:] - x[last])
  inner = np.isnan(y)
  if inner.any():
    y[inner] = np.interp(x[inner], x[~inner], y[~inner])
  return y


def silverman_bandwidth(samples) -> float:
  """Silverman's rule ``0.9 min(std, IQR / 1.34) n^{-1/5}``."""
  s = np.asarray(samples, dtype=np.float64).ravel()
  std = s.std()
  iqr = np.subtract(*np.percentile(s, [75, 25]))
  spread = min(std, iqr / 1.34) if iqr > 0 else std
  return float(0.9 * spread * len(s) ** (-0.2))


class _Target(NamedTuple):
  """The target as a log-density callable plus what the grid needs to know about it."""
  logpdf: Callable[[np.ndarray], np.ndarray]
  mean: float
  std: float
  lo: float  # a range holding all but ~1e-20 of the mass
  hi: float
  local_scale: float  # the smallest length scale to resolve
  bandwidth: Optional[float]


def _binned_kde(samples: np.ndarray, h: float):
  """Log-density of a Gaussian KDE, exact up to ``e^-40`` relative, tails included.

  The samples are linearly binned on a lattice of spacing about ``h / 16`` (this keeps the
  mean exactly); each point then sums only the lattice centres within ``9 h`` of it, or of
  the nearest sample when it lies outside the data (farther centres weigh ``< e^-40``)."""
  lo, hi = float(samples.min()), float(samples.max())
  nbins = int(np.clip(np.ceil(16 * (hi - lo) / h) + 1, 2, 16384))
  delta = max((hi - lo) / (nbins - 1), 1e-300)
  pos = (samples - lo) / delta
  i = np.clip(np.floor(pos).astype(np.int64), 0, nbins - 2)
  frac = pos - i
  weights = np.bincount(i, 1 - frac, nbins) + np.bincount(i + 1, frac, nbins)
  centres = lo + delta * np.arange(nbins)
  with np.errstate(divide="ignore"):
    logw = np.log(np.maximum(weights, 0.0) / len(samples))
  width = int(min(nbins, np.ceil(18 * h / delta) + 1))
  offsets = np.arange(width)
  norm = math.log(h * math.sqrt(2 * math.pi))

  def logpdf(x):
    x = np.asarray(x, dtype=np.float64)
    flat = x.ravel()
    out = np.empty(flat.shape)
    start = np.clip(np.floor((flat - 9 * h - lo) / delta).astype(np.int64), 0, nbins - width)
    chunk = max(1, 2_000_000 // width)
    for s in range(0, flat.size, chunk):
      idx = start[s:s + chunk, None] + offsets
      d = (flat[s:s + chunk, None] - centres[idx]) / h
      e = logw[idx] - 0.5 * d * d
      mx = e.max(axis=1, keepdims=True)
      out[s:s + chunk] = (mx + np.log(np.exp(e - mx).sum(axis=1, keepdims=True)))[:, 0]
    return out.reshape(x.shape) - norm
  return logpdf


def _local_scale(x: np.ndarray, logf: np.ndarray) -> float:
  """A mass-weighted small length scale: the 1% quantile of ``|(log f)''|^{-1/2}``."""
  p = np.exp(logf - np.max(logf))
  with np.errstate(invalid="ignore"):
    curv = np.abs(np.gradient(np.gradient(logf, x), x))
  ok = np.isfinite(curv) & (p > 1e-8) & (curv > 0)
  if not ok.any():
    return math.inf
  scale, weight = curv[ok] ** -0.5, p[ok]
  order = np.argsort(scale)
  cum = np.cumsum(weight[order]) / weight.sum()
  return float(scale[order][np.searchsorted(cum, 0.01)])


def _from_logpdf(logpdf, bounds, bandwidth=None) -> _Target:
  """Probes a log-density on a wide grid, then on its mass range."""
  lo, hi = (-200.0, 200.0) if bounds is None else map(float, bounds)
  if not hi > lo:
    raise ValueError(f"bounds must be (lo, hi) with lo < hi, got {bounds}")
  for npts in (200_001, 100_001):
    x = np.linspace(lo, hi, npts)
    with np.errstate(divide="ignore", invalid="ignore"):
      logf = np.asarray(logpdf(x), dtype=np.float64)
    if logf.shape != x.shape or np.any(np.isnan(logf)) or np.any(logf == np.inf):
      raise ValueError("the density must return finite non-negative values, one per point")
    if not np.any(np.isfinite(logf)):
      raise ValueError(f"the density has no mass in [{lo:g}, {hi:g}]; pass bounds=(lo, hi)")
    cdf, _ = _log_cdfs(x, logf)
    i0 = max(int(np.searchsorted(cdf.logF, math.log(1e-20))) - 1, 0)
    i1 = min(len(x) - int(np.searchsorted(cdf.logS[::-1], math.log(1e-20))), len(x) - 1)
    q_lo, q_hi = x[i0], x[i1]
    pad = 0.05 * (q_hi - q_lo) + 2 * (x[1] - x[0])
    lo, hi = q_lo - pad, q_hi + pad
  mean, std = _moments(x, logf)
  return _Target(logpdf, mean, std, q_lo, q_hi, min(_local_scale(x, logf), std), bandwidth)


def _as_target(density_or_samples, *, bounds, log_density, bandwidth, center):
  """The target as a :class:`_Target`, and the shift subtracted when ``center``."""
  src = density_or_samples
  if callable(src):
    if log_density:
      logpdf = src
    else:
      def logpdf(x):
        with np.errstate(divide="ignore"):
          return np.log(np.asarray(src(x), dtype=np.float64))
    target = _from_logpdf(logpdf, bounds)
    if not center or target.mean == 0:
      return target, 0.0
    shift = target.mean
    moved = _from_logpdf(lambda x: logpdf(x + shift), (target.lo - shift - target.std,
                                                       target.hi - shift + target.std))
    return moved, shift
  samples = np.asarray(src, dtype=np.float64)
  if samples.ndim == 2 and samples.shape[1] == 1:
    samples = samples[:, 0]
  if samples.ndim != 1 or samples.size < 2 or not np.all(np.isfinite(samples)):
    raise ValueError("give a callable density or a finite 1D sample array [n] (n >= 2)")
  shift = float(samples.mean()) if center else 0.0
  samples = samples - shift
  h = silverman_bandwidth(samples) if bandwidth is None else float(bandwidth)
  if not h > 0:
    raise ValueError(f"the bandwidth must be positive, got {h}")
  logpdf = _binned_kde(samples, h)
  pad = 8 * h
  x = np.linspace(samples.min() - pad, samples.max() + pad, 8001)
  logf = logpdf(x)
  std = math.sqrt(samples.var() + h * h)
  scale = min(_local_scale(x, logf), std)
  return _Target(logpdf, float(samples.mean()), std, x[0], x[-1], scale, h), shift


_MAX_AUTO_GRID = 100_001
_MAX_GRID = 200_001


def _auto_grid(target: _Target, base_mean: float, base_std: float, n_grid) -> np.ndarray:
  """A uniform grid over the target's range and +-12 stds of the guessed base, with about
  40 points per smallest length scale of either."""
  lo = min(target.lo, base_mean - 12 * base_std)
  hi = max(target.hi, base_mean + 12 * base_std)
  pad = 0.02 * (hi - lo)
  lo, hi = lo - pad, hi + pad
  if n_grid is None:
    dx = min(target.local_scale, base_std) / 40
    n_grid = int(np.clip((hi - lo) / dx + 1, 4001, _MAX_AUTO_GRID))
  return np.linspace(lo, hi, int(n_grid))


def _edge_mass(logmu: np.ndarray) -> tuple[bool, bool]:
  """Whether the base still has non-negligible density at the left/right grid edge."""
  top = logmu.max()
  return bool(logmu[0] - top > -40), bool(logmu[-1] - top > -40)


def _widen(x: np.ndarray, left: bool, right: bool) -> np.ndarray:
  """The grid extended by half its span on each side that needs it (same spacing, capped)."""
  span = x[-1] - x[0]
  dx = x[1] - x[0]
  lo = x[0] - (0.5 * span if left else 0.0)
  hi = x[-1] + (0.5 * span if right else 0.0)
  return np.linspace(lo, hi, min(int(round((hi - lo) / dx)) + 1, _MAX_GRID))


# ----------------------------------------------------------------------------
# The fixed-point iterations.
# ----------------------------------------------------------------------------


def _base_from_slope(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, _Cdf]:
  """Potential ``w = int g`` normalised so ``e^{-w}`` integrates to 1, and its CDFs."""
  w = _cumtrapz(x, g)
  w -= w.min()
  cdf, logz = _log_cdfs(x, -w)
  return w + logz, cdf


def _quantile_fn(x: np.ndarray, cdf: _Cdf):
  def base_quantile(q):
    """The base's quantiles at probabilities ``q`` (clipped to the grid)."""
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
      query = _Cdf(np.log(q), np.log1p(-q), np.ones(q.shape, bool), np.ones(q.shape, bool))
    return _clamped_match(query, cdf._replace(okF=np.isfinite(cdf.logF),
                                              okS=np.isfinite(cdf.logS)), x)
  return base_quantile


def _solve(kind, density_or_samples, *, grid, bounds, log_density, bandwidth, center,
           center_tol, damping, tol, max_iter, n_grid) -> Grid1DResult:
  target, shift = _as_target(density_or_samples, bounds=bounds, log_density=log_density,
                             bandwidth=bandwidth, center=center)
  s = target.std
  if kind == "cmm":
    t = s ** (2 / 3)
    base_mean, base_std = target.mean / (1 + t), s ** (1 / 3)
    a = 2 / (2.5 + t) if damping is None else float(damping)
  else:
    if abs(target.mean) > center_tol * s:
      raise ValueError(
          f"a moment measure needs a centred target; centre the data first (its mean is "
          f"{target.mean:.3g}, std {s:.3g}); pass center=True to subtract the mean")
    base_mean, base_std = 0.0, 1 / s
    a = 1.0 if damping is None else float(damping)
  if not 0 < a <= 1:
    raise ValueError(f"damping must be in (0, 1], got {damping}")

  x = _auto_grid(target, base_mean, base_std, n_grid) if grid is None else np.asarray(
      grid, dtype=np.float64)
  if x.ndim != 1 or len(x) < 10 or not np.all(np.diff(x) > 0):
    raise ValueError("grid must be an increasing 1D array of at least 10 points")
  g = (x - base_mean) / base_std**2 if kind == "cmm" else s**2 * x  # Gaussian guess
  iterations, auto = 0, grid is None
  for attempt in range(6):  # widen the grid while the base has mass at an edge
    w, g, cdf, logrho, it, residual, a, widen = _solve_on_grid(
        kind, target, x, g, a, tol, max_iter - iterations, auto and attempt < 5)
    iterations += it
    if not widen or iterations >= max_iter:
      break
    x_new = _widen(x, *_edge_mass(-w))
    g = _extrapolate(x_new, np.interp(x_new, x, g, left=np.nan, right=np.nan), 20)
    x = x_new
  if kind == "cmm":
    map_y = _clamped_match(cdf, _log_cdfs(x, logrho)[0], x)
    base_x = x
  else:
    map_y = g
    base_x = x - _moments(x, -w)[0]  # MM is unique up to translation: centre the base
  base_mean, base_std = _moments(base_x, -w)
  return Grid1DResult(
      x=base_x, w=w, base_density=np.exp(-w), base_quantile=_quantile_fn(base_x, cdf),
      map_x=base_x, map_y=map_y, iterations=iterations, residual=residual,
      converged=residual <= tol, kind=kind, base_mean=base_mean, base_std=base_std,
      target_density=np.exp(logrho), shift=shift, bandwidth=target.bandwidth, damping=a)


def _rms(x: np.ndarray, diff: np.ndarray, weight: np.ndarray) -> float:
  return math.sqrt(max(_trapz(x, diff**2 * weight), 0.0))


def _recentre(x: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, _Cdf]:
  """Translates the MM potential so that its base has mean 0 (``g(z) <- g(z + c)``)."""
  w, cdf = _base_from_slope(x, g)
  c = _moments(x, -w)[0]
  if c == 0.0:
    return g, w, cdf
  g = _extrapolate(x, np.interp(x + c, x, g, left=np.nan, right=np.nan), k)
  w, cdf = _base_from_slope(x, g)
  return g, w, cdf


def _solve_on_grid(kind, target, x, g, a, tol, max_iter, check_edges):
  """Damped fixed point ``g <- (1 - a) g + a step(g)`` on the grid ``x`` (``g`` = w' or u').

  The residual is the root-mean-square change of ``g`` relative to the base's (CMM) or the
  target's (MM) std: for CMM ``|step(g) - g|`` under the base and the target (``w'`` is
  applied to the data and integrated into the base); for MM, which is unique only up to a
  translation that the grid pins weakly, the base is recentred at every step and the residual
  is the change of the recentred ``g`` per unit of damping, under the base.

  ``a`` is halved whenever the residual grows by half or more (a safeguard for targets far
  from the Gaussian linearisation). With ``check_edges``, returns early (``widen`` true) when
  the base has mass at an edge of the grid."""
  with np.errstate(divide="ignore", invalid="ignore"):
    logrho = np.asarray(target.logpdf(x), dtype=np.float64)
  logrho = np.where(np.isnan(logrho), -np.inf, logrho)
  if not np.any(np.isfinite(logrho)):
    raise ValueError("the target has no mass on the grid")
  rho_cdf, logz = _log_cdfs(x, logrho)
  rho_weight = np.exp(logrho - logz)
  table = x - _moments(x, logrho)[0]  # MM: exact centring on the grid
  k = max(5, len(x) // 200)
  residual, prev, it, widen, g_prev = math.inf, math.inf, 0, False, None
  for it in range(1, max_iter + 1):
    if kind == "cmm":
      w, cdf = _base_from_slope(x, g)
    else:
      g, w, cdf = _recentre(x, g, k)
      if g_prev is not None:
        residual = _rms(x, g - g_prev, np.exp(-w)) / (a * target.std)
    if check_edges and it % 10 == 0 and any(_edge_mass(-w)):
      widen = True
      break
    if kind == "cmm":
      g_new = _extrapolate(x, _match(rho_cdf, cdf, x), k)
      residual = _rms(x, g_new - g, (np.exp(-w) + rho_weight) / 2) / _moments(x, -w)[1]
    if residual <= tol:
      g = g_new if kind == "cmm" else g
      break
    if residual > 1.5 * prev and residual > 1e3 * tol:
      a = max(a / 2, 1e-3)
    prev = residual
    if kind == "mm":
      g_new = _extrapolate(x, _match(cdf, rho_cdf, table), k)
      g_prev = g
    g = (1 - a) * g + a * g_new
  w, cdf = _base_from_slope(x, g)
  widen = widen or (check_edges and any(_edge_mass(-w)))
  return w, g, cdf, logrho, it, residual, a, widen


def cmm_1d(density_or_samples, *, grid=None, bounds=None, log_density: bool = False,
           bandwidth: Optional[float] = None, damping: Optional[float] = None,
           tol: float = 1e-9, max_iter: int = 500, n_grid: Optional[int] = None
           ) -> Grid1DResult:
  """The 1D conjugate moment measure of rho by the grid fixed point ``w' = Q_mu o F_rho``.

  ``mu = e^{-w}``; each step ``w'_{k+1} = (1 - a) w'_k + a Q_{mu_k} o F_rho`` with CDFs and
  quantiles from a log-space trapezoid rule on a fine grid. In the Gaussian case one undamped
  step multiplies the error of the base mean by ``-s^{2/3}`` and that of the log-variance by
  ``-1/2``, so the default damping ``a = 2 / (2.5 + s^{2/3})`` (``s`` the target's std) makes
  both contract by ``|1 - 3 / (2.5 + s^{2/3})|`` per step.

  Args:
    density_or_samples: a callable density on the real line (vectorised over ``[m]``), or a
      sample ``[n]``, replaced by its Gaussian kernel density estimate.
    grid: an increasing ``[m]`` grid; ``None`` chooses one covering the target and the base
      (and widens it while the base has mass at an edge).
    bounds: ``(lo, hi)`` holding the callable's mass, when not within [-200, 200].
    log_density: the callable returns the log-density (keeps far tails exact).
    bandwidth: the KDE bandwidth for samples (default: Silverman's rule).
    damping: ``a`` in (0, 1]; halved automatically whenever the residual grows.
    tol: stop when the root-mean-square change of ``w'`` (under the base and the target)
      divided by the base's std is ``<= tol``.
    max_iter: iteration cap.
    n_grid: number of grid points (default: about 40 per smallest length scale).

  Returns:
    A :class:`Grid1DResult`; ``map_y`` is ``grad w* = Q_rho o F_mu`` at ``map_x``.
  """
  return _solve("cmm", density_or_samples, grid=grid, bounds=bounds, log_density=log_density,
                bandwidth=bandwidth, center=False, center_tol=math.inf, damping=damping,
                tol=tol, max_iter=max_iter, n_grid=n_grid)


def mm_1d(density_or_samples, *, center: bool = False, grid=None, bounds=None,
          log_density: bool = False, bandwidth: Optional[float] = None,
          damping: Optional[float] = None, tol: float = 1e-9, max_iter: int = 500,
          n_grid: Optional[int] = None, center_tol: float = 1e-3) -> Grid1DResult:
  """The 1D moment measure of a centred rho by the grid fixed point ``u' = Q_rho o F_mu``.

  The solution is unique up to translation, which the grid pins only weakly: the base is
  recentred at every step (without that the iteration drifts), so the base returned has mean 0.
  The Gaussian linearisation contracts the log-variance by 1/2 per undamped step, so the
  default damping is 1. MM is sensitive to the barycentre (an off-centre target has no moment
  measure) and to narrow components, whose base is very wide (N(0, s^2) has base std 1/s).

  Args:
    density_or_samples: as in :func:`cmm_1d`.
    center: subtract the target's mean first (recorded in ``result.shift``); otherwise a
      target whose mean exceeds ``center_tol`` standard deviations is refused.
    grid, bounds, log_density, bandwidth, damping, tol, max_iter, n_grid: as in
      :func:`cmm_1d` (``tol`` relative to the target's std).
    center_tol: allowed ``|mean| / std`` without ``center``.

  Returns:
    A :class:`Grid1DResult`; ``w`` is ``u`` and ``map_y`` is ``u' = Q_rho o F_mu``.

  Raises:
    ValueError: the target is not centred (an off-centre target has no moment measure).
  """
  return _solve("mm", density_or_samples, grid=grid, bounds=bounds, log_density=log_density,
                bandwidth=bandwidth, center=center, center_tol=center_tol, damping=damping,
                tol=tol, max_iter=max_iter, n_grid=n_grid)
