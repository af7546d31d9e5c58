"""Streamlit pieces shared by the app's pages: settings, the shared model cache, the sidebar.

Not a page: Streamlit's multipage navigation skips ``pages/__init__.py``. Model logic stays in the library:
this module only calls ``affectvlm.model.load_model`` and passes the sidebar's choices on.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import streamlit as st

from affectvlm.appsupport import AppSettings, load_settings, model_spec, parse_classes, parse_templates
from affectvlm.errors import AffectVLMError, ConfigError

MODEL_KINDS = {
    "default": "Embedded default",
    "pretrained": "open_clip pretrained tag",
    "checkpoint": "Checkpoint folder / weights",
    "run": "Finished training run",
}
SIDEBAR_KEYS = ("model_kind", "model_pretrained", "model_checkpoint", "model_run", "views_text", "custom_classes",
                "classes_text", "templates_text")
AXES = ["auto", "+x", "-x", "+y", "-y", "+z", "-z"]
# The sidebar's page links. With a plain pages/ folder Streamlit names the home page after its file
# ("app"), and st.navigation cannot be mixed with that folder; so its own navigation is hidden
# (client.showSidebarNavigation = false in .streamlit/config.toml) and these links replace it.
NAV = (("app.py", "Home", ":material/home:"), ("pages/1_Analyse.py", "Analyse", ":material/face:"),
       ("pages/2_Batch.py", "Batch", ":material/table_view:"), ("pages/3_Train.py", "Train", ":material/model_training:"))


@st.cache_resource
def settings() -> AppSettings:
    """Settings read once per server process (environment variables; see affectvlm.appsupport)."""
    return load_settings()


@st.cache_resource
def job_store():
    from affectvlm.jobs import JobStore

    return JobStore(settings().jobs_db)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load_model(spec: str | None, classes: tuple[str, ...] | None, templates: tuple[str, ...] | None):
    from affectvlm.model import load_model

    kw: dict[str, Any] = {}
    if classes:
        kw["classes"] = list(classes)
    if templates:
        from affectvlm.prompts import default_prompts

        # the user's lines are adjective templates; class synonyms still come from the shipped prompt file
        data = default_prompts().to_dict()
        data["templates"] = {"adjective": list(templates)}
        kw["prompts"] = data
    return load_model(spec, **kw)


@dataclass(frozen=True)
class ModelChoice:
    spec: str | None
    classes: tuple[str, ...] | None
    templates: tuple[str, ...] | None
    views: str | None

    @property
    def key(self) -> str:
        return hashlib.sha1(repr((self.spec, self.classes, self.templates, self.views)).encode()).hexdigest()[:12]


def get_model(choice: ModelChoice):
    """The shared model for a choice (one instance per server process, shared by all sessions).

    Raises the library's ModelError/ConfigError; callers show it with :func:`show_error`.
    """
    return _load_model(choice.spec, choice.classes, choice.templates)


def show_error(e: BaseException) -> None:
    """One clear message for a library error; anything else is shown with its type."""
    if isinstance(e, AffectVLMError):
        st.error(str(e), icon=":material/error:")
    else:
        st.error(f"{type(e).__name__}: {e}", icon=":material/error:")


def _use_run(path: str) -> None:
    """Callback for "use this model for analysis" (callbacks may set widget state)."""
    st.session_state["model_kind"] = "run"
    st.session_state["model_run"] = path


def use_run_callback(path: str):
    return _use_run, (path,)


def finished_runs() -> dict[str, str]:
    """Run folders with an exported best checkpoint: label -> folder."""
    out = {}
    try:
        for job in job_store().list():
            if job.has_model:
                out[f"#{job.id} {job.name} ({job.status})"] = str(job.best_dir)
    except Exception:  # noqa: BLE001 - a broken jobs DB must not break the analysis pages
        pass
    return out


def sidebar() -> ModelChoice | None:
    """Model, views, classes and prompt templates (shown on every page, so their state persists)."""
    s = settings()
    sb = st.sidebar
    ss = st.session_state
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
        ss.setdefault("classes_text", "neutral, happiness, sadness, surprise, fear, disgust, anger")
        ss.setdefault("templates_text", "a 3D scan of a {} face\na rendering of a {} face\na 3D model of a {} person")
        st.text_area("Classes (comma separated)", key="classes_text", disabled=not ss.get("custom_classes"))
        st.text_area("Prompt templates (one per line, {} = class)", key="templates_text",
                     disabled=not ss.get("custom_classes"))
    try:
        spec = model_spec(kind, value, default=s.default_model)
        classes = templates = None
        if ss.get("custom_classes"):
            classes = tuple(parse_classes(ss.get("classes_text", "")))
            templates = tuple(parse_templates(ss.get("templates_text", ""))) or None
        views = (ss.get("views_text") or "").strip() or None
        if views:
            from affectvlm.render import parse_views

            parse_views(views)  # validate now: a clear message beats a failure mid-analysis
    except (ConfigError, ValueError) as e:
        sb.error(str(e))
        return None
    return ModelChoice(spec, classes, templates, views)


def model_caption(model) -> str:
    from affectvlm.model import describe_provenance

    return describe_provenance(getattr(model, "provenance", None))


# ---------------------------------------------------------------------------------------------------
# Scoring: the library's own entry points, exactly as the CLI uses them.


def score_mesh(mesh, model, views: str | None, up: str | None, front: str | None) -> dict:
    """``affectvlm.predict.predict_mesh``: probs, label, confidence, images the model saw, view weights."""
    from affectvlm.predict import predict_mesh

    return predict_mesh(mesh, model, views=views, up=up, front=front, return_images=True)


def iter_sequence_rows(seq, model, views: str | None, up: str | None, front: str | None):
    """``affectvlm.predict.iter_sequence``: per-frame rows as they are scored, then the pooled row."""
    from affectvlm.predict import iter_sequence

    yield from iter_sequence(seq, model, views=views, up=up, front=front)
