"""Dashboard accounts in the database: users, signed-in sessions and API tokens.

Only digests are written: the caller hashes passwords (argon2) and gives session cookies and API tokens as the
SHA-256 of their random value, so this module never sees a secret it could leak and needs no crypto library.
Every function takes an Engine and runs one short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from carspot.store.tables import ROLES, ApiToken, User, UserSession

LAST_USED_EVERY: Final = timedelta(minutes=5)


class AccountError(ValueError):
    """A user that does not exist, already exists, or a role that is not one of :data:`ROLES`."""


@dataclass(frozen=True, slots=True)
class Account:
    """Who a request acts as."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as ``carspot users list`` shows it."""

    name: str
    role: str
    created_at: datetime
    token_ids: tuple[int, ...]


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")


def add_user(engine: Engine, *, name: str, role: str, password_hash: str, now: datetime) -> Account:
    """Create a user; :class:`AccountError` when the name is taken."""
    _check_role(role)
    try:
        with engine.begin() as conn:
            user_id = conn.execute(
                insert(User)
                .values(name=name, role=role, password_hash=password_hash, created_at=now)
                .returning(User.id)
            ).scalar_one()
    except IntegrityError:
        raise AccountError(f"user {name!r} already exists") from None
    return Account(id=user_id, name=name, role=role)


def set_password_hash(engine: Engine, *, name: str, password_hash: str) -> None:
    """Replace a user's password hash (a new password, or the same one re-hashed with stronger parameters)."""
    with engine.begin() as conn:
        if conn.execute(update(User).where(User.name == name).values(password_hash=password_hash)).rowcount == 0:
            raise AccountError(f"no user {name!r}")


def set_role(engine: Engine, *, name: str, role: str) -> None:
    _check_role(role)
    with engine.begin() as conn:
        if conn.execute(update(User).where(User.name == name).values(role=role)).rowcount == 0:
            raise AccountError(f"no user {name!r}")


def credentials(engine: Engine, name: str) -> tuple[Account, str] | None:
    """The account and its password hash, for signing in; ``None`` for an unknown name."""
    with engine.connect() as conn:
        row = conn.execute(select(User.id, User.name, User.role, User.password_hash).where(User.name == name)).first()
    return None if row is None else (Account(id=row.id, name=row.name, role=row.role), row.password_hash)


def remove_user(engine: Engine, name: str) -> None:
    """Delete a user with their sessions and tokens (in cascade)."""
    with engine.begin() as conn:
        if conn.execute(delete(User).where(User.name == name)).rowcount == 0:
            raise AccountError(f"no user {name!r}")


def list_users(engine: Engine) -> list[UserRow]:
    """Every user, by name, with the ids of their API tokens."""
    with engine.connect() as conn:
        users = conn.execute(select(User.id, User.name, User.role, User.created_at).order_by(User.name)).all()
        tokens = conn.execute(select(ApiToken.user_id, ApiToken.id).order_by(ApiToken.id)).all()
    by_user: dict[int, list[int]] = {}
    for user_id, token_id in tokens:
        by_user.setdefault(user_id, []).append(token_id)
    return [UserRow(u.name, u.role, u.created_at, tuple(by_user.get(u.id, ()))) for u in users]


def count_admins(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(User).where(User.role == "admin")).scalar_one())


def count_users(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(User)).scalar_one())


# --- sessions ---------------------------------------------------------------------------------------------
def add_session(engine: Engine, *, user_id: int, token_sha256: str, now: datetime, expires_at: datetime) -> None:
    """Record a signed-in browser, and forget the sessions that have expired meanwhile."""
    with engine.begin() as conn:
        conn.execute(delete(UserSession).where(UserSession.expires_at <= now))
        conn.execute(
            insert(UserSession).values(
                token_sha256=token_sha256, user_id=user_id, created_at=now, expires_at=expires_at
            )
        )


def session_account(engine: Engine, *, token_sha256: str, now: datetime) -> Account | None:
    """The account of a session that has not expired; ``None`` otherwise."""
    with engine.connect() as conn:
        row = conn.execute(
            select(User.id, User.name, User.role)
            .join(UserSession, UserSession.user_id == User.id)
            .where(UserSession.token_sha256 == token_sha256, UserSession.expires_at > now)
        ).first()
    return None if row is None else Account(id=row.id, name=row.name, role=row.role)


def delete_session(engine: Engine, token_sha256: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(UserSession).where(UserSession.token_sha256 == token_sha256))


def delete_sessions_of(engine: Engine, name: str) -> int:
    """Sign a user out everywhere (a new password, a changed role); how many sessions ended."""
    with engine.begin() as conn:
        user_ids = select(User.id).where(User.name == name).scalar_subquery()
        return int(conn.execute(delete(UserSession).where(UserSession.user_id == user_ids)).rowcount)


# --- API tokens -------------------------------------------------------------------------------------------
def add_token(engine: Engine, *, name: str, token_sha256: str, label: str | None, now: datetime) -> int:
    """Record a new API token of user ``name``; its id (shown by ``users list``, used to revoke it)."""
    with engine.begin() as conn:
        user_id = conn.execute(select(User.id).where(User.name == name)).scalar_one_or_none()
        if user_id is None:
            raise AccountError(f"no user {name!r}")
        return int(
            conn.execute(
                insert(ApiToken)
                .values(user_id=user_id, token_sha256=token_sha256, label=label, created_at=now)
                .returning(ApiToken.id)
            ).scalar_one()
        )


def token_account(engine: Engine, *, token_sha256: str, now: datetime) -> Account | None:
    """The account an API token acts as; ``None`` for an unknown or revoked token.

    Its last use is noted at most every :data:`LAST_USED_EVERY`, so reading the API does not write each time."""
    with engine.connect() as conn:
        row = conn.execute(
            select(User.id, User.name, User.role, ApiToken.id.label("token_id"), ApiToken.last_used_at)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_sha256 == token_sha256)
        ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        with engine.begin() as conn:
            conn.execute(update(ApiToken).where(ApiToken.id == row.token_id).values(last_used_at=now))
    return Account(id=row.id, name=row.name, role=row.role)


def revoke_tokens(engine: Engine, *, name: str, token_ids: Sequence[int] | None = None) -> int:
    """Delete the given tokens of user ``name`` (all of them when ``token_ids`` is None); how many went."""
    with engine.begin() as conn:
        user_id = conn.execute(select(User.id).where(User.name == name)).scalar_one_or_none()
        if user_id is None:
            raise AccountError(f"no user {name!r}")
        query = delete(ApiToken).where(ApiToken.user_id == user_id)
        if token_ids is not None:
            query = query.where(ApiToken.id.in_(list(token_ids)))
        return int(conn.execute(query).rowcount)
