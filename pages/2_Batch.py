"""Batch page: a zip of many scans (or many scan files) -> one row per scan, CSV/JSON download.

Rows come from ``affectvlm.predict.predict`` and downloads from ``write_rows``: the same schema as
``affectvlm predict --out``.
"""
from __future__ import annotations

import hashlib
import time

import streamlit as st

from affectvlm.appsupport import UPLOAD_TYPES, batch_members, rows_download, rows_frame, safe_name
from affectvlm.errors import AffectVLMError, InputError
from pages import AXES, get_model, settings, show_error, sidebar

st.set_page_config(page_title="AffectVLM · Batch", page_icon=":material/sentiment_satisfied:", layout="wide")
S = settings()
ss = st.session_state
ss["_model_choice"] = sidebar()

st.title("Batch: score many scans")
st.markdown("Upload a **.zip of scans** (any folder structure) or select several scan files. Each scan gets "
            "one row; a bad file is reported on its row and the others still run.")

files = st.file_uploader("Scans or a .zip of scans", type=UPLOAD_TYPES, accept_multiple_files=True,
                         key="batch_upload")
choice = ss.get("_model_choice")
with st.expander("Orientation of the files (if the automatic frontal guess is wrong)"):
    c1, c2 = st.columns(2)
    up = c1.radio("Up axis of the files", AXES, key="batch_up", horizontal=True)
    front = c2.radio("Front axis (the faces look along)", AXES, key="batch_front", horizontal=True)
    st.caption("Applied to every scan, as `affectvlm predict --up/--front`; 'auto' detects each scan's axes.")
up = None if up == "auto" else up
front = None if front == "auto" else front


def collect(files) -> list[tuple[str, bytes]]:
    items: list[tuple[str, bytes]] = []
    for f in files:
        data = f.getvalue()
        if len(data) > S.limits.max_file_bytes:
            raise InputError(f.name, f"over the {S.limits.max_file_bytes / 2**20:.0f} MB limit")
        if f.name.lower().endswith(".zip"):
            items += [(f"{safe_name(f.name)}:{n}", b) for n, b in batch_members(data, f.name, limits=S.limits)]
        else:
            items.append((safe_name(f.name), data))
    if not items:
        raise InputError("upload", "no scan in the upload")
    return items


if files and choice is not None:
    sig = hashlib.sha1(repr(([(f.name, f.size) for f in files], up, front)).encode() + choice.key.encode()).hexdigest()
    try:
        items = collect(files)
        st.caption(f"{len(items)} scan(s) found.")
        if st.button("Score all", type="primary", key="batch_run") or ss.get("batch_sig") == sig:
            if ss.get("batch_sig") != sig:
                from affectvlm.predict import predict

                model = get_model(choice)
                bar = st.progress(0.0, text="Scoring…")
                done = []

                def on_row(row: dict) -> None:
                    done.append(row)
                    bar.progress(min(1.0, len(done) / len(items)), text=f"Scoring… {len(done)}/{len(items)}")

                t0 = time.perf_counter()
                rows = predict(items, model, views=choice.views, up=up, front=front, on_row=on_row)
                bar.empty()
                ss["batch_rows"], ss["batch_sig"], ss["batch_s"] = rows, sig, time.perf_counter() - t0
            rows = ss["batch_rows"]
            n_err = sum(1 for r in rows if r.get("error"))
            st.success(f"{len(rows) - n_err} scored, {n_err} failed, in {ss['batch_s']:.1f} s.")
            for r in rows:
                if r.get("error"):
                    st.error(f"{r['file']}: {r['error']}")
            st.dataframe(rows_frame(rows), width="stretch", hide_index=True)
            c1, c2 = st.columns(2)
            c1.download_button("Download CSV", rows_download(rows, "csv"), "affectvlm_results.csv", "text/csv",
                               key="dl_csv")
            c2.download_button("Download JSON", rows_download(rows, "json"), "affectvlm_results.json",
                               "application/json", key="dl_json")
    except AffectVLMError as e:
        show_error(e)
elif files:
    st.warning("Fix the model settings in the sidebar first.")
