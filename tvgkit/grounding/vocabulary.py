"""The words a run was trained on, so that ``predict`` can say when a query's words were never seen.

Why: a grounding model answers any sentence with ranked spans and scores, even one made only of words it never
read in training (on the synthetic set, "a person rides a bike"); its scores then mean nothing, and the user must
be told. Words are split and lower-cased exactly as the BERT tokenizers do (``tokenizers``' normaliser and
pre-tokeniser), and punctuation is not a word. A piece the tokenizer turns into its unknown token (an emoji, a script
its vocabulary lacks) is reported too, whatever it is: the model reads nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

FILE = "vocabulary.txt"


def pieces(text: str) -> list[str]:
    """``text`` lower-cased and split as BERT does: words, each CJK character, each punctuation mark or symbol."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    return [p for p, _ in BertPreTokenizer().pre_tokenize_str(BertNormalizer(lowercase=True).normalize_str(text))]


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (BERT's normalisation and splitting; punctuation dropped)."""
    return [w for w in pieces(text) if any(c.isalnum() for c in w)]


def save_vocabulary(queries: Iterable[str], run_dir: str | Path) -> Path:
    """Write the sorted set of words of the training ``queries`` to ``run_dir/vocabulary.txt``."""
    path = Path(run_dir) / FILE
    path.write_text("\n".join(sorted({w for q in queries for w in words(q)})) + "\n")
    return path


def load_vocabulary(run_dir: str | Path, tokenizer=None) -> set[str] | None:
    """A run's training words; for a run from before ``vocabulary.txt`` existed, the whole words of its WordPiece
    vocabulary (``tokenizer``; trained on the training queries and prompts); None when neither is known."""
    path = Path(run_dir) / FILE
    if path.exists():
        return set(path.read_text().split())
    if tokenizer is None or not hasattr(tokenizer, "vocab") or len(tokenizer.vocab) > 5000:
        return None  # a pretrained encoder's vocabulary says nothing about what the run was trained on
    return {w for w in tokenizer.vocab if not w.startswith(("##", "[")) and len(w) > 1}


def unseen_words(query: str, vocabulary: set[str]) -> list[str]:
    """The words of ``query`` that are not in ``vocabulary``, in order, each once."""
    return list(dict.fromkeys(w for w in words(query) if w not in vocabulary))


def unknown_pieces(query: str, tokenizer) -> list[str]:
    """The pieces of ``query`` that ``tokenizer`` maps to its unknown token (``[UNK]``), in order, each once; emoji
    and other symbols are not words, so :func:`unseen_words` alone never names them."""
    unknown = tokenizer.unk_token
    return list(dict.fromkeys(p for p in pieces(query) if unknown is not None and unknown in tokenizer.tokenize(p)))
