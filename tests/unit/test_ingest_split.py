"""The chunking policy: token balance, shared-prefix grouping, request-count bounds (pure function)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from orca.ingest.split import chunk_count, split_chunks


def _check_partition(chunks, n):
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(n))  # every request exactly once
    for c in chunks:
        assert np.all(np.diff(c) > 0)  # ascending within a chunk
    assert [int(c[0]) for c in chunks] == sorted(int(c[0]) for c in chunks)


def test_balanced_by_tokens_not_line_count():
    # First half: 100 heavy requests; second half: 900 light ones, same total tokens.
    tokens = np.array([900] * 100 + [100] * 900)
    chunks = split_chunks(tokens, np.arange(1000), budget=18_000, max_requests=10_000)
    _check_partition(chunks, 1000)
    assert len(chunks) == 10
    sums = [int(tokens[c].sum()) for c in chunks]
    assert max(sums) <= 1.1 * min(sums)
    sizes = [len(c) for c in chunks]
    assert min(sizes) == 20 and max(sizes) == 180  # same tokens, very different line counts


def test_shared_prefix_groups_land_in_one_chunk():
    rng = np.random.default_rng(0)
    prefixes = rng.integers(0, 4, 400)  # four system prompts, interleaved
    tokens = np.full(400, 100)
    chunks = split_chunks(tokens, prefixes, budget=10_000, max_requests=10_000)
    assert len(chunks) == 4
    _check_partition(chunks, 400)
    groups_per_chunk = [len(set(prefixes[c].tolist())) for c in chunks]
    # each group is about one chunk's worth: at most a boundary split shares a chunk
    assert sum(groups_per_chunk) <= 4 + 3


def test_groups_do_not_unbalance_chunks():
    prefixes = np.array([0] * 300 + list(range(1, 101)))  # one huge group and 100 singletons
    tokens = np.full(400, 10)
    chunks = split_chunks(tokens, prefixes, budget=1000, max_requests=10_000, slack=0.1)
    sums = [int(tokens[c].sum()) for c in chunks]
    assert len(chunks) == 4 and max(sums) <= 1.1 * 1000 and min(sums) >= 0.9 * 1000


def test_cut_moves_to_group_boundary_within_slack():
    # groups of 52 and 48 equal requests; two chunks: the cut moves from 50 to the boundary at 52.
    prefixes = np.array([1] * 52 + [2] * 48)
    chunks = split_chunks(np.full(100, 10), prefixes, budget=500, max_requests=10_000, slack=0.1)
    assert [len(c) for c in chunks] == [52, 48]
    chunks = split_chunks(np.full(100, 10), prefixes, budget=500, max_requests=10_000, slack=0.01)
    assert [len(c) for c in chunks] == [50, 50]


def test_request_count_bounds():
    assert chunk_count(10**9, 100, 1000, min_requests=16, max_requests=2000) == 6  # min_requests caps
    assert chunk_count(10, 10_000, 10**9, min_requests=16, max_requests=2000) == 5  # max_requests forces
    chunks = split_chunks(np.ones(10_000, int), np.arange(10_000), budget=10**9, max_requests=2000)
    assert [len(c) for c in chunks] == [2000] * 5
    assert split_chunks(np.zeros(0, int), np.zeros(0, int), budget=5) == []
    assert [c.tolist() for c in split_chunks(np.array([5]), np.array([1]), budget=1)] == [[0]]


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 5)), min_size=1, max_size=300),
       st.integers(100, 50_000), st.integers(1, 50))
def test_partition_and_balance_properties(reqs, budget, max_requests):
    tokens = np.array([t for t, _ in reqs])
    prefixes = np.array([p for _, p in reqs])
    chunks = split_chunks(tokens, prefixes, budget=budget, min_requests=1, max_requests=max_requests)
    _check_partition(chunks, len(reqs))
    assert all(len(c) <= max_requests for c in chunks)
    k = chunk_count(int(tokens.sum()), len(reqs), budget, 1, max_requests)
    assert len(chunks) >= k
    # no chunk is heavier than its share plus slack plus one request
    assert max(int(tokens[c].sum()) for c in chunks) <= tokens.sum() / k * 1.1 + tokens.max()
