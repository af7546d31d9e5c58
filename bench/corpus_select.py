"""Combine corpus manifests into one training manifest, holding out whole families / face models / splits.

    python bench/corpus_select.py --data CORPUS_A --data CORPUS_B --out train.csv \
        --rule "split=train,val family=emfacs,emfacs-alt level=0,2,3,4" \
        --rule "split=test family=recipes,sculpt level=0,3,4"

Each ``--rule`` keeps the rows matching all of its ``column=v1,v2`` terms (``level`` = intensity); a row is
written when any rule keeps it. Paths are written absolute, so the CSV can live anywhere; subjects are renamed
``<corpus folder>-<subject>`` (``<parent>_<folder>-<subject>`` when two corpora share a folder name) so that corpora
made with other seeds never share an id; a corpus given twice is refused. Prints counts.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from collections import Counter
from pathlib import Path


def _rule(text: str) -> dict[str, set[str]]:
    from affectvlm.synth.corpus import CORPUS_COLUMNS

    out = {}
    for term in text.split():
        k, _, v = term.partition("=")
        k = "intensity" if k == "level" else k
        if k not in CORPUS_COLUMNS or not v:
            raise ValueError(f"--rule {text!r}: {term!r} is not column=value,... (columns: level, "
                             f"{', '.join(c for c in CORPUS_COLUMNS if c != 'intensity')})")
        out[k] = {x for x in v.split(",") if x}
        if k == "intensity" and not all(x.isdigit() and int(x) <= 4 for x in out[k]):
            raise ValueError(f"--rule {text!r}: levels are 0 (neutral) to 4, not {v!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    from affectvlm.errors import AffectVLMError
    from affectvlm.fileio import atomic_write_text
    from affectvlm.synth.corpus import CORPUS_COLUMNS, read_corpus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--rule", action="append", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        rules = [_rule(r) for r in args.rule]
    except ValueError as e:
        ap.error(str(e))
    real = [Path(d).resolve() for d in args.data]
    if len(set(real)) != len(real):
        ap.error("--data: a corpus is given twice (its rows would be written twice)")
    names = [p.name for p in real]  # subject ids are per corpus: name them after their corpus so they never collide
    tags = [p.name if names.count(p.name) == 1 else f"{p.parent.name}_{p.name}" for p in real]  # runA/corpus, ...
    if len(set(tags)) != len(tags):
        ap.error("--data: two corpora would share subject ids; give folders with different names")
    rows = []
    for d, tag in zip(args.data, tags):
        try:
            rows += [dict(r, subject=f"{tag}-{r['subject']}") for r in read_corpus(d)]
        except AffectVLMError as e:
            ap.error(f"--data {e}")
    keep = [r for r in rows if any(all(str(r[k]) in v for k, v in rule.items()) for rule in rules)]
    if not keep:
        ap.error(f"no row of the {len(rows)} matches any --rule; nothing written to {args.out}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CORPUS_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(args.out, buf.getvalue())
    print(json.dumps({"rows": len(keep), "by_split": Counter(r["split"] for r in keep),
                      "by_family": Counter(r["family"] for r in keep),
                      "by_model": Counter(r["face_model"] for r in keep)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
