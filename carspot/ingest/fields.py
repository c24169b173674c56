"""What a post's identifiers and texts may hold: the rules ingest applies to every source and the worker applies
again to every message it decodes, so ingest never accepts a post the worker (or the database) would refuse.

* a post id or source name: 1 to :data:`MAX_ID_BYTES` bytes of UTF-8, no control characters (NUL, newline, ...):
  PostgreSQL refuses a primary-key index row over ~2.7 KB, which would make the message a poison pill;
* a campaign (an X rule's tag, a pushed post's ``campaign``): 1 to :data:`MAX_CAMPAIGN_CHARS` letters, digits,
  ``_``, ``.`` or ``-``, starting with a letter or digit (``toyota``, ``spring-2026``): dashboards group by it and
  put it in URLs, so it is refused (never silently rewritten) when it holds anything else;
* any text (author, text, url): no NUL (PostgreSQL refuses it in ``text``);
* everything: valid Unicode, i.e. no lone surrogate, which JSON's ``\\ud800`` escapes can smuggle in and which
  cannot be encoded as UTF-8 for the wire, a dead letter or the database.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_ID_BYTES: Final = 512
"""Longest post id or source (UTF-8 bytes); ids seen in practice are under 64 (``x:<tweet id>:<media key>``)."""


def check_id(what: str, value: object) -> str:
    """``value`` if it is a usable post id or source name, else ``ValueError`` saying why."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    _check_unicode(what, value)
    size = len(value.encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise ValueError(f"{what} is {size} bytes long, the limit is {MAX_ID_BYTES}")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


MAX_CAMPAIGN_CHARS: Final = 64
"""Longest campaign name, in characters."""

_CAMPAIGN = re.compile(r"[^\W_][\w.-]*")


def check_campaign(what: str, value: object) -> str | None:
    """``value`` if it is None or a valid campaign name, else ``ValueError`` saying why."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string or null")
    _check_unicode(what, value)
    if len(value) > MAX_CAMPAIGN_CHARS:
        raise ValueError(f"{what} is {len(value)} characters long, the limit is {MAX_CAMPAIGN_CHARS}")
    if _CAMPAIGN.fullmatch(value) is None:
        raise ValueError(
            f"{what} must be letters, digits, '_', '.' or '-', starting with a letter or digit, got {value!r}"
        )
    return value


def check_text(what: str, value: object) -> str | None:
    """``value`` if it is None or a string the database and the wire can hold, else ``ValueError``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string or null, got {type(value).__name__}")
    _check_unicode(what, value)
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def _check_unicode(what: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate at index {exc.start})") from None


__all__ = ["MAX_CAMPAIGN_CHARS", "MAX_ID_BYTES", "check_campaign", "check_id", "check_text"]
