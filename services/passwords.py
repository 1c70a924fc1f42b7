"""Password hashing (argon2id). Which passwords are acceptable is an input rule (schemas)."""

import secrets
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# Argon2id at the least memory of OWASP's five equally strong settings (7 MiB, 5 passes,
# 1 lane; the others trade passes for up to 46 MiB) rather than the library default of
# 64 MiB: each login in progress adds that much to a worker's memory, and a web worker
# should stay small. Hashes made with other settings still verify, and are remade with
# these on the next successful login.
password_hasher = PasswordHash((Argon2Hasher(memory_cost=7_168, time_cost=5, parallelism=1),))


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> tuple[bool, str | None]:
    """(matches, a rehash when the stored one used older settings).

    A missing hash still costs one verification, so timing does not tell which accounts
    exist or have a password.
    """
    valid, upgraded = password_hasher.verify_and_update(password, stored or _dummy_hash())
    return valid and stored is not None, upgraded
