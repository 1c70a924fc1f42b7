"""SQLAlchemy models: users and their posts."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from config import utcnow
from database import Base

# Field limits, shared by the columns, the schemas that validate input and the forms.
USERNAME_MAX_LENGTH = 50
EMAIL_MAX_LENGTH = 120
TITLE_MAX_LENGTH = 100
CONTENT_MAX_LENGTH = 100_000
SLUG_MAX_LENGTH = 80
TAG_MAX_LENGTH = 40
MAX_TAGS_PER_POST = 10
TIMEZONE_MAX_LENGTH = 64
TOTP_SECRET_MAX_LENGTH = 64
FIELD_LIMITS = {
    "username": USERNAME_MAX_LENGTH,
    "email": EMAIL_MAX_LENGTH,
    "title": TITLE_MAX_LENGTH,
    "content": CONTENT_MAX_LENGTH,
    "slug": SLUG_MAX_LENGTH,
    "tag": TAG_MAX_LENGTH,
}

DEFAULT_AVATAR = "/static/profile_pics/default.jpg"
MEDIA_AVATAR_PREFIX = "/media/profile_pics/"


def _same_as_posted(context: DefaultExecutionContext) -> datetime:
    # A new post has not been edited: updated_at starts equal to date_posted, to the
    # microsecond (two separate utcnow() calls would make it look edited).
    return context.get_current_parameters()["date_posted"]


def _published_when_posted(context: DefaultExecutionContext) -> datetime | None:
    # A post created published without a moment of its own went live when it was posted.
    parameters = context.get_current_parameters()
    return parameters["date_posted"] if parameters.get("status") == "published" else None


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps the offset itself; SQLite has no such type, so values are stored as
    naive UTC and given their tzinfo back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class User(Base):
    __tablename__ = "users"
    # SQLite would otherwise give a deleted user's id to the next one (migration 0006).
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    image_file: Mapped[str | None] = mapped_column(String(64), default=None)
    # None for accounts created before passwords existed: they can be read but not log in.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Where the author lives: schedules are entered and shown in this zone (IANA name).
    timezone: Mapped[str] = mapped_column(
        String(TIMEZONE_MAX_LENGTH), server_default="UTC", default="UTC"
    )
    # Two-factor sign-in (services.two_factor): on once `totp_secret` is set. A secret being
    # set up waits in `totp_pending_secret` until a code from it is entered; the last time
    # step a code was accepted for keeps any code from being used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(TOTP_SECRET_MAX_LENGTH), default=None)
    totp_pending_secret: Mapped[str | None] = mapped_column(
        String(TOTP_SECRET_MAX_LENGTH), default=None
    )
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)

    posts: Mapped[list["Post"]] = relationship(
        back_populates="author",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="(Post.published_at.desc(), Post.id.desc())",
    )

    @property
    def image_path(self) -> str:
        """URL path of the avatar: the upload if there is one, else the default picture."""
        if self.image_file:
            return MEDIA_AVATAR_PREFIX + self.image_file
        return DEFAULT_AVATAR

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_secret is not None

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r})"


# Usernames are unique whatever their case (migration 0008): `frank` and `FRANK` would be two
# accounts that look the same to readers and share a login name. Lookups by name compare
# lower(username), so they use this index too.
USERNAME_LOWER_INDEX = "uq_users_lower_username"
Index(USERNAME_LOWER_INDEX, func.lower(User.username), unique=True)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        # Newest-first listings walk these indexes backwards: no sort, whatever the table size,
        # and readers' listings stop at `published_at <= now` within them. The second one also
        # serves the foreign key (cascading deletes, author pages).
        Index("ix_posts_published_at_id", "published_at", "id"),
        Index("ix_posts_user_id_published_at_id", "user_id", "published_at", "id"),
        # Lets each worker's start-up find posts an older renderer produced without reading
        # the whole table (services.posts.rerender_stale_posts).
        Index("ix_posts_render_version", "render_version"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    content: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    date_posted: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=_same_as_posted, onupdate=utcnow
    )
    # Derived from `content` when it is written (services.posts.rendered_fields), so that
    # page views never parse Markdown; render_version says which renderer produced them.
    content_html: Mapped[str] = mapped_column(Text, server_default="", default="")
    excerpt: Mapped[str] = mapped_column(Text, server_default="", default="")
    reading_minutes: Mapped[int] = mapped_column(server_default="1", default=1)
    render_version: Mapped[int] = mapped_column(server_default="0", default=0)
    # Optimistic locking: every UPDATE checks and bumps it, so of two edits made from the
    # same version the second fails instead of silently overwriting the first.
    version: Mapped[int] = mapped_column(server_default="1", default=1)
    # draft, scheduled or published. Readers see a post once `published_at` has come:
    # drafts have none, a scheduled post a future one, so a post goes live at its moment
    # with no job to run (services.posts.visible_to_readers).
    status: Mapped[str] = mapped_column(String(16), server_default="published", default="published")
    published_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=_published_when_posted
    )
    slug: Mapped[str] = mapped_column(
        String(SLUG_MAX_LENGTH), server_default="post", default="post"
    )

    author: Mapped[User] = relationship(back_populates="posts")
    tags: Mapped[list["Tag"]] = relationship(
        # Loaded for every post of a listing in one more statement, in the order they were
        # first used (the key's order: no sort step).
        secondary="post_tags",
        lazy="selectin",
    )
    review_links: Mapped[list["ReviewLink"]] = relationship(
        back_populates="post", cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}

    @property
    def status_now(self) -> str:
        """The status a reader sees: a scheduled post whose moment has come is published."""
        if self.status == "scheduled" and self.is_live():
            return "published"
        return self.status

    def is_live(self) -> bool:
        """Whether readers see the post now."""
        return self.published_at is not None and self.published_at <= utcnow()

    def __repr__(self) -> str:
        return f"Post(id={self.id!r}, title={self.title!r})"


class Tag(Base):
    """A tag: its name as first typed, and the slug that makes two spellings one tag."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(TAG_MAX_LENGTH * 2), unique=True)
    name: Mapped[str] = mapped_column(String(TAG_MAX_LENGTH))

    def __repr__(self) -> str:
        return f"Tag(slug={self.slug!r})"


class PostTag(Base):
    __tablename__ = "post_tags"
    # A tag's listing starts from its rows (tag_id first); the primary key serves a post's tags.
    __table_args__ = (Index("ix_post_tags_tag_id_post_id", "tag_id", "post_id"),)

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)


class ReviewLink(Base):
    """An unguessable link that shows an unpublished post to whoever holds it, until it
    expires or its author revokes it. Only a hash of the token is stored."""

    __tablename__ = "review_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    post: Mapped[Post] = relationship(back_populates="review_links")


class AuthSession(Base):
    """A browser session or an API token. Only a hash of the secret is stored."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class RecoveryCode(Base):
    """One unused recovery code of an account with two-factor sign-in: a way in when the
    authenticator app is lost. Only a hash is stored, and a code is deleted when used."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginFailure(Base):
    """One failed login, keyed by account or client address; kept in the database so that
    every worker process sees the same count."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SiteState(Base):
    """One row: a counter that database triggers bump whenever a post or an author's public
    details change (migration 0005). Cached pages are keyed by it."""

    __tablename__ = "site_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    content_version: Mapped[int] = mapped_column(BigInteger, server_default="1")
