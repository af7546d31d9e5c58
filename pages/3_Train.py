"""Train page: check a dataset, launch a torchrun training job, watch it, stop or resume it."""
from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path

import streamlit as st

from affectvlm import jobs as J
from affectvlm.appsupport import (eta_seconds, fmt_duration, metrics_figures, resolve_in_roots, safe_name,
                                  train_command_args, unique_run_dir)
from affectvlm.errors import AffectVLMError, ConfigError
from pages import job_store, settings, show_error, sidebar, use_run_callback

st.set_page_config(page_title="AffectVLM · Train", page_icon=":material/sentiment_satisfied:", layout="wide")
S = settings()
store = job_store()
ss = st.session_state
sidebar()

st.title("Train a model")
st.caption("Workspace roots (all paths below must lie inside one of them): "
           + ", ".join(f"`{r}`" for r in S.workspace_roots))

LOSS_TERMS = {"mc": "multiview contrastive", "mt": "multiview triplet", "clip": "image–text InfoNCE",
              "ce": "cross-entropy (zero-shot logits)"}


@st.cache_data(ttl=30, show_spinner="Reading the dataset…")
def _summarise(root: str, layout: str) -> dict:
    from affectvlm.datasets import load_dataset, summarise

    ds = load_dataset(root, layout)
    out = summarise(ds.samples)
    out["skipped"] = len(getattr(ds, "skipped", []) or [])
    return out


def _layouts() -> tuple[str, ...]:
    try:
        from affectvlm.datasets import LAYOUTS

        return tuple(LAYOUTS)
    except ImportError:
        return ("bu3dfe", "bu4dfe", "bp4d", "bosphorus", "folders", "manifest")


def check_dataset(root_text: str, layout: str) -> tuple[Path, dict]:
    root = resolve_in_roots(root_text, S.workspace_roots, what="dataset root", must_exist=True)
    summary = _summarise(str(root), layout)
    if len(summary.get("per_class", {})) < 2:
        raise ConfigError(f"dataset root: {root_text} has fewer than two classes for layout {layout!r}")
    return root, summary


def show_summary(summary: dict) -> None:
    c1, c2, c3 = st.columns(3)
    c1.metric("Samples", summary["n_samples"])
    c2.metric("Subjects", summary["n_subjects"])
    c3.metric("Classes", len(summary["per_class"]))
    import pandas as pd

    per_class = pd.DataFrame({"samples": summary["per_class"],
                              "subjects": summary.get("subjects_per_class", {})}).fillna(0).astype(int)
    st.dataframe(per_class, width="stretch")
    if summary.get("per_intensity"):
        st.caption("Per intensity: " + ", ".join(f"{k}: {v}" for k, v in summary["per_intensity"].items()))
    for w in summary.get("warnings", []):
        st.warning(w)


# ------------------------------------------------------------------------------------------- form
with st.container(border=True):
    st.subheader("New run")
    c1, c2 = st.columns([2, 1])
    data_root = c1.text_input("Dataset root (relative paths are inside the first workspace root)", key="tr_data",
                              placeholder="datasets/bu3dfe")
    layout = c2.selectbox("Layout", _layouts(), key="tr_layout")
    if st.button("Check dataset", key="tr_check"):
        try:
            _, summary = check_dataset(data_root, layout)
            ss["tr_summary"] = (data_root, layout, summary)
        except AffectVLMError as e:
            ss.pop("tr_summary", None)
            show_error(e)
    if ss.get("tr_summary") and ss["tr_summary"][:2] == (data_root, layout):
        show_summary(ss["tr_summary"][2])

    c1, c2, c3, c4 = st.columns(4)
    model_spec = c1.text_input("Start from model", key="tr_model", value="default",
                               help="`default` (the embedded model: fine-tune it), open_clip NAME (from scratch), "
                                    "NAME:TAG, hf-hub:…, or a checkpoint folder")
    epochs = c2.number_input("Epochs", 1, 10_000, 12, key="tr_epochs")
    batch = c3.number_input("Batch size (global)", 1, 65_536, 16, key="tr_batch")
    lr = c4.number_input("Learning rate", 1e-7, 1.0, 5e-4, format="%.1e", key="tr_lr")
    c1, c2 = st.columns([3, 1])
    weights = {}
    with c1:
        st.markdown("**Losses** (weight 0 = off)")
        lc = st.columns(4)
        defaults = {"mc": 0.0, "mt": 0.0, "clip": 1.0, "ce": 1.0}  # the trainer's defaults (they learn)
        for col, (k, label) in zip(lc, LOSS_TERMS.items()):
            weights[k] = col.number_input(label, 0.0, 100.0, defaults[k], 0.1, key=f"tr_loss_{k}")
    views = c2.text_input("Views", key="tr_views", value="0,-30,30")
    c1, c2, c3, c4 = st.columns(4)
    nproc = c1.number_input("Processes per node", 1, 64, 1, key="tr_nproc")
    nnodes = c2.number_input("Nodes", 1, 1024, 1, key="tr_nnodes")
    rdzv = c3.text_input("Rendezvous endpoint (HOST:PORT)", key="tr_rdzv", disabled=nnodes == 1,
                         placeholder="node0.cluster:29400")
    max_steps = c4.number_input("Max steps (0 = no limit)", 0, 10_000_000, 0, key="tr_max_steps")
    c1, c2, c3 = st.columns([2, 1, 2])
    out_text = c1.text_input("Output folder", key="tr_out", placeholder="runs/<name> (default)")
    run_name = c2.text_input("Run name", key="tr_name", value="run")
    extra_text = c3.text_input("Extra trainer options", key="tr_extra", placeholder="--folds 5 --freeze text",
                               help="Any other `affectvlm train` option, e.g. --folds, --freeze, --intensities 3,4")

    def build_launch() -> tuple[J.TrainLaunch, dict]:
        root, summary = check_dataset(data_root, layout)
        if not any(w > 0 for w in weights.values()):
            raise ConfigError("losses: give at least one loss a weight above 0")
        if out_text.strip():
            out = resolve_in_roots(out_text, S.workspace_roots, what="output folder", must_be_dir=True)
        else:
            out = unique_run_dir(S.workspace / "runs", run_name or "run")
        losses = ",".join(f"{k}={w:g}" for k, w in weights.items())
        if views.strip():
            from affectvlm.render import parse_views

            try:
                parse_views(views)
            except ValueError as e:
                raise ConfigError(f"views: {e}") from None
        # every path the trainer will use is checked against the roots, the extras with its own parser
        args = train_command_args(data=root, layout=layout, out=out, roots=S.workspace_roots,
                                  cache_dir=S.workspace / ".render-cache", model=model_spec.strip() or None,
                                  epochs=epochs, batch_size=batch, lr=lr, losses=losses,
                                  views=views.strip() or None, max_steps=int(max_steps) or None,
                                  extra_text=extra_text)
        cfg = J.TrainLaunch(run_dir=out, train_args=args, nproc_per_node=int(nproc), nnodes=int(nnodes),
                            rdzv_endpoint=rdzv.strip(), rdzv_id=safe_name(out.name), name=run_name or out.name)
        J.torchrun_command(cfg)  # validates nodes / endpoint
        return cfg, summary

    if nnodes > 1:
        st.markdown(f"**Several nodes.** This page starts this node; run the command below on each of the "
                    f"other {int(nnodes) - 1} node(s) (same paths on every node):")
        try:
            st.code(J.other_node_command(build_launch()[0]), language="bash")
        except AffectVLMError as e:
            st.warning(f"Command not ready: {e}")
        except ValueError as e:
            st.warning(f"Command not ready: views: {e}")

    if st.button("Launch training", type="primary", key="tr_launch"):
        try:
            cfg, _ = build_launch()
            job = store.launch(cfg)
            ss["tr_job"] = job.id
            st.success(f"Started job #{job.id} in `{job.run_dir}`")
        except AffectVLMError as e:
            show_error(e)
        except ValueError as e:  # parse_views
            show_error(ConfigError(f"views: {e}"))


# ------------------------------------------------------------------------------------------- jobs
st.subheader("Jobs")
all_jobs = store.list()
if not all_jobs:
    st.info("No training job yet.")
    st.stop()

# no status in the label: the list is not redrawn by the job view's refresh (the metric shows it)
labels = {j.id: f"#{j.id} {j.name}" for j in all_jobs}
ids = list(labels)
if ss.get("tr_job") not in ids:
    ss["tr_job"] = ids[0]
job_id = st.selectbox("Job", ids, format_func=labels.get, key="tr_job")


def _stop_async(jid: int) -> None:
    threading.Thread(target=store.stop, args=(jid,), kwargs={"grace": 10.0}, daemon=True).start()
    ss[f"stopping_{jid}"] = time.time()


def _resume(jid: int) -> None:
    try:
        store.resume(jid)
    except AffectVLMError as e:
        ss["tr_job_error"] = str(e)


@st.fragment(run_every=S.job_refresh_s)
def job_view(jid: int) -> None:
    job = store.get(jid)
    records = J.read_metrics(job.run_dir)
    st_file = J.read_status_file(job.run_dir)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", job.status)
    c2.metric("Elapsed", fmt_duration(job.elapsed))
    c3.metric("ETA", fmt_duration(eta_seconds(records, st_file)) if job.active else "–")
    last_epoch = next((r.get("epoch") for r in reversed(records) if "epoch" in r), None)
    c4.metric("Epoch", "–" if last_epoch is None else str(last_epoch))
    if job.message:
        st.caption(job.message)
    if err := ss.pop("tr_job_error", None):
        st.error(err)
    b1, b2, b3, _ = st.columns([1, 1, 2, 2])
    stopping = job.active and ss.get(f"stopping_{jid}")
    b1.button("Stop", key=f"stop_{jid}", disabled=not job.active or bool(stopping), on_click=_stop_async, args=(jid,))
    b2.button("Resume", key=f"resume_{jid}", disabled=job.active, on_click=_resume, args=(jid,))
    cb, args = use_run_callback(str(job.best_dir))
    b3.button("Use this model for analysis", key=f"use_{jid}", disabled=not job.has_model, on_click=cb, args=args)
    if stopping:
        st.caption("Stopping… (SIGTERM sent to the process group; SIGKILL after 10 s)")
    figs = metrics_figures(records)
    if figs:
        cols = st.columns(2)
        for i, (name, fig) in enumerate(figs.items()):
            cols[i % 2].plotly_chart(fig, width="stretch", key=f"fig_{jid}_{name}")
    else:
        st.caption("No metrics yet (RUN_DIR/metrics.jsonl).")
    with st.expander("Log (last lines)", expanded=job.status == "failed"):
        st.code(J.tail(job.run_dir / "stdout.log", 40) or "(empty)", language="text")
    cfg = J.TrainLaunch.from_dict(job.config)
    with st.expander("Command"):
        st.code(shlex.join(job.command) if job.command else "", language="bash")
        if cfg.nnodes > 1:
            st.markdown(f"Run this on each of the other {cfg.nnodes - 1} node(s):")
            st.code(J.other_node_command(cfg), language="bash")
    if job.active is False and ss.get(f"stopping_{jid}"):
        ss.pop(f"stopping_{jid}", None)


job_view(job_id)
