"""The plain trainer over several subject folds: option sets against a baseline, paired by set and fold.

One fold of a 40-subject set tests 8 subjects, and fold-to-fold spread is several points, so a trainer default is
chosen here on the mean best validation accuracy over folds (and sets), never on one fold. Every run is a real
``affectvlm train`` process; up to ``--jobs`` run at once (on a GPU machine many can share the GPU). Prints one
JSON object: per option set the mean best val, per set the test accuracy (intensities 3-4 where the data has
levels) as mean and standard deviation over folds, and against the baseline (the first ``--config``) the mean
paired gain in best val, how many set-folds it won and lost, and the ratio of the mean best vals.

    python bench/bench_folds.py --data rb40 --data rpm40 --folds 5 \\
        --config base= --config e36="--epochs 36" --jobs 2 --out runs/folds [-- --cache-dir C]

Arguments after ``--`` go to every run. Runs already finished in ``--out`` are read, not repeated. ``--fold-ids 0,1``
runs only those folds of the ``--folds`` split (a first look at a candidate before its remaining folds). ``--seeds
0,1`` trains every option set on every fold once per training seed (runs named ``..._f0_s1``), pairs each run with
the baseline's of the same fold and seed, and reports the baseline's ``seed_spread``: a gain smaller than it is what
the seed alone does.

With ``--predict`` each run's test subjects are also scored as a user scores them: ``affectvlm predict`` on a folder
of links to their scans or sequences with ``best/`` and predict's defaults (``--adapt auto``, ``--neutral auto``),
read against the dataset's labels (intensities 3-4 where the data has levels). The report then gives, per set, that
figure beside the trainer's own and their ratio; ``--predict-args`` adds options to those predict runs. A run's
score is kept as ``NAME.predict.json`` in ``--out`` and read back, not repeated, while its best/, test subjects,
data, predict options and the library's code are unchanged.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]


def parse_configs(specs: list[str]) -> dict[str, list[str]]:
    """``NAME=OPTIONS`` -> {name: argv}; the first is the baseline."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, _, opts = spec.partition("=")
        if not name or name in out:
            raise SystemExit(f"--config {spec!r}: give NAME=OPTIONS with a new NAME")
        out[name] = shlex.split(opts)
    return out


def parse_fold_ids(text: str | None, folds: int) -> list[int]:
    """``--fold-ids 0,1`` -> [0, 1] (each a fold of the ``folds``-fold split, once); None -> every fold."""
    if text is None:
        return list(range(folds))
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--fold-ids {text!r}: give fold numbers separated by commas, e.g. 0,1") from None
    if not ids or len(set(ids)) != len(ids) or not all(0 <= f < folds for f in ids):
        raise SystemExit(f"--fold-ids {text!r}: give distinct folds of the {folds}-fold split (0 to {folds - 1})")
    return ids


def run_all(jobs: list[tuple[str, list[str]]], out: Path, concurrency: int) -> dict[str, dict]:
    """Run ``(name, argv)`` trainer jobs, ``concurrency`` at a time; {name: result record}."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    results, running = {}, []
    todo = list(jobs)
    while todo or running:
        while todo and len(running) < concurrency:
            name, argv = todo.pop(0)
            if (out / name / "result.json").is_file():
                results[name] = record(out / name, None, 0.0)
                continue
            log = open(out / f"{name}.log", "w")
            p = subprocess.Popen([sys.executable, "-m", "affectvlm.train", *argv], cwd=None, env=env,
                                 stdout=subprocess.DEVNULL, stderr=log)
            running.append((name, time.perf_counter(), p, log))
        time.sleep(0.5)
        for item in list(running):
            name, t0, p, log = item
            if p.poll() is None:
                continue
            running.remove(item)
            log.close()
            results[name] = record(out / name, p.returncode, time.perf_counter() - t0)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    return results


def record(run: Path, rc: int | None, wall: float) -> dict:
    """What one run reported (result.json), or its error."""
    try:
        r = json.loads((run / "result.json").read_text())
    except (OSError, ValueError):
        return {"rc": rc, "error": f"no result.json in {run} (see {run}.log)"}
    test = r.get("test", {})
    return {"rc": rc, "wall_s": round(wall, 1), "best_val": r.get("best_val_accuracy"),
            "test": test.get("accuracy_intensity_3_4", test.get("accuracy"))}


def _best_digest(run: Path) -> str:
    """sha256 over best/'s files, so a scored run is scored again only when its checkpoint changed."""
    h = hashlib.sha256()
    for f in sorted((run / "best").glob("*")):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the library's source files (once per invocation): a kept score is scored again once predict's
    code changed."""
    h = hashlib.sha256()
    for f in sorted((REPO / "affectvlm").rglob("*.py")):
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def predict_record(run: Path, data: str, layout: str, extra: list[str]) -> dict:
    """``affectvlm predict`` with ``run``'s best/ on links to its test subjects' inputs, scored against the
    dataset's labels: {"predict_test": accuracy at intensities 3-4 (or over all when the data has no levels),
    "predict_n": inputs counted, "predict_failed": rows without a label}. Kept beside the run as
    ``NAME.predict.json`` and read back while the checkpoint, test subjects, data and predict options are the same."""
    try:
        test = set(json.loads((run / "splits.json").read_text())["subjects"]["test"])
    except (OSError, ValueError, KeyError, TypeError) as e:  # a run stopped before it wrote its splits
        return {"predict_error": [f"no readable splits.json in {run} ({type(e).__name__}); delete the folder to "
                                  "run it again"]}
    key = {"best": _best_digest(run), "test": sorted(test), "data": str(Path(data).resolve()), "layout": layout,
           "predict_args": extra, "code": code_digest()}
    kept = run.with_name(f"{run.name}.predict.json")
    try:
        old = json.loads(kept.read_text())
        if old.get("key") == key:
            return old["record"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    rec = _score_test_subjects(run, data, layout, extra, test)
    if "predict_error" not in rec:
        tmp = kept.with_name(kept.name + ".tmp")
        tmp.write_text(json.dumps({"key": key, "record": rec}, indent=1))
        os.replace(tmp, kept)
    return rec


def _score_test_subjects(run: Path, data: str, layout: str, extra: list[str], test: set[str]) -> dict:
    import csv
    import tempfile

    from affectvlm.datasets import load_dataset
    from affectvlm.train.train import PROTOCOL_LEVELS  # the levels of the trainer's own test figure

    samples = [x for x in load_dataset(data, layout).samples if x.subject in test]
    with tempfile.TemporaryDirectory(prefix="bench_folds_") as tmp:
        truth = {}
        for k, x in enumerate(samples):
            # a subject's inputs share a folder, as predict pairs a scan with its subject's neutral scan by folder
            link = Path(tmp) / x.subject / Path(x.path).name
            if link.is_symlink():  # two inputs of one subject with one name: the later in a folder of its own
                link = Path(tmp) / x.subject / f"{k:05d}" / Path(x.path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(x.path).resolve(), target_is_directory=Path(x.path).is_dir())
            truth[str(link)] = x
        rows_csv = Path(tmp) / "rows.csv"
        cmd = [sys.executable, "-m", "affectvlm", "predict", tmp, "--model", str(run / "best"), "--out",
               str(rows_csv), *extra]
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
        done = subprocess.run(cmd, cwd=None, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return {"predict_error": done.stderr.strip().splitlines()[-1:]}
        rows = [r for r in csv.DictReader(rows_csv.open()) if r["frame"] in ("", "sequence")]
    levels = any(x.intensity in PROTOCOL_LEVELS for x in samples)
    hits = [r["label"] == truth[r["file"]].label for r in rows
            if r["file"] in truth and (not levels or truth[r["file"]].intensity in PROTOCOL_LEVELS)]
    return {"predict_test": round(sum(hits) / len(hits), 4) if hits else None, "predict_n": len(hits),
            "predict_failed": sum(1 for r in rows if not r["label"])}


def _units(folds: Sequence[int], seeds: Sequence[int] | None) -> list[tuple[int, str]]:
    """(fold, run-name suffix) of every run of one option set on one data set: ``f0`` or, with seeds, ``f0_s1``."""
    if not seeds:
        return [(f, f"f{f}") for f in folds]
    return [(f, f"f{f}_s{s}") for f in folds for s in seeds]


def _finished(results: dict[str, dict], name: str, units: Sequence[tuple[int, str]], key: str) -> list[float]:
    """``key`` of the runs ``name``_f0 ... that have it, in fold (then seed) order."""
    got = [results.get(f"{name}_{u}", {}).get(key) for _, u in units]
    return [x for x in got if x is not None]


def seed_spread(results: dict[str, dict], name: str, folds: Sequence[int], seeds: Sequence[int]) -> float | None:
    """Mean over folds of the range of best val across seeds: how far the seed alone moves one fold."""
    ranges = []
    for f in folds:
        got = [results.get(f"{name}_f{f}_s{s}", {}).get("best_val") for s in seeds]
        got = [x for x in got if x is not None]
        if len(got) > 1:
            ranges.append(max(got) - min(got))
    return round(statistics.mean(ranges), 4) if ranges else None


def summarise(results: dict[str, dict], configs: dict[str, list[str]], sets: list[str], folds: Sequence[int],
              seeds: Sequence[int] | None = None) -> dict:
    base = next(iter(configs))
    units = _units(folds, seeds)
    out: dict = {"baseline": base, "configs": {}}
    for c in configs:
        vals = {(s, u): results.get(f"{s}_{c}_{u}", {}).get("best_val") for s in sets for _, u in units}
        done = [v for v in vals.values() if v is not None]
        entry: dict = {"options": shlex.join(configs[c]), "runs": len(done),
                       "mean_best_val": round(statistics.mean(done), 4) if done else None, "test": {}}
        if seeds and len(seeds) > 1:
            spreads = [seed_spread(results, f"{s}_{c}", folds, seeds) for s in sets]
            spreads = [x for x in spreads if x is not None]
            entry["seed_spread"] = round(statistics.mean(spreads), 4) if spreads else None
        for s in sets:
            t = _finished(results, f"{s}_{c}", units, "test")
            n_folds = len({f for f, u in units if results.get(f"{s}_{c}_{u}", {}).get("test") is not None})
            entry["test"][s] = {"mean": round(statistics.mean(t), 4) if t else None,
                                "sd": round(statistics.stdev(t), 4) if len(t) > 1 else None, "folds": n_folds,
                                "runs": len(t)}
            pt = _finished(results, f"{s}_{c}", units, "predict_test")
            if pt:
                m = statistics.mean(pt)
                entry["test"][s]["predict_mean"] = round(m, 4)
                entry["test"][s]["predict_over_trainer"] = round(m / statistics.mean(t), 4) if t else None
        if c != base:
            pairs = [(vals[k], results.get(f"{k[0]}_{base}_{k[1]}", {}).get("best_val")) for k in vals]
            diffs = [a - b for a, b in pairs if a is not None and b is not None]
            base_mean = out["configs"][base]["mean_best_val"]
            entry["vs_baseline"] = {
                "mean_val_gain": round(statistics.mean(diffs), 4) if diffs else None,
                "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs), "pairs": len(diffs),
                "val_ratio": round(entry["mean_best_val"] / base_mean, 4) if diffs and base_mean else None}
        out["configs"][c] = entry
    return out


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,1`` -> [0, 1] (distinct training seeds); None -> the trainer's own seed, one run a fold."""
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {text!r}: give seeds separated by commas, e.g. 0,1") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds {text!r}: give distinct seeds, e.g. 0,1")
    return seeds


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="a dataset folder or CSV (repeat for more sets)")
    ap.add_argument("--layout", default="auto")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold-ids", default=None, metavar="F,F,...",
                    help="run only these folds of the --folds split (default: all of them), e.g. 0,1")
    ap.add_argument("--config", action="append", default=None, metavar="NAME=OPTIONS",
                    help="an option set (repeat); the first is the baseline (default: base= only)")
    ap.add_argument("--seeds", default=None, metavar="S,S,...",
                    help="train each option set on each fold once per seed (--seed S), paired with the baseline's "
                         "run of the same seed; the report gives each set's seed_spread, how far the seed alone "
                         "moves a fold's best val")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once")
    ap.add_argument("--out", required=True, help="folder for the runs (finished ones are reused)")
    ap.add_argument("--predict", action="store_true",
                    help="also score each run's test subjects with affectvlm predict, as a user would")
    ap.add_argument("--predict-args", default="", help="options for those predict runs (one string)")
    a = ap.parse_args(argv)
    configs = parse_configs(a.config or ["base="])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fold_ids = parse_fold_ids(a.fold_ids, a.folds)
    sets = {Path(d).stem: d for d in a.data}
    if len(sets) != len(a.data):
        raise SystemExit("--data: two sets share a name; give folders with different names")
    seeds = parse_seeds(a.seeds)
    if seeds and any("--seed" in [*extra, *opts] for opts in configs.values()):
        raise SystemExit("--seeds: the runs' --seed comes from --seeds; leave it out of --config and the options after --")
    jobs = [(f"{s}_{c}_{u}", ["--data", d, "--layout", a.layout, "--out", str(out / f"{s}_{c}_{u}"), "--folds",
                              str(a.folds), "--fold", str(f), "--no-progress", *extra, *opts,
                              *(["--seed", u.rsplit("_s", 1)[1]] if seeds else [])])
            for f, u in _units(fold_ids, seeds) for s, d in sets.items() for c, opts in configs.items()]
    t0 = time.perf_counter()
    results = run_all(jobs, out, max(1, a.jobs))
    if a.predict:
        data_of = {name: argv[argv.index("--data") + 1] for name, argv in jobs}
        for name, rec in results.items():
            if rec.get("rc") in (0, None) and "error" not in rec:
                rec.update(predict_record(out / name, data_of[name], a.layout, shlex.split(a.predict_args)))
    report = {"bench": "folds", "sets": list(sets), "folds": a.folds, "extra": shlex.join(extra),
              "predict": shlex.join(["affectvlm", "predict", "TEST", *shlex.split(a.predict_args)]) if a.predict else None,
              "fold_ids": fold_ids, "seeds": seeds, "wall_s": round(time.perf_counter() - t0, 1),
              **summarise(results, configs, list(sets), fold_ids, seeds),
              "runs": results}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
