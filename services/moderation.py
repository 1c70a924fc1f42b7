"""Running a multi-author site: admins, suspended accounts, and the log of what admins did.

An admin is made only on the command line (`inkwell create-admin`, `promote`). Suspending an
account ends its sessions and tokens and hides its posts from readers (Post.hidden, read by
models.live_post) without deleting anything; lifting the suspension shows them again. Every
admin action writes an AuditEntry with the admin's reason in the same transaction.
"""

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from config import utcnow
from models import ADMIN_ROLE, AUTHOR_ROLE, AuditEntry, Post, User
from schemas import MAX_ID, PostUpdate, UserCreate
from services import accounts, audit, passwords, posts, sessions, users, validity
from services.errors import ForbiddenError, NotFoundError
from services.storage import MediaStorage

SELF_ACTION = "An admin cannot do this to their own account."


def find_user(db: Session, *, username: str) -> User:
    user = accounts.find_by_username(db, username=username)
    if user is None:
        raise NotFoundError(f"No account is called {username!r}.")
    return user


def create_admin(db: Session, *, data: UserCreate) -> User:
    """A new admin account (the command line's create-admin). Its address counts as
    verified: whoever runs the command vouches for it."""
    password_hash = passwords.hash_password(data.password)  # before any transaction opens
    user = users.add_account(db, data=data, password_hash=password_hash)
    user.role = ADMIN_ROLE
    user.email_verified_at = utcnow()
    users.commit_unique(db)
    return user


def set_role(db: Session, *, username: str, admin: bool) -> User:
    """Make `username` an admin or an author again (the command line's promote/demote)."""
    user = find_user(db, username=username)
    user.role = ADMIN_ROLE if admin else AUTHOR_ROLE
    db.commit()
    return user


def list_users(db: Session, *, search: str = "", page: int = 1) -> audit.AdminPage[User]:
    """Accounts newest first, those whose name or address contains `search` if given."""
    query = select(User).order_by(User.id.desc())
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            or_(func.lower(User.username).like(pattern), func.lower(User.email).like(pattern))
        )
    return audit.page_of(db, query, page=page)


def list_posts(db: Session, *, page: int = 1) -> audit.AdminPage[Post]:
    """Every post, drafts included, newest written first, with its author."""
    query = select(Post).options(joinedload(Post.author)).order_by(Post.id.desc())
    return audit.page_of(db, query, page=page)


def audit_log(db: Session, *, page: int = 1) -> audit.AdminPage[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    return audit.page_of(db, query, page=page)


def get_any_post(db: Session, *, post_id: int) -> Post:
    """Any post, whatever its status or author's state; NotFoundError if there is none."""
    post = None
    if 1 <= post_id <= MAX_ID:  # a larger id names none (and would make PostgreSQL raise)
        post = db.scalar(select(Post).options(joinedload(Post.author)).where(Post.id == post_id))
    if post is None:
        raise NotFoundError(posts.POST_NOT_FOUND)
    return post


def _not_self(admin: User, user: User) -> None:
    if admin.id == user.id:
        raise ForbiddenError(SELF_ACTION)


def _hide_posts(db: Session, user: User, *, hidden: bool) -> None:
    db.execute(update(Post).where(Post.user_id == user.id).values(hidden=hidden))
    validity.invalidate_author(db, user_id=user.id)


def suspend(db: Session, *, admin: User, user: User, reason: str) -> None:
    """Suspend `user`: every session and token ends, their posts leave every listing and
    page, and they cannot log in; nothing is deleted."""
    _not_self(admin, user)
    if user.is_suspended:
        return
    user.suspended_at = utcnow()
    _hide_posts(db, user, hidden=True)
    audit.record(db, admin, "suspend", user, reason)
    sessions.end_all_sessions(db, user=user)  # commits the whole change


def unsuspend(db: Session, *, admin: User, user: User, reason: str) -> None:
    """Lift a suspension: the account may log in again and its posts are shown again."""
    if not user.is_suspended:
        return
    user.suspended_at = None
    _hide_posts(db, user, hidden=False)
    audit.record(db, admin, "unsuspend", user, reason)
    db.commit()


def delete_user(
    db: Session, *, admin: User, user: User, reason: str, storage: MediaStorage
) -> None:
    """Delete an account as its owner would (posts, images, sessions), logged first."""
    _not_self(admin, user)
    audit.record(db, admin, "delete user", user, reason)
    users.remove_account(db, user=user, storage=storage)


def unpublish_post(db: Session, *, admin: User, post: Post, reason: str) -> None:
    """Turn a post back into a draft of its author's, through the ordinary edit (so its
    history records it)."""
    audit.record(db, admin, "unpublish post", post, reason)
    posts.update_post(db, post=post, data=PostUpdate(status="draft"))


def delete_post(db: Session, *, admin: User, post: Post, reason: str) -> None:
    audit.record(db, admin, "delete post", post, reason)
    posts.delete_post(db, post=post)
