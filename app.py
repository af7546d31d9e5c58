"""AffectVLM Streamlit app: ``streamlit run app.py``.

This is the home page; Streamlit lists the pages in ``pages/`` beside it: Analyse (one scan or a 4D
sequence), Batch (a zip of scans), Train (jobs). Every page draws the same sidebar (model, views,
classes) from ``pages/__init__.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # `pages._shared` and the library from a source checkout
    sys.path.insert(0, str(_HERE))

from pages import get_model, model_caption, show_error, sidebar  # noqa: E402

st.set_page_config(page_title="AffectVLM", page_icon=":material/sentiment_satisfied:", layout="wide")

ANALYSE = "pages/1_Analyse.py"


def _try_sample(path: str) -> None:
    st.session_state["pending_sample"] = path


def home() -> None:
    from affectvlm.appsupport import list_samples

    st.title("AffectVLM")
    st.markdown(
        "AffectVLM recognises facial emotions from **3D face scans** and **4D scan sequences**: it renders "
        "several views of the face and scores them with a vision-language (CLIP) model.  \n"
        "Drop a scan (OBJ, PLY, STL, OFF, GLB, VRML `.wrl`, Bosphorus `.bnt`) or a sequence on the "
        "**Analyse** page, score many scans on **Batch**, or fine-tune your own model on **Train**."
    )
    choice = st.session_state.get("_model_choice")
    st.subheader("Loaded model")
    if choice is None:
        st.warning("Fix the model settings in the sidebar.")
    else:
        try:
            model = get_model(choice)
        except Exception as e:  # noqa: BLE001 - shown as one message; the app keeps running
            show_error(e)
            st.info("Choose another model in the sidebar, e.g. an open_clip `NAME:TAG` with its weights cached, "
                    "or a checkpoint folder.")
        else:
            c1, c2 = st.columns([1, 2])
            name = str(getattr(model, "spec", None) or choice.spec or "default")
            base = (getattr(model, "provenance", None) or {}).get("base_spec") if isinstance(
                getattr(model, "provenance", None), dict) else None
            c1.metric("Model", name, base if base and base != name else None, delta_color="off", delta_arrow="off")
            c2.markdown("**Classes:** " + ", ".join(getattr(model, "classes", []) or []))
            render = getattr(model, "render", None)
            if render is not None and getattr(render, "views", None):
                c2.markdown("**Views:** " + ", ".join(f"yaw {v.yaw:g}°, pitch {v.pitch:g}°" for v in render.views))
            cap = model_caption(model)
            if cap:
                st.caption(f"Provenance — {cap}")
    samples = list_samples()
    st.subheader("Try it")
    if not samples:
        st.info("No bundled samples found in affectvlm/data/samples/.")
    else:
        cols = st.columns(min(3, len(samples)))
        for i, (label, path) in enumerate(samples.items()):
            if cols[i % len(cols)].button(label, icon=":material/play_arrow:", key=f"sample_btn_{i}",
                                          on_click=_try_sample, args=(str(path),), width="stretch"):
                st.switch_page(ANALYSE)


st.session_state["_model_choice"] = sidebar()
home()
