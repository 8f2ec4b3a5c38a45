"""Energies: targets known as a density ``exp(-E(y)) / Z`` rather than as samples.

An :class:`Energy` wraps a JAX-traceable ``fn: [n, dim] -> [n]`` (``E``, the unnormalised
negative log-density) with its dimension, a name, ``log Z`` where it is known, the parameters it
was built with, a suggested box (1D/2D) and, for lattice models, the side ``L``.

>>> import numpy as np
>>> from cmm_core import energies
>>> ring = energies.make("ring")
>>> ring(np.zeros((3, 2))).shape
(3,)

Built-ins (:func:`names`, :func:`make`): the four 2D energies of the Monge-Ampere flow code
(Zhang, E, Wang 2018: ``ring``, ``rings``, ``wave``, ``two_gaussians``), ``banana``,
``double_well``, ``gaussian`` (any mean and covariance), the relaxed 2D Ising model ``ising``
(Hubbard-Stratonovich form, exact ``log Z`` through the Onsager-Kaufman solution or a transfer
matrix) and a ``phi4`` lattice field. Every built-in 2D energy has an exact ``log_z`` (closed form,
or a 1D quadrature accurate to ~1e-10 for ``double_well``). :func:`grid_log_z` and
:func:`grid_samples` give ``log Z`` by quadrature and exact samples on a fine grid for any 1D/2D
energy with a box. Conventions and checks: ``docs/energies.md``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cmm_core import hyper

__all__ = ["Energy", "names", "make", "schema", "describe", "grid_log_z", "grid_samples", "T_C",
           "lattice_adjacency", "lattice_eigenvalues", "ising_coupling", "ising_spin_log_z", "relaxed_log_z_offset",
           "exact_free_energy_per_site", "ising_spins", "ising_magnetisation", "PAPER_FREE_ENERGY"]

T_C = 2.0 / math.log(1.0 + math.sqrt(2.0))  # critical temperature of the 2D Ising model (J = 1)

# -Log Z / N of the *relaxed* Ising model at T_C as tabulated with the Monge-Ampere flow paper's code
# (key: (L, periodic)). The open-boundary values agree with the exact ones to 1e-15; the periodic
# ones are 1e-7 to 1.1e-6 above them (see docs/energies.md): use exact_free_energy_per_site.
PAPER_FREE_ENERGY = {
    (4, True): -2.33604476445,
    (8, True): -2.3227349295609376,
    (16, True): -2.3159198563359373,
    (32, True): -2.3140498159960936,
    (4, False): -1.9470001244979966,
    (8, False): -2.1909718508291,
    (16, False): -2.272901214087426,
}

_SIGMAS = 5.0  # half-width of a suggested box in standard deviations: edge density <= exp(-12.5)
MAX_LATTICE = 32  # largest lattice side L of ising / phi4 (N = L^2 = 1024 variables)
MAX_ENUM_SITES = 16  # largest lattice (N sites) whose spin states are enumerated (2^N states)
MAX_TRANSFER_OPEN = 16  # largest open-boundary side L with an exact log Z (transfer vector of 2^L)
MAX_GAUSSIAN_DIM = 1024
MAX_GRID_POINTS = 1 << 24  # n_grid^dim of grid_log_z / grid_samples
MAX_GRID_SAMPLES = 10_000_000
_CHUNK = 1 << 16  # points per jitted energy evaluation on a grid


Box = tuple  # ((lo1, hi1), (lo2, hi2), ...): one (lo, hi) pair per coordinate


@dataclasses.dataclass(frozen=True, eq=False)
class Energy:
  """A target density ``exp(-E(x)) / Z`` on ``R^dim``.

  Attributes:
    fn: JAX-traceable ``[n, dim] -> [n]``, the energy ``E`` (unnormalised negative log-density).
    dim: the dimension ``d``.
    name: a label (the built-in's name, the formula's text).
    log_z: ``log Z = log of the integral of exp(-E)`` where known, else None.
    params: the parameters it was built with (plain JSON-able values).
    box: a suggested plotting / quadrature box ``((lo1, hi1), ..., (lo_d, hi_d))`` (1D/2D built-ins),
      holding essentially all the mass (density at its edge <= ~1e-5 of the maximum), or None.
    L: the lattice side of a lattice energy (``dim = L^2``, site ``(r, c)`` at index ``r L + c``).
  Equality is identity (``fn`` is a function), so an Energy can be a static jit argument.
  """

  fn: Callable
  dim: int
  name: Optional[str] = None
  log_z: Optional[float] = None
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  box: Optional[Box] = None
  L: Optional[int] = None

  def __post_init__(self):
    if not callable(self.fn):
      raise ValueError(f"Energy: fn must be a function [n, dim] -> [n], got {type(self.fn).__name__}")
    if isinstance(self.dim, (bool, np.bool_)) or not isinstance(self.dim, (int, np.integer)) or self.dim < 1:
      raise ValueError(f"Energy: dim must be a positive integer, got {self.dim!r}")
    object.__setattr__(self, "dim", int(self.dim))
    if self.log_z is not None:
      if not (isinstance(self.log_z, (int, float, np.integer, np.floating)) and math.isfinite(self.log_z)):
        raise ValueError(f"Energy: log_z must be a finite number or None, got {self.log_z!r}")
      object.__setattr__(self, "log_z", float(self.log_z))
    if self.box is not None:
      object.__setattr__(self, "box", _check_box(self.box, self.dim, "Energy"))
    object.__setattr__(self, "params", dict(self.params))

  @property
  def label(self) -> str:
    return self.name or "energy"

  def __call__(self, x):
    """``E(x)``: ``[n, dim] -> [n]`` (or ``[dim] -> []``); ValueError for another shape."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
      raise ValueError(f"{self.label}: points must have shape [n, {self.dim}] (or [{self.dim}]), "
                       f"got {tuple(x.shape)}")
    single = x.ndim == 1
    xb = x[None] if single else x
    out = jnp.asarray(self.fn(xb))
    if out.shape != (xb.shape[0],):
      raise ValueError(f"{self.label}: the energy function returned shape {tuple(out.shape)} for "
                       f"{xb.shape[0]} points; it must return one value per point, [n]")
    return out[0] if single else out

  def log_prob(self, x):
    """The normalised log-density ``-E(x) - log Z``: ``[n, dim] -> [n]``; needs ``log_z``."""
    if self.log_z is None:
      raise ValueError(f"{self.label}: log Z is not known, so the log-density is not normalised "
                       "(grid_log_z computes it for a 1D/2D energy with a box)")
    return -self(x) - self.log_z


def _check_box(box, dim: int, who: str) -> Box:
  try:
    b = np.asarray(box, dtype=np.float64)
  except (TypeError, ValueError):
    b = None
  if b is None or b.shape != (dim, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 0] < b[:, 1]):
    raise ValueError(f"{who}: box must be {dim} pair(s) (lo, hi) of finite numbers with lo < hi, "
                     f"got {box!r}")
  return tuple((float(lo), float(hi)) for lo, hi in b)


# -- the 2D energies ---------------------------------------------------------------------------------

def _norm(x):
  # safe at 0 (finite gradient): sqrt(|x|^2 + tiny)
  return jnp.sqrt(jnp.sum(x * x, -1) + 1e-30)


def _phi(z: float) -> float:
  """Standard normal cdf (exact at +-inf)."""
  return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _radial_piece(k: float, sigma: float, lo: float, hi: float) -> float:
  """``integral_lo^hi r exp(-(r - k)^2 / (2 sigma^2)) dr`` in closed form."""
  def g(r):
    return 0.0 if math.isinf(r) else math.exp(-(r - k) ** 2 / (2 * sigma ** 2))
  return sigma ** 2 * (g(lo) - g(hi)) + k * sigma * math.sqrt(2 * math.pi) * (
      _phi((hi - k) / sigma) - _phi((lo - k) / sigma))


def _ring(radius, sigma):
  s2 = 2 * sigma ** 2
  fn = lambda x: (_norm(x) - radius) ** 2 / s2
  log_z = math.log(2 * math.pi * _radial_piece(radius, sigma, 0.0, math.inf))
  h = radius + _SIGMAS * sigma
  return dict(fn=fn, dim=2, log_z=log_z, box=((-h, h), (-h, h)))


def _rings(n_rings, sigma):
  radii = jnp.arange(1, n_rings + 1, dtype=jnp.float32)
  s2 = 2 * sigma ** 2
  fn = lambda x: jnp.min((_norm(x)[:, None] - radii) ** 2, -1) / s2
  # the nearest ring's term holds on [k - 1/2, k + 1/2] (first from 0, last to infinity)
  z = sum(_radial_piece(k, sigma, 0.0 if k == 1 else k - 0.5, math.inf if k == n_rings else k + 0.5)
          for k in range(1, n_rings + 1))
  h = n_rings + _SIGMAS * sigma
  return dict(fn=fn, dim=2, log_z=math.log(2 * math.pi * z), box=((-h, h), (-h, h)))


def _wave(sigma, confine):
  fn = lambda x: (0.5 * ((x[:, 1] - jnp.sin(jnp.pi * x[:, 0] / 2)) / sigma) ** 2
                  + 0.5 * (x[:, 0] / confine) ** 2)
  h1, h2 = _SIGMAS * confine, 1 + _SIGMAS * sigma
  return dict(fn=fn, dim=2, log_z=math.log(2 * math.pi * sigma * confine), box=((-h1, h1), (-h2, h2)))


def _two_gaussians(offset, sigma):
  mu = jnp.asarray([offset, offset], jnp.float32)
  c = math.log(2 * math.pi * sigma ** 2)
  def fn(x):
    l1 = -jnp.sum((x - mu) ** 2, -1) / (2 * sigma ** 2)
    l2 = -jnp.sum((x + mu) ** 2, -1) / (2 * sigma ** 2)
    return math.log(2.0) + c - jnp.logaddexp(l1, l2)  # -log(N1/2 + N2/2): normalised
  h = offset + _SIGMAS * sigma
  return dict(fn=fn, dim=2, log_z=0.0, box=((-h, h), (-h, h)))


def _banana(curvature, width):
  b = curvature
  # x1 ~ N(0, 1), x2 | x1 ~ N(b (x1^2 - 1), width^2): a shear of a Gaussian (volume 1), mean 0
  fn = lambda x: 0.5 * x[:, 0] ** 2 + 0.5 * ((x[:, 1] - b * (x[:, 0] ** 2 - 1)) / width) ** 2
  h1 = _SIGMAS
  box = ((-h1, h1), (-b - _SIGMAS * width, b * (h1 ** 2 - 1) + _SIGMAS * width))
  return dict(fn=fn, dim=2, log_z=math.log(2 * math.pi * width), box=box)


def _double_well(barrier):
  fn = lambda x: barrier * (x[:, 0] ** 2 - 1) ** 2 + 0.5 * x[:, 1] ** 2
  # the x1 factor by a fine 1D trapezoid rule (an analytic, fast-decaying integrand: error ~1e-12)
  edge = math.sqrt(1 + math.sqrt(40.0 / barrier))  # exp(-40) there
  t, dt = np.linspace(-edge, edge, 40001, retstep=True)
  f = np.exp(-barrier * (t ** 2 - 1) ** 2)
  z1 = dt * (f.sum() - 0.5 * (f[0] + f[-1]))
  log_z = math.log(z1) + 0.5 * math.log(2 * math.pi)
  h1 = math.sqrt(1 + math.sqrt(_SIGMAS ** 2 / 2 / barrier))
  return dict(fn=fn, dim=2, log_z=log_z, box=((-h1, h1), (-_SIGMAS, _SIGMAS)))


# the Monge-Ampere flow code's Gaussian: E = x1^2 + x2^2 + x1 x2 / 2, precision [[2, .5], [.5, 2]]
_REF_PRECISION = np.array([[2.0, 0.5], [0.5, 2.0]])
_REF_COV = tuple(tuple(float(v) for v in row) for row in np.linalg.inv(_REF_PRECISION))


def _gaussian(mean, cov):
  d = len(mean)
  P = np.linalg.inv(cov)
  m = jnp.asarray(mean, jnp.float32)
  Pj = jnp.asarray(P, jnp.float32)
  def fn(x):
    y = x - m
    return 0.5 * jnp.sum((y @ Pj) * y, -1)
  log_z = 0.5 * d * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1]
  sd = np.sqrt(np.diag(cov))
  box = tuple((float(mi - _SIGMAS * s), float(mi + _SIGMAS * s)) for mi, s in zip(mean, sd))
  return dict(fn=fn, dim=d, log_z=float(log_z), box=box)


def _check_gaussian(params: Mapping) -> dict:
  """``mean`` [d] and ``cov`` [d, d] checked (finite, symmetric positive definite)."""
  mean, cov = params.get("mean"), params.get("cov")
  try:
    m = None if mean is None else np.asarray(mean, dtype=np.float64)
    S = None if cov is None else np.asarray(cov, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError("gaussian: mean must be a list of numbers and cov a square matrix (list of rows), "
                     f"got mean={mean!r}, cov={cov!r}") from None
  if m is None and S is None:
    m, S = np.zeros(2), np.array(_REF_COV)
  if m is not None and (m.ndim != 1 or not 1 <= m.size <= MAX_GAUSSIAN_DIM or not np.all(np.isfinite(m))):
    raise ValueError(f"gaussian: mean must be 1 to {MAX_GAUSSIAN_DIM} finite numbers, got {mean!r}")
  if S is not None and (S.ndim != 2 or S.shape[0] != S.shape[1] or not 1 <= S.shape[0] <= MAX_GAUSSIAN_DIM
                        or not np.all(np.isfinite(S))):
    raise ValueError(f"gaussian: cov must be a square matrix of finite numbers (at most "
                     f"{MAX_GAUSSIAN_DIM} x {MAX_GAUSSIAN_DIM}), got {cov!r}")
  if m is None:
    m = np.zeros(S.shape[0])
  if S is None:  # a mean alone: identity covariance
    S = np.eye(m.size)
  if S.shape != (m.size, m.size):
    raise ValueError(f"gaussian: cov must be {m.size} x {m.size} for a mean of {m.size} numbers, "
                     f"got {S.shape[0]} x {S.shape[1]}")
  if not np.allclose(S, S.T, rtol=1e-8, atol=1e-12 * np.abs(S).max()):
    raise ValueError("gaussian: cov must be symmetric")
  S = 0.5 * (S + S.T)
  w = np.linalg.eigvalsh(S)
  if w.min() <= 1e-10 * max(w.max(), 0.0) or w.min() <= 0:
    raise ValueError(f"gaussian: cov must be positive definite (smallest eigenvalue {w.min():.3g})")
  return {"mean": tuple(float(v) for v in m), "cov": tuple(tuple(float(v) for v in row) for row in S)}


# -- lattices: the relaxed Ising model and phi^4 -----------------------------------------------------

def lattice_adjacency(L: int, periodic: bool = True) -> np.ndarray:
  """Adjacency ``[N, N]`` (0/1, N = L^2) of the L x L square lattice, site ``(r, c)`` at ``r L + c``.

  Each nearest-neighbour pair is one bond, also for ``L = 2`` periodic (where both neighbours along
  an axis are the same site: a single bond, as in the Monge-Ampere flow code).
  """
  L = int(L)
  N = L * L
  A = np.zeros((N, N), dtype=np.int64)
  idx = np.arange(N).reshape(L, L)
  for axis in (0, 1):
    nb = np.roll(idx, -1, axis=axis)
    keep = np.ones((L, L), bool)
    if not periodic:
      if axis == 0:
        keep[-1, :] = False
      else:
        keep[:, -1] = False
    i, j = idx[keep], nb[keep]
    ok = i != j
    A[i[ok], j[ok]] = 1
    A[j[ok], i[ok]] = 1
  return A


def lattice_eigenvalues(L: int, periodic: bool = True) -> np.ndarray:
  """Eigenvalues ``[N]`` of :func:`lattice_adjacency` in closed form (no dense eigensolver): the sums
  ``e_k + e_l`` of those of a cycle, ``2 cos(2 pi k / L)`` (periodic, L >= 3), or of a path,
  ``2 cos(pi k / (L + 1))``, k = 1..L (open; also L = 2 periodic, the same graph)."""
  L = int(L)
  if periodic and L >= 3:
    e1 = 2 * np.cos(2 * np.pi * np.arange(L) / L)
  else:
    e1 = 2 * np.cos(np.pi * np.arange(1, L + 1) / (L + 1))
  return (e1[:, None] + e1[None, :]).ravel()


def ising_coupling(L: int, periodic: bool = True, T: float = T_C) -> tuple[np.ndarray, float]:
  """``(K [N, N], c)``: ``K = A / T + c I`` with ``c = 0.1 - lambda_min(A / T)`` (so K >= 0.1 I)."""
  c = 0.1 - float(lattice_eigenvalues(L, periodic).min()) / float(T)
  return lattice_adjacency(L, periodic) / float(T) + c * np.eye(L * L), c


def _logsumexp(a) -> float:
  a = np.asarray(a, np.float64)
  m = a.max()
  return float(m + np.log(np.exp(a - m).sum()))


def _spin_states(A: np.ndarray, T: float, who: str = "ising_spin_log_z") -> tuple[np.ndarray, np.ndarray]:
  """All ``2^N`` spin states ``s [2^N, N]`` and their log-weights ``sum_{i<j} A_ij s_i s_j / T``."""
  N = A.shape[0]
  if N > MAX_ENUM_SITES:
    raise ValueError(f"{who}: enumeration is for at most {MAX_ENUM_SITES} sites, got {N}")
  s = ((np.arange(1 << N)[:, None] >> np.arange(N)) & 1) * 2.0 - 1.0
  return s, 0.5 * np.einsum("ni,ij,nj->n", s, A, s) / T


def _spin_log_z_enumerate(A: np.ndarray, T: float) -> float:
  """``log sum_s exp(sum_{i<j} A_ij s_i s_j / T)`` over all ``2^N`` states (vectorised)."""
  return _logsumexp(_spin_states(A, T)[1])


def ising_magnetisation(L: int, periodic: bool = True, T: float = T_C) -> tuple[np.ndarray, np.ndarray]:
  """The exact distribution of the Ising model's magnetisation per site ``m = sum_i s_i / N`` by
  enumerating the ``2^N`` spin states (``N = L^2 <= MAX_ENUM_SITES``).

  Returns:
    ``(m [N + 1], p [N + 1])``: the values ``-1, -1 + 2/N, ..., 1`` and their probabilities.
  """
  _check_lattice_args(L, periodic, T, "ising_magnetisation")
  s, log_w = _spin_states(lattice_adjacency(L, periodic), T, "ising_magnetisation")
  N = s.shape[1]
  w = np.exp(log_w - log_w.max())
  ups = (s > 0).sum(1)
  p = np.bincount(ups, weights=w, minlength=N + 1)
  return (2.0 * np.arange(N + 1) - N) / N, p / p.sum()


def _spin_log_z_kaufman(L: int, T: float) -> float:
  """Exact ``log Z`` of the periodic L x L Ising model (Kaufman 1949), ``L >= 3``."""
  K = 1.0 / T
  m = n = L
  k = np.arange(2 * n)
  gamma = np.arccosh(np.cosh(2 * K) / np.tanh(2 * K) - np.cos(np.pi * k / n))
  gamma[0] = 2 * K + np.log(np.tanh(K))  # signed (negative below T_C, 0 at T_C)
  logs, signs = [], []
  for start in (1, 0):  # gamma_{2r+1} then gamma_{2r}, r = 0..n-1
    x = m * gamma[start::2][:n] / 2
    logs.append(np.sum(np.logaddexp(x, -x)))  # log prod 2 cosh
    signs.append(1.0)
    sh = 2 * np.sinh(x)
    if np.all(sh != 0):
      logs.append(np.sum(np.log(np.abs(sh))))
      signs.append(float(np.prod(np.sign(sh))))
  top = max(logs)
  total = sum(s * math.exp(l - top) for l, s in zip(logs, signs))
  return float(math.log(0.5) + m * n / 2 * math.log(2 * math.sinh(2 * K)) + top + math.log(total))


def _spin_log_z_transfer_open(L: int, T: float) -> float:
  """Exact ``log Z`` of the open L x L Ising model: a row-to-row transfer vector of ``2^L`` states."""
  K = 1.0 / T
  s = ((np.arange(1 << L)[:, None] >> np.arange(L)) & 1) * 2.0 - 1.0
  row = K * np.sum(s[:, :-1] * s[:, 1:], 1)  # bonds inside a row
  row_w, log_scale = np.exp(row - row.max()), row.max()
  M = np.array([[math.exp(K), math.exp(-K)], [math.exp(-K), math.exp(K)]])  # one vertical bond
  v = row_w.copy()
  log_z = log_scale
  for _ in range(L - 1):
    t = v.reshape((2,) * L)  # bit i of the state index is axis L - 1 - i
    for ax in range(L):
      t = np.moveaxis(np.tensordot(M, t, axes=([1], [ax])), 0, ax)
    v = t.reshape(-1) * row_w
    top = v.max()
    v /= top
    log_z += log_scale + math.log(top)
  return log_z + math.log(v.sum())


def _check_lattice_args(L, periodic, T, who="ising"):
  L = hyper.check(who, hyper.Int("L", 4, 2, MAX_LATTICE), L)
  periodic = hyper.check(who, hyper.Bool("periodic", True), periodic)
  T = hyper.check(who, hyper.Float("T", T_C, 0.25, 100.0), T)
  return L, periodic, T


def ising_spin_log_z(L: int, periodic: bool = True, T: float = T_C, method: str = "auto") -> float:
  """Exact ``log Z`` of the L x L spin model ``Z = sum_s exp(sum_<ij> s_i s_j / T)`` (J = 1, each bond once).

  ``method``: ``"enumerate"`` (all ``2^N`` states, N <= 16), ``"kaufman"`` (periodic, L >= 3),
  ``"transfer"`` (open, L <= 16) or ``"auto"`` (enumeration for N <= 16, else the other two).
  """
  L, periodic, T = _check_lattice_args(L, periodic, T)
  if method == "auto":
    method = "enumerate" if L * L <= MAX_ENUM_SITES else ("kaufman" if periodic else "transfer")
  if method == "enumerate":
    if L * L > MAX_ENUM_SITES:
      raise ValueError(f"ising: enumeration is for L <= 4 ({MAX_ENUM_SITES} sites), got L = {L}")
    return _spin_log_z_enumerate(lattice_adjacency(L, periodic), T)
  if method == "kaufman":
    if not periodic or L < 3:
      raise ValueError("ising: the Kaufman solution is for periodic lattices with L >= 3")
    return float(_spin_log_z_kaufman(L, T))
  if method == "transfer":
    if periodic or L > MAX_TRANSFER_OPEN:
      raise ValueError(f"ising: the transfer vector is for open lattices with L <= {MAX_TRANSFER_OPEN}")
    return float(_spin_log_z_transfer_open(L, T))
  raise ValueError(f"ising: method must be one of ['auto', 'enumerate', 'kaufman', 'transfer'], "
                   f"got {method!r}")


def relaxed_log_z_offset(L: int, periodic: bool = True, T: float = T_C) -> float:
  """``log Z_relaxed - log Z_spin = N/2 log(2 pi) + 1/2 log det K - N log 2 + N c / 2``.

  From ``prod_i cosh x_i = 2^-N sum_s exp(s . x)`` and the Gaussian integral
  ``int exp(-x K^-1 x / 2 + s . x) dx = (2 pi)^{N/2} det(K)^{1/2} exp(s K s / 2)`` with
  ``s K s / 2 = sum_<ij> s_i s_j / T + N c / 2`` (``s_i^2 = 1``).
  """
  L, periodic, T = _check_lattice_args(L, periodic, T)
  lam = lattice_eigenvalues(L, periodic) / T
  c = 0.1 - float(lam.min())
  N = L * L
  log_det_k = float(np.sum(np.log(lam + c)))
  return 0.5 * N * math.log(2 * math.pi) + 0.5 * log_det_k - N * math.log(2) + N * c / 2


def exact_free_energy_per_site(L: int, periodic: bool = True, T: float = T_C, model: str = "relaxed") -> float:
  """Exact ``-log Z / N`` of the L x L Ising model, ``model="relaxed"`` (the continuous energy of
  ``make("ising")``, the convention of the Monge-Ampere flow paper's -2.336... numbers) or ``"spin"``.

  Periodic: any L (enumeration for L <= 4, else Kaufman); open: L <= 16 (enumeration, then a
  transfer vector). ValueError beyond.
  """
  if model not in ("relaxed", "spin"):
    raise ValueError(f"ising: model must be 'relaxed' or 'spin', got {model!r}")
  L, periodic, T = _check_lattice_args(L, periodic, T)
  if not periodic and L > MAX_TRANSFER_OPEN:
    raise ValueError(f"ising: the exact free energy of an open lattice is computed for L <= "
                     f"{MAX_TRANSFER_OPEN}, got L = {L}")
  log_z = ising_spin_log_z(L, periodic, T)
  if model == "relaxed":
    log_z += relaxed_log_z_offset(L, periodic, T)
  return float(-log_z / (L * L))


def _log_cosh(x):
  return jnp.logaddexp(x, -x) - math.log(2.0)


def _ising(L, periodic, T):
  K, _ = ising_coupling(L, periodic, T)
  Kinv = jnp.asarray(np.linalg.inv(K), jnp.float32)
  fn = lambda x: 0.5 * jnp.sum((x @ Kinv) * x, -1) - jnp.sum(_log_cosh(x), -1)
  log_z = None
  if periodic or L <= MAX_TRANSFER_OPEN:
    log_z = -L * L * exact_free_energy_per_site(L, periodic, T)
  return dict(fn=fn, dim=L * L, log_z=log_z, L=L)


def ising_spins(x, seed: Optional[int] = None) -> np.ndarray:
  """Spins ``[n, N]`` in {-1, 1} from relaxed samples ``x [n, N]``: ``sign(x)`` without a seed, else
  drawn with ``P(s_i = 1 | x) = sigmoid(2 x_i)`` (the exact conditional of the spin given x)."""
  x = np.asarray(x, np.float64)
  if seed is None:
    return np.where(x >= 0, 1, -1).astype(np.int8)
  u = np.random.default_rng(seed).random(x.shape)
  return np.where(u < 1 / (1 + np.exp(-2 * x)), 1, -1).astype(np.int8)


def _phi4(L, kappa, lam, periodic):
  A = lattice_adjacency(L, periodic)
  K = np.eye(L * L) - kappa * A
  w = 1 - kappa * lattice_eigenvalues(L, periodic)
  if lam == 0 and w.min() <= 0:
    raise ValueError(f"phi4: with lam = 0 the energy needs kappa < 1 / lambda_max(A) "
                     f"(I - kappa A positive definite), got kappa = {kappa}")
  Kj = jnp.asarray(K, jnp.float32)
  fn = lambda x: jnp.sum((x @ Kj) * x, -1) + lam * jnp.sum((x ** 2 - 1) ** 2, -1)
  log_z = None
  if lam == 0:  # a Gaussian with precision 2 K
    log_z = 0.5 * L * L * math.log(math.pi) - 0.5 * float(np.sum(np.log(w)))
  return dict(fn=fn, dim=L * L, log_z=log_z, L=L)


# -- registry --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Spec:
  build: Callable
  schema: tuple
  help: str


_SPECS = {
    "ring": _Spec(_ring, (
        hyper.Float("radius", 2.0, 0.0, 20.0, "ring radius", lo_open=True),
        hyper.Float("sigma", 0.4, 0.01, 5.0, "radial width (E = (|x| - radius)^2 / (2 sigma^2))")),
        "E = (|x| - 2)^2 / 0.32 (MA flow)"),
    "rings": _Spec(_rings, (
        hyper.Int("n_rings", 5, 1, 10, "rings at radii 1, 2, ..., n_rings"),
        hyper.Float("sigma", math.sqrt(0.02), 0.01, 1.0, "radial width of each ring")),
        "E = min_k (|x| - k)^2 / 0.04, k = 1..5 (MA flow)"),
    "wave": _Spec(_wave, (
        hyper.Float("sigma", 0.4, 0.01, 5.0, "width around x2 = sin(pi x1 / 2)"),
        hyper.Float("confine", 2.0, 0.1, 20.0, "std of the Gaussian confinement in x1")),
        "E = ((x2 - sin(pi x1 / 2)) / 0.4)^2 / 2 + x1^2 / 8 (MA flow, plus a confinement)"),
    "two_gaussians": _Spec(_two_gaussians, (
        hyper.Float("offset", 0.8, 0.0, 10.0, "centres at +-(offset, offset)"),
        hyper.Float("sigma", 0.5, 0.01, 5.0, "std of each component")),
        "equal mixture of N(+-(0.8, 0.8), 0.5^2 I) (MA flow)"),
    "banana": _Spec(_banana, (
        hyper.Float("curvature", 0.5, 0.0, 2.0, "x2 centred on curvature (x1^2 - 1)"),
        hyper.Float("width", 0.5, 0.05, 5.0, "std of x2 around the parabola")),
        "x1 ~ N(0, 1), x2 ~ N(0.5 (x1^2 - 1), 0.5^2)"),
    "double_well": _Spec(_double_well, (
        hyper.Float("barrier", 3.0, 0.1, 20.0, "E = barrier (x1^2 - 1)^2 + x2^2 / 2"),),
        "E = 3 (x1^2 - 1)^2 + x2^2 / 2"),
    "gaussian": _Spec(_gaussian, (), "N(mean, cov); default the MA flow code's E = x1^2 + x2^2 + x1 x2 / 2"),
    "ising": _Spec(_ising, (
        hyper.Int("L", 4, 2, MAX_LATTICE, "lattice side (N = L^2 variables)"),
        hyper.Bool("periodic", True, "periodic (else open) boundaries"),
        hyper.Float("T", T_C, 0.25, 100.0, "temperature (default critical, 2 / ln(1 + sqrt 2))")),
        "relaxed 2D Ising model: E = x K^-1 x / 2 - sum log cosh x_i"),
    "phi4": _Spec(_phi4, (
        hyper.Int("L", 4, 2, MAX_LATTICE, "lattice side (N = L^2 variables)"),
        hyper.Float("kappa", 0.15, 0.0, 1.0, "hopping parameter"),
        hyper.Float("lam", 0.123, 0.0, 100.0, "quartic coupling"),
        hyper.Bool("periodic", True, "periodic (else open) boundaries")),
        "E = x (I - kappa A) x + lam sum (x_i^2 - 1)^2 (MA flow code)"),
}
_GAUSSIAN_PARAMS = ("mean", "cov")


def names() -> tuple[str, ...]:
  """The built-in energies' names."""
  return tuple(_SPECS)


def schema(name: str) -> tuple:
  """The scalar parameters of a built-in (``hyper`` entries: name, default, bounds, help).
  ``gaussian`` takes ``mean`` [d] and ``cov`` [d, d] instead."""
  return _spec(name).schema


def describe(name: str) -> str:
  """One line: what the built-in energy is."""
  return _spec(name).help


def _spec(name) -> _Spec:
  if not isinstance(name, str) or name not in _SPECS:
    raise ValueError(f"unknown energy {name!r}; built-in energies: {', '.join(_SPECS)}")
  return _SPECS[name]


_MADE: dict = {}   # (name, parameters) -> Energy: one object per built-in setting (immutable)
_MADE_MAX = 64
_MADE_LOCK = threading.Lock()   # the app's sessions run in threads


def make(name: str, **params) -> Energy:
  """The built-in energy ``name`` with ``params`` (defaults for the others); ValueError for an unknown
  name, an unknown parameter or a value out of bounds (the message lists what is allowed).

  The same name and parameter values give the same object: an Energy is a static argument of the
  jitted steps (equality is identity), so fits of one built-in setting share their compiled code."""
  spec = _spec(name)
  allowed = _GAUSSIAN_PARAMS if name == "gaussian" else tuple(h.name for h in spec.schema)
  unknown = sorted(set(params) - set(allowed))
  if unknown:
    raise ValueError(f"energy {name!r}: unknown parameter(s) {unknown}; allowed: {list(allowed)}")
  if name == "gaussian":
    values = _check_gaussian(params)
    build = lambda: spec.build(np.asarray(values["mean"]), np.asarray(values["cov"]))
  else:
    values = {h.name: hyper.check(name, h, params[h.name]) if h.name in params else h.default
              for h in spec.schema}
    build = lambda: spec.build(**values)
  key = (name, repr(sorted((k, np.asarray(v).tolist()) for k, v in values.items())))
  with _MADE_LOCK:
    if key in _MADE:
      return _MADE[key]
  made = Energy(name=name, params=values, **build())
  with _MADE_LOCK:
    while len(_MADE) >= _MADE_MAX:  # a server's users may try many settings: drop the oldest
      del _MADE[next(iter(_MADE))]
    return _MADE.setdefault(key, made)  # a parallel call may have made it first


# -- quadrature and exact samples on a grid (1D/2D) ------------------------------------------------

def _grid(energy: Energy, n_grid, box, who: str):
  """Cell centres ``[n_grid^d, d]``, ``-E`` there ``[n_grid^d]`` (float64) and the cell widths ``[d]``."""
  if not isinstance(energy, Energy):
    raise ValueError(f"{who}: energy must be an Energy, got {type(energy).__name__}")
  if energy.dim not in (1, 2):
    raise ValueError(f"{who}: a grid is for 1D or 2D energies, got dim {energy.dim}")
  box = energy.box if box is None else box
  if box is None:
    raise ValueError(f"{who}: {energy.label} has no box; pass box=((lo1, hi1), (lo2, hi2))")
  box = _check_box(box, energy.dim, who)
  if (isinstance(n_grid, (bool, np.bool_)) or not isinstance(n_grid, (int, np.integer)) or n_grid < 8
      or int(n_grid) ** energy.dim > MAX_GRID_POINTS):
    raise ValueError(f"{who}: n_grid must be an integer >= 8 with n_grid^dim <= {MAX_GRID_POINTS}, "
                     f"got {n_grid!r}")
  n_grid = int(n_grid)
  widths = np.array([(hi - lo) / n_grid for lo, hi in box])
  axes = [lo + (np.arange(n_grid) + 0.5) * h for (lo, _), h in zip(box, widths)]
  pts = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], -1).astype(np.float32)
  f = jax.jit(energy.fn)
  n = pts.shape[0]
  pad = (-n) % _CHUNK if n > _CHUNK else 0
  P = np.concatenate([pts, np.repeat(pts[-1:], pad, 0)]) if pad else pts
  step = min(n, _CHUNK)
  E = np.concatenate([np.asarray(f(P[i:i + step]), np.float64) for i in range(0, P.shape[0], step)])[:n]
  return pts, -E, widths


def grid_log_z(energy: Energy, n_grid: int = 512, box: Optional[Box] = None) -> float:
  """``log Z`` of a 1D/2D energy by the midpoint rule on ``n_grid^dim`` cells of its box (or ``box``).

  Spectrally accurate for a smooth energy whose box holds the mass: the built-ins agree with
  their exact ``log_z`` to < 1e-4 at the default ``n_grid``.
  """
  _, neg_e, widths = _grid(energy, n_grid, box, "grid_log_z")
  if not np.all(np.isfinite(neg_e) | (neg_e == -np.inf)) or not np.any(np.isfinite(neg_e)):
    raise ValueError(f"grid_log_z: {energy.label} is not finite on the grid (NaN or -inf energies)")
  return _logsumexp(neg_e[np.isfinite(neg_e)]) + float(np.sum(np.log(widths)))


def grid_samples(energy: Energy, n: int, seed: int = 0, n_grid: int = 512,
                 box: Optional[Box] = None) -> np.ndarray:
  """``n`` samples ``[n, dim]`` (float32) of a 1D/2D energy: a grid cell drawn with probability
  ``exp(-E(centre)) * area`` then a uniform point in it (exact up to the cell size)."""
  if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_GRID_SAMPLES:
    raise ValueError(f"grid_samples: n must be an integer in [1, {MAX_GRID_SAMPLES}], got {n!r}")
  pts, neg_e, widths = _grid(energy, n_grid, box, "grid_samples")
  neg_e = np.where(np.isfinite(neg_e), neg_e, -np.inf)
  if not np.any(np.isfinite(neg_e)):
    raise ValueError(f"grid_samples: {energy.label} is not finite anywhere on the grid")
  p = np.exp(neg_e - neg_e.max())
  p /= p.sum()
  rng = np.random.default_rng(seed)
  cells = rng.choice(p.size, size=int(n), p=p)
  jitter = (rng.random((int(n), energy.dim)) - 0.5) * widths
  return (pts[cells].astype(np.float64) + jitter).astype(np.float32)
