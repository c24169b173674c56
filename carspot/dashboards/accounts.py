"""Users, passwords, sessions and API tokens: the rules, over the store's account tables.

- Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile by default) and checked in
  constant time; a name that does not exist still costs one verification, so timing does not tell names apart.
  A hash made with weaker parameters than the current ones is replaced at the next successful sign-in.
- Session cookies and API tokens are 256-bit random values; the database keeps only their SHA-256 (a fast
  hash is enough for values nobody can guess), so a copy of the database signs nobody in.
- Names are case-insensitive (kept lower-case): ``Alice`` and ``alice`` are one user, one throttle key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine

from carspot.store import accounts as store
from carspot.store.accounts import Account, AccountError

__all__ = ["Account", "AccountError", "Accounts", "SignedIn", "normalize_name", "sha256_hex"]

NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024
"""Longer input is refused before hashing: argon2 reads all of it, and a sign-in form is open to anyone."""
TOKEN_PREFIX: Final = "cst_"


def normalize_name(name: str) -> str:
    """The stored form of a user name: stripped, lower-case."""
    return name.strip().lower()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    """The normalised name, or :class:`AccountError` saying what a name may hold."""
    normal = normalize_name(name)
    if not NAME_PATTERN.match(normal):
        raise AccountError(
            f"user name {name!r}: 1-64 characters, letters, digits and . _ @ -, starting with a letter or digit"
        )
    return normal


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password may have at most {MAX_PASSWORD} characters")


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: the cookie value (shown once, to the browser) and who it belongs to."""

    cookie: str
    account: Account
    expires_at: datetime


def csrf_token_for(session_cookie: str) -> str:
    """The CSRF token of a session: derived from its secret cookie, so it needs no storage and no other site
    (which cannot read the cookie) can compute it."""
    return hmac.new(session_cookie.encode("utf-8"), b"carspot-csrf", hashlib.sha256).hexdigest()


class Accounts:
    """Users and their credentials in the database behind ``engine``."""

    def __init__(
        self, engine: Engine, *, hasher: PasswordHasher | None = None, session_ttl: timedelta = timedelta(hours=12)
    ) -> None:
        if session_ttl <= timedelta(0):
            raise ValueError(f"session_ttl must be positive, got {session_ttl}")
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        self.session_ttl = session_ttl

    @cached_property
    def _dummy_hash(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    # --- users ------------------------------------------------------------------------------------------
    def add_user(self, name: str, *, role: str, password: str, now: datetime) -> Account:
        normal = check_name(name)
        check_password(password)
        return store.add_user(self.engine, name=normal, role=role, password_hash=self.hasher.hash(password), now=now)

    def set_password(self, name: str, *, password: str) -> None:
        """A new password; the user's sessions end (their tokens stay: revoke those apart)."""
        check_password(password)
        normal = normalize_name(name)
        store.set_password_hash(self.engine, name=normal, password_hash=self.hasher.hash(password))
        store.delete_sessions_of(self.engine, normal)

    def remove_user(self, name: str) -> None:
        store.remove_user(self.engine, normalize_name(name))

    def list_users(self) -> list[store.UserRow]:
        return store.list_users(self.engine)

    def count_users(self) -> int:
        return store.count_users(self.engine)

    def count_admins(self) -> int:
        return store.count_admins(self.engine)

    # --- signing in -------------------------------------------------------------------------------------
    def verify(self, name: str, password: str) -> Account | None:
        """The account when ``password`` is the user's; ``None`` otherwise (same cost for an unknown name)."""
        if not password or len(password) > MAX_PASSWORD:
            return None
        found = store.credentials(self.engine, normalize_name(name))
        stored = found[1] if found else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if found is None:
            return None
        account = found[0]
        if self.hasher.check_needs_rehash(stored):
            store.set_password_hash(self.engine, name=account.name, password_hash=self.hasher.hash(password))
        return account

    def start_session(self, account: Account, *, now: datetime) -> SignedIn:
        cookie = secrets.token_urlsafe(32)
        expires = now + self.session_ttl
        store.add_session(self.engine, user_id=account.id, token_sha256=sha256_hex(cookie), now=now, expires_at=expires)
        return SignedIn(cookie=cookie, account=account, expires_at=expires)

    def session(self, cookie: str, *, now: datetime) -> Account | None:
        return store.session_account(self.engine, token_sha256=sha256_hex(cookie), now=now)

    def end_session(self, cookie: str) -> None:
        store.delete_session(self.engine, sha256_hex(cookie))

    # --- API tokens -------------------------------------------------------------------------------------
    def issue_token(self, name: str, *, label: str | None, now: datetime) -> tuple[int, str]:
        """A new API token of user ``name``: its id and the token, which is shown this once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = store.add_token(
            self.engine, name=normalize_name(name), token_sha256=sha256_hex(token), label=label, now=now
        )
        return token_id, token

    def token(self, token: str, *, now: datetime) -> Account | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        return store.token_account(self.engine, token_sha256=sha256_hex(token), now=now)

    def revoke_tokens(self, name: str, *, token_ids: list[int] | None = None) -> int:
        return store.revoke_tokens(self.engine, name=normalize_name(name), token_ids=token_ids)
