"""The prompt-based grounding model: one BERT-family encoder reads the prompt and the video together.

The query sits in a hard prompt with two ``[MASK]`` slots (``The text of "{query}" starts at time [MASK] and ends at
time [MASK].``). Video clip features become tokens through a projection plus learned temporal position embeddings
and are appended to the prompt's word embeddings; the text encoder then runs over the joint sequence (token type 0
for text, 1 for video), as VIOLET does. The projection is a temporal convolution (kernel 3) rather than a per-clip
linear map: where a change starts or ends shows only against the neighbouring clips, and with a per-clip projection
the encoder had to learn that from weak position embeddings (on the quick synthetic run, validation R1@0.5 after
four epochs went from 28 to 38 with the convolution).

Why a joint encoder rather than text-to-video cross-attention: the ``[MASK]`` slots must read the video, and in a
joint encoder they attend to every clip at every layer, with no extra fusion stack to train; on a 2-core CPU one
3-layer encoder over ~60 tokens is also the cheapest design that works. The cost: PEFT methods that freeze the
encoder also freeze the fusion (with a random encoder, ``frozen`` cannot learn; LoRA and friends can).

Two heads, chosen by ``ModelConfig.head``:

- ``"span"`` (default): per-clip start and end logits on the video tokens, cross-entropy, decoded as the best pair
  with start <= end. It learns several times faster than regression (see notebook 05).
- ``"regression"``: the seeds' head: an MLP on the two ``[MASK]`` outputs predicting a centre and a width through a
  sigmoid (bounded, never a ReLU that can die), trained with L1 plus generalised IoU.

The prompt ensemble averages the heads' outputs over several templates at evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tvgkit.config import ConfigError

VIDEO_POSITION_OFFSET = 96  # prompts are shorter than this; clips take positions 96, 97, ...
TEMPLATES = [
    'The text of "{query}" starts at time [MASK] and ends at time [MASK].',
    "The moment when {query} begins at [MASK] and finishes at [MASK].",
    "{query}: from [MASK] to [MASK].",
]


@dataclass
class ModelConfig:
    head: str = "span"
    templates: list[str] = field(default_factory=lambda: list(TEMPLATES))
    prompt_ensemble: bool = True
    giou_weight: float = 1.0


class GroundingModel(nn.Module):
    """Prompt + video tokens through one encoder; a span head on the clips or a regression head on the masks."""

    def __init__(
        self, cfg: ModelConfig, encoder: nn.Module, video_dim: int, mask_token_id: int, max_clips: int = 64
    ) -> None:
        super().__init__()
        if cfg.head not in ("span", "regression"):
            raise ConfigError(f"model.head must be 'span' or 'regression', got {cfg.head!r}")
        self.cfg = cfg
        self.encoder = encoder
        self.word_embeddings = encoder.get_input_embeddings()
        hidden = self.word_embeddings.embedding_dim
        self.mask_token_id = mask_token_id
        self.register_buffer("feat_mean", torch.zeros(video_dim))
        self.register_buffer("feat_std", torch.ones(video_dim))
        self.video_proj = nn.Conv1d(video_dim, hidden, kernel_size=3, padding=1)
        self.video_pos = nn.Embedding(max_clips, hidden)
        nn.init.normal_(self.video_pos.weight, std=0.02)  # BERT's init: unit-variance noise would drown the content
        self.span_head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.reg_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))

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
        v = self.video_proj(x.transpose(1, 2)).transpose(1, 2)
        v = v + self.video_pos(torch.arange(n, device=video.device))[None]
        t = self.word_embeddings(input_ids)
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
        out: dict[str, torch.Tensor] = {}
        if self.cfg.head == "span":
            logits = self.span_head(hidden[:, offset + input_ids.shape[1] :]).float()
            logits = logits.masked_fill(~video_mask.bool()[..., None], -1e4)
            out["start_logits"], out["end_logits"] = logits[..., 0], logits[..., 1]
        else:
            rows, cols = (input_ids == self.mask_token_id).nonzero(as_tuple=True)
            slots = hidden[rows, offset + cols].reshape(input_ids.shape[0], 2, -1).flatten(1)
            centre, width = torch.sigmoid(self.reg_head(slots).float()).unbind(-1)
            out["span"] = torch.stack([(centre - width / 2).clamp(0, 1), (centre + width / 2).clamp(0, 1)], -1)
        return out


def clip_targets(spans: torch.Tensor, n_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised spans [B, 2] -> (start clip, end clip) indices on each sample's grid of ``n_valid`` clips."""
    start = (spans[:, 0] * n_valid).floor().long()
    end = (spans[:, 1] * n_valid).ceil().long() - 1
    start = torch.minimum(start.clamp_min(0), n_valid - 1)
    end = torch.minimum(torch.maximum(end, start), n_valid - 1)
    return start, end


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU of 1-D spans [B, 2] (mean)."""
    inter = (torch.minimum(pred[:, 1], target[:, 1]) - torch.maximum(pred[:, 0], target[:, 0])).clamp_min(0)
    union = (pred[:, 1] - pred[:, 0]) + (target[:, 1] - target[:, 0]) - inter
    hull = torch.maximum(pred[:, 1], target[:, 1]) - torch.minimum(pred[:, 0], target[:, 0])
    iou = inter / union.clamp_min(1e-6)
    return (1 - (iou - (hull - union) / hull.clamp_min(1e-6))).mean()


def grounding_loss(
    out: dict[str, torch.Tensor], spans: torch.Tensor, video_mask: torch.Tensor, giou_weight: float
) -> torch.Tensor:
    """Cross-entropy on start/end clips (span head) or L1 + generalised IoU (regression head)."""
    if "span" in out:
        return F.l1_loss(out["span"], spans) + giou_weight * giou_loss(out["span"], spans)
    start, end = clip_targets(spans, video_mask.sum(1))
    return F.cross_entropy(out["start_logits"], start) + F.cross_entropy(out["end_logits"], end)


def span_probs(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return out["start_logits"].softmax(-1), out["end_logits"].softmax(-1)


def decode_spans(
    start_prob: torch.Tensor, end_prob: torch.Tensor, n_valid: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` clip pairs with start <= end by p_start * p_end: normalised spans [B, k, 2] and scores [B, k]."""
    n = start_prob.shape[1]
    joint = start_prob[:, :, None] * end_prob[:, None, :]
    joint = joint.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=joint.device).triu()[None], -1.0)
    scores, flat = joint.flatten(1).topk(k, dim=1)
    start, end = flat // n, flat % n
    v = n_valid[:, None].float()
    spans = torch.stack([start / v, (end + 1) / v], -1).clamp(0, 1)
    return spans, scores
