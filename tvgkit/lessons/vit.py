"""A small ViT/DeiT-style image classifier whose normalisation is a parameter, and BatchNorm folding for inference.

Variants (the seed's grid): ``ln`` (LayerNorm, GELU: the DeiT baseline), ``bn`` (BatchNorm in place of every
LayerNorm), ``bn_relu6`` (and ReLU6 in place of GELU in the FFN, which bounds the FFN's output and so the features'
growth), ``bn_wn`` (and weight normalisation, w = g v / ||v||, Salimans & Kingma 2016, on every linear layer of the
blocks) and ``bn_relu6_wn`` (both).

BatchNorm here normalises each *channel* over the batch and all tokens (:class:`TokenBatchNorm`), as in Yao et al.
2021. The blocks are pre-norm (DeiT's placement), so every BatchNorm sits *before* linear layers: ``norm1`` before the
attention's query/key/value projections, ``norm2`` before ``fc1``, the final norm before the classifier head. In eval
mode a BatchNorm is a fixed per-channel affine map ``y = s * x + t``, which :func:`fold_bn` moves into those linear
layers: ``W' = W diag(s)``, ``b' = b + W t``, exact up to float rounding. (A BatchNorm placed *after* a linear
layer would fold the other way, ``W' = diag(s) W``, ``b' = s * b + t``; post-norm blocks cannot be folded at all,
because their norm follows a residual sum, not a linear layer.)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

VARIANTS = ("ln", "bn", "bn_relu6", "bn_wn", "bn_relu6_wn")


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over ``[batch, tokens, channels]``: each channel normalised over the batch *and* the tokens.

    The statistics are shared by every position of every image of the batch (training) or are the running averages
    (eval), so at inference the norm is a constant affine map that can be folded away. LayerNorm instead computes a
    mean and variance per token from that token's own channels, at inference too: that data-dependent division is
    not linear in the input, so no linear layer can absorb it and LayerNorm can never be folded.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def affine_of(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BatchNorm as ``y = s * x + t``: ``s = gamma / sqrt(var + eps)``, ``t = beta - mean * s``."""
    s = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        s = s * bn.weight.double()
    t = -bn.running_mean.double() * s
    if bn.bias is not None:
        t = t + bn.bias.double()
    return s, t


def fold_affine_before(linear: nn.Linear, s: torch.Tensor, t: torch.Tensor) -> None:
    """Make ``linear(x)`` compute ``linear(s * x + t)``: ``W <- W diag(s)``, ``b <- b + W t`` (in float64)."""
    with torch.no_grad():
        w = linear.weight.double()
        bias = linear.bias.double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        new_bias = bias + w @ t.to(w)
        linear.weight.copy_((w * s.to(w)[None, :]).to(linear.weight.dtype))
        if linear.bias is None:
            linear.bias = nn.Parameter(new_bias.to(linear.weight.dtype))
        else:
            linear.bias.copy_(new_bias.to(linear.bias.dtype))


def make_norm(variant: str) -> Callable[[int], nn.Module]:
    """The norm factory (``d_model -> Module``) a variant plugs into :class:`tvgkit.lessons.blocks.Encoder`."""
    _check(variant)
    return nn.LayerNorm if variant == "ln" else TokenBatchNorm


def make_activation(variant: str) -> Callable[[], nn.Module]:
    """GELU (DeiT) or ReLU6 (``min(max(0, x), 6)``) for the FFN."""
    _check(variant)
    return nn.ReLU6 if "relu6" in variant else nn.GELU


def _check(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


class ViT(nn.Module):
    """DeiT-style classifier: patch embedding, a class token, learned positions, pre-norm blocks, a linear head.

    The blocks are :class:`tvgkit.lessons.blocks.Encoder` with ``position="pre"``; the variant chooses the norm factory
    and the FFN activation, and ``*_wn`` variants put weight normalisation on every linear layer of the blocks.
    """

    def __init__(
        self,
        variant: str = "ln",
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        d_model: int = 64,
        depth: int = 4,
        n_heads: int = 4,
        d_ff: int = 128,
        n_classes: int = 6,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from tvgkit.lessons.blocks import Encoder

        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.variant = variant
        self.config = {
            "variant": variant,
            "image_size": image_size,
            "patch_size": patch_size,
            "in_channels": in_channels,
            "d_model": d_model,
            "depth": depth,
            "n_heads": n_heads,
            "d_ff": d_ff,
            "n_classes": n_classes,
            "dropout": dropout,
        }
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, d_model, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, n_patches + 1, d_model), std=0.02))
        self.encoder = Encoder(
            depth,
            d_model,
            n_heads,
            d_ff,
            "pre",
            norm=make_norm(variant),
            activation=make_activation(variant),
            dropout=dropout,
        )
        self.head = nn.Linear(d_model, n_classes)
        if variant.endswith("_wn"):
            for module in self.encoder.modules():
                if isinstance(module, nn.Linear):
                    weight_norm(module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.head(self.encoder(x)[:, 0])


def fold_bn(model: ViT) -> ViT:
    """An inference copy of ``model`` with every BatchNorm folded into the linear layers that read its output.

    ``norm1`` goes into the q/k/v projections, ``norm2`` into ``fc1``, the final norm into the head (which reads only
    the class token, so folding there is exact); the norms become ``nn.Identity``. Weight normalisation is first
    baked into plain weights. The copy is in eval mode and equals ``model.eval()`` up to float rounding (~1e-6).
    LayerNorm is left in place: it cannot be folded, because its mean and variance are computed per token from the
    input at inference as well, a data-dependent division no fixed linear layer can represent.
    """
    # a fresh model without weight norm, loaded with the effective weights g v / ||v|| (deep-copying a
    # parametrised module and removing its parametrisation corrupts the original in torch 2.13)
    folded = ViT(**{**model.config, "variant": model.variant.removesuffix("_wn")})
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            state[f"{name}.weight"] = module.weight.detach()
    folded.load_state_dict(state)
    folded.to(next(model.parameters()).device).eval()
    enc = folded.encoder
    plan = [(layer, "norm1", [layer.attn.q_proj, layer.attn.k_proj, layer.attn.v_proj]) for layer in enc.layers]
    plan += [(layer, "norm2", [layer.ffn.fc1]) for layer in enc.layers]
    plan += [(enc, "final_norm", [folded.head])]
    for owner, name, linears in plan:
        bn = getattr(owner, name)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        s, t = affine_of(bn)
        for linear in linears:
            fold_affine_before(linear, s, t)
        setattr(owner, name, nn.Identity())
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers with no linear layer to fold into: {left}")
    return folded


@dataclass
class TrainResult:
    """One training run: the loss of every step, where (if anywhere) the loss stopped being finite, test accuracy."""

    variant: str
    batch_size: int
    lr: float
    losses: list[float] = field(default_factory=list)
    nonfinite_step: int | None = None
    test_accuracy: float = float("nan")

    @property
    def diverged(self) -> bool:
        return self.nonfinite_step is not None


@torch.no_grad()
def accuracy(model: nn.Module, dataset: torch.utils.data.Dataset, device: torch.device, batch_size: int = 500) -> float:
    """Top-1 accuracy in eval mode (a model with non-finite outputs scores what its argmax happens to hit)."""
    model.eval()
    correct = 0
    for images, labels in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        correct += int((model(images.to(device)).argmax(-1).cpu() == labels).sum())
    return correct / len(dataset)


def train_classifier(
    model: ViT,
    train_set: torch.utils.data.Dataset,
    test_set: torch.utils.data.Dataset,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    seed: int = 0,
    weight_decay: float = 0.05,
    warmup_steps: int = 0,
) -> TrainResult:
    """AdamW with linear warmup then cosine decay; stops at the first non-finite loss and records its step.

    A diverged run is reported (``nonfinite_step``) instead of raising, so a grid of variants and batch sizes always
    completes; its test accuracy is measured on whatever weights it had when it stopped.
    """
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator
    )
    total = epochs * len(loader)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total - warmup_steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    result = TrainResult(getattr(model, "variant", "?"), batch_size, lr)
    step = 0
    for _ in range(epochs):
        for images, labels in loader:
            loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
            result.losses.append(loss.item())
            if not torch.isfinite(loss):
                result.nonfinite_step = step
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if result.diverged:
            break
    result.test_accuracy = accuracy(model, test_set, device)
    return result


def images_per_s(model: torch.nn.Module, x: torch.Tensor, iters: int) -> float:
    """Images per second over ``iters`` forward passes (synchronising CUDA so the clock sees the work)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(x)
    sync()
    return iters * x.shape[0] / (time.perf_counter() - start)


@torch.inference_mode()
def measure_fold_speedup(
    reps: int, batch: int, d_model: int, depth: int, iters: int, device: torch.device, image_size: int = 32
) -> dict:
    """Throughput of a LayerNorm ViT and of the same-size ViT with BatchNorm folded, timed alternately ``reps``
    times (``iters`` forward passes each); the speed-up is the median of the per-repetition ratios. The BatchNorm
    model gets non-trivial running statistics first, and the folded model is checked against it (``max_abs_diff``).
    """
    torch.manual_seed(0)
    size = {"image_size": image_size, "patch_size": 4, "d_model": d_model, "depth": depth}
    size |= {"n_heads": max(1, d_model // 64), "d_ff": 4 * d_model}
    ln = ViT("ln", **size).to(device).eval()
    bn = ViT("bn", **size).to(device).train()
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    for _ in range(3):  # running statistics that are not the identity
        bn(x * 2 - 0.5)
    bn.eval()
    folded = fold_bn(bn)
    max_abs_diff = float((folded(x) - bn(x)).abs().max())
    for model in (ln, folded):  # warm-up
        images_per_s(model, x, 2)
    ln_rates, bn_rates = [], []
    for rep in range(reps):
        order = [(ln, ln_rates), (folded, bn_rates)]
        for model, rates in order if rep % 2 == 0 else order[::-1]:
            rates.append(images_per_s(model, x, iters))
    ratios = [b / a for a, b in zip(ln_rates, bn_rates, strict=True)]
    return {
        "ln_images_per_s": round(statistics.median(ln_rates), 1),
        "bn_folded_images_per_s": round(statistics.median(bn_rates), 1),
        "speedup": round(statistics.median(ratios), 4),
        "speedup_min": round(min(ratios), 4),
        "speedup_max": round(max(ratios), 4),
        "max_abs_diff": max_abs_diff,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "batch": batch,
        "d_model": d_model,
        "depth": depth,
        "tokens": (image_size // 4) ** 2 + 1,
    }
