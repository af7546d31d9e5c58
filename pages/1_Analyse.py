"""Analyse page: one scan or a 4D sequence -> 3D preview, the views the model sees, probabilities."""
from __future__ import annotations

import time

import streamlit as st

from affectvlm.app.figures import sequence_figure
from affectvlm.app.preview import Preview, mesh3d_figure, orientation_warning, preview, preview_note
from affectvlm.app.state import kept
from affectvlm.app.uploads import UPLOAD_TYPES, UploadPlan, list_samples, load_input, receive_upload, sample_kind, signature
from affectvlm.app.widgets import (get_model, orientation_box, page_header, settings, show_error, show_probabilities,
                                   show_views)
from affectvlm.errors import AffectVLMError
from affectvlm.predict import POOLINGS, iter_sequence, pool_probabilities, predict_mesh, prepare
from affectvlm.results import FaceFrame

choice = page_header("Analyse a scan or a 4D sequence", "Analyse")
S = settings()
state = st.session_state
samples = list_samples()
if pending := state.pop("pending_sample", None):  # a sample chosen on the Home page
    state["an_source"] = "Bundled sample"
    if label := next((k for k, v in samples.items() if str(v) == pending), None):
        state["an_sample"] = label
source = st.radio("Input", ["Upload", "Bundled sample"], horizontal=True, key="an_source", label_visibility="collapsed")


def chosen_input() -> tuple[UploadPlan, str] | None:
    """What the user chose (a bundled sample or an upload, written to its own temp folder) and its signature."""
    if source == "Bundled sample":
        if not samples:
            st.info("No bundled samples in affectvlm/data/samples/.")
            return None
        path = samples[st.selectbox("Sample", list(samples), key="an_sample")]
        return UploadPlan(sample_kind(path), path, path.name, 1), signature("sample", str(path))
    files = st.file_uploader(
        "Drop a scan (with its texture image, if any), a .zip of frames, or several frame files of a 4D sequence",
        type=UPLOAD_TYPES, accept_multiple_files=True, key="an_upload",
        help=f"Up to {S.max_upload_mb} MB per file. Formats: OBJ PLY STL OFF GLB GLTF WRL BNT; textures BMP PNG JPG.")
    if not files:
        return None
    upload = receive_upload([(f.name, f.getvalue()) for f in files], state.pop("an_received", None), limits=S.limits)
    state["an_received"] = upload
    return upload.plan, upload.signature


def orientation() -> tuple[str | None, str | None]:
    return orientation_box("Orientation (if the automatic frontal guess is wrong)",
                           "The preview and the rendered views use these overrides; 'auto' detects them.", key="an")


def show_preview(pv: Preview, scan, shown, frame: FaceFrame | None) -> None:
    st.plotly_chart(mesh3d_figure(pv), width="stretch", key="preview3d", config={"displaylogo": False})
    st.caption(preview_note(pv, scan, shown, frame))


def analyse_scan(mesh, model, sig: str) -> None:
    up, front = orientation()
    key = (sig, choice.key, up, front)
    # one canonicalisation: the preview shows the very mesh that is scored
    prepared = kept(state, "an_prepared", key, lambda: prepare(mesh, model, views=choice.views, up=up, front=front))
    frame = prepared.value.frame
    if warning := orientation_warning(frame):
        st.warning(warning, icon=":material/screen_rotation:")
    with st.spinner("Rendering views and scoring…"):
        res = kept(state, "an_scan_result", key, lambda: predict_mesh(prepared.value, model))
    c1, c2 = st.columns([3, 2])
    with c1:
        st.subheader("3D preview")
        shown = prepared.value.mesh
        show_preview(preview(shown, max_faces=S.preview_max_faces, canonical=False), mesh, shown, frame)
    with c2:
        st.subheader("Result")
        show_probabilities(res.value.probabilities, key="probs_bar")
        st.caption(f"Scored in {prepared.seconds + res.seconds:.2f} s")
    st.subheader("What the model sees")
    show_views(res.value.images, res.value.view_weights, per_row=None if choice.views else len(model.render.views))


def score_frames(seq, model, up, front, chart) -> tuple[list[dict], dict | None]:
    """Per-frame rows (the chart fills in as they come), then the pooled row."""
    rows: list[dict] = []
    progress, drawn = st.progress(0.0, text="Scoring frames…"), 0.0
    for row in iter_sequence(seq, model, views=choice.views, up=up, front=front):
        if row["frame"] == "sequence":
            progress.empty()
            return rows, row
        rows.append(row)
        if time.perf_counter() - drawn > 0.25 or len(rows) == len(seq):
            chart.plotly_chart(sequence_figure(rows, model.classes, n_total=len(seq)), width="stretch")
            progress.progress(len(rows) / len(seq), text=f"Scoring frames… {len(rows)}/{len(seq)}")
            drawn = time.perf_counter()
    return rows, None


def analyse_sequence(seq, model, sig: str) -> None:
    up, front = orientation()
    warn_slot = st.empty()
    classes = list(model.classes)
    st.subheader(f"Per-frame probabilities — {len(seq)} frames")
    chart = st.empty()
    res = kept(state, "an_seq_result", (sig, choice.key, up, front, len(seq)),
               lambda: score_frames(seq, model, up, front, chart))
    (rows, pooled), took = res.value, res.seconds
    ids = [r["frame"] for r in rows]
    idx = st.select_slider("Frame", options=list(range(len(ids))), format_func=lambda i: str(ids[i]), key="an_frame")
    chart.plotly_chart(sequence_figure(rows, classes, n_total=len(seq), current=ids[idx]), width="stretch",
                       key="seq_chart")
    c1, c2 = st.columns([3, 2])
    with c1:
        st.subheader(f"Frame {ids[idx]}")
        mesh = seq.frames[idx]
        if rows[idx]["error"]:  # a frame that could not be read or is no face: its reason, not a preview
            st.error(f"Not scored: {rows[idx]['error']}")
        else:
            pv = preview(mesh, max_faces=S.preview_max_faces, up=up, front=front)
            frame = FaceFrame.from_meta(pv.meta)
            if warning := orientation_warning(frame):
                warn_slot.warning(warning, icon=":material/screen_rotation:")
            show_preview(pv, mesh, mesh, frame)
    with c2:
        st.subheader("Sequence result")
        how = st.radio("Pool the frames by", POOLINGS, horizontal=True, key="an_pooling",
                       help="contrast: the most expressive 30 % of frames against the calmest, neutral left out of "
                            "the label; peak: the same frames averaged, neutral included (for recordings that may "
                            "stay neutral); mean: all frames")
        scored = [[float(r[c]) for c in classes] for r in rows if not r["error"]]
        if pooled and not pooled["error"] and scored:
            probs = pool_probabilities(scored, classes, how)
            show_probabilities(dict(zip(classes, map(float, probs))), key="seq_bar", label="Sequence emotion")
        if not rows[idx]["error"]:
            st.markdown(f"**Frame {ids[idx]}:** {rows[idx]['label']} ({float(rows[idx]['confidence']):.1%})")
        failed = [r for r in rows if r["error"]]
        if failed:  # said here too: otherwise only the slider, on that frame, shows it
            st.warning(f"{len(failed)} of {len(rows)} frames not scored (left out of the sequence result): "
                       + "; ".join(f"frame {r['frame']}: {r['error']}" for r in failed[:5])
                       + (f"; and {len(failed) - 5} more" if len(failed) > 5 else ""))
        st.caption(f"{len(rows) - len(failed)} frames scored in {took:.2f} s "
                   f"({took / max(len(rows), 1) * 1000:.0f} ms/frame)")


try:
    chosen = chosen_input()
except AffectVLMError as e:
    show_error(e)
    chosen = None
if chosen is None:
    st.stop()
plan, sig = chosen
if choice is None:
    st.warning("Fix the model settings in the sidebar first.")
    st.stop()
n_frames = None
if plan.kind == "sequence":
    n_frames = st.number_input("Frames to score (evenly spaced; 0 = all)", 0, S.limits.max_frames, 0, key="an_nframes")
try:
    loaded = kept(state, "an_loaded", (sig, n_frames),
                  lambda: load_input(plan.kind, plan.path, plan.name, n_frames=n_frames, limits=S.limits)).value
    model = get_model(choice)
    st.caption(f"**{plan.name}** · model `{model.spec or choice.spec or 'default'}`")
    if plan.kind == "scan":
        analyse_scan(loaded, model, sig)
    else:
        analyse_sequence(loaded, model, sig)
except AffectVLMError as e:
    show_error(e)
