"""Sample-quality figures for image data (the digits): a classifier two-sample test, a
nearest-neighbour memorisation check, bits per dimension, a digit classifier to score inpainting,
and a fitted-Gaussian baseline scored with the same figures (docs/image_metrics.md).

>>> train, heldout = target_spec.hold_out(datasets.load("digits"))
>>> mean, cov = gaussian_baseline(train)
>>> image_scores(gaussian_samples(mean, cov, 2000, seed=0), train, heldout)
{'c2st': ..., 'nn_ratio': ...}
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmm_core.errors import DataError

__all__ = ["classifier_two_sample", "nn_distance_ratio", "bits_per_dim", "Classifier", "fit_classifier",
           "gaussian_baseline", "gaussian_samples", "image_scores", "C2ST_MAX_PER_SET", "C2ST_MIN_ROWS"]

C2ST_MAX_PER_SET = 2000  # rows per side the two-sample test uses at most (a seeded subset above)
C2ST_MIN_ROWS = 20       # rows per side it needs at least (10 to train on, 10 to test on)
# The two-sample classifier: two hidden layers of 64 ReLU units. One hidden layer (64 or 128 units)
# scores the fitted Gaussian only 0.65-0.71 against the digits: it does not learn "some pixel is
# out of the data's range", which a second layer can (0.83; docs/image_metrics.md).
C2ST_HIDDEN = (64, 64)
C2ST_STEPS = 1000        # AdamW steps on minibatches of C2ST_BATCH rows (1-2 s for 2 x 1,438 rows)
C2ST_BATCH = 256
C2ST_LEARNING_RATE = 3e-3
C2ST_WEIGHT_DECAY = 1e-2  # decoupled (AdamW)
CLASSIFIER_HIDDEN = (128,)  # the digit classifier: one hidden layer
CLASSIFIER_STEPS = 1000
CLASSIFIER_BATCH = 256
CLASSIFIER_LEARNING_RATE = 3e-3
CLASSIFIER_WEIGHT_DECAY = 1e-2
NN_BLOCK_ENTRIES = 1 << 22  # pairwise distances held at once by nn_distance_ratio (32 MiB in float64)
GAUSSIAN_RIDGE = 1e-6    # times trace(cov) / d, added to the fitted covariance's diagonal


# ----------------------------------------------------------------------------------- input checks

def _rows(x, name: str, *, dim: Optional[int] = None, min_rows: int = 1) -> np.ndarray:
  """``x`` as float32 ``[n, d]``, or a DataError that says what is wrong with it."""
  try:
    arr = np.asarray(x, dtype=np.float32)
  except (TypeError, ValueError) as e:
    raise DataError(f"{name} must be a numeric array [n, d]: {e}") from None
  if arr.ndim != 2:
    raise DataError(f"{name} must be a 2-D array [n, d] (one row per image, flattened); "
                    f"got shape {arr.shape}.")
  if arr.shape[1] == 0:
    raise DataError(f"{name} has no columns.")
  if dim is not None and arr.shape[1] != dim:
    raise DataError(f"{name} has {arr.shape[1]} columns but the other set has {dim}: "
                    "compare images of the same size.")
  if arr.shape[0] < min_rows:
    raise DataError(f"{name} has {arr.shape[0]} rows; at least {min_rows} are needed.")
  if not np.all(np.isfinite(arr)):
    bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
    raise DataError(f"{name} has {bad} row(s) with NaN or infinite values; drop or fix them first.")
  return arr


def _labels(y, n: int) -> np.ndarray:
  try:
    arr = np.asarray(y)
  except (TypeError, ValueError) as e:
    raise DataError(f"labels must be an integer array [n]: {e}") from None
  if arr.ndim != 1 or arr.shape[0] != n:
    raise DataError(f"labels must be an array [{n}] (one per image); got shape {arr.shape}.")
  if arr.dtype.kind not in "iu":
    if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
      raise DataError("labels must be whole numbers 0, 1, 2, ...")
  arr = arr.astype(np.int64)
  if np.any(arr < 0):
    raise DataError("labels must be whole numbers 0, 1, 2, ... (found a negative one).")
  return arr.astype(np.int32)


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Column mean and std ``[d]`` of ``x``; a near-constant column gets std 1 (it is only shifted)."""
  mean = x.mean(axis=0, dtype=np.float64)
  std = x.std(axis=0, dtype=np.float64)
  std = np.where(std > 1e-6 * (1.0 + np.abs(mean)), std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


# ------------------------------------------------------------------------------ a small MLP in jax

def _init_mlp(key, sizes: tuple) -> list:
  keys = jax.random.split(key, len(sizes) - 1)
  return [(jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _mlp(params: list, x):
  """Logits ``[n, out]`` of a ReLU network at ``x [n, d]``."""
  for w, b in params[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = params[-1]
  return x @ w + b


@functools.partial(jax.jit, static_argnames=("sizes", "steps", "batch"))
def _fit_padded(key, x, y, n, learning_rate, weight_decay, *, sizes: tuple, steps: int, batch: int) -> list:
  """Minibatch AdamW on the softmax cross-entropy of integer labels, in one ``lax.scan``.

  Only the first ``n`` (traced) rows of ``x [N, d]``, ``y [N]`` are used: step ``i`` draws ``batch``
  of them with replacement from ``fold_in(key, i)``. Rows past ``n`` are padding, so that one
  compiled loop serves every row count up to ``N``.
  """
  init_key, batch_key = jax.random.split(key)
  params = _init_mlp(init_key, sizes)
  opt = optax.adamw(learning_rate, weight_decay=weight_decay)

  def loss(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(_mlp(p, xb), yb).mean()

  def step(carry, i):
    p, s = carry
    idx = jax.random.randint(jax.random.fold_in(batch_key, i), (batch,), 0, n)
    u, s = opt.update(jax.grad(loss)(p, x[idx], y[idx]), s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
  return params


def _fit_mlp(key, x: np.ndarray, y: np.ndarray, learning_rate: float, weight_decay: float, *,
             sizes: tuple, steps: int, batch: int, pad_to: Optional[int] = None) -> list:
  """Trains an MLP of layer widths ``sizes`` on ``x [n, d]``, ``y [n]``; see :func:`_fit_padded`.

  The rows are padded to ``pad_to`` (default: the next power of two, at least ``batch``) so the
  loop compiles once per size class, not once per row count.
  """
  n = x.shape[0]
  size = pad_to if pad_to is not None else max(batch, 1 << (n - 1).bit_length())
  xp = np.zeros((size, x.shape[1]), np.float32)
  xp[:n] = x
  yp = np.zeros(size, np.int32)
  yp[:n] = y
  params = _fit_padded(key, xp, yp, n, learning_rate, weight_decay, sizes=sizes, steps=steps, batch=batch)
  return jax.tree_util.tree_map(np.asarray, params)


def _predict(params: list, x: np.ndarray) -> np.ndarray:
  """The argmax label int32 ``[n]`` of the trained network at ``x [n, d]``, in numpy (no compilation
  per row count)."""
  for w, b in params[:-1]:
    x = np.maximum(x @ w + b, 0.0)
  w, b = params[-1]
  return np.argmax(x @ w + b, axis=-1).astype(np.int32)


# ------------------------------------------------------------------------------------- the metrics

def classifier_two_sample(samples, reference, *, seed: int = 0) -> float:
  """Classifier two-sample test: the held-out accuracy of a small MLP told to separate two sets.

  Both sets are cut to the same count ``n = min(n_samples, n_reference, C2ST_MAX_PER_SET)``
  (a seeded subset), each split into seeded train/test halves; an MLP (hidden layers
  ``C2ST_HIDDEN``, ``C2ST_STEPS`` AdamW steps on minibatches of ``C2ST_BATCH``, inputs
  standardised with the reference's training-half mean/std) learns to tell the training halves
  apart and is scored on the test halves only. 0.5: the classifier finds no difference; 1.0: fully separable. The figure
  depends on ``n`` (more rows, a stronger classifier): compare figures made with the same counts.
  Its noise at the null is about ``0.5 / sqrt(n)`` (std).

  Args:
    samples: ``[n, d]``, e.g. a model's samples (flattened images).
    reference: ``[m, d]``, e.g. the training rows.
    seed: the subsets, the split and the classifier's initialisation; the result is a function of it.

  Raises:
    DataError: not 2-D, different ``d``, fewer than ``C2ST_MIN_ROWS`` rows, or NaN/inf values.
  """
  x = _rows(samples, "samples", min_rows=C2ST_MIN_ROWS)
  r = _rows(reference, "reference", dim=x.shape[1], min_rows=C2ST_MIN_ROWS)
  n = min(x.shape[0], r.shape[0], C2ST_MAX_PER_SET)
  rng = np.random.default_rng(seed)
  x = x[rng.permutation(x.shape[0])[:n]]
  r = r[rng.permutation(r.shape[0])[:n]]
  half = n // 2
  mean, std = _standardizer(r[:half])
  x_train = (np.concatenate([x[:half], r[:half]]) - mean) / std
  x_test = (np.concatenate([x[half:], r[half:]]) - mean) / std
  y_train = np.repeat(np.array([1, 0], np.int32), half)
  y_test = np.repeat(np.array([1, 0], np.int32), n - half)
  params = _fit_mlp(jax.random.PRNGKey(seed), x_train, y_train, C2ST_LEARNING_RATE, C2ST_WEIGHT_DECAY,
                    sizes=(x.shape[1], *C2ST_HIDDEN, 2), steps=C2ST_STEPS, batch=C2ST_BATCH,
                    pad_to=2 * (C2ST_MAX_PER_SET // 2))  # one compiled loop per d
  return float(np.mean(_predict(params, x_test) == y_test))


def _nearest_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distance ``[n]`` from each row of ``a [n, d]`` to its nearest row of ``b [m, d]``.

  The neighbour is found blockwise (``NN_BLOCK_ENTRIES`` pairs at a time) from
  ``|a|^2 + |b|^2 - 2 a.b`` in float64, and its distance recomputed as ``|a - b|``: an exact copy
  gives exactly 0.
  """
  a = a.astype(np.float64)
  b = b.astype(np.float64)
  b2 = np.sum(b * b, axis=1)
  block = max(1, NN_BLOCK_ENTRIES // b.shape[0])
  out = np.empty(a.shape[0])
  for start in range(0, a.shape[0], block):
    blk = a[start:start + block]
    d2 = b2[None, :] - 2.0 * blk @ b.T  # |a|^2 does not change the argmin
    nearest = np.argmin(d2, axis=1)
    out[start:start + block] = np.sqrt(np.sum((blk - b[nearest]) ** 2, axis=1))
  return out


def nn_distance_ratio(samples, train, heldout) -> float:
  """Median distance from each sample to its nearest training row, over the same for held-out rows.

  Copies of training rows give 0; samples as far from the training rows as fresh data gives about
  1; well below 1 means the model reproduces its training rows. The median (not the mean) so that a
  few far-off samples (a diffuse tail) cannot hide a majority of near-copies, and the ratio reads
  as "the typical sample against the typical held-out row". Distances are exact (Euclidean, in the
  data's units), computed in bounded blocks.

  Args:
    samples: ``[n, d]``; train: ``[m, d]`` (the rows the model was fitted to); heldout: ``[k, d]``.

  Raises:
    DataError: not 2-D, different ``d``, an empty set, NaN/inf values, or held-out rows that all
      coincide with training rows (the denominator is 0).
  """
  s = _rows(samples, "samples")
  t = _rows(train, "train", dim=s.shape[1])
  h = _rows(heldout, "heldout", dim=s.shape[1])
  denom = float(np.median(_nearest_distances(h, t)))
  if denom <= 0.0:
    raise DataError("the held-out rows are (mostly) copies of training rows: their median distance to "
                    "the training rows is 0, so there is no scale to compare the samples with.")
  return float(np.median(_nearest_distances(s, t)) / denom)


def bits_per_dim(nll_nats: float, dim: int, *, scale=None) -> float:
  """Negative log-likelihood in nats per sample to bits per dimension: ``nll / (dim * ln 2)``.

  For the dequantised digits (counts ``k`` plus uniform noise in [0, 1), values in [0, 17)) the NLL
  is that of the continuous dequantised density; by Jensen's inequality
  ``E_u[-log p(k + u)] >= -log P(k)`` with ``P(k) = integral of p over [k, k + 1)^d``, so it is an
  upper bound on the NLL of the discrete counts, in the same units (the bins have width 1, no
  offset). A uniform density on [0, 17)^64 scores ``log2(17) = 4.09`` bits/dim.

  Args:
    nll_nats: mean NLL per sample, in nats, of data in the units the model was fitted in.
    dim: the number of dimensions (64 for 8x8 images).
    scale: the number (or ``[dim]`` numbers, one per column) the counts were divided by before
      fitting, e.g. the column stds of standardised data, or 17 for data in [0, 1). The NLL is then
      moved back to count units, ``nll + sum(log scale)``, i.e. ``log2(scale)`` bits/dim more for a
      single scale, so figures of models fitted at different scales compare. Default: none
      (the NLL is already in count units). A shift (centring) changes nothing.

  Raises:
    ValueError: ``dim`` not a positive integer, a non-finite NLL, or a scale that is not positive
      or has the wrong length.
  """
  if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
    raise ValueError(f"dim must be a positive integer (the number of pixels); got {dim!r}.")
  nll = float(nll_nats)
  if not math.isfinite(nll):
    raise ValueError(f"nll_nats must be a finite number; got {nll_nats!r}.")
  if scale is not None:
    sc = np.asarray(scale, dtype=np.float64)
    if sc.ndim > 1 or (sc.ndim == 1 and sc.shape[0] != dim):
      raise ValueError(f"scale must be one number or {dim} numbers (one per column); got shape {sc.shape}.")
    if not np.all(np.isfinite(sc)) or np.any(sc <= 0):
      raise ValueError("scale must be positive and finite.")
    nll += float(np.sum(np.broadcast_to(np.log(sc), (dim,))))
  return nll / (dim * math.log(2.0))


# --------------------------------------------------------------------------------- digit classifier

@dataclasses.dataclass(frozen=True, eq=False)
class Classifier:
  """A trained digit classifier (one-hidden-layer MLP on standardised pixels); see :func:`fit_classifier`.

  Attributes:
    params: the network's weights, ``[(w [d, 128], b [128]), (w [128, K], b [K])]`` (numpy);
    mean, std: ``[d]`` the standardisation of the training images;
    n_classes: the number of labels it tells apart (0 .. n_classes - 1).
  """
  params: list
  mean: np.ndarray
  std: np.ndarray
  n_classes: int

  @property
  def dim(self) -> int:
    return int(self.mean.shape[0])

  def predict(self, images) -> np.ndarray:
    """The predicted label int32 ``[m]`` of each image ``[m, d]``."""
    x = _rows(images, "images", dim=self.dim)
    return _predict(self.params, (x - self.mean) / self.std)

  def accuracy(self, images, labels) -> float:
    """The share of images ``[m, d]`` whose predicted label equals ``labels [m]``."""
    x = _rows(images, "images", dim=self.dim)
    y = _labels(labels, x.shape[0])
    return float(np.mean(self.predict(x) == y))


def fit_classifier(images, labels, *, seed: int = 0) -> Classifier:
  """Trains a digit classifier (to score inpainted or generated images by the digit they show).

  A one-hidden-layer MLP (``CLASSIFIER_HIDDEN`` ReLU units) on pixels standardised with the training
  images' mean/std, ``CLASSIFIER_STEPS`` minibatch AdamW steps on the cross-entropy, in one jitted
  ``lax.scan``; deterministic for a seed. On the digits' training rows it scores about 0.97 on the
  held-out rows (docs/image_metrics.md).

  Args:
    images: ``[n, d]`` flattened images; labels: ``[n]`` integers 0 .. K-1 (at least two classes).
    seed: the network's initialisation.

  Raises:
    DataError: bad shapes, NaN/inf, fewer than two rows or two classes, labels that are not
      whole numbers >= 0.
  """
  x = _rows(images, "images", min_rows=2)
  y = _labels(labels, x.shape[0])
  if np.unique(y).size < 2:
    raise DataError("the labels hold a single class; a classifier needs at least two.")
  n_classes = int(y.max()) + 1
  mean, std = _standardizer(x)
  params = _fit_mlp(jax.random.PRNGKey(seed), (x - mean) / std, y, CLASSIFIER_LEARNING_RATE,
                    CLASSIFIER_WEIGHT_DECAY, sizes=(x.shape[1], *CLASSIFIER_HIDDEN, n_classes),
                    steps=CLASSIFIER_STEPS, batch=CLASSIFIER_BATCH)
  return Classifier(params=params, mean=mean, std=std, n_classes=n_classes)


# ------------------------------------------------------------------------------- Gaussian baseline

def gaussian_baseline(train) -> tuple[np.ndarray, np.ndarray]:
  """The Gaussian fitted to ``train [n, d]``: float64 ``(mean [d], cov [d, d])``.

  The covariance is the maximum-likelihood one (divided by n) plus a ridge
  ``GAUSSIAN_RIDGE * trace(cov) / d`` on its diagonal, so it is positive definite even for pixels
  that hardly vary.
  """
  x = _rows(train, "train", min_rows=2).astype(np.float64)
  mean = x.mean(axis=0)
  c = x - mean
  cov = c.T @ c / x.shape[0]
  cov[np.diag_indices_from(cov)] += GAUSSIAN_RIDGE * max(np.trace(cov) / x.shape[1], 1e-12)
  return mean, cov


def gaussian_samples(mean, cov, n: int, seed: int) -> np.ndarray:
  """``n`` raw (unclipped) draws from N(mean, cov) as float32 ``[n, d]``; deterministic for a seed.

  Raises:
    ValueError: shapes that do not match, a negative ``n``, or a covariance that is not positive
      definite.
  """
  mean = np.asarray(mean, dtype=np.float64)
  cov = np.asarray(cov, dtype=np.float64)
  if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
    raise ValueError(f"mean must be [d] and cov [d, d]; got {mean.shape} and {cov.shape}.")
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f"n must be a whole number >= 0; got {n!r}.")
  try:
    chol = np.linalg.cholesky(cov)
  except np.linalg.LinAlgError:
    raise ValueError("cov is not positive definite; use gaussian_baseline (it adds a ridge).") from None
  z = np.random.default_rng(seed).standard_normal((int(n), mean.shape[0]))
  return (mean + z @ chol.T).astype(np.float32)


def image_scores(samples, train, heldout, *, seed: int = 0) -> dict:
  """``{"c2st": ..., "nn_ratio": ...}`` of samples ``[n, d]`` from a model fitted to ``train``.

  ``c2st`` is :func:`classifier_two_sample` of the samples against the training rows (the larger
  reference: lower noise; a model that copies them scores 0.5 there and is caught by the other
  figure); ``nn_ratio`` is :func:`nn_distance_ratio`.
  """
  return {"c2st": classifier_two_sample(samples, train, seed=seed),
          "nn_ratio": nn_distance_ratio(samples, train, heldout)}
