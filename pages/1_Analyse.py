"""Analyse page: one scan or a 4D sequence -> 3D preview, the views the model sees, probabilities."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import streamlit as st

from affectvlm.appsupport import (UPLOAD_TYPES, Preview, list_samples, mesh3d_figure, new_upload_dir,
                                  orientation_summary, plan_upload, preview, probability_figure, sample_kind,
                                  sequence_figure)
from affectvlm.errors import AffectVLMError
from pages import AXES, get_model, iter_sequence_rows, score_mesh, settings, show_error, sidebar

st.set_page_config(page_title="AffectVLM · Analyse", page_icon=":material/sentiment_satisfied:", layout="wide")
S = settings()
ss = st.session_state
ss["_model_choice"] = sidebar()

st.title("Analyse a scan or a 4D sequence")

# A sample chosen on the Home page arrives here.
pending = ss.pop("pending_sample", None)
samples = list_samples()
if pending:
    ss["an_source"] = "Bundled sample"
    label = next((k for k, v in samples.items() if str(v) == pending), None)
    if label:
        ss["an_sample"] = label

source = st.radio("Input", ["Upload", "Bundled sample"], horizontal=True, key="an_source", label_visibility="collapsed")


def _sig(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()[:16]


def current_input() -> tuple[str, Path, str, str] | None:
    """(kind, path, display name, signature) of what the user chose, or None."""
    if source == "Bundled sample":
        if not samples:
            st.info("No bundled samples in affectvlm/data/samples/.")
            return None
        label = st.selectbox("Sample", list(samples), key="an_sample")
        path = samples[label]
        return sample_kind(path), path, path.name, _sig("sample", str(path))
    files = st.file_uploader(
        "Drop a scan (with its texture image, if any), a .zip of frames, or several frame files of a 4D sequence",
        type=UPLOAD_TYPES, accept_multiple_files=True, key="an_upload",
        help=f"Up to {S.max_upload_mb} MB per file. Formats: OBJ PLY STL OFF GLB GLTF WRL BNT; textures BMP PNG JPG.")
    if not files:
        return None
    payload = [(f.name, f.getvalue()) for f in files]
    sig = _sig(*[(n, hashlib.sha1(b).hexdigest()) for n, b in payload])
    prev = ss.get("an_plan")
    if prev and prev[0] == sig:
        plan = prev[1]
    else:
        if prev:
            shutil.rmtree(prev[2], ignore_errors=True)
        ss.pop("an_plan", None)
        workdir = new_upload_dir()
        try:
            plan = plan_upload(payload, workdir, limits=S.limits)
        except AffectVLMError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        ss["an_plan"] = (sig, plan, workdir)
    return plan.kind, plan.path, plan.name, sig


def _load(kind: str, path: Path, sig: str, n_frames: int | None, name: str):
    key = (sig, n_frames)
    cached = ss.get("an_loaded")
    if cached and cached[0] == key:
        return cached[1]
    from affectvlm import io as aio
    from affectvlm.errors import InputError

    t0 = time.perf_counter()
    try:
        if kind == "scan":
            obj = aio.load_mesh(path, limits=S.limits)
        else:
            obj = aio.load_sequence(path, n_frames=n_frames or None, limits=S.limits)
    except InputError as e:  # name the user's file, not the server's upload folder
        raise InputError(name, e.problem) from None
    if kind != "scan" and len(obj) == 0:
        raise AffectVLMError(f"{name}: the sequence has no frames")
    ss["an_loaded"] = (key, obj)
    ss["an_load_s"] = time.perf_counter() - t0
    return obj


def orientation_controls() -> tuple[str | None, str | None]:
    with st.expander("Orientation (if the automatic frontal guess is wrong)"):
        c1, c2 = st.columns(2)
        up = c1.radio("Up axis of the file", AXES, key="an_up", horizontal=True)
        front = c2.radio("Front axis (the face looks along)", AXES, key="an_front", horizontal=True)
        st.caption("The preview and the rendered views use these overrides; 'auto' detects them.")
    return (None if up == "auto" else up), (None if front == "auto" else front)


def make_preview(mesh, up, front) -> Preview:
    """The display mesh, canonicalised with the user's overrides exactly as the renderer does."""
    return preview(mesh, max_faces=S.preview_max_faces, up=up, front=front)


def orientation_warning(pv: Preview, slot) -> None:
    """Say so when the automatic up/front guess is unsure (``meta["canonical"]["low_confidence"]``)."""
    msg = orientation_summary(pv.meta)["warning"]
    if msg:
        slot.warning(msg, icon=":material/screen_rotation:")


def show_preview(mesh, pv: Preview, *, key: str, title: str | None = None) -> None:
    st.plotly_chart(mesh3d_figure(pv, title=title), width="stretch", key=key,
                    config={"displaylogo": False})
    note = f"{mesh.n_vertices:,} vertices, {mesh.n_faces:,} faces"
    if len(pv.faces) < mesh.n_faces:
        note += f" (preview decimated to {len(pv.faces):,})"
    axes = orientation_summary(pv.meta)["caption"]
    if axes:
        note += " · file axes: " + axes
    st.caption(note)


def show_probs(probs: dict[str, float], *, key: str, label: str = "Top emotion") -> None:
    top = max(probs, key=probs.get)
    st.metric(label, top, f"{probs[top]:.1%} confidence", delta_color="off")
    st.plotly_chart(probability_figure(probs), width="stretch", key=key, config={"displaylogo": False})


def analyse_scan(mesh, model, choice, sig: str) -> None:
    up, front = orientation_controls()
    pv = make_preview(mesh, up, front)
    orientation_warning(pv, st)
    rkey = (sig, choice.key, up, front)
    res = ss.get("an_scan_result")
    if not res or res[0] != rkey:
        t0 = time.perf_counter()
        with st.spinner("Rendering views and scoring…"):
            out = score_mesh(mesh, model, choice.views, up, front)
        ss["an_scan_result"] = res = (rkey, out, time.perf_counter() - t0)
    out = res[1]
    c1, c2 = st.columns([3, 2])
    with c1:
        st.subheader("3D preview")
        show_preview(mesh, pv, key="preview3d")
    with c2:
        st.subheader("Result")
        show_probs(out["probs"], key="probs_bar")
        st.caption(f"Scored in {res[2]:.2f} s")
    st.subheader("What the model sees")
    imgs = out.get("images") or []
    weights = out.get("view_weights") or {}
    if imgs:
        cols = st.columns(len(imgs))
        for col, (cap, img) in zip(cols, imgs):
            w = weights.get(cap)
            col.image(img, caption=cap + (f" · weight {w:.2f}" if w is not None and len(imgs) > 1 else ""),
                      width="stretch")


def analyse_sequence(seq, model, choice, sig: str) -> None:
    up, front = orientation_controls()
    warn_slot = st.empty()
    classes = list(model.classes)
    rkey = (sig, choice.key, up, front, len(seq))
    res = ss.get("an_seq_result")
    st.subheader(f"Per-frame probabilities — {len(seq)} frames")
    chart = st.empty()
    if not res or res[0] != rkey:
        rows: list[dict] = []
        seq_row = None
        progress = st.progress(0.0, text="Scoring frames…")
        t0 = time.perf_counter()
        last_draw = 0.0
        for row in iter_sequence_rows(seq, model, choice.views, up, front):
            if row.get("frame") == "sequence":
                seq_row = row
                continue
            rows.append(row)
            now = time.perf_counter()
            if now - last_draw > 0.25 or len(rows) == len(seq):
                chart.plotly_chart(sequence_figure(rows, classes, n_total=len(seq)), width="stretch")
                progress.progress(len(rows) / len(seq), text=f"Scoring frames… {len(rows)}/{len(seq)}")
                last_draw = now
        progress.empty()
        ss["an_seq_result"] = res = (rkey, rows, seq_row, time.perf_counter() - t0)
    _, rows, seq_row, took = res
    ids = [r["frame"] for r in rows]
    idx = st.select_slider("Frame", options=list(range(len(ids))), format_func=lambda i: str(ids[i]), key="an_frame")
    chart.plotly_chart(sequence_figure(rows, classes, n_total=len(seq), current=ids[idx]), width="stretch",
                       key="seq_chart")
    c1, c2 = st.columns([3, 2])
    with c1:
        st.subheader(f"Frame {ids[idx]}")
        pv = make_preview(seq.frames[idx], up, front)
        orientation_warning(pv, warn_slot)
        show_preview(seq.frames[idx], pv, key="preview3d", title=None)
    with c2:
        st.subheader("Sequence result")
        if seq_row:
            show_probs({c: float(seq_row[c]) for c in classes}, key="seq_bar", label="Sequence emotion")
        st.markdown(f"**Frame {ids[idx]}:** {rows[idx]['label']} ({float(rows[idx]['confidence']):.1%})")
        st.caption(f"{len(rows)} frames scored in {took:.2f} s ({took / max(len(rows), 1) * 1000:.0f} ms/frame)")


choice = ss.get("_model_choice")
try:
    chosen = current_input()
except AffectVLMError as e:
    show_error(e)
    chosen = None
if chosen is None:
    st.stop()
kind, path, name, sig = chosen
if choice is None:
    st.warning("Fix the model settings in the sidebar first.")
    st.stop()

n_frames = None
if kind == "sequence":
    n_frames = st.number_input("Frames to score (evenly spaced; 0 = all)", 0, S.limits.max_frames, 0, key="an_nframes")
try:
    obj = _load(kind, path, sig, n_frames, name)
    model = get_model(choice)
    st.caption(f"**{name}** · model `{getattr(model, 'spec', None) or choice.spec or 'default'}`")
    if kind == "scan":
        analyse_scan(obj, model, choice, sig)
    else:
        analyse_sequence(obj, model, choice, sig)
except AffectVLMError as e:
    show_error(e)
