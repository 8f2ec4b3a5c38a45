"""Views of models fitted to images (the digits, or any table whose rows are the pixels of small
images, row by row): arrays and plotly figures, pure (no Streamlit).

:func:`image_views` draws what the figures show, from any fitted model whose base and data have
the same dimension: base samples and their images under the map (the same samples, in order),
each sample with its nearest training image, a straight path between two base points mapped
through the map (for cmm the base e^{-w} is log-concave, so the segment stays inside it), and
training images for reference. Each figure is ONE heatmap: the images tiled with a blank pixel
between them, so a grid of 32 images costs what one picture costs.

>>> view = image_views(fitted, data, shape=(8, 8), seed=0)
>>> base_fig, mapped_fig = base_and_mapped_figures(view)
>>> nearest_fig = nearest_figure(view)
>>> path_fig = interpolation_figure(view)
>>> data_fig = grid_figure(view["data"], (8, 8), title="training digits", value_range=view["data_range"])
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from cmm_core.viz.geometry import as_points, subsample_index

__all__ = ["tile", "grid_figure", "image_views", "base_and_mapped_figures", "nearest_figure",
           "interpolation_figure", "nearest_rows", "infer_shape", "candidate_shapes", "mask_preset",
           "brush_figure", "mask_from_selection", "inpainting_figure", "MASKS", "BRUSH", "N_GRID",
           "N_PATH"]

N_GRID = 32      # base samples (and their images) in a grid
N_NEAREST = 8    # samples shown with their nearest training image
N_PATH = 10      # images along the interpolation path
GAP = 1          # blank pixels between tiles
_INK = [[0.0, "#ffffff"], [1.0, "#111111"]]  # low values white, high values ink (pixel counts)
_HEIGHT_PER_ROW = 70


def infer_shape(d: int) -> Optional[tuple[int, int]]:
  """``(s, s)`` when ``d = s^2`` with ``s >= 4`` (a square image), else None."""
  s = int(round(np.sqrt(d)))
  return (s, s) if s * s == d and s >= 4 else None


def candidate_shapes(d: int, min_side: int = 2) -> list[tuple[int, int]]:
  """Every ``(rows, columns)`` with ``rows x columns = d`` and both sides ``>= min_side``, the
  squarest first (then fewer rows first): the image shapes ``d`` pixels can have."""
  d = int(d)
  shapes = [(h, d // h) for h in range(max(1, min_side), d + 1) if d % h == 0 and d // h >= min_side]
  return sorted(shapes, key=lambda s: (abs(s[0] - s[1]), s[0]))


def _check_shape(shape: Sequence[int], d: int) -> tuple[int, int]:
  shape = tuple(int(v) for v in shape)
  if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != d:
    raise ValueError(f"an image shape (rows, columns) with rows x columns = {d} is needed, got {shape}")
  return shape


def tile(images, shape: Sequence[int], n_cols: int, gap: int = GAP) -> np.ndarray:
  """Images ``[m, h*w]`` (row-major pixels) tiled ``n_cols`` to a row: float64
  ``[rows*(h+gap)-gap, n_cols*(w+gap)-gap]``, NaN between tiles and in empty slots."""
  images = np.asarray(images, dtype=np.float64)
  if images.ndim != 2:
    raise ValueError(f"images must be [m, h*w], got shape {images.shape}")
  h, w = _check_shape(shape, images.shape[1])
  m, n_cols = images.shape[0], max(1, int(n_cols))
  n_rows = max(1, -(-m // n_cols))
  out = np.full((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap), np.nan)
  for k in range(m):
    r, c = divmod(k, n_cols)
    out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = images[k].reshape(h, w)
  return out


def grid_figure(images, shape: Sequence[int], *, title: str = "", n_cols: int = 8,
                value_range: Optional[Sequence[float]] = None,
                hover: Optional[Sequence[str]] = None) -> go.Figure:
  """Images ``[m, h*w]`` as one tiled heatmap, ink dark on white, row 0 at the top.

  Args:
    value_range: the values drawn white and black (default: the images' own 1st and 99th
      percentiles, so a base far from the data's units still shows its structure).
    hover: a text per image (shown on hover over its pixels).
  """
  images = np.asarray(images, dtype=np.float64)
  h, w = _check_shape(shape, images.shape[1])
  z = tile(images, (h, w), n_cols)
  finite = images[np.isfinite(images)]
  if value_range is None:
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
  else:
    lo, hi = (float(v) for v in value_range)
  hi = hi if hi > lo else lo + 1.0
  text = None
  if hover is not None:
    text = np.full(z.shape, "", dtype=object)
    for k, t in enumerate(hover[: images.shape[0]]):
      r, c = divmod(k, max(1, int(n_cols)))
      text[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = t
  fig = go.Figure(go.Heatmap(
      z=z, zmin=lo, zmax=hi, colorscale=_INK, showscale=False, hoverongaps=False,
      text=text, hovertemplate=("%{text}<br>" if text is not None else "") + "value %{z:.3g}<extra></extra>"))
  n_rows = z.shape[0] // (h + GAP) + 1
  fig.update_layout(title=dict(text=title, font=dict(size=14)), template="plotly_white",
                    height=60 + _HEIGHT_PER_ROW * n_rows * h / 8, margin=dict(l=10, r=10, t=40, b=10))
  fig.update_xaxes(visible=False, constrain="domain")
  fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
  return fig


def nearest_rows(samples, train, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """For each sample ``[m, d]``, the index of its nearest training row ``[n, d]`` (Euclidean)
  and the distance: ``(int [m], float [m])``; blocks of ``chunk`` samples bound the memory."""
  samples = np.asarray(samples, dtype=np.float64)
  train = np.asarray(train, dtype=np.float64)
  sq = np.sum(train ** 2, 1)
  idx, dist = [], []
  for i in range(0, samples.shape[0], chunk):
    s = samples[i:i + chunk]
    d2 = np.sum(s ** 2, 1)[:, None] - 2 * s @ train.T + sq[None, :]
    j = np.argmin(d2, 1)
    idx.append(j)
    dist.append(np.sqrt(np.maximum(d2[np.arange(len(j)), j], 0.0)))
  if not idx:
    return np.zeros(0, int), np.zeros(0)
  return np.concatenate(idx), np.concatenate(dist)


def image_views(fitted, data, shape: Sequence[int], *, seed: int = 0, n_grid: int = N_GRID,
                n_path: int = N_PATH) -> dict:
  """What the image figures show, for a model whose base and data share the dimension ``h*w``.

  Returns ``{"shape", "base" [n_grid, d], "mapped" [n_grid, d] (the same samples mapped, in
  order), "nearest" [k, d] (the training row nearest to each of the first k mapped samples),
  "nearest_dist" [k], "nearest_typical" (the median distance of a training row to its nearest
  other training row: the scale to read those distances against), "path_base" [n_path, d], "path"
  [n_path, d] (the segment between two base samples and its image), "data" [n_grid, d] (training
  rows, seeded), "data_range" (0 to the data's 99.9th percentile: the range every data-space grid
  is drawn in), "n_nonfinite"}``.

  Raises:
    ValueError: a shape that does not match the dimension, or a model whose base has another
      dimension than the data (a generator's latent).
  """
  data = as_points(data)
  d = data.shape[1]
  shape = _check_shape(shape, d)
  base = np.asarray(fitted.sample_base(n_grid, seed=seed), dtype=np.float64)
  if base.shape[1] != d:
    raise ValueError(f"the model's base has {base.shape[1]} dimension(s) and the images {d}: "
                     "base and mapped grids need the same dimension")
  mapped = np.asarray(fitted.transport(base), dtype=np.float64)
  ok = np.all(np.isfinite(base), 1) & np.all(np.isfinite(mapped), 1)
  k = min(N_NEAREST, int(ok.sum()))
  near_idx, near_dist = nearest_rows(mapped[ok][:k], data)
  ref = data[subsample_index(data.shape[0], min(500, data.shape[0]), seed=seed)]
  typical = float(np.median(_second_nearest(ref, data))) if ref.shape[0] > 1 else float("nan")
  ends = base[ok][:2] if ok.sum() >= 2 else base[:2]
  t = np.linspace(0.0, 1.0, n_path)[:, None]
  path_base = (1 - t) * ends[0] + t * ends[-1]
  path = np.asarray(fitted.transport(path_base), dtype=np.float64)
  rows = data[subsample_index(data.shape[0], min(n_grid, data.shape[0]), seed=seed)]
  return {"shape": shape, "base": base, "mapped": mapped, "nearest": data[near_idx],
          "nearest_dist": near_dist, "nearest_typical": typical, "path_base": path_base,
          "path": path, "data": rows,
          "data_range": (0.0, float(np.percentile(data, 99.9))) if data.min() >= 0
          else tuple(np.percentile(data, [0.1, 99.9]).tolist()),
          "n_nonfinite": int((~ok).sum())}


def _second_nearest(points: np.ndarray, data: np.ndarray, chunk: int = 512) -> np.ndarray:
  """Distance from each of ``points`` (rows of ``data``) to its nearest OTHER row of ``data``."""
  sq = np.sum(data ** 2, 1)
  out = []
  for i in range(0, points.shape[0], chunk):
    s = points[i:i + chunk]
    d2 = np.maximum(np.sum(s ** 2, 1)[:, None] - 2 * s @ data.T + sq[None, :], 0.0)
    out.append(np.sqrt(np.sort(d2, 1)[:, 1]))
  return np.concatenate(out)


def base_and_mapped_figures(view: dict, *, base_title: str = "base samples",
                            map_title: str = "their images under the map",
                            n_cols: int = 8) -> tuple[go.Figure, go.Figure]:
  """The base samples and the same samples mapped, in the same order (tile k is sample k). The
  base is drawn in its own range (a Gaussian base is not in pixel units); the mapped grid in
  the data's."""
  hover = [f"sample {k + 1}" for k in range(view["base"].shape[0])]
  return (grid_figure(view["base"], view["shape"], title=base_title, n_cols=n_cols, hover=hover),
          grid_figure(view["mapped"], view["shape"], title=map_title, n_cols=n_cols,
                      value_range=view["data_range"], hover=hover))


def nearest_figure(view: dict) -> go.Figure:
  """Top row: model samples; bottom row: the training image nearest to each, with the distance
  on hover (copies of training images would sit at distance 0; ``nearest_typical`` is how far a
  training image is from its nearest other one)."""
  k = view["nearest"].shape[0]
  both = np.concatenate([view["mapped"][np.all(np.isfinite(view["mapped"]), 1)][:k], view["nearest"]])
  hover = ([f"sample {i + 1}: nearest training image at distance {dd:.3g}"
            for i, dd in enumerate(view["nearest_dist"])]
           + [f"nearest training image to sample {i + 1}" for i in range(k)])
  typical = view["nearest_typical"]
  title = ("samples (top), nearest training images (bottom)<br>"
           f"median distance {np.median(view['nearest_dist']):.3g}"
           + (f"; training to training {typical:.3g}" if np.isfinite(typical) else ""))
  return grid_figure(both, view["shape"], title=title, n_cols=max(1, k),
                     value_range=view["data_range"], hover=hover)


def interpolation_figure(view: dict, *, base_title: str = "straight path between two base points") -> go.Figure:
  """The path in the base (top row) and its image under the map (bottom row)."""
  n = view["path"].shape[0]
  hover = [f"base, t = {t:.2f}" for t in np.linspace(0, 1, n)] + [
      f"mapped, t = {t:.2f}" for t in np.linspace(0, 1, n)]
  base = view["path_base"]
  lo, hi = np.percentile(view["base"][np.isfinite(view["base"])], [1, 99]) if np.isfinite(view["base"]).any() else (0, 1)
  scaled = (base - lo) / max(hi - lo, 1e-12) * (view["data_range"][1] - view["data_range"][0]) + view["data_range"][0]
  both = np.concatenate([scaled, view["path"]])
  return grid_figure(both, view["shape"], title=f"{base_title} (top) and its image under the map (bottom)",
                     n_cols=n, value_range=view["data_range"], hover=hover)


MASKS = ("bottom half hidden", "top half hidden", "right half hidden", "left half hidden",
         "random half hidden")


def mask_preset(shape: Sequence[int], name: str, seed: int = 0) -> np.ndarray:
  """A preset mask of an image: bool ``[h*w]``, True where the pixel is observed (kept)."""
  h, w = (int(v) for v in shape)
  rows, cols = np.divmod(np.arange(h * w), w)
  if name == "bottom half hidden":
    return rows < h // 2
  if name == "top half hidden":
    return rows >= h // 2
  if name == "right half hidden":
    return cols < w // 2
  if name == "left half hidden":
    return cols >= w // 2
  if name == "random half hidden":
    keep = np.zeros(h * w, bool)
    keep[np.random.default_rng(seed).choice(h * w, (h * w) // 2, replace=False)] = True
    return keep
  raise ValueError(f"unknown mask {name!r}; one of {', '.join(MASKS)}")


BRUSH = "pixels I select (box or lasso)"  # the mask the user paints on the image (Train page)


def brush_figure(image, shape: Sequence[int], hidden, *, value_range: Sequence[float]) -> go.Figure:
  """One image ``[d]`` with a selectable marker on every pixel: selecting pixels with the box or
  lasso tool (the page reads the selection, :func:`mask_from_selection`) hides them. ``hidden``:
  bool ``[d]``, the pixels hidden so far, drawn blank with a red cross."""
  image = np.asarray(image, dtype=np.float64).reshape(-1)
  hidden = np.asarray(hidden, bool).reshape(-1)
  h, w = _check_shape(shape, image.size)
  fig = grid_figure(np.where(hidden, np.nan, image)[None], (h, w), n_cols=1, value_range=value_range,
                    title="pixels to hide: box or lasso")
  rows, cols = np.divmod(np.arange(h * w), w)
  color = np.where(hidden, "#d62728", "rgba(0,0,0,0.08)").tolist()  # hidden red, kept faint
  fig.add_trace(go.Scatter(
      x=cols, y=rows, mode="markers", showlegend=False,
      marker=dict(size=14, symbol=np.where(hidden, "x-thin", "square-open").tolist(), color=color,
                  line=dict(width=2, color=color)),
      hovertemplate="row %{y}, column %{x}<extra></extra>"))
  fig.update_layout(dragmode="lasso", height=120 + 32 * h, width=120 + 32 * w)
  return fig


def mask_from_selection(points: Sequence[dict], shape: Sequence[int]) -> np.ndarray:
  """The observed-pixel mask, bool ``[h*w]`` (True = kept), from a plotly selection of the brush
  figure's pixel markers (``[{"x": column, "y": row, ...}, ...]``): the selected pixels are hidden;
  points outside the image are ignored."""
  h, w = (int(v) for v in shape)
  keep = np.ones(h * w, bool)
  for pt in points or ():
    try:
      r, c = int(round(float(pt["y"]))), int(round(float(pt["x"])))
    except (KeyError, TypeError, ValueError):
      continue
    if 0 <= r < h and 0 <= c < w:
      keep[r * w + c] = False
  return keep


def inpainting_figure(original, mask, rows: Sequence[tuple], shape: Sequence[int], *,
                      value_range: Sequence[float], title: str = "") -> go.Figure:
  """The image to complete, what is observed (hidden pixels blank), then one row per completer.

  Args:
    original: ``[d]`` the full image; mask: bool ``[d]``, True = observed.
    rows: ``[(name, completions [k, d]), ...]``, e.g. the model's and a Gaussian's.
  """
  original = np.asarray(original, dtype=np.float64).reshape(-1)
  mask = np.asarray(mask, bool).reshape(-1)
  k = max([1] + [np.asarray(c).shape[0] for _, c in rows])
  n_cols = max(2, k)
  tiles, hover = [], []
  masked = np.where(mask, original, np.nan)
  header = [original, masked] + [np.full_like(original, np.nan)] * (n_cols - 2)
  tiles += header
  hover += ["the image (held out)", "what the models see (hidden pixels blank)"] + [""] * (n_cols - 2)
  for name, comps in rows:
    comps = np.asarray(comps, dtype=np.float64).reshape(-1, original.size)
    for j in range(n_cols):
      tiles.append(comps[j] if j < comps.shape[0] else np.full_like(original, np.nan))
      hover.append(f"{name}: completion {j + 1}" if j < comps.shape[0] else "")
  names = " · ".join(f"row {i + 2}: {name}" for i, (name, _) in enumerate(rows))
  return grid_figure(np.stack(tiles), shape, n_cols=n_cols, value_range=value_range, hover=hover,
                     title=title or f"row 1: the image, what is observed · {names}")
