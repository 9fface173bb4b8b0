"""The two-stream variant: a frozen pretrained encoder's prompt features, computed once, fused by a small encoder."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from tvgkit.config import ConfigError
from tvgkit.grounding.build import build_model
from tvgkit.grounding.model import GroundingModel, ModelConfig
from tvgkit.grounding.presets import preset
from tvgkit.grounding.text import FrozenTextFeatures, train_wordpiece

PAD = 0


def _pretrained(vocab: int = 40) -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48)
    return BertModel(cfg, add_pooling_layer=False)


def _ids() -> torch.Tensor:
    return torch.tensor([[2, 7, 8, 9, 3], [2, 11, 3, PAD, PAD], [2, 7, 8, 9, 3]])


def test_features_are_the_frozen_encoders_states_computed_once_per_prompt():
    encoder = _pretrained()
    calls = []
    encoder.register_forward_hook(lambda m, i, o: calls.append(1))
    stream = FrozenTextFeatures(encoder, hidden=16, pad_token_id=PAD)
    feats = stream.features(_ids())
    assert feats.shape == (3, 5, 24) and len(calls) == 1 and len(stream.cache) == 2  # rows 0 and 2 are one prompt
    with torch.no_grad():
        alone = encoder(input_ids=torch.tensor([[2, 11, 3]])).last_hidden_state[0]
    torch.testing.assert_close(feats[1, :3], alone, rtol=0, atol=1e-5)  # padding does not change a prompt's states
    assert torch.equal(feats[1, 3:], torch.zeros(2, 24)) and torch.equal(feats[0], feats[2])
    calls.clear()
    assert torch.equal(stream.features(_ids()), feats) and not calls  # second call: all from the cache
    assert stream(_ids()).shape == (3, 5, 16)


def test_only_the_projection_trains_and_the_encoder_stays_in_eval_mode():
    encoder = _pretrained()
    encoder.config.hidden_dropout_prob = 0.5
    torch.manual_seed(1)
    fusion = BertModel(
        BertConfig(vocab_size=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
        add_pooling_layer=False,
    )
    stream = FrozenTextFeatures(encoder, hidden=16, pad_token_id=PAD)
    model = GroundingModel(ModelConfig(), fusion, 7, mask_token_id=4, text=stream).train()
    assert not stream.encoder.training and all(not p.requires_grad for p in stream.encoder.parameters())
    video_mask = torch.ones(3, 6, dtype=torch.long)
    out = model(torch.randn(3, 6, 7), video_mask, _ids(), (_ids() != PAD).long())
    sum(v.float().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in stream.project.parameters())
    assert all(p.grad is None for p in stream.encoder.parameters())


@pytest.fixture
def pretrained_folder(tmp_path):
    """A tiny 'pretrained' BERT with its tokenizer, saved as a hub folder would be."""
    words = ["the red ball moves left", "a blue square grows", "starts at time and ends"]
    tokenizer = BertTokenizer.from_pretrained(str(train_wordpiece(words, 200, tmp_path / "vocab")))
    _pretrained(len(tokenizer)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model", tokenizer


def test_build_model_two_stream_fuses_with_a_small_random_encoder(pretrained_folder):
    folder, tokenizer = pretrained_folder
    cfg = preset("tiny", [f"text.encoder={folder}", "text.two_stream=true"])
    model, tok = build_model(cfg, [], feature_dim=7)
    assert len(tok) == len(tokenizer) and isinstance(model.word_embeddings, FrozenTextFeatures)
    assert model.encoder.config.hidden_size == cfg.text.hidden == 32 and model.encoder.config.num_hidden_layers == 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("word_embeddings.encoder.") or "word_embeddings.weight" in n for n in trainable)
    assert {n for n in trainable if n.startswith("word_embeddings.")} == {
        "word_embeddings.project.0.weight",
        "word_embeddings.project.0.bias",
        "word_embeddings.project.1.weight",
        "word_embeddings.project.1.bias",
    }
    assert model.encoder.get_input_embeddings().weight.shape == (1, 32)  # the unused table is one row


@pytest.mark.parametrize("overrides", [["text.two_stream=true"], ["text.two_stream=true", "text.peft=lora"]])
def test_two_stream_refuses_a_random_encoder_or_peft(pretrained_folder, overrides):
    folder, _ = pretrained_folder
    if "text.peft=lora" in overrides:
        overrides = [*overrides, f"text.encoder={folder}"]
    with pytest.raises(ConfigError, match="two_stream"):
        build_model(preset("tiny", overrides), [], feature_dim=7)
