"""Tests for cmm_core.targets: generators, densities, Gaussians and file loading."""

import io
import math
import pathlib
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cmm_core import targets
from cmm_core.errors import DataError

ALL = targets.names()
ONE_D = targets.names(1)
TWO_D = targets.names(2)


# ----------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------


def test_names():
  assert set(ONE_D) == {"gaussian", "mixture", "uniform", "laplace", "skewed"}
  assert set(TWO_D) == {"eight_gaussians", "two_moons", "rings", "checkerboard", "spirals",
                        "pinwheel", "banana", "circles", "swissroll"}
  assert sorted(ALL) == sorted(ONE_D + TWO_D)
  assert targets.names(3) == []


@pytest.mark.parametrize("name", ALL)
def test_info_is_slider_ready(name):
  i = targets.info(name)
  assert i["name"] == name and i["dim"] in (1, 2)
  assert i["description"].endswith(".") and i["description"].count(". ") == 0
  for pname, p in i["params"].items():
    assert set(p) == {"default", "min", "max", "step", "help"}, pname
    assert p["min"] <= p["default"] <= p["max"]
    assert p["step"] > 0 and p["help"]
    kinds = {type(p[k]) for k in ("default", "min", "max", "step")}
    assert kinds in ({int}, {float}), f"{name}.{pname} mixes int and float: {kinds}"
  i["params"].clear()  # a copy: the registry is untouched
  assert targets.info(name)["params"]


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="eight_gaussians"):
    targets.info("nope")
  with pytest.raises(ValueError, match="unknown target"):
    targets.make("nope", 10)


# ----------------------------------------------------------------------------
# make().
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_make_shape_dtype_and_seeding(name):
  d = targets.info(name)["dim"]
  x = targets.make(name, 500, seed=3)
  assert x.shape == (500, d) and x.dtype == np.float32
  assert np.all(np.isfinite(x))
  np.testing.assert_array_equal(x, targets.make(name, 500, seed=3))
  assert not np.array_equal(x, targets.make(name, 500, seed=4))
  assert targets.make(name, 1).shape == (1, d)


@pytest.mark.parametrize("name", ALL)
def test_make_at_parameter_extremes(name):
  params = targets.info(name)["params"]
  for end in ("min", "max"):
    x = targets.make(name, 200, seed=0, **{k: p[end] for k, p in params.items()})
    assert np.all(np.isfinite(x)), end


@pytest.mark.parametrize("bad", [
    {"noise": 5.0},          # above max
    {"noise": -0.1},         # below min
    {"noise": "0.1"},        # not a number
    {"noise": True},         # a bool is not a number here
    {"noise": float("nan")},
    {"radius": 1.0},         # unknown parameter
])
def test_make_bad_params(bad):
  with pytest.raises(ValueError, match="noise|radius"):
    targets.make("eight_gaussians", 10, **bad)


def test_bad_param_message_names_parameter_and_range():
  with pytest.raises(ValueError, match=r"'std'.*\[0\.05, 10\.0\]"):
    targets.make("gaussian", 10, std=100.0)
  with pytest.raises(ValueError, match="integer"):
    targets.make("pinwheel", 10, arms=2.5)
  assert targets.make("pinwheel", 10, arms=3.0).shape == (10, 2)  # integral float accepted


@pytest.mark.parametrize("n", [0, -1, 1_000_001, 2.5, True, "10", None])
def test_make_bad_n(n):
  with pytest.raises(ValueError, match="n must be"):
    targets.make("gaussian", n)


@pytest.mark.parametrize("seed", [-1, 1.5, None, "0"])
def test_make_bad_seed(seed):
  with pytest.raises(ValueError, match="seed"):
    targets.make("gaussian", 10, seed=seed)


def test_make_accepts_numpy_integers():
  x = targets.make("rings", np.int64(20), seed=np.int32(1))
  np.testing.assert_array_equal(x, targets.make("rings", 20, seed=1))


# ----------------------------------------------------------------------------
# 2D statistics (n = 200k, fixed seed: tolerances are >= 5 standard errors).
# ----------------------------------------------------------------------------

N = 200_000


def test_eight_gaussians_statistics():
  x = targets.make("eight_gaussians", N, seed=0).astype(np.float64)
  np.testing.assert_allclose(x.mean(0), 0.0, atol=0.03)  # std ~2 -> SE 0.005
  angle = np.arctan2(x[:, 1], x[:, 0])
  k = np.round(angle / (np.pi / 4)).astype(int) % 8
  radius = 4 / 1.414
  for j in range(8):
    pts = x[k == j]
    assert abs(len(pts) / N - 1 / 8) < 0.005  # SE 0.0007
    centre = radius * np.array([np.cos(j * np.pi / 4), np.sin(j * np.pi / 4)])
    # per-coordinate std 0.5/1.414 = 0.35 -> SE 0.002 (clusters barely overlap)
    np.testing.assert_allclose(pts.mean(0), centre, atol=0.02)
    np.testing.assert_allclose(pts.std(0), 0.5 / 1.414, rtol=0.05)


def test_checkerboard_cells():
  x = targets.make("checkerboard", N, seed=0).astype(np.float64)
  assert np.all(np.abs(x) <= 4.0)
  i, j = np.floor(x[:, 0] / 2).astype(int), np.floor(x[:, 1] / 2).astype(int)
  assert np.all((i + j) % 2 == 0)  # only the 8 "dark" cells of the 4x4 board
  cells, counts = np.unique(np.stack([i, j], 1), axis=0, return_counts=True)
  assert len(cells) == 8
  np.testing.assert_allclose(counts / N, 1 / 8, atol=0.005)
  np.testing.assert_allclose(x.mean(0), 0.0, atol=0.03)


def test_rings_and_circles_radii():
  r = np.linalg.norm(targets.make("rings", N, seed=0), axis=1)
  nearest = np.min(np.abs(r[:, None] - 3 * np.array([0.25, 0.5, 0.75, 1.0])), axis=1)
  assert np.mean(nearest < 0.3) > 0.99  # noise std 0.08
  r = np.linalg.norm(targets.make("circles", N, seed=0), axis=1)
  near_outer = r > 2.25  # midway between the radii 3 and 1.5; noise std 0.24
  assert abs(near_outer.mean() - 0.5) < 0.01
  np.testing.assert_allclose(np.median(r[near_outer]), 3.0, atol=0.05)
  np.testing.assert_allclose(np.median(r[~near_outer]), 1.5, atol=0.05)


def test_moons_banana_and_symmetric_targets_means():
  moons = targets.make("two_moons", N, seed=0).astype(np.float64)
  np.testing.assert_allclose(moons.mean(0), [0.0, 0.3], atol=0.02)  # sklearn moons * 2 - (1, .2)
  banana = targets.make("banana", N, seed=0).astype(np.float64)
  np.testing.assert_allclose(banana.mean(0), 0.0, atol=0.02)
  np.testing.assert_allclose(banana[:, 0].std(), 1.5, rtol=0.01)
  for name in ("spirals", "pinwheel", "eight_gaussians"):
    np.testing.assert_allclose(targets.make(name, N, seed=1).mean(0), 0.0, atol=0.03)


def test_scale_parameter_scales():
  a = targets.make("spirals", 1000, seed=0)
  b = targets.make("spirals", 1000, seed=0, scale=2.0)
  np.testing.assert_allclose(b, 2 * a, rtol=1e-6)


# ----------------------------------------------------------------------------
# 1D densities.
# ----------------------------------------------------------------------------


def _param_sets(name):
  params = targets.info(name)["params"]
  mid = {k: (p["min"] + p["max"]) / 2 if isinstance(p["default"], float) else p["default"]
         for k, p in params.items()}
  return [{}, mid]


@pytest.mark.parametrize("name", ONE_D)
def test_density_integrates_to_one(name):
  x = np.linspace(-120, 120, 1_200_001)
  for params in _param_sets(name):
    p = targets.density_1d(name, x, **params)
    assert p.shape == x.shape and np.all(p >= 0)
    assert abs(np.trapezoid(p, x) - 1) < 1e-3, params
    np.testing.assert_allclose(np.exp(targets.log_density_1d(name, x[::1000], **params)),
                               p[::1000])


@pytest.mark.parametrize("name", ONE_D)
def test_density_matches_samples(name):
  n = 200_000
  for params in _param_sets(name):
    s = targets.make(name, n, seed=5, **params)[:, 0].astype(np.float64)
    edges = np.linspace(*np.quantile(s, [0.001, 0.999]), 41)
    observed = np.histogram(s, edges)[0] / n
    fine = np.linspace(edges[0], edges[-1], 40 * 2000 + 1)
    dens = targets.density_1d(name, fine, **params)
    cum = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(fine))])
    expected = np.diff(cum[::2000])
    # binomial standard error of each bin frequency; 5 SE plus a little quadrature slack
    assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected / n) + 2e-4), params


def test_density_1d_refuses_2d_targets():
  with pytest.raises(ValueError, match="1D"):
    targets.density_1d("two_moons", np.zeros(3))


def test_mixture_default_is_asymmetric_bimodal():
  x = np.linspace(-8, 8, 16001)
  p = targets.density_1d("mixture", x)
  peaks = x[1:-1][(p[1:-1] > p[:-2]) & (p[1:-1] > p[2:])]
  np.testing.assert_allclose(peaks, [-2.0, 1.5], atol=0.01)
  mean = np.trapezoid(x * p, x)
  np.testing.assert_allclose(mean, 0.3 * -2 + 0.7 * 1.5, atol=1e-6)


# ----------------------------------------------------------------------------
# gaussian().
# ----------------------------------------------------------------------------


def test_gaussian_moments():
  mean = np.array([1.0, -2.0, 0.5])
  a = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 0.5]])
  cov = a @ a.T
  n = 400_000
  x = targets.gaussian(mean, cov, n, seed=0)
  assert x.shape == (n, 3) and x.dtype == np.float32
  x = x.astype(np.float64)
  se_mean = np.sqrt(np.diag(cov) / n)
  assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean)
  # standard error of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
  se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
  assert np.all(np.abs(np.cov(x.T) - cov) < 5 * se_cov)
  np.testing.assert_array_equal(targets.gaussian(mean, cov, 100, seed=1),
                                targets.gaussian(mean, cov, 100, seed=1))


def test_gaussian_scalars_are_1d():
  x = targets.gaussian(1.0, 4.0, 100_000, seed=0)
  assert x.shape == (100_000, 1)
  assert abs(x.mean() - 1.0) < 5 * 2 / math.sqrt(1e5)
  assert abs(x.std() - 2.0) < 0.03


@pytest.mark.parametrize("mean, cov, match", [
    ([0, 0], [[1, 0.5], [0.4, 1]], "symmetric"),
    ([0, 0], [[1, 2], [2, 1]], "positive definite"),
    ([0, 0], [[1, 0], [0, 0]], "positive definite"),
    ([0, 0, 0], np.eye(2), "shape"),
    ([0, 0], [1, 1], "shape"),
    ([0, 0], [[1, 0], [0, np.nan]], "finite"),
    (0.0, -1.0, "positive definite"),
])
def test_gaussian_refuses_bad_cov(mean, cov, match):
  with pytest.raises(ValueError, match=match):
    targets.gaussian(mean, cov, 10)


# ----------------------------------------------------------------------------
# load_file().
# ----------------------------------------------------------------------------

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(30, 3)).round(4)


def _csv(arr, delim=",", header=None):
  lines = [delim.join(header)] if header else []
  lines += [delim.join(f"{v:.4f}" for v in row) for row in arr]
  return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("delim, name", [(",", "csv"), ("\t", "tsv"), (";", "txt"), (" ", "dat")])
@pytest.mark.parametrize("header", [None, ["a", "b", "c"]])
def test_text_round_trip(delim, name, header):
  raw = _csv(TABLE, delim, header)
  for filename in (f"data.{name}", None):
    x, report = targets.load_file_report(raw, filename=filename)
    np.testing.assert_allclose(x, TABLE, rtol=1e-6)
    assert x.dtype == np.float32
    assert report["rows_read"] == 30 and report["rows_dropped"] == 0
    assert report["columns"] == (header or ["x0", "x1", "x2"])
    assert report["header"] == bool(header)


def test_whitespace_mixed_and_comments():
  raw = b"# a comment\n" + b"\n".join(b"  %.3f \t %.3f" % tuple(r) for r in TABLE[:, :2]) + b"\n\n"
  np.testing.assert_allclose(targets.load_file(raw), TABLE[:, :2], atol=1e-3)


def test_decimal_comma_with_semicolons():
  raw = "x;y\n" + "\n".join(f"{a:.3f};{b:.3f}".replace(".", ",") for a, b in TABLE[:, :2])
  np.testing.assert_allclose(targets.load_file(raw.encode()), TABLE[:, :2], atol=1e-3)


def test_single_column_csv_is_1d_data():
  raw = "\n".join(str(v) for v in TABLE[:, 0]).encode()
  assert targets.load_file(raw, filename="a.csv").shape == (30, 1)


def test_npy_and_npz_round_trip(tmp_path):
  buf = io.BytesIO()
  np.save(buf, TABLE)
  x, report = targets.load_file_report(buf.getvalue(), filename="t.npy")
  np.testing.assert_allclose(x, TABLE, rtol=1e-6)
  assert report["format"] == "npy"
  np.testing.assert_allclose(targets.load_file(buf.getvalue()), TABLE, rtol=1e-6)  # sniffed
  buf = io.BytesIO()
  np.savez(buf, TABLE[:, :2], TABLE)
  x, report = targets.load_file_report(buf.getvalue(), filename="t.npz")
  np.testing.assert_allclose(x, TABLE[:, :2], rtol=1e-6)  # the first array
  assert report["format"] == "npz" and report["array"] == "arr_0"
  buf = io.BytesIO()
  np.savez_compressed(buf, labels=np.arange(30), data=TABLE)
  x, report = targets.load_file_report(buf.getvalue())
  np.testing.assert_allclose(x, TABLE, rtol=1e-6)  # "data" wins
  path = tmp_path / "t.npz"
  path.write_bytes(buf.getvalue())
  np.testing.assert_allclose(targets.load_file(path), TABLE, rtol=1e-6)
  np.testing.assert_allclose(targets.load_file(str(path)), TABLE, rtol=1e-6)


def test_1d_npy_and_ints_and_structured():
  buf = io.BytesIO()
  np.save(buf, np.arange(20))
  assert targets.load_file(buf.getvalue()).shape == (20, 1)
  rec = np.zeros(20, dtype=[("a", "f8"), ("b", "i4"), ("name", "U3")])
  rec["a"], rec["b"] = np.arange(20) * 0.5, np.arange(20) % 7
  buf = io.BytesIO()
  np.save(buf, rec)
  x, report = targets.load_file_report(buf.getvalue())
  assert x.shape == (20, 2) and report["columns"] == ["a", "b"]
  assert report["ignored_columns"] == ["name"]


class _Upload(io.BytesIO):
  """Looks like Streamlit's UploadedFile: a BytesIO with a name."""

  def __init__(self, data, name):
    super().__init__(data)
    self.name = name


def test_file_like_object_uses_its_name():
  up = _Upload(_csv(TABLE, "\t"), "upload.tsv")
  up.read(5)  # already partly read: load_file rewinds
  np.testing.assert_allclose(targets.load_file(up), TABLE, rtol=1e-6)


def test_missing_values_are_dropped_and_counted():
  lines = ["x,y,label"] + [f"{a},{b},lab{i}" for i, (a, b) in enumerate(TABLE[:, :2])]
  lines[3] = "1.0,,a"          # missing value
  lines[5] = "NA,2.0,b"        # non-numeric
  lines[7] = "1.0,2.0"         # too few fields
  lines[9] = "nan,1.0,c"       # NaN
  x, report = targets.load_file_report("\n".join(lines).encode())
  assert report["rows_read"] == 30 and report["rows_dropped"] == 4
  assert x.shape == (26, 2)
  assert report["columns"] == ["x", "y"] and report["ignored_columns"] == ["label"]


def test_non_finite_rows_in_npy_are_dropped():
  arr = TABLE.copy()
  arr[[2, 4], 1] = np.nan
  arr[6, 0] = np.inf
  buf = io.BytesIO()
  np.save(buf, arr)
  x, report = targets.load_file_report(buf.getvalue())
  assert x.shape == (27, 3) and report["rows_dropped"] == 3


def _npy(arr, **kw):
  buf = io.BytesIO()
  np.save(buf, arr, **kw)
  return buf.getvalue()


def _huge_npy_header():
  buf = io.BytesIO()
  np.lib.format.write_array_header_1_0(
      buf, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10)})
  return buf.getvalue() + b"\x00" * 64


def _zip(members):
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as zf:
    for name, data in members.items():
      zf.writestr(name, data)
  return buf.getvalue()


REFUSED = {
    "empty": (b"", None, "empty"),
    "blank": (b"  \n\n \t\n", "a.csv", "empty"),
    "no numbers": (b"a,b\nc,d\ne,f\n", "a.csv", "numeric"),
    "header only": (b"x,y\n", "a.csv", "no data rows"),
    "nan only": (b"nan,nan\nnan,nan\n" * 20, "a.csv", "no complete numeric rows"),
    "one row": (b"1.0,2.0\n", "a.csv", "at least"),
    "nine rows": (b"1,2\n3,5\n" * 4 + b"7,1\n", None, "at least"),
    "constant column": (b"1,2\n1,3\n" * 10, None, "constant"),
    "pickled npy": (_npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
                    "x.npy", "pickle"),
    "truncated npy": (_npy(TABLE)[:-17], "x.npy", "truncated"),
    "header-only npy": (_npy(TABLE)[:60], None, "corrupt|truncated"),
    "npy claiming a huge shape": (_huge_npy_header(), None, "MB"),
    "npy named csv": (_npy(np.zeros(3)), "x.csv", "at least|constant"),
    "npy without magic": (b"1,2\n3,4\n", "x.npy", "not a valid .npy"),
    "text npy": (_npy(np.array(["a", "b"] * 10)), "x.npy", "text"),
    "complex npy": (_npy(np.ones((20, 2)) * 1j), "x.npy", "complex"),
    "3d npy": (_npy(np.ones((4, 4, 4))), None, "shape"),
    "scalar npy": (_npy(np.float64(3.0)), None, "single number"),
    "corrupt npz": (_zip({"arr_0.npy": _npy(TABLE)})[:-30], "x.npz", "corrupt"),
    "npz with no arrays": (_zip({"readme.txt": b"hi"}), "x.npz", "no .npy"),
    "npz with pickled array": (_zip({"data.npy": _npy(np.array([None] * 3, dtype=object),
                                                      allow_pickle=True)}), None, "pickle"),
    "random bytes": (np.random.default_rng(1).bytes(4096), None, "binary|UTF-8"),
    "non-utf8 text": ("x,y\n1,é\n".encode("latin-1") * 10, "a.csv", "UTF-8"),
    "utf16 text": ("1,2\n3,4\n".encode("utf-16"), "a.csv", "binary|UTF-8"),
    "pickle extension": (b"\x80\x04K\x01.", "model.pkl", "pickle"),
    "excel": (b"PK\x03\x04junk", "book.xlsx", "Excel"),
    "too many columns": (_csv(np.random.default_rng(2).normal(size=(20, 260))), None, "256"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_inputs_raise_data_error(case):
  raw, filename, match = REFUSED[case]
  with pytest.raises(DataError, match=match):
    targets.load_file(raw, filename=filename)


def test_pickled_npy_is_never_unpickled(monkeypatch):
  import pickle
  calls = []
  monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(1))
  monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(1))
  with pytest.raises(DataError, match="pickle"):
    targets.load_file(REFUSED["pickled npy"][0])
  assert not calls


def test_too_big_file(tmp_path):
  big = b"1.5,2.5\n" * (targets.MAX_FILE_BYTES // 8 + 1)
  with pytest.raises(DataError, match="MB"):
    targets.load_file(big)
  path = tmp_path / "big.csv"
  path.write_bytes(big)
  with pytest.raises(DataError, match="MB"):
    targets.load_file(path)
  with pytest.raises(DataError, match="MB"):
    targets.load_file(_Upload(big, "big.csv"))


def test_bad_sources():
  with pytest.raises(DataError, match="not found"):
    targets.load_file("/no/such/file.csv")
  with pytest.raises(DataError, match="not found"):
    targets.load_file(pathlib.Path("/"))
  with pytest.raises(DataError, match="cannot read"):
    targets.load_file(12345)
  assert issubclass(DataError, ValueError)


CSV_ALPHABET = "0123456789.,;-+eE \t\n\r#naNIfx\"'_"


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=300).map(lambda b: b"\x93NUMPY" + b),
    st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),
    st.text(alphabet=CSV_ALPHABET, max_size=3000).map(str.encode),
    st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                st.sampled_from(["", "NA", "x", "1e999", " "])),
                      min_size=1, max_size=5),
             max_size=40).map(lambda rows: "\n".join(",".join(map(str, r)) for r in rows)
                              .encode()),
),
       filename=st.sampled_from([None, "x.csv", "x.tsv", "x.txt", "x.npy", "x.npz", "x.bin"]))
def test_fuzz_only_data_error_escapes(raw, filename):
  try:
    x = targets.load_file(raw, filename=filename)
  except DataError:
    return
  assert x.dtype == np.float32 and x.ndim == 2 and np.all(np.isfinite(x))


@settings(max_examples=50, deadline=None)
@given(arr=st.integers(1, 6).flatmap(lambda d: st.lists(
    st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=d, max_size=d),
    min_size=10, max_size=50)))
def test_fuzz_npy_and_csv_round_trip(arr):
  arr = np.array(arr)
  if np.any(arr.std(0) < 1e-3):
    return  # constant columns are refused by design
  np.testing.assert_allclose(targets.load_file(_npy(arr)), arr.astype(np.float32))
  text = "\n".join(",".join(repr(float(v)) for v in row) for row in arr).encode()
  np.testing.assert_allclose(targets.load_file(text, filename="a.csv"), arr.astype(np.float32))


# ----------------------------------------------------------------------------
# load_table() + select_columns(): pick columns first, then drop incomplete rows.
# ----------------------------------------------------------------------------


def _holes_csv():
  lines = ["a,b,c,label"] + [f"{a},{b},{c},l{i}" for i, (a, b, c) in enumerate(TABLE)]
  lines[3] = lines[3].replace(lines[3].split(",")[2], "")  # c missing in row 3
  lines[6] = "1.0,2.0"                                     # malformed: too few fields
  return ("\n".join(lines) + "\n").encode()


def test_load_table_keeps_incomplete_rows_as_nan():
  table, report = targets.load_table(_holes_csv(), filename="h.csv")
  assert table.shape == (29, 3) and table.dtype == np.float64
  assert int(np.isnan(table).sum()) == 1
  assert report["columns"] == ["a", "b", "c"] and report["ignored_columns"] == ["label"]
  assert report["rows_read"] == 30 and report["rows_malformed"] == 1
  assert report["filename"] == "h.csv" and report["format"] == "text"


def test_select_columns_drops_only_rows_incomplete_in_the_chosen_columns():
  table, report = targets.load_table(_holes_csv(), filename="h.csv")
  kw = {"names": report["columns"], "rows_malformed": report["rows_malformed"], "label": "h.csv"}
  x, sel = targets.select_columns(table, ["c", "a"], **kw)
  assert x.shape == (28, 2) and x.dtype == np.float32
  assert sel == {"rows_read": 30, "rows_dropped": 2, "rows": 28, "columns": ["c", "a"],
                 "standardized": False}
  x, sel = targets.select_columns(table, ["a", "b"], **kw)
  assert x.shape == (29, 2) and sel["rows_dropped"] == 1  # only the malformed row
  x, sel = targets.select_columns(table, None, standardize=True, **kw)
  assert x.shape == (28, 3) and sel["standardized"]
  np.testing.assert_allclose(x.mean(0), 0, atol=1e-6)
  np.testing.assert_allclose(x.std(0), 1, atol=1e-6)
  x, _ = targets.select_columns(table, [1], **kw)  # by position
  assert x.shape == (29, 1)
  # the same rows as load_file when all columns are kept
  np.testing.assert_allclose(targets.select_columns(table, None, **kw)[0],
                             targets.load_file(_holes_csv()))


@pytest.mark.parametrize("columns, kwargs, match", [
    (["z"], {}, "no column 'z'"),
    ([], {}, "at least one column"),
    ([5], {}, "does not exist"),
    (["a", 0], {}, "twice"),
    (["a", "b", "c"], {"max_columns": 2}, "at most 2"),
])
def test_select_columns_refusals(columns, kwargs, match):
  with pytest.raises(DataError, match=match):
    targets.select_columns(TABLE, columns, names=["a", "b", "c"], **kwargs)


def test_fewer_than_ten_usable_rows_are_refused():
  with pytest.raises(DataError, match="9 row.*at least 10"):
    targets.select_columns(TABLE[:9], None)
  # 12 rows read, 3 incomplete: the message says rows were dropped
  table = TABLE[:12].copy()
  table[[1, 4, 7], 0] = np.nan
  with pytest.raises(DataError, match="dropping 3 incomplete.*9 row.*at least 10"):
    targets.select_columns(table, None, label="f.csv")
  assert targets.select_columns(table, [1, 2])[0].shape == (12, 2)
  raw = b"x,y\n" + b"".join(f"{i},{i % 3}\n".encode() for i in range(9))
  with pytest.raises(DataError, match="at least 10"):
    targets.load_file(raw, filename="nine.csv")
  with pytest.raises(DataError, match="no complete numeric rows"):
    targets.select_columns(np.full((20, 2), np.nan), None)


def test_too_big_file_is_refused_by_load_table():
  big = b"1.5,2.5\n" * (targets.MAX_FILE_BYTES // 8 + 1)
  with pytest.raises(DataError, match=r"at most 50\.0 MB"):
    targets.load_table(big, filename="big.csv")


# ----------------------------------------------------------------------------
# Drawn targets.
# ----------------------------------------------------------------------------


def test_draw_grid():
  g = targets.draw_grid((-4, 4), 40)
  assert g["centres"].shape == (1600, 2) and g["size"] == pytest.approx(0.2)
  np.testing.assert_allclose(g["centres"][0], [-3.9, -3.9])
  np.testing.assert_allclose(g["centres"][1], [-3.7, -3.9])  # column first (along x)
  np.testing.assert_allclose(g["centres"][40], [-3.9, -3.7])
  with pytest.raises(ValueError):
    targets.draw_grid((1, 1))


def test_sample_cells_is_uniform_on_the_union():
  g = targets.draw_grid((0, 4), 4)
  x = targets.sample_cells([0, 15, 15], g, 4000, seed=3, jitter=0.0)  # repeats count once
  assert x.shape == (4000, 2) and x.dtype == np.float32
  in0 = np.all((x >= 0) & (x <= 1), axis=1)
  in15 = np.all((x >= 3) & (x <= 4), axis=1)
  assert np.all(in0 | in15) and abs(in0.mean() - 0.5) < 0.03
  np.testing.assert_allclose(x[in0].mean(0), [0.5, 0.5], atol=0.03)
  np.testing.assert_array_equal(x, targets.sample_cells([15, 0], g, 4000, seed=3, jitter=0.0))
  blurred = targets.sample_cells([0], g, 4000, seed=0, jitter=0.2)
  assert np.any(blurred < 0) and np.all(np.abs(blurred - 0.5) < 0.5 + 6 * 0.2)


def test_sample_cells_refusals():
  g = targets.draw_grid()
  with pytest.raises(DataError, match="nothing drawn"):
    targets.sample_cells([], g, 100)
  with pytest.raises(DataError, match="cell indices"):
    targets.sample_cells([1600], g, 100)
  with pytest.raises(ValueError, match="jitter"):
    targets.sample_cells([0], g, 100, jitter=-1)


def test_parse_points():
  text = "# a comment\n1, 2\n  (3; 4)  \n\n[-5 6e-1]\n7\t8 # trailing\n"
  np.testing.assert_allclose(targets.parse_points(text), [[1, 2], [3, 4], [-5, 0.6], [7, 8]])
  with pytest.raises(DataError, match="line\\(s\\) 2, 3 are not 2 numbers"):
    targets.parse_points("1, 2\nfoo\n1 2 3\n")
  with pytest.raises(DataError, match="no points"):
    targets.parse_points("  \n# only a comment\n")
  with pytest.raises(DataError, match="not 2 numbers"):
    targets.parse_points("nan, 1")


def test_sample_points():
  pts = np.array([[0.0, 0.0], [10.0, 0.0]])
  x = targets.sample_points(pts, 2000, seed=1, spread=0.1)
  assert x.shape == (2000, 2)
  near0 = np.linalg.norm(x, axis=1) < 1
  assert abs(near0.mean() - 0.5) < 0.05 and np.all(near0 | (np.abs(x[:, 0] - 10) < 1))
  np.testing.assert_array_equal(x, targets.sample_points(pts, 2000, seed=1, spread=0.1))
  many = np.stack([np.arange(12.0), np.arange(12.0) % 5], axis=1)
  np.testing.assert_array_equal(targets.sample_points(many, 99, spread=0), many.astype(np.float32))
  with pytest.raises(DataError, match="at least 10"):
    targets.sample_points(pts, 100, spread=0)
