"""Resource caps (docs/limits.md): each is refused at cap+1 with a message stating the limit, the
cap itself is accepted where that is cheap to check, and the table in docs/limits.md matches the
code."""

import importlib
import io
import math
import pathlib
import re
import struct

import numpy as np
import pytest

import cmm_core as cc
from cmm_core import api, compare, datasets, targets, validation
from cmm_core import io as cio
from cmm_core.errors import DataError
from cmm_core.models import base

ROOT = pathlib.Path(__file__).resolve().parents[1]
X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)


def _message(excinfo, *parts) -> str:
  msg = str(excinfo.value)
  for p in parts:
    assert p in msg, (p, msg)
  return msg


def test_file_bytes(tmp_path):
  cap = targets.MAX_FILE_BYTES
  raw = b" " * (cap + 1)
  with pytest.raises(DataError) as e:
    targets.load_file(raw)
  # just over: the sizes are given in bytes (both would read "50.0 MB")
  _message(e, f"{cap + 1:,} bytes", f"at most 50.0 MB ({cap:,} bytes)")
  with pytest.raises(DataError, match="at most 50.0 MB"):
    targets.load_file(io.BytesIO(raw))
  path = tmp_path / "big.csv"
  with open(path, "wb") as f:  # a sparse file: the size is checked before reading
    f.truncate(cap + 1)
  with pytest.raises(DataError, match="at most 50.0 MB"):
    targets.load_file(path)
  with pytest.raises(DataError, match="empty"):  # at the cap: read, not refused for its size
    targets.load_file(raw[:cap])


def _npy_header(shape: str) -> bytes:
  header = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
  header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def test_array_bytes():
  cap = targets._MAX_ARRAY_BYTES
  with pytest.raises(DataError) as e:
    targets.load_file(_npy_header(f"({cap // 8 + 1},)"))
  _message(e, f"{cap + 8:,} bytes", f"({cap:,} bytes) can be loaded")
  with pytest.raises(DataError, match="truncated"):  # at the cap: not refused for its size
    targets.load_file(_npy_header(f"({cap // 8},)"))


def test_table_columns():
  cap = targets.MAX_TABLE_COLUMNS
  raw = ("\n".join(",".join([str(i)] * (cap + 1)) for i in range(3))).encode()
  with pytest.raises(DataError) as e:
    targets.load_table(raw)
  _message(e, f"{cap + 1} columns", f"at most {cap}")
  raw = ("\n".join(",".join([str(i)] * cap) for i in range(3))).encode()
  assert targets.load_table(raw)[0].shape == (3, cap)


def test_rows():
  # was: a 50 MB CSV of one short column (13 million lines) took a minute and 3.7 GB to read
  cap = targets.MAX_ROWS
  with pytest.raises(DataError) as e:
    targets.load_table(b"1\n" * (cap + 2))  # a header line is allowed on top of the rows
  _message(e, f"{cap + 2:,} lines", f"at most {cap:,} rows")
  with pytest.raises(DataError) as e:
    targets.load_table(_npy_header(f"({cap + 1}, 1)") + bytes(8 * (cap + 1)))
  _message(e, f"{cap + 1:,} rows", f"at most {cap:,} rows")
  table, _ = targets.load_table(_npy_header(f"({cap}, 1)") + bytes(8 * cap))
  assert table.shape == (cap, 1)


def test_dimension_rows_and_values():
  rng = np.random.default_rng(1)
  with pytest.raises(DataError) as e:
    validation.as_dataset(rng.standard_normal((20, validation.MAX_DIM + 1)))
  _message(e, f"{validation.MAX_DIM + 1} columns", f"at most {validation.MAX_DIM}")
  assert validation.as_dataset(rng.standard_normal((20, validation.MAX_DIM))).shape[1] == validation.MAX_DIM
  with pytest.raises(DataError) as e:
    validation.as_dataset(rng.standard_normal((validation.MIN_ROWS - 1, 2)))
  _message(e, f"{validation.MIN_ROWS - 1} row(s)", f"at least {validation.MIN_ROWS}")
  assert validation.as_dataset(rng.standard_normal((validation.MIN_ROWS, 2))).shape[0] == 10
  data = rng.standard_normal((20, 2))
  data[3, 1] = validation.MAX_ABS + 1
  with pytest.raises(DataError) as e:
    validation.as_dataset(data)
  _message(e, "1000001", "|values| <= 1e+06")
  data[3, 1] = -validation.MAX_ABS
  assert validation.as_dataset(data)[3, 1] == -1e6


def test_points_drawn():
  cap = targets.MAX_N
  for draw in (lambda n: targets.make("two_moons", n),
               lambda n: targets.gaussian([0.0], [[1.0]], n),
               lambda n: targets.sample_points([[0.0, 0.0]], n, spread=0.1)):
    with pytest.raises(ValueError) as e:
      draw(cap + 1)
    _message(e, f"[1, {cap}]", str(cap + 1))
  assert targets.make("two_moons", cap).shape == (cap, 2)


def test_columns_fitted_at_once():
  cap = datasets.MAX_COLUMNS
  name = next(n for n in datasets.names() if len(datasets.columns(n)) > cap)
  with pytest.raises(DataError) as e:
    datasets.load(name, columns=list(range(cap + 1)))
  _message(e, f"{cap + 1} columns", f"at most {cap}")
  table = np.random.default_rng(2).standard_normal((20, cap + 1))
  with pytest.raises(DataError, match=f"at most {cap} can be fitted"):
    targets.select_columns(table, max_columns=cap)


def test_steps_and_seed_of_a_fit():
  with pytest.raises(ValueError) as e:
    cc.fit("maflow", X, steps=api.MAX_STEPS + 1)
  _message(e, f"[1, {api.MAX_STEPS}]", str(api.MAX_STEPS + 1))
  with pytest.raises(ValueError) as e:
    cc.fit("maflow", X, steps=1, seed=base.MAX_SEED + 1)
  _message(e, f"[0, {base.MAX_SEED}]", str(base.MAX_SEED + 1))


def test_samples_and_their_seed():
  from cmm_core.models.maflow import MAFlow
  cfg = MAFlow().config
  info = {"dim": 2, "n_data": 0, "status": "done", "message": "", "warnings": []}
  fitted = MAFlow.fitted_cls(config=cfg, params=None, extras={"dim": 2}, info=info)
  with pytest.raises(ValueError) as e:
    fitted.sample_base(base.MAX_SAMPLES + 1)
  _message(e, f"[1, {base.MAX_SAMPLES}]", str(base.MAX_SAMPLES + 1))
  with pytest.raises(ValueError) as e:
    fitted.sample_base(5, seed=base.MAX_SEED + 1)
  _message(e, f"[0, {base.MAX_SEED}]")
  assert fitted.sample_base(base.MAX_SAMPLES, seed=base.MAX_SEED).shape == (base.MAX_SAMPLES, 2)


def test_model_file_bytes(tmp_path):
  cap = cio.MAX_MODEL_BYTES
  path = tmp_path / "big.msgpack"
  with open(path, "wb") as f:  # sparse: cc.load checks the size before reading
    f.truncate(cap + 1)
  with pytest.raises(DataError) as e:
    cc.load(path)
  _message(e, f"{cap + 1:,} bytes", f"the limit is {cap:,} bytes (100 MB)")
  with pytest.raises(DataError, match="the limit is"):
    cio.from_bytes(b"\0" * (cap + 1))
  with pytest.raises(DataError, match="not a cmm_core model file"):  # at the cap: read
    cio.from_bytes(b"\0" * cap)
  with pytest.raises(DataError, match="not found"):  # was FileNotFoundError
    cc.load(tmp_path / "missing.msgpack")


def test_compare_budgets():
  cap = compare.MAX_BUDGET_SECONDS
  with pytest.raises(ValueError, match="at most a day"):
    compare.budget_for("mm", "seconds", cap + 1)
  assert compare.budget_for("mm", "seconds", cap)["seconds"] == cap
  with pytest.raises(ValueError, match=f"\\[1, {api.MAX_STEPS}\\]"):
    compare.budget_for("mm", "steps", api.MAX_STEPS + 1)
  # was OverflowError (int(inf)) and TypeError / an accepted string
  for mode, value in [("steps", math.inf), ("steps", math.nan), ("steps", "30"), ("seconds", "5"),
                      ("seconds", math.nan), ("seconds", [5]), ("steps", None)]:
    with pytest.raises(ValueError, match=mode):
      compare.budget_for("mm", mode, value)


# ----------------------------------------------------------------------------
# docs/limits.md matches the code.
# ----------------------------------------------------------------------------

_ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \| `([\w/.]+\.py)` \|")


def _rows():
  text = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
  rows = [m.groups() for line in text.splitlines() if (m := _ROW.match(line))]
  assert len(rows) >= 15
  return rows


@pytest.mark.parametrize("name, value, path", _rows())
def test_limits_doc_matches_the_code(name, value, path):
  source = (ROOT / path).read_text(encoding="utf-8")
  assigned = re.search(rf"^{name}\s*(?::[^=]*)?=\s*(.+?)(?:\s*#.*)?$", source, re.M)
  assert assigned, f"{name} is not defined in {path}"
  assert assigned.group(1).strip() == value, (name, assigned.group(1), value)
  if path.startswith("cmm_core/"):
    module = importlib.import_module(path[:-3].replace("/", "."))
    expected = eval(value, vars(module))  # noqa: S307  (the doc's own expression)
    assert getattr(module, name) == expected
