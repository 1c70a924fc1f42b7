"""Tags: a display name as first typed, and a slug that makes two spellings one tag."""

import hashlib
from dataclasses import dataclass

from sqlalchemy import BindParameter, Select, bindparam, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import Post, PostTag, Tag, live_post
from services.errors import NotFoundError
from services.text import unicode_slugify

TAG_NOT_FOUND = "Tag not found"
TAG_SLUG_MAX_LENGTH = 80


@dataclass(frozen=True)
class TagCount:
    tag: Tag
    post_count: int


def tag_slug(name: str) -> str:
    """'Café Culture' -> 'cafe-culture', '日本 旅行' -> '日本-旅行': lower-case, accents
    dropped, any letters kept; a name of symbols alone gets a slug from its digest."""
    slug = unicode_slugify(name, max_length=TAG_SLUG_MAX_LENGTH)
    if slug:
        return slug
    return "tag-" + hashlib.blake2b(name.encode(), digest_size=5).hexdigest()


def unique_names(names: list[str]) -> dict[str, str]:
    """slug -> the first name given for it, in the order given."""
    found: dict[str, str] = {}
    for name in names:
        found.setdefault(tag_slug(name), name)
    return found


def find_or_create(db: Session, names: list[str]) -> list[Tag]:
    """The tags for `names`, creating the missing ones (a concurrent creation of the same
    tag is met by its unique slug, and the existing row is used)."""
    wanted = unique_names(names)
    if not wanted:
        return []
    existing = {tag.slug: tag for tag in db.scalars(select(Tag).where(Tag.slug.in_(wanted)))}
    for slug, name in wanted.items():
        if slug not in existing:
            try:
                with db.begin_nested():
                    db.execute(insert(Tag).values(slug=slug, name=name))
            except IntegrityError:
                pass
            existing[slug] = db.scalars(select(Tag).where(Tag.slug == slug)).one()
    return [existing[slug] for slug in wanted]


def posts_tagged(tag_id: int | BindParameter[int]) -> Select[tuple[int]]:
    """The ids of the posts carrying a tag, through the (tag_id, post_id) index."""
    return select(PostTag.post_id).where(PostTag.tag_id == tag_id)


# A post's tags as its relationship reads them (down the primary key, no sort), built once.
_TAGS_OF_POST = (
    select(Tag)
    .join(PostTag, PostTag.tag_id == Tag.id)
    .where(PostTag.post_id == bindparam("post_id"))
)


def load_tags(db: Session, post: Post) -> None:
    """Read `post.tags` unless they are loaded already, with a statement built once: the
    lazy load a template's first touch would start builds its statement anew each time,
    which costs more than the query."""
    if "tags" in inspect(post).unloaded:
        found = list(db.scalars(_TAGS_OF_POST, {"post_id": post.id}))
        set_committed_value(post, "tags", found)


def get_tag(db: Session, *, slug: str) -> Tag:
    tag = db.scalar(select(Tag).where(Tag.slug == slug))
    if tag is None:
        raise NotFoundError(TAG_NOT_FOUND)
    return tag


def list_tags(db: Session) -> list[TagCount]:
    """Every tag with at least one live post, with how many it has, by name."""
    count = func.count(Post.id)
    rows = db.execute(
        select(Tag, count)
        .join(PostTag, PostTag.tag_id == Tag.id)
        .join(Post, Post.id == PostTag.post_id)
        .where(live_post())
        .group_by(Tag.id)
        .order_by(func.lower(Tag.name), Tag.id)
    ).all()
    return [TagCount(tag, posts) for tag, posts in rows]
