"""The worker's text-mention finder: the shipped alias table loaded once, turned into the store's records."""

from __future__ import annotations

from collections.abc import Callable

from carspot.mentions.aliases import load_aliases
from carspot.mentions.matcher import find_mentions
from carspot.store.records import MentionRecord

MentionFinder = Callable[[str | None], tuple[MentionRecord, ...]]


def mention_finder() -> MentionFinder:
    """Load the alias table now (start-up) and return the pure finder the worker calls per post."""
    table = load_aliases()

    def find(text: str | None) -> tuple[MentionRecord, ...]:
        return tuple(MentionRecord(make=m.make, via=m.via.value) for m in find_mentions(text, table=table))

    return find
