"""The benchmark's database access (bench/db.py), the same for SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench import db
from bench.datasets import SIZES, Dataset

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)


def test_a_sqlite_moment_is_the_naive_utc_text_inkwell_stores(tmp_path: Path):
    with db.connect(f"sqlite:///{tmp_path / 'x.db'}") as connection:
        other_zone = MOMENT.astimezone(timezone(timedelta(hours=2)))
        assert connection.moment(other_zone) == "2026-03-04 05:06:07.890000"
        connection.execute("CREATE TABLE t (at TEXT)")
        connection.execute("INSERT INTO t VALUES (?)", (connection.moment(MOMENT),))
        (stored,) = connection.execute("SELECT at FROM t WHERE at <= ?", ("2027",)).fetchone()
    assert db.read_moment(stored) == MOMENT


def test_times_read_back_aware_and_in_utc():
    assert db.read_moment(MOMENT.replace(tzinfo=None)) == MOMENT
    assert db.read_moment(MOMENT.astimezone(timezone(timedelta(hours=-5)))).tzinfo == UTC


def test_postgresql_urls_lose_the_driver_name_for_psycopg():
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/inkwell_1k"
    assert db.libpq_url(url) == "postgresql://postgres@127.0.0.1:5432/inkwell_1k"
    assert not db.is_sqlite(url)
    with pytest.raises(RuntimeError):
        db.libpq_url("mysql://x")


def test_files_about_a_dataset_name_its_database_unless_sqlite():
    assert Dataset(SIZES["1k"], "sqlite:///a.db", 1, 1).name == "1k"
    assert Dataset(SIZES["1k"], "postgresql+psycopg://h/d", 1, 1).name == "1k-postgres"
