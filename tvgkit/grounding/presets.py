"""What one grounding run is: its config (data, text encoder, model, optimiser) and the named presets.

Every entry point (``tvgkit train``, the notebooks, the benchmarks, the tests) starts from a :class:`RunConfig`,
usually ``preset(name, overrides)``; ``config.yaml`` in each run folder is this dataclass written out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tvgkit import config as configs
from tvgkit.config import Rule, at_least, between, one_of, positive
from tvgkit.data.synthetic import SynthConfig
from tvgkit.grounding.model import VIDEO_POSITION_OFFSET, ModelConfig
from tvgkit.grounding.text import RANDOM_BERT_POSITIONS, TextConfig
from tvgkit.lessons.rdrop import KINDS as RDROP_KINDS
from tvgkit.metrics import METRIC_KEYS

ONE_FOLDER = "one folder name (no '/', '\\', '..'; not empty)"
# Clips take the text encoder's positions from VIDEO_POSITION_OFFSET on; the small BERT has only so many.
MAX_CLIPS_RANDOM_BERT = RANDOM_BERT_POSITIONS - VIDEO_POSITION_OFFSET


@dataclass
class DataConfig:
    """``synthetic`` renders (or reuses) the kit's dataset; ``files`` reads annotations + a feature store.

    With ``files``, ``train``/``val``/``test`` are annotation files in any supported format (``.jsonl``, Charades-STA
    ``.txt`` with ``durations``, ActivityNet or TACoS ``.json``) and ``features`` an HDF5 file or a .npy/.npz folder.
    Before a run starts, every annotated video must have features, all ``feature_dim`` wide when that is set;
    ``skip_missing_features`` drops (and counts) the queries of videos without features instead of refusing.
    """

    dataset: str = "synthetic"
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: str | None = None
    val: str | None = None
    test: str | None = None
    features: str | None = None
    durations: str | None = None
    feature_dim: int | None = field(default=None, metadata=at_least(1))
    skip_missing_features: bool = False
    max_clips: int = field(default=64, metadata=at_least(1))
    # Seconds per feature clip, for features that do not record it (the HDF5 files of tvgkit extract and the synthetic
    # set do): clip i covers [i * c, (i + 1) * c) (tvgkit.data.timeline). None with no record: clips spread evenly
    # over the duration, as in the public feature files.
    clip_seconds: float | None = field(default=None, metadata=positive())
    # The network the features come from ("blobs", "efficientnet-lite0"): filled in from the features (synthetic:
    # synth.backbone; files: the HDF5 attribute tvgkit extract writes) and saved in config.yaml, so that predict can
    # refuse a video's features from another backbone. A value set here must match the features'.
    backbone: str | None = None


@dataclass
class OptimConfig:
    epochs: int = field(default=5, metadata=at_least(1))
    batch_size: int = field(default=32, metadata=at_least(1))
    lr: float = field(default=1e-3, metadata=positive())
    # the text encoder's rate (e.g. 5e-5 for a pretrained one); None: ``lr``
    encoder_lr: float | None = field(default=None, metadata=positive())
    weight_decay: float = field(default=0.01, metadata=at_least(0))
    warmup_ratio: float = field(default=0.05, metadata=between(0, 1, high_open=True))
    clip_grad: float = field(default=1.0, metadata=positive())  # the largest gradient norm
    select_metric: str = field(default="mIoU", metadata=one_of(*METRIC_KEYS))  # a validation metric
    query_blind: bool = False
    rdrop_alpha: float = field(default=0.0, metadata=at_least(0))
    rdrop_kind: str = field(default="mse", metadata=one_of(*RDROP_KINDS))
    device: str | None = None
    threads: int | None = field(default=None, metadata=at_least(1))
    log_every: int = field(default=10, metadata=at_least(1))
    guard: bool = True  # stop at the first NaN/Inf loss or gradient, naming the module (tvgkit.lessons.diagnostics)
    # also rewrite last.pt every N optimiser steps (0: at the end of every epoch only)
    checkpoint_every: int = field(default=0, metadata=at_least(0))
    audit: bool = True  # before training: optimiser audit (warns) and evaluation-loader audit (refuses)


@dataclass
class RunConfig:
    name: str = "quick"  # the run folder runs_dir/<name>: one folder name, never a path
    seed: int = field(default=0, metadata=at_least(0))  # numpy refuses negative seeds
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)

    CHECKS: ClassVar[tuple[Rule, ...]] = (
        Rule("name", lambda c: is_folder_name(c.name), ONE_FOLDER),
        Rule(
            "data.max_clips",
            lambda c: c.text.encoder != "random-bert" or c.data.max_clips <= MAX_CLIPS_RANDOM_BERT,
            f"<= {MAX_CLIPS_RANDOM_BERT} with text.encoder=random-bert (its {RANDOM_BERT_POSITIONS} positions, "
            f"clips from position {VIDEO_POSITION_OFFSET})",
        ),
    )


def is_folder_name(name: str) -> bool:
    """A run name must be one folder name: a separator or ``..`` would put the run folder outside ``runs_dir``."""
    return name not in ("", ".", "..") and not any(sep in name for sep in ("/", "\\", "\0"))


def check_run_name(name: str) -> str:
    """``name``, or a ConfigError when it is not one folder name (for configs built without :func:`configs.build`)."""
    if not is_folder_name(name):
        raise configs.ConfigError(f"name = {name!r}: must be {ONE_FOLDER}")
    return name


#: Named override lists: ``quick`` (no overrides: the ``tvgkit train`` default on a CPU, 3000 videos, 5 epochs of
#: batch 32); ``gpu`` (what ``tvgkit train`` picks where CUDA is present: the same data in batches of 256, so that
#: a GPU has work per step, with the rate, warmup and epochs adapted); ``tiny`` for tests; ``notebook`` for notebook
#: 05 (half the videos, a 2-layer encoder and four epochs, so that the notebook trains two models in about two
#: minutes with rendering included; one thread, so its printed metrics repeat on any machine of the kind); ``full``
#: for a GPU or a long CPU run.
PRESETS: dict[str, list[str]] = {
    "quick": [],
    # Batch 256 at the quick default's rate and 5 epochs is 175 steps: too few (test R1@0.5 52.7 on an H200). Measured
    # on the CPU (same arithmetic, seed 0): lr 3e-3 (about sqrt(8) times 1e-3), warmup 10%, 20 epochs (700 steps)
    # reach test R1@0.5 81.0 / R1@0.7 68.6 / mIoU 74.9, against the quick default's 78.6 / 67.1 / 72.9 (82.4 / 70.8 /
    # 74.4 against 80.3 / 68.8 / 73.2 before the time convention of tvgkit.data.timeline).
    "gpu": ["name=gpu", "train.batch_size=256", "train.lr=3e-3", "train.warmup_ratio=0.1", "train.epochs=20"],
    "tiny": [
        "data.synth.n_train=12",
        "data.synth.n_val=4",
        "data.synth.n_test=4",
        "data.synth.duration_min=10",
        "data.synth.duration_max=12",
        "data.synth.moment_max=5",
        "text.layers=1",
        "text.hidden=32",
        "text.heads=2",
        "text.intermediate=64",
        "train.epochs=2",
        "train.batch_size=20",  # 38 training queries: two steps per epoch
        "train.log_every=1",
        "train.threads=1",
    ],
    "notebook": [
        "data.synth.n_train=1500",
        "data.synth.n_val=100",
        "data.synth.n_test=200",
        "text.layers=2",
        "train.epochs=4",
        # 560 steps: at 2e-3 test R1@0.5 65.8 vs 55.5 at 1e-3 (query-blind twin: about 40 either way), seed 0
        "train.lr=2e-3",
        "train.log_every=5",
        "train.threads=1",
    ],
    "full": [
        "data.synth.n_train=4000",
        "data.synth.n_val=300",
        "data.synth.n_test=600",
        "train.epochs=30",
    ],
}


def preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The config of a named preset (see :data:`PRESETS`), with further ``key=value`` overrides."""
    return configs.load(RunConfig, None, [*PRESETS[name], *overrides])

