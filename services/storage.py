"""Where uploaded files live: one small interface, two places.

- `LocalStorage` (MEDIA_STORAGE=local, the default): files under MEDIA_DIR, served by the
  /media static mount. A file is written under a temporary name, fsynced and renamed, so its
  final name never refers to a partial file.
- `DatabaseStorage` (MEDIA_STORAGE=database): rows of the media_blobs table, written in the
  request's own transaction, so a rollback takes the bytes with it and several app hosts on one
  PostgreSQL share nothing else; /media is then served by a route reading the row.

Names are relative paths such as "images/<hash>-960x640.jpg"; every name is chosen by the
server, and `is_valid_name` is checked before one is used.
"""

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from config import Settings, utcnow
from models import MediaBlob
from services.media import remove_orphans

# A folder, then a file name of lower-case letters, digits and hyphens with its extension.
_NAME = re.compile(r"[a-z_]{1,20}/[0-9a-z][0-9a-z-]{0,70}\.(jpg|png)")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


def is_valid_name(name: str) -> bool:
    """Whether `name` is one this site could have stored (no traversal, no surprises)."""
    return _NAME.fullmatch(name) is not None


def content_type(name: str) -> str:
    return CONTENT_TYPES[name.rsplit(".", 1)[1]]


class MediaStorage(Protocol):
    """Stored files by name, in two steps around the transaction that points at them.

    `save` and `delete` run inside the request's transaction (the database implementation
    writes in it; the local one writes files at once and deletes nothing yet). `release` runs
    after it: once a commit stopped pointing at files, or a rollback left files unreferenced,
    the local implementation removes them; the database has nothing left to do.
    """

    def save(self, db: Session, name: str, data: bytes, *, owner_id: int | None) -> bool:
        """Store `data` under `name`; False if that name already held it (content-addressed)."""
        ...

    def read(self, db: Session, name: str) -> bytes | None: ...

    def delete(self, db: Session, names: Iterable[str]) -> None: ...

    def release(self, names: Iterable[str]) -> None: ...


class LocalStorage:
    """Files in a directory (MEDIA_DIR)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if not is_valid_name(name):
            raise ValueError(f"not a stored media name: {name!r}")
        return self.root / name

    def save(self, db: Session, name: str, data: bytes, *, owner_id: int | None) -> bool:
        target = self.path(name)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{secrets.token_hex(16)}.tmp"
        try:
            with temporary.open("xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return True

    def read(self, db: Session, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def delete(self, db: Session, names: Iterable[str]) -> None:
        """Nothing yet: a file goes only once no committed row can point at it (release)."""

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            if is_valid_name(name):
                self.path(name).unlink(missing_ok=True)

    def remove_orphans(
        self, folder: str, stored: re.Pattern, referenced: set[str], grace_seconds: float
    ) -> list[str]:
        """Files in `folder` whose names match `stored` and that no row names (see
        media.remove_orphans); `referenced` and the result are full names ("folder/file")."""
        kept = {name.removeprefix(f"{folder}/") for name in referenced}
        removed = remove_orphans(self.root / folder, kept, grace_seconds, stored)
        return [f"{folder}/{name}" for name in removed]


class DatabaseStorage:
    """Files as rows of media_blobs, in the request's transaction."""

    def save(self, db: Session, name: str, data: bytes, *, owner_id: int | None) -> bool:
        # Names are content hashes: the same name holds the same bytes, so one row is enough.
        if db.scalar(select(MediaBlob.name).where(MediaBlob.name == name)) is not None:
            return False
        db.add(MediaBlob(name=name, user_id=owner_id, data=data, created_at=utcnow()))
        return True

    def read(self, db: Session, name: str) -> bytes | None:
        return db.scalar(select(MediaBlob.data).where(MediaBlob.name == name))

    def delete(self, db: Session, names: Iterable[str]) -> None:
        listed = list(names)
        if listed:
            db.execute(delete(MediaBlob).where(MediaBlob.name.in_(listed)))

    def release(self, names: Iterable[str]) -> None:
        """Nothing to do: the commit or the rollback has dealt with the rows."""


def storage_for(settings: Settings) -> LocalStorage | DatabaseStorage:
    """The storage MEDIA_STORAGE chooses."""
    if settings.media_storage == "database":
        return DatabaseStorage()
    return LocalStorage(settings.media_dir)
