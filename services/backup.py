"""A consistent copy of the live database, taken while the server keeps serving.

    inkwell backup                      # backups/inkwell-<UTC timestamp>.db or .dump
    inkwell backup --output PATH

The database is the `DATABASE_URL` setting (`config.get_settings()`) unless the command is
given another.

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies every page in one step
  from a single read snapshot; in WAL mode readers do not block writers, so the server keeps
  writing meanwhile. The copy is a self-contained file (rollback journal, no -wal beside it)
  that must pass `PRAGMA integrity_check`. Restore: stop the server, copy it over the database.
- PostgreSQL: `pg_dump --format=custom`, which reads everything in one repeatable-read
  snapshot. Restore: `pg_restore --no-owner --dbname=postgresql://... FILE` into an empty
  database.

The copy is written under a temporary name and renamed only once it is complete and checked,
so a file with the final name is always a whole backup.

Uploads: in database storage (MEDIA_STORAGE=database) they are rows, in the copy already. In
local storage the media directory is copied beside it, into `<backup name>.media/` (restore:
put that directory back as MEDIA_DIR). Stored files never change once written, so copying them
while the server runs is safe; the directory is copied before the database and once more after
it, which catches every file a row of the copy names (a file is written before the commit that
names it, and deleted only after the commit that stops naming it). Files deleted meanwhile may
be in the copy without a row; the start-up sweep of orphans removes them after a restore.
"""

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url

BACKUP_DIR = Path("backups")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SQLITE_BUSY_TIMEOUT_S = 30


class BackupError(Exception):
    """The backup could not be made; the message says why."""


def default_output(url: URL, now: datetime | None = None) -> Path:
    """backups/inkwell-<UTC timestamp>.<db|dump>, not yet taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    suffix = ".db" if url.get_backend_name() == "sqlite" else ".dump"
    candidate = BACKUP_DIR / f"inkwell-{stamp}{suffix}"
    number = 1
    while candidate.exists():
        number += 1
        candidate = BACKUP_DIR / f"inkwell-{stamp}-{number}{suffix}"
    return candidate


def media_copy_path(output: Path) -> Path:
    """Where the backup written to `output` keeps its copy of the media directory."""
    return output.with_name(output.stem + ".media")


def backup(database_url: str, output: Path, media_dir: Path | None = None) -> Path:
    """Copy the database at `database_url` into `output` (which must not exist yet), and
    `media_dir` (local storage) into media_copy_path(output)."""
    url = make_url(database_url)
    for target in (output, media_copy_path(output)):
        if target.exists():
            raise BackupError(f"{target} already exists; not overwriting it")
    output.parent.mkdir(parents=True, exist_ok=True)
    if media_dir is None:
        _backup_database(url, output)
        return output
    media_partial = media_copy_path(output).with_name(media_copy_path(output).name + ".partial")
    shutil.rmtree(media_partial, ignore_errors=True)
    try:
        _copy_media(media_dir, media_partial)
        _backup_database(url, output)
        _copy_media(media_dir, media_partial)
        os.replace(media_partial, media_copy_path(output))
    finally:
        shutil.rmtree(media_partial, ignore_errors=True)
    return output


def _copy_media(source: Path, target: Path) -> None:
    """Add to `target` every stored file of `source` it does not have yet (temporary files
    of uploads in progress are left out)."""
    target.mkdir(parents=True, exist_ok=True)
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        copy = target / path.relative_to(source)
        if path.is_dir():
            copy.mkdir(exist_ok=True)
        elif not path.name.startswith(".") and not copy.exists():
            try:
                shutil.copy2(path, copy)
            except FileNotFoundError:
                continue  # deleted since it was listed: its row is gone too


def _backup_database(url: URL, output: Path) -> None:
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        backend = url.get_backend_name()
        if backend == "sqlite":
            _backup_sqlite(url, partial)
        elif backend == "postgresql":
            _backup_postgresql(url, partial)
        else:
            raise BackupError(f"cannot back up a {backend} database")
        _fsync(partial)
        os.replace(partial, output)
        _fsync(output.parent)
    finally:
        partial.unlink(missing_ok=True)


def _backup_sqlite(url: URL, target: Path) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"not a SQLite database file: {url}")
    source_path = Path(database)
    if not source_path.is_file():
        # sqlite3.connect would silently create an empty database and back that up.
        raise BackupError(f"no SQLite database at {source_path}")
    source = sqlite3.connect(source_path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        copy = sqlite3.connect(target)
        try:
            # pages=-1: one step, one read snapshot; no restart when the server writes meanwhile.
            source.backup(copy, pages=-1)
            # One self-contained file: WAL mode would keep recent pages in a -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
            result = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                raise BackupError(f"the copy failed PRAGMA integrity_check: {result[:5]}")
        finally:
            copy.close()
    finally:
        source.close()


def libpq_url(url: URL) -> tuple[str, dict[str, str]]:
    """A URL for libpq tools (no `+psycopg` driver) and the environment carrying the password,
    which stays out of the command line (and so out of `ps`)."""
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_tool(name: str) -> str:
    """`name` from PATH, else from the PostgreSQL 15 packages' directory."""
    found = shutil.which(name)
    if found:
        return found
    candidate = PG_BIN / name
    if candidate.is_file():
        return str(candidate)
    raise BackupError(f"{name} not found on PATH nor in {PG_BIN}")


def _backup_postgresql(url: URL, target: Path) -> None:
    dsn, env = libpq_url(url)
    command = [pg_tool("pg_dump"), "--format=custom", f"--file={target}", f"--dbname={dsn}"]
    _run(command, env)
    # The archive must be readable: list its table of contents.
    _run([pg_tool("pg_restore"), "--list", str(target)], env)


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed: {result.stderr.strip()}")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
