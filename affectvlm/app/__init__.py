"""The Streamlit app's own package (``pip install affectvlm[app]``): what ``app.py`` and ``pages/`` use.

Streamlit-free modules (tested without a server): :mod:`settings` (environment, workspace roots),
:mod:`uploads` (upload folders, batches, samples), :mod:`sidebar` (the sidebar's values, the model cache
key), :mod:`preview` and :mod:`figures` (plotly), :mod:`state` (results kept between reruns),
:mod:`processes`, :mod:`launch` and :mod:`jobs` (training jobs), :mod:`trainform` (the Train form to a
checked trainer command), :mod:`runview` (a run folder for display). Streamlit itself: :mod:`widgets`.

Imports go one way: this package calls the library's core (``affectvlm.io``, ``geometry``, ``model``,
``predict``, ...); nothing in the core imports it or Streamlit.
"""
