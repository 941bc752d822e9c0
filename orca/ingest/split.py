"""Chunking policy (pure): requests in, chunks out, balanced by estimated tokens.

``split_chunks`` takes one token estimate and one prefix hash per request and a token budget
per chunk (the caller derives it from ``target_chunk_s`` and a reference throughput). It

1. picks the number of chunks: enough that each holds about ``budget`` tokens and at most
   ``max_requests`` requests, few enough that each holds at least ``min_requests`` requests;
2. orders requests so that those sharing a prompt prefix are adjacent (groups in order of
   their first request, input order inside a group), which lets an engine's prefix cache
   serve a whole group;
3. cuts that order into chunks of equal tokens, moving a cut to the nearest group boundary
   when that keeps the chunk within ``slack`` of the target, so groups stay whole where
   that does not unbalance chunks.

Each chunk is returned as ascending request indices; chunks are ordered by their first index.
"""

from __future__ import annotations

import math

import numpy as np


def chunk_count(total_tokens: int, n: int, budget: int, min_requests: int, max_requests: int) -> int:
    """How many chunks ``n`` requests of ``total_tokens`` tokens need."""
    if n == 0:
        return 0
    k = max(1, math.ceil(total_tokens / max(1, budget)))
    k = min(k, max(1, n // max(1, min_requests)))
    return max(k, math.ceil(n / max_requests))


def prefix_order(prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a permutation that makes equal prefixes adjacent, a bool per position: a new group starts here)."""
    n = len(prefixes)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    _, first, inverse = np.unique(prefixes, return_index=True, return_inverse=True)
    # Rank of each group by its first request, so groups keep their first appearance order.
    group_key = first[inverse.reshape(-1)]
    order = np.argsort(group_key, kind="stable")
    keys = group_key[order]
    starts = np.empty(n, bool)
    starts[0] = True
    starts[1:] = keys[1:] != keys[:-1]
    return order, starts


def split_chunks(tokens: np.ndarray, prefixes: np.ndarray, budget: int, min_requests: int = 1,
                 max_requests: int = 2_000, slack: float = 0.1) -> list[np.ndarray]:
    """Split requests into token-balanced chunks that keep shared-prefix groups together (see module doc)."""
    tokens = np.asarray(tokens, np.int64)
    n = len(tokens)
    if n == 0:
        return []
    k = chunk_count(int(tokens.sum()), n, budget, min_requests, max_requests)
    order, group_starts = prefix_order(np.asarray(prefixes))
    cum = np.cumsum(tokens[order])  # cum[i]: tokens of order[:i+1]
    total = int(cum[-1])
    target = total / k
    boundaries = np.flatnonzero(group_starts)  # positions where a group starts (a cut there keeps groups whole)
    cuts = [0]
    for j in range(1, k):
        ideal = j * target
        pos = int(np.searchsorted(cum, ideal, side="left")) + 1  # cut after the request that crosses ideal
        pos = min(max(pos, cuts[-1] + 1), n - (k - j))
        b = int(np.searchsorted(boundaries, pos))
        best = None
        for cand in (boundaries[b - 1] if b > 0 else None, boundaries[b] if b < len(boundaries) else None):
            if cand is None or cand <= cuts[-1] or cand > n - (k - j):
                continue
            if abs(float(cum[cand - 1]) - ideal) <= slack * target and (best is None or abs(cand - pos) < abs(best - pos)):
                best = int(cand)
        cuts.append(best if best is not None else pos)
    cuts.append(n)
    chunks: list[np.ndarray] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        part = order[a:b]
        for piece in np.array_split(part, math.ceil(len(part) / max_requests)):
            chunks.append(np.sort(piece))
    chunks.sort(key=lambda c: int(c[0]))
    return chunks
