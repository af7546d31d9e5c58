"""AffectVLM Streamlit app: ``streamlit run app.py``.

This is the home page; the sidebar links to the pages in ``pages/``: Analyse (one scan or a 4D sequence),
Batch (a zip of scans), Train (jobs). Every page draws the same header and sidebar (model, views,
classes) from :mod:`affectvlm.app.widgets`; the app's logic lives in the ``affectvlm.app`` package.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # the library from a source checkout
    sys.path.insert(0, str(_HERE))

from affectvlm.app.uploads import list_samples  # noqa: E402
from affectvlm.app.widgets import get_model, page_header, show_error  # noqa: E402
from affectvlm.model import describe_provenance  # noqa: E402

ANALYSE = "pages/1_Analyse.py"


def _try_sample(path: str) -> None:
    st.session_state["pending_sample"] = path


def loaded_model(choice) -> None:
    st.subheader("Loaded model")
    if choice is None:
        st.warning("Fix the model settings in the sidebar.")
        return
    try:
        model = get_model(choice)
    except Exception as e:  # noqa: BLE001 - shown as one message; the app keeps running
        show_error(e)
        st.info("Choose another model in the sidebar, e.g. an open_clip `NAME:TAG` with its weights cached, "
                "or a checkpoint folder.")
        return
    c1, c2 = st.columns([1, 2])
    name = str(model.spec or choice.spec or "default")
    base = model.provenance.get("base_spec")
    c1.metric("Model", name, base if base and base != name else None, delta_color="off", delta_arrow="off")
    c2.markdown("**Classes:** " + ", ".join(model.classes))
    c2.markdown("**Views:** " + ", ".join(f"yaw {v.yaw:g}°, pitch {v.pitch:g}°" for v in model.render.views))
    if cap := describe_provenance(model.provenance):
        st.caption(f"Provenance — {cap}")


def samples() -> None:
    found = list_samples()
    st.subheader("Try it")
    if not found:
        st.info("No bundled samples found in affectvlm/data/samples/.")
        return
    cols = st.columns(min(3, len(found)))
    for i, (label, path) in enumerate(found.items()):
        if cols[i % len(cols)].button(label, icon=":material/play_arrow:", key=f"sample_btn_{i}",
                                      on_click=_try_sample, args=(str(path),), width="stretch"):
            st.switch_page(ANALYSE)


choice = page_header("AffectVLM")
st.markdown(
    "AffectVLM recognises facial emotions from **3D face scans** and **4D scan sequences**: it renders "
    "several views of the face and scores them with a vision-language (CLIP) model.  \n"
    "Drop a scan (OBJ, PLY, STL, OFF, GLB, VRML `.wrl`, Bosphorus `.bnt`) or a sequence on the "
    "**Analyse** page, score many scans on **Batch**, or fine-tune your own model on **Train**."
)
loaded_model(choice)
samples()
