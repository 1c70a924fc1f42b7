"""A worker's memory stays bounded: per-connection SQLite caches are small, and large
allocations made on request threads go back to the operating system."""

import ctypes
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from database import SQLITE_CACHE_KIB, make_engine

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
TABLE_BYTES = 4 * 1024 * 1024


def _sqlite_memory_used() -> int:
    # The sqlite3 module links the system library, so this reads the same allocator's count.
    library = ctypes.CDLL("libsqlite3.so.0")
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


def _linked_to_system_sqlite() -> bool:
    import sqlite3  # noqa: F401  (loads the library the check looks for)

    maps = Path("/proc/self/maps")
    return maps.exists() and "libsqlite3.so.0" in maps.read_text()


@pytest.mark.skipif(
    not _linked_to_system_sqlite(), reason="reads the allocator count of a shared libsqlite3"
)
def test_each_pooled_sqlite_connection_caches_little(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE pages (body BLOB)"))
            connection.execute(
                text("INSERT INTO pages VALUES (randomblob(:size))"),
                [{"size": 4096}] * (TABLE_BYTES // 4096),
            )
        before = _sqlite_memory_used()
        held = [engine.connect() for _ in range(CONNECTIONS)]
        for connection in held:
            # Reads every page of the table, as a search over a common word would.
            assert connection.execute(text("SELECT length(max(body)) FROM pages")).scalar() > 0
        grown = _sqlite_memory_used() - before
        for connection in held:
            connection.close()
    finally:
        engine.dispose()
    # With SQLite's default (2 MB each) this would be about 16 MB.
    allowance = CONNECTIONS * (SQLITE_CACHE_KIB * 1024 + 256 * 1024)
    assert grown < allowance, (grown, allowance)


PROBE = """
import threading
import main
from services.passwords import hash_password

def resident_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

assert main.return_large_allocations_to_os()
hash_password("warm up the library and its first allocation")
before = resident_kib()
for n in range(4):
    thread = threading.Thread(target=hash_password, args=(f"a long passphrase number {n}",))
    thread.start()
    thread.join()
print(resident_kib() - before)
"""


def _in_a_fresh_interpreter(code: str) -> str:
    """What `code` prints, run by a new Python process in the project's folder."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, calls glibc")
def test_password_hashing_on_request_threads_leaves_nothing_resident():
    # A fresh interpreter, so other tests' allocations do not blur the figure.
    grown_kib = int(_in_a_fresh_interpreter(PROBE).strip())
    # Each argon2 hash works in 19 MiB; without the fixed threshold one stays resident.
    assert grown_kib < 4 * 1024, grown_kib


WORKER_MODULES = """
import sys
import main
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_web_worker_leaves_the_migration_tools_unloaded():
    # Alembic (with Mako) would add some 9 MB to every worker only for the readiness
    # probe's expected revision, which services.health reads from the scripts itself;
    # the QR code library is loaded by the one page that draws a code.
    loaded = set(_in_a_fresh_interpreter(WORKER_MODULES).split())
    assert "sqlalchemy" in loaded
    assert loaded.isdisjoint({"alembic", "mako", "segno"})
