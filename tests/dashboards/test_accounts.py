"""Dashboard accounts (carspot.dashboards.accounts over carspot.store.accounts) on SQLite and PostgreSQL: users,
sessions, tokens, and what cascades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from sqlalchemy import Engine, func, select

from carspot.dashboards.accounts import AccountError, Accounts
from carspot.store import accounts as store
from carspot.store.tables import ApiToken, User, UserSession

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def engine(any_engine: Engine) -> Engine:
    """Each test on SQLite and on PostgreSQL."""
    return any_engine


@pytest.fixture
def accounts(engine: Engine) -> Accounts:
    return Accounts(engine, hasher=PasswordHasher.from_parameters(CHEAPEST), session_ttl=timedelta(hours=2))


def _count(engine: Engine, table: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_user_is_stored_with_an_argon2_hash_and_a_case_insensitive_name(accounts: Accounts, engine: Engine) -> None:
    account = accounts.add_user("Ann", role="admin", password=PASSWORD, now=NOW)
    assert (account.name, account.role, account.is_admin) == ("ann", "admin", True)
    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.verify("ANN", PASSWORD) == account
    assert accounts.verify("ann", PASSWORD + "!") is None
    assert accounts.verify("nobody", PASSWORD) is None
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_user("ann", role="viewer", password=PASSWORD, now=NOW)


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("ann", "owner", PASSWORD, "role must be one of viewer, admin"),
        ("ann", "viewer", "short", "at least 10"),
        ("ann", "viewer", "x" * 1025, "at most 1024"),
        ("", "viewer", PASSWORD, "user name"),
        ("a b", "viewer", PASSWORD, "user name"),
        ("-ann", "viewer", PASSWORD, "user name"),
    ],
)
def test_bad_users_are_refused_with_a_reason(
    accounts: Accounts, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message):
        accounts.add_user(name, role=role, password=password, now=NOW)


def test_a_hash_with_weaker_parameters_is_replaced_at_the_next_sign_in(engine: Engine) -> None:
    weak = PasswordHasher.from_parameters(CHEAPEST)
    Accounts(engine, hasher=weak).add_user("ann", role="viewer", password=PASSWORD, now=NOW)
    stronger = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    assert Accounts(engine, hasher=stronger).verify("ann", PASSWORD) is not None
    with engine.connect() as conn:
        assert "m=1024,t=2,p=1" in conn.execute(select(User.password_hash)).scalar_one()


def test_sessions_expire_and_end(accounts: Accounts) -> None:
    ann = accounts.add_user("ann", role="viewer", password=PASSWORD, now=NOW)
    signed = accounts.start_session(ann, now=NOW)
    assert signed.expires_at == NOW + timedelta(hours=2)
    assert accounts.session(signed.cookie, now=NOW + timedelta(hours=1)) == ann
    assert accounts.session(signed.cookie, now=NOW + timedelta(hours=2)) is None
    assert accounts.session("not-a-cookie", now=NOW) is None
    accounts.end_session(signed.cookie)
    assert accounts.session(signed.cookie, now=NOW) is None


def test_an_expired_session_is_swept_when_someone_signs_in(accounts: Accounts, engine: Engine) -> None:
    ann = accounts.add_user("ann", role="viewer", password=PASSWORD, now=NOW)
    accounts.start_session(ann, now=NOW)
    accounts.start_session(ann, now=NOW + timedelta(hours=3))
    assert _count(engine, UserSession) == 1


def test_a_new_password_ends_the_users_sessions(accounts: Accounts) -> None:
    ann = accounts.add_user("ann", role="viewer", password=PASSWORD, now=NOW)
    signed = accounts.start_session(ann, now=NOW)
    accounts.set_password("ann", password="another long password")
    assert accounts.session(signed.cookie, now=NOW) is None
    assert accounts.verify("ann", "another long password") == ann


def test_tokens_are_stored_hashed_listed_and_revoked(accounts: Accounts, engine: Engine) -> None:
    accounts.add_user("robot", role="viewer", password=PASSWORD, now=NOW)
    first_id, first = accounts.issue_token("robot", label="export", now=NOW)
    second_id, second = accounts.issue_token("robot", label=None, now=NOW)
    assert first.startswith("cst_") and first != second
    with engine.connect() as conn:
        hashes = conn.execute(select(ApiToken.token_sha256)).scalars().all()
    assert all(first not in h and second not in h for h in hashes)
    assert [u.token_ids for u in accounts.list_users()] == [(first_id, second_id)]
    assert accounts.token(first, now=NOW) is not None
    assert accounts.token("cst_guess", now=NOW) is None
    assert accounts.token(first[4:], now=NOW) is None  # without its prefix it is not a token
    assert accounts.revoke_tokens("robot", token_ids=[first_id]) == 1
    assert accounts.token(first, now=NOW) is None and accounts.token(second, now=NOW) is not None
    assert accounts.revoke_tokens("robot") == 1
    with pytest.raises(AccountError, match="no user"):
        accounts.issue_token("nobody", label=None, now=NOW)


def test_a_tokens_last_use_is_written_at_most_every_few_minutes(accounts: Accounts, engine: Engine) -> None:
    accounts.add_user("robot", role="viewer", password=PASSWORD, now=NOW)
    _, token = accounts.issue_token("robot", label=None, now=NOW)
    for minutes in (0, 1, 4, 5):
        accounts.token(token, now=NOW + timedelta(minutes=minutes))
    with engine.connect() as conn:
        assert conn.execute(select(ApiToken.last_used_at)).scalar_one() == NOW + store.LAST_USED_EVERY


def test_removing_a_user_removes_their_sessions_and_tokens(accounts: Accounts, engine: Engine) -> None:
    ann = accounts.add_user("ann", role="admin", password=PASSWORD, now=NOW)
    accounts.add_user("bob", role="viewer", password=PASSWORD, now=NOW)
    accounts.start_session(ann, now=NOW)
    accounts.issue_token("ann", label=None, now=NOW)
    assert (accounts.count_users(), accounts.count_admins()) == (2, 1)
    accounts.remove_user("Ann")
    assert (_count(engine, UserSession), _count(engine, ApiToken)) == (0, 0)
    assert [u.name for u in accounts.list_users()] == ["bob"]
    with pytest.raises(AccountError, match="no user"):
        accounts.remove_user("ann")


def test_roles_can_change(accounts: Accounts, engine: Engine) -> None:
    accounts.add_user("bob", role="viewer", password=PASSWORD, now=NOW)
    store.set_role(engine, name="bob", role="admin")
    assert accounts.count_admins() == 1
    with pytest.raises(AccountError, match="role"):
        store.set_role(engine, name="bob", role="root")
