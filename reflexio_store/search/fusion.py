"""Reciprocal rank fusion of a full-text ranking and a vector ranking."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60


def reciprocal_rank_fusion(
    text_ranked: Sequence[K],
    vector_ranked: Sequence[K],
    *,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    k: int = RRF_K,
) -> list[tuple[K, float]]:
    """Fuse two best-first lists of keys: score = w_t/(k + rank_t) + w_v/(k + rank_v).

    Ranks start at 1. A key missing from one list ranks just past that list's end
    (len(list) + 1). Returns (key, score) best first; ties keep vector order, then text order.
    """
    text_rank = {key: i for i, key in enumerate(text_ranked, start=1)}
    vector_rank = {key: i for i, key in enumerate(vector_ranked, start=1)}
    text_missing = len(text_ranked) + 1
    vector_missing = len(vector_ranked) + 1
    order: dict[K, int] = {}
    for key in (*vector_ranked, *text_ranked):
        order.setdefault(key, len(order))
    scored = [
        (
            key,
            text_weight / (k + text_rank.get(key, text_missing))
            + vector_weight / (k + vector_rank.get(key, vector_missing)),
        )
        for key in order
    ]
    scored.sort(key=lambda pair: (-pair[1], order[pair[0]]))
    return scored
