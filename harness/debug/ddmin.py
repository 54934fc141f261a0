"""Delta debugging (Zeller's ddmin), the shrink passes' fallback."""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def ddmin(items: Sequence[T], test_round: Callable[[list[list[T]]], list[bool]],
          budget: int, batched: bool) -> tuple[list[T], bool]:
    """A 1-minimal subset of ``items`` for which the test holds, by Zeller's
    ddmin: the test is known to hold for ``items`` and to fail for the empty
    set.  ``test_round`` checks a list of candidate subsets; with
    ``batched`` a whole round (every chunk, then every complement) is checked
    in one call, otherwise one candidate per call until one holds.
    ``budget``: at most that many candidates.  Returns (subset, finished)."""
    current = list(items)
    n = 2
    spent = 0
    while len(current) >= 2:
        size = -(-len(current) // n)
        chunks = [current[i:i + size] for i in range(0, len(current), size)]
        complements = ([[x for c in chunks if c is not d for x in c] for d in chunks]
                       if len(chunks) > 2 else [])
        candidates = chunks + complements
        hit = None
        if batched:
            if spent + len(candidates) > budget:
                return current, False
            spent += len(candidates)
            results = test_round(candidates)
            hit = next((k for k, ok in enumerate(results) if ok), None)
        else:
            for k, cand in enumerate(candidates):
                if spent >= budget:
                    return current, False
                spent += 1
                if test_round([cand])[0]:
                    hit = k
                    break
        if hit is not None:
            current = candidates[hit]
            n = 2 if hit < len(chunks) else max(n - 1, 2)
        elif n >= len(current):
            break
        else:
            n = min(2 * n, len(current))
    return current, True
