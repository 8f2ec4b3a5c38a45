"""Streamlit entry point: ``streamlit run app.py``. Navigation and the home page."""

import pandas  # noqa: F401  (Streamlit imports it lazily from each session's script thread;
import streamlit as st  # two sessions starting at once could see it half-imported)

from cmm_core import compile_cache

compile_cache.enable()  # before anything compiles: a restarted app reuses earlier compilations


def home() -> None:
  st.title("Convex-potential generative models")
  st.markdown(
      "A **factorization** writes a data distribution ρ as a simple *base* distribution that is easy "
      "to sample, pushed through a *transport map* that moves each base point to data space. "
      "The **conjugate moment measure** (CMM) uses a single convex potential *w* for both: "
      "the base is the log-concave density e<sup>−w</sup> and the map is the gradient of its "
      "Legendre conjugate *w\\**. "
      "To sample ρ, draw x from e<sup>−w</sup> (Langevin) and return ∇w\\*(x).",
      unsafe_allow_html=True)
  st.latex(r"\rho \;=\; \nabla w^{*}\,\#\, e^{-w},\qquad "
           r"w^{*}(x) = \sup_{y}\; \langle x, y\rangle - w(y)")
  st.markdown(
      "**How to use this app**\n"
      "1. **Target**: pick a data set: a 1D or 2D toy, a Gaussian, or your own file.\n"
      "2. **Train & explore**: choose a model, press *Train*, and watch the loss.\n"
      "3. Compare the three panels: the base e<sup>−w</sup>, the transport map ∇w\\*, "
      "and the model's samples against the data.\n"
      "4. **Compare**: fit several models with the same budget and seed, and rank them "
      "side by side.",
      unsafe_allow_html=True)
  c1, c2, c3 = st.columns(3)
  c1.page_link("app_pages/target.py", label="Choose a target", icon=":material/scatter_plot:")
  c2.page_link("app_pages/train.py", label="Train & explore", icon=":material/model_training:")
  c3.page_link("app_pages/compare.py", label="Compare models", icon=":material/compare:")
  st.markdown("**Learn, without training**: *Gaussians, exactly* draws MM, CMM and the Brenier "
              "baseline of a Gaussian in closed form; *1D, exactly* solves the CMM and MM of any "
              "1D target on a grid and compares them with your trained 1D model.")
  c1, c2 = st.columns(2)
  c1.page_link("app_pages/exact_gaussians.py", label="Gaussians, exactly", icon=":material/functions:")
  c2.page_link("app_pages/exact_1d.py", label="1D, exactly", icon=":material/show_chart:")
  st.caption("Default target when you go straight to training: eight_gaussians, 4096 points, seed 0.")


st.set_page_config(page_title="Convex-potential generative models", page_icon=":material/blur_on:",
                   layout="wide")
nav = st.navigation({
    "": [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/target.py", title="Target", icon=":material/scatter_plot:"),
        st.Page("app_pages/train.py", title="Train & explore", icon=":material/model_training:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("app_pages/energy.py", title="Sample an energy", icon=":material/local_fire_department:"),
    ],
    "Learn: exactly, no training": [
        st.Page("app_pages/exact_gaussians.py", title="Gaussians, exactly", icon=":material/functions:"),
        st.Page("app_pages/exact_1d.py", title="1D, exactly", icon=":material/show_chart:"),
    ],
})
from app_support import link as _link  # noqa: E402  (after set_page_config)
_link.restore_from_url(page=nav.url_path)
_link.show_problems()
nav.run()
