"""The Train page's form to a checked launch: every path inside the workspace roots, the extra options
parsed by the trainer's own parser and rebuilt from the parsed values, one ``ConfigError`` line otherwise."""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from affectvlm.app.launch import TrainLaunch
from affectvlm.app.settings import AppSettings, check_model_spec, resolve_in_roots, unique_run_dir
from affectvlm.app.uploads import safe_name
from affectvlm import datasets
from affectvlm.errors import ConfigError
from affectvlm.render import parse_views
from affectvlm.trainconfig import (TrainConfig, build_parser, check_out_apart, load_yaml, parse_loss_weights,
                                   resolve_config)

if TYPE_CHECKING:
    from affectvlm.app.jobs import Job, JobStore

FORM_OPTIONS = ("data", "out", "layout", "resume")  # set by the page's own fields, refused as extras
FIELD_OPTIONS = ("model", "epochs", "batch_size", "lr", "losses", "views", "max_steps")  # the form's other fields
MAX_CONFIG_BYTES = 1 << 20
LOSS_TERMS = {"mc": "multiview contrastive", "mt": "multiview triplet", "clip": "image–text InfoNCE",
              "ce": "cross-entropy (zero-shot logits)"}
DEFAULT_LOSS_WEIGHTS = {k: parse_loss_weights(TrainConfig.losses)[k] for k in LOSS_TERMS}


@dataclass(frozen=True)
class TrainForm:
    """The Train form's fields as the user left them (defaults: the trainer's)."""

    data: str
    layout: str
    model: str = TrainConfig.model
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    losses: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    views: str = ""
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = ""
    max_steps: int = 0
    out: str = ""
    name: str = "run"
    extra: str = ""


def running_twin(form: TrainForm, last: tuple[str, int] | None, store: "JobStore") -> "Job | None":
    """The running job this session last launched from the very same ``form`` (``last``: its repr and job id),
    when the form names no output folder (a named one is locked by its job already); else None."""
    if form.out.strip() or not last or last[0] != repr(form):
        return None
    try:
        job = store.get(last[1])
    except ConfigError:  # a job row that is gone: nothing to guard
        return None
    return job if job.active else None


def summarise_dataset(root: str, layout: str, roots: Sequence[Path] | None = None) -> dict:
    """``affectvlm.datasets.summarise`` of a dataset root, plus how many files were ``skipped``; with ``roots``, every
    scan it names must lie inside them (a manifest's rows, a linked class folder)."""
    ds = datasets.load_dataset(root, layout, within=roots)
    summary = datasets.summarise(ds.samples)
    return {**summary, "warnings": [*summary.get("warnings", []), *ds.notes], "skipped": len(ds.skipped)}


def check_dataset(root_text: str, layout: str, roots: Sequence[Path],
                  summarise: Callable[[str, str, tuple[Path, ...]], dict] = summarise_dataset) -> tuple[Path, dict]:
    """The dataset root resolved inside ``roots`` and its summary (every scan inside ``roots`` too); ``ConfigError``
    with fewer than two classes."""
    root = resolve_in_roots(root_text, roots, what="dataset root", must_exist=True)
    summary = summarise(str(root), layout, tuple(roots))
    if len(summary.get("per_class", {})) < 2:
        raise ConfigError(f"dataset root: {root_text} has fewer than two classes for layout {layout!r}")
    return root, summary


def build_launch(form: TrainForm, settings: AppSettings,
                 summarise: Callable[[str, str, tuple[Path, ...]], dict] = summarise_dataset) -> TrainLaunch:
    """The checked :class:`TrainLaunch` for ``form`` (``ConfigError`` naming the field otherwise)."""
    root, _ = check_dataset(form.data, form.layout, settings.workspace_roots, summarise)
    if not any(w > 0 for w in form.losses.values()):
        raise ConfigError("losses: give at least one loss a weight above 0")
    if form.out.strip():
        out = resolve_in_roots(form.out, settings.workspace_roots, what="output folder", must_be_dir=True)
        check_out_apart(out, root, what="output folder")
    else:
        out = unique_run_dir(settings.workspace / "runs", form.name or "run")
    views = form.views.strip()
    if views:
        try:
            parse_views(views)
        except ValueError as e:
            raise ConfigError(f"views: {e}") from None
    args = train_command_args(data=root, layout=form.layout, out=out, roots=settings.workspace_roots,
                              cache_dir=settings.workspace / ".render-cache", model=form.model.strip() or None,
                              epochs=form.epochs, batch_size=form.batch_size, lr=form.lr,
                              losses=",".join(f"{k}={w:g}" for k, w in form.losses.items()),
                              views=views or None, max_steps=int(form.max_steps) or None, extra_text=form.extra)
    launch = TrainLaunch(run_dir=out, train_args=args, nproc_per_node=int(form.nproc_per_node),
                         nnodes=int(form.nnodes), rdzv_endpoint=form.rdzv_endpoint.strip(),
                         rdzv_id=safe_name(out.name), name=form.name or out.name)
    launch.validate()
    return launch


def _trainer_parser() -> argparse.ArgumentParser:
    """The trainer's own parser (no abbreviations), raising ``ConfigError`` instead of exiting."""
    p = build_parser()
    p.allow_abbrev = False

    def _error(message: str):
        raise ConfigError(f"extra trainer options: {message}")

    p.error = _error  # type: ignore[method-assign]
    p.exit = lambda status=0, message=None: _error((message or "").strip() or "not accepted here")  # type: ignore
    return p


def _option_tokens(parser: argparse.ArgumentParser, ns: dict[str, Any]) -> list[str]:
    """``--option=value`` tokens that make ``parser`` produce ``ns`` again."""
    out: list[str] = []
    for dest, value in ns.items():
        acts = [a for a in parser._actions if a.dest == dest and a.option_strings]
        flag = next((a for a in acts if a.nargs == 0 and a.const == value), None)
        if flag is not None:
            out.append(flag.option_strings[-1])
            continue
        act = next((a for a in acts if a.nargs != 0), None)
        if act is None:
            raise ConfigError(f"extra trainer options: cannot pass {dest}={value!r}")
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        out.append(f"{act.option_strings[-1]}={text}")
    return out


def _config_file(ns: dict[str, Any], roots: Sequence[Path]) -> Path | None:
    """The extras' ``--config`` file, inside ``roots`` and small; every path it names must lie inside them
    too, even one the form's fields override."""
    if "config" not in ns:
        return None
    path = resolve_in_roots(ns.pop("config"), roots, what="--config", must_exist=True)
    if not path.is_file():
        raise ConfigError(f"--config: {path.name} is not a file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config: {path.name} is over {MAX_CONFIG_BYTES >> 10} KB")
    values = load_yaml(path)
    for key in ("data", "out", "cache_dir"):
        if values.get(key):
            resolve_in_roots(str(values[key]), roots, what=f"--config {path.name}: {key}")
    if values.get("model"):
        check_model_spec(str(values["model"]), roots, what=f"--config {path.name}: model")
    return path


def _check_fields_agree(cfg: TrainConfig, from_file: TrainConfig, path: Path) -> None:
    """A ``--config`` file that sets a value the form's field also sets, to something else: the field would win
    without a word (options beat the file, as in the CLI), so the user is asked to choose."""
    values = load_yaml(path)
    for key in FIELD_OPTIONS:
        if key in values and getattr(from_file, key) != getattr(cfg, key):
            raise ConfigError(f"--config {path.name} sets {key} to {getattr(from_file, key)!r} but the form's field "
                              f"says {getattr(cfg, key)!r}, which would win; set the field to the file's value or "
                              f"take {key} out of the file")


def train_config(*, data: Path, layout: str, out: Path, roots: Sequence[Path], cache_dir: Path,
                 model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, losses: str | None = None, views: str | None = None,
                 max_steps: int | None = None, extra_text: str = "") -> TrainConfig:
    """The trainer's validated ``TrainConfig`` for the Train form, confined to the workspace ``roots``.

    Extra options are parsed with the trainer's own parser (no abbreviations); the configuration is resolved
    as the trainer resolves it (defaults < ``--config`` file < options), and every path in the result
    (``data``, ``out``, ``cache_dir``, a ``model`` path) must lie (symlinks and ``..`` resolved) inside
    ``roots``; the result holds those resolved paths. ``ConfigError`` (one line) otherwise."""
    if "\x00" in extra_text:
        raise ConfigError("extra trainer options: contain a NUL byte")
    try:
        tokens = shlex.split(extra_text)
    except ValueError as e:
        raise ConfigError(f"extra trainer options: {e}") from None
    if any(t in ("-h", "--help") for t in tokens):
        raise ConfigError("extra trainer options: --help is not an option here (see `affectvlm train --help`)")
    parser = _trainer_parser()
    ns = vars(parser.parse_args(tokens))
    taken = [k for k in FORM_OPTIONS if k in ns]
    if taken:
        raise ConfigError(f"extra trainer options: --{taken[0].replace('_', '-')} is not allowed; set the dataset, "
                          "layout and output folder with the fields above")
    doubled = [k for k in FIELD_OPTIONS if k in ns]
    if doubled:  # it would silently win over the field the user sees
        raise ConfigError(f"extra trainer options: --{doubled[0].replace('_', '-')} has its own field above; set it "
                          "there")
    config_path = _config_file(ns, roots)
    args = ["--data", str(resolve_in_roots(data, roots, what="dataset root", must_exist=True)), "--layout", layout,
            "--out", str(resolve_in_roots(out, roots, what="output folder", must_be_dir=True))]
    for flag, value in (("--model", model), ("--epochs", epochs), ("--batch-size", batch_size), ("--lr", lr),
                        ("--losses", losses), ("--views", views), ("--max-steps", max_steps)):
        if value not in (None, ""):
            args.append(f"{flag}={value}")  # one token: a list may start with "-" ("-30,0,30")
    args += ["--no-progress", *_option_tokens(parser, ns)] + (["--config", str(config_path)] if config_path else [])
    try:
        cfg = resolve_config(args)
        if config_path:
            _check_fields_agree(cfg, resolve_config(args[:6] + ["--config", str(config_path)]), config_path)
    except SystemExit:
        raise ConfigError("extra trainer options: not accepted by the trainer") from None
    if cfg.dry_run:
        raise ConfigError("extra trainer options: --dry-run trains nothing; run `affectvlm train ... --dry-run` in a "
                          "terminal to see a run's plan")
    return replace(cfg, data=str(resolve_in_roots(cfg.data, roots, what="dataset root", must_exist=True)),
                   out=str(resolve_in_roots(cfg.out, roots, what="output folder", must_be_dir=True)),
                   cache_dir=str(resolve_in_roots(cfg.cache_dir or cache_dir, roots, what="--cache-dir",
                                                  must_be_dir=True)),
                   model=check_model_spec(cfg.model, roots))


def trainer_argv(cfg: TrainConfig) -> list[str]:
    """The trainer's arguments for ``cfg``: the form's dataset, layout and output folder first, then every
    option that differs from the trainer's default (``TrainConfig.to_argv``)."""
    rest = replace(cfg, data="", out="", layout=TrainConfig.layout, model=TrainConfig.model, cache_dir=None).to_argv()
    # every path the app confined is on the command line, even at its default: a resumed trainer takes what the
    # command leaves out from the run folder's config.yaml, which anyone who can write the folder can change
    return ["--data", cfg.data, "--layout", cfg.layout, "--out", cfg.out, f"--model={cfg.model}",
            *([f"--cache-dir={cfg.cache_dir}"] if cfg.cache_dir else []), *rest]


def train_command_args(**form: Any) -> list[str]:
    """:func:`trainer_argv` of :func:`train_config` (same keywords)."""
    return trainer_argv(train_config(**form))
