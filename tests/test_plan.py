"""The lazy plan (harness.plan.Plan): its batches are a pure function of
the matrix, the cases per entry and the shard, computed without being
generated; shards partition the run; every entry's first case comes
before any entry's second (coverage first)."""
from __future__ import annotations

import pytest

from harness.matrix import build_matrix
from harness.plan import Plan, _count_solutions
from reference.arch import Arch

ARENA = (0x48000000, 0x80000000)
ENTRIES = build_matrix(arch=Arch.AARCH64, cpus=["cortex-a57", "max"])


@pytest.mark.parametrize("step, modulus", [(s, m) for s in range(1, 12) for m in range(1, 9)])
def test_count_solutions_counts(step, modulus):
    for target in range(modulus):
        for limit in range(0, 30):
            assert _count_solutions(step, target, modulus, limit) == \
                sum(1 for r in range(limit) if r * step % modulus == target)


@pytest.mark.parametrize("entries, max_images", [(ENTRIES, 5), (ENTRIES[:3], 400),
                                                 (ENTRIES[:1], 400), (ENTRIES[:7], 3)],
                         ids=["many-chunks", "one-chunk", "one-entry", "small-batches"])
@pytest.mark.parametrize("cases", [1, 2, 5, 13])
def test_plan_sizes_shards_and_order(entries, max_images, cases):
    full = Plan.of(entries, cases, ARENA, max_images)
    batches = list(full)
    # By number, except the last round block (when not the first), which
    # runs its costliest chunks first: the workers finish together.
    last = (full.blocks - 1) * len(full.chunks) if full.blocks > 1 else full.total_batches
    numbers = [b.number for b in batches]
    assert numbers[:last] == list(range(last))
    assert sorted(numbers) == list(range(full.total_batches))
    costs = [sum(s.entry.cost_estimate(0) for s in b.specs) for b in batches[last:]]
    assert costs == sorted(costs, reverse=True)
    assert full.batches == len(batches)
    assert full.cases == sum(len(b.specs) for b in batches)
    keys = sorted(s.key for b in batches for s in b.specs)
    assert keys == sorted(f"{e.name}#{r}" for e in entries for r in range(cases))
    for n in (1, 2, 3, 7):
        union = []
        for k in range(1, n + 1):
            shard = Plan.of(entries, cases, ARENA, max_images, (k, n))
            mine = list(shard)
            assert shard.batches == len(mine)
            assert shard.cases == sum(len(b.specs) for b in mine)
            assert all(b.number % n == k - 1 for b in mine)
            union += [s.key for b in mine for s in b.specs]
        assert sorted(union) == keys
    # Coverage first: in the order batches are taken, every first case
    # comes before any second case.
    order = [s for b in batches for s in b.specs]
    firsts = [i for i, s in enumerate(order) if s.index == 0]
    seconds = [i for i, s in enumerate(order) if s.index == 1]
    if seconds:
        assert max(firsts) < min(seconds)


def test_a_huge_plan_costs_what_a_small_one_does():
    """10^5 cases per entry of the nightly matrix: sizes are computed, and
    the first batch is there, without generating the others.  (No timed
    assertion: the check is that nothing proportional to the cases is
    built -- the plan holds one round of chunks.)"""
    matrix = build_matrix()
    shards = [Plan.of(matrix, 100_000, ARENA, 2, (k, 3)) for k in (1, 2, 3)]
    assert sum(p.cases for p in shards) == 100_000 * len(matrix)
    assert sum(p.batches for p in shards) == shards[0].total_batches
    assert len(shards[0].chunks) <= len(matrix)
    first = next(iter(shards[1]))
    assert first.number == 1 and {s.index for s in first.specs} == {0}
