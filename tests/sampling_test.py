import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmm_core import sampling


def test_mala_samples_an_anisotropic_gaussian(rng):
  cov = np.array([[2.0, 0.8], [0.8, 0.5]])
  mean = np.array([1.0, -2.0])
  prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
  energy = lambda x: 0.5 * jnp.sum((x - mean) * ((x - mean) @ prec), -1)
  x = jnp.zeros((4000, 2), jnp.float32)

  @jax.jit
  def run(x, h, key):
    def body(carry, k):
      x, h = carry
      x, acc = sampling.mala(energy, x, h, k, 5)
      return (x, sampling.adapt_step_size(h, acc, rate=0.3)), acc
    (x, h), accs = jax.lax.scan(body, (x, h), jax.random.split(key, 60))
    return x, accs[-1]

  x, acc = run(x, jnp.float32(0.1), jax.random.PRNGKey(0))
  assert 0.4 < float(acc) < 0.75
  # 4000 chains: standard errors ~ 0.02 for the mean, ~ 0.05 for the covariance
  np.testing.assert_allclose(np.mean(x, 0), mean, atol=0.1)
  np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=0.15)


def test_mala_rejects_nan_proposals():
  energy = lambda x: jnp.where(x[:, 0] > 1.0, jnp.nan, 0.5 * jnp.sum(x**2, -1))
  x = jnp.zeros((500, 2), jnp.float32)
  x, _ = sampling.mala(energy, x, jnp.float32(0.5), jax.random.PRNGKey(1), 20)
  assert np.all(np.isfinite(np.asarray(x)))
  assert float(np.max(np.asarray(x)[:, 0])) <= 1.0


def test_importance_weights_and_their_effective_sample_size():
  log_w = np.log(np.array([1.0, 2.0, 3.0, 4.0] * 16))
  v, ess = sampling.importance_weights(log_w)
  np.testing.assert_allclose(v, np.exp(log_w) / np.exp(log_w).sum(), rtol=1e-5)
  assert float(ess) == pytest.approx(np.exp(log_w).sum() ** 2 / (64 * np.sum(np.exp(2 * log_w))), rel=1e-5)
  assert float(sampling.importance_weights(np.zeros(64))[1]) == pytest.approx(1.0)   # equal weights
  one = np.zeros(64)
  one[5] = 30.0                                                  # one sample carries the batch
  assert float(sampling.importance_weights(one)[1]) == pytest.approx(1 / 64, rel=1e-3)
