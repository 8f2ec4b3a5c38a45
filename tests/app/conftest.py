"""AppTests import the app's modules as ``streamlit run`` does: the app's folder on the path."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))
