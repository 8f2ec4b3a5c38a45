"""cmm_core.energies: the Energy type, the built-ins and their exact log Z, the Ising oracles."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmm_core import energies as en

TWO_D = [n for n in en.names() if en.make(n).dim == 2]


def test_names_lists_the_builtins():
  assert set(en.names()) == {"ring", "rings", "wave", "two_gaussians", "banana", "double_well",
                             "gaussian", "ising", "phi4"}
  assert set(TWO_D) == {"ring", "rings", "wave", "two_gaussians", "banana", "double_well", "gaussian"}


@pytest.mark.parametrize("name", en.names())
def test_builtin_is_finite_with_finite_gradients(name, rng):
  e = en.make(name)
  x = rng.standard_normal((16, e.dim)).astype(np.float32)
  x[0] = 0  # the norm-based energies at the origin
  E = e(x)
  assert E.shape == (16,) and bool(jnp.all(jnp.isfinite(E)))
  g = jax.jit(jax.grad(lambda y: jnp.sum(e(y))))(jnp.asarray(x))
  assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))
  assert e.name == name and isinstance(e.params, dict)
  assert e(x[3]).shape == () and np.isclose(float(e(x[3])), float(E[3]))


@pytest.mark.parametrize("name", TWO_D)
def test_exact_log_z_matches_quadrature(name):
  """Each 2D built-in's log Z (closed form, or 1D quadrature for double_well) against the 2D grid."""
  e = en.make(name)
  assert e.log_z is not None and e.box is not None
  assert abs(en.grid_log_z(e, n_grid=512) - e.log_z) < 1e-3


def test_gaussian_log_z_closed_form_against_quadrature():
  mean, cov = (0.7, -1.2), ((2.0, 0.9), (0.9, 0.8))
  e = en.make("gaussian", mean=mean, cov=cov)
  expected = math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(np.array(cov)))
  assert abs(e.log_z - expected) < 1e-12
  assert abs(en.grid_log_z(e, n_grid=400) - e.log_z) < 1e-3
  e1 = en.make("gaussian", mean=[3.0], cov=[[0.25]])  # 1D quadrature too
  assert abs(en.grid_log_z(e1, n_grid=256) - 0.5 * math.log(2 * math.pi * 0.25)) < 1e-3
  x = np.random.default_rng(1).standard_normal((8, 2))
  ref = -0.5 * np.einsum("ni,ij,nj->n", x - mean, np.linalg.inv(cov), x - mean) - e.log_z
  np.testing.assert_allclose(e.log_prob(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TWO_D)
def test_box_holds_essentially_all_the_mass(name):
  e = en.make(name)
  (a, b), (c, d) = e.box
  t = np.linspace(0, 1, 2001)
  edge = np.concatenate([np.stack([a + (b - a) * t, np.full_like(t, c)], 1),
                         np.stack([a + (b - a) * t, np.full_like(t, d)], 1),
                         np.stack([np.full_like(t, a), c + (d - c) * t], 1),
                         np.stack([np.full_like(t, b), c + (d - c) * t], 1)])
  pts, neg_e, _ = en._grid(e, 256, None, "test")
  e_min = -neg_e.max()
  assert float(jnp.exp(-(e(edge).min() - e_min))) < 1e-5  # the density at the edge, relative to the peak
  wide = tuple((lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)) for lo, hi in e.box)
  assert abs(en.grid_log_z(e, 512, box=wide) - e.log_z) < 1e-3  # no mass missed outside the box


def test_builtin_formulas_of_the_reference():
  x = np.random.default_rng(2).standard_normal((32, 2)) * 2
  r = np.linalg.norm(x, axis=1)
  np.testing.assert_allclose(en.make("ring")(x), (r - 2) ** 2 / 0.32, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(en.make("rings")(x), np.min((r[:, None] - np.arange(1, 6)) ** 2, 1) / 0.04,
                             rtol=1e-5, atol=1e-5)
  wave = 0.5 * ((x[:, 1] - np.sin(np.pi * x[:, 0] / 2)) / 0.4) ** 2 + x[:, 0] ** 2 / 8
  np.testing.assert_allclose(en.make("wave")(x), wave, rtol=1e-5, atol=1e-5)
  m = np.array([0.8, 0.8])
  mix = 0.5 * (np.exp(-np.sum((x - m) ** 2, 1) / 0.5) + np.exp(-np.sum((x + m) ** 2, 1) / 0.5)) / (2 * np.pi * 0.25)
  np.testing.assert_allclose(en.make("two_gaussians")(x), -np.log(mix), rtol=1e-5, atol=1e-5)
  g = en.make("gaussian")  # the reference: E = x1^2 + x2^2 + x1 x2 / 2
  np.testing.assert_allclose(g(x), x[:, 0] ** 2 + x[:, 1] ** 2 + 0.5 * x[:, 0] * x[:, 1], rtol=1e-5, atol=1e-5)


def test_make_rejects_bad_names_and_parameters():
  with pytest.raises(ValueError, match="unknown energy 'nope'; built-in energies: ring, rings"):
    en.make("nope")
  with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['size'\]; allowed: \['radius', 'sigma'\]"):
    en.make("ring", size=3)
  with pytest.raises(ValueError, match=r"ring: radius must be a number in \(0.0, 20.0\], got -1"):
    en.make("ring", radius=-1)
  with pytest.raises(ValueError, match=r"ising: L must be an integer in \[2, 32\], got 1.5"):
    en.make("ising", L=1.5)
  with pytest.raises(ValueError, match="ising: periodic must be True or False"):
    en.make("ising", periodic="yes")
  with pytest.raises(ValueError, match="positive definite"):
    en.make("gaussian", cov=[[1, 2], [2, 1]])
  with pytest.raises(ValueError, match="symmetric"):
    en.make("gaussian", cov=[[1, 0.5], [0, 1]])
  with pytest.raises(ValueError, match="cov must be 3 x 3"):
    en.make("gaussian", mean=[0, 0, 0], cov=np.eye(2))
  with pytest.raises(ValueError, match=r"allowed: \['mean', 'cov'\]"):
    en.make("gaussian", sigma=1)
  with pytest.raises(ValueError, match="kappa < 1 / lambda_max"):
    en.make("phi4", lam=0.0, kappa=0.3)
  e = en.make("rings", n_rings=3, sigma=0.2)
  assert e.params == {"n_rings": 3, "sigma": 0.2} and e.box[0][1] == pytest.approx(4.0)
  assert en.make("gaussian", mean=[1.0, 2.0, 3.0]).dim == 3  # identity covariance


def test_energy_validates_shapes_and_arguments():
  e = en.Energy(lambda x: jnp.sum(x ** 2, -1), 3, name="sq")
  assert e(np.zeros((4, 3), np.int32)).shape == (4,)
  with pytest.raises(ValueError, match=r"sq: points must have shape \[n, 3\] \(or \[3\]\), got \(4, 2\)"):
    e(np.zeros((4, 2)))
  with pytest.raises(ValueError, match="points must have shape"):
    e(np.zeros((2, 4, 3)))
  bad = en.Energy(lambda x: x, 2, name="bad")
  with pytest.raises(ValueError, match=r"returned shape \(5, 2\) for 5 points"):
    bad(np.zeros((5, 2)))
  with pytest.raises(ValueError, match="log Z is not known"):
    e.log_prob(np.zeros((1, 3)))
  with pytest.raises(ValueError, match="dim must be a positive integer"):
    en.Energy(lambda x: x[:, 0], 0)
  with pytest.raises(ValueError, match="box must be 2 pair"):
    en.Energy(lambda x: x[:, 0], 2, box=((0, 1), (1, 0)))
  with pytest.raises(ValueError, match="has no box"):
    en.grid_log_z(en.Energy(lambda x: x[:, 0] ** 2, 1))
  with pytest.raises(ValueError, match="a grid is for 1D or 2D energies"):
    en.grid_log_z(en.make("ising"))
  assert abs(en.grid_log_z(en.Energy(lambda x: x[:, 0] ** 2 / 2, 1), box=((-9, 9),))
             - 0.5 * math.log(2 * math.pi)) < 1e-6


def test_grid_samples_are_exact_and_seeded():
  mean, cov = np.array([1.0, -0.5]), np.array([[1.0, 0.6], [0.6, 0.5]])
  e = en.make("gaussian", mean=mean, cov=cov)
  y = en.grid_samples(e, 40000, seed=3)
  assert y.shape == (40000, 2) and y.dtype == np.float32
  np.testing.assert_allclose(y.mean(0), mean, atol=0.02)
  np.testing.assert_allclose(np.cov(y.T), cov, atol=0.03)
  np.testing.assert_array_equal(en.grid_samples(e, 50, seed=7), en.grid_samples(e, 50, seed=7))
  r = np.linalg.norm(en.grid_samples(en.make("ring"), 20000, seed=0), axis=1)
  t = np.linspace(0, 6, 60001)
  w = t * np.exp(-(t - 2) ** 2 / 0.32)  # the radial density of the ring
  r_mean = np.sum(t * w) / np.sum(w)  # 2.08: the Jacobian r pushes it out
  assert abs(r.mean() - r_mean) < 0.015 and abs(r.std() - np.sqrt(np.sum((t - r_mean) ** 2 * w) / np.sum(w))) < 0.015
  with pytest.raises(ValueError, match="n must be an integer"):
    en.grid_samples(e, 0)


# -- the Ising model ---------------------------------------------------------------------------------

def test_lattice_adjacency():
  A = en.lattice_adjacency(3, periodic=True)
  assert (A == A.T).all() and (A.sum(1) == 4).all()
  Ao = en.lattice_adjacency(3, periodic=False)
  assert Ao.sum() // 2 == 12 and Ao[0, 1] == 1 and Ao[0, 3] == 1 and Ao[2, 3] == 0
  assert (en.lattice_adjacency(2, True) == en.lattice_adjacency(2, False)).all()  # single bonds
  for L, periodic in itertools.product((2, 3, 4, 5), (True, False)):
    np.testing.assert_allclose(np.sort(en.lattice_eigenvalues(L, periodic)),
                               np.linalg.eigvalsh(en.lattice_adjacency(L, periodic)), atol=1e-12)
  K, c = en.ising_coupling(4)
  assert abs(c - (0.1 + 4 / en.T_C)) < 1e-12 and abs(np.linalg.eigvalsh(K).min() - 0.1) < 1e-12


@pytest.mark.parametrize("T", [en.T_C, 1.5, 3.0])
def test_spin_log_z_kaufman_and_transfer_match_enumeration(T):
  for L in (3, 4):
    assert abs(en.ising_spin_log_z(L, True, T, "kaufman") - en.ising_spin_log_z(L, True, T, "enumerate")) < 1e-10
  for L in (2, 3, 4):
    assert abs(en.ising_spin_log_z(L, False, T, "transfer") - en.ising_spin_log_z(L, False, T, "enumerate")) < 1e-10


def test_kaufman_tends_to_onsager():
  """A large torus approaches Onsager's -log Z / N = -(log 2 / 2 + 2 G / pi) at T_C (G: Catalan)."""
  catalan = 0.915965594177219
  onsager = -(math.log(2) / 2 + 2 * catalan / math.pi)
  assert abs(-en._spin_log_z_kaufman(512, en.T_C) / 512 ** 2 - onsager) < 1e-5
  assert abs(en.exact_free_energy_per_site(32, model="spin") - onsager) < 1e-3


def test_enumeration_by_hand_on_two_by_two():
  """2 x 2 open = a 4-cycle: Z = sum over 16 states of exp((s1 s2 + s2 s4 + s4 s3 + s3 s1) / T)."""
  T = 2.0
  z = sum(math.exp((s[0] * s[1] + s[1] * s[3] + s[3] * s[2] + s[2] * s[0]) / T)
          for s in itertools.product((-1, 1), repeat=4))
  assert abs(en.ising_spin_log_z(2, False, T) - math.log(z)) < 1e-12


def test_paper_numbers_are_the_relaxed_free_energy():
  """-2.336... (L = 4) is -log Z / N of the *relaxed* model: enumeration of the 2^16 spin states plus
  the Gaussian-integral offset; the spin model's own value is -0.970."""
  spin = en.exact_free_energy_per_site(4, model="spin")
  relaxed = en.exact_free_energy_per_site(4, model="relaxed")
  assert abs(spin + 0.9701197161722) < 1e-12
  assert abs(relaxed - en.PAPER_FREE_ENERGY[(4, True)]) < 2e-6
  assert abs(spin - en.PAPER_FREE_ENERGY[(4, True)]) > 1.0
  for L in (8, 16, 32):  # Kaufman; the paper's periodic values are within 1.1e-6
    assert abs(en.exact_free_energy_per_site(L) - en.PAPER_FREE_ENERGY[(L, True)]) < 2e-6
  for L in (4, 8, 16):  # open boundaries (enumeration, transfer vector): to 1e-12
    assert abs(en.exact_free_energy_per_site(L, periodic=False) - en.PAPER_FREE_ENERGY[(L, False)]) < 1e-12
  assert abs(en.exact_free_energy_per_site(4) - -2.3360457306215) < 1e-12
  e = en.make("ising", L=4)
  assert e.L == 4 and e.dim == 16 and abs(e.log_z + 16 * relaxed) < 1e-9
  with pytest.raises(ValueError, match="open lattice is computed for L <= 16"):
    en.exact_free_energy_per_site(20, periodic=False)
  assert en.make("ising", L=20, periodic=False).log_z is None


def test_relaxed_log_z_by_direct_integration():
  """The Hubbard-Stratonovich identity, Z_relaxed = Z_spin (2 pi)^{N/2} det(K)^{1/2} 2^{-N} e^{N c / 2},
  checked by integrating exp(-E) of the relaxed energy itself over R^4 (L = 2, N = 4) on a grid.

  The integrand is a mixture of Gaussians N(K s, K) (K_ii = c ~ 0.98, |K s|_i <= 1.9): the midpoint
  rule with h = 0.75 on [-9, 9]^4 has aliasing error ~exp(-2 pi^2 c / h^2) ~ 1e-15 and truncation
  ~exp(-24)."""
  for T in (en.T_C, 1.2):
    e = en.make("ising", L=2, periodic=False, T=T)
    h = 0.75
    ax = -9 + h * (np.arange(24) + 0.5)
    pts = np.stack(np.meshgrid(ax, ax, ax, ax, indexing="ij"), -1).reshape(-1, 4).astype(np.float32)
    neg_e = -np.asarray(jax.jit(e.fn)(pts), np.float64)
    m = neg_e.max()
    log_z_grid = m + math.log(np.exp(neg_e - m).sum()) + 4 * math.log(h)
    assert abs(log_z_grid - e.log_z) < 1e-4, T
    K, c = en.ising_coupling(2, False, T)
    offset = 2 * math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(K)) - 4 * math.log(2) + 2 * c
    assert abs(en.relaxed_log_z_offset(2, False, T) - offset) < 1e-12
    assert abs(log_z_grid - (en.ising_spin_log_z(2, False, T) + offset)) < 1e-4


def test_ising_energy_is_the_hubbard_stratonovich_form(rng):
  e = en.make("ising", L=3, periodic=True, T=2.0)
  K, _ = en.ising_coupling(3, True, 2.0)
  x = rng.standard_normal((8, 9)) * 2
  ref = 0.5 * np.einsum("ni,ij,nj->n", x, np.linalg.inv(K), x) - np.sum(np.log(np.cosh(x)), 1)
  np.testing.assert_allclose(e(x), ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(e(-x), e(x), rtol=1e-6)  # spin-flip symmetry
  s = en.ising_spins(x)
  assert s.shape == x.shape and set(np.unique(s)) <= {-1, 1} and (s == np.sign(x)).all()
  assert (en.ising_spins(np.full((1, 4), 50.0), seed=0) == 1).all()


def test_phi4_at_zero_coupling_is_a_gaussian(rng):
  e = en.make("phi4", L=2, kappa=0.2, lam=0.0)
  K = np.eye(4) - 0.2 * en.lattice_adjacency(2)
  g = en.make("gaussian", mean=np.zeros(4), cov=np.linalg.inv(2 * K))
  x = rng.standard_normal((6, 4))
  np.testing.assert_allclose(e(x), g(x), rtol=1e-5, atol=1e-5)
  assert abs(e.log_z - g.log_z) < 1e-10
  assert en.make("phi4").log_z is None
