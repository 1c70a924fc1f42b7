"""Import: posts from an Inkwell export, a folder (or zip) of Markdown files with front
matter, or a WordPress export, into one author's account, all or nothing.

Two steps, so that a large import never holds SQLite's write lock while it works:

1. `prepare` reads the archive within its limits (services.import_formats), applies the same
   rules as the post form, decodes every image through the picture pipeline
   (services.media) and renders every post's Markdown. No transaction is open.
2. `write` checks what needs the stored data (slugs the author already has, the media
   quota), then stores the images and inserts the posts, tags and first revisions in one
   short transaction. Files are written only once those checks have passed, and removed
   again if the transaction fails (database storage rolls back with it).

What cannot be imported is reported, with why, and the rest goes in; what makes the upload
as a whole unusable (not an archive, a zip bomb, XML entities) refuses it with nothing
written.
"""

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import NewAccountLimit, utcnow
from models import CONTENT_MAX_LENGTH, MediaFile, Post, User
from schemas import PostCreate
from services import images, media, posts, revisions, tags
from services.errors import ThrottledError
from services.export import POSTS_JSON
from services.images import QuotaExceededError
from services.import_formats import (
    IMAGE_LINK,
    IMAGE_SUFFIXES,
    MARKDOWN_SUFFIXES,
    XML_SUFFIX,
    ImportTooLargeError,
    Limits,
    MemberError,
    RawPost,
    Source,
    markdown_post,
    wordpress_posts,
)
from services.posts import post_slug, rendered_fields
from services.storage import MediaStorage
from services.text import slugify

STATUSES = ("draft", "scheduled", "published")
SLUG_TAKEN = "You already have a post with the slug {slug!r}"
SLUG_TWICE = "Another post in this import has the slug {slug!r}"
NOT_SHOWN = "An image no imported post shows"
NOT_A_POST = "Not a post (Markdown or WordPress XML) or an image"
# A query's IN list stays well below SQLite's limit on bound parameters.
_IN_BATCH = 500


@dataclass(frozen=True)
class ImportedPost:
    id: int
    slug: str
    title: str
    status: str


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class ImportReport:
    imported: list[ImportedPost] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedImage:
    member: str
    image: media.PostImage
    digest: str

    @property
    def byte_size(self) -> int:
        return sum(len(variant.jpeg) for variant in self.image.variants)

    @property
    def path(self) -> str:
        return f"/media/{images.file_name(self.digest, self.image.width, self.image.height)}"


@dataclass(frozen=True)
class PreparedPost:
    name: str
    title: str
    content: str
    slug: str
    status: str
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tags: list[str]
    rendered: dict[str, object]
    images: list[PreparedImage]


@dataclass
class Prepared:
    posts: list[PreparedPost] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# ---------------------------------------------------------------- step 1: no transaction


def _kind(name: str) -> str:
    lower = name.lower()
    if posixpath.basename(lower) == POSTS_JSON:
        return "index"  # the export's own summary: its Markdown files say the same
    if lower.endswith(MARKDOWN_SUFFIXES):
        return "markdown"
    if lower.endswith(XML_SUFFIX):
        return "wordpress"
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    return "other"


def _read_posts(source: Source, limits: Limits, prepared: Prepared) -> list[RawPost]:
    found: list[RawPost] = []
    for name in source.names():
        kind = _kind(name)
        try:
            if kind == "markdown":
                found.append(markdown_post(name, source.read(name, limits.max_text_bytes)))
            elif kind == "wordpress":
                posts, left_out = wordpress_posts(name, source.read(name, limits.max_xml_bytes))
                found += posts
                prepared.skipped += [Skipped(*item) for item in left_out]
            elif kind == "other":
                prepared.skipped.append(Skipped(name, NOT_A_POST))
        except MemberError as exc:
            prepared.skipped.append(Skipped(name, str(exc)))
        if len(found) > limits.max_posts:
            raise ImportTooLargeError(f"At most {limits.max_posts} posts are imported at once.")
    return found


class _Images:
    """Images the posts show, each read and decoded once (the pipeline's limits apply)."""

    def __init__(self, source: Source, user_id: int) -> None:
        self.source = source
        self.user_id = user_id
        self.available = {name for name in source.names() if _kind(name) == "image"}
        self.done: dict[str, PreparedImage | str] = {}

    def member_for(self, post_name: str, target: str) -> str | None:
        """The archive member a relative image destination names, if the archive has it."""
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|/|#", target):
            return None
        member = posixpath.normpath(posixpath.join(posixpath.dirname(post_name), target))
        return member if member in self.available else None

    def get(self, member: str) -> PreparedImage | str:
        """The decoded image, or why it was refused."""
        if member not in self.done:
            self.done[member] = self._decode(member)
        return self.done[member]

    def _decode(self, member: str) -> PreparedImage | str:
        try:
            data = self.source.read(member, media.MAX_PICTURE_BYTES)
            image = keep_stored_copy(media.make_post_image(data), data)
        except (MemberError, media.PictureError) as exc:
            return str(exc)
        widest = image.variants[-1].jpeg
        digest = hashlib.sha256(b"%d:" % self.user_id + widest).hexdigest()[:32]
        return PreparedImage(member, image, digest)

    def unused(self) -> list[str]:
        return sorted(self.available - set(self.done))


def _with_images(raw: RawPost, found: _Images) -> tuple[str, list[PreparedImage]]:
    """The content with its archive images pointing at where they will be stored."""
    shown: list[PreparedImage] = []
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        target = match[2].removeprefix("<").removesuffix(">")
        member = found.member_for(raw.name, target)
        if member is None:
            return match[0]
        image = found.get(member)
        if isinstance(image, str):
            problems.append(f"its image {member} was refused: {image}")
            return match[0]
        shown.append(image)
        return match[1] + image.path

    content = IMAGE_LINK.sub(replace, raw.content)
    if problems:
        raise MemberError("; ".join(problems))
    return content, shown


def _validated(raw: RawPost, content: str) -> PostCreate:
    values = {
        "title": str(raw.title).strip(),
        "content": content,
        "tags": [str(tag) for tag in raw.tags],
        "status": "draft",
    }
    try:
        return PostCreate.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MemberError(f"{where}: {first['msg']}") from None


def _schedule(raw: RawPost, now: datetime) -> tuple[str, datetime | None]:
    """As the post form would store it: a draft has no time; a time still to come is a
    scheduled post, a time gone by a published one."""
    if raw.status not in STATUSES:
        raise MemberError(f"Its status {raw.status[:20]!r} is not draft, scheduled or published")
    if raw.status == "draft":
        return "draft", None
    if raw.published_at is None and raw.status == "scheduled":
        raise MemberError("A scheduled post needs a time to go live (published_at)")
    when = raw.published_at or now
    return ("scheduled" if when > now else "published"), when


def _prepare_post(raw: RawPost, found: _Images, now: datetime) -> PreparedPost:
    content, shown = _with_images(raw, found)
    if len(content) > CONTENT_MAX_LENGTH:
        raise MemberError(f"content: longer than {CONTENT_MAX_LENGTH} characters")
    data = _validated(raw, content)
    status, published_at = _schedule(raw, now)
    created = raw.created_at or published_at or now
    return PreparedPost(
        name=raw.name,
        title=data.title,
        content=data.content,
        slug=post_slug(slugify(str(raw.slug or "")) or None, data.title),
        status=status,
        published_at=published_at,
        created_at=created,
        updated_at=raw.updated_at or created,
        tags=list(data.tags),
        rendered=rendered_fields(data.content),
        images=shown,
    )


def prepare(source: Source, *, user_id: int, limits: Limits) -> Prepared:
    """Everything slow, before any transaction: reading, rules, images and rendering."""
    prepared = Prepared(skipped=[Skipped(*item) for item in source.refused])
    found = _Images(source, user_id)
    now = utcnow()
    slugs: set[str] = set()
    for raw in _read_posts(source, limits, prepared):
        try:
            post = _prepare_post(raw, found, now)
        except MemberError as exc:
            prepared.skipped.append(Skipped(raw.name, str(exc)))
            continue
        if post.slug in slugs:
            prepared.skipped.append(Skipped(raw.name, SLUG_TWICE.format(slug=post.slug)))
            continue
        slugs.add(post.slug)
        prepared.posts.append(post)
    prepared.skipped += [Skipped(name, NOT_SHOWN) for name in found.unused()]
    return prepared


# ---------------------------------------------------------------- the stored form of a JPEG

# The segments this site's JPEG encoder writes: JFIF header, tables, frame, scan.
_KEPT_SEGMENTS = {0xE0, 0xDB, 0xC4, 0xC0, 0xDD}


def is_stored_form(data: bytes) -> bool:
    """Whether `data` is a JPEG in the form this site stores: a baseline frame, tables and
    one scan, no metadata or comment segment, nothing after its end."""
    if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
        return False
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            scan = data[position + 2 + length : -2]
            # In entropy-coded data 0xFF is followed only by a stuffed zero or a restart.
            return re.search(rb"\xff[^\x00\xd0-\xd7]", scan) is None
        if marker not in _KEPT_SEGMENTS:
            return False
        if marker == 0xE0 and data[position + 4 : position + 9] != b"JFIF\x00":
            return False
        position += 2 + length
    return False


def keep_stored_copy(image: media.PostImage, data: bytes) -> media.PostImage:
    """The image with its widest copy as uploaded when the upload already is a copy this
    site stored (an export's image): it decoded cleanly through the pipeline at its stored
    size and holds nothing but pixels, so its bytes are kept and an export of the import
    matches the export it came from. Anything else stays as the pipeline re-encoded it."""
    widest = image.variants[-1]
    if not is_stored_form(data) or _jpeg_size(data) != (widest.width, widest.height):
        return image
    kept = media.Variant(widest.width, widest.height, data)
    return media.PostImage((*image.variants[:-1], kept))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    start = data.find(b"\xff\xc0")
    if start < 0 or start + 9 > len(data):
        return None
    height = int.from_bytes(data[start + 5 : start + 7], "big")
    width = int.from_bytes(data[start + 7 : start + 9], "big")
    return width, height


# ---------------------------------------------------------------- step 2: one transaction


def _in_batches(values: list[str]) -> list[list[str]]:
    return [values[start : start + _IN_BATCH] for start in range(0, len(values), _IN_BATCH)]


def _taken_slugs(db: Session, user_id: int, slugs: list[str]) -> set[str]:
    taken: set[str] = set()
    for batch in _in_batches(slugs):
        query = select(Post.slug).where(Post.user_id == user_id, Post.slug.in_(batch))
        taken.update(db.scalars(query))
    return taken


def _media_rows(db: Session, user_id: int, digests: list[str]) -> dict[str, MediaFile]:
    rows: dict[str, MediaFile] = {}
    for batch in _in_batches(digests):
        query = select(MediaFile).where(MediaFile.user_id == user_id, MediaFile.digest.in_(batch))
        rows.update((item.digest, item) for item in db.scalars(query))
    return rows


def _check_quota(
    db: Session, user_id: int, new: list[PreparedImage], max_files: int, max_bytes: int
) -> None:
    count, used = db.execute(
        select(func.count(), func.coalesce(func.sum(MediaFile.byte_size), 0)).where(
            MediaFile.user_id == user_id
        )
    ).one()
    if new and count + len(new) > max_files:
        raise QuotaExceededError(
            f"The import brings {len(new)} images and your media library has room for "
            f"{max(max_files - count, 0)}; nothing was imported."
        )
    adding = sum(image.byte_size for image in new)
    if new and used + adding > max_bytes:
        raise QuotaExceededError(
            f"The import's images need {adding // (1024 * 1024) + 1} MB and your media library "
            f"has {max(max_bytes - used, 0) // (1024 * 1024)} MB left; nothing was imported."
        )


def _count_against_new_account(
    db: Session, user: User, count: int, limit: NewAccountLimit | None
) -> None:
    """An import writes posts like the editor does: a new account's limit covers both."""
    try:
        posts.count_new_account_posts(db, author=user, limit=limit, count=count)
    except ThrottledError as exc:
        assert limit is not None  # only a limit throttles
        message = posts.new_account_limit_message(limit, exc.retry_after)
        raise QuotaExceededError(
            f"{message} This import brings {count}, so nothing was imported."
        ) from exc


def _store_images(
    db: Session, user: User, new: list[PreparedImage], storage: MediaStorage, created: list[str]
) -> None:
    for image in new:
        row = MediaFile(
            user_id=user.id,
            digest=image.digest,
            width=image.image.width,
            height=image.image.height,
            byte_size=image.byte_size,
        )
        db.add(row)
        names = images.file_names(row)
        for name, variant in zip(names, image.image.variants, strict=True):
            if storage.save(db, name, variant.jpeg, owner_id=user.id):
                created.append(name)


def _insert_posts(db: Session, user: User, posts: list[PreparedPost]) -> list[Post]:
    rows = []
    for item in posts:
        post = Post(
            title=item.title,
            content=item.content,
            author=user,
            status=item.status,
            published_at=item.published_at,
            slug=item.slug,
            date_posted=item.created_at,
            updated_at=item.updated_at,
            tags=tags.find_or_create(db, item.tags),
            **item.rendered,
        )
        db.add(post)
        db.flush()
        revisions.record_first(db, post=post)
        rows.append(post)
    return rows


def write(
    db: Session,
    *,
    user: User,
    prepared: Prepared,
    storage: MediaStorage,
    max_files: int,
    max_bytes: int,
    new_account: NewAccountLimit | None = None,
) -> ImportReport:
    """Store what `prepare` made ready, in one transaction; nothing if any of it fails."""
    report = ImportReport(skipped=list(prepared.skipped))
    created: list[str] = []
    db.commit()  # end any read: the write transaction starts with the next statement
    try:
        taken = _taken_slugs(db, user.id, [post.slug for post in prepared.posts])
        kept = [post for post in prepared.posts if post.slug not in taken]
        report.skipped += [
            Skipped(post.name, SLUG_TAKEN.format(slug=post.slug))
            for post in prepared.posts
            if post.slug in taken
        ]
        shown = {image.digest: image for post in kept for image in post.images}
        existing = _media_rows(db, user.id, list(shown))
        new = [image for digest, image in shown.items() if digest not in existing]
        _check_quota(db, user.id, new, max_files, max_bytes)
        _count_against_new_account(db, user, len(kept), new_account)
        _store_images(db, user, new, storage, created)
        rows = _insert_posts(db, user, kept)
        db.commit()
    except BaseException:
        db.rollback()
        storage.release(created)
        raise
    report.imported = [ImportedPost(row.id, row.slug, row.title, row.status) for row in rows]
    return report


def import_posts(
    db: Session,
    *,
    user: User,
    source: Source,
    storage: MediaStorage,
    limits: Limits,
    max_files: int,
    max_bytes: int,
    new_account: NewAccountLimit | None = None,
) -> ImportReport:
    """Prepare outside any transaction, then write in one."""
    db.commit()  # whatever was read before (the user) holds no lock while the work is done
    prepared = prepare(source, user_id=user.id, limits=limits)
    return write(
        db,
        user=user,
        prepared=prepared,
        storage=storage,
        max_files=max_files,
        max_bytes=max_bytes,
        new_account=new_account,
    )
