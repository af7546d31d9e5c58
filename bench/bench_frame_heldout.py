"""Face frame on held-out synthetic scans: how often the frame network puts up or front more than 45 degrees off,
and whether it flags those scans, on face models and body geometry it never trained on (and, as regression
checks, on the face models it trained on), for one network or two measured on the same scans.

    python bench/bench_frame_heldout.py --flame FLAME_HEAD_TEMPLATE.obj --mediapipe CANONICAL_FACE.obj \
        --makehuman MAKEHUMAN/makehuman/data --facekit ICT-FaceKit/FaceXModel \
        [--frame-net DIR] [--baseline-frame-net DIR] [--scans 20] --out bench/out/frame_heldout.json

Groups: A, HELD OUT face models (the FLAME head template cropped to the face, the MediaPipe canonical face; each
scan a randomly scaled and bumped copy), upright, chin up, chin down, yawed, rolled; B, HELD OUT body geometry
(MakeHuman's body mesh cut at the neck, bust and chest; the network trained with procedural shoulders only, but the
head on it is MakeHuman's, a face model it trained on); C, IN-DISTRIBUTION regression checks (ICT-FaceKit crops
in every axis layout, other units, decimated, noisy, chin cut off, mouth wide open; MakeHuman's face crop).
Every scan is written in one of the 48 signed axis layouts (24 rotations, 24 mirror images) and goes through
``affectvlm.predict.prepare`` with the default model's render settings. Wrong: up or front more than 45 degrees
from the truth; flagged: the frame's low-confidence flag. Inputs are files you name; conditions whose input is not
given are skipped and listed as such. ``--baseline-frame-net`` (e.g. an older network, from
``git show REV:affectvlm/data/faceframe/frame-net.safetensors`` and ``frame-net.json``) is measured on the same scans.
A SYNTHETIC measurement; say so when quoting. Prints JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

Scan = tuple[np.ndarray, np.ndarray]  # vertices (mm; +Y up, +Z front), triangles
Condition = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]]

GROUPS = {
    "A": {"label": "HELD-OUT face models (FLAME, MediaPipe; never trained on)", "held_out": True},
    "B": {"label": "HELD-OUT body geometry (MakeHuman's body mesh below the head; training saw procedural "
                   "shoulders only; the head is MakeHuman's, a face model the network trained on)", "held_out": True},
    "C": {"label": "regression checks on IN-DISTRIBUTION face models (ICT-FaceKit, MakeHuman face crop)",
          "held_out": False},
}
WRONG_DEG = 45.0
PIVOT = np.array([0.0, -30.0, 20.0])  # poses turn the head about a point near the neck (mm, nose tip at 0)
SEED_STRIDE = 1_000_000  # --seed S moves every face seed by S * this
I3 = np.eye(3)
ICT_EXPRESSIONS: dict[str, dict[str, float]] = {  # ARKit blendshape weights; scans cycle through them in order
    "neutral": {},
    "happy": {"mouthSmile_L": 1, "mouthSmile_R": 1, "cheekSquint_L": .7, "cheekSquint_R": .7, "eyeSquint_L": .4,
              "eyeSquint_R": .4},
    "surprise": {"jawOpen": .8, "browInnerUp_L": 1, "browInnerUp_R": 1, "browOuterUp_L": 1, "browOuterUp_R": 1,
                 "eyeWide_L": 1, "eyeWide_R": 1},
    "wideopen": {"jawOpen": 1.0, "mouthStretch_L": .6, "mouthStretch_R": .6, "mouthUpperUp_L": .5,
                 "mouthUpperUp_R": .5, "mouthLowerDown_L": 1, "mouthLowerDown_R": 1},
    "angry": {"browDown_L": 1, "browDown_R": 1, "noseSneer_L": .6, "noseSneer_R": .6, "mouthPress_L": .6,
              "mouthPress_R": .6, "eyeSquint_L": .5, "eyeSquint_R": .5},
    "sad": {"browInnerUp_L": .8, "browInnerUp_R": .8, "mouthFrown_L": 1, "mouthFrown_R": 1, "mouthShrugLower": .5},
    "disgust": {"noseSneer_L": 1, "noseSneer_R": 1, "mouthUpperUp_L": .7, "mouthUpperUp_R": .7, "browDown_L": .5,
                "browDown_R": .5},
    "fear": {"browInnerUp_L": 1, "browInnerUp_R": 1, "eyeWide_L": 1, "eyeWide_R": 1, "mouthStretch_L": 1,
             "mouthStretch_R": 1, "jawOpen": .3},
}
ICT_NARROW_POLYGONS = 6560  # ICT-FaceKit's narrow face area: the neutral OBJ's first polygons (its README)
MH_CROPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # MakeHuman base.obj coordinates, in mm
    "face": lambda v: (v[:, 1] > 590) & (v[:, 1] < 810) & (v[:, 2] > 60),
    "head_neck": lambda v: v[:, 1] > 560,
    "bust": lambda v: v[:, 1] > 430,
    "front_bust": lambda v: (v[:, 1] > 430) & (v[:, 2] > -20),
    "front_chest": lambda v: (v[:, 1] > 330) & (v[:, 2] > -20) & (np.abs(v[:, 0]) < 220),
}


# ----------------------------------------------------------------------------------------------- meshes
def compact(v: np.ndarray, t: np.ndarray) -> Scan:
    """Only the vertices the triangles use, in their order."""
    used = np.unique(t)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[t]


def keep(v: np.ndarray, t: np.ndarray, mask: np.ndarray) -> Scan:
    """The triangles whose three corners are in ``mask``."""
    return compact(v, t[mask[t].all(1)])


def subdivide(v: np.ndarray, t: np.ndarray, times: int) -> Scan:
    import trimesh

    for _ in range(times):
        v, t = trimesh.remesh.subdivide(v, t)
    return v, t


def vary(v: np.ndarray, rng: np.random.Generator, scale: float, bumps: int, size: tuple[float, float],
         amp: float) -> np.ndarray:
    """Another "person": a random scale per axis (1 +- ``scale``) and smooth random bumps."""
    v = v * rng.uniform(1 - scale, 1 + scale, 3)
    for _ in range(bumps):
        c = v[rng.integers(len(v))]
        s = rng.uniform(*size)
        v = v + rng.normal(0, amp, 3) * np.exp(-((v - c) ** 2).sum(1) / (2 * s * s))[:, None]
    return v


def read_obj(path: Path) -> Scan:
    """An OBJ's vertices (mm by the face's width: m, cm or mm) and all its polygons, fan-triangulated, with the
    nose tip (the most forward vertex) moved to height 0, to the mm."""
    from affectvlm.synth.makehuman import _read_obj

    v, groups = _read_obj(path)
    t = np.array([(p[0], p[k], p[k + 1]) for polys in groups.values() for p in polys for k in range(1, len(p) - 1)],
                 np.int64).reshape(-1, 3)
    if not len(t):
        raise SystemExit(f"bench_frame_heldout: {path}: no faces (a point cloud?)")
    width = float(np.ptp(v[np.unique(t), 0]))
    v = v * (1000.0 if width < 1 else 10.0 if width < 60 else 1.0)
    v[:, 1] -= np.round(v[np.argmax(v[:, 2]), 1])
    return v, t


def read_makehuman_body(folder: Path) -> Scan:
    """MakeHuman's ``3dobjs/base.obj``: its ``body`` group only (no helper, joint or proxy geometry), in mm."""
    from affectvlm.errors import InputError
    from affectvlm.synth.makehuman import BASE_OBJ, _read_obj, _units_to_mm

    obj = next((c / BASE_OBJ for c in (folder, folder / "data", folder / "makehuman" / "data")
                if (c / BASE_OBJ).is_file()), None)
    if obj is None:
        raise InputError(str(folder), f"{BASE_OBJ.as_posix()} is missing: is this MakeHuman's makehuman/data folder?")
    v, groups = _read_obj(obj)
    if not groups.get("body"):
        raise InputError(str(obj), "no 'body' group: is this MakeHuman's base.obj?")
    t = np.array([(p[0], p[k], p[k + 1]) for p in groups["body"] for k in range(1, len(p) - 1)], np.int64)
    return v * _units_to_mm(float(np.ptp(v[np.unique(t), 1]))), t


def ict_narrow_triangles(kit) -> np.ndarray:
    """The face-area triangles of ICT-FaceKit's narrow face area (the neutral OBJ's first polygons, all inside
    the face area that ``load_facekit`` keeps, triangulated in the same order)."""
    from affectvlm.synth.facekit import NEUTRAL_FILE

    corners = [len(ln.split()) - 1 for ln in (kit.folder / NEUTRAL_FILE).read_bytes().split(b"\n")
               if ln.startswith(b"f ")]
    return kit.polygons[:sum(c - 2 for c in corners[:ICT_NARROW_POLYGONS])]


# ----------------------------------------------------------------------------------------------- scan makers
def flame_scan(base: Scan, i: int, seed: int) -> Scan:
    rng = np.random.default_rng(700 + i + SEED_STRIDE * seed)
    v = vary(base[0], rng, 0.08, 5, (15, 50), 3.0)
    v, t = keep(v, base[1], (v[:, 2] > -10) & (v[:, 1] > -95) & (v[:, 1] < 100))
    return subdivide(v, t, 1)


def mediapipe_scan(base: Scan, i: int, seed: int) -> Scan:
    rng = np.random.default_rng(900 + i + SEED_STRIDE * seed)
    return subdivide(vary(base[0], rng, 0.08, 5, (15, 50), 2.0), base[1], 2)


def makehuman_scan(base: Scan, crop: str, i: int, seed: int) -> Scan:
    rng = np.random.default_rng(500 + i + SEED_STRIDE * seed)
    v = vary(base[0], rng, 0.1, 4, (20, 60), 4.0)
    return subdivide(*keep(v, base[1], MH_CROPS[crop](v)), 1)


def ict_scan(kit, tris: np.ndarray, expression: str | None, i: int, seed: int) -> Scan:
    rng = np.random.default_rng(1000 + i + SEED_STRIDE * seed)
    v = kit.neutral.astype(np.float64) + np.tensordot(rng.normal(0, 1.0, kit.n_identities), kit.identities, 1)
    for name, a in ICT_EXPRESSIONS[expression or list(ICT_EXPRESSIONS)[i % len(ICT_EXPRESSIONS)]].items():
        v = v + a * kit.expressions[kit.expression_index(name)]
    return compact(v * kit.units_to_mm, tris)


# ----------------------------------------------------------------------------------------------- conditions
def unchanged(v: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return v, t, I3


def pose(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Condition:
    """Turn the head (pitch > 0: chin down); the truth turns with it."""
    from affectvlm.synth.rig import Pose

    r = Pose(yaw=yaw, pitch=pitch, roll=roll).matrix()
    return lambda v, t, rng: ((v - PIVOT) @ r.T + PIVOT, t, r)


def scale(s: float) -> Condition:
    return lambda v, t, rng: (v * s, t, I3)


def noise(sd_mm: float) -> Condition:
    return lambda v, t, rng: (v + rng.normal(0, sd_mm, v.shape), t, I3)


def decimate(n_vertices: int) -> Condition:
    def f(v: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from affectvlm.render.simplify import quadric_simplify

        p, q = quadric_simplify(v, t, 1 - n_vertices / len(v))
        return p.astype(np.float64), q.astype(np.int64), I3
    return f


def chinless(v: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (*keep(v, t, v[:, 1] > -55), I3)  # cut just below the lower lip


def axis_layouts() -> list[np.ndarray]:
    """The 48 signed axis permutations (24 rotations, 24 mirror images), in a fixed order."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            a = np.zeros((3, 3))
            a[list(perm), [0, 1, 2]] = signs
            out.append(a)
    return out


class Case(NamedTuple):
    id: str
    group: str
    label: str
    needs: str  # the option whose input it needs
    make: Callable[[int], Scan]  # scan i, canonical (+Y up, +Z front), mm
    condition: Condition
    every_layout: bool = False  # all 48 layouts in a seeded order, at least 48 scans; else one drawn per scan


def battery(inputs: dict[str, object], seed: int) -> list[Case]:
    """Every condition; ``make`` of a condition whose input is missing is never called."""
    fl, mp, mh, kit = (inputs.get(k) for k in ("flame", "mediapipe", "makehuman", "facekit"))
    out: list[Case] = []
    poses = (("chin-up 0 (upright)", unchanged), ("chin-up 20", pose(pitch=-20)), ("chin-up 30", pose(pitch=-30)),
             ("chin-up 40", pose(pitch=-40)), ("chin-down 30", pose(pitch=30)), ("yaw 45", pose(yaw=45)),
             ("roll 30", pose(roll=30)))
    makers = (("flame", lambda i: flame_scan(fl, i, seed)), ("mediapipe", lambda i: mediapipe_scan(mp, i, seed)))
    for name, make in makers:
        out += [Case(f"A/{name}/{lab}", "A", f"{name} face, {lab}", name, make, cond) for lab, cond in poses]
    for crop in ("head_neck", "bust", "front_bust", "front_chest"):
        out.append(Case(f"B/mh_body/{crop}", "B", f"MakeHuman body crop {crop}", "makehuman",
                        lambda i, c=crop: makehuman_scan(mh, c, i, seed), unchanged))
    tris: dict[str, np.ndarray] = {}

    def ict(crop: str, expression: str | None = None) -> Callable[[int], Scan]:
        def make(i: int) -> Scan:
            if crop not in tris:
                tris[crop] = ict_narrow_triangles(kit) if crop == "narrow" else kit.polygons
            return ict_scan(kit, tris[crop], expression, i, seed)
        return make

    out += [
        Case("C/ict/narrow", "C", "ICT narrow crop, all 48 layouts", "facekit", ict("narrow"), unchanged, True),
        Case("C/ict/face", "C", "ICT full face crop, all 48 layouts", "facekit", ict("face"), unchanged, True),
        Case("C/mh/face", "C", "MakeHuman face crop", "makehuman", lambda i: makehuman_scan(mh, "face", i, seed),
             unchanged),
        Case("C/ict/open_mouth", "C", "ICT face, wide-open mouth", "facekit", ict("face", "wideopen"), unchanged),
        Case("C/ict/units_m", "C", "ICT face, units m (x1e-3)", "facekit", ict("face"), scale(1e-3)),
        Case("C/ict/units_x1e3", "C", "ICT face, x1e3 (um)", "facekit", ict("face"), scale(1e3)),
        Case("C/ict/decim3k", "C", "ICT face, decimated to 3k vertices", "facekit", ict("face"), decimate(3000)),
        Case("C/ict/noise1mm", "C", "ICT face, noise sd 1 mm", "facekit", ict("face"), noise(1.0)),
        Case("C/ict/chinless", "C", "ICT face, chin cut off", "facekit", ict("face"), chinless),
    ]
    return out


# ----------------------------------------------------------------------------------------------- measuring
def default_render_settings():
    """The embedded default model's render settings (what ``affectvlm predict`` orients scans with)."""
    from affectvlm.model.checkpoint import read_meta
    from affectvlm.model.specs import default_model_candidates
    from affectvlm.render import RenderSettings

    for cand in default_model_candidates():
        if (cand / "affectvlm.json").is_file():
            return RenderSettings.from_dict(read_meta(cand)["render"])
    raise SystemExit("bench_frame_heldout: the default model is not installed (its render settings are needed)")


def use_frame_net(folder: Path) -> dict:
    """Make ``folder``'s network the one the library uses; its identity."""
    import affectvlm.faceframe as ff

    ff.WEIGHTS_DIR = folder
    ff.load_frame_net.cache_clear()
    ff.weights_digest.cache_clear()
    loaded = ff.load_frame_net()
    if loaded is None:
        raise SystemExit(f"bench_frame_heldout: {folder}: no frame-net.safetensors and frame-net.json")
    return {"folder": str(folder), "sha256": ff.weights_digest(), "threshold": loaded[1].get("threshold")}


def judge(v: np.ndarray, t: np.ndarray, up: np.ndarray, front: np.ndarray, settings) -> dict:
    """The tool's frame for one scan against the truth: ok / upside_down / rolled90 / back / side / error."""
    from affectvlm.errors import AffectVLMError
    from affectvlm.io._common import finish_mesh
    from affectvlm.predict import prepare

    try:
        p = prepare(finish_mesh(v, t, "scan.ply"), settings)
    except AffectVLMError as e:
        return {"status": "error", "error": str(e)[:200], "flagged": False}
    rot = np.asarray(p.mesh.meta["canonical"]["rotation"])  # rows: the file's right, up, front

    def off(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(b), -1, 1))))

    ue, fe = off(rot[1], up), off(rot[2], front)
    if fe < WRONG_DEG:
        status = "ok" if ue < WRONG_DEG else "upside_down" if ue > 180 - WRONG_DEG else "rolled90"
    else:
        status = "back" if fe > 180 - WRONG_DEG else "side"
    return {"status": status, "flagged": bool(p.frame.flagged) if p.frame else False}


def counts(rows: list[dict]) -> dict:
    st = Counter(r["status"] for r in rows)
    wrong = [r for r in rows if r["status"] not in ("ok", "error")]
    return {"n": len(rows), "ok": st["ok"], "wrong": len(wrong),
            "wrong_unflagged": sum(not r["flagged"] for r in wrong),
            "right_flagged": sum(r["status"] == "ok" and r["flagged"] for r in rows), "errors": st["error"],
            "kinds": {k: v for k, v in sorted(st.items()) if k not in ("ok", "error")}}


def run(inputs: dict[str, object], nets: dict[str, Path], scans: int, seed: int) -> dict:
    settings = default_render_settings()
    layouts = axis_layouts()
    report: dict = {"synthetic": True, "what": "face frame: up or front more than 45 degrees off (wrong), "
                    "and the low-confidence flag", "scans_per_condition": scans, "seed": seed,
                    "wrong_deg": WRONG_DEG, "groups": GROUPS, "layouts": 48, "conditions": [], "skipped": [],
                    "networks": {role: {"conditions": {}, "groups": {}, "seconds": 0.0} for role in nets}}
    for case in battery(inputs, seed):
        if inputs.get(case.needs) is None:
            report["skipped"].append({"id": case.id, "group": case.group, "reason": f"no --{case.needs} given"})
            continue
        key = zlib.crc32(case.id.encode()) + (seed << 32)
        n = max(scans, 48) if case.every_layout else scans
        order = np.random.default_rng([key, 48]).permutation(48)
        batch, digest = [], hashlib.sha1()
        for i in range(n):
            v, t, m = case.condition(*case.make(i), np.random.default_rng([key, i]))
            li = int(order[i % 48]) if case.every_layout else int(np.random.default_rng([key, i, 1]).integers(48))
            a = layouts[li]
            vs = v @ a.T
            digest.update(np.ascontiguousarray(vs, np.float32).tobytes() + np.ascontiguousarray(t, np.int64).tobytes())
            batch.append((vs, t, a @ m @ [0, 1, 0], a @ m @ [0, 0, 1]))
        report["conditions"].append({"id": case.id, "group": case.group, "label": case.label, "n": n,
                                     "scans_sha1": digest.hexdigest()})
        for role, folder in nets.items():
            net = report["networks"][role]
            net.update(use_frame_net(folder))
            t0 = time.perf_counter()
            c = counts([judge(*b, settings) for b in batch])
            net["seconds"] = round(net["seconds"] + time.perf_counter() - t0, 1)
            net["conditions"][case.id] = c
            print(f"{role:8s} {case.id:34s} n={c['n']:3d} wrong={c['wrong']:3d} wrong_unflagged="
                  f"{c['wrong_unflagged']:3d} right_flagged={c['right_flagged']:3d}", file=sys.stderr, flush=True)
    for net in report["networks"].values():
        for g in GROUPS:
            cs = [c for cid, c in net["conditions"].items() if cid.startswith(g + "/")]
            if cs:
                net["groups"][g] = {k: sum(c[k] for c in cs)
                                    for k in ("n", "ok", "wrong", "wrong_unflagged", "right_flagged", "errors")}
    return report


# ----------------------------------------------------------------------------------------------- command
def _frame_net(text: str, option: str) -> Path:
    d = Path(text)
    missing = [f for f in ("frame-net.safetensors", "frame-net.json") if not (d / f).is_file()]
    if missing:
        raise SystemExit(f"bench_frame_heldout: {option} {text}: " + (
            "no such folder" if not d.is_dir() else f"{' and '.join(missing)} missing (a face-frame network folder)"))
    return d.resolve()


def load_inputs(args: argparse.Namespace) -> dict[str, object]:
    """Each input named, loaded; a bad one ends the run with one line naming it."""
    from affectvlm.errors import AffectVLMError

    inputs: dict[str, object] = {}
    for name, is_file in (("flame", True), ("mediapipe", True), ("makehuman", False), ("facekit", False)):
        text = getattr(args, name)
        if text is None:
            continue
        p = Path(text)
        if not (p.is_file() if is_file else p.is_dir()):
            raise SystemExit(f"bench_frame_heldout: --{name} {text}: no such {'file' if is_file else 'folder'}")
        try:
            if name == "makehuman":
                inputs[name] = read_makehuman_body(p)
            elif name == "facekit":
                from affectvlm.synth.facekit import load_facekit

                inputs[name] = load_facekit(p)
            else:
                inputs[name] = read_obj(p)
        except AffectVLMError as e:
            raise SystemExit(f"bench_frame_heldout: --{name}: {e}") from None
    return inputs


def main(argv: list[str] | None = None) -> int:
    from affectvlm.cli import positive_int

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flame", help="FLAME's head template OBJ (held-out face model)")
    ap.add_argument("--mediapipe", help="MediaPipe's canonical face OBJ (held-out face model)")
    ap.add_argument("--makehuman", help="MakeHuman's makehuman/data folder (its 3dobjs/base.obj: body crops)")
    ap.add_argument("--facekit", help="ICT-FaceKit's FaceXModel folder (in-distribution regression checks)")
    ap.add_argument("--frame-net", default=None, help="the face-frame network folder to measure (default: installed)")
    ap.add_argument("--baseline-frame-net", default=None, help="a second network, measured on the same scans")
    ap.add_argument("--scans", type=positive_int, default=20, help="scans per condition (the two plain ICT crops: "
                    "at least 48, one per axis layout)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error("--seed must be >= 0")

    import affectvlm.faceframe as ff

    installed = ff.WEIGHTS_DIR
    nets = {"measured": _frame_net(args.frame_net or str(installed), "--frame-net")}
    if args.baseline_frame_net:
        nets["baseline"] = _frame_net(args.baseline_frame_net, "--baseline-frame-net")
    inputs = load_inputs(args)
    if not inputs:
        ap.error("give at least one of --flame, --mediapipe, --makehuman, --facekit")
    try:
        report = run(inputs, nets, args.scans, args.seed)
    finally:
        ff.WEIGHTS_DIR = installed
        ff.load_frame_net.cache_clear()
        ff.weights_digest.cache_clear()
    report["inputs"] = {k: getattr(args, k) for k in ("flame", "mediapipe", "makehuman", "facekit")}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
