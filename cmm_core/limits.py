"""Every resource cap and floor of the library, the links and the pages, in one place.

Each is refused with a ``DataError`` or ``ValueError`` whose message states the limit; the table in
``docs/limits.md`` lists them with those messages and ``tests/limits_test.py`` checks the two agree.
The modules that enforce a cap import it from here (``targets.MAX_N`` is ``limits.MAX_N``).
"""

__all__ = ["MAX_FILE_BYTES", "MAX_TABLE_COLUMNS", "MAX_N", "MAX_ROWS", "MAX_DIM", "MAX_IMAGE_PIXELS", "MIN_ROWS",
           "MAX_ABS", "MAX_COLUMNS", "MAX_STEPS", "MAX_SAMPLES", "MAX_SEED", "MAX_MODEL_BYTES",
           "MAX_BUDGET_SECONDS", "MAX_LAYERS", "MAX_WIDTH", "MAX_APP_SEED", "MAX_POINTS",
           "MAX_SPREAD", "MAX_SECONDS", "SIZES", "MAX_ENERGY_STEPS", "MAX_FORMULA_DIM",
           "MAX_INPAINT_STEPS"]

# -- data ----------------------------------------------------------------------------------------
MAX_FILE_BYTES = 50 * 2**20
MAX_TABLE_COLUMNS = 1000  # columns a file may have (a fit takes at most MAX_DIM of them)
MAX_N = 1_000_000         # points drawn from a toy, a Gaussian, a drawing or typed points
MAX_ROWS = MAX_N          # rows a file may have: as many points as a toy may draw
MAX_DIM = 256             # dimension of the data a model is fitted to (docs/scaling.md: d = 2..256)
MAX_IMAGE_PIXELS = 64     # pixels of an uploaded image the app offers image views for (8 x 8: the
                          # views and the inpainting are sized for the digits)
MIN_ROWS = 10             # fewest rows a model is fitted to
MAX_ABS = 1e6  # larger values are refused: float32 training loses precision far from the origin
MAX_COLUMNS = 10          # the most columns the app lets a user fit at once

# -- fits, samples and models ---------------------------------------------------------------------
MAX_STEPS = 200_000
MAX_SAMPLES = 200_000
MAX_SEED = 2**32 - 1  # a JAX key keeps 32 bits of the seed: larger seeds would repeat smaller ones
MAX_MODEL_BYTES = 100 * 2**20
MAX_BUDGET_SECONDS = 24 * 3600  # the longest "seconds" budget per model
MAX_LAYERS = 6       # hidden layers of a "widths" hyper-parameter
MAX_WIDTH = 1024     # units per hidden layer

# -- links and pages --------------------------------------------------------------------------------
MAX_APP_SEED = 2**31 - 1  # seeds in a link and in the pages' seed inputs
MAX_SPREAD = 2.0
MAX_POINTS = 200  # typed points a link may carry
MAX_SECONDS = 3600.0  # a Compare time budget in a link or on the page
SIZES = (256, 512, 1024, 2048, 4096, 8192, 16384)  # the data sizes the Target page offers
MAX_ENERGY_STEPS = 20_000  # training steps on the Sample an energy page and in its links
MAX_FORMULA_DIM = 64  # dimension of a typed energy formula on that page and in its links
MAX_INPAINT_STEPS = 5_000  # MALA steps of an inpainting on the Train page (400 by default: about 14 s
                           # for four completions of a digit by maflow on the 2-core CPU)
