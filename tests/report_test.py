"""Handouts (cmm_core.report): one self-contained HTML file."""

import re

import numpy as np
import plotly.graph_objects as go
import pytest

from cmm_core import report


def _fig(title):
  return go.Figure(go.Scatter(x=np.arange(5), y=np.arange(5) ** 2), layout={"title": title})


def test_report_holds_every_figure_table_and_link_and_needs_no_network():
  html = report.html_report(
      "cmm on <two_moons>", sections=[("panels", [_fig("base"), _fig("map"), _fig("samples")]),
                                      ("training", [_fig("loss")])],
      target="two_moons (n=4096, seed=0)", settings={"model": "cmm", "hidden": (16, 16)},
      metrics=[{"model": "cmm", "held-out NLL": 2.9123456, "energy distance": float("nan")}],
      link="http://localhost:8501/train?target=two_moons&model=cmm", notes=["a <b>note</b>"])
  assert html.startswith("<!DOCTYPE html>") and html.count('class="fig"') == 4
  assert "cmm on &lt;two_moons&gt;" in html and "a &lt;b&gt;note&lt;/b&gt;" in html  # escaped
  assert 'href="http://localhost:8501/train?target=two_moons&amp;model=cmm"' in html
  assert "<td>2.912</td>" in html and "<td>n/a</td>" in html and "<td>16, 16</td>" in html
  # plotly.js is inline, once: no <script src=...> to fetch, so the file opens offline
  assert not re.search(r"<script[^>]*\bsrc=", html)
  assert html.count("Plotly.newPlot") == 4 and len(html) > 3_000_000
  assert '"format": "svg"' in html or '"format":"svg"' in html  # the camera button saves SVG


def test_bad_sections_are_refused():
  with pytest.raises(ValueError, match="pair"):
    report.html_report("x", sections=[_fig("a")])
  with pytest.raises(ValueError, match="not a plotly figure"):
    report.html_report("x", sections=[("panels", ["not a figure"])])
  with pytest.raises(ValueError, match="svg"):
    report.figure_config("f", fmt="jpeg")


def test_a_fits_sections_hold_its_panels_own_views_and_curves():
  import small_fits  # tests/small_fits.py: the shared small maflow fit
  data, fitted = small_fits.data(), small_fits.fit("maflow")
  sections = report.fit_sections(fitted, data, n_points=200)
  titles = [t for t, _ in sections]
  assert titles[0] == "base, map and samples" and len(sections[0][1]) == 3
  assert titles[-1] == "training" and 1 <= len(sections[-1][1]) <= 4
  assert len(sections) >= 3  # maflow's own views (animation, density over time, warped grid)
  html = report.html_report("t", sections=sections)
  assert html.count("Plotly.newPlot") == sum(len(f) for _, f in sections)
