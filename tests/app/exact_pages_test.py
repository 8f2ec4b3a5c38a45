"""AppTest of the two "exactly" pages: Gaussians in closed form and 1D grid fixed points."""

import numpy as np
from streamlit.testing.v1 import AppTest

from apptest_utils import APP

GAUSS = "app_pages/exact_gaussians.py"
ONE_D = "app_pages/exact_1d.py"


class GaussianBaseModel:
  """A trained 1D model stand-in (FittedModel protocol only) whose base is N(mean, std^2).

  A real ``cc.fit`` takes ~20 s on two cores; the pages use nothing beyond the protocol.
  """

  def __init__(self, model, mean, std):
    self.model, self.mean, self.std = model, mean, std
    self.dim = 1
    self.config = {}
    self.info = {"dim": 1, "status": "done", "message": "", "warnings": []}
    self.history = [{"step": 50, "loss": 0.1, "seconds": 1.0}]

  def sample_base(self, n, seed=0):
    z = np.random.default_rng(seed).standard_normal((n, 1))
    return (self.mean + self.std * z).astype(np.float32)

  def base_log_density(self, x):
    x = np.asarray(x, np.float64)[:, 0]
    return -0.5 * ((x - self.mean) / self.std) ** 2


def _page(page: str, first: bool = False) -> AppTest:
  at = AppTest.from_file(APP, default_timeout=60)
  if not first:
    at.run()
  at.switch_page(page)
  at.run()
  assert not at.exception, [e.value for e in at.exception]
  assert not at.error, [e.value for e in at.error]
  return at


def _charts(at: AppTest) -> list:
  return at.get("plotly_chart")


def _specs(at: AppTest) -> list:
  return [c.proto.spec for c in _charts(at)]


def test_home_lists_the_exact_pages():
  at = AppTest.from_file(APP, default_timeout=60)
  at.run()
  assert not at.exception
  assert any("Gaussians, exactly" in m.value and "1D, exactly" in m.value for m in at.markdown)


def test_gaussians_page_1d_and_2d():
  at = _page(GAUSS, first=True)  # a deep link as the first request renders through app.py
  assert [t.value for t in at.title] == ["Gaussians, exactly"]
  assert len(_charts(at)) == 6 and len(at.latex) == 3
  assert [b.key for b in at.get("download_button")] == ["exg_report"]
  assert "standard normal" in at.info[0].value
  before = _specs(at)

  at.slider(key="exg_std").set_value(0.25)
  at.run()
  assert not at.exception and not at.error
  assert at.info[0].value.startswith("The target got 4x narrower")
  assert "1.59x narrower" in at.info[0].value
  after = _specs(at)
  assert len(after) == 6 and after != before
  assert any("N(0, 4²)" in m.value for m in at.markdown)  # the MM base, 1/s = 4

  at.slider(key="exg_mean").set_value(2.0)
  at.run()
  assert "MM drops it" in at.info[0].value
  assert any("dropped" in c.value for c in at.caption)

  at.radio(key="exg_dim").set_value("2D")
  at.run()
  assert not at.exception and not at.error and len(_charts(at)) == 6
  before = _specs(at)
  at.slider(key="exg_angle").set_value(60)
  at.run()
  assert not at.exception and "turned by 30°" in at.info[0].value
  assert _specs(at) != before


def test_1d_page_builtin_and_session_targets():
  at = _page(ONE_D)
  assert [t.value for t in at.title] == ["1D, exactly"]
  assert [b.key for b in at.get("download_button")] == ["ex1_report"]
  source = at.selectbox(key="ex1_source")
  assert "(session target)" not in source.options  # the session's target is 2D by default
  source.set_value("mixture")
  at.run()
  assert not at.exception and not at.error
  assert len(_charts(at)) == 6
  assert any("centred" in i.value for i in at.info)  # the mixture's mean is not 0: MM centres it
  before = _specs(at)
  at.slider(key="ex1_mixture_std").set_value(0.3)
  at.run()
  assert not at.exception and not at.error and _specs(at) != before
  assert not any(s.value.startswith("Your trained model") for s in at.subheader)

  # A 1D target in the session (an upload, say) is offered first.
  rng = np.random.default_rng(0)
  data = (1.0 + 0.5 * rng.standard_normal((800, 1))).astype(np.float32)
  at.session_state["target"] = {"label": "upload.csv [x] (n=800)", "data": data,
                                "spec": {"kind": "upload"}, "columns": ["x"]}
  at.run()
  source = at.selectbox(key="ex1_source")
  assert source.options[0] == "session target: upload.csv [x] (n=800)"
  source.set_value("(session target)")
  at.run()
  assert not at.exception and not at.error and len(_charts(at)) == 6
  assert any("upload.csv" in m.value for m in at.markdown)


def test_1d_page_overlays_a_trained_1d_model():
  at = _page(ONE_D)
  rng = np.random.default_rng(1)
  data = (0.5 * rng.standard_normal((1000, 1))).astype(np.float32)
  s = 0.5
  for model, mean, std in (("cmm", 0.0, s ** (1 / 3)), ("mm", 0.3, 1 / s)):
    at.session_state["fit"] = {
        "fitted": GaussianBaseModel(model, mean, std), "uid": 7 if model == "cmm" else 8,
        "target_label": "gaussian (n=1000)", "target_spec": {"kind": "toy1d"}, "data": data,
        "columns": None, "settings": {"model": model, "steps": 50, "seed": 0, "hyper": {}}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any(h.value.startswith("Your trained model") for h in at.subheader)
    assert len(_charts(at)) == 7  # 6 exact panels + the overlay
    err = float(at.metric[0].value)
    assert 0 <= err < 0.1, err  # the stand-in's base is (the Gaussian guess of) the exact one
    assert "trained model: base density" in _charts(at)[-1].proto.spec
  assert any("centred before comparing" in m.value for m in at.markdown)  # MM: up to translation

  # A 2D model: the page says why there is no overlay.
  fitted = GaussianBaseModel("cmm", 0.0, 1.0)
  fitted.dim = 2
  at.session_state["fit"] = {**at.session_state["fit"], "fitted": fitted, "uid": 9}
  at.run()
  assert not at.exception and len(_charts(at)) == 6
  assert any("is 2D" in c.value for c in at.caption)
