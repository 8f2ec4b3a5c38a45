"""The app's persistent compilation cache: where it lives, how it is turned off, and that a
process using it writes compiled programs there."""

import os
import pathlib
import subprocess
import sys

from cmm_core import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("CMM_CACHE_DIR", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert compile_cache.cache_dir() == tmp_path / ".cache" / "cmm_core" / "jax"
  monkeypatch.setenv("CMM_CACHE_DIR", str(tmp_path / "mine"))
  assert compile_cache.cache_dir() == tmp_path / "mine"
  monkeypatch.setenv("CMM_CACHE_DIR", "OFF")
  assert compile_cache.cache_dir() is None
  monkeypatch.setenv("CMM_CACHE_DIR", str(tmp_path / "mine"))
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "theirs"))  # set by the user: theirs wins
  assert compile_cache.cache_dir() is None


def test_a_process_writes_its_compiled_programs_to_the_cache(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env.update(CMM_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
  script = (
      "from cmm_core import compile_cache\n"
      "compile_cache.MIN_COMPILE_SECONDS = 0.0\n"
      "path = compile_cache.enable()\n"
      "assert compile_cache.enable() == path\n"
      "import jax, jax.numpy as jnp\n"
      "assert jax.config.jax_compilation_cache_dir == str(path)\n"
      "cap = compile_cache.MAX_CACHE_BYTES if compile_cache.capped() else -1\n"
      "assert jax.config.jax_compilation_cache_max_size == cap\n"
      "jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()\n")
  subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120, cwd=ROOT)
  assert any((tmp_path / "cache").iterdir())


def test_an_unwritable_folder_leaves_the_cache_off(monkeypatch, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("CMM_CACHE_DIR", str(blocker / "cache"))
  assert compile_cache.enable() is None
