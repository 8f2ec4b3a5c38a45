"""cmm_core.viz.energy: the arrays and figures of the "Sample an energy" page."""

import math

import numpy as np
import pytest

from cmm_core import energies, metrics
from cmm_core.viz import energy as viz


@pytest.fixture(scope="module")
def ring():
  return energies.make("ring")


@pytest.fixture(scope="module")
def ring_grid(ring):
  return viz.energy_grid(ring, n_grid=60)


def test_energy_grid_is_the_energy_on_the_box(ring, ring_grid):
  g = ring_grid
  assert g["x"].shape == (60,) and g["y"].shape == (60,) and g["energy"].shape == (60, 60)
  assert g["box"] == ring.box and g["x"][0] == ring.box[0][0] and g["y"][-1] == ring.box[1][1]
  # rows are y: the point (x[j], y[i]) has energy[i, j]
  i, j = 7, 41
  np.testing.assert_allclose(g["energy"][i, j], float(ring(np.array([g["x"][j], g["y"][i]]))), rtol=1e-5)
  r = np.hypot(*np.meshgrid(g["x"], g["y"]))
  np.testing.assert_allclose(g["energy"], (r - 2) ** 2 / 0.32, rtol=1e-4, atol=1e-4)
  assert g["density"].max() == pytest.approx(1.0) and g["density"].min() >= 0
  np.testing.assert_allclose(g["density"], np.exp(-(g["energy"] - g["energy"].min())), rtol=1e-6)


def test_energy_grid_refuses_what_it_cannot_draw():
  with pytest.raises(ValueError, match="2D"):
    viz.energy_grid(energies.make("ising"))
  no_box = energies.Energy(lambda x: (x ** 2).sum(-1), 2)
  with pytest.raises(ValueError, match="box"):
    viz.energy_grid(no_box)
  nowhere = energies.Energy(lambda x: np.nan * x[:, 0], 2, box=((-1, 1), (-1, 1)))
  with pytest.raises(ValueError, match="not finite"):
    viz.energy_grid(nowhere, n_grid=8)
  with pytest.raises(ValueError, match="n_grid"):
    viz.energy_grid(energies.make("ring"), n_grid=4)


def test_contour_figure_with_and_without_samples(ring_grid):
  fig = viz.contour_figure(ring_grid, title="ring")
  assert [t.type for t in fig.data] == ["contour"] and not fig.layout.showlegend
  pts = np.random.default_rng(0).normal(size=(3000, 2))
  pts[0] = np.nan
  fig = viz.contour_figure(ring_grid, samples=pts, show="energy", sample_name="flow", max_points=500)
  assert [t.type for t in fig.data] == ["contour", "scatter"]
  assert len(fig.data[1].x) == 500 and np.all(np.isfinite(fig.data[1].x))
  assert fig.data[0].z.max() <= np.nanmin(ring_grid["energy"]) + 12 + 1e-9  # clipped E levels
  assert tuple(fig.layout.xaxis.range) == ring_grid["box"][0]
  with pytest.raises(ValueError, match="show"):
    viz.contour_figure(ring_grid, show="log")


def test_free_energy_figure_has_the_exact_line():
  hist = {"step": np.arange(1, 11), "loss": np.linspace(-1.0, -2.4, 10)}
  fig = viz.free_energy_figure(hist, log_z=2.5337, total_steps=20)
  assert fig.data[0].y[-1] == pytest.approx(-2.4)
  assert fig.layout.shapes[0].y0 == pytest.approx(-2.5337)  # the horizontal line at -log Z
  assert "−log Z" in fig.data[1].name and tuple(fig.layout.xaxis.range) == (0, 20)
  lo, hi = fig.layout.yaxis.range
  assert lo < -2.5337 < -2.4 < hi
  per_site = viz.free_energy_figure(hist, log_z=37.3767, n_sites=16)
  assert per_site.data[0].y[-1] == pytest.approx(-2.4 / 16)
  assert per_site.layout.shapes[0].y0 == pytest.approx(-37.3767 / 16)
  bare = viz.free_energy_figure({"step": [], "loss": []})
  assert not bare.layout.shapes and len(bare.data) == 1 and bare.layout.annotations
  # one curve per model; the zoom keeps both curves' tails in view
  other = {"step": np.arange(1, 11), "loss": np.linspace(-0.5, -2.0, 10)}
  two = viz.free_energy_figure({"maflow": hist, "cmm": other}, log_z=2.5337)
  assert [t.name.split(":")[0] for t in two.data[:2]] == ["maflow", "cmm"]
  assert two.data[1].y[-1] == pytest.approx(-2.0) and two.data[0].line.color != two.data[1].line.color
  lo, hi = two.layout.yaxis.range
  assert lo < -2.5337 and hi > -2.0 + 0.1 * 0.5


def test_latent_figure_colours_base_points_by_their_image():
  z = np.random.default_rng(0).normal(size=(200, 2))
  x = 3 * z  # images in the same direction: colour = the angle of z itself
  fig = viz.latent_figure(z, x, max_points=100)
  pts = fig.data[-1]
  assert len(pts.x) == 100
  img = 3 * np.stack([pts.x, pts.y], -1)  # the kept points' images; angles about their mean
  c = img - img.mean(0)
  for k in range(3):
    assert pts.marker.color[k] == pytest.approx(math.degrees(math.atan2(c[k, 1], c[k, 0])))
  with pytest.raises(ValueError):
    viz.latent_figure(z, x[:10])
  # another base (cmm's e^{-w}, far from the origin): no N(0, I) circles, axes around the samples
  far = viz.latent_figure(z + 10.0, x, base_name="x ~ e^(−w)")
  assert len(far.data) == 1 and "e^(−w)" in far.data[0].name
  lo, hi = far.layout.xaxis.range
  assert lo < (z[:, 0] + 10).min() and hi > (z[:, 0] + 10).max() and lo > 3


def test_spin_mosaic_tiles_the_signs():
  L = 3
  x = np.arange(5 * 9, dtype=float).reshape(5, 9) - 20  # row-major sites
  m = viz.spin_mosaic(x, L, n_show=5, cols=2)
  assert m.shape == (3 * 4 - 1, 2 * 4 - 1)  # 3 rows x 2 cols of 3x3 tiles, one-cell gaps
  np.testing.assert_array_equal(m[0:3, 0:3], np.where(x[0] >= 0, 1, -1).reshape(3, 3))
  np.testing.assert_array_equal(m[4:7, 4:7], np.where(x[3] >= 0, 1, -1).reshape(3, 3))
  np.testing.assert_array_equal(m[8:11, 0:3], np.where(x[4] >= 0, 1, -1).reshape(3, 3))
  assert np.all(np.isnan(m[3])) and np.all(np.isnan(m[:, 3])) and np.all(np.isnan(m[8:11, 4:7]))
  assert set(np.unique(m[np.isfinite(m)])) == {-1.0, 1.0}
  fig = viz.spin_figure(x, L, n_show=4)
  assert fig.data[0].type == "heatmap" and fig.data[0].z.shape == (3, 15)
  with pytest.raises(ValueError, match="L = 4"):
    viz.spin_mosaic(x, 4)


def test_sample_stats_and_table(ring):
  exact = energies.grid_samples(ring, 512, seed=1)
  far = exact + 3.0
  s_exact = viz.sample_stats(ring, energies.grid_samples(ring, 512, seed=2), reference=exact, n=512)
  s_far = viz.sample_stats(ring, far, reference=exact, n=512)
  assert s_exact["n"] == 512 and s_exact["energy_distance"] < 0.02 < s_far["energy_distance"]
  assert s_exact["energy_distance"] == pytest.approx(metrics.energy_distance(
      energies.grid_samples(ring, 512, seed=2), exact), rel=1e-5)  # all points kept: a permutation
  assert s_exact["mean_energy"] == pytest.approx(0.5, abs=0.1)  # 1/2 per radial dof, about
  assert viz.sample_stats(ring, exact)["energy_distance"] is None

  fm = metrics.FreeEnergyMetrics(elbo=2.50, elbo_se=0.004, iw_log_z=2.53, ess=3800, n=4096,
                                 log_z=2.5337, gap=0.0337)
  rows = viz.comparison_rows(
      models={"maflow": {"metrics": fm, "stats": s_exact, "grad_evals": 51200, "seconds": 12.0},
              "cmm": None},
      mcmc={"stats": s_far, "grad_evals": 51456, "seconds": 0.5, "acceptance": 0.88, "n_chains": 256,
            "n_steps": 200},
      exact={"log_z": 2.5337, "log_z_source": "exact", "stats": s_exact}, mcmc_label="MALA")
  table = {r["quantity"]: r for r in rows}
  assert list(rows[0]) == ["quantity", "maflow", "cmm", "MALA", "exact"]
  assert table["energy evaluations (budget)"]["maflow"] == "51,200"
  assert table["gap log Z − ELBO (≥ 0)"]["maflow"] == "0.0337"
  assert table["gap log Z − ELBO (≥ 0)"]["cmm"] == "—"  # not trained
  assert table["free energy F = −ELBO"]["MALA"].startswith("—")
  assert table["ESS of the importance weights"]["maflow"] == "3,800 of 4,096 (93%)"
  assert table["acceptance rate"]["MALA"] == "88%"
  no_ref = viz.sample_stats(ring, exact)
  lattice = viz.comparison_rows(models={"cmm": {"metrics": fm, "stats": no_ref, "grad_evals": 1,
                                                    "seconds": 1.0}},
                                mcmc=None, exact={"log_z": 2.5337, "free_energy_per_site": -0.6},
                                n_sites=4)
  per_site = [r for r in lattice if r["quantity"] == "free energy per site F / N"][0]
  assert per_site["cmm"] == "-0.62500" and per_site["exact"] == "-0.60000"
  assert not any(r["quantity"] == "energy distance to exact samples" for r in lattice)


def test_magnetisation_figure_and_the_exact_distribution():
  m, p = energies.ising_magnetisation(2)
  # L = 2 periodic: each site has neighbour 1 twice (A_ij = 2), so E(s) = -(2 / T) sum_<ij> s_i s_j
  assert m.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and p.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(p, p[::-1])  # the Z2 symmetry
  s = ((np.arange(16)[:, None] >> np.arange(4)) & 1) * 2.0 - 1.0
  A = energies.lattice_adjacency(2)
  w = np.exp(0.5 * np.einsum("ni,ij,nj->n", s, A, s) / energies.T_C)
  brute = np.bincount((s > 0).sum(1), weights=w) / w.sum()
  np.testing.assert_allclose(p, brute, rtol=1e-12)
  # all up, all down: the histogram puts half the samples at each end
  x = np.concatenate([np.full((50, 4), 5.0), np.full((50, 4), -5.0)])
  fig = viz.magnetisation_figure({"flow": x}, 2, exact=(m, p))
  assert fig.data[0].type == "bar" and list(fig.data[0].y) == pytest.approx([0.5, 0, 0, 0, 0.5], abs=0.02)
  assert fig.data[1].name == "exact (enumeration)"
  with pytest.raises(ValueError, match="L = 3"):
    viz.magnetisation_figure({"flow": x}, 3)
  with pytest.raises(ValueError, match="at most"):
    energies.ising_magnetisation(5)
