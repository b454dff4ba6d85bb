"""The private-service fixtures themselves: a server the test may stop keeps its data."""

from __future__ import annotations

import psycopg
import pytest

from tests.fixtures.private_postgres import PrivatePostgres


@pytest.mark.integration
def test_private_postgres_stops_and_starts_with_its_data(private_postgres: PrivatePostgres) -> None:
    # Given a private server holding one row
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    # When it is stopped, then started again
    private_postgres.stop()
    assert not private_postgres.accepting()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(private_postgres.url, connect_timeout=2)
    private_postgres.start()
    # Then it answers again, with the row
    with psycopg.connect(private_postgres.url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
