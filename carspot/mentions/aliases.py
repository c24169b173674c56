"""The alias table: parsed and checked once from ``aliases.toml`` (shipped in the package) into lookup maps.

Every alias is reduced to its key, the tuple of its lower-case, accent-free alphanumeric words ("Mercedes-Benz"
→ ``("mercedes", "benz")``), so that matching never depends on case, accents or the separator people type.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final

_WORD: Final = re.compile(r"[a-z0-9]+")
_LISTS: Final = ("names", "models", "weak", "block")


class AliasError(ValueError):
    """The alias table is malformed (an unknown key, an alias given twice, an empty make)."""


class Kind(StrEnum):
    """How an alias names its make."""

    NAME = "name"  # the brand itself: "Mercedes-Benz", "Merc", "VW"
    MODEL = "model"  # a model of that make alone: "Qashqai"
    WEAK = "weak"  # also an ordinary word or someone else's name: counts only in a post about cars


@dataclass(frozen=True, slots=True)
class Alias:
    make: str
    kind: Kind
    text: str
    """As written in the table (for docs and debugging)."""


@dataclass(frozen=True, slots=True)
class AliasTable:
    """Lookups by key: ``phrases`` (word tuples) for running text, ``joined`` (the words run together) for hashtags,
    handles and names typed without a separator. ``None`` marks a blocked phrase ("Harrison Ford")."""

    makes: frozenset[str]
    phrases: Mapping[tuple[str, ...], Alias | None]
    joined: Mapping[str, Alias | None]
    longest: int
    prefixes: Mapping[str, str] = field(default_factory=dict)
    """The joined brand names (kind NAME, and single-word weak brand names) a hashtag may start with → make."""


def normalise(text: str) -> str:
    """Case- and accent-free: NFKD, combining marks dropped, casefolded ("Citroën" → "citroen")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def key_of(alias: str) -> tuple[str, ...]:
    """The words of an alias: ``"MX-5"`` → ``("mx", "5")``."""
    return tuple(_WORD.findall(normalise(alias)))


def build_table(data: Mapping[str, Any]) -> AliasTable:
    """The lookups from the parsed TOML (make → {names, models, weak, block}); :class:`AliasError` if malformed.

    An alias may belong to one make only (a blocked phrase may be repeated under several makes): the table is
    checked rather than letting the later make silently win.
    """
    phrases: dict[tuple[str, ...], Alias | None] = {}
    prefixes: dict[str, str] = {}
    for make, entry in data.items():
        if not isinstance(entry, Mapping) or set(entry) - set(_LISTS):
            raise AliasError(f"{make!r}: expected a table with {', '.join(_LISTS)}, got {entry!r}")
        if not entry.get("names") and not entry.get("weak"):
            raise AliasError(f"{make!r}: a make needs at least one name (or a weak one)")
        for list_name in _LISTS:
            values = entry.get(list_name, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise AliasError(f"{make!r}.{list_name} must be a list of strings")
            for text in values:
                key = key_of(text)
                if not key:
                    raise AliasError(f"{make!r}: alias {text!r} has no letter or digit")
                alias = None if list_name == "block" else Alias(make=make, kind=_kind(list_name), text=text)
                if key in phrases and (alias is not None or phrases[key] is not None):
                    raise AliasError(f"alias {text!r} ({make}) is already {phrases[key]!r}")
                phrases[key] = alias
                if alias is not None and (alias.kind is Kind.NAME or (alias.kind is Kind.WEAK and len(key) == 1)):
                    prefixes.setdefault("".join(key), make)
    joined: dict[str, Alias | None] = {}
    for key, alias in sorted(phrases.items(), key=lambda kv: len(kv[0])):
        joined.setdefault("".join(key), alias)  # a single word wins over a phrase run together
    return AliasTable(
        makes=frozenset(data),
        phrases=phrases,
        joined=joined,
        longest=max(len(k) for k in phrases),
        prefixes=prefixes,
    )


def _kind(list_name: str) -> Kind:
    return {"names": Kind.NAME, "models": Kind.MODEL, "weak": Kind.WEAK}[list_name]


def load_aliases(path: Path | None = None) -> AliasTable:
    """Read the table: the shipped ``aliases.toml`` unless ``path`` is given."""
    if path is None:
        raw = resources.files("carspot.mentions").joinpath("aliases.toml").read_bytes()
    else:
        raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AliasError(f"alias table is not valid TOML: {exc}") from None
    return build_table(data)
