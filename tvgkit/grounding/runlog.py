"""A run's log: ``log.jsonl`` and TensorBoard events on disk, and the history that ``metrics.json`` is made from."""

from __future__ import annotations

import json
import os
from pathlib import Path


class RunLog:
    """``log.jsonl`` and TensorBoard events (rank 0 writes them); ``history`` (every rank keeps it) for the metrics.

    On resume the log is cut back to its length at the checkpoint, so lines written after it by a run that then
    crashed are not repeated; TensorBoard hides those steps itself (``purge_step``).
    """

    def __init__(self, run_dir: Path, write: bool, state: dict | None) -> None:
        self.history: list[dict] = list(state["history"]) if state else []
        self.path = run_dir / "log.jsonl"
        self.write = write
        if write:
            from torch.utils.tensorboard import SummaryWriter

            if state:
                os.truncate(self.path, state["log_bytes"])
            self.file = self.path.open("a")
            self.writer = SummaryWriter(str(run_dir), purge_step=state["step"] + 1 if state else None)

    def record(self, entry: dict) -> None:
        """A history entry: kept, written to log.jsonl and, for numbers, to TensorBoard."""
        self.history.append(entry)
        self.note(entry)
        if self.write:
            for key, value in entry.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{entry.get('split', 'train')}/{key}", value, entry["step"])

    def note(self, entry: dict) -> None:
        """A line in log.jsonl only (interruptions and resumptions are events, not history)."""
        if self.write:
            self.file.write(json.dumps(entry) + "\n")
            self.file.flush()

    def size(self) -> int:
        return self.path.stat().st_size if self.write else 0

    def close(self) -> None:
        """Close the files (again is harmless)."""
        if self.write:
            self.writer.close()
            self.file.close()
