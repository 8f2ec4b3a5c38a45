"""The command line (`python -m cmm_core ...`), end to end in a subprocess, and its error paths."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import cmm_core as cc
import small_fits  # tests/small_fits.py
from cmm_core import cli, io

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 600


def _run(*args, cwd=None):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("CMM_CORE_DEBUG", None)
  return subprocess.run([sys.executable, "-m", "cmm_core", *map(str, args)], capture_output=True,
                        text=True, timeout=TIMEOUT, cwd=cwd or ROOT, env=env)


def _read_csv(path_or_text) -> tuple[list, np.ndarray]:
  text = pathlib.Path(path_or_text).read_text() if isinstance(path_or_text, pathlib.Path) else path_or_text
  header, *rows = text.strip().splitlines()
  return header.split(","), np.array([[float(v) for v in r.split(",")] for r in rows])


@pytest.fixture(scope="module")
def fitted_file(tmp_path_factory):
  """One small fit through the CLI (maflow compiles fastest), shared by the tests below."""
  out = tmp_path_factory.mktemp("cli") / "model.msgpack"
  proc = _run("fit", "--model", "maflow", "--target", "two_moons", "--n", "256", "--steps", "20",
              "--seed", "1", "--param", "noise=0.05", "--hyper", "batch_size=64",
              "--hyper", "standardize=true", "--out", out)
  return out, proc


def test_fit_writes_a_model_and_reports(fitted_file):
  out, proc = fitted_file
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  assert "step 20/20" in proc.stderr and "loss" in proc.stderr  # progress on stderr
  summary = proc.stdout.strip().splitlines()
  assert len(summary) == 1
  for word in ("model maflow", "steps 20/20", "seconds", "status done", str(out)):
    assert word in summary[0]
  fitted = cc.load(out)
  assert fitted.model == "maflow" and fitted.dim == 2
  assert fitted.config["batch_size"] == 64 and fitted.config["standardize"] is True
  assert fitted.history[-1]["step"] == 20 and fitted.info["status"] == "done"
  assert "two_moons" in fitted.info["trained_on"] and "noise=0.05" in fitted.info["trained_on"]


def test_sample_is_reproducible_and_matches_the_library(fitted_file, tmp_path, capsys):
  out, _ = fitted_file
  csv = tmp_path / "samples.csv"
  a = _run("sample", out, "-n", "300", "--seed", "7", "--out", csv)
  assert a.returncode == 0, a.stderr
  header, pts = _read_csv(csv)
  assert header == ["x1", "x2"] and pts.shape == (300, 2)
  assert np.all(np.isfinite(pts))
  from cmm_core import cli   # CSV to stdout, in this process (a second one costs 5 s of start-up)
  capsys.readouterr()
  assert cli.main(["sample", str(out), "-n", "300", "--seed", "7"]) == 0
  assert capsys.readouterr().out == csv.read_text()
  expected = cc.load(out).sample(300, seed=7)
  np.testing.assert_array_equal(pts.astype(np.float32), expected)
  # the loaded CSV is a valid data file for the library, too
  np.testing.assert_array_equal(cc.targets.load_file(csv), expected)


def test_sample_base_npy_and_info(fitted_file, tmp_path):
  out, _ = fitted_file
  npy = tmp_path / "base.npy"
  rc = cli.main(["sample", str(out), "-n", "50", "--seed", "2", "--base", "--out", str(npy)])
  assert rc == 0
  np.testing.assert_array_equal(np.load(npy), cc.load(out).sample_base(50, seed=2))


def test_info_and_list(fitted_file, capsys):
  out, _ = fitted_file
  assert cli.main(["info", str(out)]) == 0
  text = capsys.readouterr().out
  assert "model: maflow" in text and "batch_size: 64" in text and "status: done" in text
  assert "last record (" in text and "step: 20" in text
  assert cli.main(["list"]) == 0
  text = capsys.readouterr().out
  for m in cc.models.names():
    assert cc.models.LABELS[m] in text
  for t in cc.targets.names():
    assert t in text
  assert "noise=0.5 [0.01, 2]" in text  # eight_gaussians' parameter with its range
  # what fit-energy takes: its models (cmm's energy route adds its symmetry) and the energies
  for e in cc.energies.names():
    assert f"  {e} " in text
  assert "radius=2" in text and "symmetry" in text
  assert cli.main(["list", "--json"]) == 0
  listed = json.loads(capsys.readouterr().out)
  assert set(listed["energy_models"]) == {"maflow", "cmm"} and "ising" in listed["energies"]
  assert "symmetry" in listed["energy_models"]["cmm"]["hyper"]


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"], ["sample", "--help"],
                                  ["list", "--help"], ["info", "--help"]])
def test_help_exits_zero(args, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(args)
  assert e.value.code == 0
  assert "usage: python -m cmm_core" in capsys.readouterr().out


def test_help_and_errors_in_a_real_process(tmp_path):
  proc = _run("--help")
  assert proc.returncode == 0 and "fit" in proc.stdout and "sample" in proc.stdout
  proc = _run("fit", "--model", "nope", "--steps", "5", "--out", tmp_path / "m.msgpack")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown model 'nope'")
  assert "Traceback" not in proc.stderr and not (tmp_path / "m.msgpack").exists()


def _garbage(tmp_path):
  bad = tmp_path / "bad.msgpack"
  bad.write_bytes(b"not a model at all")
  return bad


def _bad_csv(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("x,y\nfoo,bar\n")
  return bad


@pytest.mark.parametrize("args,needle", [
    ([], "choose a command"),
    (["frobnicate"], "invalid choice"),
    (["fit", "--model", "nope"], "unknown model 'nope'"),
    (["fit", "--target", "nope"], "unknown target 'nope'"),
    (["fit", "--steps", "0"], "positive integer"),
    (["fit", "--steps", "10000000", "--n", "64"], "at most"),
    (["fit", "--seed", "-1"], "non-negative integer"),
    (["fit", "--hyper", "learning_rate"], "NAME=VALUE"),
    (["fit", "--hyper", "nope=3"], "unknown hyper-parameter(s) for 'cmm': nope"),
    (["fit", "--hyper", "steps=3"], "unknown hyper-parameter(s)"),
    (["fit", "--hyper", "learning_rate=5", "--n", "64"], "learning_rate"),
    (["fit", "--hyper", "hidden=[64,wide]", "--n", "64"], "hidden"),
    (["fit", "--param", "nope=1", "--n", "64"], "no parameter 'nope'"),
    (["fit", "--param", "noise=50", "--n", "64"], "noise"),
    (["fit", "--n", "0"], "positive integer"),
    (["fit", "--data", "{tmp}/missing.csv"], "file not found"),
    (["fit", "--data", "{bad_csv}"], "bad.csv"),
    (["fit", "--data", "{bad_csv}", "--target", "two_moons"], "either --target or --data"),
    (["fit", "--out", "{tmp}/no/such/folder/m.msgpack"], "does not exist"),
    (["fit", "--out", "{tmp}/m.txt"], ".msgpack"),
    (["sample", "{tmp}/missing.msgpack"], "model file not found"),
    (["sample", "{garbage}"], "not a cmm_core model file"),
    (["sample", "{garbage}", "-n", "0"], "positive integer"),
    (["sample", "{garbage}", "-n", "999999999"], "n must be an integer"),
    (["sample", "{garbage}", "--out", "{tmp}/s.json"], ".csv or .npy"),
    (["info", "{garbage}"], "not a cmm_core model file"),
    (["info", "{tmp}"], "is a folder"),
    (["fit", "--link", "http://localhost:8501/"], "no settings found"),
    (["fit", "--link", "train?target=two_moons", "--target", "rings"], "brings its own target"),
    (["fit", "--link", "compare?target=two_moons&models=cmm,mm"], "pick one with --model"),
    (["fit", "--link", "train?model=cmm&steps=5"], "names no target"),
    (["fit", "--link", "energy?energy=ring&fit=cmm"], "fit-energy --link"),
    (["fit-energy", "--link", "energy?energy=ring&fit=cmm,maflow"], "pick one with --model"),
    (["fit-energy", "--link", "train?target=two_moons", "--steps", "3"], "not a Sample an energy link"),
])
def test_errors_are_one_line_and_exit_2(args, needle, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a default --out would land here (none is written: all fail first)
  subs = {"tmp": tmp_path, "garbage": _garbage(tmp_path), "bad_csv": _bad_csv(tmp_path)}
  argv = [a.format(**subs) for a in args]
  assert cli.main(argv) == 2
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
  assert needle in lines[0]
  assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("text,value", [
    ("3", 3), ("-2", -2), ("1e-3", 1e-3), ("0.5", 0.5), ("true", True), ("False", False),
    ("null", None), ("[64, 64]", [64, 64]), ("(32,)", [32]), ("64,64", [64, 64]),
    ("relu", "relu"), ('"data"', "data"), ("a,b", "a,b"),
])
def test_parse_value(text, value):
  got = cli.parse_value(text)
  assert got == value and type(got) is type(value)


@pytest.mark.slow  # session 47, to keep the default suite under 8 minutes: 10 s
def test_round_trip_through_bytes_for_the_other_models():
  # tests/io_test.py covers save/load for cmm, mm and brenier; the app's path is to_bytes/from_bytes.
  # the shared small fits: the round trip needs a fit with a history, not a good one
  for model in ("maflow", "sdot"):
    fitted = small_fits.fit(model)  # tests/small_fits.py
    loaded = io.from_bytes(io.to_bytes(fitted))
    assert type(loaded) is type(fitted)
    assert json.dumps(loaded.config, sort_keys=True) == json.dumps(fitted.config, sort_keys=True)
    assert loaded.history == fitted.history
    assert json.dumps(loaded.info, sort_keys=True) == json.dumps(fitted.info, sort_keys=True)
    np.testing.assert_array_equal(loaded.sample(200, seed=3), fitted.sample(200, seed=3))
    np.testing.assert_array_equal(loaded.sample_base(200, seed=3), fitted.sample_base(200, seed=3))


def test_samples_csv_keeps_float32_values():
  pts = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32) * 1e3
  header, back = _read_csv(io.points_csv(pts).decode())
  assert header == ["x1", "x2", "x3"]
  np.testing.assert_array_equal(back.astype(np.float32), pts)
  header, back = _read_csv(io.points_csv(pts[:, 0]).decode())
  assert header == ["x1"] and back.shape == (40, 1)


def test_fit_from_a_shared_link_matches_the_library(tmp_path, capsys):
  # the Train page's link: target (with its own draw seed), model, steps, seed and hyper-parameters
  link = ("http://localhost:8501/train?target=two_moons&n=256&data_seed=3&t.noise=0.05"
          "&model=maflow&steps=10&seed=2&hp.batch_size=64&unknown=1")
  out = tmp_path / "m.msgpack"
  assert cli.main(["fit", "--link", link, "--out", str(out), "-q"]) == 0
  err = capsys.readouterr().err
  assert "unknown" in err and "ignored" in err  # a refused value is named, not fatal
  fitted = cc.load(out)
  assert fitted.model == "maflow" and fitted.config["batch_size"] == 64
  assert len(fitted.history) and fitted.history[-1]["step"] == 10
  data = cc.targets.make("two_moons", 256, seed=3, noise=0.05)
  expected = cc.fit("maflow", data, steps=10, seed=2, batch_size=64)
  np.testing.assert_allclose(fitted.sample(64, seed=0), expected.sample(64, seed=0), atol=1e-5)
