"""The health probe's database check (molesite.health.check_database) on the real Postgres: its
statement timeout cancels a query that hangs, and leaves nothing behind on the connection the
site's next request reuses.

transactional_db, not db: within the test's own transaction SET LOCAL would last until that
transaction ends, where a request's autocommit connection ends it with the probe's."""

import logging

from django.db import connection, transaction

from molesite import health


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def select_one_ok() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def probes_timeout() -> str:
    """The probe's own timeout, as Postgres shows it (1000 ms: "1s")."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(health.TIMEOUT_SECONDS * 1000)}")
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_it_leaves_the_servers_statement_timeout_on_the_connection_it_reuses(transactional_db):
    default = statement_timeout()
    assert default != probes_timeout(), "the server's default must differ for this test to tell"

    result = health.check_database()

    assert result["ok"] and result["vendor"] == "postgresql"
    assert statement_timeout() == default


def test_a_query_that_hangs_is_cancelled_by_the_statement_timeout(transactional_db, monkeypatch,
                                                                  caplog):
    default = statement_timeout()

    def hanging_query(conn):
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")
            cursor.fetchone()

    monkeypatch.setattr(health, "_select_one", hanging_query)
    with caplog.at_level(logging.WARNING, logger=health.__name__):
        result = health.check_database()

    assert not result["ok"]
    assert result["vendor"] == "postgresql" and result["error"] == "OperationalError"
    # Cancelled by the server for the timeout, not failed for some other reason.
    assert "canceling statement due to statement timeout" in caplog.text
    # The connection is left usable and without the probe's timeout for the next request.
    assert select_one_ok() and statement_timeout() == default


def test_the_sites_connections_run_without_jit_compilation(db):
    """settings turns Postgres's JIT off: it cost the review queue seconds of compiling a query
    that runs in a fraction of one (bench/bench_queue.py)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
