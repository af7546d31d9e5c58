"""Where training scalars go besides ``metrics.jsonl``: TensorBoard and Weights & Biases (``--report-to``).

Both are optional and imported only when asked for. Weights & Biases runs offline without a network when
``WANDB_MODE=offline`` is set (its files then stay in ``RUN_DIR/wandb`` for a later ``wandb sync``).
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

from affectvlm.errors import ConfigError
from affectvlm.fileio import atomic_write_text
from affectvlm.runfolder import RunFolder

log = logging.getLogger("affectvlm.train")
class Reporter:
    """Scalars to the chosen loggers; rank 0 only (other ranks get an empty reporter)."""

    def __init__(self, run_dir: str | os.PathLike, names: Sequence[str], *, config: dict[str, Any] | None = None):
        self.tb = None
        self.wandb_run = None
        folder = RunFolder(run_dir)
        if "tensorboard" in names:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(folder.tensorboard))
            except ImportError:
                log.warning("tensorboard is not installed; --report-to tensorboard ignored")
        if "wandb" in names:
            try:
                import wandb
            except ImportError:
                raise ConfigError("--report-to wandb needs the wandb package (pip install wandb); "
                                  "set WANDB_MODE=offline to log without a network") from None
            folder.wandb.mkdir(parents=True, exist_ok=True)
            # one W&B run per run folder: a resumed or requeued trainer continues the same W&B run
            id_file = folder.wandb / "affectvlm-run-id"
            run_id = id_file.read_text().strip() if id_file.is_file() else ""
            if not run_id:
                run_id = uuid.uuid4().hex[:12]
                atomic_write_text(id_file, run_id + "\n")
            self.wandb_run = wandb.init(project=os.environ.get("WANDB_PROJECT", "affectvlm"),
                                        name=Path(run_dir).name, dir=str(folder.root), config=config or {},
                                        id=run_id, resume="allow")

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Every finite number of ``values`` as ``prefix/key`` at ``step``."""
        nums = {f"{prefix}/{k}": float(v) for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not nums:
            return
        if self.tb is not None:
            for k, v in nums.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb_run is not None:
            self.wandb_run.log(nums, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
