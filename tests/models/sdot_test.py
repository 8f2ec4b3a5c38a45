"""sdot against its oracles: ott-jax's entropic OT dual and finite differences of the OT cost."""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ott.geometry import pointcloud, semidiscrete_pointcloud
from ott.problems.linear import linear_problem, semidiscrete_linear_problem
from ott.solvers.linear import semidiscrete, sinkhorn

import cmm_core as cc
from cmm_core import schedules
from cmm_core.models import sdot

SMALL = dict(hidden=(32, 32), batch_size=128)


def _clouds(n=300, m=150, seed=0):
  """A frozen generator's samples ``x`` [n, 2] and data ``y`` [m, 2], normalised units."""
  rng = np.random.default_rng(seed)
  x = 0.5 * rng.standard_normal((n, 2))
  y = np.concatenate([rng.normal([-0.6, 0.2], 0.2, (m // 2, 2)),
                      rng.normal([0.6, -0.2], 0.3, (m - m // 2, 2))])
  return x.astype(np.float32), y.astype(np.float32)


@jax.jit
def _sinkhorn_jit(x, y, eps):
  geom = pointcloud.PointCloud(x, y, epsilon=eps)
  out = sinkhorn.Sinkhorn(threshold=1e-6, max_iterations=20_000)(linear_problem.LinearProblem(geom))
  return out.reg_ot_cost, out.g, out.converged


def _sinkhorn(x, y, eps):
  """Exact entropic OT from x [n, 2] to y [m, 2] (uniform weights): (cost, g [m])."""
  cost, g, converged = _sinkhorn_jit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), eps)
  assert bool(converged)
  return float(cost), g


def _check_dual(eps, steps, with_semidiscrete_solver):
  x, y = _clouds()
  psi = sdot.fit_dual(x, y, eps, steps=steps, batch_size=256, learning_rate=0.01, seed=0)
  ours = float(sdot.semidual_objective(psi, x, y, eps))
  # the exact dual of the discrete problem (ott-jax Sinkhorn): its g is the optimal psi
  cost, g = _sinkhorn(x, y, eps)
  best = float(sdot.semidual_objective(g, x, y, eps))
  np.testing.assert_allclose(best, cost, rtol=1e-3)
  refs = [best]
  if with_semidiscrete_solver:  # ott-jax's semi-discrete solver on the same problem
    xs = jnp.asarray(x)
    sampler = lambda k, shape, dtype=None: xs[jax.random.randint(k, (shape[0],), 0, xs.shape[0])]
    prob = semidiscrete_linear_problem.SemidiscreteLinearProblem(
        semidiscrete_pointcloud.SemidiscretePointCloud(sampler, jnp.asarray(y), epsilon=eps))
    solver = semidiscrete.SemidiscreteSolver(num_iterations=steps, batch_size=256,
                                             optimizer=optax.adam(0.01), threshold=1e-8)
    refs.append(float(sdot.semidual_objective(solver(jax.random.PRNGKey(1), prob).g, x, y, eps)))
  for ref in refs:
    assert abs(ours - ref) <= 1e-2 * abs(ref), (ours, refs)
  assert ours <= best + 1e-4 * abs(best)  # the dual optimum is a maximum


def test_frozen_generator_dual_reaches_ott_optimum():
  _check_dual(0.05, 1500, with_semidiscrete_solver=False)


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_frozen_generator_dual_reaches_ott_optimum_slow(eps):
  _check_dual(eps, 4000, with_semidiscrete_solver=True)


def test_generator_gradient_matches_finite_differences():
  eps = 0.05
  _, y = _clouds(m=150, seed=1)
  net = sdot.Generator(dim=2, hidden=(16,), activation="tanh")
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
  z = sdot.sample_latent(jax.random.PRNGKey(1), 200, 2, "uniform")
  flat, unravel = jax.flatten_util.ravel_pytree(params)

  def ot_cost(theta):  # the regularised OT cost from g_theta(z) to y (exact, Sinkhorn)
    return _sinkhorn(net.apply(unravel(theta), z), y, eps)[0]

  psi = _sinkhorn(net.apply(params, z), y, eps)[1]
  grad = jax.jit(jax.grad(lambda p: sdot.generator_loss(net.apply, p, z, psi, jnp.asarray(y), eps)[0]))(params)
  g_flat = jax.flatten_util.ravel_pytree(grad)[0]
  rng = np.random.default_rng(0)
  for _ in range(2):
    v = jnp.asarray(rng.standard_normal(flat.shape[0]), jnp.float32)
    v = v / jnp.linalg.norm(v)
    h = 3e-2
    fd = (ot_cost(flat + h * v) - ot_cost(flat - h * v)) / (2 * h)
    np.testing.assert_allclose(float(g_flat @ v), fd, rtol=0.1, atol=1e-3)


@pytest.fixture(scope="module")
def small_run():
  """``(data, fitted, first)``: the small fit (the defaults' Fourier generator and cosine learning
  rate decay) and the fit as its callback saw it after the first chunk of 100 steps."""
  data = cc.targets.make("eight_gaussians", n=1024, seed=0)
  seen = []
  fitted = cc.fit("sdot", data, steps=300, seed=0, chunk_size=100, **SMALL,
                  callback=lambda step, record, fitted: seen.append((step, fitted)))
  return data, fitted, seen[0]


@pytest.fixture(scope="module")
def small_fit(small_run):
  return small_run[:2]


def test_small_fit_protocol(small_fit):
  data, fitted = small_fit
  assert fitted.info["status"] == "done" and fitted.history[-1]["step"] == 300
  for rec in fitted.history:
    assert {"step", "loss", "seconds", "psi_grad_norm", "energy_distance"} <= set(rec)
    assert np.isfinite(rec["loss"])
  assert fitted.history[-1]["loss"] < fitted.history[0]["loss"]
  z = fitted.sample_base(500, seed=1)
  assert z.shape == (500, 2) and np.all(np.abs(z) <= 1)
  np.testing.assert_allclose(fitted.base_log_density(z), -2 * np.log(2.0), rtol=1e-6)
  assert np.isneginf(fitted.base_log_density(np.array([[2.0, 0.0]]))[0])
  s = fitted.sample(500, seed=1)
  np.testing.assert_allclose(s, fitted.transport(z), rtol=1e-5, atol=1e-5)
  assert fitted.psi().shape == (1024,) and np.all(np.isfinite(fitted.psi()))
  np.testing.assert_array_equal(fitted.data(), data)
  with pytest.raises(NotImplementedError):
    fitted.log_prob(s)
  # a short fit already spreads over the modes: far better than a Gaussian with the same moments
  fresh = cc.targets.make("eight_gaussians", n=1000, seed=1)
  gauss = cc.targets.gaussian(data.mean(0), np.cov(data.T), n=1000, seed=2)
  ed = cc.metrics.energy_distance(fitted.sample(1000, seed=3), fresh)
  assert ed < 0.5 * cc.metrics.energy_distance(gauss, fresh), ed


def test_laguerre_cells(small_fit):
  data, fitted = small_fit
  y, psi = fitted.data(), fitted.psi()
  x = fitted.sample(300, seed=4)
  out = fitted.laguerre(x, chunk=128)
  s = fitted.extras["scale"]  # [d]: one scale per column (equal ones here)
  cost = np.sum(((x[:, None] - y[None]) / s) ** 2, -1)
  np.testing.assert_array_equal(out["cell"], np.argmax(psi[None] - cost, 1))
  assert np.all((out["max_prob"] > 0) & (out["max_prob"] <= 1 + 1e-6))
  assert np.all(out["entropy"] >= -1e-5)


def test_save_load_round_trip(small_fit, tmp_path):
  _, fitted = small_fit
  path = tmp_path / "sdot.model"
  fitted.save(path)
  back = cc.load(path)
  assert type(back) is type(fitted) and back.model == "sdot"
  np.testing.assert_allclose(back.sample(256, seed=7), fitted.sample(256, seed=7), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(back.psi(), fitted.psi())
  np.testing.assert_array_equal(back.data(), fitted.data())
  x = fitted.sample(50, seed=8)
  np.testing.assert_array_equal(back.laguerre(x)["cell"], fitted.laguerre(x)["cell"])


def _untrained(data, **hyper):
  """An sdot model of ``data`` ``[n, 2]`` from init + finalize only: no training step compiles."""
  m = sdot.SDOT(**hyper)
  prepared, info = m.prepare(data)
  static, state = m.init(jax.random.PRNGKey(0), jnp.asarray(prepared))
  return m.finalize(static, state, [], {"dim": 2, "n_data": prepared.shape[0], **info})


def test_latent_options_and_subsampling():
  data = cc.targets.make("two_moons", n=600, seed=0)
  fitted = _untrained(data, latent_dim=1, latent="normal", max_data=400, epsilon=0.0, **SMALL)
  assert fitted.latent_dim == 1 and fitted.dim == 2
  z = fitted.sample_base(64, seed=0)
  assert z.shape == (64, 1)
  assert fitted.transport(z).shape == (64, 2)
  np.testing.assert_allclose(fitted.base_log_density(np.zeros((1, 1))), -0.5 * np.log(2 * np.pi), rtol=1e-6)
  assert fitted.psi().shape == (400,) and fitted.data().shape == (400, 2)
  assert any("max_data" in w for w in fitted.info["warnings"])
  with pytest.raises(ValueError, match="z"):
    fitted.transport(np.zeros((3, 2)))


def test_epsilon_sweep_runs():
  data = cc.targets.make("eight_gaussians", n=300, seed=0)
  seen = []
  out = sdot.epsilon_sweep(data, epsilons=(0.05,), steps=20, n_eval=200,
                           callback=lambda i, r: seen.append(i), **SMALL)
  assert [r["epsilon"] for r in out] == [0.05] and seen == [0]
  for r in out:
    assert np.isfinite(r["energy_distance"]) and r["samples"].shape == (200, 2)
    assert len(r["loss"]) == len(r["steps"]) >= 1


def test_bad_hyper_parameters_are_refused():
  data = cc.targets.make("eight_gaussians", n=256, seed=0)
  bad = [("epsilon", -0.1), ("epsilon", float("nan")), ("latent_dim", 0), ("latent_dim", 1.5),
         ("latent", "cauchy"), ("hidden", (0,)), ("hidden", "64"), ("activation", "sine"),
         ("learning_rate", 0.0), ("lr_decay", -0.1), ("lr_decay", 1.5), ("psi_learning_rate", -1.0),
         ("psi_optimizer", "lbfgs"),
         ("psi_steps", 0), ("psi_average", 1.0), ("batch_size", 4), ("max_data", 10),
         ("fourier", -1), ("fourier", 2.5), ("fourier_scale", 0.0), ("generator_steps", 0),
         ("generator_steps", 1.5), ("linear_init", "zeros")]
  for name, value in bad:
    with pytest.raises(ValueError, match=name):
      cc.fit("sdot", data, steps=5, **{name: value})
  with pytest.raises(ValueError, match="unknown hyper-parameter"):
    cc.fit("sdot", data, steps=5, lam=0.1)


@pytest.mark.parametrize("latent, k", [("normal", 5), ("uniform", 5), ("normal", 3), ("uniform", 7)])
def test_pca_linear_part_starts_at_the_fitted_gaussian(latent, k):
  # the untrained Fourier generator pushes the latent to the data's covariance on its top k axes
  rng = np.random.default_rng(0)
  a = rng.normal(size=(5, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])
  y = rng.normal(size=(4000, 5)) @ a.T
  net = sdot.Generator(dim=5, hidden=(8,), fourier=4)
  params = sdot._pca_linear_part(net.init(jax.random.PRNGKey(0), jnp.zeros((1, k))), y, k, latent, 1)
  z = sdot.sample_latent(jax.random.PRNGKey(1), 200_000, k, latent)
  cov_g = np.cov(np.asarray(net.apply(params, z)).T)
  lam, vecs = np.linalg.eigh(np.cov(y.T, bias=True))
  top = vecs[:, -min(k, 5):]
  want = top @ np.diag(lam[-min(k, 5):]) @ top.T
  np.testing.assert_allclose(cov_g, want, atol=0.02 * lam.max())


@pytest.mark.slow  # 10 s in 64-D
def test_linear_init_auto_uses_the_principal_axes_above_16_dimensions():
  rng = np.random.default_rng(0)
  for d, fourier, expected in ((16, 64, "random"), (17, 64, "pca"), (17, 0, "random")):
    static, _ = cc.models.get("sdot")(fourier=fourier).init(jax.random.PRNGKey(0), rng.normal(size=(128, d)))
    assert static.get("linear_init") == expected, (d, fourier)
  # the fitted config says what ran (one fit: each dimension compiles its own step)
  f = cc.fit("sdot", rng.normal(size=(128, 17)), steps=1, seed=0, batch_size=16)
  assert f.config["linear_init"] == f.info["auto"]["linear_init"] == "pca"


def test_fourier_generator_starts_linear_and_keeps_its_frequencies(small_run, tmp_path):
  net = sdot.Generator(dim=2, hidden=(16, 16), fourier=8, fourier_scale=1.0)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
  a, b, c = (jax.random.uniform(jax.random.PRNGKey(i), (5, 3), minval=-1, maxval=1) for i in (1, 2, 3))
  # at init the Fourier branch's head is zero: g is affine in z
  np.testing.assert_allclose(net.apply(params, a) + net.apply(params, b),
                             net.apply(params, c) + net.apply(params, a + b - c), atol=1e-5)
  # the frequencies get no gradient (fixed random features); everything else does
  grads = jax.grad(lambda p: jnp.sum(net.apply(p, a) ** 2))(
      jax.tree_util.tree_map(lambda x: x + 0.1, params))
  assert float(jnp.max(jnp.abs(grads["params"]["fourier_b"]))) == 0.0
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree_util.tree_leaves(
      {k: v for k, v in grads["params"].items() if k != "fourier_b"}))
  # a fit (the small one: the defaults' Fourier generator) keeps the frequencies drawn at init,
  # moves the rest, and saves / loads them
  _, fitted, (step, first) = small_run
  assert step == 100 and fitted.config["fourier"] == sdot.SDOT.defaults["fourier"] > 0
  np.testing.assert_array_equal(first.params["params"]["fourier_b"], fitted.params["params"]["fourier_b"])
  assert not np.allclose(first.sample(32, seed=1), fitted.sample(32, seed=1))
  fitted.save(tmp_path / "f.model")
  np.testing.assert_allclose(cc.load(tmp_path / "f.model").sample(32, seed=1), fitted.sample(32, seed=1),
                             rtol=1e-6, atol=1e-6)


def test_lr_decay_schedule(small_fit):
  # 1 keeps the learning rate constant; < 1 is a cosine from lr to lr_decay * lr
  # over every generator step of the fit (the schedule itself: tests/schedules_test.py)
  data = jnp.asarray(cc.targets.make("two_moons", n=128, seed=0), jnp.float32)
  model = sdot.SDOT(lr_decay=0.01, generator_steps=2)
  static, state = model.init(jax.random.PRNGKey(0), data, total_steps=500)
  horizons = lambda s: [h.horizon for h in jax.tree_util.tree_leaves(
      s.opt_state, is_leaf=lambda h: isinstance(h, schedules.HorizonState))
      if isinstance(h, schedules.HorizonState)]
  assert horizons(state) == [1000]
  assert horizons(model.set_horizon(static, state, 300)) == [600]  # a time budget's plan
  constant = sdot.SDOT(lr_decay=1.0)
  assert horizons(constant.init(jax.random.PRNGKey(0), data, total_steps=500)[1]) == []
  # the small fit trained with the default decay (its protocol test checks the fit itself)
  assert small_fit[1].config["lr_decay"] == sdot.SDOT.defaults["lr_decay"] < 1.0


def test_model_saved_without_lr_decay_loads(small_fit, tmp_path):
  # files written before lr_decay existed have no such key in their config
  _, fitted = small_fit
  old = dataclasses.replace(fitted, config={k: v for k, v in fitted.config.items() if k != "lr_decay"})
  path = tmp_path / "old.model"
  old.save(path)
  back = cc.load(path)
  assert "lr_decay" not in back.config
  np.testing.assert_allclose(back.sample(64, seed=2), fitted.sample(64, seed=2), rtol=1e-6, atol=1e-6)
  m = sdot.SDOT(**back.config)  # refitting from the saved settings gets the default
  assert m.config["lr_decay"] == sdot.SDOT.defaults["lr_decay"]


def test_model_saved_before_fourier_features_loads(tmp_path):
  # files written before the Fourier generator have a plain MLP and no fourier keys anywhere
  data = cc.targets.make("two_moons", n=256, seed=0)
  fitted = _untrained(data, fourier=0, **SMALL)  # loading needs a model, not a trained one
  assert "fourier_b" not in fitted.params["params"]
  drop = ("fourier", "fourier_scale")
  old = dataclasses.replace(fitted, config={k: v for k, v in fitted.config.items() if k not in drop},
                            extras={k: v for k, v in fitted.extras.items() if k not in drop})
  old.save(tmp_path / "old.model")
  back = cc.load(tmp_path / "old.model")
  np.testing.assert_allclose(back.sample(64, seed=2), fitted.sample(64, seed=2), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_same_seed_same_fit():
  data = cc.targets.make("two_moons", n=300, seed=0)
  a, b = (cc.fit("sdot", data, steps=20, seed=0, **SMALL) for _ in range(2))
  np.testing.assert_array_equal(a.sample(32, seed=1), b.sample(32, seed=1))
  np.testing.assert_array_equal(a.psi(), b.psi())


@pytest.mark.slow
def test_epsilon_sweep_two_epsilons():
  data = cc.targets.make("eight_gaussians", n=300, seed=0)
  out = sdot.epsilon_sweep(data, epsilons=(0.0, 0.1), steps=20, n_eval=200, **SMALL)
  assert [r["epsilon"] for r in out] == [0.0, 0.1]
  assert all(np.isfinite(r["energy_distance"]) for r in out)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["eight_gaussians", "two_moons"])
def test_default_fit_reaches_the_floor(target):
  data = cc.targets.make(target, n=4096, seed=0)
  fitted = cc.fit("sdot", data, seed=0)
  fresh = cc.targets.make(target, n=2000, seed=1)
  floor = cc.metrics.energy_distance(cc.targets.make(target, n=2000, seed=2), fresh)
  ed = cc.metrics.energy_distance(fitted.sample(2000, seed=3), fresh)
  assert ed <= 3 * floor, (ed, floor)
