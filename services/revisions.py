"""Revision history: every save of a post kept, compactly, and compared word by word.

Revision n is exactly what the post held at version n. Its text is stored as a compressed
full snapshot every SNAPSHOT_EVERY revisions, and in between as a compressed delta against
the revision before (sentence-sized pieces copied from it, plus the new text), so a small
edit of a long post costs a few hundred bytes instead of a copy of the post. Reading one
revision reads its chain back to the snapshot in one statement: at most SNAPSHOT_EVERY rows.
"""

import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, joinedload

from models import Post, Revision, User
from schemas import MAX_ID
from services.errors import NotFoundError
from services.paging import NumberedPage

SNAPSHOT_EVERY = 50
# Changed stretches longer than this (in words) are not compared word by word: they are
# shown as removed and added whole, so comparing two unrelated long texts stays cheap.
WORD_DIFF_LIMIT = 3000
REVISION_NOT_FOUND = "Revision not found"
ZLIB_LEVEL = 9

# Split after a sentence's end or a line break (blank lines stay with the line before), so
# a delta copies whole sentences and an edit of one sentence stores just that sentence.
_PIECE_BOUNDARY = re.compile(r"(?<=[.!?\n])(?=[^\n])")
_WORDS = re.compile(r"\s+|[^\s]+")


# ---------------------------------------------------------------- storage


def _pieces(text: str) -> list[str]:
    return _PIECE_BOUNDARY.split(text) if text else []


def _word_count(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Change:
    """A new text against the one before: the stored delta and the words it adds and removes.

    Worked out before the write transaction starts (it is the slow part of a save)."""

    content: str
    delta: bytes
    words_added: int
    words_removed: int

    @classmethod
    def between(cls, old: str, new: str) -> "Change":
        before, after = _pieces(old), _pieces(new)
        ops: list[list[int] | str] = []
        added = removed = 0
        matcher = SequenceMatcher(None, before, after)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                ops.append([i1, i2])
                continue
            if j2 > j1:
                ops.append("".join(after[j1:j2]))
            plus, minus = _words_changed("".join(before[i1:i2]), "".join(after[j1:j2]))
            added, removed = added + plus, removed + minus
        delta = zlib.compress(json.dumps(ops, separators=(",", ":")).encode(), ZLIB_LEVEL)
        return cls(new, delta, added, removed)


def _words_changed(old: str, new: str) -> tuple[int, int]:
    """Words inserted and deleted going from `old` to `new` (both short: one changed run)."""
    before, after = old.split(), new.split()
    if max(len(before), len(after)) > WORD_DIFF_LIMIT:
        return len(after), len(before)
    same = sum(block.size for block in SequenceMatcher(None, before, after).get_matching_blocks())
    return len(after) - same, len(before) - same


def _apply_delta(old: str, delta: bytes) -> str:
    before = _pieces(old)
    ops = json.loads(zlib.decompress(delta))
    return "".join(op if isinstance(op, str) else "".join(before[op[0] : op[1]]) for op in ops)


def _snapshot_text(encoding: str, body: bytes) -> str:
    return (zlib.decompress(body) if encoding == "zlib" else body).decode()


@dataclass(frozen=True)
class PostState:
    """What a post holds at one version: the fields a revision records."""

    version: int
    title: str
    content: str
    tags: list[str]
    slug: str
    status: str
    published_at: datetime | None
    saved_at: datetime

    @classmethod
    def of(cls, post: Post) -> "PostState":
        return cls(
            version=post.version,
            title=post.title,
            content=post.content,
            tags=[tag.name for tag in post.tags],
            slug=post.slug,
            status=post.status,
            published_at=post.published_at,
            saved_at=post.updated_at,
        )


def _row(state: PostState, post_id: int, user_id: int, **stored: object) -> Revision:
    return Revision(
        post_id=post_id,
        number=state.version,
        title=state.title,
        tags=json.dumps(state.tags),
        slug=state.slug,
        status=state.status,
        published_at=state.published_at,
        user_id=user_id,
        saved_at=state.saved_at,
        **stored,
    )


def _snapshot(state: PostState, post_id: int, user_id: int, **summary: int | None) -> Revision:
    body = zlib.compress(state.content.encode(), ZLIB_LEVEL)
    return _row(
        state, post_id, user_id, encoding="zlib", body=body, base_number=state.version, **summary
    )


def record_first(db: Session, *, post: Post) -> None:
    """Record a new post's first revision (flushed, not committed: part of its write)."""
    state = PostState.of(post)
    added = _word_count(state.content)
    db.add(_snapshot(state, post.id, post.user_id, words_added=added, words_removed=0))


def record(db: Session, *, post: Post, before: PostState, change: Change | None) -> None:
    """Record the version `post` was just flushed at, following `before`, the version it
    was read at. `change` is the content's change, None when the content was not sent."""
    change = change or Change.between(before.content, post.content)
    state = PostState.of(post)
    previous_base = db.scalar(
        select(Revision.base_number).where(
            Revision.post_id == post.id, Revision.number == before.version
        )
    )
    if previous_base is None:
        # The version edited was written without history (inserted by hand or in bulk):
        # what it held is known, so it is recorded first.
        db.add(_snapshot(before, post.id, post.user_id))
        previous_base = before.version
    summary = {"words_added": change.words_added, "words_removed": change.words_removed}
    if state.version - previous_base >= SNAPSHOT_EVERY:
        db.add(_snapshot(state, post.id, post.user_id, **summary))
        return
    stored = {"encoding": "delta", "body": change.delta, "base_number": previous_base}
    db.add(_row(state, post.id, post.user_id, **stored, **summary))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class RevisionPage(NumberedPage):
    """One page of a post's history, newest first (the shape _pagination.html reads)."""

    revisions: list[Revision]


def list_revisions(db: Session, *, post: Post, page: int, per_page: int) -> RevisionPage:
    """A page of the post's revisions, newest first, without their text (two statements)."""
    rows = db.scalars(
        select(Revision)
        .options(defer(Revision.body), joinedload(Revision.saved_by))
        .where(Revision.post_id == post.id)
        .order_by(Revision.number.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    total = db.scalar(select(func.count()).where(Revision.post_id == post.id)) or 0
    return RevisionPage(
        revisions=list(rows),
        number=page,
        size=per_page,
        last_known_page=max(1, -(-total // per_page)),
    )


@dataclass(frozen=True)
class RevisionText:
    """One revision with its text and tags decoded."""

    revision: Revision
    content: str
    tags: list[str]

    @property
    def number(self) -> int:
        return self.revision.number

    @property
    def title(self) -> str:
        return self.revision.title


def get_revision(db: Session, *, post: Post, number: int) -> RevisionText:
    """Revision `number` of the post, its text rebuilt from the chain (one statement)."""
    base = (
        select(Revision.base_number)
        .where(Revision.post_id == post.id, Revision.number == number)
        .scalar_subquery()
    )
    chain = db.scalars(
        select(Revision)
        .options(joinedload(Revision.saved_by))
        .where(Revision.post_id == post.id, Revision.number <= number, Revision.number >= base)
        .order_by(Revision.number)
    ).all()
    if not chain or chain[-1].number != number:
        raise NotFoundError(REVISION_NOT_FOUND)
    content = _snapshot_text(chain[0].encoding, chain[0].body)
    for link in chain[1:]:
        content = _apply_delta(content, link.body)
    return RevisionText(chain[-1], content, json.loads(chain[-1].tags))


def own_post(db: Session, *, post_id: int, user: User) -> Post:
    """The post whose history `user` asks for: its author's alone. Anyone else gets
    NotFoundError, as for a draft: history holds text never published."""
    post = None
    if 1 <= post_id <= MAX_ID:
        post = db.scalar(select(Post).options(joinedload(Post.author)).where(Post.id == post_id))
    if post is None or post.user_id != user.id:
        raise NotFoundError(REVISION_NOT_FOUND)
    return post


# ---------------------------------------------------------------- comparing


DiffKind = Literal["equal", "insert", "delete"]


@dataclass(frozen=True)
class DiffPart:
    kind: DiffKind
    text: str


def diff_words(old: str, new: str) -> list[DiffPart]:
    """`old` against `new`, word by word within the lines that changed.

    Lines first, so that the word comparison runs only over the changed stretches: its cost
    stays that of the edit, not of the whole post."""
    before, after = old.splitlines(keepends=True), new.splitlines(keepends=True)
    parts: list[DiffPart] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, before, after).get_opcodes():
        if tag == "equal":
            parts.append(DiffPart("equal", "".join(before[i1:i2])))
        else:
            parts.extend(_diff_run("".join(before[i1:i2]), "".join(after[j1:j2])))
    return _joined(parts)


def _diff_run(old: str, new: str) -> list[DiffPart]:
    before, after = _WORDS.findall(old), _WORDS.findall(new)
    if max(len(before), len(after)) > 2 * WORD_DIFF_LIMIT:  # words and the spaces between
        return [DiffPart("delete", old), DiffPart("insert", new)]
    parts: list[DiffPart] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, before, after).get_opcodes():
        if tag == "equal":
            parts.append(DiffPart("equal", "".join(before[i1:i2])))
            continue
        if i2 > i1:
            parts.append(DiffPart("delete", "".join(before[i1:i2])))
        if j2 > j1:
            parts.append(DiffPart("insert", "".join(after[j1:j2])))
    return parts


def _joined(parts: list[DiffPart]) -> list[DiffPart]:
    """Neighbouring parts of one kind as one, so the page marks each change once."""
    joined: list[DiffPart] = []
    for part in parts:
        if joined and joined[-1].kind == part.kind:
            joined[-1] = DiffPart(part.kind, joined[-1].text + part.text)
        elif part.text:
            joined.append(part)
    return joined


@dataclass(frozen=True)
class Comparison:
    """Two revisions side by side: the title, tags and status that changed, and the text."""

    old: RevisionText
    new: RevisionText
    title: list[DiffPart]
    content: list[DiffPart]

    @property
    def unchanged(self) -> bool:
        same_text = all(part.kind == "equal" for part in self.title + self.content)
        return same_text and self.old.tags == self.new.tags


def compare(db: Session, *, post: Post, old: int, new: int) -> Comparison:
    """Revision `old` against revision `new` of the post."""
    before = get_revision(db, post=post, number=old)
    after = get_revision(db, post=post, number=new)
    return Comparison(
        before,
        after,
        diff_words(before.title, after.title),
        diff_words(before.content, after.content),
    )
