"""Demo embedder — not a language model.

Feature hashing of word unigrams and character trigrams into `dimensions` signed buckets,
L2-normalised. Texts that share words (or word fragments) get a high cosine similarity, which is
all the demo and the tests need to show vector and hybrid search working end to end, with no
download and no model weights. Its vectors carry no meaning beyond surface overlap: use a real
embedding model in production (the store never calls one; callers pass vectors).

blake2b rather than `hash()`: Python salts `hash()` per process, and the demo must produce the
same vectors in every process (a stored vector must match a query vector computed later).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_DIMENSIONS", "HashingEmbedder"]

DEFAULT_DIMENSIONS = 512

_WORD = re.compile(r"[a-z0-9]+")
# Words that occur in almost every text would pull unrelated texts together.
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "was",
        "with",
    }
)
# Whole words should dominate fragments: "dark mode" must match "dark mode" before "darker".
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.35

FloatArray = npt.NDArray[np.float32]


@lru_cache(maxsize=200_000)
def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    # The lowest bit picks the sign so that colliding features cancel out on average
    # instead of adding up (the "hashing trick" with signed buckets).
    sign = 1.0 if value & 1 else -1.0
    return (value >> 1) % dimensions, sign


def _features(text: str) -> Iterable[tuple[str, float]]:
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        yield "w:" + word, _WORD_WEIGHT
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            yield "t:" + padded[i : i + 3], _TRIGRAM_WEIGHT


class HashingEmbedder:
    """Demo embedder — not a language model. Deterministic across processes and machines."""

    def __init__(self, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        if dimensions < 8:
            raise ValueError("dimensions must be at least 8")
        self.dimensions = dimensions

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimensions={self.dimensions}) # demo embedder, not a model"

    def embed(self, text: str) -> FloatArray:
        """One L2-normalised float32 vector of length `dimensions`."""
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for feature, weight in _features(text):
            index, sign = _bucket(feature, self.dimensions)
            vector[index] += sign * weight
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            # The store refuses all-zero vectors (cosine is undefined); an empty or all-stopword
            # text gets a fixed unit vector instead, the same one every time.
            index, sign = _bucket("<empty>", self.dimensions)
            vector[index] = sign
            return vector
        vector /= norm
        return vector

    def embed_many(self, texts: Sequence[str]) -> FloatArray:
        """A (len(texts), dimensions) float32 matrix, one normalised row per text."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self.embed(text)
        return out

    @staticmethod
    def similarity(a: Any, b: Any) -> float:
        """Cosine similarity of two vectors this embedder produced (they are unit length)."""
        return float(np.dot(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)))
