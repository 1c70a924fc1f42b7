"""Pydantic models: what the API accepts and returns, and what the forms validate."""

import hashlib
import re
import string
import sys
import unicodedata
import zoneinfo
from array import array
from bisect import bisect_left
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from config import PROJECT_ROOT
from models import (
    CONTENT_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    MAX_TAGS_PER_POST,
    SLUG_MAX_LENGTH,
    TAG_MAX_LENGTH,
    TIMEZONE_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
)

# Passwords refused as too common: see data/README.md and scripts/build_breached_passwords.py.
BREACHED_PASSWORDS_FILE = PROJECT_ROOT / "data" / "breached_passwords.bin"
COMMON_PASSWORDS_FILE = PROJECT_ROOT / "data" / "common_passwords.txt"
# Bidi embeddings, overrides and isolates: text holding them can display in another order
# than it reads. Titles drop them, and the Markdown renderer replaces them.
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"

# Largest id either database can store in an INTEGER column; larger ids are invalid input.
MAX_ID = 2**31 - 1
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


def _reject_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and no one means to type one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def normalise_password(password: str) -> str:
    """The form a password is looked up in (and the list was built from): compatibility
    characters folded (full-width letters are letters), then lower case."""
    return unicodedata.normalize("NFKC", password).lower()


def breached_key(normalised: str) -> int:
    """The first 64 bits of the SHA-1 of a normalised password: what the list stores."""
    digest = hashlib.sha1(normalised.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


@lru_cache(maxsize=1)
def breached_passwords() -> "array[int]":
    """The sorted keys of every listed password, as one array (8 bytes an entry)."""
    table = array("Q")
    assert table.itemsize == 8
    table.frombytes(BREACHED_PASSWORDS_FILE.read_bytes())
    if sys.byteorder == "little":
        table.byteswap()  # stored big-endian
    return table


# What people tack onto a listed word to pass composition rules ("Password123!",
# "Summer2024!"): a run of at most this many digits and ASCII symbols at the end.
DECORATION = string.digits + string.punctuation + " "
MAX_DECORATION = 6


def lookup_candidates(password: str) -> set[str]:
    """The password as looked up, and without its decoration if that is short."""
    normalised = normalise_password(password)
    candidates = {normalised}
    bare = normalised.rstrip(DECORATION)
    if bare and len(normalised) - len(bare) <= MAX_DECORATION:
        candidates.add(bare)
    return candidates


def is_common_password(password: str) -> bool:
    """Whether the password, or the word it decorates, is among the most common leaked
    passwords (data/README.md). A false match is possible only by a 64-bit collision."""
    table = breached_passwords()
    for candidate in lookup_candidates(password):
        key = breached_key(candidate)
        position = bisect_left(table, key)
        if position < len(table) and table[position] == key:
            return True
    return False


def _reject_common(value: str) -> str:
    if is_common_password(value):
        raise ValueError("is too common; choose a less guessable password")
    return value


# Search marks its matches with these private-use characters before escaping the snippet;
# text that already held them could mark words itself, so they are dropped on the way in.
SEARCH_MARKERS = str.maketrans("", "", "\ue000\ue001")


def _drop_search_markers(value: str) -> str:
    return value.translate(SEARCH_MARKERS)


# A title is one line of plain text shown in lists, feeds and <title>: bidi controls and
# marks would let it display in another order than it reads, and control characters and
# line or paragraph separators have no place in it. Each becomes a space, so no two words
# are glued together.
_TITLE_INVISIBLE = f"\x01-\x1f\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}\u200e\u200f\u061c"
_TITLE_UNSAFE = re.compile(f"[{_TITLE_INVISIBLE}]")
# For the API schema: a title needs one character that none of the rules removes (the
# validators enforce the same; a JSON Schema pattern is only searched for, not anchored).
TITLE_PATTERN = f"[^\\s\x00{_TITLE_INVISIBLE}\ue000\ue001]"
VISIBLE_TEXT = {"pattern": TITLE_PATTERN}


def plain_line(value: str) -> str:
    """`value` with control characters, separators and bidi controls made spaces, stripped."""
    return _TITLE_UNSAFE.sub(" ", value).strip()


def _normalise_newlines(value: str) -> str:
    # Browsers submit textareas with CRLF; store one convention whatever the client.
    return value.replace("\r\n", "\n")


def _reject_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Constraints come first so they see the stripped string; the NUL check runs after them.
Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=USERNAME_MAX_LENGTH,
        pattern=USERNAME_PATTERN,
    ),
]
Email = Annotated[
    EmailStr,
    StringConstraints(max_length=EMAIL_MAX_LENGTH),
    AfterValidator(str.lower),
    Field(description="A mailable address; reserved domains such as .test are refused"),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    Field(json_schema_extra=VISIBLE_TEXT),
    AfterValidator(_reject_nul),
    AfterValidator(_drop_search_markers),
    AfterValidator(plain_line),
    AfterValidator(_reject_blank),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTENT_MAX_LENGTH),
    AfterValidator(_normalise_newlines),
    AfterValidator(_drop_search_markers),
    AfterValidator(_reject_blank),
    AfterValidator(_reject_nul),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# Length is the only rule: no composition rules, and nothing is ever truncated. The upper
# bound only stops someone from making the server hash a megabyte.
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=1024),
    AfterValidator(_reject_nul),
    AfterValidator(_reject_common),
]


class PartialUpdate(BaseModel):
    """Base for PATCH bodies: a field may be left out, but not sent as null."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value


class UserBase(BaseModel):
    username: Username
    email: Email


class UserCreate(UserBase):
    model_config = ConfigDict(extra="forbid")

    password: Password
    # Not bounded here: an unknown token of any length is refused as not live (and one too
    # long to be ours is not hashed), and ignored while registration is open.
    invitation: str | None = Field(
        default=None,
        description="The token of an invitation link (`/register?invitation=…`); needed "
        "while registration is by invitation, ignored while it is open",
    )


class InvitationCreate(BaseModel):
    """An invitation an admin has mailed, while registration is by invitation."""

    model_config = ConfigDict(extra="forbid")

    email: Email


# A password being checked, not chosen: only bounded, so no one makes the server hash a
# megabyte.
CurrentPassword = Annotated[
    str,
    StringConstraints(max_length=1024),
    Field(description="The account's current password"),
]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: CurrentPassword
    new_password: Password


class PasswordConfirmation(BaseModel):
    """The body of DELETE /api/users/…: the account's password, to confirm the deletion."""

    model_config = ConfigDict(extra="forbid")

    password: CurrentPassword


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _known_timezone(value: str) -> str:
    if value not in known_timezones():
        raise ValueError("is not a time zone name such as Europe/Paris or America/New_York")
    return value


Timezone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=TIMEZONE_MAX_LENGTH),
    AfterValidator(_known_timezone),
    Field(
        description="An IANA time zone name; schedules are entered and shown in it",
        json_schema_extra={"enum": sorted(known_timezones())},
    ),
]


class UserUpdate(PartialUpdate):
    username: Username | SkipJsonSchema[None] = None
    email: Email | SkipJsonSchema[None] = None
    current_password: (
        Annotated[
            str,
            StringConstraints(max_length=1024),
            Field(description="Required to change the email address: the current password"),
        ]
        | SkipJsonSchema[None]
    ) = None
    timezone: Timezone | SkipJsonSchema[None] = None


class UserPublic(BaseModel):
    """A user as anyone may see them: no email address."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    image_path: str
    created_at: datetime


class UserPrivate(UserPublic):
    """A user as they see themselves."""

    email: str
    timezone: str
    email_verified: bool = Field(description="Whether `email` has been confirmed")
    pending_email: str | None = Field(
        description="A new address waiting to be confirmed; it replaces `email` once it is"
    )


class PasswordResetRequest(BaseModel):
    """The body of POST /api/password-reset."""

    model_config = ConfigDict(extra="forbid")

    email: Email


# A token from a mailed link, as it arrived: bounded, so no one makes the server hash a
# megabyte; whether it is live is the domain's question (400 if not).
LinkToken = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordResetConfirmation(BaseModel):
    """The body of POST /api/password-reset/confirm: the token from the mailed link."""

    model_config = ConfigDict(extra="forbid")

    token: LinkToken
    new_password: Password


PostStatus = Literal["draft", "scheduled", "published"]
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
TagName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TAG_MAX_LENGTH),
    Field(json_schema_extra=VISIBLE_TEXT),
    AfterValidator(_reject_nul),
    AfterValidator(plain_line),
    AfterValidator(_reject_blank),
]
Tags = Annotated[
    list[TagName],
    Field(max_length=MAX_TAGS_PER_POST, description=f"Up to {MAX_TAGS_PER_POST} tag names"),
]
Slug = Annotated[
    str,
    StringConstraints(min_length=1, max_length=SLUG_MAX_LENGTH, pattern=SLUG_PATTERN),
    Field(
        description="Lower-case letters, digits and single hyphens; made from the title if absent"
    ),
]


def _datetime_text(value: object) -> object:
    # An RFC 3339 string, as documented: not a number of seconds.
    if isinstance(value, int | float):
        raise ValueError("must be a date-time string such as 2027-01-31T09:00:00Z")
    return value


PublishedAt = Annotated[
    AwareDatetime,
    BeforeValidator(_datetime_text),
    Field(description="When the post goes live (required for `scheduled`, with a time zone)"),
]


class PostBase(BaseModel):
    title: Title
    content: Content


# A scheduled post must say when it goes live (as JSON Schema, so clients can know too).
SCHEDULE_NEEDS_TIME = {
    "if": {"properties": {"status": {"const": "scheduled"}}, "required": ["status"]},
    "then": {"required": ["published_at"], "properties": {"published_at": {"type": "string"}}},
}


class PostCreate(PostBase):
    """The body of POST: the author is the authenticated user."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=SCHEDULE_NEEDS_TIME)

    status: PostStatus = "published"
    published_at: PublishedAt | None = None
    tags: Tags = []
    slug: Slug | None = None

    @model_validator(mode="after")
    def _scheduled_has_a_time(self) -> "PostCreate":
        if self.status == "scheduled" and self.published_at is None:
            raise ValueError("a scheduled post needs published_at")
        return self


Version = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="The version being edited; a stale one gives 409"),
]


class PostReplace(PostBase):
    """The body of PUT: title and content replaced; status, schedule, tags and slug are kept
    as they are unless sent (so an older client's PUT never publishes a draft). A scheduled
    post may keep the time it has."""

    model_config = ConfigDict(extra="forbid")

    status: PostStatus | SkipJsonSchema[None] = None
    published_at: PublishedAt | SkipJsonSchema[None] = None
    tags: Tags | SkipJsonSchema[None] = None
    slug: Slug | SkipJsonSchema[None] = None
    version: Version | None = None

    @field_validator("status", "published_at", "tags", "slug", mode="before")
    @classmethod
    def _omitted_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value


class PostUpdate(PartialUpdate):
    """The body of PATCH: only the fields sent are changed."""

    title: Title | SkipJsonSchema[None] = None
    content: Content | SkipJsonSchema[None] = None
    status: PostStatus | SkipJsonSchema[None] = None
    published_at: PublishedAt | SkipJsonSchema[None] = None
    tags: Tags | SkipJsonSchema[None] = None
    slug: Slug | SkipJsonSchema[None] = None
    version: Version | SkipJsonSchema[None] = None


class PostPublic(PostBase):
    model_config = ConfigDict(from_attributes=True)

    id: int
    version: int
    # A scheduled post whose moment has come reads as published.
    status: PostStatus = Field(validation_alias="status_now")
    published_at: datetime | None
    date_posted: datetime
    updated_at: datetime
    tags: list[str]
    slug: str
    url: str = Field("", description="The post's canonical address")
    author: UserPublic

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: object) -> object:
        if isinstance(value, list):
            return [getattr(tag, "name", tag) for tag in value]
        return value


class ReviewLinkPublic(BaseModel):
    id: int
    url: str = Field(description="Shows the post to whoever holds it; shown only once")
    expires_at: datetime


class TagPublic(BaseModel):
    name: str
    slug: str
    post_count: int


class RevisionSummary(BaseModel):
    """One saved version of a post, without its text."""

    model_config = ConfigDict(from_attributes=True)

    number: int = Field(description="The post's version this revision holds")
    saved_at: datetime
    saved_by: UserPublic
    title: str
    status: PostStatus
    published_at: datetime | None
    words_added: int | None = Field(description="Against the revision before; null if unknown")
    words_removed: int | None = Field(description="Against the revision before; null if unknown")


class RevisionPublic(RevisionSummary):
    """One saved version of a post with its full text and tags."""

    content: str
    tags: list[str]


class MediaPublic(BaseModel):
    """An image of the author's media library."""

    id: int
    url: str = Field(description="Absolute URL of the widest stored copy")
    width: int = Field(description="Width in pixels of the widest copy")
    height: int = Field(description="Height in pixels of the widest copy")
    widths: list[int] = Field(description="Every stored width (the srcset candidates)")
    byte_size: int = Field(description="Bytes taken by every stored width together")
    markdown: str = Field(description="Markdown that shows the image in a post")
    created_at: datetime
    used_in: list[int] = Field(description="Ids of your posts that show the image")
    in_use: bool = Field(description="Whether any post shows it (deleting then needs force)")


# ---------------------------------------------------------------- export and import


class ImportedPostPublic(BaseModel):
    """A post an import wrote."""

    id: int
    slug: str
    title: str
    status: PostStatus


class SkippedItemPublic(BaseModel):
    """A file of the upload (or an item of a WordPress export) left out, and why."""

    name: str
    reason: str


class ImportReportPublic(BaseModel):
    """What an import wrote and what it left out; nothing is written when it answers 4xx."""

    imported: list[ImportedPostPublic]
    skipped: list[SkippedItemPublic]
