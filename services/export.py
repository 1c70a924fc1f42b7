"""Export: an author's posts, or the whole site's, as one zip of Markdown files.

The archive holds, for each author (at its root, or in a folder per author for the site):

    0001-first-post.md          front matter (title, slug, status, dates, tags, canonical URL)
    media/image-0001-1600x1200.jpg   the widest copy of every image of theirs a post shows
    posts.json                   the same data for programs, the text included

It is written as it is sent: posts are read in batches of BATCH_SIZE and each zip entry goes
out as soon as it is written, so memory stays at a batch of posts and one image whatever the
size of the account. The same data always gives the same bytes: entries come in a fixed order
(posts oldest first, each followed by the images it shows first), are named from that order
and carry timestamps taken from the posts, never from the clock.
"""

import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from models import MediaFile, Post, User
from services import images
from services.errors import NotFoundError
from services.storage import MediaStorage

FORMAT_NAME = "inkwell-export"
FORMAT_VERSION = 1
BATCH_SIZE = 50
POSTS_JSON = "posts.json"
MEDIA_FOLDER = "media"
# Zip timestamps cannot go before 1980; an account with no posts gets this moment.
ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)
_FILE_MODE = 0o100644 << 16
_UNIX = 3
# The site's own image paths as posts store them (`/media/images/<digest>-WxH.jpg`), not when
# they are the tail of some other site's address.
_SITE_IMAGE = re.compile(r"(?<![\w/.:%-])" + images.IMAGE_PATH.pattern)
# YAML refuses these characters unescaped (outside its "printable" set) or reads them as line
# breaks (NEL, LS, PS); JSON leaves them as they are.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")

CanonicalUrl = Callable[[Post], str]


def yaml_string(value: str) -> str:
    """A double-quoted scalar that YAML (and JSON) read back as exactly `value`."""
    quoted = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda match: f"\\u{ord(match[0]):04x}", quoted)


def _moment(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _zip_time(value: datetime) -> tuple[int, int, int, int, int, int]:
    moment = max(value.astimezone(UTC), ZIP_EPOCH)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _entry(name: str, moment: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _zip_time(moment))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _UNIX
    info.external_attr = _FILE_MODE
    return info


class _Pipe:
    """What zipfile writes to: bytes wait here until the generator hands them on. It cannot
    seek, so zipfile writes each entry's sizes after its data (a data descriptor)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to do: take() hands the bytes on."""

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


@dataclass
class _MediaNames:
    """Export names of an author's images, given in the order posts first show them."""

    author_id: int
    names: dict[str, tuple[str, MediaFile]] = field(default_factory=dict)

    def assign(self, db: Session, posts: list[Post]) -> list[tuple[str, MediaFile]]:
        """Name the images these posts show for the first time; return them, in order."""
        digests = [m["digest"] for post in posts for m in _SITE_IMAGE.finditer(post.content)]
        missing = {digest for digest in digests if digest not in self.names}
        rows = {}
        if missing:
            query = select(MediaFile).where(
                MediaFile.user_id == self.author_id, MediaFile.digest.in_(missing)
            )
            rows = {media.digest: media for media in db.scalars(query)}
        fresh = []
        for digest in digests:
            if digest in rows and digest not in self.names:
                media = rows[digest]
                number = len(self.names) + 1
                name = f"{MEDIA_FOLDER}/image-{number:04d}-{media.width}x{media.height}.jpg"
                self.names[digest] = (name, media)
                fresh.append((name, media))
        return fresh

    def rewrite(self, content: str) -> str:
        """The content with the author's own images pointing into the archive."""

        def relative(match: re.Match[str]) -> str:
            known = self.names.get(match["digest"])
            return known[0] if known else match[0]

        return _SITE_IMAGE.sub(relative, content)


def _batches(db: Session, author_id: int) -> Iterator[list[Post]]:
    """The author's posts, oldest first (ties by id), a bounded batch at a time."""
    after: tuple[datetime, int] | None = None
    while True:
        query = select(Post).where(Post.user_id == author_id)
        if after is not None:
            query = query.where(tuple_(Post.date_posted, Post.id) > after)
        batch = list(db.scalars(query.order_by(Post.date_posted, Post.id).limit(BATCH_SIZE)))
        if not batch:
            return
        yield batch
        after = (batch[-1].date_posted, batch[-1].id)
        db.expunge_all()  # what was sent need not stay in the session


def file_stem(number: int, post: Post) -> str:
    return f"{number:04d}-{post.slug}"


def post_record(post: Post, canonical_url: CanonicalUrl) -> dict[str, object]:
    """The front matter of a post: what is needed to write it again, and where it lives."""
    status = post.status_now
    return {
        "title": post.title,
        "slug": post.slug,
        "status": status,
        "published_at": _moment(post.published_at),
        "created_at": _moment(post.date_posted),
        "updated_at": _moment(post.updated_at),
        "tags": [tag.name for tag in post.tags],
        "canonical_url": canonical_url(post) if status == "published" else None,
    }


def markdown_file(record: dict[str, object], content: str) -> str:
    """YAML front matter (every value quoted, so nothing is read back as another type), then
    the text exactly as stored."""
    lines = ["---"]
    for key, value in record.items():
        if value is None:
            lines.append(f"{key}: null")
        elif isinstance(value, list):
            lines.append(f"{key}: [{', '.join(yaml_string(item) for item in value)}]")
        else:
            lines.append(f"{key}: {yaml_string(str(value))}")
    lines.append("---")
    return "\n".join(lines) + "\n" + content


def _newest_change(db: Session, author_id: int) -> datetime:
    newest = db.scalar(select(func.max(Post.updated_at)).where(Post.user_id == author_id))
    return newest or ZIP_EPOCH


def _author_entries(
    archive: zipfile.ZipFile,
    pipe: _Pipe,
    db: Session,
    *,
    author: User,
    storage: MediaStorage,
    canonical_url: CanonicalUrl,
    folder: str,
) -> Iterator[bytes]:
    media = _MediaNames(author.id)
    number = 0
    # First pass: one Markdown file per post, each followed by the images it shows first.
    for batch in _batches(db, author.id):
        fresh = media.assign(db, batch)
        shown_first = {id(post): [] for post in batch}
        for name, item in fresh:
            first = next(p for p in batch if f"/{item.digest}-" in p.content)
            shown_first[id(first)].append((name, item))
        for post in batch:
            number += 1
            text = markdown_file(post_record(post, canonical_url), media.rewrite(post.content))
            name = f"{folder}{file_stem(number, post)}.md"
            archive.writestr(_entry(name, post.updated_at), text.encode())
            for media_name, item in shown_first[id(post)]:
                data = storage.read(db, images.file_names(item)[-1])
                if data is not None:
                    archive.writestr(_entry(folder + media_name, post.updated_at), data)
            yield pipe.take()
    # Second pass: posts.json, written into its entry a batch at a time.
    info = _entry(folder + POSTS_JSON, _newest_change(db, author.id))
    with archive.open(info, "w") as entry:
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
        entry.write(json.dumps(header, ensure_ascii=False)[:-1].encode() + b', "posts": [')
        number = 0
        for batch in _batches(db, author.id):
            for post in batch:
                number += 1
                record = post_record(post, canonical_url) | {
                    "file": f"{file_stem(number, post)}.md",
                    "content": media.rewrite(post.content),
                }
                separator = b"\n" if number == 1 else b",\n"
                entry.write(separator + json.dumps(record, ensure_ascii=False).encode())
            yield pipe.take()
        entry.write(b"\n]}\n")
    yield pipe.take()


def author_folder(username: str) -> str:
    """A whole-site export keeps each author in a folder named after them ('..' and the
    like, which usernames allow, get an underscore in front)."""
    return f"_{username}/" if set(username) <= {"."} else f"{username}/"


def export_archive(
    db: Session,
    *,
    authors: Iterable[User],
    storage: MediaStorage,
    canonical_url: CanonicalUrl,
    folder_per_author: bool = False,
) -> Iterator[bytes]:
    """The zip, piece by piece: for one author at the archive's root, or for several (the
    whole site) in a folder each."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        for author in authors:
            folder = author_folder(author.username) if folder_per_author else ""
            yield from _author_entries(
                archive,
                pipe,
                db,
                author=author,
                storage=storage,
                canonical_url=canonical_url,
                folder=folder,
            )
    yield pipe.take()


def all_authors(db: Session) -> Iterator[User]:
    """Every user with a post, by id, read a batch at a time."""
    after = 0
    while True:
        query = (
            select(User)
            .where(User.id > after, User.id.in_(select(Post.user_id)))
            .order_by(User.id)
            .limit(BATCH_SIZE)
        )
        batch = list(db.scalars(query))
        if not batch:
            return
        yield from batch
        after = batch[-1].id


def archive_name(username: str, moment: datetime) -> str:
    return f"inkwell-{username}-{moment:%Y-%m-%d}.zip"


def find_author(db: Session, username: str) -> User:
    """The user of that name, in any case (as logging in finds it); NotFoundError if none."""
    user = db.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise NotFoundError(f"No user is called {username!r}")
    return user
