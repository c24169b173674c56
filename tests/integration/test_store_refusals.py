"""On the real PostgreSQL (issue 24, defect 2): what it refuses for good is classified as the record's fault,
what an outage does as worth waiting for."""

from __future__ import annotations

import hashlib
import secrets
import socket
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from carspot.pipeline.db_errors import is_transient, sqlstate
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.records import PostRecord
from carspot.store.writer import AnalysisStore
from tests.integration.conftest import Isolated


def record(post_id: str) -> PostRecord:
    return PostRecord(
        post_id=post_id,
        source="test",
        author=None,
        text=None,
        url=None,
        posted_at=None,
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(post_id.encode()).hexdigest(),
        width=4,
        height=4,
    )


def test_an_index_row_too_big_is_permanent(isolated: Isolated) -> None:
    migrate(isolated.database_url)
    engine = create_engine_for(isolated.database_url)
    try:
        store = AnalysisStore(engine)
        with pytest.raises(DBAPIError) as refused:
            # random: PostgreSQL compresses a repetitive id below the index row limit
            store.write_batch(posts=[record(secrets.token_urlsafe(8_000))], analyses=[])
        assert sqlstate(refused.value) == "54000"  # program_limit_exceeded
        assert not is_transient(refused.value)
        store.write_batch(posts=[record("fine")], analyses=[])  # the database itself is fine
    finally:
        engine.dispose()


def test_a_database_that_does_not_answer_is_transient(isolated: Isolated) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = make_url(isolated.database_url).set(host="127.0.0.1", port=closed).render_as_string(hide_password=False)
    engine = create_engine_for(url)
    try:
        with pytest.raises(DBAPIError) as down:
            AnalysisStore(engine).write_batch(posts=[record("p")], analyses=[])
        assert is_transient(down.value)
    finally:
        engine.dispose()
