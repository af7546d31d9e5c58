"""The 3D preview: a canonicalised, decimated copy of a scan and its rotatable plotly figure."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affectvlm.geometry import canonicalise, decimate, texture_vertex_colors
from affectvlm.mesh import Mesh
from affectvlm.results import FaceFrame

PREVIEW_COLOR = "rgb(214,196,182)"  # light skin tone for untextured scans
LANDMARK_COLOR = "#d62728"
ORIENTATION_WARNING = ("Orientation was guessed with confidence {confidence}, under the {threshold} it needs to be "
                       "sure; check the views and fix up/front in the Orientation box")
ORIENTATION_FLAGGED = ("Orientation is flagged as unsure{confidence}: {why}; check the views and fix up/front in the "
                       "Orientation box")


@dataclass
class Preview:
    """Display arrays for plotly ``Mesh3d`` (canonical frame: +Y up, face looking at +Z) and the
    canonical mesh's ``meta`` (its ``canonical`` record: axes, confidence, landmarks)."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)


def preview(mesh: Mesh, *, max_faces: int = 30_000, up: str | None = None, front: str | None = None,
            canonical: bool = True) -> Preview:
    """Canonicalise (with the user's axis overrides, as the renderer does) and decimate for display.
    A mesh that is already canonical (``canonical=False``: a :class:`affectvlm.results.Prepared` scan's
    ``mesh``) is only decimated."""
    m = canonicalise(mesh, up=up or None, front=front or None, landmarks=True) if canonical else mesh
    v, f, c = decimate(m.vertices, m.faces, max_faces, texture_vertex_colors(m))
    return Preview(v, f, c, dict(m.meta))


def decimals(x: float, other: float | None = None) -> str:
    """``x`` with two decimals, or up to four where two would round it up to 1 or show it as ``other``."""
    for d in (2, 3, 4):
        text = f"{x:.{d}f}"
        if (x >= 1 or float(text) < 1) and (other is None or text != f"{other:.{d}f}"):
            break
    return text


def orientation_caption(frame: FaceFrame | None) -> str:
    """``up -y (guessed, confidence 0.06), front +z (set)``: the file axes of a scan's face frame."""
    if frame is None:
        return ""
    parts = []
    for axis, name in (("up", frame.up), ("front", frame.front)):
        conf = frame.axis_confidence.get(axis)
        how = f"guessed, confidence {decimals(conf)}" if conf is not None else (
            "guessed" if axis in frame.detected else "set")
        parts.append(f"{axis} {name} ({how})")
    return ", ".join(parts)


def preview_note(pv: Preview, scan: Mesh, shown: Mesh, frame: FaceFrame | None) -> str:
    """The caption under a preview of ``shown`` (``scan`` canonicalised, maybe cut to the face region the model
    renders): the scan's size, the crop, the decimation, the file axes of its face frame."""
    note = f"{scan.n_vertices:,} vertices, {scan.n_faces:,} faces"
    if shown.n_faces < scan.n_faces:
        note += f" (face region: {shown.n_faces:,})"
    if len(pv.faces) < shown.n_faces:
        note += f" (preview decimated to {len(pv.faces):,})"
    if axes := orientation_caption(frame):
        note += " · file axes: " + axes
    return note


def orientation_warning(frame: FaceFrame | None) -> str | None:
    """What to say when the automatic up/front guess of ``frame`` is flagged: its confidence and the threshold it
    is under (:data:`ORIENTATION_WARNING`), or why it is flagged above it (:data:`ORIENTATION_FLAGGED`)."""
    if frame is None or not frame.low_confidence:
        return None
    from affectvlm.geometry import flag_threshold

    threshold = flag_threshold()
    conf = frame.confidence
    if conf is not None and conf < threshold:
        return ORIENTATION_WARNING.format(confidence=decimals(conf, threshold), threshold=decimals(threshold))
    why = ("the frames of this sequence disagree on which way the face looks" if frame.source == "sequence" else
           "the scan lies tilted away from its file's axes, and a frame found on its principal axes is flagged "
           "whatever its confidence")
    since = "" if conf is None else f" although its confidence is {decimals(conf)}"
    return ORIENTATION_FLAGGED.format(confidence=since, why=why)


def landmarks_canonical(meta: dict[str, Any] | None) -> np.ndarray | None:
    """The face-frame network's landmarks (``meta["canonical"]["landmarks"]``, file coordinates) moved into
    the canonical frame the preview shows; None when the scan has none."""
    c = (meta or {}).get("canonical") or {}
    if not c.get("landmarks") or "rotation" not in c:
        return None
    p = np.asarray(c["landmarks"], dtype=np.float64)
    R = np.asarray(c["rotation"], dtype=np.float64)
    return (p - np.asarray(c["centre"])) @ R.T * float(c["scale"])


def mesh3d_figure(pv: Preview, *, height: int = 420, title: str | None = None):
    """A rotatable, shaded plotly figure of the preview: camera in front of the face (+Z), +Y up.

    Smooth (vertex-normal) shading with a key light above-right of the viewer. The camera uses a
    perspective projection on purpose: with plotly's orthographic projection the WebGL mesh shader
    lights the back side of the surface, and the face shows as a flat dark silhouette.
    """
    import plotly.graph_objects as go

    v, f = pv.vertices * 100.0, pv.faces  # plotly drops normals of tiny faces (facenormalsepsilon)
    kw: dict[str, Any] = {}
    if pv.colors is not None:
        kw["vertexcolor"] = [f"rgb({r},{g},{b})" for r, g, b in pv.colors.tolist()]
    else:
        kw["color"] = PREVIEW_COLOR
    trace = go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], flatshading=False,
                      lighting=dict(ambient=0.3, diffuse=0.7, specular=0.2, roughness=0.5, fresnel=0.1,
                                    facenormalsepsilon=0, vertexnormalsepsilon=0),
                      lightposition=dict(x=1e5, y=1e5, z=1e5), hoverinfo="skip", name="scan", **kw)
    fig = go.Figure(trace)
    lm = landmarks_canonical(pv.meta)
    if lm is not None:
        p = lm * 100.0 + np.array([0.0, 0.0, 0.5])  # just in front of the surface
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name="landmarks",
                                   marker=dict(size=2.5, color=LANDMARK_COLOR), hoverinfo="skip"))
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0), title=title, showlegend=False,
        scene=dict(aspectmode="data", xaxis=dict(visible=False), yaxis=dict(visible=False),
                   zaxis=dict(visible=False), dragmode="orbit",
                   camera=dict(up=dict(x=0, y=1, z=0), center=dict(x=0, y=0, z=0), eye=dict(x=0, y=0, z=1.9),
                               projection=dict(type="perspective"))),
        uirevision="keep")
    return fig
