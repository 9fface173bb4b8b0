"""What a training step minimises, and what a logged step shows besides the loss.

The loss is the model's task loss (:func:`tvgkit.grounding.model.loss_terms`), plus R-Drop's consistency term when
``train.rdrop_alpha`` is positive, plus AdaLoRA's orthogonality penalty when that is the PEFT method. Kept apart from
the loop so that the loop reads as steps, and the objective can be read (and changed) in one place.
"""

from __future__ import annotations

import torch

from tvgkit.config import ConfigError
from tvgkit.grounding.model import GroundingModel, decode, loss_terms
from tvgkit.grounding.presets import OptimConfig


def forward(model: GroundingModel, batch: dict, template: int) -> dict[str, torch.Tensor]:
    """The model's outputs on a batch, the query written into prompt template number ``template``."""
    return model(
        batch["video"], batch["video_mask"], batch["input_ids"][:, template], batch["attention_mask"][:, template]
    )


def training_loss(
    model: GroundingModel, batch: dict, opt: OptimConfig, net: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss, R-Drop term or None, the loss's named terms, the outputs of the first pass).

    The loss is the task loss, plus R-Drop's consistency term times ``rdrop_alpha`` when that is positive (two
    dropout passes, one batch). ``net`` runs the forward pass when it is not ``model`` itself (its DDP wrapper).
    """
    net = net or model
    if opt.rdrop_alpha <= 0:
        out = forward(net, batch, 0)
        terms = loss_terms(out, batch["span"], batch["video_mask"], model.cfg)
        term = None
    else:
        from tvgkit.lessons.rdrop import doubled_forward, rdrop_loss

        ids, attn = batch["input_ids"][:, 0], batch["attention_mask"][:, 0]
        out, out2 = doubled_forward(net, batch["video"], batch["video_mask"], ids, attn)
        halves = [loss_terms(o, batch["span"], batch["video_mask"], model.cfg) for o in (out, out2)]
        terms = {k: (halves[0][k] + halves[1][k]) / 2 for k in halves[0]}
        if "span" in out and opt.rdrop_kind != "kl":  # a regression head's spans, by a regression distance
            term = rdrop_loss(out["span"], out2["span"], opt.rdrop_kind)
        elif "start_logits" in out:  # the span head's, or (kind "kl") the pointer head's, boundary distributions
            term = rdrop_loss(out["start_logits"], out2["start_logits"], "kl") + rdrop_loss(
                out["end_logits"], out2["end_logits"], "kl"
            )
        else:
            raise ConfigError(f"train.rdrop_kind=kl needs boundary logits; head {model.cfg.head!r} has none")
        terms["rdrop"] = opt.rdrop_alpha * term
    penalty = _peft_penalty(model)
    if isinstance(penalty, torch.Tensor):
        terms["peft_penalty"] = penalty
    return sum(terms.values()), term, terms, out


def replay(model: GroundingModel, opt: OptimConfig, autocast, gradients: bool, batch: dict, guard) -> None:
    """A step once more under a :class:`~tvgkit.lessons.diagnostics.NonFiniteGuard` (the diagnosis of a non-finite
    step): forward, the loss check, and with ``gradients`` the backward pass and the gradient check. The model
    itself runs, not its DDP wrapper, so that no other process is waited for."""
    for p in model.parameters():
        p.grad = None
    with autocast():
        loss = training_loss(model, batch, opt)[0]
    guard.check_loss(loss)
    if gradients:
        loss.backward()
        guard.check_gradients()


def _peft_penalty(model: GroundingModel) -> torch.Tensor | float:
    """AdaLoRA's orthogonality regulariser (0 for every other method)."""
    if "Peft" not in type(model.encoder).__name__:
        return 0.0
    from tvgkit.lessons.peft import extra_loss

    return extra_loss(model.encoder)


@torch.no_grad()
def step_probe(
    model: GroundingModel, batch: dict, terms: dict[str, torch.Tensor], out: dict
) -> dict[str, torch.Tensor]:
    """What a logged step shows besides the loss: each term, the gradient norm of each part of the model, and how
    the batch's predictions spread.

    A head stuck at the blind prior shows as ``pred_centre_std`` far below ``target_centre_std`` (every query gets
    nearly the same span) while the loss has stopped falling. The values stay 0-d tensors on the device: the loop
    reads them with its own values in one transfer (:func:`on_host`), not one synchronisation each.
    """
    entry = {f"loss_{k}": v.detach() for k, v in terms.items()}
    for name, part in model.named_children():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        if grads:
            entry[f"grad_{name}"] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    if "slot_grad_norm" in model.probe:
        entry["grad_mask_slots"] = model.probe.pop("slot_grad_norm")
    spans = decode([{k: v.detach().float() for k, v in out.items()}], batch["video_mask"])[0][:, 0]
    target = batch["span"]
    entry["pred_centre_std"] = spans.mean(1).std()
    entry["target_centre_std"] = target.mean(1).std()
    entry["pred_width_mean"] = (spans[:, 1] - spans[:, 0]).mean()
    p, g = spans.double(), target.double()  # tvgkit.metrics.iou_array's arithmetic, on the device
    inter = (torch.minimum(p[:, 1], g[:, 1]) - torch.maximum(p[:, 0], g[:, 0])).clamp(min=0)
    union = (p[:, 1] - p[:, 0]) + (g[:, 1] - g[:, 0]) - inter
    entry["batch_mIoU"] = torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0).mean() * 100
    return entry


def on_host(values: dict[str, torch.Tensor | float], digits: int | None = None) -> dict[str, float]:
    """Scalars (0-d tensors on any device, or numbers) as floats (rounded to ``digits``), with one device-to-host
    transfer."""
    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    read = torch.stack([v.double() for v in tensors.values()]).tolist() if tensors else []
    host = {**{k: float(v) for k, v in values.items() if k not in tensors}, **dict(zip(tensors, read, strict=True))}
    return {k: host[k] if digits is None else round(host[k], digits) for k in values}
