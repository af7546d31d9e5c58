"""The sidebar's values (model source, classes, prompt templates) and what keys the loaded model.

Streamlit-free: :mod:`affectvlm.app.widgets` draws the widgets and passes their text here.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from affectvlm.errors import ConfigError, ModelError
from affectvlm.prompts import DEFAULT_CLASSES
from affectvlm.prompts import parse_classes as parse_class_list

MODEL_KINDS = {
    "default": "Embedded default",
    "pretrained": "open_clip pretrained tag",
    "checkpoint": "Checkpoint folder / weights",
    "run": "Finished training run",
}
AXES = ("auto", "+x", "-x", "+y", "-y", "+z", "-z")
DEFAULT_CLASSES_TEXT = ", ".join(DEFAULT_CLASSES)
DEFAULT_TEMPLATES_TEXT = "a 3D scan of a {} face\na rendering of a {} face\na 3D model of a {} person"


def parse_classes(text: str) -> list[str]:
    """Class names from comma/newline separated text; at least two, no duplicates."""
    return list(parse_class_list([c for c in re.split(r"[,\n]", text or "") if c.strip()]))


def parse_templates(text: str) -> list[str]:
    """Prompt templates, one per line, each with a ``{}`` placeholder for the class name."""
    lines = [t.strip() for t in (text or "").splitlines() if t.strip()]
    if not lines:
        return []
    bad = [t for t in lines if t.count("{}") != 1 or re.search(r"\{[^}]", t)]
    if bad:
        raise ConfigError(f"prompt templates: each needs exactly one '{{}}' placeholder: {bad[0]!r}")
    return lines


def model_roots(workspace_roots: Sequence[Path]) -> tuple[Path, ...]:
    """Where a model the sidebar names may lie: the workspace roots and the embedded model's folder."""
    from affectvlm.model.specs import default_model_candidates

    return (*workspace_roots, *(p.parent for p in default_model_candidates() if p.is_dir()))


def model_spec(kind: str, value: str, default: str | None = None, roots: Sequence[Path] | None = None
               ) -> str | None:
    """The model spec for the sidebar's choice (``ModelError``-free: loading reports bad specs); with ``roots``, a
    path it names must lie inside them (the server's other files are not the user's to load or probe)."""
    from affectvlm.app.settings import check_model_spec

    value = (value or "").strip()
    if kind == "default":
        return default
    if not value:
        raise ConfigError(f"model: enter a value for '{kind}'")
    if kind in ("pretrained", "checkpoint", "run"):
        return value if roots is None else check_model_spec(value, roots)
    raise ConfigError(f"model: unknown choice {kind!r}")


def parse_axis_choice(value: str) -> str | None:
    """An orientation radio's value: None for ``auto`` (detect), else the axis name."""
    return None if value == "auto" else value


@dataclass(frozen=True)
class ModelChoice:
    """What the sidebar chose: a model spec (None = the embedded default), optional own classes and
    prompt templates, and views (None = the model's own)."""

    spec: str | None
    classes: tuple[str, ...] | None = None
    templates: tuple[str, ...] | None = None
    views: str | None = None

    @property
    def key(self) -> str:
        return hashlib.sha1(repr((self.spec, self.classes, self.templates, self.views)).encode()).hexdigest()[:12]


def choice_from_fields(kind: str, value: str, default: str | None, *, custom: bool, classes_text: str,
                       templates_text: str, views_text: str, roots: Sequence[Path] | None = None) -> ModelChoice:
    """The :class:`ModelChoice` of the sidebar's fields (views validated now: a clear message beats a
    failure mid-analysis)."""
    from affectvlm.render import parse_views

    classes = templates = None
    if custom:
        classes = tuple(parse_classes(classes_text))
        templates = tuple(parse_templates(templates_text)) or None
    views = views_text.strip() or None
    if views:
        parse_views(views)
    return ModelChoice(model_spec(kind, value, default=default, roots=roots), classes, templates, views)


def weights_stamp(spec: str | None) -> tuple[tuple[str, int, int], ...]:
    """``(file, mtime_ns, size)`` of every file of the local model ``spec`` names (a checkpoint folder, a run's
    ``best/``, a weights file); ``()`` for downloads and architecture names. Part of the app's model cache
    key, so a re-exported checkpoint is loaded again."""
    from affectvlm.model import parse_spec

    try:
        path = parse_spec(spec).path
    except ModelError:
        return ()  # loading will say what is wrong
    if not path:
        return ()
    root = Path(path)
    out = []
    try:
        files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else [root]
        for p in files:
            st = p.stat()
            out.append((p.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return tuple(out)  # replaced while we looked: the next rerun sees the new files
    return tuple(out)
