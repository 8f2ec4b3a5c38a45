"""App-only helpers of the Streamlit pages (``app_pages/``): per-session state (``state``) and
shareable-link restore and writing (``link``). The library, ``cmm_core``, never imports them."""
