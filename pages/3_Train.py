"""Train page: check a dataset, launch a torchrun training job, watch it, stop or resume it."""
from __future__ import annotations

import shlex
import threading
import time

import streamlit as st

from affectvlm.app.figures import metrics_figures
from affectvlm.app.launch import other_node_command
from affectvlm.app.runview import epoch_text, eta_seconds, fmt_duration, tail
from affectvlm.app.trainform import (DEFAULT_LOSS_WEIGHTS, LOSS_TERMS, TrainForm, build_launch, check_dataset,
                                     running_twin, summarise_dataset)
from affectvlm.app.widgets import job_store, page_header, settings, show_dataset_summary, show_error, use_run
from affectvlm.datasets import LAYOUT_CHOICES
from affectvlm.errors import AffectVLMError
from affectvlm.runfolder import read_metrics, read_status

page_header("Train a model", "Train")
S = settings()
store = job_store()
state = st.session_state
st.caption("Workspace roots (all paths below must lie inside one of them): "
           + ", ".join(f"`{r}`" for r in S.workspace_roots))
summarise = st.cache_data(ttl=30, show_spinner="Reading the dataset…")(summarise_dataset)


def form() -> TrainForm:
    c1, c2 = st.columns([2, 1])
    data = c1.text_input("Dataset root (relative paths are inside the first workspace root)", key="tr_data",
                         placeholder="datasets/bu3dfe")
    layout = c2.selectbox("Layout", LAYOUT_CHOICES, key="tr_layout",
                          help="auto: from the data's names (BU-3DFE, BU-4DFE, BP4D, Bosphorus, manifest.csv, "
                               "emotion folders)")
    if st.button("Check dataset", key="tr_check"):
        try:
            state["tr_summary"] = (data, layout, check_dataset(data, layout, S.workspace_roots, summarise)[1])
        except AffectVLMError as e:
            state.pop("tr_summary", None)
            show_error(e)
    if state.get("tr_summary") and state["tr_summary"][:2] == (data, layout):
        show_dataset_summary(state["tr_summary"][2])
    c1, c2, c3, c4 = st.columns(4)
    model = c1.text_input("Start from model", key="tr_model", value=TrainForm.model,
                          help="`default` (the embedded model: fine-tune it), open_clip NAME (from scratch), "
                               "NAME:TAG, hf-hub:…, or a checkpoint folder")
    epochs = c2.number_input("Epochs", 1, 10_000, TrainForm.epochs, key="tr_epochs")
    batch = c3.number_input("Batch size (global)", 1, 65_536, TrainForm.batch_size, key="tr_batch")
    lr = c4.number_input("Learning rate", 1e-7, 1.0, TrainForm.lr, format="%.1e", key="tr_lr")
    c1, c2 = st.columns([3, 1])
    with c1:
        st.markdown("**Losses** (weight 0 = off)")
        losses = {k: col.number_input(label, 0.0, 100.0, DEFAULT_LOSS_WEIGHTS[k], 0.1, key=f"tr_loss_{k}")
                  for col, (k, label) in zip(st.columns(4), LOSS_TERMS.items())}
    views = c2.text_input("Views", key="tr_views", placeholder="the model's own",
                          help="yaw or yaw:pitch, degrees, e.g. 0,-30,30; empty: the starting model's views")
    c1, c2, c3, c4 = st.columns(4)
    nproc = c1.number_input("Processes per node", 1, 64, 1, key="tr_nproc")
    nnodes = c2.number_input("Nodes", 1, 1024, 1, key="tr_nnodes")
    rdzv = c3.text_input("Rendezvous endpoint (HOST:PORT)", key="tr_rdzv", disabled=nnodes == 1,
                         placeholder="node0.cluster:29400")
    max_steps = c4.number_input("Max steps (0 = no limit)", 0, 10_000_000, 0, key="tr_max_steps")
    c1, c2, c3 = st.columns([2, 1, 2])
    out = c1.text_input("Output folder", key="tr_out", placeholder="runs/<name> (default)")
    name = c2.text_input("Run name", key="tr_name", value="run")
    extra = c3.text_input("Extra trainer options", key="tr_extra", placeholder="--folds 5 --freeze text",
                          help="Any other `affectvlm train` option, e.g. --folds, --freeze, --intensities 3,4. "
                               "A --config file (inside the workspace) may set what the fields above set only "
                               "where it agrees with them")
    return TrainForm(data=data, layout=layout, model=model, epochs=int(epochs), batch_size=int(batch), lr=lr,
                     losses=losses, views=views, nproc_per_node=int(nproc), nnodes=int(nnodes), rdzv_endpoint=rdzv,
                     max_steps=int(max_steps), out=out, name=name, extra=extra)


with st.container(border=True):
    st.subheader("New run")
    fields = form()
    if fields.nnodes > 1:
        st.markdown(f"**Several nodes.** This page starts this node; run the command below on each of the "
                    f"other {fields.nnodes - 1} node(s) (same paths on every node):")
        try:
            st.code(other_node_command(build_launch(fields, S, summarise)), language="bash")
        except AffectVLMError as e:
            st.warning(f"Command not ready: {e}")
    if st.button("Launch training", type="primary", key="tr_launch"):
        # a second click on the same form (no output folder named) would start the same training again
        twin = running_twin(fields, state.get("tr_last_launch"), store)
        if twin is not None:
            st.warning(f"Job #{twin.id} was launched from these same settings and is still running "
                       f"(`{twin.run_dir}`): stop it first, or change a setting (the run name) to start another.")
        else:
            try:
                job = store.launch(build_launch(fields, S, summarise))
                state["tr_job"] = job.id
                state["tr_last_launch"] = (repr(fields), job.id)
                st.success(f"Started job #{job.id} in `{job.run_dir}`")
            except AffectVLMError as e:
                show_error(e)

st.subheader("Jobs")
all_jobs = store.list()
if not all_jobs:
    st.info("No training job yet.")
    st.stop()
labels = {j.id: f"#{j.id} {j.name}" for j in all_jobs}  # no status: the list is not redrawn by the job view
if state.get("tr_job") not in labels:
    state["tr_job"] = all_jobs[0].id
job_id = st.selectbox("Job", list(labels), format_func=labels.get, key="tr_job")


def stop_async(jid: int) -> None:
    threading.Thread(target=store.stop, args=(jid,), kwargs={"grace": 10.0}, daemon=True).start()
    state[f"stopping_{jid}"] = time.time()


def resume(jid: int) -> None:
    try:
        store.resume(jid)
    except AffectVLMError as e:
        state["tr_job_error"] = str(e)


@st.fragment(run_every=S.job_refresh_s)
def job_view(jid: int) -> None:
    job = store.get(jid)
    records = read_metrics(job.run_dir)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Status", job.status)
    c2.metric("Elapsed", fmt_duration(job.elapsed))
    status = read_status(job.run_dir)
    c3.metric("ETA", fmt_duration(eta_seconds(records, status)) if job.active else "–")
    c4.metric("Epoch", epoch_text(records, status))
    if job.message:
        st.caption(job.message)
    if err := state.pop("tr_job_error", None):
        st.error(err)
    b1, b2, b3, _ = st.columns([1, 1, 2, 2])
    stopping = job.active and state.get(f"stopping_{jid}")
    b1.button("Stop", key=f"stop_{jid}", disabled=not job.active or bool(stopping), on_click=stop_async, args=(jid,))
    b2.button("Resume", key=f"resume_{jid}", disabled=job.active, on_click=resume, args=(jid,))
    b3.button("Use this model for analysis", key=f"use_{jid}", disabled=not job.has_model, on_click=use_run,
              args=(str(job.best_dir),))
    if stopping:
        st.caption("Stopping… (SIGTERM sent to the process group; SIGKILL after 10 s)")
    if figs := metrics_figures(records):
        cols = st.columns(2)
        for i, (name, fig) in enumerate(figs.items()):
            cols[i % 2].plotly_chart(fig, width="stretch", key=f"fig_{jid}_{name}")
    else:
        st.caption("No metrics yet (RUN_DIR/metrics.jsonl).")
    with st.expander("Log (last lines)", expanded=job.status == "failed"):
        st.code(tail(job.folder.stdout_log, 40) or "(empty)", language="text")
    with st.expander("Command"):
        st.code(shlex.join(job.command), language="bash")
        if job.launch.nnodes > 1:
            st.markdown(f"Run this on each of the other {job.launch.nnodes - 1} node(s):")
            st.code(other_node_command(job.launch), language="bash")
    if not job.active:
        state.pop(f"stopping_{jid}", None)


job_view(job_id)
