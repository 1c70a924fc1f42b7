"""Post images: an author's media library, where each image is used, and deletion.

An upload is decoded and re-encoded by services.media (make_post_image) before anything here
runs; this module stores the widths through the MediaStorage interface and keeps the rows.
Files are named by a hash of the owner and the widest copy's bytes: immutable, and never shared
between two accounts, so deleting one author's image can never take another's.

Which posts show an image is kept in post_media, brought up to date whenever a post's content
is flushed (_sync_post_media): the library page and the "still in use" check read an index
instead of searching every post's text.
"""

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, event, func, insert, inspect, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, UOWTransaction

from models import MEDIA_IMAGES_FOLDER, MediaFile, Post, PostMedia, User
from services.errors import ConflictError, NotFoundError
from services.media import PostImage, variant_sizes
from services.storage import MediaStorage

FOLDER = MEDIA_IMAGES_FOLDER
# The file names upload_image gives (what the orphan sweep may remove in that folder).
STORED_NAME = re.compile(r"[0-9a-f]{32}-[1-9][0-9]{0,4}x[1-9][0-9]{0,4}\.jpg")
MEDIA_NOT_FOUND = "Image not found"
IN_USE = "This image is shown in a post; delete it anyway with force=true"
# What the Markdown renderer and the reference tracking recognise as one of the site's images.
IMAGE_PATH = re.compile(
    rf"/media/{MEDIA_IMAGES_FOLDER}/(?P<digest>[0-9a-f]{{32}})-(?P<width>[1-9][0-9]{{0,4}})"
    r"x(?P<height>[1-9][0-9]{0,4})\.jpg"
)


class QuotaExceededError(ConflictError):
    """The author's library is full (count or bytes)."""


class ImageInUseError(ConflictError):
    """Posts still show the image, and deletion was not forced."""


def file_name(digest: str, width: int, height: int) -> str:
    return f"{MEDIA_IMAGES_FOLDER}/{digest}-{width}x{height}.jpg"


def file_names(media: MediaFile) -> list[str]:
    """Every stored width of the image, narrowest first."""
    return [file_name(media.digest, w, h) for w, h in variant_sizes(media.width, media.height)]


def image_path(media: MediaFile) -> str:
    """The URL path of the widest copy: what Markdown points at."""
    return "/media/" + file_name(media.digest, media.width, media.height)


def markdown_snippet(media: MediaFile, alt: str = "") -> str:
    # Brackets would end the alt text early; the path is all hex digits and punctuation.
    safe_alt = re.sub(r"[\[\]\\\n\r]", " ", alt).strip()
    return f"![{safe_alt}]({image_path(media)})"


# ---------------------------------------------------------------- upload


def upload_image(
    db: Session,
    *,
    user: User,
    image: PostImage,
    storage: MediaStorage,
    max_files: int,
    max_bytes: int,
) -> MediaFile:
    """Store a decoded image in the author's library and return its row; the same picture
    uploaded again returns the row it already has.

    The checks come first, then the files, then the commit; if the commit fails, the files
    written for it are removed again (local storage) or rolled back with it (database).
    """
    db.commit()  # end the read transaction of the login lookup: the write starts here
    digest = hashlib.sha256(b"%d:" % user.id + image.variants[-1].jpeg).hexdigest()[:32]
    existing = _find(db, user_id=user.id, digest=digest)
    if existing is not None:
        return existing
    size = sum(len(variant.jpeg) for variant in image.variants)
    _check_quota(db, user_id=user.id, adding=size, max_files=max_files, max_bytes=max_bytes)
    media = MediaFile(
        user_id=user.id, digest=digest, width=image.width, height=image.height, byte_size=size
    )
    db.add(media)
    created = _save_files(db, media, image, storage)
    try:
        db.commit()
    except IntegrityError:
        # The same picture, uploaded by the same author at the same moment, won the race.
        db.rollback()
        storage.release(created)
        winner = _find(db, user_id=user.id, digest=digest)
        if winner is None:
            raise
        _save_files(db, winner, image, storage)  # in case the rollback removed its files
        db.commit()
        return winner
    except BaseException:
        db.rollback()
        storage.release(created)
        raise
    return media


def _find(db: Session, *, user_id: int, digest: str) -> MediaFile | None:
    return db.scalar(
        select(MediaFile).where(MediaFile.user_id == user_id, MediaFile.digest == digest)
    )


def _save_files(db: Session, media: MediaFile, image: PostImage, storage: MediaStorage) -> list:
    names = file_names(media)
    return [
        name
        for name, variant in zip(names, image.variants, strict=True)
        if storage.save(db, name, variant.jpeg, owner_id=media.user_id)
    ]


def _check_quota(db: Session, *, user_id: int, adding: int, max_files: int, max_bytes: int) -> None:
    count, used = db.execute(
        select(func.count(), func.coalesce(func.sum(MediaFile.byte_size), 0)).where(
            MediaFile.user_id == user_id
        )
    ).one()
    if count >= max_files:
        raise QuotaExceededError(
            f"Your media library is full ({max_files} images); delete some first."
        )
    if used + adding > max_bytes:
        raise QuotaExceededError(
            f"Your media library is full ({max_bytes // (1024 * 1024)} MB); delete some first."
        )


# ---------------------------------------------------------------- the library


@dataclass(frozen=True)
class Usage:
    post_id: int
    title: str
    slug: str
    mine: bool


@dataclass(frozen=True)
class LibraryPage:
    """One page of an author's images, newest first, with the posts that show each one.

    Plain OFFSET paging: an author has at most MEDIA_MAX_FILES_PER_USER images, and the
    (user_id, created_at, id) index serves the order."""

    items: list[MediaFile]
    usages: dict[int, list[Usage]]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def library_page(db: Session, *, user: User, number: int, size: int) -> LibraryPage:
    """Two statements whatever the page size: the images, then the posts using them."""
    rows = list(
        db.scalars(
            select(MediaFile)
            .where(MediaFile.user_id == user.id)
            .order_by(MediaFile.created_at.desc(), MediaFile.id.desc())
            .offset((number - 1) * size)
            .limit(size + 1)
        )
    )
    items = rows[:size]
    return LibraryPage(items, usages(db, items, viewer=user), number, len(rows) > size)


def usages(db: Session, items: Iterable[MediaFile], *, viewer: User) -> dict[int, list[Usage]]:
    """Posts that show each image. Other authors' posts are counted but not named (their
    drafts are not the viewer's business)."""
    ids = [media.id for media in items]
    found: dict[int, list[Usage]] = {media_id: [] for media_id in ids}
    if not ids:
        return found
    query = (
        select(PostMedia.media_id, Post.id, Post.title, Post.slug, Post.user_id)
        .join(Post, Post.id == PostMedia.post_id)
        .where(PostMedia.media_id.in_(ids))
        .order_by(PostMedia.media_id, Post.id)
    )
    for media_id, post_id, title, slug, author_id in db.execute(query):
        mine = author_id == viewer.id
        found[media_id].append(Usage(post_id, title if mine else "", slug, mine))
    return found


def get_own_media(db: Session, *, user: User, media_id: int) -> MediaFile:
    """The author's image, or NotFoundError (also for someone else's: no telling them apart)."""
    media = db.get(MediaFile, media_id) if 1 <= media_id <= 2**31 - 1 else None
    if media is None or media.user_id != user.id:
        raise NotFoundError(MEDIA_NOT_FOUND)
    return media


def delete_image(db: Session, *, media: MediaFile, storage: MediaStorage, force: bool) -> None:
    """Delete the image and its files; ImageInUseError while posts show it, unless forced."""
    in_use = db.scalar(select(PostMedia.post_id).where(PostMedia.media_id == media.id).limit(1))
    if in_use is not None and not force:
        raise ImageInUseError(IN_USE)
    names = file_names(media)
    db.delete(media)
    storage.delete(db, names)
    db.commit()
    storage.release(names)


def stored_names(db: Session, *, user_id: int) -> list[str]:
    """Every file of the author's images (for deleting the account)."""
    return [name for media in _all_of(db, user_id) for name in file_names(media)]


def _all_of(db: Session, user_id: int) -> list[MediaFile]:
    return list(db.scalars(select(MediaFile).where(MediaFile.user_id == user_id)))


def referenced_names(db: Session) -> set[str]:
    """Every file some image row names (for the orphan sweep of local storage)."""
    rows = db.execute(select(MediaFile.digest, MediaFile.width, MediaFile.height))
    return {
        file_name(digest, w, h)
        for digest, width, height in rows
        for w, h in variant_sizes(width, height)
    }


# ---------------------------------------------------------------- which posts show which image


def _changed_contents(session: Session) -> list[Post]:
    changed = []
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Post) and inspect(obj).attrs.content.history.has_changes():
            changed.append(obj)
    return changed


@event.listens_for(Session, "after_flush")
def _sync_post_media(session: Session, flush_context: UOWTransaction) -> None:
    """Point post_media at the images each written post's content shows (by digest)."""
    for post in _changed_contents(session):
        digests = {match["digest"] for match in IMAGE_PATH.finditer(post.content or "")}
        connection = session.connection()
        if post not in session.new:
            # A post inserted in this flush has no rows yet: post ids are never reused,
            # and a deleted post's rows went with it.
            connection.execute(delete(PostMedia).where(PostMedia.post_id == post.id))
        if digests:
            connection.execute(
                insert(PostMedia).from_select(
                    ["post_id", "media_id"],
                    select(literal(post.id), MediaFile.id).where(MediaFile.digest.in_(digests)),
                )
            )
