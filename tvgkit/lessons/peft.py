"""Parameter-efficient fine-tuning of a BERT-family text encoder, one switch away, and counted exactly.

``apply(model, method, **options)`` turns a transformers ``BertModel`` (random BERT, the packaged MiniLM, ...) into
its PEFT form; ``count_parameters`` counts what an optimiser would see; ``expected_trainable`` derives the same
number from the config with the papers' formulas, so a table can put formula and count side by side.

What ``apply`` returns, and how to call it
    ``full``, ``frozen``, ``bitfit``, ``adapter``: the same ``BertModel``, changed in place (``requires_grad`` flags,
    and for ``adapter`` new modules). ``lora``, ``adalora``, ``ia3``: a ``peft.PeftModel`` wrapping the (in-place
    modified) model. ``prefix``, ``prompt``: a ``peft.PeftModelForFeatureExtraction``. Every one is called the same
    way, ``out = model(input_ids=ids, attention_mask=mask)``, and gives ``out.last_hidden_state``. Prompt tuning
    prepends ``num_virtual_tokens`` positions to that output (peft extends the attention mask itself), so a [MASK]
    at input position ``i`` is at ``i + prepended_tokens(model)`` in the output; every other method prepends 0
    (prefix tuning adds keys and values inside attention, not sequence positions).

Training-loop duties
    AdaLoRA must see ``step_hook(model, step)`` after ``optimizer.step()`` and before ``zero_grad()`` on every step
    (it reads the gradients to score and prune ranks), and its orthogonality penalty ``extra_loss(model)`` added to
    the loss (peft adds it only to models whose output has a ``loss``, which a bare ``BertModel`` has not). Both are
    no-ops (0) for every other method, so a trainer can call them unconditionally.

Houlsby adapters (written here: peft has none for BERT) sit after the attention-output and the FFN-output
projections (after their dropout, before the residual add and LayerNorm, as in Houlsby's code), start near the
identity (weights ~ N(0, 1e-2) truncated at 2 std, zero biases), and by default also train each layer's two
LayerNorms as Houlsby et al. did (``train_layernorm=False`` trains the adapters alone).

``import peft`` costs seconds, so it happens inside the functions that need it, never at module import.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from tvgkit.config import ConfigError
from tvgkit.runtime import quiet_warnings

METHODS = ("full", "frozen", "lora", "adalora", "bitfit", "adapter", "prefix", "prompt", "ia3")

# Defaults written out (peft's own defaults for BERT where peft has the method) so that apply and
# expected_trainable agree on them without asking peft.
DEFAULTS: dict[str, dict] = {
    "full": {},
    "frozen": {},
    "bitfit": {},
    "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]},
    "adalora": {"init_r": 12, "target_r": 8, "target_modules": ["query", "value"]},
    "ia3": {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]},
    "adapter": {"bottleneck": 64, "train_layernorm": True},
    "prefix": {"num_virtual_tokens": 20, "prefix_projection": False, "encoder_hidden_size": None},
    "prompt": {"num_virtual_tokens": 20},
}

# Options that change what is trained but not how many parameters: expected_trainable accepts and ignores them.
COUNT_NEUTRAL = {
    "lora": {"lora_alpha", "lora_dropout", "init_lora_weights", "use_rslora"},
    "adalora": {"lora_alpha", "lora_dropout", "total_step", "tinit", "tfinal", "deltaT", "beta1", "beta2"}
    | {"orth_reg_weight", "init_lora_weights"},
    "ia3": {"init_ia3_weights"},
    "prompt": {"prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path"},
}


# ----------------------------------------------------------------------------------------------------------- counting
def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (``parameters()`` yields a shared tensor once)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def prepended_tokens(model: nn.Module) -> int:
    """How many positions the method prepends to ``last_hidden_state`` (prompt tuning's virtual tokens, else 0)."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and str(getattr(config, "peft_type", "")).endswith("PROMPT_TUNING"):
        return int(config.num_virtual_tokens)
    return 0


def step_hook(model: nn.Module, step: int) -> None:
    """Call every step after ``optimizer.step()``, before ``zero_grad()``: AdaLoRA scores and prunes its ranks."""
    base = getattr(model, "base_model", None)
    if hasattr(base, "update_and_allocate"):
        base.update_and_allocate(step)


def extra_loss(model: nn.Module) -> torch.Tensor | float:
    """AdaLoRA's orthogonality penalty ``w * mean(||P P^T - I||_F)`` over its A (rows) and B (columns); 0 otherwise."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not str(getattr(config, "peft_type", "")).endswith("ADALORA"):
        return 0.0
    norms = []
    for name, p in model.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            norms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=p.device, dtype=p.dtype)))
    return config.orth_reg_weight * torch.stack(norms).mean() if norms else 0.0


# ---------------------------------------------------------------------------------------------------------- adapters
class HoulsbyAdapter(nn.Module):
    """Bottleneck adapter ``x + W_up act(W_down x + b_down) + b_up``: 2md + d + m parameters, near-identity at init."""

    def __init__(self, d: int, m: int, init_std: float = 1e-2) -> None:
        super().__init__()
        self.down = nn.Linear(d, m)
        self.up = nn.Linear(m, d)
        self.act = nn.GELU()
        for layer in (self.down, self.up):
            nn.init.trunc_normal_(layer.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _add_adapters(model: nn.Module, bottleneck: int, train_layernorm: bool) -> None:
    d = model.config.hidden_size
    model.requires_grad_(False)
    for layer in model.encoder.layer:
        for out in (layer.attention.output, layer.output):  # BertSelfOutput and BertOutput
            adapter = HoulsbyAdapter(d, bottleneck).to(out.dense.weight.device, out.dense.weight.dtype)
            out.dropout = nn.Sequential(OrderedDict(dropout=out.dropout, adapter=adapter))
            if train_layernorm:
                out.LayerNorm.requires_grad_(True)


# ----------------------------------------------------------------------------------------------------------- apply
def _options(method: str, options: dict) -> dict:
    if method not in METHODS:
        raise ConfigError(f"text.peft: unknown PEFT method {method!r}; choose one of {METHODS}")
    return {**DEFAULTS[method], **options}


def apply(model: nn.Module, method: str, **options) -> nn.Module:
    """Make ``model`` (a transformers BERT-family ``BertModel``) train only what ``method`` trains.

    Options use peft's names and pass through to its config (``r``, ``lora_alpha``, ``target_modules``,
    ``init_r``, ``target_r``, ``total_step``, ``num_virtual_tokens``, ``prefix_projection``,
    ``encoder_hidden_size``, ``feedforward_modules``, ...); adapters take ``bottleneck`` and ``train_layernorm``.
    See the module docstring for what comes back and how to call it.
    """
    opts = _options(method, options)
    if method in ("full", "frozen", "bitfit") and options:
        raise ConfigError(f"text.peft_options: {method} takes no options, got {sorted(options)}")
    if method == "full":
        return model.requires_grad_(True)
    if method == "frozen":
        return model.requires_grad_(False)
    if method == "bitfit":
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("bias"))
        return model
    if method == "adapter":
        _add_adapters(model, **opts)
        return model

    import peft

    quiet_warnings()  # after the import: importing peft/transformers installs warning filters of its own

    if method == "lora":
        config = peft.LoraConfig(**opts)
    elif method == "adalora":
        if "total_step" not in opts:
            raise ValueError("adalora needs total_step (the number of optimiser steps the rank schedule spans)")
        config = peft.AdaLoraConfig(**opts)
    elif method == "ia3":
        config = peft.IA3Config(**opts)
    elif method == "prefix":
        config = peft.PrefixTuningConfig(task_type=peft.TaskType.FEATURE_EXTRACTION, **opts)
    else:  # prompt
        config = peft.PromptTuningConfig(task_type=peft.TaskType.FEATURE_EXTRACTION, **opts)
    return peft.get_peft_model(model, config)


# ------------------------------------------------------------------------------------------------- closed-form counts
@dataclass(frozen=True)
class Linear:
    """One linear layer of a BertModel, by its module path (as peft matches it) and shape."""

    name: str
    d_in: int
    d_out: int


def bert_linears(config, pooler: bool = True) -> list[Linear]:
    """The linear layers of a ``BertModel`` built from ``config``, named as ``named_modules`` names them."""
    d, ff = config.hidden_size, config.intermediate_size
    out = []
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        out += [Linear(p + f"attention.self.{n}", d, d) for n in ("query", "key", "value")]
        out += [Linear(p + "attention.output.dense", d, d), Linear(p + "intermediate.dense", d, ff)]
        out += [Linear(p + "output.dense", ff, d)]
    if pooler:
        out.append(Linear("pooler.dense", d, d))
    return out


def _targets(linears: list[Linear], target_modules) -> list[Linear]:
    """The layers peft adapts: a str is a full-match regex on the path ("all-linear" means all); a list matches a
    path exactly or as a dotted suffix."""
    if isinstance(target_modules, str):
        if target_modules.lower() == "all-linear":
            return linears
        return [lin for lin in linears if re.fullmatch(target_modules, lin.name)]
    return [
        lin for lin in linears if lin.name in target_modules or any(lin.name.endswith("." + t) for t in target_modules)
    ]


def total_parameters(config, pooler: bool = True) -> int:
    """All parameters of ``BertModel(config)``: embeddings, layers, pooler."""
    d, ff, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * d + 2 * d
    layer = 4 * (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * (2 * d)  # q,k,v,o; FFN in/out; two LayerNorms
    return embeddings + n_layers * layer + ((d * d + d) if pooler else 0)


def _shape_groups(layers: list[Linear]) -> str:
    """'24 x (768+768)' style summary of adapted layers grouped by shape."""
    groups: dict[tuple[int, int], int] = {}
    for lin in layers:
        groups[(lin.d_in, lin.d_out)] = groups.get((lin.d_in, lin.d_out), 0) + 1
    return " + ".join(f"{n} x ({a}+{b})" for (a, b), n in groups.items())


def explain(config, method: str, pooler: bool = True, **options) -> tuple[int, str]:
    """The closed-form trainable count for ``apply(BertModel(config), method, **options)`` and its formula as text."""
    opts = _options(method, options)
    unknown = set(options) - set(DEFAULTS[method]) - COUNT_NEUTRAL.get(method, set())
    if unknown:
        raise ValueError(f"expected_trainable does not model {method} options {sorted(unknown)}")
    d, ff, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linears = bert_linears(config, pooler)
    if method == "full":
        return total_parameters(config, pooler), "all parameters"
    if method == "frozen":
        return 0, "0 (only the caller's heads train)"
    if method == "bitfit":
        n = n_layers * (7 * d + ff) + d + (d if pooler else 0)
        text = f"{n_layers} x (7 x {d} + {ff}) + {d} (emb. LN)" + (f" + {d} (pooler)" if pooler else "")
        return n, text + " biases"
    if method == "lora":
        r, hit = opts["r"], _targets(linears, opts["target_modules"])
        return sum(r * (lin.d_in + lin.d_out) for lin in hit), f"{r} x [{_shape_groups(hit)}]"
    if method == "adalora":
        r, hit = opts["init_r"], _targets(linears, opts["target_modules"])
        n = sum(r * (lin.d_in + lin.d_out + 1) for lin in hit)
        return n, f"{r} x [{_shape_groups(hit)} + {len(hit)} (E)]"
    if method == "ia3":
        hit = _targets(linears, opts["target_modules"])
        ffm = opts["feedforward_modules"]
        is_ff = (
            (lambda name: bool(re.fullmatch(ffm, name)))
            if isinstance(ffm, str)
            else (lambda name: any(name.endswith(t) for t in ffm))
        )
        sizes = [lin.d_in if is_ff(lin.name) else lin.d_out for lin in hit]
        groups = {s: sizes.count(s) for s in dict.fromkeys(sizes)}
        return sum(sizes), " + ".join(f"{c} x {s}" for s, c in groups.items()) + " scaling vectors"
    if method == "adapter":
        m = opts["bottleneck"]
        per = 2 * m * d + d + m
        n = n_layers * 2 * per + (n_layers * 2 * 2 * d if opts["train_layernorm"] else 0)
        text = f"{n_layers} x 2 x (2 x {m} x {d} + {d} + {m})"
        return n, text + (f" + {n_layers} x 2 x 2 x {d} (LayerNorms)" if opts["train_layernorm"] else "")
    if method == "prefix":
        v = opts["num_virtual_tokens"]
        if not opts["prefix_projection"]:
            return v * n_layers * 2 * d, f"{v} tokens x {n_layers} layers x 2 (k,v) x {d}"
        h, kv = opts["encoder_hidden_size"] or d, n_layers * 2 * d
        text = f"{v} x {d} (emb.) + {d} x {h} + {h} + {h} x {kv} + {kv} (MLP)"
        return v * d + d * h + h + h * kv + kv, text
    v = opts["num_virtual_tokens"]  # prompt
    return v * d, f"{v} tokens x {d}"


def expected_trainable(config, method: str, pooler: bool = True, **options) -> int:
    """Closed-form trainable count for a BERT-family ``config`` (``pooler``: whether the model has its pooler)."""
    return explain(config, method, pooler, **options)[0]


# ------------------------------------------------------------------------------------------------ tables and traces
def _format_options(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "-"


def count_rows(model: nn.Module, cases: list[tuple[str, dict]]) -> list[dict]:
    """For each ``(method, options)``: apply it to a deep copy of ``model`` and put the count next to the closed form.

    ``percent`` is relative to the unmodified model's parameters (what "x% of the model" means in the papers).
    """
    pooler = getattr(model, "pooler", None) is not None
    base_total = count_parameters(model)[1]
    rows = []
    for method, options in cases:
        counted = count_parameters(apply(copy.deepcopy(model), method, **options))[0]
        expected, formula = explain(model.config, method, pooler, **options)
        rows.append(
            {
                "method": method,
                "options": _format_options(options),
                "formula": formula,
                "expected": expected,
                "counted": counted,
                "match": counted == expected,
                "percent": 100 * counted / base_total,
            }
        )
    return rows


def adapted_modules(model: nn.Module) -> list[str]:
    """Module paths (as in the unwrapped model) that peft replaced with an adapter layer: what a target name hit."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer)
    ]


def adalora_rank_trace(config, total_step: int, seed: int = 0, batch_size: int = 4, seq_len: int = 8, **options):
    """Train a small ``BertModel(config)`` with AdaLoRA on a fixed random regression target and record, per step,
    the scheduled rank budget and the ranks actually kept (from AdaLoRA's rank pattern).

    Returns ``{"step", "scheduled", "kept"}`` lists and ``final``: the kept rank of each adapted matrix at the end.
    """
    from transformers import BertModel

    torch.manual_seed(seed)
    model = apply(BertModel(config), "adalora", total_step=total_step, **options)
    model.train()
    ids = torch.randint(1, config.vocab_size, (batch_size, seq_len))
    target = torch.randn(batch_size, seq_len, config.hidden_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    allocator = model.base_model.rankallocator
    adapter = model.active_peft_config
    trace: dict = {"step": [], "scheduled": [], "kept": []}
    for step in range(total_step):
        out = model(input_ids=ids).last_hidden_state
        loss = (out - target).pow(2).mean() + extra_loss(model)
        loss.backward()
        opt.step()
        step_hook(model, step)
        opt.zero_grad()
        pattern = adapter.rank_pattern
        trace["step"].append(step)
        trace["scheduled"].append(allocator.budget_schedule(step)[0])
        trace["kept"].append(sum(sum(v) for v in pattern.values()) if pattern else allocator.init_bgt)
    trace["final"] = {name: sum(mask) for name, mask in (adapter.rank_pattern or {}).items()}
    return trace
