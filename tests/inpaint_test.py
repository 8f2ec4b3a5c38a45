"""Inpainting: the Gaussian oracle, input checks, the MALA engine on known densities, and the
models' conditionals against quadrature of their own density and against the exact Gaussian one.

Fast tests use analytic densities and an untrained (random, non-Gaussian) Monge-Ampere flow; the
convex models' log-densities compile for about a minute each on a loaded 2-core machine, and the
fits take minutes, so those tests are marked slow.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cmm_core as cc
from cmm_core import inpaint as ip
from cmm_core.models import maflow
from cmm_core.models.maflow import MAFlow, MAFlowFitted
from cmm_core.models.sdot import SDOTFitted

MEAN4 = np.array([0.5, -1.0, 2.0, 0.0])
COV4 = np.array([[1.0, 0.6, 0.3, 0.1],
                 [0.6, 1.5, -0.4, 0.2],
                 [0.3, -0.4, 0.8, 0.0],
                 [0.1, 0.2, 0.0, 0.5]])


def _closed_form(mean, cov, row, obs):
  """Conditional mean and covariance of the free entries, straight from the textbook formula."""
  free = ~obs
  K = cov[np.ix_(free, obs)] @ np.linalg.inv(cov[np.ix_(obs, obs)])
  m = mean[free] + K @ (row[obs] - mean[obs])
  c = cov[np.ix_(free, free)] - K @ cov[np.ix_(obs, free)]
  return m, c


# -- the Gaussian oracle ---------------------------------------------------------------------------

def test_gaussian_conditional_matches_formula():
  x = np.array([[1.0, np.nan, 2.5, np.nan], [np.nan, np.nan, np.nan, -0.3]])
  mask = np.isfinite(x)
  means, covs = ip.gaussian_conditional(MEAN4, COV4, x, mask)
  for i in range(2):
    m, c = _closed_form(MEAN4, COV4, x[i], mask[i])
    np.testing.assert_allclose(means[i][~mask[i]], m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(covs[i][np.ix_(~mask[i], ~mask[i])], c, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(means[i][mask[i]], x[i][mask[i]])
    assert np.all(covs[i][mask[i]] == 0) and np.all(covs[i][:, mask[i]] == 0)


def test_gaussian_inpaint_moments_within_sampling_error():
  n = 40_000
  x = np.array([[1.0, np.nan, 2.5, np.nan], [np.nan] * 4, [0.1, 0.2, 0.3, 0.4]])
  mask = np.isfinite(x)
  draws = ip.gaussian_inpaint(MEAN4, COV4, x, mask, seed=3, n_draws=n)   # [n, 3, 4]
  assert draws.shape == (n, 3, 4) and draws.dtype == np.float64
  for i in range(3):
    np.testing.assert_array_equal(draws[:, i][:, mask[i]], np.broadcast_to(x[i][mask[i]], (n, mask[i].sum())))
  for i in range(2):
    free = ~mask[i]
    m, c = _closed_form(MEAN4, COV4, x[i], mask[i]) if mask[i].any() else (MEAN4, COV4)
    s = draws[:, i][:, free]
    se = np.sqrt(np.diag(c) / n)
    assert np.all(np.abs(s.mean(0) - m) < 4.5 * se)
    # a covariance entry's standard error is at most sqrt((c_ii c_jj + c_ij^2) / n)
    se_c = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c ** 2) / n)
    assert np.all(np.abs(np.cov(s.T) - c) < 4.5 * se_c)
  one = ip.gaussian_inpaint(MEAN4, COV4, x, mask, seed=3)
  assert one.shape == (3, 4)
  np.testing.assert_array_equal(one, ip.gaussian_inpaint(MEAN4, COV4, x, mask, seed=3))


def test_gaussian_inpaint_keeps_observed_bits_and_dtype():
  x = np.array([[1 / 3, np.nan, np.pi, np.nan]], np.float32)
  out = ip.gaussian_inpaint(MEAN4, COV4, x, np.isfinite(x), seed=0)
  assert out.dtype == np.float32
  assert out[0, 0] == x[0, 0] and out[0, 2] == x[0, 2] and np.all(np.isfinite(out))
  x64 = np.array([[1 / 3, 0.0, np.pi, 1e-17]])
  out = ip.gaussian_inpaint(MEAN4, COV4, x64, np.ones((1, 4), bool))
  np.testing.assert_array_equal(out, x64)   # a fully observed row comes back as it was
  with pytest.raises(ValueError, match="symmetric"):
    ip.gaussian_inpaint(MEAN4, COV4 + np.triu(np.ones((4, 4)), 1), x64, np.ones((1, 4), bool))
  with pytest.raises(ValueError, match="n_draws"):
    ip.gaussian_inpaint(MEAN4, COV4, x64, np.ones((1, 4), bool), n_draws=0)


# -- input checks ------------------------------------------------------------------------------------

def _random_flow(d=2, seed=0, init_scale=2.0, shift=(0.7, -0.4), scale=1.3) -> MAFlowFitted:
  """An untrained flow with a random, clearly non-Gaussian potential (no fit: nothing compiles);
  small (16 units, 5 RK4 steps to T = 2) so that its chains run in seconds."""
  config = dict(MAFlow(hidden=16, n_steps=5, step_size=0.4).resolve(d)[0])
  spec = maflow._spec(config, d)
  params = maflow.init_params(spec, jax.random.PRNGKey(seed), init_scale, 1.0)
  extras = {"dim": d, "shift": np.asarray(shift[:d], np.float32), "scale": scale, "laplacian_train": "exact"}
  info = {"dim": d, "n_data": 0, "status": "done", "message": "", "warnings": []}
  return MAFlowFitted(config=config, params=jax.tree_util.tree_map(np.asarray, params), extras=extras,
                      history=[], info=info)


@pytest.mark.parametrize("x, mask, match", [
    (np.zeros((3, 2)), np.ones((3, 2), int), "boolean"),
    (np.zeros((3, 2)), np.ones((3, 3), bool), "shape of x"),
    (np.zeros((3, 3)), np.ones((3, 3), bool), r"\[m, 2\]"),
    (np.zeros(2), np.ones(2, bool), r"\[m, 2\]"),
    (np.zeros((0, 2)), np.ones((0, 2), bool), "m >= 1"),
    (np.array([["a", "b"]]), np.ones((1, 2), bool), "numeric"),
    (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, np.nan], [np.inf, 0.0]]),
     np.ones((4, 2), bool), r"3 row\(s\): 1, 2, 3"),
])
def test_bad_inputs_are_refused(x, mask, match):
  fitted = _random_flow()
  with pytest.raises(ValueError, match=match):
    fitted.inpaint(x, mask)
  with pytest.raises(ValueError, match=match):
    ip.gaussian_inpaint(MEAN4[:2], COV4[:2, :2], x, mask)


def test_bad_steps_and_seed_are_refused():
  fitted = _random_flow()
  x = np.array([[0.0, np.nan]])
  for steps in (0, -1, 1.5, True, 10**9):
    with pytest.raises(ValueError, match="steps"):
      fitted.inpaint(x, np.isfinite(x), steps=steps)
  with pytest.raises(ValueError, match="seed"):
    fitted.inpaint(x, np.isfinite(x), seed=-1)


def test_sdot_says_why_it_cannot_inpaint():
  fitted = SDOTFitted(config={}, params={}, extras={"dim": 2}, info={"dim": 2})
  with pytest.raises(NotImplementedError, match="no density"):
    fitted.inpaint(np.zeros((1, 2)), np.array([[True, False]]))


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9, 200, 1024, 2500])
def test_row_pieces_cover_the_rows_with_little_padding(n):
  pieces = ip._row_pieces(n)
  assert pieces[0][0] == 0 and pieces[-1][1] == n
  assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # contiguous, in order
  assert all(size in ip._BUCKETS and 0 < stop - start <= size for start, stop, size in pieces)
  assert sum(size for *_, size in pieces) - n < ip._BUCKETS[0]    # padding: only the last piece


def test_fully_observed_rows_need_no_model_work():
  fitted = _random_flow()
  x = np.array([[1 / 3, 2 / 3], [np.pi, -1e-20]], np.float32)
  out = fitted.inpaint(x, np.ones((2, 2), bool))
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, x)
  assert "_inpaint_guess" not in fitted.__dict__  # no sampling, no chains


# -- the engine on analytic densities --------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _banana():
  """``log p(y) = -y0^2 / 2 - (y1 - b y0^2)^2 / (2 s^2)``; args ``(b, s)``."""
  def fn(args, y):
    b, s = args
    return -0.5 * y[0] ** 2 - 0.5 * (y[1] - b * y[0] ** 2) ** 2 / s ** 2
  return fn


class _Analytic:
  """A stand-in fitted model: a known density, and the Gaussian its start comes from."""
  model = "analytic"
  dim = 2

  def __init__(self, guess_mean, guess_std, b=0.5, s=0.5):
    self.args, self.guess = (b, s), (np.asarray(guess_mean), np.asarray(guess_std))

  def sample(self, n, seed=0):
    mean, std = self.guess
    return mean + std * np.random.default_rng(seed).standard_normal((n, 2))

  def log_density_fn(self):
    return _banana(), (jnp.float32(self.args[0]), jnp.float32(self.args[1]))


def _moments_1d(logp, grid):
  w = np.exp(logp - logp.max())
  w /= w.sum()
  m = w @ grid
  return m, w @ (grid - m) ** 2, w @ np.abs(grid)


@pytest.mark.slow  # 13 s; the quadrature checks of the conditionals stay in the default suite
def test_mala_targets_the_density_not_its_start():
  """Rows of three kinds (1000 copies each) started from a Gaussian 2 units off and 3 times too
  wide: a bimodal conditional (y0 | y1 = 1: modes at +-sqrt(1.5)), a Gaussian one (y1 | y0 = 1:
  N(b, s^2)), every entry observed (returned as given). Then the joint (no entry observed) from
  the banana's own mean and variances, as a fitted model's samples would give them (from the bad
  start, 400 steps do not carry every chain in from the banana's far arms)."""
  n = 1000
  model = _Analytic([2.0, 2.0], [3.0, 3.0])
  b, s = model.args
  kinds = np.array([[np.nan, 1.0], [1.0, np.nan], [0.25, -0.75]])
  x = np.repeat(kinds, n, 0)
  res = ip.run(model, x, np.isfinite(x), seed=0)
  out = res.samples
  np.testing.assert_array_equal(out[np.isfinite(x)], x[np.isfinite(x)])
  np.testing.assert_array_equal(out[2 * n:], x[2 * n:])
  assert np.all(np.isfinite(out))
  assert 0.45 < res.acceptance[:2 * n].mean() < 0.7 and np.all(np.isnan(res.acceptance[2 * n:]))
  se = lambda var: 4.5 * np.sqrt(var / n)
  # y0 | y1 = 1, by quadrature
  grid = np.linspace(-5, 5, 4001)
  m, v, mabs = _moments_1d(-0.5 * grid ** 2 - 0.5 * (1.0 - b * grid ** 2) ** 2 / s ** 2, grid)
  y0 = out[:n, 0]
  assert abs(y0.mean() - m) < se(v)
  assert abs(np.abs(y0).mean() - mabs) < se(v)
  assert abs(y0.var() / v - 1) < 0.15
  # y1 | y0 = 1 is N(b, s^2)
  y1 = out[n:2 * n, 1]
  assert abs(y1.mean() - b) < se(s ** 2) and abs(y1.var() / s ** 2 - 1) < 0.15
  # the joint: E y0 = 0, var y0 = 1, E y1 = b, var y1 = s^2 + 2 b^2 (heavy-tailed: its variance
  # estimate has a standard error of about 0.07 here)
  v1 = s ** 2 + 2 * b ** 2
  joint = _Analytic([0.0, b], [1.0, np.sqrt(v1)])
  x = np.full((n, 2), np.nan)
  j = ip.inpaint(joint, x, np.isfinite(x), seed=1)
  assert abs(j[:, 0].mean()) < se(1.0) and abs(j[:, 0].var() - 1) < 0.15
  assert abs(j[:, 1].mean() - b) < se(v1) and abs(j[:, 1].var() / v1 - 1) < 0.3


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: determinism of completions; the fits' own determinism stays in the default suite
def test_same_seed_same_completions():
  model = _Analytic([0.0, 0.5], [1.0, 1.0])
  # 1000 rows: the compiled chains of the test above serve (steps is not a compiled constant)
  x = np.repeat([[np.nan, 1.0], [1.0, np.nan], [np.nan, np.nan], [np.nan, 2.0]], 250, 0)
  a = ip.inpaint(model, x, np.isfinite(x), seed=5, steps=30)
  np.testing.assert_array_equal(a, ip.inpaint(model, x, np.isfinite(x), seed=5, steps=30))
  assert not np.array_equal(a, ip.inpaint(model, x, np.isfinite(x), seed=6, steps=30))


# -- a model: the untrained flow ----------------------------------------------------------------------

def _quadrature(fitted, row, obs, grid):
  """Moments of the free coordinate (one) of ``fitted``'s conditional, by quadrature of its
  ``log_density_fn`` on ``grid``."""
  fn, args = fitted.log_density_fn()
  ys = np.repeat(row[None], len(grid), 0)
  ys[:, ~obs] = grid[:, None]
  lp = np.asarray(jax.jit(jax.vmap(lambda v: fn(args, v)))(jnp.asarray(ys, jnp.float32)), np.float64)
  return _moments_1d(lp, grid)


def _check_against_quadrature(fitted, n=1000, grid=np.linspace(-12, 12, 4001)):
  row, obs = np.array([0.3, 0.0]), np.array([True, False])
  m, v, _ = _quadrature(fitted, row, obs, grid)
  x = np.repeat(np.where(obs, row, np.nan)[None], n, 0)
  res = ip.run(fitted, x, np.isfinite(x), seed=0)
  assert np.all(res.samples[:, 0] == 0.3)
  s = res.samples[:, 1]
  assert abs(s.mean() - m) < 4.5 * np.sqrt(v / n), (s.mean(), m, v)
  assert abs(s.var() / v - 1) < 0.15, (s.var(), v)
  return res


def test_flow_log_density_fn_matches_log_prob():
  fitted = _random_flow()
  y = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32) * 2
  fn, args = fitted.log_density_fn()
  lp = np.asarray(jax.vmap(lambda v: fn(args, v))(jnp.asarray(y)))
  diff = fitted.log_prob(y) - lp
  np.testing.assert_allclose(diff, -2 * np.log(1.3), atol=1e-4)   # the constant -d log scale
  g = np.asarray(jax.vmap(jax.grad(lambda v: fn(args, v)))(jnp.asarray(y)))
  eps = 1e-2
  fd = np.stack([(fitted.log_prob(y + eps * e) - fitted.log_prob(y - eps * e)) / (2 * eps)
                 for e in np.eye(2, dtype=np.float32)], 1)
  np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-2)


@pytest.mark.slow  # ~19 s; the analytic model's quadrature check above runs by default
def test_flow_conditional_matches_quadrature():
  _check_against_quadrature(_random_flow())


# -- the convex models (slow: their log-densities compile for a minute) ------------------------

def _untrained(name, **hyper):
  """A convex model straight from init (a random ICNN around the Gaussian guess: no training)."""
  rng = np.random.default_rng(0)
  data = rng.multivariate_normal([0.5, -1.0], [[1.0, 0.6], [0.6, 1.5]], size=512).astype(np.float32)
  model = cc.models.get(name)(**hyper)
  static, state = model.init(jax.random.PRNGKey(0), data)
  info = {"dim": 2, "n_data": len(data), "status": "done", "message": "", "warnings": []}
  return model.finalize(static, state, [], info)


CONVEX = [("cmm", {}), ("mm", {}), ("brenier", {}), ("cmm", {"potential": "base", "objective": "semidual"}),
          ("brenier", {"potential": "data"})]


@pytest.mark.slow
@pytest.mark.parametrize("name, hyper", CONVEX)
def test_convex_log_density_fn_matches_log_prob(name, hyper):
  fitted = _untrained(name, **hyper)
  y = np.random.default_rng(1).multivariate_normal([0.5, -1.0], [[1.0, 0.6], [0.6, 1.5]], 16).astype(np.float32)
  fn, args = fitted.log_density_fn()
  vg = jax.jit(jax.vmap(jax.value_and_grad(lambda v: fn(args, v))))
  lp, g = (np.asarray(a) for a in vg(jnp.asarray(y)))
  diff = fitted.log_prob(y) - lp
  assert np.ptp(diff) < 5e-3, diff                                # equal up to log Z
  # the gradient against central differences of the same function: ``log_prob`` equals it only
  # up to float32 noise (up to 7e-4 apart on brenier's default here, its differences at eps =
  # 1e-2 then up to 0.08 off, and worse at smaller eps), so differences of ``log_prob`` would test
  # that noise; ``fn`` evaluates its own conjugate, so they still see the map's dependence on y
  eps = 1e-2
  value = jax.jit(jax.vmap(lambda v: fn(args, v)))
  fd = np.stack([(np.asarray(value(jnp.asarray(y + eps * e))) - np.asarray(value(jnp.asarray(y - eps * e))))
                 / (2 * eps) for e in np.eye(2, dtype=np.float32)], 1)
  np.testing.assert_allclose(g, fd, rtol=3e-2, atol=3e-2)


@pytest.mark.slow
@pytest.mark.parametrize("name, hyper", CONVEX[:3])
def test_convex_conditional_matches_quadrature(name, hyper):
  _check_against_quadrature(_untrained(name, **hyper))


# -- fitted to a Gaussian: the exact conditional -----------------------------------------------------

G3_MEAN = np.array([0.5, -1.0, 2.0])
G3_COV = np.array([[1.0, 0.6, 0.3], [0.6, 1.5, -0.4], [0.3, -0.4, 0.8]])


def _quadrature_2d(fitted, row, n_grid=161, width=7.0):
  """Mean ``[2]`` and covariance ``[2, 2]`` of the two free coordinates of ``fitted``'s
  conditional given ``row[0]``, by quadrature of its log-density on a grid around the exact
  Gaussian conditional (``width`` standard deviations each side)."""
  m, c = _closed_form(G3_MEAN, G3_COV, np.nan_to_num(row), np.isfinite(row))
  axes = [np.linspace(mi - width * si, mi + width * si, n_grid) for mi, si in zip(m, np.sqrt(np.diag(c)))]
  grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
  ys = np.concatenate([np.full((len(grid), 1), row[0]), grid], 1).astype(np.float32)
  fn, args = fitted.log_density_fn()
  f = jax.jit(jax.vmap(lambda v: fn(args, v)))
  lp = np.concatenate([np.asarray(f(jnp.asarray(c))) for c in ys.reshape(n_grid, n_grid, 3)]).astype(np.float64)
  w = np.exp(lp - lp.max())
  w /= w.sum()
  mean = w @ grid
  return mean, (grid - mean).T @ ((grid - mean) * w[:, None])


@pytest.mark.slow
@pytest.mark.parametrize("name, steps", [("maflow", 300), ("cmm", 300)])
def test_fitted_gaussian_conditional(name, steps):
  """A model fitted to a correlated 3-D Gaussian completes (y0 observed one std above its mean)
  with the exact Gaussian conditional's mean and covariance.

  Tolerances: the completions against the model's own conditional (quadrature of its density):
  mean within 0.1 conditional std, covariance within 10% (Frobenius; the sampling error of 2000
  draws is about 2% and 3%). Against the exact conditional: 10% plus the model's own error there
  (the fit's error, measured by the same quadrature: 300 steps leave cmm's conditional covariance
  about 14% off, maflow's 2%).
  """
  data = np.random.default_rng(0).multivariate_normal(G3_MEAN, G3_COV, size=2048)
  fitted = cc.fit(name, data, steps=steps, seed=0)
  row = np.array([G3_MEAN[0] + 1.0, np.nan, np.nan])
  x = np.repeat(row[None], 2000, 0)
  out = fitted.inpaint(x, np.isfinite(x), seed=0)
  assert np.all(out[:, 0] == row[0])
  s_mean, s_cov = out[:, 1:].mean(0), np.cov(out[:, 1:].T)
  m, c = _closed_form(G3_MEAN, G3_COV, np.nan_to_num(row), np.isfinite(row))
  q_mean, q_cov = _quadrature_2d(fitted, row)
  std, size = np.sqrt(np.diag(c)), np.linalg.norm(c)
  # the chains against the model's own conditional
  assert np.all(np.abs(s_mean - q_mean) < 0.1 * std), (s_mean, q_mean)
  assert np.linalg.norm(s_cov - q_cov) < 0.1 * size, (s_cov, q_cov)
  # against the exact conditional, allowing for the fit's own error
  fit_mean, fit_cov = np.abs(q_mean - m) / std, np.linalg.norm(q_cov - c) / size
  assert np.all(np.abs(s_mean - m) < (0.1 + fit_mean) * std), (s_mean, m, fit_mean)
  assert np.linalg.norm(s_cov - c) < (0.1 + fit_cov) * size, (s_cov, c, fit_cov)
  assert fit_cov < 0.25 and np.all(fit_mean < 0.15)   # the fit itself is close to the truth
