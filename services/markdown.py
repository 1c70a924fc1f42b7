"""Markdown for post bodies: sanitised HTML, plain text, excerpts and reading time.

Post bodies are untrusted. Raw HTML in the source is escaped by markdown-it (``html`` is off),
and the rendered HTML then goes through nh3 with an explicit allowlist, so that a bug or a
surprise in either layer alone cannot let script into a page.
"""

import math
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from schemas import BIDI_CONTROLS

# Rendered HTML may be cached next to the post; bump this whenever the output for the same
# source could change (options, allowlists, token rewrites) so stale copies are re-rendered.
RENDERER_VERSION: int = 1

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"

# markdown-it's commonmark default, stated explicitly because it is what keeps deeply nested
# input (thousands of ">" or "-") from exhausting the parser's recursion: anything nested deeper
# is dropped.
MAX_NESTING = 20

_md = MarkdownIt("commonmark", {"html": False, "maxNesting": MAX_NESTING}).enable(
    ["table", "strikethrough"]
)

# Control characters have no business in prose and can break XML feeds; bidi embeddings,
# overrides and isolates let text display in a different order than it reads (spoofed link
# text, filenames); lone surrogates cannot be encoded, so nh3 would raise on them. Replacing
# rather than deleting means no two fragments are glued into a new word such as a URL scheme.
_UNSAFE_CHARS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{BIDI_CONTROLS}\ud800-\udfff]")

# h1 is deliberately absent: the page's only h1 is the post title, and "#" renders as h2.
ALLOWED_TAGS: frozenset[str] = frozenset(
    {"p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre"}
    | {"blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
)
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
}
_ALIGNMENTS = frozenset({"left", "center", "right"})
# Listed separately from ALLOWED_ATTRIBUTES because nh3 only restricts values this way.
ALLOWED_ATTRIBUTE_VALUES: dict[str, dict[str, frozenset[str]]] = {
    "th": {"align": _ALIGNMENTS},
    "td": {"align": _ALIGNMENTS},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow ugc noopener"

_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,64}")
_LIST_START = re.compile(r"[0-9]{1,9}")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_INVISIBLE = re.compile(r"[\s\x00-\x1f\x7f]+")
_TEXT_TOKENS = frozenset({"text", "code_inline", "fence", "code_block"})
_BREAK_TOKENS = frozenset({"softbreak", "hardbreak", "inline", "fence", "code_block"})


def render_markdown(source: str) -> str:
    """Sanitised HTML for a post body."""
    tokens = _parse(source)
    for token in tokens:
        _adjust_block(token)
    return _sanitise(_md.renderer.render(tokens, _md.options, {}))


def plain_text(source: str) -> str:
    """The post's text with all markup removed and whitespace collapsed."""
    return " ".join("".join(_text_parts(_parse(source))).split())


def excerpt(source: str, words: int = 40) -> str:
    """The first `words` words of the plain text, with an ellipsis when anything was cut."""
    all_words = plain_text(source).split()
    kept = all_words[: max(words, 0)]
    suffix = ELLIPSIS if len(kept) < len(all_words) else ""
    return " ".join(kept) + suffix


def reading_minutes(source: str, words_per_minute: int = 230) -> int:
    """Whole minutes to read the post, rounded up and never less than one."""
    words = len(plain_text(source).split())
    return max(1, math.ceil(words / max(words_per_minute, 1)))


def _parse(source: str) -> list[Token]:
    return _md.parse(_UNSAFE_CHARS.sub("\N{REPLACEMENT CHARACTER}", source))


def _adjust_block(token: Token) -> None:
    """Rewrite markdown-it's block tokens into what the page and the allowlist expect."""
    if token.tag == "h1":
        token.tag = "h2"
    elif token.type in ("th_open", "td_open"):
        # Inline styles are not allowlisted at all; the align attribute says the same thing.
        style = str(token.attrs.pop("style", ""))
        if style.startswith("text-align:"):
            token.attrs["align"] = style.removeprefix("text-align:")


def _sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        tag_attribute_values={
            tag: {name: set(values) for name, values in by_name.items()}
            for tag, by_name in ALLOWED_ATTRIBUTE_VALUES.items()
        },
        attribute_filter=_filter_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Value checks nh3 cannot express; returning None drops the attribute."""
    if tag == "img" and attribute == "src":
        return value if _is_allowed_image(value) else None
    if attribute == "href":
        return value if _is_allowed_link(value) else None
    if attribute == "class":
        return value if _LANGUAGE_CLASS.fullmatch(value) else None
    if attribute == "start":
        return value if _LIST_START.fullmatch(value) else None
    return value


def _is_allowed_image(src: str) -> bool:
    """Only absolute http(s) images or the site's own media; never other site paths."""
    if src.lower().startswith(("http://", "https://")):
        return True
    if not src.startswith("/media/"):
        return False
    # "/media/../api/x" (or %2e%2e, or a backslash) would resolve outside /media/.
    path = unquote(re.split("[?#]", src, maxsplit=1)[0]).replace("\\", "/")
    return not any(segment in (".", "..") for segment in path.split("/"))


def _is_allowed_link(href: str) -> bool:
    """Second check on top of nh3's: reject schemes hidden by escapes or whitespace."""
    # Browsers ignore tabs and newlines inside URLs, so "java\tscript:" must count as
    # "javascript:"; decoding escapes first errs on the side of refusing.
    squashed = _INVISIBLE.sub("", unquote(href)).lower()
    scheme = _SCHEME.match(squashed)
    return scheme is None or scheme.group(1) in URL_SCHEMES


def _text_parts(tokens: Iterable[Token]) -> Iterator[str]:
    """Text, code and image alt text in document order, with a space between blocks."""
    for token in tokens:
        if token.type in _TEXT_TOKENS:
            yield token.content
        elif token.children:
            # Inline tokens and images (whose children are the alt text); depth is bounded by
            # MAX_NESTING.
            yield from _text_parts(token.children)
        if token.type in _BREAK_TOKENS:
            yield " "
