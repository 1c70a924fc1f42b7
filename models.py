"""SQLAlchemy models: users and their posts, sessions, mailed links, the mail outbox and the
moderation log."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
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
AUTHOR_ROLE, ADMIN_ROLE = "author", "admin"
ROLES = (AUTHOR_ROLE, ADMIN_ROLE)
AUDIT_REASON_MAX_LENGTH = 500
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
    # When someone proved, through a link mailed to it, that `email` reaches them; None for
    # an address never confirmed (every account from before verification existed, too).
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A new address waiting for its owner to follow the link mailed to it: `email` changes
    # only then, so a mistyped or someone else's address never takes the account over.
    pending_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH), default=None)
    # Two-factor sign-in (services.two_factor): on once `totp_secret` is set. A secret being
    # set up waits in `totp_pending_secret` until a code from it is entered; the last time
    # step a code was accepted for keeps any code from being used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(TOTP_SECRET_MAX_LENGTH), default=None)
    totp_pending_secret: Mapped[str | None] = mapped_column(
        String(TOTP_SECRET_MAX_LENGTH), default=None
    )
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # `author` or `admin` (ROLES); only the command line makes an admin.
    role: Mapped[str] = mapped_column(String(16), server_default="author", default="author")
    # Set while an admin has suspended the account: no login, no session, posts hidden.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Bumped by services.validity.invalidate_author when something changes every page of
    # this author's posts at once; cached post pages carry the number they were made at.
    content_version: Mapped[int] = mapped_column(BigInteger, server_default="1")

    posts: Mapped[list["Post"]] = relationship(
        back_populates="author",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="(Post.published_at.desc(), Post.id.desc())",
    )

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

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
        # `hidden` rides along at the end so that skipping rows to a deep page still reads
        # the index alone (readers' listings filter on it, models.live_post).
        Index("ix_posts_published_at_id", "published_at", "id", "hidden"),
        Index("ix_posts_user_id_published_at_id", "user_id", "published_at", "id", "hidden"),
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
    # True while the author is suspended: readers' listings and pages leave the post out
    # (models.live_post), kept on the row so that no listing needs to join the author.
    hidden: Mapped[bool] = mapped_column(Boolean, server_default="0", default=False)
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
    revisions: Mapped[list["Revision"]] = relationship(
        back_populates="post", cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}

    @property
    def status_now(self) -> str:
        """The status a reader sees: a scheduled post whose moment has come is published."""
        # Its moment alone decides: a suspension hides a post without changing its status.
        if self.status == "scheduled" and self.published_at and self.published_at <= utcnow():
            return "published"
        return self.status

    def is_live(self) -> bool:
        """Whether readers see the post now."""
        return is_live(self.published_at, hidden=self.hidden)

    def __repr__(self) -> str:
        return f"Post(id={self.id!r}, title={self.title!r})"


def is_live(published_at: datetime | None, *, hidden: bool) -> bool:
    """Post.is_live for a post's columns read on their own (no Post object loaded)."""
    return not hidden and published_at is not None and published_at <= utcnow()


def live_post(now: datetime | ColumnElement[datetime] | None = None) -> ColumnElement[bool]:
    """The SQL form of Post.is_live: the post's moment has come, and its author is not
    suspended (a suspension hides the author's posts, services.moderation). `now` may be a
    bound parameter, for a statement built once and run at many moments."""
    return (Post.published_at <= (utcnow() if now is None else now)) & Post.hidden.is_(False)


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


class Revision(Base):
    """What a post held at one of its versions: revision n is the post at version n.

    The text is stored compactly (services.revisions): a full zlib-compressed snapshot every
    few revisions, and in between a compressed delta against the revision before, so a
    thousand small edits of a long post take little more room than a few copies of it.
    """

    __tablename__ = "revisions"
    # The key serves a post's history, newest first, and the lookup of one revision.
    __table_args__ = (UniqueConstraint("post_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    # The tag names as a JSON array, in the post's order.
    tags: Mapped[str] = mapped_column(Text, default="[]")
    slug: Mapped[str] = mapped_column(String(SLUG_MAX_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # How `body` holds the content: "text" (UTF-8, as the migration copied it), "zlib" (a
    # compressed snapshot) or "delta" (compressed changes against revision number - 1).
    encoding: Mapped[str] = mapped_column(String(8))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # The number of the snapshot the delta chain starts from (its own for a snapshot).
    base_number: Mapped[int] = mapped_column()
    # Words added and removed against the revision before; None where it is unknown.
    words_added: Mapped[int | None] = mapped_column(default=None)
    words_removed: Mapped[int | None] = mapped_column(default=None)

    post: Mapped[Post] = relationship(back_populates="revisions")
    saved_by: Mapped[User] = relationship()


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


class AccountToken(Base):
    """A single-use link mailed to an address: a password reset, or the proof that an
    address reaches its owner. Only a hash of the token is stored; `email` is the address
    it was sent to (for a verification, the address it confirms)."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_id_purpose", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    user: Mapped[User] = relationship()


class Invitation(Base):
    """A single-use link to register while registration is by invitation (REGISTRATION_MODE
    `invite`), made by an admin and mailed to `email`. Only a hash of the token is stored.
    The names are copied as text, so that the row outlives both accounts."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_created_at_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    invited_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    invited_by_name: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set once someone registered with it (their name kept in `used_by_name`) or an admin
    # withdrew it; either way it opens nothing from then on.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    used_by_name: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH), default=None)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def state(self, now: datetime) -> str:
        """accepted, withdrawn, expired or pending."""
        if self.used_by_name is not None:
            return "accepted"
        if self.withdrawn_at is not None:
            return "withdrawn"
        return "expired" if self.expires_at <= now else "pending"


class OutboxMessage(Base):
    """A message waiting to be mailed, written in the same transaction as the change that
    caused it, so neither exists without the other; senders claim it from here."""

    __tablename__ = "outbox"
    # Senders look for pending messages whose time has come, oldest first.
    # A Message-ID is made from the id, so SQLite must never hand out one again.
    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    # pending, sent or failed (given up on).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # No sender tries after this: a reset link mailed after it expired helps no one.
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    # The sender holding the message, until when: a sender that dies loses its claim then.
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


MEDIA_IMAGES_FOLDER = "images"


class MediaFile(Base):
    """An image uploaded for posts, stored at a few widths (services.images). Its files are
    named by a hash of their content, so they never change under the same URL."""

    __tablename__ = "media"
    __table_args__ = (
        # An author's library, newest first; the unique key finds a repeated upload.
        Index("ix_media_user_id_created_at_id", "user_id", "created_at", "id"),
        UniqueConstraint("user_id", "digest", name="uq_media_user_id_digest"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(32))
    # The widest stored copy; the narrower ones follow from it (media.variant_sizes).
    width: Mapped[int]
    height: Mapped[int]
    byte_size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"MediaFile(id={self.id!r}, digest={self.digest!r})"


class PostMedia(Base):
    """A post whose content shows a media image; kept in step with the content on every flush
    (services.images), so "where is it used" is an index lookup."""

    __tablename__ = "post_media"
    __table_args__ = (Index("ix_post_media_media_id_post_id", "media_id", "post_id"),)

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    media_id: Mapped[int] = mapped_column(
        ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )


class MediaBlob(Base):
    """A stored file in database storage mode (MEDIA_STORAGE=database)."""

    __tablename__ = "media_blobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Goes with its owner's account; None for files nobody owns.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """One moderation action: who did what to which account or post, and why. The names are
    copied as text so that the entry outlives both the admin and what was acted on."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    admin_name: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    action: Mapped[str] = mapped_column(String(32))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(BigInteger)
    target_label: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    reason: Mapped[str] = mapped_column(String(AUDIT_REASON_MAX_LENGTH))
