"""One answer to "which torch device?" for the CLI, the app, the trainer and ``load_model``.

``auto`` is the first CUDA device when CUDA is present, else the CPU (Apple's ``mps`` only when asked
for: not every kernel we use runs there).
"""
from __future__ import annotations

import torch

from affectvlm.errors import ConfigError

DEVICE_HELP = "auto (CUDA when present, else cpu), cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None = "auto", *, local_rank: int | None = None) -> torch.device:
    """``"auto"`` / ``None`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` / ``"mps"`` -> a usable torch.device.

    ``local_rank`` (a torchrun/SLURM process's GPU) picks the index when the answer is CUDA without one.
    A device that is not there is a ``ConfigError`` with one readable line.
    """
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            dev = torch.device(text)
        except (RuntimeError, TypeError, ValueError) as e:
            raise ConfigError(f"bad device {device!r} ({e}); {DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here (use --device cpu)")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {device!r}: there is no CUDA device {dev.index} here "
                              f"({count} visible: cuda:0..cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {device!r} requested but Apple MPS is not available here (use --device cpu)")
    elif dev.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; {DEVICE_HELP}")
    return dev
