"""Transformer encoder blocks with the norm position and the norm type as parameters.

Three residual arrangements, each applied to both sub-layers (attention, then the feed-forward network):

- ``post``: ``x <- Norm(x + F(x))`` (the original Transformer; Xiong et al. 2020 "Post-LN").
- ``pre``: ``x <- x + F(Norm(x))``, with one more ``Norm`` after the last layer (Xiong et al. 2020 "Pre-LN").
- ``deepnorm``: ``x <- LN(alpha * x + F(x))`` with the weights of the FFN and of the value and output projections
  multiplied by ``beta`` after Xavier initialisation (Wang et al. 2022, DeepNet, arXiv 2203.00555, Sec. 2.3 and
  Fig. 2). For an encoder-only stack of N layers DeepNet gives ``alpha = (2N)^(1/4)`` and ``beta = (8N)^(-1/4)``
  (:func:`deepnorm_constants`); this is also what the official torchscale code does for encoder-only models.

Why our own attention instead of ``nn.MultiheadAttention``: its projections are fused in one ``in_proj_weight``,
which hides the value projection that DeepNorm scales and that LoRA-style adapters target, and it cannot express the
"uniform attention" (``W^Q = W^K = 0``) simplified setting of Xiong et al.'s Lemma 2 without patching. Here the four
projections are separate ``nn.Linear`` layers (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, the names transformers
uses for ViT) and ``uniform=True`` averages the values directly.

Every Linear is Xavier-uniform initialised with zero bias (as in Xiong et al. and fairseq). Norm factories receive
``d_model`` and are applied to ``(batch, tokens, d_model)`` tensors over the last dimension, so a BatchNorm variant
must transpose inside its own module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

POSITIONS = ("post", "pre", "deepnorm")
NormFactory = Callable[[int], nn.Module]
ActivationFactory = Callable[[], nn.Module]


def deepnorm_constants(n_layers: int) -> tuple[float, float]:
    """DeepNet's encoder-only ``(alpha, beta) = ((2N)^(1/4), (8N)^(-1/4))`` for ``N = n_layers`` (Wang et al. 2022)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return (2.0 * n_layers) ** 0.25, (8.0 * n_layers) ** -0.25


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/o projections.

    ``uniform=True`` is Xiong et al.'s simplified setting (``W^Q = W^K = 0``, so softmax gives equal weights): every
    token receives the mean of the values over the valid tokens; ``q_proj``/``k_proj`` are then unused.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, uniform: bool = False) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_heads, self.uniform = d_model, n_heads, uniform
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.o_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, T, d); ``mask``: optional (B, T) bool, True for real tokens."""
        b, t, d = x.shape
        v = self.v_proj(x)
        if self.uniform:
            if mask is None:
                mixed = v.mean(dim=1, keepdim=True).expand(b, t, d)
            else:
                w = mask.to(v.dtype).unsqueeze(-1)
                mixed = ((v * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)).expand(b, t, d)
            return self.o_proj(mixed)
        h, dh = self.n_heads, d // self.n_heads
        q = self.q_proj(x).view(b, t, h, dh).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, dh).transpose(1, 2)
        v = v.view(b, t, h, dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        attn = self.dropout(scores.softmax(dim=-1))
        return self.o_proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """``fc2(dropout(act(fc1(x))))``: ``fc1.weight`` is Xiong et al.'s W1, ``fc2.weight`` is W2."""

    def __init__(self, d_model: int, d_ff: int, activation: ActivationFactory = nn.GELU, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = activation()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class Block(nn.Module):
    """One encoder layer: attention sub-layer then FFN sub-layer, arranged by ``position``.

    ``alpha`` multiplies the residual in ``deepnorm`` (ignored otherwise); ``beta`` multiplies ``v_proj``, ``o_proj``,
    ``fc1`` and ``fc2`` weights after Xavier init (DeepNet's init; 1.0 leaves plain Xavier). :class:`Encoder` sets
    both from :func:`deepnorm_constants`.

    ``forward(x, mask, record)``: pass a dict as ``record`` to receive this layer's intermediate tensors:
    ``input`` (x_l), ``attn`` and ``ffn`` (the residual-branch outputs F(.)), ``attn_residual`` and ``ffn_residual``
    (what each branch is added to, already times ``alpha``), ``attn_sum`` and ``ffn_sum`` (residual + branch, before
    any post-norm; ``ffn_sum`` is Xiong et al.'s x^{post,5}_l for Post-LN) and ``output`` (x_{l+1}).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        position: str = "post",
        norm: NormFactory = nn.LayerNorm,
        activation: ActivationFactory = nn.GELU,
        dropout: float = 0.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        uniform_attention: bool = False,
    ) -> None:
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.position = position
        self.alpha = alpha if position == "deepnorm" else 1.0
        self.attn = SelfAttention(d_model, n_heads, dropout, uniform=uniform_attention)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = norm(d_model)
        self.norm2 = norm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(beta)

    def reset_parameters(self, beta: float = 1.0) -> None:
        """Xavier-uniform weights, zero biases; then DeepNet's ``beta`` on v/o projections and the FFN."""
        for module in (
            self.attn.q_proj,
            self.attn.k_proj,
            self.attn.v_proj,
            self.attn.o_proj,
            self.ffn.fc1,
            self.ffn.fc2,
        ):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        if beta != 1.0:
            with torch.no_grad():
                for module in (self.attn.v_proj, self.attn.o_proj, self.ffn.fc1, self.ffn.fc2):
                    module.weight.mul_(beta)

    def _sublayer(
        self, x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor], norm: nn.Module, name: str, record
    ) -> torch.Tensor:
        if self.position == "pre":
            residual, out = x, self.dropout(branch(norm(x)))
        else:
            residual, out = self.alpha * x if self.alpha != 1.0 else x, self.dropout(branch(x))
        total = residual + out
        if record is not None:
            record[name], record[f"{name}_residual"], record[f"{name}_sum"] = out, residual, total
        return total if self.position == "pre" else norm(total)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, record: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        if record is not None:
            record["input"] = x
        x = self._sublayer(x, lambda h: self.attn(h, mask), self.norm1, "attn", record)
        x = self._sublayer(x, self.ffn, self.norm2, "ffn", record)
        if record is not None:
            record["output"] = x
        return x


class Encoder(nn.Module):
    """A stack of ``n_layers`` :class:`Block` s; Pre-LN adds ``final_norm`` after the last layer.

    For ``deepnorm`` every block gets DeepNet's encoder-only ``alpha = (2N)^(1/4)`` and ``beta = (8N)^(-1/4)`` with
    ``N = n_layers`` (Wang et al. 2022, arXiv 2203.00555): for N = 6, alpha = 1.861 and beta = 0.3799.

    ``forward(x, mask=None, return_intermediates=False)`` takes embeddings (B, T, d); with
    ``return_intermediates=True`` it returns ``(output, records)``, one dict per layer as described in :class:`Block`.
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        position: str = "post",
        norm: NormFactory = nn.LayerNorm,
        activation: ActivationFactory = nn.GELU,
        dropout: float = 0.0,
        uniform_attention: bool = False,
    ) -> None:
        super().__init__()
        alpha, beta = deepnorm_constants(n_layers) if position == "deepnorm" else (1.0, 1.0)
        self.position, self.alpha, self.beta = position, alpha, beta
        self.layers = nn.ModuleList(
            Block(d_model, n_heads, d_ff, position, norm, activation, dropout, alpha, beta, uniform_attention)
            for _ in range(n_layers)
        )
        self.final_norm = norm(d_model) if position == "pre" else nn.Identity()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, return_intermediates: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        records: list[dict[str, torch.Tensor]] = []
        for layer in self.layers:
            record: dict[str, torch.Tensor] | None = {} if return_intermediates else None
            x = layer(x, mask, record)
            if record is not None:
                records.append(record)
        x = self.final_norm(x)
        return (x, records) if return_intermediates else x
