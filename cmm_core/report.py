"""Handouts: one self-contained HTML file with a page's figures, settings, metrics and link.

The file embeds plotly.js once (about 4.6 MB), so it opens offline in any browser with every figure
interactive (zoom, hover, the camera button saves a figure as SVG). Pure: figures in, text out; the
pages only offer the result as a download.

>>> html = report.html_report("cmm on two_moons", target="two_moons (n=4096, seed=0)",
...                           sections=[("panels", [fig_base, fig_map, fig_samples])],
...                           settings={"model": "cmm", "steps": 1000}, link="https://...")
"""

from __future__ import annotations

import datetime
import html as html_lib
import json
import math
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["html_report", "figure_config", "fit_sections"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1400px; padding: 0 1rem; color: #1f2430; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #555; font-size: 0.9rem; }
.row { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.row > div.fig { flex: 0 0 auto; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f5f6f8; }
code { word-break: break-all; background: #f5f6f8; padding: 0.1rem 0.3rem; }
"""


def figure_config(filename: str = "figure", fmt: str = "svg") -> dict:
  """Plotly's config for a figure whose camera button saves ``filename.fmt`` (``"svg"``, ``"png"``)."""
  if fmt not in ("svg", "png"):
    raise ValueError(f"fmt must be 'svg' or 'png', got {fmt!r}")
  return {"displaylogo": False,
          "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2}}


def fit_sections(fitted, data, *, columns=None, n_points: int = 1000) -> list:
  """The figures of one fit as report sections: the three panels (base, map, samples against
  ``data`` ``[n, d]``), the model's own views (:mod:`cmm_core.viz.registry`) and up to four
  training curves."""
  from cmm_core.viz import figures, panels, registry
  sections = []
  d = int(np.asarray(data).shape[1])
  if fitted.config.get("latent_dim") in (None, d):
    view = panels.panel_data(fitted, data, n_samples=n_points, seed=0, dims=(0, 1), labels=columns)
    sections.append(("base, map and samples", list(figures.panel_figures(view, model=fitted.model))))
  sections += [(title, [fig]) for title, fig in registry.model_figures(fitted, data, seed=0)]
  hist = panels.history_arrays(fitted.history)
  curves = [k for k in hist if k not in ("step", "seconds")][:4]
  if curves:
    sections.append(("training", [figures.loss_figure(hist, metric=k, title=f"training {k}")
                                  for k in curves]))
  return sections


def _text(v) -> str:
  if isinstance(v, float):
    return "n/a" if not math.isfinite(v) else f"{v:.4g}"
  if isinstance(v, (list, tuple)):
    return ", ".join(_text(x) for x in v)
  if isinstance(v, Mapping):
    return json.dumps(v, default=str, sort_keys=True)
  return str(v)


def _table(rows: Sequence[Mapping]) -> str:
  """An HTML table of ``rows`` (dicts; the columns are the keys, in first-seen order)."""
  columns: list = []
  for r in rows:
    columns += [k for k in r if k not in columns]
  head = "".join(f"<th>{html_lib.escape(str(c))}</th>" for c in columns)
  body = "".join("<tr>" + "".join(f"<td>{html_lib.escape(_text(r.get(c, '')))}</td>" for c in columns)
                 + "</tr>" for r in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _slug(text: str) -> str:
  return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:60] or "figure"


def html_report(title: str, *, sections: Iterable[tuple], target: str = "",
                settings: Optional[Mapping] = None, metrics: Optional[Sequence[Mapping]] = None,
                link: Optional[str] = None, notes: Sequence[str] = ()) -> str:
  """A self-contained HTML page (a ``str``) for a handout.

  Args:
    title: the page's heading, e.g. ``"cmm on two_moons"``.
    sections: ``(heading, [plotly figures])`` pairs; each section's figures sit side by side.
    target: the target's one-line description.
    settings: ``{name: value}`` shown as a table (model, steps, seed, hyper-parameters, ...).
    metrics: rows of a metrics table (one dict per model or per fit).
    link: the shareable link that reopens the experiment in the app.
    notes: sentences shown under the heading (what the figures show, warnings).

  Raises:
    ValueError: a section that is not a (heading, figures) pair or holds something other than a
      plotly figure.
  """
  import plotly.offline

  parts = [f"<h1>{html_lib.escape(title)}</h1>"]
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  meta = [f"made {stamp} with cmm_core"]
  if target:
    meta.insert(0, f"target: {html_lib.escape(target)}")
  parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
  parts += [f"<p>{html_lib.escape(n)}</p>" for n in notes]
  if link:
    safe = html_lib.escape(link, quote=True)
    parts.append(f'<p>Open this experiment in the app: <a href="{safe}"><code>{safe}</code></a></p>')
  if settings:
    parts.append("<h2>settings</h2>" + _table([{"setting": k, "value": v} for k, v in settings.items()]))
  if metrics:
    parts.append("<h2>metrics</h2>" + _table(list(metrics)))
  for section in sections:
    if not (isinstance(section, tuple) and len(section) == 2):
      raise ValueError(f"a section must be a (heading, figures) pair, got {section!r:.80}")
    heading, figs = section
    divs = []
    figs = list(figs)
    width = int(min(1350 / max(len(figs), 1), 1100))  # a row of figures fills the page's width
    for i, fig in enumerate(figs):
      if not hasattr(fig, "to_html"):
        raise ValueError(f"section {heading!r}: item {i} is not a plotly figure")
      name = _slug(f"{heading}_{i + 1}")
      divs.append('<div class="fig">' + fig.to_html(
          full_html=False, include_plotlyjs=False, config=figure_config(name),
          default_width=f"{width}px") + "</div>")
    parts.append(f"<h2>{html_lib.escape(str(heading))}</h2><div class=\"row\">{''.join(divs)}</div>")
  script = plotly.offline.get_plotlyjs()
  return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{html_lib.escape(title)}</title><style>{_STYLE}</style>"
          f"<script type=\"text/javascript\">{script}</script></head>"
          f"<body>{''.join(parts)}</body></html>\n")
