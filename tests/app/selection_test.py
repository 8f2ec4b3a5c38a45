"""The Target page's selections on its drawing grid, as cells (``app_support.selection``)."""

from app_support import selection
from cmm_core import targets


def test_cells_from_box_lasso_and_points():
  g = targets.draw_grid((0, 4), 4)  # unit cells, centres at .5, 1.5, 2.5, 3.5
  box = {"box": [{"xref": "x", "yref": "y", "x": [2.2, 0.2], "y": [0.2, 1.8]}],
         "lasso": [], "points": []}
  assert selection.cells_from_selection(box, g) == [0, 1, 4, 5]
  tri = {"lasso": [{"x": [0, 4, 0], "y": [0, 0, 4]}]}  # the lower-left triangle x + y < 4
  assert selection.cells_from_selection(tri, g) == [0, 1, 2, 4, 5, 8]
  pts = {"points": [{"x": 3.5, "y": 3.5, "curve_number": 1}, {"x": 9, "y": 0}, {"x": None}]}
  assert selection.cells_from_selection(pts, g) == [15]
  both = {"box": box["box"], "lasso": tri["lasso"]}
  assert selection.cells_from_selection(both, g) == [0, 1, 2, 4, 5, 8]
  for empty in (None, {}, {"box": [], "lasso": [], "points": []}, {"box": [{"x": [1]}]},
                {"lasso": [{"x": [0, 1], "y": [0, 1]}]}):
    assert selection.cells_from_selection(empty, g) == []
