"""Expression transfer between face models: one model's expression sculpts on another model's face.

A hybrid :class:`FaceModel` keeps the target's mesh, identities and landmarks and carries the source's AU
targets (and sculpted emotion targets, when the source has them). With hybrids in the data a learner sees one
sculpt on two faces and two sculpts on one face, so what it keeps is the expression, not the face model.

Correspondence, on the two neutral faces:
1. 83 landmarks on each (the embedded face-frame network's, found the same way on both models);
2. a similarity fit of the source landmarks onto the target's, a thin-plate warp through them, then a few
   rounds of smooth non-rigid ICP that pull the source surface onto the target's;
3. each target vertex takes the inverse-distance mean of its nearest warped source vertices whose normals
   agree with its own (so the upper lip never takes the lower lip's motion), fading to nothing beyond
   ``reach_mm``, and never across the line where the lips meet; a few neighbour-averaging passes smooth the seams.
A source displacement is rotated and scaled by the similarity fit into the target's frame.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from affectvlm.errors import ConfigError
from affectvlm.synth.facemodel import FaceModel

__all__ = ["EXPRESSIONS", "Correspondence", "correspond", "expression_models", "hybrid_model", "lip_side",
           "mixed_model", "neutral_landmarks", "mesh_homes", "same_mesh", "with_mixed_expressions",
           "with_swapped_expressions"]


@dataclass(frozen=True)
class Correspondence:
    """Target vertex ``i`` takes ``sum_j weights[i, j] * source_delta[index[i, j]]`` (rotated by ``rotation``
    and scaled by ``scale``), then ``smooth`` averaging passes over the target mesh."""

    index: np.ndarray      # (N_target, K) source vertex ids
    weights: np.ndarray    # (N_target, K), rows sum to <= 1 (less where the source is out of reach)
    rotation: np.ndarray   # (3, 3) source frame -> target frame
    scale: float
    residual_mm: float     # landmark RMS after the similarity fit (how different the two faces are)
    smooth: int = 2

    def apply(self, delta: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """A source (N_source, 3) displacement field as a target (N_target, 3) one."""
        d = np.asarray(delta, np.float64) @ self.rotation.T * self.scale
        out = np.einsum("nk,nkc->nc", self.weights, d[self.index])
        return _smooth(out, faces, len(out), self.smooth)


def neutral_landmarks(model: FaceModel) -> np.ndarray:
    """(83, 3) landmarks of the model's neutral face, found by the embedded face-frame network on its face crop
    (the same finder for every model, so a systematic bias of the finder cancels between two models)."""
    from affectvlm.errors import InputError
    from affectvlm.faceframe import estimate_frame

    v = model.neutral.astype(np.float64)
    f = model.faces
    if model.face_mask.any():
        f = f[model.face_mask[f].all(1)]
    est = estimate_frame(v, f)
    if est is None or est.landmarks is None:
        raise InputError(model.source or model.name, "no face-frame network installed to find landmarks")
    return np.asarray(est.landmarks, np.float64)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: ``dst ~ s * R @ src + t``."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (a ** 2).sum())
    return s, R, md - s * R @ ms


def _smooth(x: np.ndarray, faces: np.ndarray, n: int, passes: int) -> np.ndarray:
    if passes <= 0 or len(faces) == 0:
        return x
    import scipy.sparse as sp

    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    A = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    A = A + sp.identity(n, format="csr")
    A = sp.diags(1.0 / np.asarray(A.sum(1)).ravel()) @ A
    for _ in range(passes):
        x = A @ x
    return x


def lip_side(model: FaceModel, landmarks: np.ndarray) -> np.ndarray:
    """+1 on the upper lip and the face above it, -1 on the lower lip and below, 0 elsewhere (beyond the mouth
    corners, far from the mouth, or undecided). Near the mouth a vertex is "lower" when the model's jaw drop
    (AU26) carries it down and "upper" when it does not, which finds the line where the lips meet exactly;
    a model without AU26 falls back to the line through the inner-lip landmarks (BU-3DFE order: 60 and 64
    the inner corners, 61-63 upper and 65-67 lower inner lip)."""
    L = np.asarray(landmarks, np.float64)
    pts = np.stack([L[60], (L[61] + L[67]) / 2, (L[62] + L[66]) / 2, (L[63] + L[65]) / 2, L[64]])
    pts = pts[np.argsort(pts[:, 0])]
    v = model.neutral.astype(np.float64)
    dy = v[:, 1] - np.interp(v[:, 0], pts[:, 0], pts[:, 1])
    lo, hi = min(L[48, 0], L[54, 0]) - 3.0, max(L[48, 0], L[54, 0]) + 3.0
    near = (v[:, 0] > lo) & (v[:, 0] < hi) & (np.abs(dy) < 25.0)
    jaw = sum((model.au_targets[k] for k in ("AU26", "AU26L", "AU26R") if k in model.au_targets),
              np.zeros_like(v))
    drop = -np.asarray(jaw, np.float64)[:, 1]
    top = drop[near].max() if near.any() else 0.0
    if top <= 1.0:  # no jaw drop to read: the landmark line, with a dead band
        return np.where(near & (np.abs(dy) > 1.5), np.sign(dy), 0.0).astype(np.int8)
    side = np.where(drop > 0.35 * top, -1, np.where(drop < 0.15 * top, 1, 0))
    return np.where(near, side, 0).astype(np.int8)


def _own_landmarks(model: FaceModel, found: np.ndarray) -> np.ndarray:
    return model.neutral[model.landmarks].astype(np.float64) if len(model.landmarks) == 83 else found


def correspond(source: FaceModel, target: FaceModel, *, source_landmarks: np.ndarray | None = None,
               target_landmarks: np.ndarray | None = None, k: int = 8, min_cos: float = 0.3,
               reach_mm: tuple[float, float] = (4.0, 15.0), smooth: int = 2,
               refine: int = 3) -> Correspondence:
    """How ``target``'s vertices take ``source``'s displacements (see the module doc)."""
    from scipy.interpolate import RBFInterpolator
    from scipy.spatial import cKDTree

    from affectvlm.geometry import vertex_normals

    ls = neutral_landmarks(source) if source_landmarks is None else np.asarray(source_landmarks, np.float64)
    lt = neutral_landmarks(target) if target_landmarks is None else np.asarray(target_landmarks, np.float64)
    s, R, t = _similarity(ls, lt)
    aligned = ls @ R.T * s + t
    residual = float(np.sqrt(((aligned - lt) ** 2).sum(1).mean()))
    vs = source.neutral.astype(np.float64) @ R.T * s + t
    warp = RBFInterpolator(aligned, lt - aligned, kernel="thin_plate_spline", smoothing=1.0)
    vs = vs + warp(vs)
    vt = target.neutral.astype(np.float64)
    nt = np.asarray(vertex_normals(vt, target.faces), np.float64)
    side_s = lip_side(source, _own_landmarks(source, ls))
    side_t = lip_side(target, _own_landmarks(target, lt))
    tree_t = cKDTree(vt)
    rng = np.random.default_rng(0)
    for _ in range(refine):  # non-rigid ICP: a smooth warp pulls the source surface onto the target's
        ns = np.asarray(vertex_normals(vs, source.faces), np.float64)
        dist, idx = tree_t.query(vs, k=k)
        ok = ((np.einsum("nkc,nc->nk", nt[idx], ns) > min_cos) & (dist < reach_mm[1] * 2)
              & (side_t[idx] * side_s[:, None] >= 0))
        first = np.where(ok.any(1), ok.argmax(1), -1)
        pick = np.flatnonzero(first >= 0)
        if len(pick) < 50:
            break
        pick = rng.choice(pick, size=min(600, len(pick)), replace=False)
        goal = vt[idx[pick, first[pick]]]
        ctrl = np.concatenate([vs[pick], lt])
        move = np.concatenate([goal - vs[pick], np.zeros_like(lt)])
        vs = vs + RBFInterpolator(ctrl, move, kernel="thin_plate_spline", smoothing=float(len(ctrl)))(vs)
    ns = np.asarray(vertex_normals(vs, source.faces), np.float64)
    dist, idx = cKDTree(vs).query(vt, k=k)
    ok = (np.einsum("nkc,nc->nk", ns[idx], nt) > min_cos) & (side_s[idx] * side_t[:, None] >= 0)
    w = ok / np.maximum(dist, 0.25)
    near = np.where(ok, dist, np.inf).min(1)
    fade = np.clip((reach_mm[1] - near) / (reach_mm[1] - reach_mm[0]), 0.0, 1.0)
    total = w.sum(1, keepdims=True)
    w = np.where(total > 0, w / np.maximum(total, 1e-12), 0.0) * fade[:, None]
    return Correspondence(index=idx.astype(np.int64), weights=w, rotation=R, scale=s, residual_mm=residual,
                          smooth=smooth)


def hybrid_model(source: FaceModel, target: FaceModel, corr: Correspondence | None = None) -> FaceModel:
    """``target``'s face (mesh, identities, landmarks, crop) with ``source``'s AU and emotion targets; named
    ``"<target>@<source>"``."""
    corr = corr or correspond(source, target)
    aus = {name: corr.apply(d, target.faces).astype(np.float32) for name, d in source.au_targets.items()}
    meta = {"geometry": target.name, "expressions": source.name, "landmark_residual_mm": round(corr.residual_mm, 2),
            "n_identity_modes": int(len(target.identities))}
    sculpts = source.meta.get("emotion_targets") or {}
    if sculpts:
        meta["emotion_targets"] = {e: [corr.apply(t, target.faces).astype(np.float32) for t in ts]
                                   for e, ts in sculpts.items()}
    return replace(target, name=f"{target.name}@{source.name}", au_targets=aus, meta=meta,
                   source=f"{target.source} + expressions of {source.source or source.name}",
                   licence=f"{target.licence}; expressions: {source.licence}")


def same_mesh(a: FaceModel, b: FaceModel) -> bool:
    """Whether two models are one face (the same neutral mesh), e.g. MakeHuman with two sculptors' AUs."""
    return a.neutral.shape == b.neutral.shape and a.faces.shape == b.faces.shape and bool(
        np.array_equal(a.neutral, b.neutral) and np.array_equal(a.faces, b.faces))


def mesh_homes(models: dict[str, FaceModel]) -> dict[str, str]:
    """Each model's face: the name of the first model on its mesh (models that share a mesh are one face)."""
    home: dict[str, str] = {}
    for n, m in models.items():
        home[n] = next((f for f in dict.fromkeys(home.values()) if same_mesh(m, models[f])), n)
    return home


def with_swapped_expressions(models: dict[str, FaceModel]) -> dict[str, FaceModel]:
    """``models`` plus, for every ordered pair (A, B) on different meshes, A's face with B's expressions.

    Models that share a mesh (MakeHuman with FACSHuman's or its own units) are one face: it gets the other
    meshes' expressions once (under its first model's name), and each of them lends its expressions."""
    out = dict(models)
    home = mesh_homes(models)
    faces = list(dict.fromkeys(home.values()))
    lms = {n: neutral_landmarks(models[n]) for n in faces}
    corr: dict[tuple[str, str], Correspondence] = {}
    for a in faces:
        for b, mb in models.items():
            src = home[b]
            if src == a:
                continue
            if (src, a) not in corr:
                corr[src, a] = correspond(models[src], models[a], source_landmarks=lms[src], target_landmarks=lms[a])
            h = hybrid_model(mb, models[a], corr[src, a])
            out[h.name] = h
    return out


def _sided(targets: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """AU base -> (left, right) targets; a one-target unit splits in halves (what :func:`apply_aus` does with it)."""
    from affectvlm.synth.facemodel import au_base

    out: dict[str, list] = {}
    for key, t in targets.items():
        base, side = au_base(key)
        pair = out.setdefault(base, [None, None])
        if side == "L":
            pair[0] = t
        elif side == "R":
            pair[1] = t
        else:
            pair[0] = pair[1] = 0.5 * t
    return {b: (l if l is not None else np.zeros_like(r), r if r is not None else np.zeros_like(l))
            for b, (l, r) in out.items()}


def mixed_model(own: FaceModel, other: FaceModel, rng: np.random.Generator, *, name: str,
                weight: tuple[float, float] = (-0.2, 1.2)) -> FaceModel:
    """``own``'s face with each AU a blend ``a * own + (1 - a) * other`` (``other``: a hybrid on the same mesh),
    ``a`` drawn per AU from ``weight`` (a little beyond both ends): sculpts that neither model has. No emotion
    sculpts (the ``sculpt`` family stays each model's own)."""
    if own.neutral.shape != other.neutral.shape:
        raise ValueError(f"{other.name} is not on {own.name}'s mesh")
    a, b = _sided(own.au_targets), _sided(other.au_targets)
    targets: dict[str, np.ndarray] = {}
    for base in sorted(set(a) | set(b), key=lambda x: int(x[2:])):
        w = float(rng.uniform(*weight)) if base in a and base in b else (1.0 if base in a else 0.0)
        za = a.get(base, (0.0, 0.0))
        zb = b.get(base, (0.0, 0.0))
        for i, side in enumerate("LR"):
            targets[base + side] = (w * np.asarray(za[i]) + (1 - w) * np.asarray(zb[i])).astype(np.float32)
    meta = {"geometry": own.name, "expressions": f"{own.name} x {other.meta.get('expressions', other.name)}",
            "n_identity_modes": int(len(own.identities))}
    return replace(own, name=name, au_targets=targets, meta=meta)


def with_mixed_expressions(models: dict[str, FaceModel], mixes: int, seed: int) -> dict[str, FaceModel]:
    """For every face model, ``mixes`` models whose AUs blend its own sculpts with another model's on the same mesh
    (transferred, or another sculptor's for that mesh); named ``<model>~mix<k>``."""
    swapped = with_swapped_expressions(models)
    out: dict[str, FaceModel] = {}
    for a, ma in models.items():
        others = [m for n, m in swapped.items() if n != a and same_mesh(m, ma)]
        for k in range(mixes):
            rng = np.random.default_rng([seed, k, len(out)])
            other = others[int(rng.integers(len(others)))]
            out[f"{a}~mix{k}"] = mixed_model(ma, other, rng, name=f"{a}~mix{k}")
    return out


EXPRESSIONS = ("own", "swapped", "both", "mixed", "procedural")


def expression_models(models: dict[str, FaceModel], expressions: str, mixes: int, seed: int) -> dict[str, FaceModel]:
    """The face models ``affectvlm synth --expressions`` draws from: ``own`` (``models``), ``swapped`` (each face
    with the other meshes' expressions), ``both``, ``mixed`` (``mixes`` blends per model) or ``procedural``
    (``mixes`` procedural sculptors per face); ``seed`` is the corpus seed. ConfigError for what cannot be made."""
    if expressions not in EXPRESSIONS:
        raise ConfigError(f"--expressions must be one of {', '.join(EXPRESSIONS)}, not {expressions!r}")
    if expressions in ("mixed", "procedural") and mixes < 1:
        raise ConfigError(f"--mixes must be at least 1, not {mixes}")
    if expressions == "procedural":
        from affectvlm.synth.procedural import with_procedural_expressions

        return with_procedural_expressions(models, mixes, seed)
    if expressions == "own":
        return models
    if len(models) < 2:
        raise ConfigError(f"--expressions {expressions} needs two face models (--facekit, --makehuman, --rocketbox, "
                          "--gltf)")
    if expressions == "mixed":
        return with_mixed_expressions(models, mixes, seed)
    out = with_swapped_expressions(models)
    return {n: m for n, m in out.items() if n not in models} if expressions == "swapped" else out
