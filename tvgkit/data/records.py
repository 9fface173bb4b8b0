"""The one record type every reader produces and every dataset consumes, and the clean-up report.

A query record holds times in seconds; readers of formats that count frames (TACoS) convert on the way in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

Window = tuple[float, float]


@dataclass(frozen=True)
class Record:
    """One query: which video, which sentence, and where its moment is (one or more windows, in seconds)."""

    vid: str
    qid: str
    query: str
    duration: float
    windows: tuple[Window, ...]

    @property
    def window(self) -> Window:
        """The first ground-truth window (most datasets have exactly one)."""
        return self.windows[0]

    def normalised(self) -> tuple[float, float]:
        """The first window divided by the duration (the blind baselines' coordinates; the model's targets are
        fractions of the clips, :mod:`tvgkit.data.timeline`)."""
        start, end = self.window
        return start / self.duration, end / self.duration


@dataclass
class Report:
    """What a reader read, kept, dropped and repaired; printed by the CLI and notebooks."""

    source: str
    n_read: int = 0
    n_kept: int = 0
    n_dropped: int = 0
    n_clipped_end: int = 0
    n_clipped_start: int = 0
    # windows removed (from kept and dropped records alike): given reversed (start > end), of zero length
    # (start == end), or outside the video (start at or past the duration)
    n_windows_reversed: int = 0
    n_windows_zero_length: int = 0
    n_windows_outside: int = 0
    n_renamed_qids: int = 0  # a qid seen before in the file gets "#2", "#3", ...: per-query results stay unambiguous
    dropped_examples: list[str] = field(default_factory=list)
    renamed_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self, examples: int = 3) -> str:
        """One line: the counts, then the first few dropped queries, so a user sees what the clean-up removed
        without opening the file (the counts alone do not say which lines to fix)."""
        if not self.dropped_examples:
            return str(self)
        shown = "; ".join(self.dropped_examples[:examples])
        more = " ..." if self.n_dropped > examples else ""
        return f"{self}; dropped: {shown}{more}"

    def __str__(self) -> str:
        """The counts; those of removed windows and renamed qids only when there are any."""
        text = (
            f"{self.source}: read {self.n_read}, kept {self.n_kept}, dropped {self.n_dropped} "
            f"(start >= end after clipping), clipped end {self.n_clipped_end}, clipped start {self.n_clipped_start}"
        )
        windows = (self.n_windows_reversed, self.n_windows_zero_length, self.n_windows_outside)
        if any(windows):
            text += "; windows removed: {} reversed, {} of zero length, {} outside the video".format(*windows)
        if self.n_renamed_qids:
            shown = ", ".join(self.renamed_examples[:3]) + (" ..." if self.n_renamed_qids > 3 else "")
            text += f"; renamed {self.n_renamed_qids} repeated qids ({shown})"
        return text
