"""Markdown for post bodies: sanitised HTML, plain text, excerpts and reading time.

Post bodies are untrusted. Raw HTML in the source is escaped by markdown-it (``html`` is off),
and the rendered HTML then goes through nh3 with an explicit allowlist, so that a bug or a
surprise in either layer alone cannot let script into a page.

They are also hostile to the CPU: `render` parses a body once for everything the site shows,
and each parse runs under limits that grow with the length of the source (see _Limits), so
the work and the size of the output stay linear in it whatever the input.
"""

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import nh3
from markdown_it import MarkdownIt
from markdown_it.ruler import Ruler
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from schemas import BIDI_CONTROLS
from services.media import largest_size, variant_sizes

# Rendered HTML may be cached next to the post; bump this whenever the output for the same
# source could change (options, allowlists, token rewrites, limits) so stale copies are
# re-rendered.
# 2: work and output limits per document (_Limits); only input past them renders differently.
# 4: the site's own post images become responsive <img> (srcset, sizes, width, height, lazy).
RENDERER_VERSION: int = 4

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"

# markdown-it's commonmark default, stated explicitly because it is what keeps deeply nested
# input (thousands of ">" or "-") from exhausting the parser's recursion: anything nested deeper
# is dropped.
MAX_NESTING = 20

_md = MarkdownIt("commonmark", {"html": False, "maxNesting": MAX_NESTING}).enable(
    ["table", "strikethrough"]
)

EXCERPT_WORDS = 40
WORDS_PER_MINUTE = 230

# Work and output allowed per document, each as a base plus so much per character of source.
# An honest document uses a small fraction of each (tests/test_markdown_budget.py measures
# them); what goes past is input built to make the parser or the page explode:
# - label scan steps: every "[" or "![" makes markdown-it look ahead for its "]", one token at
#   a time and up to MAX_NESTING brackets deep, so unclosed brackets cost ~20 steps a character;
# - table cells: rows shorter than the header are padded with empty cells, so a wide header
#   over short lines yields thousands of cells per line;
# - reference text: every use of a "[label]: url 'title'" definition copies its URL and title.
LIMIT_BASE = 10_000
LABEL_SCAN_STEPS_PER_CHAR = 0.5  # a page of nothing but links needs 0.25
TABLE_CELLS_PER_CHAR = 0.5  # a cell needs a pipe and something to hold: "|a" is the densest
REFERENCE_CHARS_PER_CHAR = 2
_LIMITS = "inkwell_limits"  # key of the document's _Limits in markdown-it's env


@dataclass(slots=True)
class _Limits:
    """What is left of one document's allowances; markdown-it hands it to the rules in env."""

    label_scan_steps: int
    table_cells: int
    reference_chars: int

    @classmethod
    def for_source(cls, source: str) -> "_Limits":
        length = len(source)
        return cls(
            label_scan_steps=LIMIT_BASE + int(LABEL_SCAN_STEPS_PER_CHAR * length),
            table_cells=LIMIT_BASE + int(TABLE_CELLS_PER_CHAR * length),
            reference_chars=LIMIT_BASE + int(REFERENCE_CHARS_PER_CHAR * length),
        )


@dataclass(frozen=True)
class Rendered:
    """Everything the site derives from a post body, from a single parse."""

    html: str
    excerpt: str
    reading_minutes: int


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
    "img": frozenset(
        {"src", "alt", "title", "srcset", "sizes", "width", "height", "loading", "decoding"}
    ),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
}
# Table cells say their column's alignment with a class the stylesheet maps to text-align:
# the align attribute is obsolete in HTML, and the CSP allows no inline style.
_ALIGN_CLASSES = frozenset({"align-left", "align-center", "align-right"})
# Listed separately from ALLOWED_ATTRIBUTES because nh3 only restricts values this way.
ALLOWED_ATTRIBUTE_VALUES: dict[str, dict[str, frozenset[str]]] = {
    "th": {"class": _ALIGN_CLASSES},
    "td": {"class": _ALIGN_CLASSES},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow ugc noopener"

# One of the site's post images (services.images names them so): the widest copy's path
# carries its size, from which every stored width follows.
_OWN_IMAGE = re.compile(
    r"/media/images/(?P<digest>[0-9a-f]{32})-(?P<width>[1-9][0-9]{0,4})x(?P<height>[1-9][0-9]{0,4})\.jpg"
)
_SRCSET = re.compile(
    r"/media/images/[0-9a-f]{32}-[0-9]{1,5}x[0-9]{1,5}\.jpg [0-9]{1,5}w"
    r"(, /media/images/[0-9a-f]{32}-[0-9]{1,5}x[0-9]{1,5}\.jpg [0-9]{1,5}w){0,9}"
)
# The post column is 40rem wide (--measure in style.css), the whole viewport below that.
IMAGE_SIZES = "(min-width: 42rem) 40rem, 100vw"
_FIXED_IMAGE_VALUES = {"sizes": IMAGE_SIZES, "loading": "lazy", "decoding": "async"}
_DIMENSION = re.compile(r"[1-9][0-9]{0,4}")
_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,64}")
_LIST_START = re.compile(r"[0-9]{1,9}")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_INVISIBLE = re.compile(r"[\s\x00-\x1f\x7f]+")
_TEXT_TOKENS = frozenset({"text", "code_inline", "fence", "code_block"})
_BREAK_TOKENS = frozenset({"softbreak", "hardbreak", "inline", "fence", "code_block"})


def render(
    source: str,
    *,
    excerpt_words: int = EXCERPT_WORDS,
    words_per_minute: int = WORDS_PER_MINUTE,
) -> Rendered:
    """Sanitised HTML, excerpt and reading time of a post body, from one parse of it."""
    tokens = _parse(source)
    words = _words(tokens)  # before _html, which rewrites the tokens
    return Rendered(
        html=_html(tokens),
        excerpt=_excerpt(words, excerpt_words),
        reading_minutes=_reading_minutes(len(words), words_per_minute),
    )


def render_markdown(source: str) -> str:
    """Sanitised HTML for a post body."""
    return _html(_parse(source))


def plain_text(source: str) -> str:
    """The post's text with all markup removed and whitespace collapsed."""
    return " ".join(_words(_parse(source)))


def excerpt(source: str, words: int = EXCERPT_WORDS) -> str:
    """The first `words` words of the plain text, with an ellipsis when anything was cut."""
    return _excerpt(_words(_parse(source)), words)


def reading_minutes(source: str, words_per_minute: int = WORDS_PER_MINUTE) -> int:
    """Whole minutes to read the post, rounded up and never less than one."""
    return _reading_minutes(len(_words(_parse(source))), words_per_minute)


def _parse(source: str) -> list[Token]:
    text = _UNSAFE_CHARS.sub("\N{REPLACEMENT CHARACTER}", source)
    return _md.parse(text, {_LIMITS: _Limits.for_source(text)})


def _html(tokens: list[Token]) -> str:
    for token in tokens:
        _adjust_block(token)
    return _sanitise(_md.renderer.render(tokens, _md.options, {}))


def _words(tokens: list[Token]) -> list[str]:
    return "".join(_text_parts(tokens)).split()


def _excerpt(all_words: list[str], words: int) -> str:
    kept = all_words[: max(words, 0)]
    suffix = ELLIPSIS if len(kept) < len(all_words) else ""
    return " ".join(kept) + suffix


def _reading_minutes(words: int, words_per_minute: int) -> int:
    return max(1, math.ceil(words / max(words_per_minute, 1)))


# --- limits ------------------------------------------------------------------------------------
# Each wraps one markdown-it rule (or the label scanner's step) and spends from the document's
# _Limits. Past a limit the construct is left as text, the way markdown-it itself treats what it
# cannot parse, so the output stays safe and readable; honest documents never get there.


def _limits(env: dict) -> _Limits:
    limits: _Limits = env[_LIMITS]  # a KeyError means _md was used without _parse
    return limits


_skip_token = _md.inline.skipToken


def _limited_skip_token(state: StateInline) -> None:
    """One step of a link label scan (parseLinkLabel calls this for each token it passes)."""
    limits = _limits(state.env)
    if limits.label_scan_steps <= 0:
        # What markdown-it does itself when brackets nest too deep: skip to the end of the
        # inline content, so that this label and every one around it stays unclosed.
        state.pos = state.posMax
        return
    limits.label_scan_steps -= 1
    _skip_token(state)


_md.inline.skipToken = _limited_skip_token  # type: ignore[method-assign]

_InlineRule = Callable[[StateInline, bool], bool]
_BlockRule = Callable[[StateBlock, int, int, bool], bool]


def _limited_table(table: _BlockRule) -> _BlockRule:
    def limited(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        # Checking whether a table starts here (silent) reads two lines and makes no cells.
        if silent or start_line + 1 >= end_line:
            return table(state, start_line, end_line, silent)
        limits = _limits(state.env)
        # Every row, the header included, has as many cells as the delimiter row has columns,
        # which is at most one more than its pipes. Stop the table where the cells would run out.
        delimiter = state.src[state.bMarks[start_line + 1] : state.eMarks[start_line + 1]]
        rows = limits.table_cells // (delimiter.count("|") + 1)
        if rows < 1:
            return False  # it stays a paragraph
        first = len(state.tokens)
        found = table(state, start_line, min(end_line, start_line + 1 + rows), silent)
        limits.table_cells -= sum(
            token.type in ("th_open", "td_open") for token in state.tokens[first:]
        )
        return found

    return limited


def _limited_references(rule: _InlineRule, marker: str) -> _InlineRule:
    """Links and images through "[label]" definitions: the definition's text is copied out each
    time, so their total size is limited; past it, "[label]" is text, as if undefined."""

    def limited(state: StateInline, silent: bool) -> bool:
        if state.src[state.pos] != marker:  # tried at every markup character: be quick
            return False
        limits = _limits(state.env)
        if limits.reference_chars < 0:
            references = state.env.pop("references", None)
            try:
                return rule(state, silent)
            finally:
                if references is not None:
                    state.env["references"] = references
        first = len(state.tokens)
        if not rule(state, silent):
            return False
        # An inline link or image ends with ")", one through a reference with "]".
        if not silent and state.src[state.pos - 1] == "]":
            token = next(t for t in state.tokens[first:] if t.type in ("link_open", "image"))
            limits.reference_chars -= sum(
                len(str(value)) for name, value in token.attrs.items() if name != "alt"
            )
        return True

    return limited


def _wrap_rule(ruler: Ruler, name: str, wrap: Callable) -> None:
    """Replace a rule by a wrapper around it, keeping the chains it belongs to."""
    rule = next(rule for rule in ruler.__rules__ if rule.name == name)
    ruler.at(name, wrap(rule.fn), {"alt": list(rule.alt)})


_wrap_rule(_md.block.ruler, "table", _limited_table)
_wrap_rule(_md.inline.ruler, "link", lambda rule: _limited_references(rule, "["))
_wrap_rule(_md.inline.ruler, "image", lambda rule: _limited_references(rule, "!"))


def _adjust_block(token: Token) -> None:
    """Rewrite markdown-it's block tokens into what the page and the allowlist expect."""
    if token.type == "inline":
        for child in token.children or ():
            if child.type == "image":
                _make_responsive(child)
    elif token.tag == "h1":
        token.tag = "h2"
    elif token.type in ("th_open", "td_open"):
        # Inline styles are not allowlisted at all; a class says the same thing.
        style = str(token.attrs.pop("style", ""))
        if style.startswith("text-align:"):
            token.attrs["class"] = "align-" + style.removeprefix("text-align:")


def _make_responsive(image: Token) -> None:
    """The site's own image gets every stored width in srcset, and its size, so the page
    neither loads more pixels than it shows nor moves when the image arrives."""
    match = _OWN_IMAGE.fullmatch(str(image.attrs.get("src", "")))
    if match is None:
        return
    digest, width, height = match["digest"], int(match["width"]), int(match["height"])
    if largest_size(width, height) != (width, height):
        return  # no size the site stores: leave it a plain image
    sizes = variant_sizes(width, height)
    image.attrs["srcset"] = ", ".join(f"/media/images/{digest}-{w}x{h}.jpg {w}w" for w, h in sizes)
    image.attrs.update(_FIXED_IMAGE_VALUES, width=str(width), height=str(height))


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
    if tag == "img" and attribute in _FIXED_IMAGE_VALUES:
        return value if value == _FIXED_IMAGE_VALUES[attribute] else None
    if tag == "img" and attribute in ("width", "height"):
        return value if _DIMENSION.fullmatch(value) else None
    if tag == "img" and attribute == "srcset":
        return value if _SRCSET.fullmatch(value) else None
    if attribute == "href":
        return value if _is_allowed_link(value) else None
    if attribute == "class":
        if tag in ("th", "td"):
            return value if value in _ALIGN_CLASSES else None
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
