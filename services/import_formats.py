"""What an import reads: archives (a zip, or a directory from the command line) read within
limits, Markdown files with front matter (this site's export, Hugo, Jekyll), WordPress
exports (WXR) and the HTML inside them, turned into the Markdown posts are stored as.

Nothing here trusts a header: a zip member's size is counted as it is inflated, and the
whole archive's too, so a member that claims 1 KB and inflates to gigabytes is stopped at the
limit, having cost no more than the limit.
"""

import os
import posixpath
import re
import tomllib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO, Protocol
from xml.etree.ElementTree import Element, ParseError

import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

_CHUNK = 64 * 1024
MARKDOWN_SUFFIXES = (".md", ".markdown")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
XML_SUFFIX = ".xml"


class ImportRefusedError(ValueError):
    """The upload as a whole cannot be imported; str(exc) says why, for the person."""


class ImportTooLargeError(ImportRefusedError):
    """The upload, or what it inflates to, is past the limits."""


class MemberError(ValueError):
    """One member of the archive cannot be used; the rest may be."""


@dataclass(frozen=True)
class Limits:
    """How much one import may read. Requests get the defaults; the command line, run by
    whoever runs the server, gets more (ImportLimits.for_command_line)."""

    max_upload_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 64 * 1024 * 1024
    max_members: int = 2000
    max_posts: int = 1000
    # Deflate reaches about 1000:1 at best on real data; text compresses 3-10:1, images not.
    max_ratio: int = 200
    max_text_bytes: int = 1024 * 1024
    max_xml_bytes: int = 32 * 1024 * 1024

    @classmethod
    def for_command_line(cls) -> "Limits":
        return cls(
            max_upload_bytes=1024 * 1024 * 1024,
            max_total_bytes=2 * 1024 * 1024 * 1024,
            max_members=100_000,
            max_posts=50_000,
            max_xml_bytes=256 * 1024 * 1024,
        )


def format_size(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


# ---------------------------------------------------------------- where members come from


class Source(Protocol):
    """Named members (POSIX relative paths) and a bounded read of each."""

    refused: list[tuple[str, str]]

    def names(self) -> list[str]: ...

    def read(self, name: str, max_bytes: int) -> bytes: ...

    def close(self) -> None: ...


def unsafe_name(name: str) -> str | None:
    """Why a member name is refused (it could point outside the archive), or None."""
    if "\\" in name:
        return "Its name contains a backslash"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "Its name is an absolute path"
    if ".." in name.split("/"):
        return "Its name climbs out of the archive (..)"
    if any(ord(char) < 32 for char in name):
        return "Its name contains control characters"
    return None


class ZipSource:
    """A zip read within Limits: member count and declared sizes checked up front, and the
    bytes actually inflated counted as they come, per member and for the whole archive."""

    def __init__(self, file: BinaryIO, limits: Limits, *, owns_file: bool = False) -> None:
        self.limits = limits
        self.file = file if owns_file else None
        self.inflated = 0
        self.refused: list[tuple[str, str]] = []
        try:
            self.zip = zipfile.ZipFile(file)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ImportRefusedError("The file is not a readable zip archive.") from exc
        if len(infos) > limits.max_members:
            raise ImportTooLargeError(
                f"The archive holds {len(infos)} files; at most {limits.max_members} are read."
            )
        if sum(info.file_size for info in infos) > limits.max_total_bytes:
            raise ImportTooLargeError(self._too_large())
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            reason = unsafe_name(info.filename)
            if info.filename in self.members:
                reason = "The archive holds two files of this name"
            if reason:
                self.refused.append((info.filename, reason))
            elif not info.is_dir():
                self.members[info.filename] = info

    def close(self) -> None:
        self.zip.close()
        if self.file is not None:
            self.file.close()

    def _too_large(self) -> str:
        return f"The archive unpacks to more than {format_size(self.limits.max_total_bytes)}."

    def names(self) -> list[str]:
        return list(self.members)

    def read(self, name: str, max_bytes: int) -> bytes:
        info = self.members[name]
        if info.file_size > max_bytes:
            raise MemberError(f"It is larger than {format_size(max_bytes)}")
        received = bytearray()
        try:
            with self.zip.open(info) as member:
                while chunk := member.read(_CHUNK):
                    received += chunk
                    self._count(len(chunk), len(received), info, max_bytes)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise MemberError("It is damaged or uses an unsupported compression") from exc
        except RuntimeError as exc:  # zipfile's word for an encrypted member
            raise MemberError("It is encrypted") from exc
        return bytes(received)

    def _count(self, added: int, size: int, info: zipfile.ZipInfo, max_bytes: int) -> None:
        self.inflated += added
        if self.inflated > self.limits.max_total_bytes:
            raise ImportTooLargeError(self._too_large())
        if size > max_bytes:
            raise MemberError(f"It is larger than {format_size(max_bytes)}")
        if size > _CHUNK and size > self.limits.max_ratio * max(info.compress_size, 1):
            raise ImportTooLargeError(
                f"{info.filename} inflates more than {self.limits.max_ratio} times: "
                "the archive looks like a zip bomb."
            )


class DirectorySource:
    """A folder of files (the command line): links are not followed, nothing outside it is
    read, and the same limits hold."""

    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = root.resolve()
        self.limits = limits
        self.inflated = 0
        self.refused: list[tuple[str, str]] = []
        self.members: list[str] = []
        for folder, folders, files in os.walk(self.root):
            folders.sort()
            for file_name in sorted(files):
                path = Path(folder) / file_name
                name = path.relative_to(self.root).as_posix()
                if path.is_symlink():
                    self.refused.append((name, "It is a link; links are not followed"))
                else:
                    self.members.append(name)
        if len(self.members) > limits.max_members:
            raise ImportTooLargeError(
                f"The folder holds {len(self.members)} files; at most {limits.max_members}."
            )

    def names(self) -> list[str]:
        return list(self.members)

    def close(self) -> None:
        """Nothing is kept open."""

    def read(self, name: str, max_bytes: int) -> bytes:
        with (self.root / name).open("rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise MemberError(f"It is larger than {format_size(max_bytes)}")
        self.inflated += len(data)
        if self.inflated > self.limits.max_total_bytes:
            raise ImportTooLargeError(
                f"The folder holds more than {format_size(self.limits.max_total_bytes)}."
            )
        return data


class SingleFileSource:
    """One uploaded file that is not an archive (a WordPress export)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data
        self.refused: list[tuple[str, str]] = []

    def names(self) -> list[str]:
        return [self.name]

    def close(self) -> None:
        """Nothing is kept open."""

    def read(self, name: str, max_bytes: int) -> bytes:
        if len(self.data) > max_bytes:
            raise ImportTooLargeError(f"The file is larger than {format_size(max_bytes)}.")
        return self.data


def open_upload(file: BinaryIO, limits: Limits) -> Source:
    """A zip archive, or a WordPress export (XML), told apart by their first bytes."""
    start = file.read(512)
    file.seek(0)
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ZipSource(file, limits)
    if start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"<?xml", b"<rss")):
        data = file.read(limits.max_xml_bytes + 1)
        if len(data) > limits.max_xml_bytes:
            raise ImportTooLargeError(
                f"The file is larger than {format_size(limits.max_xml_bytes)}."
            )
        return SingleFileSource("export.xml", data)
    raise ImportRefusedError(
        "The file is neither a zip archive nor a WordPress export (WXR). Upload the zip of an "
        "Inkwell export, a zip of Markdown files, or a WordPress export file."
    )


def open_path(path: Path, limits: Limits) -> Source:
    """A directory of Markdown files, or a zip or WordPress file on disk (command line)."""
    if path.is_dir():
        return DirectorySource(path, limits)
    with path.open("rb") as file:
        source = open_upload(file, limits)
        if isinstance(source, ZipSource):
            # The zip keeps reading the file: give it a handle of its own that stays open.
            return ZipSource(path.open("rb"), limits, owns_file=True)
        return source


# ---------------------------------------------------------------- posts as read


@dataclass
class RawPost:
    """A post as a file described it, before the rules are applied."""

    name: str
    title: object
    content: str
    slug: object = None
    status: str = "published"
    published_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tags: list[object] = field(default_factory=list)


def moment(value: object) -> datetime | None:
    """A time from front matter or XML: ISO text, a YAML/TOML datetime or date; naive
    times are taken as UTC. None when there is none; MemberError when it is unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str):
        raise MemberError("A date in it is not a date and time")
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise MemberError(f"{str(value)[:40]!r} is not a date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_FRONT_MATTER = re.compile(
    r"\A(---|\+\+\+)[ \t]*\r?\n(.*?)^(?:---|\.\.\.|\+\+\+)[ \t]*(?:\r?\n|\Z)", re.S | re.M
)
# Jekyll's file names: 2024-01-31-my-post.md; this site's: 0001-my-post.md.
_DATED_NAME = re.compile(r"(?:(\d{4}-\d{2}-\d{2})-|\d{4}-)?(.+)")


def split_front_matter(text: str) -> tuple[dict[str, object], str]:
    """The front matter (YAML between `---`, or TOML between `+++`) and the body after it."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    try:
        if match[1] == "+++":
            data: object = tomllib.loads(match[2])
        else:
            data = yaml.safe_load(match[2])
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise MemberError("Its front matter cannot be read") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MemberError("Its front matter is not a set of fields")
    return data, text[match.end() :]


def markdown_post(name: str, data: bytes) -> RawPost:
    """A Markdown file with front matter: this site's fields, and Hugo's and Jekyll's names
    for the same things (date, lastmod, draft, published: false, categories)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MemberError("It is not UTF-8 text") from exc
    fields, body = split_front_matter(text)
    dated, stem = _DATED_NAME.fullmatch(posixpath.basename(name).rsplit(".", 1)[0]).groups()  # type: ignore[union-attr]
    status = _text(fields.get("status"), "status") or ""
    if not status:
        unpublished = fields.get("draft") is True or fields.get("published") is False
        status = "draft" if unpublished else "published"
    published = fields.get("published_at", fields.get("publishDate", fields.get("date", dated)))
    tags = _as_list(fields.get("tags")) + _as_list(fields.get("categories"))
    return RawPost(
        name=name,
        title=_text(fields.get("title"), "title") or stem,
        content=body,
        slug=_text(fields.get("slug"), "slug") or stem,
        status=status,
        published_at=moment(published),
        created_at=moment(fields.get("created_at")),
        updated_at=moment(fields.get("updated_at", fields.get("lastmod"))),
        tags=[_text(tag, "tags") for tag in tags],
    )


def _text(value: object, name: str) -> str | None:
    """A front matter field that must be one value. Anything else is refused before it is
    turned into text: YAML aliases can nest a few lines into billions of items."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | date):
        return str(value)
    raise MemberError(f"Its {name} is not a single value")


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# ---------------------------------------------------------------- WordPress (WXR)

_WP_STATUS = {"publish": "published", "future": "scheduled"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(item: Element, local: str, namespace_hint: str = "") -> str:
    for child in item:
        if _local(child.tag) == local and namespace_hint in child.tag:
            return child.text or ""
    return ""


def wordpress_posts(name: str, data: bytes) -> tuple[list[RawPost], list[tuple[str, str]]]:
    """The posts of a WordPress export, and the items that are not posts (pages,
    attachments, menu entries) with why they were left out. Parsed by defusedxml with DTDs
    refused, so entity expansion (billion laughs) and external entities never happen."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ImportRefusedError(
            f"{name} declares a DTD or XML entities, which are refused: WordPress exports have "
            "none, and they can expand to gigabytes or read files on the server."
        ) from exc
    except (ParseError, ValueError) as exc:
        raise ImportRefusedError(f"{name} is not well-formed XML: {exc}") from exc
    posts, skipped = [], []
    for number, item in enumerate(root.iter("item"), start=1):
        label = f"{name}#{number}"
        kind = _child_text(item, "post_type", "wordpress.org")
        if kind != "post":
            skipped.append((label, f"A WordPress {kind or 'item'}, not a post"))
            continue
        try:
            posts.append(_wordpress_post(label, item))
        except MemberError as exc:
            skipped.append((label, str(exc)))
    return posts, skipped


def _wordpress_time(item: Element, local: str) -> datetime | None:
    text = _child_text(item, local, "wordpress.org").strip()
    if not text or text.startswith("0000"):
        return None
    return moment(text.replace(" ", "T"))


def _wordpress_post(label: str, item: Element) -> RawPost:
    status = _WP_STATUS.get(_child_text(item, "status", "wordpress.org"), "draft")
    published = _wordpress_time(item, "post_date_gmt")
    tags = [
        (category.text or "").strip()
        for category in item
        if _local(category.tag) == "category"
        and category.get("domain") in ("category", "post_tag")
        and (category.text or "").strip() not in ("", "Uncategorized")
    ]
    return RawPost(
        name=label,
        title=_child_text(item, "title").strip(),
        content=html_to_markdown(_child_text(item, "encoded", "purl.org/rss/1.0/modules/content")),
        slug=_child_text(item, "post_name", "wordpress.org") or None,
        status=status,
        published_at=published if status != "draft" else None,
        created_at=published,
        updated_at=_wordpress_time(item, "post_modified_gmt"),
        tags=list(dict.fromkeys(tags)),
    )


# ---------------------------------------------------------------- HTML to Markdown

_ESCAPED = re.compile(r"([\\`*_\[\]<>])")
_BLOCKS = {"p", "div", "figure", "figcaption", "table", "tr", "section", "article"}
# Emphasis opens and closes with the same Markdown mark.
_INLINE_MARKS = {"strong": "**", "b": "**", "em": "*", "i": "*"}
_IGNORED = {"script", "style", "head", "title", "iframe", "object", "noscript"}


class _MarkdownWriter(HTMLParser):
    """Post HTML as Markdown: paragraphs, headings, emphasis, links, images, lists, quotes,
    code and rules. The renderer escapes raw HTML (services.markdown), so keeping tags would
    show them as text; other tags keep their text only."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.quotes: list[list[str]] = []
        self.lists: list[str] = []
        self.links: list[str | None] = []
        self.pre = 0
        self.ignored = 0

    def emit(self, text: str) -> None:
        (self.quotes[-1] if self.quotes else self.out).append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _IGNORED:
            self.ignored += 1
        elif tag in _BLOCKS:
            self.emit("\n\n")
        elif re.fullmatch(r"h[1-6]", tag):
            self.emit("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "br":
            self.emit("\\\n")
        elif tag == "hr":
            self.emit("\n\n---\n\n")
        elif tag in _INLINE_MARKS:
            self.emit(_INLINE_MARKS[tag])
        elif tag == "code" and not self.pre:
            self.emit("`")
        elif tag == "pre":
            self.pre += 1
            self.emit("\n\n```\n")
        elif tag in ("ul", "ol"):
            self.lists.append(tag)
            self.emit("\n")
        elif tag == "li":
            marker = "1. " if self.lists and self.lists[-1] == "ol" else "- "
            self.emit("\n" + "   " * max(len(self.lists) - 1, 0) + marker)
        elif tag == "blockquote":
            self.quotes.append([])
        elif tag == "a":
            href = attributes.get("href") or ""
            self.links.append(href if _safe_url(href) else None)
            if self.links[-1] is not None:
                self.emit("[")
        elif tag == "img":
            src = attributes.get("src") or ""
            if _safe_url(src):
                alt = _ESCAPED.sub(r"\\\1", (attributes.get("alt") or "").replace("\n", " "))
                self.emit(f"![{alt}]({_destination(src)})")

    def handle_endtag(self, tag: str) -> None:
        if tag in _IGNORED:
            self.ignored = max(self.ignored - 1, 0)
        elif tag in _BLOCKS or re.fullmatch(r"h[1-6]", tag):
            self.emit("\n\n")
        elif tag in _INLINE_MARKS:
            self.emit(_INLINE_MARKS[tag])
        elif tag == "code" and not self.pre:
            self.emit("`")
        elif tag == "pre" and self.pre:
            self.pre -= 1
            self.emit("\n```\n\n")
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self.emit("\n\n")
        elif tag == "blockquote" and self.quotes:
            inner = _tidy("".join(self.quotes.pop()))
            self.emit(
                "\n\n" + "\n".join(f"> {line}".rstrip() for line in inner.split("\n")) + "\n\n"
            )
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href is not None:
                self.emit(f"]({_destination(href)})")

    def handle_data(self, data: str) -> None:
        if self.ignored:
            return
        if self.pre:
            self.emit(data)
            return
        # WordPress stores paragraphs as blank lines and line breaks as newlines (wpautop);
        # other whitespace is one space, as in HTML, and none at the start of a line.
        paragraphs = re.split(r"\n[ \t]*\n\s*", data.replace("\r\n", "\n"))
        text = "\n\n".join(map(_text_paragraph, paragraphs))
        if self._at_line_start():
            text = text.lstrip(" ")
        if text:
            self.emit(text)

    def _at_line_start(self) -> bool:
        target = self.quotes[-1] if self.quotes else self.out
        last = next((chunk for chunk in reversed(target) if chunk), "")
        return not last or last.endswith(("\n", "- ", "1. ", "> ", "# "))


def _text_paragraph(text: str) -> str:
    escaped = _ESCAPED.sub(r"\\\1", text)
    broken = re.sub(r"(?<=\S)[ \t]*\n[ \t]*(?=\S)", "\x00", escaped)
    return re.sub(r"\s+", " ", broken).replace("\x00", "\\\n")


def _safe_url(url: str) -> bool:
    return bool(url) and re.match(r"(?i)(https?:|mailto:|/|#|[\w.-]+(/|$))", url) is not None


def _destination(url: str) -> str:
    return (
        "<" + url.replace("<", "%3C").replace(">", "%3E") + ">"
        if re.search(r"[\s()]", url)
        else url
    )


def _tidy(text: str) -> str:
    lines = [line.rstrip(" ") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_markdown(html: str) -> str:
    """WordPress post HTML as Markdown, as close as the renderer can show it."""
    writer = _MarkdownWriter()
    writer.feed(html)
    writer.close()
    while writer.quotes:
        writer.handle_endtag("blockquote")
    return _tidy("".join(writer.out))


def iter_markdown_images(content: str) -> Iterator[re.Match[str]]:
    """Every image destination in Markdown (`![alt](destination)`)."""
    return IMAGE_LINK.finditer(content)


IMAGE_LINK = re.compile(r"(!\[[^\]\n]*\]\(\s*)(<[^>\n]*>|[^)\s]+)")
