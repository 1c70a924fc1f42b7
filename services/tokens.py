"""Secret tokens handed to clients (sessions, API tokens, review links): random, and stored
only as a hash, so a copy of the database opens nothing."""

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
