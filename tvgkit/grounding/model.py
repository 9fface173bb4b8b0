"""The prompt-based grounding model: one BERT-family encoder reads the prompt and the video together.

The query sits in a hard prompt with two ``[MASK]`` slots (``The text of "{query}" starts at time [MASK] and ends at
time [MASK].``). Video clip features become tokens through a temporal convolution (kernel 3: an onset shows only
against the neighbouring clips) plus learned temporal position embeddings, and are appended to the prompt's word
embeddings; the text encoder runs over the joint sequence (token type 0 for text, 1 for video), as VIOLET does.
Why a joint encoder rather than a separate fusion stack: the ``[MASK]`` slots attend to every clip at every layer
with nothing extra to train, and on a 2-core CPU one 3-layer encoder over ~60 tokens is the cheapest design that
works. The cost: PEFT methods that freeze the encoder also freeze the fusion, and a pretrained encoder, fine-tuned at
a small rate, learns the fusion slowly (``benchmarks/minilm_gap.py``: the random 2-layer BERT's encoder at 1e-4
instead of 2e-3 loses 8.5 points of R1@0.5). ``text.two_stream`` is the other design: a pretrained encoder's prompt
features, computed once and frozen, fused with the clips by the small random BERT.

What binds the query to the video fast (each measured against the model without it, notebook preset: 1,500
videos, 2 layers, 560 steps, seed 0, test R1@0.5 / R1@0.7; the previous model: 44.9 / 28.3):

- ``query_gate`` (FiLM, as in VSLNet's and many fusion modules' query-conditioned feature scaling): the prompt's
  words, attention-pooled, scale each clip feature before the encoder (:class:`QueryGate`). The features are
  per-object statistics and the query names one object, so a multiplication picks its object's features at once;
  the joint encoder alone had to discover that through attention. Without it: 44.4 / 29.7; with all: 55.5 / 42.3.
- ``highlight_weight`` (VSLNet's query-guided highlighting): every clip is also classified as inside or outside
  the moment, a dense signal on every clip where start/end cross-entropy supervises two. Without it: 52.1 / 41.5.
- ``offsets``: the span head also regresses where inside its 1 s clip each boundary lies, so a span is no longer a
  whole number of clips (on the quick default's test split, R1@0.7 68.6 with offsets, 64.5 decoding whole clips).

Three heads, chosen by ``ModelConfig.head``:

- ``"span"`` (default): per-clip start and end logits on the video tokens, cross-entropy, decoded as the best pair
  with start <= end, boundaries moved by the offsets.
- ``"regression"``: a regression head on the two ``[MASK]`` slots that works: each slot points at the clips
  (dot products with the clip tokens), its boundary is the pointer-weighted clip time (ABLR, Yuan et al. 2019), and
  the pointer is also trained with cross-entropy on the boundary clips, with L1 + generalised IoU on the span.
  Without that cross-entropy the pointer stayed diffuse (quick default: validation R1@0.5 26 after one epoch, 19
  after two; with it 31, 42, then 70 after four; test 70.5).
- ``"regression-mlp"``: the seeds' head, kept for the comparison: an MLP on the two ``[MASK]`` outputs predicting a
  centre and a width through a sigmoid, L1 + generalised IoU. Why it stays at the blind prior: the slot must write
  a *time* into its hidden vector for the MLP to read, but clip positions reach the encoder only as random, unordered
  position embeddings, and two numbers per query are its only supervision; minimising L1 + gIoU by predicting the
  average span is reached long before the slot learns to read positions. Measured (``benchmarks/heads.py``, quick
  default, seeds' setting): the predicted centres spread 0.08-0.10 times as much as the targets' all run long
  (span head 0.9-1.0), the gradient reaching the ``[MASK]`` slots is about 50 times smaller than the head's own
  (0.005 vs 0.23) and the encoder's 40 times smaller than under the pointer head; test R1@0.5 22.1, mIoU 33.1,
  the best fixed span's level. The span head and the pointer get the position for free: a clip's index. In this
  model (query gate, highlighting: the clip tokens get a dense signal of where the moment is) the same MLP head
  starts collapsed too (spread 0.07 over the first fifth of training) but breaks out after about an epoch: test
  R1@0.5 64.6, R1@0.7 35.1, behind the pointer (70.5, 48.2) and the span head (80.0, 68.6).

The prompt ensemble averages the heads' outputs over several templates at evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tvgkit.config import ConfigError, at_least, one_of

VIDEO_POSITION_OFFSET = 96  # prompts are shorter than this; clips take positions 96, 97, ...
TEMPLATES = [
    'The text of "{query}" starts at time [MASK] and ends at time [MASK].',
    "The moment when {query} begins at [MASK] and finishes at [MASK].",
    "{query}: from [MASK] to [MASK].",
]
HEADS = ("span", "regression", "regression-mlp")


@dataclass
class ModelConfig:
    head: str = field(default="span", metadata=one_of(*HEADS))
    templates: list[str] = field(default_factory=lambda: list(TEMPLATES))
    prompt_ensemble: bool = True
    giou_weight: float = field(default=1.0, metadata=at_least(0))
    query_gate: bool = True  # scale each clip feature by the pooled prompt words before the encoder (FiLM)
    offsets: bool = True  # span head: also regress where inside its clip each boundary lies
    offset_weight: float = field(default=1.0, metadata=at_least(0))
    # VSLNet's query-guided highlighting: is each clip inside the moment? (0: off)
    highlight_weight: float = field(default=1.0, metadata=at_least(0))


class GroundingModel(nn.Module):
    """Prompt + video tokens through one encoder; a span head on the clips or a regression head on the masks."""

    def __init__(
        self,
        cfg: ModelConfig,
        encoder: nn.Module,
        video_dim: int,
        mask_token_id: int,
        max_clips: int = 64,
        text: nn.Module | None = None,
    ) -> None:
        """``text`` maps prompt token ids to the encoder's input vectors; default the encoder's word embeddings (the
        joint model), or a frozen pretrained encoder's projected features (the two-stream model)."""
        super().__init__()
        if cfg.head not in HEADS:
            raise ConfigError(f"model.head must be one of {', '.join(HEADS)}; got {cfg.head!r}")
        self.cfg = cfg
        self.encoder = encoder
        self.word_embeddings = text if text is not None else encoder.get_input_embeddings()
        hidden = self.word_embeddings.embedding_dim
        self.mask_token_id = mask_token_id
        self.register_buffer("feat_mean", torch.zeros(video_dim))
        self.register_buffer("feat_std", torch.ones(video_dim))
        self.query_gate = QueryGate(hidden, video_dim) if cfg.query_gate else None
        self.video_proj = nn.Conv1d(video_dim, hidden, kernel_size=3, padding=1)
        self.video_pos = nn.Embedding(max_clips, hidden)
        nn.init.normal_(self.video_pos.weight, std=0.02)  # BERT's init: unit-variance noise would drown the content
        # Only the chosen head exists, so every parameter gets a gradient (DDP and the optimiser audit expect that).
        if cfg.head == "span":
            self.span_head = nn.Sequential(
                nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 4 if cfg.offsets else 2)
            )
        elif cfg.head == "regression":
            self.slot_query = nn.Linear(hidden, hidden)
            self.clip_key = nn.Linear(hidden, hidden)
        else:
            self.reg_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.highlight = nn.Linear(hidden, 1) if cfg.highlight_weight > 0 else None
        self.probe: dict[str, torch.Tensor] = {}  # the [MASK] slots' gradient norm of the last backward (diagnosis)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise video features with the training split's statistics (kept in the checkpoint)."""
        self.feat_mean.copy_(mean)
        # Never-present slots have std ~0: a floor keeps a rare blob from becoming a huge input.
        self.feat_std.copy_(std.clamp_min(0.02))

    def forward(
        self, video: torch.Tensor, video_mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """video [B, N, D], video_mask [B, N] (1 = real clip), input_ids/attention_mask [B, L] (prompt)."""
        n = video.shape[1]
        x = ((video - self.feat_mean) / self.feat_std) * video_mask[..., None].to(video.dtype)
        t = self.word_embeddings(input_ids)
        if self.query_gate is not None:
            x = x * self.query_gate(t, attention_mask).to(x.dtype)[:, None]
        v = self.video_proj(x.transpose(1, 2)).transpose(1, 2)
        v = v + self.video_pos(torch.arange(n, device=video.device))[None]
        embeds = torch.cat([t, v.to(t.dtype)], dim=1)
        mask = torch.cat([attention_mask, video_mask.to(attention_mask.dtype)], dim=1)
        types = torch.cat([torch.zeros_like(input_ids), torch.ones_like(video_mask, dtype=input_ids.dtype)], dim=1)
        # Video positions start at a fixed offset, so a clip's position does not move with the batch's prompt length.
        text_pos = torch.arange(input_ids.shape[1], device=video.device)
        video_pos = torch.arange(n, device=video.device) + VIDEO_POSITION_OFFSET
        positions = torch.cat([text_pos, video_pos])[None].expand(len(video), -1)
        hidden = self.encoder(
            inputs_embeds=embeds, attention_mask=mask, token_type_ids=types, position_ids=positions
        ).last_hidden_state
        # Prompt tuning prepends virtual tokens: count positions from the end.
        offset = hidden.shape[1] - embeds.shape[1]
        clips = hidden[:, offset + input_ids.shape[1] :]
        valid = video_mask.bool()
        out = {"highlight": self.highlight(clips).squeeze(-1).float()} if self.highlight is not None else {}
        if self.cfg.head == "span":
            return {**out, **self._span(clips, valid)}
        rows, cols = (input_ids == self.mask_token_id).nonzero(as_tuple=True)
        slots = hidden[rows, offset + cols].reshape(input_ids.shape[0], 2, -1)
        if slots.requires_grad:
            slots.register_hook(lambda g: self.probe.__setitem__("slot_grad_norm", g.norm().detach()))
        if self.cfg.head == "regression":
            return {**out, **self._attend(slots, clips, valid)}
        centre, width = torch.sigmoid(self.reg_head(slots.flatten(1)).float()).unbind(-1)
        return {**out, "span": torch.stack([(centre - width / 2).clamp(0, 1), (centre + width / 2).clamp(0, 1)], -1)}

    def _span(self, clips: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Start/end logits per clip (padding at -1e4) and, with offsets, where in its clip each boundary lies."""
        raw = self.span_head(clips).float()
        logits = raw[..., :2].masked_fill(~valid[..., None], -1e4)
        out = {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
        if self.cfg.offsets:
            out["start_offset"], out["end_offset"] = torch.sigmoid(raw[..., 2]), torch.sigmoid(raw[..., 3])
        return out

    def _attend(self, slots: torch.Tensor, clips: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each ``[MASK]`` slot points at the clips; its boundary is the pointer-weighted clip time (as in ABLR).

        The time is read off fixed clip times, not decoded from a hidden vector, and the pointer logits are also
        trained as the span head's are (cross-entropy on the boundary clips): see the module docstring for why.
        """
        scores = self.slot_query(slots) @ self.clip_key(clips).transpose(1, 2) / math.sqrt(slots.shape[-1])
        logits = scores.float().masked_fill(~valid[:, None], -1e4)  # [B, 2, N]
        weights = logits.softmax(-1)
        n_valid = valid.sum(1, keepdim=True).float()
        index = torch.arange(clips.shape[1], device=clips.device)[None].float()
        start = (weights[:, 0] * index / n_valid).sum(-1)
        end = (weights[:, 1] * (index + 1) / n_valid).sum(-1)
        span = torch.stack([torch.minimum(start, end), torch.maximum(start, end)], -1)
        return {"span": span, "start_logits": logits[:, 0], "end_logits": logits[:, 1]}


class QueryGate(nn.Module):
    """A per-feature scale of the clips from the prompt's words (FiLM), before the encoder sees the video.

    The words are pooled with learned attention (so the content words, not the template, can dominate) and
    layer-normalised (BERT's word embeddings start at std 0.02: a raw mean would barely move the gate); the last
    layer starts at zero, so the model begins as the ungated one. Why: the clip features are per-object
    statistics, and the query names one object; multiplying lets the query pick its object's features directly,
    where the joint encoder had to learn that through attention.
    """

    def __init__(self, hidden: int, video_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, 1)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, video_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """words [B, L, H], mask [B, L] -> gate [B, video_dim] (1 everywhere at initialisation)."""
        scores = self.score(words).squeeze(-1).masked_fill(~mask.bool(), -1e4)
        pooled = (scores.softmax(-1)[..., None] * words).sum(1)
        return 1 + self.out(self.norm(pooled))


def clip_targets(spans: torch.Tensor, n_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised spans [B, 2] -> (start clip, end clip) indices on each sample's grid of ``n_valid`` clips."""
    start = (spans[:, 0] * n_valid).floor().long()
    end = (spans[:, 1] * n_valid).ceil().long() - 1
    start = torch.minimum(start.clamp_min(0), n_valid - 1)
    end = torch.minimum(torch.maximum(end, start), n_valid - 1)
    return start, end


def offset_targets(
    spans: torch.Tensor, n_valid: torch.Tensor, start: torch.Tensor, end: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each boundary lies inside its target clip, as a fraction of the clip in [0, 1]."""
    n = n_valid.float()
    return (spans[:, 0] * n - start).clamp(0, 1), (spans[:, 1] * n - end).clamp(0, 1)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU of 1-D spans [B, 2] (mean)."""
    inter = (torch.minimum(pred[:, 1], target[:, 1]) - torch.maximum(pred[:, 0], target[:, 0])).clamp_min(0)
    union = (pred[:, 1] - pred[:, 0]) + (target[:, 1] - target[:, 0]) - inter
    hull = torch.maximum(pred[:, 1], target[:, 1]) - torch.minimum(pred[:, 0], target[:, 0])
    iou = inter / union.clamp_min(1e-6)
    return (1 - (iou - (hull - union) / hull.clamp_min(1e-6))).mean()


def loss_terms(
    out: dict[str, torch.Tensor], spans: torch.Tensor, video_mask: torch.Tensor, cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """The loss's terms by name, for whatever the head gave: highlighting (BCE per clip), cross-entropy on the start
    and end clips (span head, pointer of the attention regression head), L1 on where in those clips the boundaries
    lie (offsets), and L1 + generalised IoU on a regressed span."""
    n_valid = video_mask.sum(1)
    start, end = clip_targets(spans, n_valid)
    terms = {}
    if "highlight" in out:
        index = torch.arange(video_mask.shape[1], device=spans.device)[None]
        inside = ((index >= start[:, None]) & (index <= end[:, None])).float()
        valid = video_mask.bool()
        bce = F.binary_cross_entropy_with_logits(out["highlight"][valid], inside[valid])
        terms["highlight_bce"] = cfg.highlight_weight * bce
    if "start_logits" in out:
        terms["start_ce"] = F.cross_entropy(out["start_logits"], start)
        terms["end_ce"] = F.cross_entropy(out["end_logits"], end)
    if "start_offset" in out:
        rows = torch.arange(len(spans), device=spans.device)
        target_s, target_e = offset_targets(spans, n_valid, start, end)
        pred_s, pred_e = out["start_offset"][rows, start], out["end_offset"][rows, end]
        terms["offset_l1"] = cfg.offset_weight * (F.l1_loss(pred_s, target_s) + F.l1_loss(pred_e, target_e))
    if "span" in out:
        terms["l1"] = F.l1_loss(out["span"], spans)
        terms["giou"] = cfg.giou_weight * giou_loss(out["span"], spans)
    return terms


def span_probs(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return out["start_logits"].softmax(-1), out["end_logits"].softmax(-1)


def decode_spans(
    start_prob: torch.Tensor,
    end_prob: torch.Tensor,
    n_valid: torch.Tensor,
    k: int = 1,
    offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
    min_clips: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` clip pairs with start <= end by p_start * p_end: normalised spans [B, k, 2] and scores [B, k].

    Without ``offsets`` a span covers whole clips; with them (fractions [B, N] of the start and end clips) each
    boundary moves inside its clip, never past the other one, and a span shorter than ``min_clips`` clips is widened
    to it (:func:`widen`).
    """
    n = start_prob.shape[1]
    joint = start_prob[:, :, None] * end_prob[:, None, :]
    joint = joint.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=joint.device).triu()[None], -1.0)
    scores, flat = joint.flatten(1).topk(k, dim=1)
    start, end = flat // n, flat % n
    lo, hi = start.float(), end.float() + 1
    if offsets is not None:
        lo = lo + offsets[0].gather(1, start)
        hi = torch.maximum(end.float() + offsets[1].gather(1, end), lo)
    v = n_valid[:, None].float()
    lo, hi = widen(lo, hi, v, min_clips)
    return torch.stack([lo / v, hi / v], -1).clamp(0, 1), scores


def widen(lo: torch.Tensor, hi: torch.Tensor, n: torch.Tensor, min_clips: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spans (in clips) shorter than ``min_clips`` grown to it about their centre, kept inside [0, n].

    Why: the offsets of a start and an end in the same clip can cross, leaving a zero-length span that scores IoU 0
    whatever the moment (8 of 884 test queries at an early checkpoint); the features cannot place a moment more
    finely than a clip anyway. ``min_clips=0`` keeps spans as decoded.
    """
    width = torch.minimum(torch.full_like(lo, min_clips), n)
    short = hi - lo < width
    start = torch.minimum((((lo + hi) - width) / 2).clamp_min(0), n - width)
    return torch.where(short, start, lo), torch.where(short, start + width, hi)


def decode(outs: list[dict[str, torch.Tensor]], video_mask: torch.Tensor, k: int = 1, min_clips: float = 1.0):
    """Spans [B, k, 2] and scores [B, k] from one or several templates' outputs (averaged: the prompt ensemble).

    A regression head gives one span per query (score 1). No span is shorter than ``min_clips`` clips (:func:`widen`).
    """
    if "span" in outs[0]:
        span = torch.stack([o["span"] for o in outs]).mean(0)
        n = video_mask.sum(1, keepdim=True).float()
        lo, hi = widen(span[:, :1] * n, span[:, 1:] * n, n, min_clips)
        span = torch.cat([lo / n, hi / n], -1).clamp(0, 1)
        return span[:, None], torch.ones(len(span), 1, device=span.device)
    probs = [span_probs(o) for o in outs]
    ps, pe = torch.stack([p[0] for p in probs]).mean(0), torch.stack([p[1] for p in probs]).mean(0)
    offsets = None
    if "start_offset" in outs[0]:
        offsets = tuple(torch.stack([o[key] for o in outs]).mean(0) for key in ("start_offset", "end_offset"))
    return decode_spans(ps, pe, video_mask.sum(1), min(k, ps.shape[1] * (ps.shape[1] + 1) // 2), offsets, min_clips)
