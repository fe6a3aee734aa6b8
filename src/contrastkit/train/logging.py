"""Run logs: per-step and per-epoch JSON lines, TensorBoard events when installed.

``steps.jsonl`` gets one line per optimizer step (``step``, ``epoch``, ``loss``, ``lr`` and, with
gradient clipping, ``grad_norm``), ``epochs.jsonl`` one line per epoch (``loss``, ``lr``, time,
throughput and the monitored metrics). With the ``tensorboard`` package installed, every numeric
value of both files is also a TensorBoard scalar under ``<run_dir>/tensorboard``: ``step/<key>``
at the global step and ``epoch/<key>`` at the epoch (``step/epoch`` is the epoch of each step,
``epoch/step`` the global step at each epoch's end). Every line is flushed as it is written, and
:meth:`RunLogger.offsets` gives the byte length of both files, which a checkpoint records: on
resume the files are cut back to those lengths, dropping what a killed run wrote after its last
checkpoint (a partly written line included). Only rank 0 logs; the other ranks get a logger that
writes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from contrastkit.runs.directory import EPOCH_LOG, STEP_LOG

__all__ = ["EPOCH_LOG", "STEP_LOG", "RunLogger", "truncate_logs"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_logs(run_dir: Path, offsets: Mapping[str, int]) -> None:
    """Cut each log file back to the byte length recorded in a checkpoint (create it if missing)."""
    for name in (STEP_LOG, EPOCH_LOG):
        path = run_dir / name
        size = int(offsets.get(name, 0))
        if not path.exists():
            path.write_bytes(b"")
        with path.open("r+b") as fh:
            fh.truncate(min(size, path.stat().st_size))


class _TensorBoard:
    """A SummaryWriter when the ``tensorboard`` package is installed; otherwise nothing."""

    def __init__(self, log_dir: Path, purge_step: int | None) -> None:
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, record: Mapping[str, Any], step: int) -> None:
        """Every number of ``record`` but its own axis (``prefix``) as ``<prefix>/<key>``."""
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != prefix:
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class RunLogger:
    """JSON-lines logs of one run (and TensorBoard events when available), written by rank 0.

    Args:
        run_dir: the run directory.
        enabled: False on ranks other than 0 (nothing is written).
        tensorboard: also write TensorBoard events to ``<run_dir>/tensorboard`` if installed.
        resume_step: the global step a resumed run continues from (TensorBoard events after it are
            purged); None for a fresh run.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self._files: dict[str, IO[bytes]] = {}
        self._tb: _TensorBoard | None = None
        if not enabled:
            return
        for name in (STEP_LOG, EPOCH_LOG):
            self._files[name] = (run_dir / name).open("ab")
        if tensorboard:
            self._tb = _TensorBoard(run_dir / "tensorboard", resume_step)

    def _write(self, name: str, record: Mapping[str, Any]) -> None:
        fh = self._files[name]
        fh.write((json.dumps({k: _clean(v) for k, v in record.items()}) + "\n").encode())
        fh.flush()

    def step(self, record: Mapping[str, Any]) -> None:
        """Log one optimizer step."""
        if not self.enabled:
            return
        self._write(STEP_LOG, record)
        if self._tb is not None:
            self._tb.scalars("step", record, int(record["step"]))

    def epoch(self, record: Mapping[str, Any]) -> None:
        """Log one epoch."""
        if not self.enabled:
            return
        self._write(EPOCH_LOG, record)
        if self._tb is not None:
            self._tb.scalars("epoch", record, int(record["epoch"]))

    def offsets(self) -> dict[str, int]:
        """Byte length of each log file (what a checkpoint records)."""
        if not self.enabled:
            return {}
        return {name: fh.tell() for name, fh in self._files.items()}

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        if self._tb is not None:
            self._tb.close()
