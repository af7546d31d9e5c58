"""Dataset readers and subject-independent splits (library level; used by the trainer and the app).

Every reader returns a :class:`Dataset`: a list of :class:`Sample` records plus the class list, in the
style of CLIP_benchmark. Layouts (see ``docs/data-formats`` in the shared docs):

- ``bu3dfe``: ``F0001/F0001_AN01WH_F3D.wrl`` -> label, intensity (1-4, neutral 0), sex, ethnicity.
  Only ``_F3D`` scans are read (``_RAW`` scans are not aligned with the cropped faces); VRML as released, or any
  mesh format we read under the same names (a converted tree), one file per name (the VRML one where there are several).
- ``bu4dfe``: ``F001/Angry/000.wrl ...`` -> one sequence sample per (subject, expression) folder with
  its sorted ``frame_ids``; :func:`expand_frames` turns sequences into per-frame samples. Folders that
  are not subject folders (``BU_WrlViewer_V2`` ...) are skipped; male ``M###`` subjects are kept.
- ``bp4d``: ``F001/T1/<frames>`` -> task -> emotion (T1 happiness, T2 sadness, T3 surprise,
  T4 embarrassment, T5 fear, T6 pain, T7 anger, T8 disgust). The per-frame format (OBJ or VRML) is
  detected from each file's header, not its extension.
- ``bosphorus``: ``bs000_E_ANGER_0.bnt`` (anywhere below the root), neutral ``bs000_N_N_0``; action-unit,
  pose and occlusion variants are skipped unless ``include_variants=True`` (then labelled by their code).
- ``folders``: ``ROOT/<class>/**/<mesh>``; subject = first ``_``/``-`` separated token of the file stem
  (or a BU-3DFE/Bosphorus id when the name has one), override with ``subject_regex``.
- ``manifest``: a CSV (``ROOT`` is the CSV or a folder holding ``manifest.csv``) with columns ``path,
  label, subject`` and optional ``intensity, sex, age, ethnicity, split, family, face_model``; paths relative to
  the CSV.

Labels are mapped to the library's class names (``neutral happiness sadness surprise fear disgust
anger``) where a synonym or dataset code is known; other labels are kept, lower-cased.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from affectvlm.errors import ConfigError, InputError
from affectvlm.fileio import inside
from affectvlm.io import MESH_EXTENSIONS, frame_number
from affectvlm.io.sequence import BOSPHORUS_SCAN_RE, BU3DFE_SCAN_RE, is_mesh_name, sniff_mesh

LIBRARY_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
LAYOUTS = ("bu3dfe", "bu4dfe", "bp4d", "bosphorus", "folders", "manifest")
LAYOUT_CHOICES = ("auto",) + LAYOUTS  # auto: detect_layout

_SYNONYMS = {
    "neutral": "neutral", "ne": "neutral", "n": "neutral",
    "happiness": "happiness", "happy": "happiness", "ha": "happiness", "joy": "happiness",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "anger": "anger", "angry": "anger", "an": "anger",
}
BU3DFE_ETHNICITY = {"WH": "white", "BL": "black", "AE": "east-asian", "AM": "middle-east-asian",
                    "IN": "indian", "LA": "latino"}
BP4D_TASKS = {"T1": "happiness", "T2": "sadness", "T3": "surprise", "T4": "embarrassment", "T5": "fear",
              "T6": "pain", "T7": "anger", "T8": "disgust"}
_BU3DFE_FORMATS = (".wrl", ".vrml") + tuple(x for x in MESH_EXTENSIONS if x not in (".wrl", ".vrml"))
_SUBJ4D_RE = re.compile(r"^[FM]\d{3,4}$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One labelled scan (``frame_ids is None``) or sequence (``path`` is a folder, ``frame_ids`` sorted).

    ``frame_paths`` lists the frame files of a sequence in the same order as ``frame_ids``.
    """

    path: str
    label: str
    subject: str
    intensity: int | None = None
    sex: str | None = None
    age: float | None = None
    ethnicity: str | None = None
    frame_ids: tuple[int, ...] | None = None
    frame_paths: tuple[str, ...] | None = None
    split: str | None = None
    source_label: str = ""
    family: str | None = None  # manifest columns of synthetic corpora: expression family, face model
    face_model: str | None = None
    sequence: str | None = None  # a frame's sequence (its ``path``), set by :func:`expand_frames`

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]
    layout: str
    root: str
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a user should hear: entries left out, and why

    def __len__(self) -> int:
        return len(self.samples)


def canonical_class(name: str) -> str:
    """Map a dataset label (``Angry``, ``AN``, ``HAPPY``, ``fearful``) to a library class name."""
    key = name.strip().lower().replace("_", " ").strip()
    return _SYNONYMS.get(key, key)


def _zip_split(path: str) -> tuple[str, str, str]:
    """``path`` split at its last ``.zip:`` (any case) as ``str.rpartition`` splits: (zip path without ``.zip``,
    the separator or ``""``, the member's path)."""
    at = path.lower().rfind(".zip:")
    return ("", "", path) if at < 0 else (path[:at], path[at:at + 5], path[at + 5:])


def declared_class(source: str) -> str | None:
    """The class a dataset's own naming gives a scan or sequence, without reading it: BU-3DFE's expression code
    (``F0001_HA03WH_F3D``), BU-4DFE's expression folder under a subject folder (``F001/Happy``), Bosphorus's
    ``E_`` / ``N_N`` names, or a folder named after the class (``happy/scan1.obj``, the ``folders`` layout); None for
    any other name or a class outside :data:`LIBRARY_CLASSES`. A zip member
    (``set.zip:F001/Happy``) counts by its own path, under the zip's name as a folder (``F001.zip:Happy``)."""
    outer, zipped, inner = _zip_split(str(source).replace("\\", "/"))
    parts = ([outer.rpartition("/")[2]] if zipped else []) + [x for x in inner.rstrip("/").split("/") if x]
    if not parts:
        return None
    stem = parts[-1].rsplit(".", 1)[0]
    label = None
    if m := BU3DFE_SCAN_RE.match(stem):
        label = canonical_class(m.group(3))
    elif m := BOSPHORUS_SCAN_RE.match(stem):
        kind, code = m.group(2).upper(), m.group(3).upper()
        label = canonical_class(code) if kind == "E" else "neutral" if (kind, code) == ("N", "N") else None
    elif len(parts) >= 2 and _SUBJ4D_RE.match(parts[-2]):
        label = canonical_class(parts[-1])
    elif len(parts) >= 2 and len(parts[-2]) > 2:  # the folders layout; not two-letter codes (a cache's "fe")
        label = canonical_class(parts[-2])
    return label if label in LIBRARY_CLASSES else None


def order_classes(labels: Iterable[str]) -> list[str]:
    """Library classes first in their canonical order, then any others sorted."""
    present = set(labels)
    return [c for c in LIBRARY_CLASSES if c in present] + sorted(present - set(LIBRARY_CLASSES))


def _check_root(root: str | os.PathLike, layout: str) -> Path:
    p = Path(root)
    if not p.exists():
        raise InputError(str(root), f"dataset root does not exist (layout {layout})")
    return p


def _visible_mesh(p: Path, root: Path) -> bool:
    """A mesh file by name, in no hidden folder (``.thumbs``) and not macOS litter (``._x.wrl``, ``__MACOSX``), as
    predict's folder walk reads it."""
    rel = p.relative_to(root).parts
    return is_mesh_name(p.name) and not any(x.startswith(".") or x == "__MACOSX" for x in rel)


def _is_scan(p: Path) -> bool:
    """Whether ``p`` (named as a scan) is a file to read; a link that leads nowhere (a loop, a missing target) is
    one InputError naming it, not a scan the set silently lacks."""
    try:
        return stat.S_ISREG(p.stat().st_mode)
    except OSError as e:
        if p.is_symlink():
            raise InputError(str(p), f"a link that leads nowhere ({e.strerror or e}); remove it or fix its target")
        return False


def load_bu3dfe(root: str | os.PathLike) -> Dataset:
    r = _check_root(root, "bu3dfe")
    samples, skipped = [], []
    found = sorted((p for p in sorted(r.rglob("*")) if p.suffix.lower() in _BU3DFE_FORMATS
                    and _visible_mesh(p, r) and _is_scan(p)),
                   key=lambda p: _BU3DFE_FORMATS.index(p.suffix.lower()))
    scans: dict[Path, Path] = {}  # one file per scan name: VRML first, then MESH_EXTENSIONS' order
    for p in found:
        scans.setdefault(p.with_suffix(""), p)
    for p in sorted(scans.values()):
        m = BU3DFE_SCAN_RE.match(p.stem)
        if not m:
            skipped.append(str(p))
            continue
        sex, num, expr, inten, eth = m.groups()
        samples.append(Sample(
            path=str(p), label=canonical_class(expr), subject=f"{sex.upper()}{num}", intensity=int(inten),
            sex="female" if sex.upper() == "F" else "male", ethnicity=BU3DFE_ETHNICITY.get(eth.upper(), eth.lower()),
            source_label=expr.upper()))
    return _finish(samples, "bu3dfe", r, skipped)


def _frames_in(folder: Path, sniff: bool) -> list[tuple[int, Path]]:
    """The frames of a 4D recording's folder by number; hidden files (macOS's ``._000.wrl``) are not frames, and
    two files of one number (``000.wrl`` beside a converted ``000.obj``) are one InputError, as predict says."""
    out: dict[int, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        if not (_is_scan(f) if f.suffix.lower() in MESH_EXTENSIONS else f.is_file()):
            continue
        ok = is_mesh_name(f.name) if not sniff else (
            f.suffix.lower() in MESH_EXTENSIONS or f.suffix == "") and sniff_mesh(f)
        n = frame_number(f.name) if ok else None
        if n is None:
            continue
        if n in out:
            raise InputError(str(folder), f"two files for frame {n}: {out[n].name!r} and {f.name!r}; keep one")
        out[n] = f
    return sorted(out.items())


def load_bu4dfe(root: str | os.PathLike) -> Dataset:
    r = _check_root(root, "bu4dfe")
    if _one_bu4dfe_subject(r):
        raise InputError(str(r), _ONE_SUBJECT)
    samples, skipped, notes = [], [], []
    entries = sorted(r.iterdir())
    folders = {d.name.lower() for d in entries if d.is_dir()}
    zipped = [f.name for f in entries if f.is_file() and f.suffix.lower() == ".zip"
              and f.stem.lower() not in folders]  # a zip beside its unzipped folder: the folder is read
    if zipped:
        skipped += [str(r / z) for z in zipped]
        notes.append(f"{_listed(zipped)}: zips are not read here (predict reads a zipped subject); unzip them beside "
                     "the subject folders to include them")
    empty = []
    for subj in (d for d in entries if d.is_dir()):
        if not _SUBJ4D_RE.match(subj.name):
            skipped.append(str(subj))  # tool folders like BU_WrlViewer_V2
            continue
        for expr in sorted(d for d in subj.iterdir() if d.is_dir() and not d.name.startswith((".", "__MACOSX"))):
            frames = _frames_in(expr, sniff=False)
            if not frames:
                skipped.append(str(expr))
                empty.append(f"{subj.name}/{expr.name}")
                continue
            samples.append(Sample(
                path=str(expr), label=canonical_class(expr.name), subject=subj.name.upper(),
                sex="female" if subj.name[0].upper() == "F" else "male",
                frame_ids=tuple(n for n, _ in frames), frame_paths=tuple(str(f) for _, f in frames),
                source_label=expr.name))
    if empty:
        notes.append(f"{_listed(empty)}: no frames (mesh files named by their number); left out")
    return _finish(samples, "bu4dfe", r, skipped, notes)


_ONE_SUBJECT = ("this is one 4D subject (BU-4DFE / BP4D: folders of numbered frames); give the folder that holds the "
                "subject folders, so that subjects, not frames, are split and scored")


def _one_bu4dfe_subject(r: Path) -> bool:
    """A BU-4DFE subject folder (``F001``) whose sub-folders hold numbered frames: read as a dataset of its own, its
    frames would be taken for scans of subjects named by their numbers."""
    if not _SUBJ4D_RE.match(r.name):
        return False
    subs = sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))[:_MAX_SUBFOLDERS]
    return any(_frames_in(d, sniff=False) for d in subs)


def _listed(names: Sequence[str], most: int = 4) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def load_bp4d(root: str | os.PathLike, tasks: Sequence[str] | None = None) -> Dataset:
    r = _check_root(root, "bp4d")
    want = {t.upper() for t in tasks} if tasks else set(BP4D_TASKS)
    samples, skipped = [], []
    for subj in sorted(d for d in r.iterdir() if d.is_dir()):
        tdirs = [d for d in subj.iterdir() if d.is_dir() and d.name.upper() in BP4D_TASKS]
        if not tdirs:
            skipped.append(str(subj))
            continue
        for t in sorted(tdirs):
            if t.name.upper() not in want:
                continue
            frames = _frames_in(t, sniff=True)
            if not frames:
                skipped.append(str(t))
                continue
            samples.append(Sample(
                path=str(t), label=BP4D_TASKS[t.name.upper()], subject=subj.name,
                sex={"F": "female", "M": "male"}.get(subj.name[:1].upper()),
                frame_ids=tuple(n for n, _ in frames), frame_paths=tuple(str(f) for _, f in frames),
                source_label=t.name.upper()))
    return _finish(samples, "bp4d", r, skipped)


def load_bosphorus(root: str | os.PathLike, include_variants: bool = False) -> Dataset:
    r = _check_root(root, "bosphorus")
    samples, skipped = [], []
    for p in sorted(r.rglob("*")):
        if p.suffix.lower() != ".bnt" or not _visible_mesh(p, r) or not _is_scan(p):
            continue
        m = BOSPHORUS_SCAN_RE.match(p.stem)
        if not m:
            skipped.append(str(p))
            continue
        subj, kind, code, _ = m.groups()
        kind, code = kind.upper(), code.upper()
        if kind == "E":
            label = canonical_class(code)
        elif kind == "N" and code == "N":
            label = "neutral"
        elif include_variants:
            label = f"{kind}_{code}".lower()
        else:
            skipped.append(str(p))
            continue
        samples.append(Sample(path=str(p), label=label, subject=subj.lower(), source_label=f"{kind}_{code}"))
    return _finish(samples, "bosphorus", r, skipped)


def _guess_subject(stem: str, subject_regex: str | None) -> str:
    if subject_regex:
        m = re.search(subject_regex, stem)
        if not m:
            raise InputError(stem, f"subject_regex {subject_regex!r} does not match the file name")
        return m.group(1) if m.groups() else m.group(0)
    m = BU3DFE_SCAN_RE.match(stem)
    if m:
        return f"{m.group(1).upper()}{m.group(2)}"
    m = BOSPHORUS_SCAN_RE.match(stem)
    if m:
        return m.group(1).lower()
    return re.split(r"[_\-]", stem, maxsplit=1)[0]


def load_folders(root: str | os.PathLike, subject_regex: str | None = None) -> Dataset:
    r = _check_root(root, "folders")
    if _one_bu4dfe_subject(r):
        raise InputError(str(r), _ONE_SUBJECT)
    samples, skipped = [], []
    for cdir in sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith((".", "__MACOSX"))):
        for p in sorted(cdir.rglob("*")):
            if _visible_mesh(p, r) and _is_scan(p):  # not hidden files nor macOS zip litter
                samples.append(Sample(path=str(p), label=canonical_class(cdir.name),
                                      subject=_guess_subject(p.stem, subject_regex), source_label=cdir.name))
    notes = []
    if not subject_regex and samples and all(Path(s.path).stem.isdigit() for s in samples):
        notes.append(f"every file is named by a number alone ({Path(samples[0].path).name} ...): each is read as a "
                     "scan of a subject of that number; if they are frames of 4D sequences, give the folder that holds "
                     "the subject folders (--layout bu4dfe or bp4d)")
    return _finish(samples, "folders", r, skipped, notes)


def _opt(row: dict, key: str) -> str | None:
    v = (row.get(key) or "").strip()
    return v or None


def _norm_sex(v: str | None) -> str | None:
    return {"f": "female", "m": "male", "female": "female", "male": "male", "woman": "female", "man": "male"}.get(
        v.strip().lower(), v) if v else None


def _norm_eth(v: str | None) -> str | None:
    return BU3DFE_ETHNICITY.get(v.strip().upper(), v) if v else None


def load_manifest(root: str | os.PathLike, within: Sequence[Path] | None = None) -> Dataset:
    r = _check_root(root, "manifest")
    csv_path = r / "manifest.csv" if r.is_dir() else r
    if not csv_path.is_file():
        raise InputError(str(csv_path), "manifest CSV not found (give the CSV or a folder with manifest.csv)")
    samples = []
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the first column's name
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            cols = {c.strip().lower() for c in (reader.fieldnames or [])}
            missing = {"path", "label", "subject"} - cols
            if missing:
                raise InputError(str(csv_path), f"manifest lacks column(s) {sorted(missing)}")
            for raw in reader:
                samples.append(_manifest_sample(csv_path, reader.line_num, raw, within))
        except UnicodeDecodeError:
            raise InputError(str(csv_path), "not UTF-8 text (is it a CSV?)") from None
        except csv.Error as e:  # a field over the csv module's limit, a NUL byte
            raise InputError(str(csv_path), f"after line {reader.line_num}: not a readable CSV row ({e})") from None
    return _finish(samples, "manifest", csv_path, [])


def _manifest_sample(csv_path: Path, i: int, raw: dict, within: Sequence[Path] | None = None) -> Sample:
    """One manifest row as a :class:`Sample`; a bad row is an :class:`InputError` naming the CSV and its line. With
    ``within``, a path elsewhere is refused before it is looked at (nothing said of whether it exists)."""
    row = {k.strip().lower(): v for k, v in raw.items() if k}
    path, label, subject = _opt(row, "path"), _opt(row, "label"), _opt(row, "subject")
    if not (path and label and subject):
        raise InputError(str(csv_path), f"line {i}: path, label and subject must not be empty")
    if "\0" in path:
        raise InputError(str(csv_path), f"line {i}: the path holds a NUL character")
    p = Path(path)
    if not p.is_absolute():
        p = csv_path.parent / p
    shown = path if len(path) <= 200 else path[:200] + "..."
    if within is not None and not inside(p, within):
        raise InputError(str(csv_path), f"line {i}: {shown}: outside the folders allowed here")
    try:
        p.stat()
    except FileNotFoundError:
        raise InputError(str(csv_path), f"line {i}: {shown}: file not found") from None
    except OSError as e:  # a name too long for the file system, a link loop, no permission
        raise InputError(str(csv_path), f"line {i}: {shown}: {e.strerror or e}") from None
    try:
        inten = float(row["intensity"]) if _opt(row, "intensity") else None
        age = float(row["age"]) if _opt(row, "age") else None
    except ValueError as e:
        raise InputError(str(csv_path), f"line {i}: bad number ({e})") from None
    if any(v is not None and not math.isfinite(v) for v in (inten, age)):
        raise InputError(str(csv_path), f"line {i}: intensity and age must be finite numbers")
    split = _opt(row, "split")
    frame_ids = frame_paths = None
    if p.is_dir():
        frames = _frames_in(p, sniff=False)
        if not frames:
            raise InputError(str(csv_path), f"line {i}: {shown}: a sequence folder without frames (mesh files named "
                                            "by their number)")
        frame_ids = tuple(n for n, _ in frames)
        frame_paths = tuple(str(f) for _, f in frames)
    return Sample(
        path=str(p), label=canonical_class(label), subject=subject, intensity=None if inten is None else int(inten),
        sex=_norm_sex(_opt(row, "sex")), age=age, ethnicity=_norm_eth(_opt(row, "ethnicity")),
        frame_ids=frame_ids, frame_paths=frame_paths, split=split.lower() if split else None,
        source_label=label, family=_opt(row, "family") or None, face_model=_opt(row, "face_model") or None)


def _finish(samples: list[Sample], layout: str, root: Path, skipped: list[str],
            notes: list[str] | None = None) -> Dataset:
    if not samples:
        raise InputError(str(root), f"no samples found for layout {layout!r}" + (f" ({notes[0]})" if notes else ""))
    return Dataset(samples=samples, classes=order_classes(s.label for s in samples), layout=layout,
                   root=str(root), skipped=skipped, notes=list(notes or ()))


def load_dataset(root: str | os.PathLike, layout: str, *, within: Sequence[str | os.PathLike] | None = None,
                 **kw) -> Dataset:
    """Read a dataset in one of :data:`LAYOUTS`, or ``auto`` (:func:`detect_layout`); keyword options go to the
    layout's reader. ``within``: folders every scan must lie in (links and ``..`` resolved; a server's roots), an
    InputError naming the first that does not."""
    readers = {"bu3dfe": load_bu3dfe, "bu4dfe": load_bu4dfe, "bp4d": load_bp4d, "bosphorus": load_bosphorus,
               "folders": load_folders, "manifest": load_manifest}
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in readers:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_CHOICES)}")
    if within is None:
        return readers[layout](root, **kw)
    allowed = [Path(os.path.realpath(w)) for w in within]
    ds = readers[layout](root, **kw, **({"within": allowed} if layout == "manifest" else {}))
    for s in ds.samples:  # a class folder or a subject folder that is a link to elsewhere
        for f in (s.path, *(s.frame_paths or ())):
            if not inside(f, allowed):
                raise InputError(str(root), f"{f}: outside the folders allowed here (a link?)")
    return ds


_MAX_LOOK = 20_000  # entries detect_layout lists at most
_MAX_SUBFOLDERS = 20  # subfolders detect_layout looks into for a hint when the root holds no dataset


def detect_layout(root: str | os.PathLike) -> str:
    """The layout of a dataset root, from its names: a ``.csv`` file is a manifest; in a folder, BU-3DFE's scan
    names, then BU-4DFE's subject/expression folders, BP4D's subject/task folders, Bosphorus's scan names, a
    ``manifest.csv``, and class-named folders (``folders``), in that order. InputError when none is there (naming
    the subfolder that holds one, when one does)."""
    r = Path(root)
    if not r.exists():
        raise InputError(str(root), "dataset root does not exist")
    if r.is_file():
        if r.suffix.lower() == ".csv":
            return "manifest"
        raise InputError(str(root), "a dataset root is a folder or a manifest CSV")
    layout = _layout_in(r)
    if layout:
        return layout
    for sub in sorted(d for d in r.iterdir() if d.is_dir())[:_MAX_SUBFOLDERS]:
        inner = _layout_in(sub, look=_MAX_LOOK // _MAX_SUBFOLDERS)
        if inner and inner != "folders":  # two-letter names (a cache's "fe") look like emotion folders
            raise InputError(str(root), f"no dataset here, but {sub} holds a {inner} tree: pass --data {sub}")
    zips = sorted(f.name for f in r.iterdir() if f.is_file() and f.suffix.lower() == ".zip")
    raise InputError(str(root), "cannot tell the dataset's layout (no BU-3DFE, BU-4DFE, BP4D or Bosphorus names, no "
                                "manifest.csv, no folders named after emotions); name it with --layout" +
                     (f"; zips are not read as datasets ({_listed(zips)}): unzip them" if zips else ""))


def _layout_in(r: Path, look: int = _MAX_LOOK) -> str | None:
    """:func:`detect_layout` of an existing folder, listing at most ``look`` entries, or None."""
    seen = {"bu3dfe": False, "bu4dfe": False, "bp4d": False, "bosphorus": False}
    looked = 0
    for top in sorted(r.iterdir()):
        looked += 1
        if looked > look:
            break
        if not top.is_dir():
            seen["bu3dfe"] |= bool(BU3DFE_SCAN_RE.match(top.stem))
            seen["bosphorus"] |= bool(BOSPHORUS_SCAN_RE.match(top.stem)) and top.suffix.lower() == ".bnt"
            continue
        for child in sorted(top.iterdir()):
            looked += 1
            if looked > look:
                break
            if child.is_dir():
                name = child.name.upper()
                seen["bp4d"] |= name in BP4D_TASKS
                seen["bu4dfe"] |= bool(_SUBJ4D_RE.match(top.name)) and canonical_class(child.name) in LIBRARY_CLASSES
            else:
                seen["bu3dfe"] |= bool(BU3DFE_SCAN_RE.match(child.stem))
                seen["bosphorus"] |= bool(BOSPHORUS_SCAN_RE.match(child.stem)) and child.suffix.lower() == ".bnt"
    for layout in ("bu3dfe", "bu4dfe", "bp4d", "bosphorus"):
        if seen[layout]:
            return layout
    if (r / "manifest.csv").is_file():
        return "manifest"
    if any(d.is_dir() and canonical_class(d.name) in LIBRARY_CLASSES for d in r.iterdir()):
        return "folders"
    return None


# ---------------------------------------------------------------- filtering, sequences and splits

def filter_samples(samples: Sequence[Sample], *, intensities: Iterable[int] | None = None,
                   classes: Iterable[str] | None = None, include_neutral: bool = True) -> list[Sample]:
    """Keep samples whose intensity is in ``intensities`` (samples without intensity are kept) and label
    in ``classes``. Neutral scans have intensity 0 in BU-3DFE, so ``intensities=[3, 4]`` drops them."""
    ints = set(intensities) if intensities is not None else None
    cls = {canonical_class(c) for c in classes} if classes is not None else None
    out = []
    for s in samples:
        if ints is not None and s.intensity is not None and s.intensity not in ints:
            continue
        if cls is not None and s.label not in cls:
            continue
        if not include_neutral and s.label == "neutral":
            continue
        out.append(s)
    return out


def expand_frames(samples: Sequence[Sample], *, n_frames: int = 5, window: tuple[float, float] = (0.3, 0.7)
                  ) -> list[Sample]:
    """Replace each sequence by up to ``n_frames`` evenly spaced frame samples from the ``window`` fraction of the
    sequence (default: the middle, where BU-4DFE's neutral-onset-apex-offset-neutral sequences peak; one frame is the
    window's centre). Static samples pass through."""
    out = []
    for s in samples:
        if not s.frame_paths:
            out.append(s)
            continue
        n = len(s.frame_paths)
        lo, hi = int(window[0] * (n - 1)), max(int(window[0] * (n - 1)), int(round(window[1] * (n - 1))))
        k = min(n_frames, hi - lo + 1)
        mid = min(max(int(0.5 * (window[0] + window[1]) * (n - 1) + 0.5), lo), hi)
        idx = [mid] if k == 1 else sorted({lo + round(i * (hi - lo) / (k - 1)) for i in range(k)})
        for i in idx:
            out.append(replace(s, path=s.frame_paths[i], frame_ids=(s.frame_ids[i],), frame_paths=None,
                               sequence=s.path))
    return out


def subject_folds(subjects: Iterable[str], k: int = 10, seed: int = 0) -> dict[str, int]:
    """Deterministic subject -> fold: a seeded permutation of the sorted subject ids, dealt round-robin.

    The same subjects and seed always give the same folds, on every machine and rank."""
    subs = sorted(set(subjects))
    if k < 2:
        raise ConfigError(f"folds must be >= 2 (got {k})")
    if len(subs) < k:
        raise ConfigError(f"{len(subs)} subjects cannot fill {k} folds; use fewer folds (--folds)")
    # sha256 of (seed, subject) gives a platform-independent permutation
    order = sorted(subs, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    return {s: i % k for i, s in enumerate(order)}


def kfold_split(samples: Sequence[Sample], k: int = 10, fold: int = 0, seed: int = 0
                ) -> tuple[list[Sample], list[Sample]]:
    """(train, test) for ``fold`` of a subject-independent k-fold split: no subject is in both."""
    if not 0 <= fold < k:
        raise ConfigError(f"fold must be in [0, {k - 1}] (got {fold})")
    folds = subject_folds((s.subject for s in samples), k, seed)
    train = [s for s in samples if folds[s.subject] != fold]
    test = [s for s in samples if folds[s.subject] == fold]
    return train, test


VAL_SPLITS = ("val", "valid", "validation")
SPLIT_VALUES = ("train", *VAL_SPLITS, "test")


def check_split_column(samples: Sequence[Sample], where: str = "the manifest") -> None:
    """Raise one ConfigError unless every row's ``split`` is train, val (valid, validation) or test."""
    counts = Counter(s.split for s in samples)
    odd = {k: n for k, n in counts.items() if k is not None and k not in SPLIT_VALUES}
    if odd:
        said = ", ".join(f"{n} row(s) say {k!r}" for k, n in sorted(odd.items()))
        raise ConfigError(f"{where}: its split column must say train, val or test ({said}); fix it, or pass "
                          f"--split kfold to ignore the column")
    if None in counts:
        raise ConfigError(f"{where}: {counts[None]} of {len(samples)} rows have no split value; fill the column, or "
                          f"pass --split kfold to ignore it")
    if "train" not in counts:
        raise ConfigError(f"{where}: its split column marks no row train (it says "
                          f"{', '.join(sorted(counts))}); fix it, or pass --split kfold to ignore the column")


def manifest_split(samples: Sequence[Sample], where: str = "the manifest"
                   ) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, test) from the manifest's ``split`` column; with no test rows, its val rows are the test."""
    check_split_column(samples, where)
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split in VAL_SPLITS]
    test = [s for s in samples if s.split == "test"]
    if not test:
        test, val = val, []
    check_disjoint({"train": train, "val": val, "test": test}, f"{where}: its ")
    return train, val, test


def check_disjoint(parts: Mapping[str, Sequence[Sample]], prefix: str = "") -> None:
    """One ConfigError when a subject is in two of ``parts`` (train / val / test): a split must be by subject."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            leak = {s.subject for s in parts[a]} & {s.subject for s in parts[b]}
            if leak:
                raise ConfigError(f"{prefix}split puts subject(s) {sorted(leak)[:5]} in both {a} and {b}")


def summarise(samples: Sequence[Sample]) -> dict:
    """Counts the app shows before a launch: per class, per subject, per intensity, and warnings."""
    per_class = Counter(s.label for s in samples)
    per_subject = Counter(s.subject for s in samples)
    per_int = Counter(str(s.intensity) for s in samples if s.intensity is not None)
    subj_per_class: dict[str, set] = defaultdict(set)
    for s in samples:
        subj_per_class[s.label].add(s.subject)
    warnings = []
    if len(per_subject) < 2:
        warnings.append("fewer than 2 subjects: a subject-independent split is impossible")
    for c, subs in sorted(subj_per_class.items()):
        if len(subs) < 2:
            warnings.append(f"class {c!r} has samples from only {len(subs)} subject")
    if per_class and max(per_class.values()) > 5 * min(per_class.values()):
        warnings.append("classes are unbalanced by more than 5x")
    return {
        "n_samples": len(samples), "n_subjects": len(per_subject),
        "n_sequences": sum(1 for s in samples if s.frame_paths),
        "classes": order_classes(per_class), "per_class": dict(per_class),
        "per_subject": dict(sorted(per_subject.items())), "per_intensity": dict(sorted(per_int.items())),
        "subjects_per_class": {c: len(v) for c, v in subj_per_class.items()}, "warnings": warnings,
    }
