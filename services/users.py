"""User accounts: lookups, registration, profile changes, pictures and deletion."""

from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import User
from schemas import MAX_ID, UserCreate, UserUpdate
from services.errors import DuplicateError, NotFoundError
from services.media import remove_avatar, remove_orphans, store_avatar
from services.passwords import hash_password

USER_NOT_FOUND = "User not found"


def get_user(db: Session, *, user_id: int) -> User | None:
    # An id the INTEGER column cannot hold names no one (and would make PostgreSQL raise).
    return db.get(User, user_id) if 1 <= user_id <= MAX_ID else None


def get_existing_user(db: Session, *, user_id: int) -> User:
    """The user, or NotFoundError."""
    user = get_user(db, user_id=user_id)
    if user is None:
        raise NotFoundError(USER_NOT_FOUND)
    return user


def _ensure_unique(
    db: Session, *, username: str | None, email: str | None, exclude: int = 0
) -> None:
    """Raise DuplicateError naming the first taken field (a friendly, early check)."""
    taken = db.execute(
        select(User.username, User.email).where(
            User.id != exclude, or_(User.username == username, User.email == email)
        )
    ).all()
    for row in taken:
        if username is not None and row.username == username:
            raise DuplicateError("username", "That username is already taken")
        if email is not None and row.email == email:
            raise DuplicateError("email", "That email address is already registered")


def _commit_unique(db: Session) -> None:
    """Commit; a unique constraint firing here means a concurrent request won the race."""
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise DuplicateError("username", "That username or email is already taken") from exc


def create_user(db: Session, *, data: UserCreate) -> User:
    _ensure_unique(db, username=data.username, email=data.email)
    user = User(
        username=data.username, email=data.email, password_hash=hash_password(data.password)
    )
    db.add(user)
    _commit_unique(db)
    return user


def update_user(db: Session, *, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    _ensure_unique(
        db, username=changes.get("username"), email=changes.get("email"), exclude=user.id
    )
    for field, value in changes.items():
        setattr(user, field, value)
    _commit_unique(db)
    return user


def delete_user(db: Session, *, user: User, avatar_dir: Path) -> None:
    # Posts and sessions go with the user through ON DELETE CASCADE in the database; the
    # picture goes only once the deletion is committed.
    picture = user.image_file
    db.delete(user)
    db.commit()
    remove_avatar(avatar_dir, picture)


def set_profile_picture(db: Session, *, user: User, jpeg: bytes, avatar_dir: Path) -> User:
    """Store the new picture, point the user at it, then remove the old one.

    The old file is removed only after the commit; if the commit fails, the new file is
    removed instead, so no file is ever orphaned and no user points at a missing one.
    """
    new_name = store_avatar(jpeg, avatar_dir)
    # The name stored now, read inside this write transaction (and locked on PostgreSQL):
    # the `user` object may come from an earlier one, and two uploads at once must each
    # remove the picture the other replaced, not the same one twice.
    old_name = db.scalar(select(User.image_file).where(User.id == user.id).with_for_update())
    user.image_file = new_name
    try:
        db.commit()
    except Exception:
        db.rollback()
        remove_avatar(avatar_dir, new_name)
        raise
    remove_avatar(avatar_dir, old_name)
    return user


def remove_orphaned_avatars(db: Session, *, avatar_dir: Path, grace_seconds: float) -> list[str]:
    """Remove picture files no user points at (left by a crash mid-upload)."""
    referenced = set(db.scalars(select(User.image_file).where(User.image_file.is_not(None))))
    db.commit()
    return remove_orphans(avatar_dir, referenced, grace_seconds)
