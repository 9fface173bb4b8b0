"""tvgkit.lessons.peft: every method's trainable count equals its closed form on full-size BERT-base, and the methods
behave as the papers describe (LoRA starts as the identity update, adapters near it, prompts lengthen the
sequence, prefixes change attention, AdaLoRA prunes its rank budget)."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from transformers import BertConfig, BertModel

from tvgkit.lessons import peft as tp

IA3_PAPER = {  # the IA3 paper's l_k, l_v, l_ff: the FFN output projection only, not attention.output.dense
    "target_modules": r".*\.(key|value)|.*layer\.\d+\.output\.dense",
    "feedforward_modules": r".*layer\.\d+\.output\.dense",
}
CASES = [
    ("full", {}),
    ("frozen", {}),
    ("bitfit", {}),
    ("lora", {}),
    ("lora", {"r": 2, "target_modules": ["query", "key", "value"]}),
    ("lora", {"r": 4, "target_modules": ["query", "value", "dense"]}),  # "dense" also hits pooler.dense
    ("lora", {"r": 8, "target_modules": "all-linear"}),
    ("adalora", {"total_step": 100}),
    ("adalora", {"init_r": 6, "target_r": 2, "total_step": 50, "target_modules": ["query", "value", "dense"]}),
    ("ia3", {}),
    ("ia3", IA3_PAPER),
    ("adapter", {}),
    ("adapter", {"bottleneck": 8, "train_layernorm": False}),
    ("adapter", {"bottleneck": 256}),
    ("prefix", {}),
    ("prefix", {"num_virtual_tokens": 50}),
    ("prefix", {"num_virtual_tokens": 10, "prefix_projection": True}),
    ("prefix", {"num_virtual_tokens": 50, "prefix_projection": True, "encoder_hidden_size": 512}),
    ("prompt", {}),
    ("prompt", {"num_virtual_tokens": 100}),
]


@pytest.fixture(scope="module")
def bert_base() -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig())


@pytest.mark.parametrize(("method", "options"), CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_count_equals_closed_form_on_bert_base(bert_base, method, options):
    model = tp.apply(copy.deepcopy(bert_base), method, **options)
    trainable, total = tp.count_parameters(model)
    assert trainable == tp.expected_trainable(bert_base.config, method, **options)
    assert total >= tp.total_parameters(bert_base.config)


def test_hand_computed_reference_counts():
    base = BertConfig()
    assert tp.total_parameters(base) == 109_482_240
    assert tp.expected_trainable(base, "bitfit") == 102_912  # BitFit paper: 0.094% of BERT-base
    assert round(100 * 102_912 / 109_482_240, 3) == 0.094
    assert tp.expected_trainable(base, "lora", r=8) == 12 * 2 * 2 * 8 * 768  # 294,912: the LoRA paper's "0.3M"
    assert tp.expected_trainable(base, "prefix", num_virtual_tokens=50) == 921_600  # not "50 x 12 = 600"
    m, d = 64, 768
    assert tp.expected_trainable(base, "adapter", bottleneck=m, train_layernorm=False) == 24 * (2 * m * d + d + m)
    assert tp.expected_trainable(base, "prompt", num_virtual_tokens=20) == 20 * 768
    minilm = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    assert tp.total_parameters(minilm) == 22_713_216


def test_options_that_do_not_change_the_count_are_accepted_others_rejected():
    base = BertConfig()
    assert tp.expected_trainable(base, "lora", lora_alpha=32, lora_dropout=0.1) == tp.expected_trainable(base, "lora")
    with pytest.raises(ValueError, match="does not model"):
        tp.expected_trainable(base, "lora", bias="all")
    with pytest.raises(ValueError, match="unknown PEFT method"):
        tp.expected_trainable(base, "qlora")


TINY = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def tiny(pooler: bool = True) -> BertModel:
    torch.manual_seed(0)
    return BertModel(TINY, add_pooling_layer=pooler).eval()


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(1, 100, (2, 7), generator=g),
        "attention_mask": torch.ones(2, 7, dtype=torch.long),
    }


def hidden(model) -> torch.Tensor:
    return model(**batch()).last_hidden_state


def test_counts_match_without_pooler_on_a_small_model():
    for method, options in [("full", {}), ("bitfit", {}), ("lora", {"target_modules": "all-linear"})]:
        model = tp.apply(tiny(pooler=False), method, **options)
        assert tp.count_parameters(model)[0] == tp.expected_trainable(TINY, method, pooler=False, **options)


def test_frozen_and_full():
    assert tp.count_parameters(tp.apply(tiny(), "frozen"))[0] == 0
    trainable, total = tp.count_parameters(tp.apply(tiny(), "full"))
    assert trainable == total == tp.total_parameters(TINY)


def test_lora_starts_as_the_base_model_and_does_not_lengthen():
    with torch.no_grad():
        base = hidden(tiny())
        model = tp.apply(tiny(), "lora", r=4)
        torch.testing.assert_close(hidden(model), base)  # B = 0 at init: W + BA = W
    assert tp.prepended_tokens(model) == 0


def test_adapters_start_near_identity_and_train_layernorms():
    with torch.no_grad():
        base = hidden(tiny())
        model = tp.apply(tiny(), "adapter", bottleneck=8)
        diff = (hidden(model) - base).abs().max().item()
    assert 0 < diff < 0.05
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "encoder.layer.0.output.dropout.adapter.down.weight" in names
    assert "encoder.layer.1.attention.output.LayerNorm.weight" in names
    assert "embeddings.LayerNorm.weight" not in names
    assert not any("query" in n for n in names)


def test_prompt_tuning_prepends_virtual_tokens():
    model = tp.apply(tiny(), "prompt", num_virtual_tokens=5)
    assert tp.prepended_tokens(model) == 5
    assert hidden(model).shape == (2, 7 + 5, 32)


def test_prefix_changes_attention_not_length_and_gets_gradients():
    with torch.no_grad():
        base = hidden(tiny())
    for projection in (False, True):
        model = tp.apply(tiny(), "prefix", num_virtual_tokens=4, prefix_projection=projection)
        out = hidden(model)
        assert out.shape == base.shape and tp.prepended_tokens(model) == 0
        assert (out - base).abs().max().item() > 1e-3
        out.pow(2).mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_adalora_step_hook_prunes_to_target_budget_and_others_are_no_ops():
    model = tp.apply(tiny(), "adalora", init_r=4, target_r=1, total_step=12, tinit=2, tfinal=3, deltaT=1)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(12):
        loss = hidden(model).pow(2).mean() + tp.extra_loss(model)
        loss.backward()
        opt.step()
        tp.step_hook(model, step)
        opt.zero_grad()
    kept = sum(int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n)
    assert kept == 1 * 4  # target_r x 4 adapted matrices (q, v in two layers)
    assert tp.extra_loss(model).item() > 0
    lora = tp.apply(tiny(), "lora")
    tp.step_hook(lora, 0)  # no-op
    assert tp.extra_loss(lora) == 0.0


def test_adalora_without_total_step_is_a_clear_error():
    with pytest.raises(ValueError, match="total_step"):
        tp.apply(tiny(), "adalora")


def test_count_rows_and_adapted_modules_on_a_small_model():
    rows = tp.count_rows(tiny(), [("lora", {"target_modules": ["query", "dense"]}), ("prompt", {})])
    assert [r["match"] for r in rows] == [True, True]
    assert rows[1]["counted"] == 20 * 32 and rows[1]["options"] == "-"
    hit = tp.adapted_modules(tp.apply(tiny(), "lora", target_modules=["query", "dense"]))
    assert "pooler.dense" in hit and len(hit) == 2 * 4 + 1  # query, attention.output, intermediate, output; pooler


def test_adalora_rank_trace_follows_the_schedule_to_the_target():
    trace = tp.adalora_rank_trace(TINY, total_step=16, init_r=4, target_r=1, tinit=3, tfinal=4, deltaT=2)
    assert trace["scheduled"][0] == trace["kept"][0] == 4 * 4  # init_r x (q, v in two layers)
    assert trace["kept"][-1] == sum(trace["final"].values()) == 4
    assert all(a >= b for a, b in itertools.pairwise(trace["kept"]))  # the budget only shrinks
