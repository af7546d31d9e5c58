"""Batch page: a zip of many scans (or many scan files) -> one row per scan, CSV/JSON download; by default adapted
to the set when it is large and varied (``affectvlm.adapt``, as ``affectvlm predict --adapt auto``) and each scan
scored against its subject's neutral scan; optionally the set's class balance matched after scoring
(``affectvlm.prior``, as ``affectvlm predict --prior``).

Rows come from ``affectvlm.predict.predict`` and downloads from ``rows_to_csv`` / ``rows_to_json``: the same
schema as ``affectvlm predict --out``.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from affectvlm.app.batch import (BatchUpload, batch_hint, collect_batch, frame_notes, match_batch, rows_download,
                                 score_batch, shown_rows)
from affectvlm.app.state import kept
from affectvlm.app.uploads import UPLOAD_TYPES, files_signature
from affectvlm.app.widgets import get_model, orientation_box, page_header, settings, show_error
from affectvlm.errors import AffectVLMError
from affectvlm.results import whole_input_row

choice = page_header("Batch: score many scans", "Batch")
S = settings()
state = st.session_state
st.markdown("Upload a **.zip of scans** (any folder structure) or select several scan files. Each scan gets "
            "one row; a bad file is reported on its row and the others still run. In a zip, as `affectvlm predict` "
            "reads one, a folder whose files differ only by a number (`000.wrl`, `001.wrl` ...) is a 4D sequence: "
            "a row per frame and one pooled row.")
files = st.file_uploader("Scans or a .zip of scans", type=UPLOAD_TYPES, accept_multiple_files=True,
                         key="batch_upload")
up, front = orientation_box("Orientation of the files (if the automatic frontal guess is wrong)",
                            "Applied to every scan, as `affectvlm predict --up/--front`; 'auto' detects each "
                            "scan's axes.", key="batch", many=True)


use_adapt = st.checkbox("Adapt to this set (50 scans or 20 sequences or more, showing a mix of expressions)",
                        value=True,
                        key="batch_adapt",
                        help="As `affectvlm predict --adapt auto`: the scans are scored with the image encoder's "
                             "batch-norm statistics re-estimated on this set's renders. It helps on faces unlike the "
                             "training data; it is skipped for small sets or sets of mostly one expression. A "
                             "scan's label then depends on the set. A class balance typed below is matched on the "
                             "adapted scores; untick this to match as `affectvlm predict --prior` does (it does not "
                             "adapt unless asked).")


def score(upload: BatchUpload, adapt: bool) -> tuple[list[dict], str]:
    bar = st.progress(0.0, text="Looking at the set (to adapt to it)…" if adapt else "Scoring…")
    done: list[dict] = []
    total = max(upload.units, 1)

    def on_row(row: dict) -> None:  # a scan's row or a sequence's pooled row moves the bar; a frame's says where
        shown = min(len(done), total)
        if not whole_input_row(row):
            bar.progress(min(1.0, shown / total), text=f"Scoring… {shown}/{total} ({row['file']}: frame {row['frame']})")
            return
        done.append(row)
        bar.progress(min(1.0, len(done) / total), text=f"Scoring… {min(len(done), total)}/{total}")

    out = score_batch(upload.inputs, get_model(choice), adapt=adapt, views=choice.views, up=up, front=front,
                      on_row=on_row, limits=S.limits)
    bar.empty()
    return out


prior_spec = st.text_input("Known class balance of the whole set (optional)", key="batch_prior",
                           placeholder="uniform, or e.g. neutral=0.25 for BU-3DFE",
                           help="As `affectvlm predict --prior`: after scoring, take out a lean the whole set shares "
                                "so its mean probabilities match this balance (classes not named weigh 1). A scan's "
                                "label then depends on the others in the set; needs at least 20 scans.")
by_folder = st.checkbox("Match each folder apart (a subject's folder, when every subject shows every class)",
                        key="batch_prior_folder", help="As `affectvlm predict --prior-by folder`.")
try:  # a fine-tuned model may have found on its own validation subjects that it reads better scan by scan
    model_says = get_model(choice).neutral_reference is not False
except AffectVLMError:
    model_says = True  # the error shows where the model is used
use_neutral = st.checkbox("Score each scan against its subject's neutral scan (BU-3DFE's NE00, Bosphorus's N_N)",
                          value=model_says, key="batch_neutral",
                          help="As `affectvlm predict` does by default: takes a subject's resting lean out of its "
                               "other scans; the neutral scans keep their rows. Off while a class balance is typed, "
                               "as in `affectvlm predict --prior`. Starts off for a fine-tuned model whose own "
                               "validation subjects read better scan by scan (`neutral_reference` in its "
                               "affectvlm.json).")


try:
    model_centres = get_model(choice).subject_mean is not False
except AffectVLMError:
    model_centres = True
use_subject_mean = st.checkbox("Score each subject relative to its own mean (BU-3DFE, Bosphorus names; BU-4DFE "
                               "folders)", value=model_centres, key="batch_subject_mean",
                               help="As `affectvlm predict --subject-mean auto` does by default: a subject with at "
                                    "least 7 scans (4 sequences) whose names span at least 4 classes has what "
                                    "its face shows in all of them taken out; the neutral reference then leaves that "
                                    "subject alone. Off while a class balance is typed. Starts off for a fine-tuned "
                                    "model whose validation subjects read better without it (`subject_mean` in its "
                                    "affectvlm.json).")


def matched(rows: list[dict]) -> list[dict]:
    """The rows to show: as scored, or on a copy scored against each folder's neutral scan and/or with the class
    balance typed in matched."""
    neutral = "auto" if use_neutral and not prior_spec.strip() else "none"
    try:
        from affectvlm.subjects import training_logits

        centre = "auto" if use_subject_mean and not prior_spec.strip() else "none"
        out, notes = match_batch(rows, prior_spec, by_folder=by_folder, neutral=neutral, subject_mean=centre,
                                 added=training_logits(get_model(choice)) if centre == "auto" else None)
    except AffectVLMError as e:
        show_error(e)  # the table still shows, as scored
        return rows
    for note in notes:
        (st.warning if note.warning else st.info)(f"{note.text}.")
    if not prior_spec.strip():
        hint = batch_hint(out)
        if hint is not None:
            st.info(f"Class balance: {hint.text}.")
    return out


def show(scored: tuple[list[dict], str], seconds: float) -> None:
    rows, adapted = scored
    units = [r for r in rows if whole_input_row(r)]  # a sequence counts once, not per frame
    n_err = sum(1 for r in units if r.get("error"))
    (st.warning if n_err else st.success)(f"{len(units) - n_err} scored, {n_err} failed, in {seconds:.1f} s.")
    if adapted:
        st.info(f"{adapted}.")
    rows = matched(rows)
    for r in rows:
        if r.get("error"):
            where = r["file"] if whole_input_row(r) else f"{r['file']} frame {r['frame']}"
            st.error(f"{where}: {r['error']}")
    for note in frame_notes(rows):
        st.warning(note)
    st.dataframe(pd.DataFrame(shown_rows(rows)), width="stretch", hide_index=True)
    c1, c2 = st.columns(2)
    c1.download_button("Download CSV", rows_download(rows, "csv"), "affectvlm_results.csv", "text/csv", key="dl_csv")
    c2.download_button("Download JSON", rows_download(rows, "json"), "affectvlm_results.json", "application/json",
                       key="dl_json")


if files and choice is None:
    st.warning("Fix the model settings in the sidebar first.")
elif files:
    named = [(f.name, f.getvalue()) for f in files]
    sig = files_signature(named, up, front, choice.key, use_adapt)
    try:
        upload = collect_batch(named, limits=S.limits)
        st.caption(f"{upload.found()}.")
        previous = state.get("batch_result")
        if st.button("Score all", type="primary", key="batch_run") or (previous and previous.key == sig):
            result = kept(state, "batch_result", sig, lambda: score(upload, use_adapt))
            show(result.value, result.seconds)
    except AffectVLMError as e:
        show_error(e)
