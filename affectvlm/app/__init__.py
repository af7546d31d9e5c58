"""The Streamlit app's own package (``pip install affectvlm[app]``): what ``app.py`` and ``pages/`` use.

Streamlit-free modules (tested without a server): :mod:`~affectvlm.app.settings` (environment, workspace
roots), :mod:`~affectvlm.app.uploads` (upload folders, samples), :mod:`~affectvlm.app.batch` (many scans,
downloads), :mod:`~affectvlm.app.sidebar` (the sidebar's values, the model cache key),
:mod:`~affectvlm.app.preview` and :mod:`~affectvlm.app.figures` (plotly), :mod:`~affectvlm.app.state`
(results kept between reruns), :mod:`~affectvlm.app.trainform` (the Train form to a validated
``TrainConfig``), :mod:`~affectvlm.app.launch`, :mod:`~affectvlm.app.jobs` and
:mod:`~affectvlm.app.processes` (training jobs), :mod:`~affectvlm.app.runview` (a run folder for display).
Streamlit itself: :mod:`~affectvlm.app.widgets`.

Imports go one way: this package calls the library's core (``affectvlm.io``, ``geometry``, ``model``,
``predict``, ``runfolder``, ...); nothing in the core imports it or Streamlit.
"""
