"""What each notebook's ``full`` size is, and the time it is allowed on one GPU.

``quick`` is sized for a 2-core CPU (every notebook under 120 s, checked in CI); ``full`` (``TVGKIT_SIZE=full``) is
sized for one GPU, with a budget of at most 5 minutes per notebook on one H200-class GPU. :func:`tvgkit.runtime.setup`
prints the notebook's line from :data:`FULL_SIZES` at the top of the notebook (in its ``NBVAL_IGNORE_OUTPUT`` cell),
at both sizes, so a reader knows before running what full costs. ``benchmarks/gpu_check.py`` measures every notebook
at full size on a GPU and compares with these budgets.

How the budgets were set (the first H200 run, 2026-12-04, six notebooks side by side on one GPU for 535 s, so its
times are upper bounds): 07 finished in 81 s; 04's training cell took 290 s; 01's warmup grid (12 runs of 2,000
steps), 02's five ViTs (30 epochs of 20,000 images, 12,000 steps each) and 05's ``full`` preset (30 epochs) had not
finished. The quick default grounding run took 29 ms per step on that H200 alone, and these small models are bound
by kernel launches and the Python side, not by the GPU's arithmetic: a step costs about 5 to 30 ms whatever its size,
so the full sizes below are set by their step counts.

T4 (Colab's free GPU): :data:`T4_SLOWDOWN` is the ratio of dense tensor throughput, 989 TFLOPS bf16 on an H200
(NVIDIA H200 datasheet, dense) against 65 TFLOPS fp16 on a T4 (NVIDIA T4 datasheet), about 15; memory bandwidth gives
the same ratio (4.8 TB/s against 320 GB/s). It bounds the T4's time from above: launch-bound steps, as here, slow
down less.
"""

from __future__ import annotations

from dataclasses import dataclass

H200_BUDGET_MAX_S = 300  # the most any notebook may take at full size on one H200-class GPU
T4_SLOWDOWN = 15  # upper bound of T4 time / H200 time (see the module docstring for the figures)


@dataclass(frozen=True)
class FullSize:
    """One notebook at ``TVGKIT_SIZE=full``: what runs, its H200 budget, and whether that budget was measured."""

    what: str
    h200_s: int
    measured: bool = False

    def line(self) -> str:
        """The line printed at the top of the notebook."""
        how = "measured" if self.measured else "estimated, not yet measured"
        t4 = -(-self.h200_s * T4_SLOWDOWN // 60)
        return (
            f"full size (TVGKIT_SIZE=full): {self.what}; budget on one H200 <= {self.h200_s} s ({how}), "
            f"on a T4 <= {t4} min (x{T4_SLOWDOWN}, see tvgkit.budgets)"
        )


FULL_SIZES: dict[str, FullSize] = {
    "00_start_here": FullSize("the same as quick (no training)", 20),
    # 12 runs x 600 steps = 7,200 steps of a 12-layer encoder; at <= 20 ms a step (launch-bound), <= 150 s
    "01_pre_norm_vs_post_norm": FullSize(
        "10 seeds, depths to 96, warmup grid of 12 runs x 600 steps of a 12-layer encoder", 200
    ),
    # 5 ViTs x 1,600 steps (8 epochs of 10,000 images, batch 50) + 9 grid runs of 2 epochs, <= 15 ms a step
    "02_bn_vs_ln_activations": FullSize(
        "five ViTs (d 192, 6 layers), 8 epochs of 10,000 images at batch 50; batch grid to 1,024", 240
    ),
    "03_peft_parameter_counting": FullSize("counts as quick, a 300-step AdaLoRA budget trace", 60),
    # 20 runs x 1,500 steps took 290 s with six notebooks sharing the GPU: 10 runs x 1,500 steps alone fit
    "04_r_drop": FullSize("10 seeds x R-Drop off/on (alpha 1), 300 steps each, as quick but with more seeds", 120),
    # the full preset's 4,000 videos (about 11,900 queries) for 10 epochs: about 3,700 steps of batch 32 at 29 ms
    # (the quick default's step on the H200) is 110 s; with rendering, validation and the baselines, 240 s
    "05_grounding_training_loop": FullSize("the full preset's 4,000 videos, 10 epochs", 240),
    "06_real_annotations": FullSize("the same as quick (annotations only, no training)", 30),
    "07_training_pathologies": FullSize("longer runs of each pathology (1,500 steps)", 120, measured=True),
}


def full_size_line(notebook: str) -> str:
    """The full-size line of ``notebook`` (its file name without ``.ipynb``); a KeyError names the known ones."""
    if notebook not in FULL_SIZES:
        raise KeyError(f"no full-size budget for notebook {notebook!r}; known: {', '.join(FULL_SIZES)}")
    return FULL_SIZES[notebook].line()
