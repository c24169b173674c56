"""Text mentions as evidence for the picture: a make the post names that is in the image's top-5 goes first.

The classifier's order stays for the rest, and a named make outside the top-5 changes nothing (the text may be
about another car than the one in the picture). ``CARSPOT_RANK_TEXT_MENTIONS`` turns it off.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def rerank(makes: Sequence[str], named: Collection[str]) -> list[str]:
    """``makes`` (best first) with those in ``named`` moved to the front, each group in its original order."""
    first = [m for m in makes if m in named]
    return first + [m for m in makes if m not in named]
