"""Several models on the same named trees, each with ``affectvlm predict``'s defaults: a candidate against a baseline.

    python bench/bench_models.py TREE [TREE ...] --model default --model RUN/best [--levels 3,4]
        [--headline rb,rpm,ictrb] [--out-dir DIR [--reuse]]

Each TREE is a BU-3DFE- or BU-4DFE-layout folder (e.g. ``affectvlm synth --layout bu3dfe|bu4dfe``). Every model
scores every tree with ``affectvlm predict TREE --model M`` and every other option at its default; the rows are read
against the labels the names declare, as ``bench_subject_mean.py`` reads them (scans at ``--levels``, neutral scans
left out; a 4D tree's pooled sequence rows). A tree's recipe is its folder name without its trailing digits
(``rb4611`` and ``rb4614`` are two draws of ``rb``). Prints JSON: per model, each tree's accuracy and count (and, for
4D trees, the sequences right) and its commonest confusions (``"truth->label": count``), each recipe's mean over its
scan trees, the headline mean over the scan trees of the ``--headline`` recipes (default: all), and each model's gain
over the first model on the recipe and headline means.
With ``--out-dir DIR --reuse`` a model's rows for a tree already in DIR (from an earlier run with the same model spec
and tree name, whose checkpoint files had the same bytes) are read instead of predicted again: a baseline scored once
serves later candidates. A kept file's name carries a hash of the spec and of the checkpoint's files, so ``default``
after the embedded model changes (or a run folder trained again) is predicted afresh, not read from stale rows; so
is a tree whose kept file cannot be read (cut short, empty), and every tree once the renderer's version or the
face-frame network changes.
Synthetic trees made by this project are in-generator for the face models and sculptors a model trained on: say so
when quoting.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_subject_mean import accuracy, counted, predict_rows  # noqa: E402  (bench/ is not a package)

from affectvlm.errors import ModelError  # noqa: E402
from affectvlm.model.specs import parse_spec  # noqa: E402
from affectvlm.train.cache import file_digest  # noqa: E402

_DRAW = re.compile(r"\d+$")


def recipe_of(tree: str) -> str:
    """``rb4611`` -> ``rb``; a name without trailing digits is its own recipe."""
    name = Path(tree).name
    return _DRAW.sub("", name) or name


def weights_digest(model: str) -> str:
    """A hash of the files a local spec loads (a checkpoint folder's JSON and safetensors, or a weights file), each by
    ``file_digest``; empty for specs without local files (architectures, pretrained tags, hf-hub)."""
    path = parse_spec(model).path
    if not path:
        return ""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".json", ".safetensors")) if p.is_dir() else [p]
    return hashlib.sha1("".join(f"{f.name}:{file_digest(f)};" for f in files).encode()).hexdigest()


def scoring_version() -> str:
    """What, besides the model, decides predict's rows: the render version (bumped whenever rendering or the face
    frame changes what a view looks like) and the face-frame network's weights."""
    from affectvlm.faceframe import weights_digest as frame_digest
    from affectvlm.train.cache import CACHE_VERSION

    return f"render{CACHE_VERSION}:frame{frame_digest()}"


def rows_file(where: Path, model: str, tree: str, digest: str = "") -> Path:
    """Where one model's predict rows for one tree are kept: named by the spec (readable part + a hash of the spec,
    of the checkpoint's ``digest`` and of :func:`scoring_version`) and the tree."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._")[-40:] or "model"
    key = model + digest + scoring_version()
    return where / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.{tree}.json"


def read_kept(kept: Path) -> list[dict] | None:
    """The rows kept in ``kept``, or None when there are none to read (missing, empty, cut short or not rows): the
    tree is then predicted again and the file rewritten."""
    try:
        rows = json.loads(kept.read_text())
    except (OSError, ValueError):
        return None
    return rows if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows) else None


def confusions(pairs: list[tuple[str, str]], most: int = 4) -> dict[str, int]:
    """The ``most`` commonest errors among ``counted``'s (truth, label) pairs, as ``"truth->label": count``."""
    wrong = Counter((t, y) for t, y in pairs if t != y)
    return {f"{t}->{y}": k for (t, y), k in wrong.most_common(most)}


def summarise(trees: dict[str, dict], headline: set[str] | None) -> dict:
    """Recipe means and the headline mean over the scan trees (sequence trees are reported, not averaged)."""
    by_recipe: dict[str, list[float]] = {}
    for name, t in trees.items():
        if t["kind"] == "scans" and t["accuracy"] is not None:
            by_recipe.setdefault(recipe_of(name), []).append(t["accuracy"])
    recipes = {r: round(sum(a) / len(a), 4) for r, a in sorted(by_recipe.items())}
    counted = [a for r, accs in by_recipe.items() if headline is None or r in headline for a in accs]
    return {"recipes": recipes, "headline": round(sum(counted) / len(counted), 4) if counted else None,
            "headline_trees": len(counted)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="BU-3DFE- or BU-4DFE-layout folders")
    ap.add_argument("--model", action="append", required=True,
                    help="model spec, repeatable; the first is the baseline (e.g. default)")
    ap.add_argument("--levels", default="3,4", help="BU-3DFE intensity levels counted (default 3,4)")
    ap.add_argument("--headline", default=None,
                    help="recipes in the headline mean, e.g. rb,rpm,ictrb (default: every scan tree)")
    ap.add_argument("--out-dir", default=None, help="keep the predict JSON files here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="read a model's rows for a tree from --out-dir when an earlier run left them there")
    a = ap.parse_args(argv)
    if a.reuse and not a.out_dir:
        ap.error("--reuse needs --out-dir (the folder an earlier run kept its predict files in)")
    levels = {int(x) for x in a.levels.split(",") if x.strip()}
    headline = {x.strip() for x in a.headline.split(",") if x.strip()} if a.headline else None
    names = [Path(t).name for t in a.trees]
    if len(set(names)) != len(names):
        ap.error("two trees share a folder name; rename one (the name is the tree's key and recipe)")
    report: dict = {"bench": "models", "levels": sorted(levels), "headline_recipes": sorted(headline or []),
                    "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(a.out_dir or tmp)
        where.mkdir(parents=True, exist_ok=True)
        for model in a.model:
            trees = {}
            try:
                digest = weights_digest(model) if a.out_dir else ""  # names kept files only
            except ModelError as e:  # the same one line predict would give, before any tree is scored
                raise SystemExit(f"bench_models: --model {model}: {e}") from None
            for tree, name in zip(a.trees, names):
                kept = rows_file(where, model, name, digest)
                rows = read_kept(kept) if a.reuse else None
                if rows is None:
                    rows = predict_rows(tree, model, None, kept)
                pairs = counted(rows, levels)
                acc, n = accuracy(pairs)
                kind = "sequences" if any(r.get("frame") == "sequence" for r in rows) else "scans"
                trees[name] = {"kind": kind, "accuracy": acc, "n": n, "confusions": confusions(pairs)}
                if kind == "sequences" and acc is not None:
                    trees[name]["right"] = round(acc * n)
            report["models"].append({"model": model, "trees": trees, **summarise(trees, headline)})
    base = report["models"][0]
    for m in report["models"][1:]:
        m["gain"] = {"recipes": {r: round(v - base["recipes"][r], 4) for r, v in m["recipes"].items()
                                 if r in base["recipes"]},
                     "headline": None if m["headline"] is None or base["headline"] is None
                     else round(m["headline"] - base["headline"], 4)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
