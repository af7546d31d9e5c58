"""Train the embedded face-frame network (:mod:`affectvlm.faceframe`) on randomised synthetic scans.

    python -m affectvlm.train.frame --facekit ICT-FaceKit/FaceXModel [--makehuman DIR --facshuman DIR] \
        [--rocketbox DIR] \
        --scans 3000 --out affectvlm/data/faceframe

Each face model gives ``--scans`` scans (random identity mixtures, random AU activations, crops with and
without forehead/ears/neck, 3k-40k vertices, noise, holes, pose). Training scans and validation scans come
from disjoint seeds; the confidence threshold is calibrated on the validation scans so that no wrong frame
among them goes unflagged. ``--hold-out MODEL`` trains without that face model and reports on it.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from affectvlm.faceframe import (EXTENT, N_LANDMARKS, N_POINTS, SIZE, FrameNet, candidate_axes, candidate_images,
                                 direction_maps, normalise_points, surface_points)
from affectvlm.synth.facemodel import load_face_models

_MODELS: dict = {}


@dataclass(frozen=True)
class FrameRecipe:
    """What the training scans vary in beyond :class:`~affectvlm.synth.randomised.Nuisance`'s defaults: the
    head-pose spread (sd, degrees), the share of scans posed uniformly over ``wide`` (yaw, pitch, roll limits,
    degrees: heads tilted far back or down) and the share wearing shoulders (:mod:`affectvlm.synth.torso`)."""

    pose_sd: tuple[float, float, float] = (7.0, 6.0, 5.0)
    wide_share: float = 0.0
    wide: tuple[float, float, float] = (35.0, 45.0, 30.0)
    torso_share: float = 0.0


_RECIPE = [FrameRecipe()]


@dataclass
class FrameData:
    """Direction maps (n, 6, 2, S, S), true candidate index (n,), 2D landmarks (n, 83, 2) + mask, model names."""

    maps: np.ndarray
    label: np.ndarray
    lm: np.ndarray
    has_lm: np.ndarray
    model: np.ndarray


def random_aus(model, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Any mixture of the model's AUs (the frame must not depend on the expression)."""
    aus = {}
    names = model.action_units
    for au in rng.choice(names, size=int(rng.integers(0, min(7, len(names)) + 1)), replace=False):
        a = rng.uniform(0.1, 1.1)
        aus[str(au)] = (a * rng.uniform(0.7, 1.0), a * rng.uniform(0.7, 1.0))
    return aus


def true_index(rotation: np.ndarray) -> int:
    """Candidate (of the file axes) nearest the scan's true front (+z) and up (+y) after ``rotation``."""
    fronts, ups = candidate_axes(np.eye(3))
    return int(np.argmax(fronts @ rotation[:, 2] + ups @ rotation[:, 1]))


def _make(args: tuple) -> tuple:
    name, seed, n = args
    from affectvlm.synth.randomised import Nuisance, sample_scan

    model = _MODELS[name]
    recipe = _RECIPE[0]
    rng = np.random.default_rng(seed)
    yaw, pitch, roll = (2 * d for d in recipe.pose_sd)  # Nuisance draws with sd = half its figure
    nuis = Nuisance(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)
    extra = recipe.wide_share > 0 or recipe.torso_share > 0
    out = []
    for _ in range(n):
        torso = recipe.torso_share > 0 and rng.random() < recipe.torso_share
        wide = recipe.wide_share > 0 and rng.random() < recipe.wide_share
        if extra:
            nuis = replace(Nuisance(), crops=(("full", 1.0),) if torso else Nuisance().crops, origin_mm=0.0,
                           yaw_deg=0.0 if wide else yaw, pitch_deg=0.0 if wide else pitch,
                           roll_deg=0.0 if wide else roll)
        scan = sample_scan(model, "x", 1, rng, expression=lambda e, l, r: random_aus(model, r), nuisance=nuis)
        if extra:
            scan = _restage(scan, rng, torso, recipe.wide if wide else None)
        v, f = scan.mesh.vertices, scan.mesh.faces
        pts = surface_points(v, f, N_POINTS, seed=int(rng.integers(1 << 30)))
        q, c, s = normalise_points(pts)  # as estimate_frame does at inference
        maps = direction_maps(q, np.eye(3), SIZE)
        idx = true_index(scan.rotation)
        fr, up = candidate_axes(np.eye(3))
        lm = np.zeros((N_LANDMARKS, 2), np.float32)
        has = scan.landmarks is not None
        if has:
            q = (scan.landmarks - c) / s
            right = np.cross(up[idx], fr[idx])
            lm = np.stack([q @ right, q @ up[idx]], 1).astype(np.float32)
        out.append((maps.astype(np.float16), idx, lm, has))
    return name, out


def _restage(scan, rng: np.random.Generator, torso: bool, wide: tuple[float, float, float] | None):
    """``scan`` (posed, in its units, not moved off the origin) with shoulders added in the head's own frame,
    then turned by a uniform ``wide`` pose and moved anywhere in a 100 mm cube, as Nuisance moves scans."""
    from affectvlm.synth.randomised import _UNITS
    from affectvlm.synth.rig import Pose
    from affectvlm.synth.torso import torso_surface

    scale = _UNITS[scan.nuisance["units"]]
    M = scan.rotation
    v = scan.mesh.vertices.astype(np.float64) / scale @ M  # back to the head's frame, mm
    f = scan.mesh.faces
    if torso:
        tv, tf = torso_surface(v, rng)
        v, f = np.vstack([v, tv]), np.vstack([f, tf + len(v)])
    if wide is not None:
        M = Pose(*(rng.uniform(-w, w) for w in wide)).matrix() @ M
    origin = rng.uniform(-100.0, 100.0, 3)
    mesh = replace(scan.mesh, vertices=((v @ M.T + origin) * scale).astype(np.float32), faces=f.astype(np.int64))
    lms = None if scan.landmarks is None else ((scan.landmarks.astype(np.float64) / scale @ scan.rotation @ M.T
                                                + origin) * scale).astype(np.float32)
    return replace(scan, mesh=mesh, rotation=M, landmarks=lms)


def build(models: dict, per_model: int, seed: int, workers: int = 2, chunk: int = 50) -> FrameData:
    jobs = [(name, seed * 100003 + mi * 7919 + k, min(chunk, per_model - k))
            for mi, name in enumerate(sorted(models)) for k in range(0, per_model, chunk)]
    rows = []
    _MODELS.update(models)
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            for name, out in ex.map(_make, jobs):
                rows += [(name, *o) for o in out]
    else:
        for j in jobs:
            name, out = _make(j)
            rows += [(name, *o) for o in out]
    return FrameData(maps=np.stack([r[1] for r in rows]), label=np.array([r[2] for r in rows]),
                     lm=np.stack([r[3] for r in rows]), has_lm=np.array([r[4] for r in rows]),
                     model=np.array([r[0] for r in rows]))


def run_net(net: FrameNet, maps: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over the 24 candidates (n, 24) and the landmarks of every candidate's image (n, 24, L, 2)."""
    probs, lms = [], []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(maps), batch):
            x = candidate_images(torch.from_numpy(maps[i:i + batch].astype(np.float32)))
            s, lm = net(x.flatten(0, 1))
            probs.append(torch.softmax(s.view(len(x), 24), 1).numpy())
            lms.append(lm.view(len(x), 24, -1, 2).numpy())
    return np.concatenate(probs), np.concatenate(lms)


def train(data: FrameData, *, epochs: int, lr: float, batch: int, seed: int, log=print) -> FrameNet:
    torch.manual_seed(seed)
    net = FrameNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n = len(data.label)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(seed)
    for ep in range(epochs):
        net.train()
        perm = rng.permutation(n)
        tot, correct, lml = 0.0, 0, 0.0
        for i in range(0, n, batch):
            b = perm[i:i + batch]
            x = candidate_images(torch.from_numpy(data.maps[b].astype(np.float32)))
            y = torch.from_numpy(data.label[b])
            s, lm = net(x.flatten(0, 1))
            s = s.view(len(b), 24)
            loss = F.cross_entropy(s, y)
            lm = lm.view(len(b), 24, -1, 2)[torch.arange(len(b)), y]
            has = torch.from_numpy(data.has_lm[b])
            if has.any():
                ll = F.smooth_l1_loss(lm[has], torch.from_numpy(data.lm[b])[has], beta=0.05)
                loss = loss + 4.0 * ll
                lml += float(ll.detach()) * len(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(b)
            correct += int((s.argmax(1) == y).sum())
        log(json.dumps({"epoch": ep + 1, "loss": round(tot / n, 4), "train_acc": round(correct / n, 4),
                        "lm_loss": round(lml / n, 4)}))
    return net


def evaluate(net: FrameNet, data: FrameData, threshold: float) -> dict:
    """Accuracy, wrong-and-unflagged count and landmark error (normalised units) per face model."""
    p, lms = run_net(net, data.maps)
    pred = p.argmax(1)
    conf = p.max(1)
    out = {}
    for name in sorted(set(data.model)):
        m = data.model == name
        wrong = m & (pred != data.label)
        res = {"n": int(m.sum()), "accuracy": round(float((pred[m] == data.label[m]).mean()), 4),
               "wrong": int(wrong.sum()), "wrong_unflagged": int((wrong & (conf >= threshold)).sum()),
               "flagged": int((m & (conf < threshold)).sum())}
        h = m & data.has_lm
        if h.any():
            err = np.linalg.norm(lms[h, data.label[h]] - data.lm[h], axis=-1)
            res["landmark_err_norm_mean"] = round(float(err.mean()), 4)
        out[name] = res
    return out


def calibrate(net: FrameNet, data: FrameData, floor: float = 0.5) -> float:
    """Smallest threshold that flags every wrong validation frame (at least ``floor``), plus a margin."""
    p, _ = run_net(net, data.maps)
    wrong = p.argmax(1) != data.label
    top = float(p.max(1)[wrong].max()) if wrong.any() else floor
    return float(min(0.999, max(floor, top + 0.5 * (1 - top))))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--facekit", help="ICT-FaceKit FaceXModel folder")
    p.add_argument("--makehuman", help="MakeHuman data folder (base.obj + targets)")
    p.add_argument("--facshuman", help="FACSHuman folder (AU targets)")
    p.add_argument("--rocketbox", help="Rocketbox avatar FBX files with HeadBox's AU shapes (folder or file)")
    p.add_argument("--scans", type=int, default=2000, help="training scans per face model")
    p.add_argument("--val-scans", type=int, default=300, help="validation scans per face model")
    p.add_argument("--hold-out", default=None, help="face model left out of training (reported separately)")
    p.add_argument("--epochs", type=int, default=12, help="passes over the training scans (12)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW's one-cycle schedule (0.002)")
    p.add_argument("--batch", type=int, default=32, help="batch size (32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scans and of training (0)")
    p.add_argument("--workers", type=int, default=2, help="processes that make the scans (2)")
    p.add_argument("--pose-sd", default="7,6,5", metavar="YAW,PITCH,ROLL",
                   help="head-pose spread of the scans, sd in degrees (7,6,5)")
    p.add_argument("--wide-share", type=float, default=0.0,
                   help="share of scans posed uniformly within yaw 35, pitch 45, roll 30 degrees instead (0)")
    p.add_argument("--torso-share", type=float, default=0.0, help="share of scans with shoulders and chest (0)")
    p.add_argument("--out", required=True, help="folder for frame-net.safetensors + frame-net.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    t0 = time.time()
    sd = tuple(float(x) for x in args.pose_sd.split(","))
    if len(sd) != 3:
        raise SystemExit("--pose-sd takes three numbers: YAW,PITCH,ROLL")
    _RECIPE[0] = FrameRecipe(pose_sd=sd, wide_share=args.wide_share, torso_share=args.torso_share)
    models = load_face_models(args.facekit, args.makehuman, args.facshuman, rocketbox=args.rocketbox)
    if not models:
        raise SystemExit("name at least one face model (--facekit / --makehuman / --rocketbox)")
    train_models = {k: v for k, v in models.items() if k != args.hold_out}
    tr = build(train_models, args.scans, seed=args.seed + 1, workers=args.workers)
    va = build(models, args.val_scans, seed=args.seed + 1000, workers=args.workers)
    print(json.dumps({"built": len(tr.label), "val": len(va.label), "s": round(time.time() - t0, 1)}), flush=True)
    net = train(tr, epochs=args.epochs, lr=args.lr, batch=args.batch, seed=args.seed)
    in_dist = FrameData(*(a[va.model != args.hold_out] for a in (va.maps, va.label, va.lm, va.has_lm, va.model)))
    thr = calibrate(net, in_dist)
    report = evaluate(net, va, thr)
    print(json.dumps({"threshold": thr, "val": report, "s": round(time.time() - t0, 1)}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    from affectvlm.fileio import atomic_write_text

    tmp = out / "frame-net.safetensors.tmp"
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(out / "frame-net.safetensors")
    cfg = {"size": SIZE, "extent": EXTENT, "points": N_POINTS, "width": net.width, "threshold": thr,
           "trained_on": sorted(train_models), "scans_per_model": args.scans, "epochs": args.epochs,
           "seed": args.seed, "recipe": asdict(_RECIPE[0]), "validation": report, "held_out": args.hold_out,
           "note": "synthetic validation scans from the same generator (in-distribution) unless held_out"}
    atomic_write_text(out / "frame-net.json", json.dumps(cfg, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
