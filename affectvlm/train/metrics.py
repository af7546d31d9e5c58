"""Classification metrics (accuracy, macro-F1, per-class accuracy, confusion matrix) and their PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Confusion matrix rows = true class, columns = predicted class. ``macro_f1`` averages over the classes that
    are true or predicted at least once (scikit-learn's default labels), so predicting a class that is absent
    costs as it does there."""
    c = len(classes)
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    cm = np.zeros((c, c), dtype=int)
    if len(t):
        np.add.at(cm, (t, p), 1)
    support = cm.sum(1)
    tp = np.diag(cm)
    pred_n = cm.sum(0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    precision = np.divide(tp, pred_n, out=np.zeros(c), where=pred_n > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(c), where=(precision + recall) > 0)
    present = support > 0
    return {
        "n": int(len(t)),
        "accuracy": float(tp.sum() / max(len(t), 1)),
        "macro_f1": float(f1[present | (pred_n > 0)].mean()) if len(t) else 0.0,
        "per_class_accuracy": {classes[i]: float(recall[i]) for i in range(c) if present[i]},
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def save_confusion_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike,
                       title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black",
                    fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
