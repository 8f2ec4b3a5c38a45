"""AppTests import the app's modules as ``streamlit run`` does: the app's folder on the path; and
tests/ too, for the shared small fits (tests/small_fits.py)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))
