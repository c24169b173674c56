"""Which makes a post's text names: pure functions over an :class:`~carspot.mentions.aliases.AliasTable`.

The text is normalised (case, accents), cut into whole words, and read left to right taking the longest alias
at each word, so "Harrison Ford" (blocked) is consumed before "Ford" could match, and "Land Rover" before "Rover".
Hashtags and handles are read as one word run together: ``#MercedesBenz`` is an alias as such, and a hashtag that
starts with a brand name is split when what follows is a number, one of the make's own aliases, or a common
suffix (``#mazda3``, ``#vwgolf``, ``#bmwlife``); ``#audience`` is not Audi. Weak aliases ("smart", "mini",
"Jaguar", "Genesis") count only in a post about cars: a car word, an unambiguous alias of any make, two weak
aliases of the same make ("Dodge Challenger"), or an @handle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from carspot.mentions.aliases import Alias, AliasTable, Kind, normalise

_TOKEN: Final = re.compile(r"([#@])(\w+)|([a-z0-9]+)")


def _words(text: str) -> list[str]:
    return text.split()


CAR_WORDS: Final = frozenset(
    _words(
        """
    car cars auto autos automobile automotive drive drives driving drove driven driver ride rides engine engines
    horsepower hp bhp torque mpg mph kmh dealer dealership showroom vehicle vehicles suv suvs sedan saloon coupe
    convertible cabriolet roadster hatchback hatch wagon pickup truck trucks 4x4 awd 4wd v6 v8 v10 v12 turbo
    supercar supercars hypercar motor motors garage parked parking wheels rims exhaust gearbox petrolhead
    carspotting carsofinstagram carporn cargram carlifestyle carshow carmeet roadtrip testdrive lease tyres tires
    headlights bumper hood bonnet trunk
    """
    )
)
"""Words that make a post about cars, so that its weak aliases count (normalised, whole words or hashtags)."""

SUFFIXES: Final = frozenset(
    _words(
        """
    club clubs love lover lovers life lifestyle gram nation family fam owners owner official sport sports usa uk
    de fr it jp japan daily gang world squad community tuning style power team racing motorsport performance fans
    nation addict addicts spotting spotted photography
    """
    )
)
"""What may follow a brand name in one hashtag or handle: ``#bmwlife``, ``@ToyotaUSA``."""


class Via(StrEnum):
    """Where the text names the make, strongest first."""

    HANDLE = "handle"
    HASHTAG = "hashtag"
    NAME = "name"
    MODEL = "model"


_STRENGTH: Final = {Via.HANDLE: 0, Via.HASHTAG: 1, Via.NAME: 2, Via.MODEL: 3}


@dataclass(frozen=True, slots=True)
class Mention:
    """A make the text names, how (the strongest way it does), and the alias that named it, as in the table."""

    make: str
    via: Via
    alias: str


@dataclass(frozen=True, slots=True)
class _Hit:
    alias: Alias
    via: Via


def find_mentions(text: str | None, *, table: AliasTable) -> tuple[Mention, ...]:
    """The makes ``text`` names, one :class:`Mention` per make, sorted by make."""
    if not text:
        return ()
    hits, car_words = _scan(normalise(text), table)
    if not hits:
        return ()
    about_cars = car_words or any(h.alias.kind is not Kind.WEAK for h in hits)
    weak_aliases: dict[str, set[str]] = {}
    for h in hits:
        if h.alias.kind is Kind.WEAK:
            weak_aliases.setdefault(h.alias.make, set()).add(h.alias.text)
    best: dict[str, _Hit] = {}
    for h in hits:
        counts = (
            h.alias.kind is not Kind.WEAK
            or h.via is Via.HANDLE
            or about_cars
            or len(weak_aliases.get(h.alias.make, ())) >= 2
        )
        if counts:
            held = best.get(h.alias.make)
            if held is None or _STRENGTH[h.via] < _STRENGTH[held.via]:
                best[h.alias.make] = h
    return tuple(Mention(make=m, via=h.via, alias=h.alias.text) for m, h in sorted(best.items()))


def mentioned_makes(text: str | None, *, table: AliasTable) -> frozenset[str]:
    """Just the makes :func:`find_mentions` finds."""
    return frozenset(m.make for m in find_mentions(text, table=table))


def _scan(normalised: str, table: AliasTable) -> tuple[list[_Hit], bool]:
    """Every alias hit in reading order, and whether a car word occurs."""
    hits: list[_Hit] = []
    car_words = False
    words: list[str] = []

    def flush() -> None:
        nonlocal car_words
        hits.extend(_scan_words(words, table))
        car_words = car_words or any(w in CAR_WORDS for w in words)
        words.clear()

    for match in _TOKEN.finditer(normalised):
        marker, tag, word = match.groups()
        if word is not None:
            words.append(word)
            continue
        flush()  # a hashtag or handle ends a phrase: "Harrison #Ford" is the make
        body = "".join(_TOKEN_WORD.findall(tag))
        car_words = car_words or body in CAR_WORDS or body.startswith("carsof")
        via = Via.HANDLE if marker == "@" else Via.HASHTAG
        alias = _tag_alias(body, table)
        if alias is not None:
            hits.append(_Hit(alias=alias, via=via))
    flush()
    return hits, car_words


_TOKEN_WORD: Final = re.compile(r"[a-z0-9]+")


def _scan_words(words: list[str], table: AliasTable) -> list[_Hit]:
    """Longest alias first at each word; a blocked phrase consumes its words and names nothing."""
    hits: list[_Hit] = []
    i = 0
    while i < len(words):
        for n in range(min(table.longest, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            if key in table.phrases:
                alias = table.phrases[key]
                break
            if n == 1:
                alias = _single_word(words[i], table)
                break
        else:  # pragma: no cover - the loop always reaches n == 1
            alias = None
        if alias is not None:
            hits.append(_Hit(alias=alias, via=Via.MODEL if alias.kind is Kind.MODEL else Via.NAME))
        i += max(n, 1)
    return hits


def _single_word(word: str, table: AliasTable) -> Alias | None:
    """A word run together ("MercedesBenz", "CX5") or a plural ("Audis", "Porsches") of a one-word alias."""
    alias = table.joined.get(word)
    if alias is None and len(word) > 3 and word.endswith("s"):
        stem = table.phrases.get((word[:-1],))
        if stem is not None and stem.kind is not Kind.WEAK:
            alias = stem
    return alias


def _tag_alias(body: str, table: AliasTable) -> Alias | None:
    """A hashtag's or handle's alias: the whole body, else a brand name it starts with (longest first)."""
    if body in table.joined:
        return table.joined[body]
    for end in range(len(body) - 1, 1, -1):
        make = table.prefixes.get(body[:end])
        if make is None:
            continue
        rest = body[end:]
        follower = table.joined.get(rest)
        if rest[0].isdigit() or rest in SUFFIXES or (follower is not None and follower.make == make):
            return table.phrases.get((body[:end],)) or _name_alias(make, body[:end], table)
    return None


def _name_alias(make: str, joined_name: str, table: AliasTable) -> Alias | None:
    found = table.joined.get(joined_name)
    return found if found is not None and found.make == make else None
