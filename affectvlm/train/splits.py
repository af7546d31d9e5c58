"""Subject-independent train / val / test splits of a dataset (``splits.json`` records them)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from affectvlm.errors import ConfigError
from affectvlm.runfolder import SplitsRecord
from affectvlm.trainconfig import TrainConfig


@dataclass
class Splits:
    """Subject-disjoint train / val / test samples; val picks ``best/``, test is only reported."""
    train: list
    val: list
    test: list
    classes: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)  # the reader's: entries of the data left out, and why

    def subjects(self) -> dict[str, list[str]]:
        return {k: sorted({s.subject for s in getattr(self, k)}) for k in ("train", "val", "test")}

    def record(self) -> SplitsRecord:
        return SplitsRecord(self.classes, self.subjects(),
                            {k: len(getattr(self, k)) for k in ("train", "val", "test")}, self.source)


def carve_val_subjects(subjects, fraction: float, seed: int = 0) -> set[str]:
    """A deterministic share of ``subjects`` (seeded hash order), at least one, never all of them."""
    subs = sorted(set(subjects))
    if fraction <= 0 or len(subs) < 2:
        return set()
    n = min(len(subs) - 1, max(1, round(fraction * len(subs))))
    order = sorted(subs, key=lambda s: hashlib.sha256(f"{seed}:val:{s}".encode()).hexdigest())
    return set(order[:n])


def resolve_split(samples, split: str) -> str:
    """``split`` with ``auto`` resolved: ``manifest`` when the rows have split values, unless every one says train
    (nothing held out), else ``kfold``. :func:`affectvlm.datasets.manifest_split` checks the column it then reads."""
    names = {s.split for s in samples}
    if split == "kfold" or (split == "auto" and names in ({None}, {"train"})):
        return "kfold"
    return "manifest"


def split_samples(samples, cfg: TrainConfig) -> tuple[list, list, list, str]:
    """(train, val, test, description): k-fold test fold or the manifest's test rows; val from the
    manifest's val rows or carved out of the training subjects (``cfg.val_fraction``)."""
    from affectvlm.datasets import check_disjoint, kfold_split, manifest_split

    val: list = []
    if resolve_split(samples, cfg.split) == "manifest":
        train, val, test = manifest_split(samples, str(cfg.data))
        source = "manifest"
    else:
        train, test = kfold_split(samples, cfg.folds, cfg.fold, cfg.split_seed)
        source = f"kfold fold {cfg.fold} of {cfg.folds}, split seed {cfg.split_seed}"
    if not val:
        carved = carve_val_subjects((s.subject for s in train), cfg.val_fraction, cfg.split_seed)
        val = [s for s in train if s.subject in carved]
        train = [s for s in train if s.subject not in carved]
        if carved:
            source += (f"; val = {len(carved)} training subject{'' if len(carved) == 1 else 's'} "
                       f"(val_fraction {cfg.val_fraction})")
    else:
        source += "; val from the manifest"
    check_disjoint({"train": train, "val": val, "test": test})
    return train, val, test, source


def build_splits(cfg: TrainConfig) -> Splits:
    from affectvlm.datasets import canonical_class, expand_frames, filter_samples, load_dataset, order_classes

    ds = load_dataset(cfg.data, cfg.layout)
    if cfg.classes:
        have = order_classes(s.label for s in ds.samples)
        absent = [c for c in cfg.classes if canonical_class(c) not in have]
        if absent:
            raise ConfigError(f"--classes: {', '.join(map(repr, absent))} not in {cfg.data} (it has "
                              f"{', '.join(have)})")
    samples = filter_samples(ds.samples, intensities=cfg.intensities, classes=cfg.classes,
                             include_neutral=cfg.include_neutral)
    if not samples:
        raise ConfigError(f"{cfg.data}: no samples left after filtering (intensities={cfg.intensities}, "
                          f"classes={cfg.classes}, neutral={cfg.include_neutral})")
    train, val, test, source = split_samples(samples, cfg)
    train, val, test = (expand_frames(x, n_frames=cfg.frames_per_sequence) for x in (train, val, test))
    classes = list(cfg.classes) if cfg.classes else order_classes(s.label for s in samples)
    classes = [canonical_class(c) for c in classes]
    if not train or not test:
        raise ConfigError(f"{cfg.data}: the split leaves {len(train)} training and {len(test)} test samples")
    return Splits(train, val, test, classes, f"{ds.layout} layout; {source}", list(ds.notes))
