"""Streamlit pieces every page shares: the per-process caches (settings, job store, models), the page
header with the sidebar (model, views, classes), the orientation box and one-line error messages.

Model logic stays in the library: this module only calls ``affectvlm.model.load_model`` with the
sidebar's choices.
"""
from __future__ import annotations

import streamlit as st

from affectvlm.app.figures import probability_figure
from affectvlm.app.jobs import JobStore
from affectvlm.app.settings import AppSettings, load_settings
from affectvlm.app.sidebar import (AXES, DEFAULT_CLASSES_TEXT, DEFAULT_TEMPLATES_TEXT, MODEL_KINDS, ModelChoice,
                                   choice_from_fields, model_roots, parse_axis_choice, weights_stamp)
from affectvlm.errors import AffectVLMError, ConfigError

SIDEBAR_KEYS = ("model_kind", "model_pretrained", "model_checkpoint", "model_run", "views_text", "custom_classes",
                "classes_text", "templates_text")
# The sidebar's page links. With a plain pages/ folder Streamlit names the home page after its file
# ("app"), and st.navigation cannot be mixed with that folder; so its own navigation is hidden
# (client.showSidebarNavigation = false in .streamlit/config.toml) and these links replace it.
NAV = (("app.py", "Home", ":material/home:"), ("pages/1_Analyse.py", "Analyse", ":material/face:"),
       ("pages/2_Batch.py", "Batch", ":material/table_view:"), ("pages/3_Train.py", "Train", ":material/model_training:"))
ICON = ":material/sentiment_satisfied:"


@st.cache_resource
def settings() -> AppSettings:
    """Settings read once per server process (environment variables; see affectvlm.app.settings)."""
    return load_settings()


@st.cache_resource
def job_store() -> JobStore:
    return JobStore(settings().jobs_db)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load_model(spec: str | None, classes: tuple[str, ...] | None, templates: tuple[str, ...] | None,
                stamp: tuple):
    """``stamp`` (the weight files' times and sizes) is only part of the cache key: a re-exported
    checkpoint folder loads again."""
    from affectvlm.model import load_model

    return load_model(spec, classes=list(classes) if classes else None,
                      prompts=list(templates) if templates else None)


def get_model(choice: ModelChoice):
    """The shared model for a choice (one instance per server process and weights, shared by all sessions).

    Raises the library's ModelError/ConfigError; callers show it with :func:`show_error`.
    """
    return _load_model(choice.spec, choice.classes, choice.templates, weights_stamp(choice.spec))


def show_error(e: BaseException) -> None:
    """One clear message for a library error; anything else is shown with its type."""
    text = str(e) if isinstance(e, AffectVLMError) else f"{type(e).__name__}: {e}"
    st.error(text, icon=":material/error:")


def show_probabilities(probs: dict[str, float], *, key: str, label: str = "Top emotion") -> None:
    """The top class as a metric and the bar chart of every class's probability."""
    top = max(probs, key=probs.get)
    st.metric(label, top, f"{probs[top]:.1%} confidence", delta_color="off")
    st.plotly_chart(probability_figure(probs), width="stretch", key=key, config={"displaylogo": False})


def show_views(images: list, weights: dict[str, float], per_row: int | None = None) -> None:
    """The rendered views the model saw, side by side (``per_row`` to a row: a model's views, then the same views
    at each of its score pitches), each with its weight in the fusion."""
    per_row = max(1, per_row or len(images))
    for start in range(0, len(images), per_row):
        row = images[start:start + per_row]
        for col, (cap, img) in zip(st.columns(per_row), row):
            w = weights.get(cap)
            col.image(img, caption=cap + (f" · weight {w:.2f}" if w is not None and len(images) > 1 else ""),
                      width="stretch")


def show_dataset_summary(summary: dict) -> None:
    """Samples, subjects and classes of a dataset (``trainform.summarise_dataset``), per class, and its warnings."""
    import pandas as pd

    c1, c2, c3 = st.columns(3)
    c1.metric("Samples", summary["n_samples"])
    c2.metric("Subjects", summary["n_subjects"])
    c3.metric("Classes", len(summary["per_class"]))
    st.dataframe(pd.DataFrame({"samples": summary["per_class"], "subjects": summary["subjects_per_class"]})
                 .fillna(0).astype(int), width="stretch")
    if summary.get("per_intensity"):
        st.caption("Per intensity: " + ", ".join(f"{k}: {v}" for k, v in summary["per_intensity"].items()))
    for w in summary.get("warnings", []):
        st.warning(w)


def page_header(title: str, page: str | None = None) -> ModelChoice | None:
    """Page config, the sidebar and the title; returns the sidebar's model choice (None while it is invalid)."""
    st.set_page_config(page_title=f"AffectVLM · {page}" if page else "AffectVLM", page_icon=ICON, layout="wide")
    try:
        settings()
        if page == "Train":
            job_store()
    except AffectVLMError as e:  # an unwritable workspace: one line, and the server keeps serving
        show_error(e)
        st.stop()
    choice = sidebar()
    st.title(title)
    return choice


def orientation_box(label: str, caption: str, *, key: str, many: bool = False) -> tuple[str | None, str | None]:
    """The expander with the up / front axis radios (of one file, or of ``many``); returns the overrides
    (None = detect)."""
    with st.expander(label):
        c1, c2 = st.columns(2)
        up = c1.radio("Up axis of the files" if many else "Up axis of the file", AXES, key=f"{key}_up",
                      horizontal=True)
        front = c2.radio("Front axis (the faces look along)" if many else "Front axis (the face looks along)", AXES,
                         key=f"{key}_front", horizontal=True)
        st.caption(caption)
    return parse_axis_choice(up), parse_axis_choice(front)


def use_run(path: str) -> None:
    """Callback for "use this model for analysis": the sidebar's model becomes the run's ``best/``
    (callbacks may set widget state)."""
    st.session_state["model_kind"] = "run"
    st.session_state["model_run"] = path


def finished_runs() -> dict[str, str]:
    """Run folders with an exported best checkpoint: label -> folder."""
    try:
        return {f"#{job.id} {job.name} ({job.status})": str(job.best_dir)
                for job in job_store().list() if job.has_model}
    except Exception:  # noqa: BLE001 - a broken jobs DB must not break the analysis pages
        return {}


def sidebar() -> ModelChoice | None:
    """Model, views, classes and prompt templates (shown on every page, so their state persists)."""
    sb, ss = st.sidebar, st.session_state
    # keep the sidebar's widget values when the user moves to another page (Streamlit drops the state
    # of widgets that a page run did not draw; re-assigning it marks it as the user's)
    for k in SIDEBAR_KEYS:
        if k in ss:
            ss[k] = ss[k]
    for path, label, icon in NAV:
        sb.page_link(path, label=label, icon=icon)
    sb.divider()
    sb.header("Model")
    ss.setdefault("model_kind", "default")
    kind = sb.radio("Model source", list(MODEL_KINDS), format_func=MODEL_KINDS.get, key="model_kind")
    value = ""
    if kind == "pretrained":
        value = sb.text_input("open_clip name:pretrained tag (or hf-hub:org/repo)", key="model_pretrained",
                              placeholder="ViT-B-32:openai")
    elif kind == "checkpoint":
        value = sb.text_input("Checkpoint folder, weights file or local-dir:/path", key="model_checkpoint",
                              placeholder="/path/to/checkpoint")
    elif kind == "run":
        runs = finished_runs()
        current = ss.get("model_run")
        if current and current not in runs.values():
            runs[f"run {current}"] = current
        if not runs:
            sb.info("No finished training run with a model yet (see the Train page).")
        else:
            labels = {v: k for k, v in runs.items()}
            value = sb.selectbox("Training run", list(runs.values()), format_func=labels.get, key="model_run") or ""
    sb.text_input("Views (yaw or yaw:pitch, degrees)", key="views_text", placeholder="model's views, e.g. 0,-30,30")
    with sb.expander("Zero-shot classes and prompts"):
        st.checkbox("Use my own classes", key="custom_classes")
        ss.setdefault("classes_text", DEFAULT_CLASSES_TEXT)
        ss.setdefault("templates_text", DEFAULT_TEMPLATES_TEXT)
        st.text_area("Classes (comma separated)", key="classes_text", disabled=not ss.get("custom_classes"))
        st.text_area("Prompt templates (one per line, {} = class)", key="templates_text",
                     disabled=not ss.get("custom_classes"))
    try:
        return choice_from_fields(kind, value, settings().default_model, custom=bool(ss.get("custom_classes")),
                              classes_text=ss.get("classes_text", ""), templates_text=ss.get("templates_text", ""),
                              views_text=ss.get("views_text") or "",
                              roots=model_roots(settings().workspace_roots))
    except (ConfigError, ValueError) as e:
        sb.error(str(e))
        return None
