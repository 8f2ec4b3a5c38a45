import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmm_core import potentials


def _quadratic(A, b):
  A = jnp.asarray(A, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  return lambda y: 0.5 * jnp.sum(y * (y @ A.T), -1) + y @ b


@pytest.mark.parametrize("solver,iters,kw", [
    ("newton", 3, {}), ("newton_cg", 3, {"cg_iters": 3}),
    pytest.param("lbfgs", 30, {}, marks=pytest.mark.slow)])
def test_conjugate_of_quadratic_is_exact(rng, solver, iters, kw):
  M = rng.standard_normal((3, 3))
  A = M @ M.T + 0.5 * np.eye(3)
  b = rng.standard_normal(3)
  x = rng.standard_normal((64, 3)).astype(np.float32)
  y, w_star, resid = potentials.conjugate_argmax(_quadratic(A, b), jnp.asarray(x), jnp.zeros_like(x),
                                                 max_iter=iters, solver=solver, **kw)
  y_exact = np.linalg.solve(A, (x - b).T).T
  w_star_exact = 0.5 * np.sum((x - b) * y_exact, -1)
  np.testing.assert_allclose(y, y_exact, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(w_star, w_star_exact, rtol=1e-3, atol=1e-3)
  assert float(resid.max()) < 1e-3


@pytest.fixture(scope="module")
def icnn():
  """An ICNN on 256 points (built once: building and the first calls compile), with ``w`` jitted."""
  data = np.random.default_rng(0).standard_normal((256, 2)).astype(np.float32) * 2
  pot, params = potentials.make_potential(data, np.zeros(2), np.eye(2) * 0.6, jax.random.PRNGKey(0),
                                          hidden=(16, 16), init_scale=1.0)
  return jax.jit(lambda x: pot.apply(params, x)), data


@pytest.mark.parametrize("d", [1, 3])
def test_initial_gradient_is_the_gaussian_guess(rng, d):
  data = rng.standard_normal((512, d)).astype(np.float32) * 1.5 + 2.0
  M = rng.standard_normal((d, d))
  B = M @ M.T / d + 0.5 * np.eye(d)
  a = rng.standard_normal(d)
  pot, params = potentials.make_potential(data, a, B, jax.random.PRNGKey(1), init_scale=1e-3)
  g = jax.jit(lambda x: potentials.batch_grad(lambda x: pot.apply(params, x), x))(jnp.asarray(data[:64]))
  np.testing.assert_allclose(g, (data[:64] - a) @ B.T, rtol=2e-2, atol=2e-2)


def test_icnn_potential_is_convex_and_batched(icnn):
  w, data = icnn
  x = jnp.asarray(data[:32])
  # batch evaluation equals per-point evaluation
  np.testing.assert_allclose(w(x)[:3], jnp.stack([w(xi) for xi in x[:3]]), rtol=1e-5, atol=1e-5)
  # Hessians are positive definite (the alpha floor) and match jax.hessian
  h = jax.jit(lambda x: potentials.batch_hessian(w, x))(x)
  h_ref = jax.jit(jax.vmap(jax.hessian(lambda xi: w(xi))))(x)
  np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-4)
  assert float(jnp.linalg.eigvalsh(h).min()) > 0


def test_batch_grad_matches_finite_differences(icnn):
  w, data = icnn
  x = jnp.asarray(data[:8])
  g = potentials.batch_grad(w, x)
  eps = 1e-2  # float32: central differences, error O(eps^2) ~ 1e-4 relative
  for j in range(2):
    e = jnp.zeros(2).at[j].set(eps)
    fd = (w(x + e) - w(x - e)) / (2 * eps)
    np.testing.assert_allclose(g[:, j], fd, rtol=5e-3, atol=5e-3)


def test_newton_conjugate_inverts_icnn_gradient(icnn):
  w, data = icnn
  y_true = jnp.asarray(data[:128])
  x = potentials.batch_grad(w, y_true)
  y, _, resid = jax.jit(lambda x: potentials.conjugate_argmax(w, x, x, max_iter=15))(x)
  np.testing.assert_allclose(y, y_true, atol=2e-3)
  assert float(resid.max()) < 5e-3  # float32, |grad| up to ~10


def test_newton_conjugate_crosses_a_nearly_flat_stretch():
  """A step from where ``w`` is nearly flat overshoots the wall beyond by far more than 1 / 0.03:
  the short step fractions still move such a row (it used to stay where it started)."""
  s = 0.05
  w = lambda y: jnp.sum(5e-4 * y ** 2 + 10 * s * jax.nn.softplus((y - 2) / s), -1)
  x = jnp.full((4, 2), 5.0)
  y, _, resid = potentials.conjugate_argmax(w, x, jnp.zeros_like(x), max_iter=12)
  np.testing.assert_allclose(y, 2.0, atol=1e-2)   # 1e-3 y + 10 sigmoid((y - 2) / s) = 5
  assert float(resid.max()) < 1e-3


def test_radial_conjugate_inverts_the_gradient_from_any_start(rng):
  """The radial solver (a bracketed Newton along x / |x|) against the gradient it inverts, from
  a warm start far off and from the origin."""
  pts = rng.normal(size=(256, 2)) * 2.0
  pot, v = potentials.make_potential(pts, np.zeros(2), np.eye(2) / 4.0, jax.random.PRNGKey(1),
                                     hidden=(16, 16), init_scale=2.0, radial=True)
  energy = potentials.PotentialEnergy(pot, v)
  y_true = jnp.asarray(pts[:128], jnp.float32)
  x = potentials.batch_grad(energy, y_true)
  for start in (jnp.zeros_like(x), -3.0 * y_true):
    y, _, resid = jax.jit(lambda x, y0: potentials.conjugate_argmax(energy, x, y0, max_iter=1))(
        x, start)
    np.testing.assert_allclose(y, y_true, atol=2e-3)
    assert float(resid.max()) < 1e-3


def test_unknown_solver_is_refused():
  with pytest.raises(ValueError, match="conjugate solver"):
    potentials.conjugate_argmax(lambda y: jnp.sum(y**2, -1), jnp.zeros((2, 2)), jnp.zeros((2, 2)),
                                solver="bogus")


# Builds and compiles Newton conjugates through a soft max of 64 pieces: minutes on two busy cores.
# Every default mm fit (pieces=256) also runs this code.
@pytest.mark.slow
def test_soft_max_affine_starts_at_the_guess_tangent_planes(rng):
  # the pieces are tangent planes of (1 - alpha) w0 at data points, so at init grad w is the
  # guess's gradient up to the width of a cell (a max of 64 planes in 2D is piecewise constant)
  data = rng.standard_normal((512, 2)).astype(np.float32) * 1.5 + 1.0
  a, B = np.full(2, 1.0), np.eye(2) / 1.5
  pot, params = potentials.make_potential(data, a, B, jax.random.PRNGKey(2), hidden=(8, 8),
                                          init_scale=1e-3, pieces=64)
  w = lambda x: pot.apply(params, x)
  assert pot.pieces == 64 and "soft_max_affine" in params["params"]
  g = np.asarray(potentials.batch_grad(w, jnp.asarray(data[:256])))
  guess = (data[:256] - a) @ B.T
  err = np.linalg.norm(g - guess, axis=1)
  assert np.median(err) < 0.35 * np.median(np.linalg.norm(guess, axis=1)), np.median(err)

  # convex everywhere, inside the data and beyond it (where the wall takes over)
  x = jnp.asarray(rng.standard_normal((64, 2)).astype(np.float32) * 4)
  assert float(jnp.linalg.eigvalsh(potentials.batch_hessian(w, x)).min()) > 0

  # Newton conjugates invert the gradient at the data ...
  y_true = jnp.asarray(data[:128])
  y, _, resid = potentials.conjugate_argmax(w, potentials.batch_grad(w, y_true), y_true + 0.3,
                                            max_iter=20)
  assert float(resid.max()) < 5e-3
  np.testing.assert_allclose(y, y_true, atol=5e-3)

  # ... and far out the wall brings back the guess's curvature, so grad w* stays near the data:
  # without it a soft max grows linearly and |grad w*(x)| ~ |x| / (alpha |B|) = 30 / (0.05 / 1.5)
  far = jnp.asarray(np.array([[30.0, 0.0], [0.0, -30.0], [-21.0, 21.0]], np.float32))
  y, _, resid = potentials.conjugate_argmax(w, far, jnp.zeros_like(far), max_iter=30)
  assert float(resid.max()) < 1e-2
  assert float(jnp.linalg.norm(y - a, axis=1).max()) < 3 * 30.0 * 1.5, y  # measured ~50, no wall ~900


def test_newton_cg_matches_newton_in_64d(rng):
  """The matrix-free solver (CG on Hessian-vector products, preconditioned by a guess of the inverse
  Hessian) reaches the dense Newton solution on a non-quadratic strongly convex energy in 64D."""
  d = 64
  M = rng.standard_normal((d, d))
  A = M @ M.T / d + 0.2 * np.eye(d)
  v = jnp.asarray(rng.standard_normal((8, d)), jnp.float32)
  quad = _quadratic(A, np.zeros(d))
  w = lambda y: quad(y) + jnp.sum(jax.nn.softplus(y @ v.T), -1)   # convex, Hessian A + V^T D V
  x = jnp.asarray(rng.standard_normal((32, d)), jnp.float32)
  dense = jax.jit(lambda x: potentials.conjugate_argmax(w, x, jnp.zeros_like(x), max_iter=8))
  cg = jax.jit(lambda x: potentials.conjugate_argmax(
      w, x, jnp.zeros_like(x), max_iter=12, solver="newton_cg", cg_iters=8,
      precond=jnp.asarray(np.linalg.inv(A), jnp.float32)))
  (y_dense, _, r_dense), (y_cg, _, r_cg) = dense(x), cg(x)
  # |x| ~ 8: residuals are relative ~1e-4, float32 rounding of the gradient's sum
  assert float(r_cg.max()) < 5e-3 and float(r_dense.max()) < 5e-3
  np.testing.assert_allclose(y_cg, y_dense, atol=5e-3)


def test_pcg_gradient_estimator_of_log_det(rng):
  """E_z[v^T dH z] with v = H^{-1} z (CG) is grad log det H: the Hutchinson route of cmm's
  likelihood above d = 16, against the exact gradient of a parametrised 5x5 Hessian."""
  d = 5
  M = rng.standard_normal((d, d))
  base = jnp.asarray(M @ M.T + np.eye(d), jnp.float32)
  H = lambda t: base + t[0] * jnp.diag(jnp.arange(1.0, d + 1)) + t[1] * jnp.ones((d, d))
  t0 = jnp.asarray([0.3, 0.2])
  exact = jax.grad(lambda t: jnp.linalg.slogdet(H(t))[1])(t0)
  z = jax.random.rademacher(jax.random.PRNGKey(0), (20000, d), dtype=jnp.float32)
  v = potentials.pcg(lambda p: p @ H(t0).T, z, d)
  est = jax.grad(lambda t: jnp.mean(jnp.sum(v * (z @ H(t).T), -1)))(t0)
  np.testing.assert_allclose(est, exact, rtol=0.05)


def test_an_even_potential_is_even_convex_and_keeps_its_start(rng):
  pts = rng.normal(size=(256, 3))
  pot, v = potentials.make_potential(pts, np.zeros(3), np.eye(3), jax.random.PRNGKey(1), hidden=(8, 8),
                                     pieces=16, even=True)
  assert pot.even
  x = jnp.asarray(pts[:64], jnp.float32)
  w = jax.jit(lambda y: pot.apply(v, y))
  grad = jax.jit(lambda y: potentials.batch_grad(lambda z: pot.apply(v, z), y))
  np.testing.assert_allclose(w(x), w(-x), rtol=1e-6, atol=1e-6)
  g = grad(x)
  np.testing.assert_allclose(grad(-x), -g, rtol=1e-5, atol=1e-5)  # an odd map
  # convex along random segments: w at the midpoint at most the mean of the ends
  y = jnp.asarray(rng.normal(size=(64, 3)), jnp.float32)
  assert np.all(np.asarray(w(0.5 * (x + y))) <= 0.5 * np.asarray(w(x) + w(y)) + 1e-5)
  # the start is still near the Gaussian guess grad w = x
  assert float(jnp.sqrt(jnp.mean((g - x) ** 2))) <= 0.5 * float(jnp.sqrt(jnp.mean(x ** 2)))


def test_a_radial_potential_is_rotation_invariant_convex_and_keeps_its_start(rng):
  pts = rng.normal(size=(256, 2)) * 2.0
  pot, v = potentials.make_potential(pts, np.zeros(2), np.eye(2) / 4.0, jax.random.PRNGKey(1),
                                     hidden=(8, 8), pieces=16, radial=True)
  assert pot.radial and pot.dim == 2
  turn = np.array([[np.cos(0.9), -np.sin(0.9)], [np.sin(0.9), np.cos(0.9)]])
  x, y = pts[:64], rng.normal(size=(64, 2)) * 2.0
  # every point set in one compiled call: x, x turned, y, the midpoints, the origin
  points = jnp.asarray(np.concatenate([x, x @ turn.T, y, 0.5 * (x + y), np.zeros((1, 2))]), jnp.float32)
  w_fn = lambda z: pot.apply(v, z)
  w, g, hess = jax.jit(lambda z: (w_fn(z), potentials.batch_grad(w_fn, z),
                                  potentials.batch_hessian(w_fn, z[-1:])))(points)
  w, g = np.asarray(w), np.asarray(g)
  np.testing.assert_allclose(w[64:128], w[:64], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(g[64:128], g[:64] @ turn.T, rtol=1e-4, atol=1e-4)  # commutes
  assert np.all(w[192:256] <= 0.5 * (w[:64] + w[128:192]) + 1e-5)   # convex along the segments
  # the start is near the isotropic guess grad w = x / 4, and finite at the origin
  assert np.sqrt(np.mean((g[:64] - x / 4) ** 2)) <= 0.5 * np.sqrt(np.mean((x / 4) ** 2))
  assert np.all(np.isfinite(np.asarray(hess))) and np.all(np.linalg.eigvalsh(np.asarray(hess)) > 0)


def test_regions_far_apart_follows_the_joint_spread():
  rng = np.random.default_rng(3)
  z = rng.standard_normal((400, 2))
  assert not potentials.regions_far_apart(z, z * 1.5 + 0.5)
  # a second region 100 of its own spreads away, or one 100x narrower in one coordinate
  assert potentials.regions_far_apart(z, z + np.array([0.0, 100.0]))
  assert potentials.regions_far_apart(z, z * np.array([1.0, 0.01]) + np.array([0.0, 5.0]))


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: 11 s
def test_axis_hinges_start_at_the_guess_and_stay_convex(rng):
  # two regions far apart in mixed units (cmm's data and its base on a table in grams and mm):
  # the separable part along the guess's axes carries the guess, hinges in both regions
  scale = np.array([2.0, 800.0])
  data = rng.standard_normal((512, 2)) * scale + np.array([17.0, 4200.0])
  base = rng.standard_normal((512, 2)) * scale ** (1 / 3) + np.array([6.0, 48.0])
  B = np.diag(scale ** (-2 / 3))
  a = np.array([6.0, 48.0])
  # init_scale tiny: the ICNN's random part out of the way, the separable part alone must be the guess
  pot, params = potentials.make_potential(data, a, B, jax.random.PRNGKey(4), hidden=(8, 8),
                                          pieces=64, extra_points=base, init_scale=1e-5)
  assert pot.axis_hinges == potentials.AXIS_HINGES and pot.pieces == 0
  assert params["params"]["axis_hinges"].shape == (2, potentials.AXIS_HINGES)
  w = jax.jit(lambda x: pot.apply(params, x))
  grad = jax.jit(lambda x: potentials.batch_grad(w, x))
  for pts in (data, base):  # grad w starts at B (x - a) in both regions, within 5% of its spread
    x = jnp.asarray(pts[:256], jnp.float32)
    guess = (pts[:256] - a) @ B.T
    err = np.sqrt(np.mean((np.asarray(grad(x)) - guess) ** 2, 0))
    assert np.all(err < 0.05 * guess.std(0)), (err, guess.std(0))
  # the hinges only add curvature: convex everywhere, also with trained (large) hinge weights
  bumped = {**params, "params": {**params["params"],
                                 "axis_hinges": params["params"]["axis_hinges"] + 5.0}}
  hessian = jax.jit(lambda p, y: potentials.batch_hessian(lambda z: pot.apply(p, z), y))
  for p in (params, bumped):
    x = jnp.asarray(np.concatenate([data[:32], base[:32]]), jnp.float32)
    assert float(jnp.linalg.eigvalsh(hessian(p, x)).min()) > 0
  # points that overlap keep the soft max of pieces and no hinges
  pot2, _ = potentials.make_potential(data, a, B, jax.random.PRNGKey(4), hidden=(8, 8), pieces=64,
                                      extra_points=data + 1.0)
  assert pot2.axis_hinges == 0 and pot2.pieces == 64


@pytest.mark.slow  # 10 s; the hinges' start and convexity stay in the default suite
def test_axis_hinges_do_not_depend_on_the_sign_of_an_axis(rng):
  # an eigenvector's sign is arbitrary: with hinges bending one way only, penguins' bill depth next
  # to body mass fitted when eigh returned +q for the mass axis (ED 0.18 of a Gaussian's) and not with
  # -q (0.80). With both families the potential for -q with the families swapped is the same function.
  scale = np.array([2.0, 800.0])
  data = rng.standard_normal((256, 2)) * scale + np.array([17.0, 4200.0])
  base = rng.standard_normal((256, 2)) * scale ** (1 / 3) + np.array([6.0, 48.0])
  pot, params = potentials.make_potential(data, np.array([6.0, 48.0]), np.diag(scale ** (-2 / 3)),
                                          jax.random.PRNGKey(4), hidden=(8, 8), extra_points=base)
  p, c = params["params"], params["consts"]
  p = {**p, "axis_hinges": p["axis_hinges"] + jnp.asarray(rng.normal(size=(2, 16)), jnp.float32),
       "axis_hinges_falling": p["axis_hinges_falling"] + jnp.asarray(rng.normal(size=(2, 16)),
                                                                     jnp.float32)}
  # flip both axes: u_k -> -u_k, knots, centre and gap with it, rising <-> falling
  flip = jnp.asarray([-1.0, -1.0])
  flipped_p = {**p, "axis_hinges": p["axis_hinges_falling"], "axis_hinges_falling": p["axis_hinges"]}
  flipped_c = {**c, "axes": c["axes"] * flip, "hinge_t": c["hinge_t"] * flip[:, None],
               "axis_center": c["axis_center"] * flip,
               **{name: c[name] * flip for name in ("gap_sign", "gap_data_center", "gap_slope")}}
  x = jnp.asarray(np.concatenate([data[:64], base[:64]]), jnp.float32)
  w = pot.apply({"params": p, "consts": c}, x)
  w_flipped = pot.apply({"params": flipped_p, "consts": flipped_c}, x)
  np.testing.assert_allclose(np.asarray(w_flipped), np.asarray(w), rtol=1e-5)
  assert float(c["gap_on"].max()) == 1.0  # the mass axis has a gap: the flip covers it
  # a file saved with the rising family only still loads and evaluates
  old = {k: v for k, v in p.items() if k != "axis_hinges_falling"}
  assert np.all(np.isfinite(np.asarray(pot.apply({"params": old, "consts": c}, x))))
  # ... and one saved before the gap: one quadratic per axis, 1/2 gamma beta du^2
  older = {k: v for k, v in old.items() if k != "axis_quadratic_data"}
  older_c = {k: v for k, v in c.items() if not k.startswith("gap_")}
  gap_off = {**c, "gap_on": jnp.zeros_like(c["gap_on"])}
  np.testing.assert_allclose(np.asarray(pot.apply({"params": older, "consts": older_c}, x)),
                             np.asarray(pot.apply({"params": old, "consts": gap_off}, x)), rtol=1e-6)


def test_the_gap_keeps_each_region_where_it_is(rng):
  # a table far from its base (the synthetic table shifted by 1e4): the translation between the
  # regions is carried by a ramp across the gap, so the curvature in one region can change (the
  # data's clusters) without moving the other: grad w at the base's centre and at the data's
  # centre do not depend on the two curvatures gamma, gamma'
  data = rng.standard_normal((512, 2)) * np.array([1.0, 0.6]) + 1e4
  B = np.diag([0.7, 1.8])
  a = np.array([3600.0, 3600.0])
  base = rng.standard_normal((512, 2)) / np.sqrt(np.diag(B)) + a
  pot, params = potentials.make_potential(data, a, B, jax.random.PRNGKey(2), hidden=(8, 8),
                                          extra_points=base, init_scale=1e-5)
  assert pot.axis_hinges and float(params["consts"]["gap_on"].min()) == 1.0
  grad = jax.jit(lambda p, x: potentials.batch_grad(lambda z: pot.apply(p, z), x))
  at = jnp.asarray(np.stack([a, data.mean(0), data[0], base[0]]), jnp.float32)
  g0 = np.asarray(grad(params, at))
  np.testing.assert_allclose(g0[:2], (np.stack([a, data.mean(0)]) - a) @ B.T, atol=0.05)
  p = params["params"]
  moved = {**params, "params": {**p, "axis_quadratic": p["axis_quadratic"] + jnp.asarray([1.0, -2.0]),
                                "axis_quadratic_data": p["axis_quadratic_data"] - 3.0}}
  g1 = np.asarray(grad(moved, at))
  np.testing.assert_allclose(g1[:2], g0[:2], atol=1e-3 * np.abs(g0[1]).max())
  assert np.abs(g1[2:] - g0[2:]).max() > 0.1  # elsewhere the curvatures do move grad w
  # convex everywhere, the gap included, with any curvatures
  hessian = jax.jit(lambda p, y: potentials.batch_hessian(lambda z: pot.apply(p, z), y))
  line = a + np.linspace(-0.2, 1.2, 64)[:, None] * (data.mean(0) - a)
  for q in (params, moved):
    y = jnp.asarray(np.concatenate([data[:32], base[:32], line]), jnp.float32)
    assert float(jnp.linalg.eigvalsh(hessian(q, y)).min()) > 0
