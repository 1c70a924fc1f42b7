"""User accounts: lookups, registration, profile changes, pictures and deletion."""

import secrets

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import MEDIA_AVATAR_PREFIX, User
from schemas import MAX_ID, UserCreate, UserUpdate
from services import accounts, images, invitations, mail, passwords, throttling, verification
from services.errors import DuplicateError, NotFoundError
from services.media import STORED_AVATAR_NAME
from services.storage import LocalStorage, MediaStorage

USER_NOT_FOUND = "User not found"
# One answer whichever of the two is taken: the username is public anyway, but naming the
# email address would tell anyone whether it has an account here.
UNUSABLE = "That username or email address cannot be used"


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
    """Raise DuplicateError if another account has the username (in any capitalisation) or
    the email address (a friendly, early check; the unique indexes have the last word)."""
    clashes = []
    if username is not None:
        clashes.append(func.lower(User.username) == func.lower(username))
    if email is not None:
        clashes.append(User.email == email)
    if clashes and db.scalar(select(User.id).where(User.id != exclude, or_(*clashes)).limit(1)):
        raise DuplicateError(UNUSABLE)


def commit_unique(db: Session) -> None:
    """Commit; a unique constraint firing here means a concurrent request won the race."""
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise DuplicateError(UNUSABLE) from exc


def add_account(db: Session, *, data: UserCreate, password_hash: str) -> User:
    """A new account in the open transaction; DuplicateError if the name or address is
    taken (commit with `commit_unique`, which catches a race for the same name)."""
    _ensure_unique(db, username=data.username, email=data.email)
    user = User(username=data.username, email=data.email, password_hash=password_hash)
    db.add(user)
    return user


def create_user(
    db: Session,
    *,
    data: UserCreate,
    client_ip: str,
    site: mail.Site,
    mode: invitations.RegistrationMode,
) -> User:
    """Register an account, if the registration mode allows it, within the registrations
    allowed from the client's address.

    Raises RegistrationRefusedError when registration is closed, or by invitation and
    `data.invitation` is no live one; ThrottledError when the address has used up its
    registrations; DuplicateError when the name or email address belongs to another
    account (which counts as a registration too: each one answers whether an address is
    registered). The password is hashed between the two short transactions, never while one
    is open: on SQLite a write request's first statement takes the database's write lock,
    and every other writer would wait on argon2. The verification mail is queued in the
    transaction that creates the account (none for the address an invitation went to).
    """
    invitation = invitations.check_mode(db, mode=mode, token=data.invitation)
    key = throttling.registration_key(client_ip)
    throttling.check_registrations(db, key=key)
    db.commit()
    password_hash = passwords.hash_password(data.password)
    try:
        user = add_account(db, data=data, password_hash=password_hash)
        if invitation is not None:
            invitations.accept(db, invitation=invitation, user=user, mode=mode)
        if not user.email_verified:
            verification.send_link(db, user=user, email=user.email, site=site)
        throttling.count_registration(db, key=key)
        commit_unique(db)
    except DuplicateError:
        db.rollback()
        throttling.count_registration(db, key=key)
        db.commit()
        raise
    except invitations.RegistrationRefusedError:
        db.rollback()
        raise
    return user


def update_user(
    db: Session, *, user: User, data: UserUpdate, client_ip: str, site: mail.Site
) -> User:
    """Change the username, time zone or email address. A new email address needs the
    current password (`data.current_password`): the address is where the account is
    recovered from, so a stolen session or token alone must not be enough to change it.

    A new address is only pending: a verification link is mailed to it, and it replaces the
    current one once followed (services.verification). Giving the current address again
    cancels a pending change.
    """
    changes = data.model_dump(exclude_unset=True, exclude={"current_password"})
    new_email = changes.pop("email", None)
    changing = new_email is not None and new_email != user.email
    if changing:
        accounts.confirm_password(
            db, user=user, password=data.current_password, client_ip=client_ip
        )
    _ensure_unique(
        db, username=changes.get("username"), email=new_email if changing else None, exclude=user.id
    )
    for field, value in changes.items():
        setattr(user, field, value)
    if changing:
        user.pending_email = new_email
        verification.send_link(db, user=user, email=new_email, site=site)
    elif new_email is not None:
        user.pending_email = None
    commit_unique(db)
    return user


def delete_user(
    db: Session, *, user: User, password: str | None, client_ip: str, storage: MediaStorage
) -> None:
    """Delete the account once its current password confirms it (see
    accounts.confirm_password for the throttle and the errors)."""
    accounts.confirm_password(db, user=user, password=password, client_ip=client_ip)
    remove_account(db, user=user, storage=storage)


def remove_account(db: Session, *, user: User, storage: MediaStorage) -> None:
    """Delete the account and everything it owns, in the session's open transaction."""
    # Posts, sessions, images and (in database storage) their bytes go with the user through
    # ON DELETE CASCADE; files on disk go only once the deletion is committed.
    files = images.stored_names(db, user_id=user.id) + _avatar_names(user.image_file)
    db.delete(user)
    db.commit()
    storage.release(files)


AVATAR_FOLDER = MEDIA_AVATAR_PREFIX.removeprefix("/media/").rstrip("/")


def _avatar_names(filename: str | None) -> list[str]:
    """The storage name of an avatar file; none for a name store could not have made."""
    if filename is None or not STORED_AVATAR_NAME.fullmatch(filename):
        return []
    return [f"{AVATAR_FOLDER}/{filename}"]


def set_profile_picture(db: Session, *, user: User, jpeg: bytes, storage: MediaStorage) -> User:
    """Store the new picture, point the user at it, then remove the old one.

    The old file is removed only after the commit; if the commit fails, the new file is
    removed instead, so no file is ever orphaned and no user points at a missing one.
    """
    db.commit()  # end the login lookup's read: the write starts here
    # Server-chosen names: nothing from the client ends up in a path, and names are unguessable.
    new_name = f"{secrets.token_hex(16)}.jpg"
    # The name stored now, read inside this write transaction (and locked on PostgreSQL):
    # the `user` object may come from an earlier one, and two uploads at once must each
    # remove the picture the other replaced, not the same one twice.
    old_name = db.scalar(select(User.image_file).where(User.id == user.id).with_for_update())
    storage.save(db, f"{AVATAR_FOLDER}/{new_name}", jpeg, owner_id=user.id)
    storage.delete(db, _avatar_names(old_name))
    user.image_file = new_name
    try:
        db.commit()
    except BaseException:
        db.rollback()
        storage.release(_avatar_names(new_name))
        raise
    storage.release(_avatar_names(old_name))
    return user


def remove_orphaned_files(db: Session, *, storage: LocalStorage, grace_seconds: float) -> list[str]:
    """Remove avatar and post image files no row points at (left by a crash mid-upload)."""
    avatars = set(db.scalars(select(User.image_file).where(User.image_file.is_not(None))))
    referenced = images.referenced_names(db)
    db.commit()
    removed = storage.remove_orphans(
        AVATAR_FOLDER,
        STORED_AVATAR_NAME,
        {f"{AVATAR_FOLDER}/{name}" for name in avatars},
        grace_seconds,
    )
    return removed + storage.remove_orphans(
        images.FOLDER, images.STORED_NAME, referenced, grace_seconds
    )
