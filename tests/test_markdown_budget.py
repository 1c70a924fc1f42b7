"""services.markdown's work and output bounds: pathological input costs about what prose costs.

Nothing here times anything (the machine is shared). Work is counted instead: every call of a
markdown-it rule (block, inline, post-processing, core) and every step of a link label scan,
which together are the parser's loop iterations. Output is counted as tokens and HTML length.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from markdown_it import MarkdownIt
from markdown_it.ruler import Ruler
from markdown_it.token import Token

from services import markdown as markdown_render
from services.markdown import excerpt, reading_minutes, render_markdown
from tests.test_markdown import assert_safe

MAX_LENGTH = 100_000  # schemas.py: the longest post body accepted


def repeat(unit: str, length: int = MAX_LENGTH) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def padded_tables(length: int) -> str:
    """Tables whose one-character rows are padded to a 181-column header: ~45 cells a byte."""
    table = "|a" * 181 + "\n" + "|-" * 181 + "\n" + "x\n" * 363 + "\n"
    return repeat(table, length)


def reference_copies(length: int, character: str = "x") -> str:
    """One long definition used over and over: every "[a]" copies a quarter of the input."""
    definition = f"[a]: /{character * (length // 4)}\n\n"
    return definition + repeat("[a]", length - len(definition))


PROSE = "Lorem *ipsum* dolor [sit](https://example.com) amet, `consectetur` adipiscing elit.\n\n"

PATHOLOGICAL = {
    # Unclosed brackets: each one used to make markdown-it rescan what follows, 20 deep.
    "![ repeated": repeat("!["),
    "[ repeated": repeat("["),
    "[ on every line": repeat("[\n"),
    "![ repeated, closed once": repeat("![", MAX_LENGTH - 1) + "]",
    "[]([ repeated": repeat("[](["),
    "*[ repeated": repeat("*["),
    "[< repeated": repeat("[<"),
    "[a]( repeated": repeat("[a]("),
    "nested images": repeat("![" * 19 + "x" + "](/a)" * 19 + " "),
    "nested reference images": "[a]: /a\n\n" + repeat("![" * 19 + "x" + "][a]" * 19 + " ", 99_991),
    "balanced brackets": "[" * 33_333 + "x" + "](y)" * 16_666,
    "emphasis delimiters": repeat("*_"),
    "emphasis runs": repeat("**a*"),
    "ampersands": repeat("&"),
    "entities": repeat("&#x"),
    "backticks": repeat("`a"),
    "nested quotes": repeat(">"),
    "nested lists": "".join("  " * i + "- x\n" for i in range(300)),
    "list items": repeat("- a\n"),
    "one paragraph of lines": repeat("a\n"),
    "wide table": "|a" * 16_000 + "\n" + "|-" * 16_000 + "\n" + "|x" * 16_000,
    "wide table, empty rows": "|a" * 1000 + "\n" + "|-" * 1000 + "\n" + ("|" * 1000 + "\n") * 96,
    # Output amplification, small enough not to exhaust memory on an unbounded renderer.
    "padded tables": padded_tables(3000),
    "reference copies": reference_copies(10_000),
    "reference copies, escaped": reference_copies(10_000, "&"),  # "&amp;" in the href
}

# Rates per character of source (plus a constant for short input, which the limits' base
# allowances dominate). Prose needs about 0.5 steps a character; every markup character is tried
# against each of the 11 inline rules, and the worst input found needs 15 (one "[" a line).
# The unbounded renderer took 184 steps a character for "![" (three parses of 61).
STEPS_PER_CHAR, STEPS_BASE = 20, 200_000
TOKENS_PER_CHAR, TOKENS_BASE = 4, 50_000
# HTML escaping alone turns '"' into "&quot;" (6 characters), and a cell into "<td></td>\n".
HTML_PER_CHAR, HTML_BASE = 16, 200_000


@dataclass
class Work:
    counts: Counter

    @property
    def steps(self) -> int:
        return sum(self.counts.values())


def _counting(counts: Counter, kind: str, function: Callable) -> Callable:
    def counted(*args: object) -> object:
        counts[kind] += 1
        return function(*args)

    return counted


@pytest.fixture
def work() -> Iterator[Work]:
    """Count markdown-it's steps while the test renders; the rules are restored afterwards."""
    md = markdown_render._md
    counts: Counter = Counter()
    rulers: list[tuple[str, Ruler]] = [
        ("core", md.core.ruler),
        ("block", md.block.ruler),
        ("inline", md.inline.ruler),
        ("inline post-processing", md.inline.ruler2),
    ]
    originals = []
    for kind, ruler in rulers:
        for rule in list(ruler.__rules__):
            originals.append((ruler, rule.name, rule.fn, list(rule.alt)))
            ruler.at(rule.name, _counting(counts, kind, rule.fn), {"alt": list(rule.alt)})
    skip_token = md.inline.skipToken
    md.inline.skipToken = _counting(counts, "label scan", skip_token)
    try:
        yield Work(counts)
    finally:
        md.inline.skipToken = skip_token
        for ruler, name, function, alt in originals:
            ruler.at(name, function, {"alt": alt})


def count_tokens(tokens: list[Token]) -> int:
    return sum(1 + count_tokens(token.children or []) for token in tokens)


def render_all(source: str) -> tuple[str, str, int]:
    """What a post shows, from the one parse posts are rendered with."""
    rendered = markdown_render.render(source)
    return rendered.html, rendered.excerpt, rendered.reading_minutes


@pytest.mark.parametrize("source", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_input_takes_work_linear_in_its_length(source: str, work: Work) -> None:
    html, _, _ = render_all(source)
    length = len(source)
    assert work.steps <= STEPS_PER_CHAR * length + STEPS_BASE, dict(work.counts)
    assert len(html) <= HTML_PER_CHAR * length + HTML_BASE
    assert count_tokens(markdown_render._parse(source)) <= TOKENS_PER_CHAR * length + TOKENS_BASE
    assert_safe(html)


def test_unclosed_image_brackets_at_the_maximum_length(work: Work) -> None:
    """The reported case: 100,000 characters of "![" took 15-21 s of CPU to render."""
    source = "![" * (MAX_LENGTH // 2)
    html, excerpt_text, minutes = render_all(source)
    # The allowance, then one call a bracket that finds it spent and gives up at once.
    assert (
        work.counts["label scan"]
        <= (markdown_render.LABEL_SCAN_STEPS_PER_CHAR + 1) * len(source)
        + markdown_render.LIMIT_BASE
    )
    assert work.steps <= STEPS_PER_CHAR * len(source)
    assert html == f"<p>{source}</p>\n"  # text, as before
    assert excerpt_text == source
    assert minutes == 1


def test_prose_takes_under_one_step_a_character(work: Work) -> None:
    source = repeat(PROSE)
    render_all(source)
    assert work.steps <= len(source)
    assert work.counts["label scan"] <= len(source) // 50


def test_render_parses_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parses = []
    parse = markdown_render._md.parse
    monkeypatch.setattr(markdown_render._md, "parse", lambda *a: parses.append(a) or parse(*a))
    rendered = markdown_render.render(PROSE * 3)
    assert len(parses) == 1
    assert isinstance(rendered, markdown_render.Rendered)


# --- honest documents are untouched ------------------------------------------------------------

_unlimited = MarkdownIt(
    "commonmark", {"html": False, "maxNesting": markdown_render.MAX_NESTING}
).enable(["table", "strikethrough"])


def render_unlimited(source: str) -> str:
    tokens = _unlimited.parse(
        markdown_render._UNSAFE_CHARS.sub("\N{REPLACEMENT CHARACTER}", source)
    )
    for token in tokens:
        markdown_render._adjust_block(token)
    return markdown_render._sanitise(_unlimited.renderer.render(tokens, _unlimited.options, {}))


HONEST_LENGTH = 30_000  # enough for the limits' base allowances to be small beside it

HONEST = {
    "prose": repeat(PROSE, HONEST_LENGTH),
    "links and images": repeat(
        'See [the *docs* page](https://example.com/docs "Docs") and '
        "![a [bracketed] diagram](/media/d.png), [nested [brackets] too](/x),"
        " [ref] and [ref][].\n\n"
        "[ref]: https://example.com/a-reference-with-a-fairly-long-url/that/goes/on 'A title'\n\n",
        HONEST_LENGTH,
    ),
    "tables": repeat(
        "| Name | Score | Notes |\n|:-----|------:|:-----:|\n"
        + "| Ada | 10 | *first* |\n| Brian | 9 |\n| [Cy](/c) | 8 | ok |\n" * 40
        + "\n",
        HONEST_LENGTH,
    ),
    "lists and quotes": repeat(
        "- one\n  - two [link](/x)\n    1. three\n\n> quoted **text**\n> > and deeper\n\n",
        HONEST_LENGTH,
    ),
    "code": repeat(
        "```python\nprint('[not a link](x)')\n```\n\nInline `code [x]` here.\n\n", HONEST_LENGTH
    ),
    "one big table": "| a | b | c | d |\n|---|---|---|---|\n" + "| 1 | 2 | 3 | 4 |\n" * 1500,
    "a reference used often": "[r]: https://example.com/r\n\n" + "[r] and [text][r]. " * 200,
}


@pytest.mark.parametrize("source", HONEST.values(), ids=HONEST.keys())
def test_limits_do_not_change_honest_documents(source: str) -> None:
    rendered = markdown_render.render(source)
    assert rendered.html == render_unlimited(source)
    assert rendered.html == render_markdown(source)
    assert rendered.excerpt == excerpt(source)
    assert rendered.reading_minutes == reading_minutes(source)


def test_render_matches_the_single_purpose_functions() -> None:
    source = "# Title\n\n" + " ".join(f"**w{i}**" for i in range(500))
    rendered = markdown_render.render(source)
    assert rendered == markdown_render.Rendered(
        render_markdown(source), excerpt(source), reading_minutes(source)
    )
    assert (
        markdown_render.render(source, excerpt_words=3).excerpt
        == "Title w0 w1\N{HORIZONTAL ELLIPSIS}"
    )
    assert markdown_render.render(source, words_per_minute=10).reading_minutes == 51


# --- what happens past each limit --------------------------------------------------------------


def test_padded_table_cells_are_limited_and_the_rest_is_text() -> None:
    source = padded_tables(3000)
    html = markdown_render.render(source).html
    cells = html.count("<td>") + html.count("<th>")
    assert cells <= markdown_render.LIMIT_BASE + markdown_render.TABLE_CELLS_PER_CHAR * len(source)
    assert "<p>x\nx" in html  # rows past the limit stay as a paragraph


def test_cells_with_content_are_never_cut() -> None:
    # The densest such table, a pipe and a character a cell, at the maximum length.
    source = "|a" * 2000 + "|\n" + "|-" * 2000 + "|\n" + ("|a" * 2000 + "|\n") * 22
    assert len(source) <= MAX_LENGTH
    html = markdown_render.render(source).html
    assert html.count("<td>") + html.count("<th>") == 2000 * 23


def test_empty_cells_count_against_the_limit_like_padded_ones() -> None:
    source = "|" * 2001 + "\n" + "|-" * 2000 + "|\n" + ("|" * 2001 + "\n") * 46
    html = markdown_render.render(source).html
    cells = html.count("<td>") + html.count("<th>")
    assert cells <= markdown_render.LIMIT_BASE + markdown_render.TABLE_CELLS_PER_CHAR * len(source)
    assert cells % 2000 == 0  # whole rows: the table ends and the rest is a paragraph


def test_reference_copies_are_limited_and_the_rest_is_text() -> None:
    source = reference_copies(10_000)
    html = markdown_render.render(source).html
    budget = markdown_render.LIMIT_BASE + markdown_render.REFERENCE_CHARS_PER_CHAR * len(source)
    links = html.count("<a ")
    assert 0 < links <= budget // (len(source) // 4) + 1
    assert "[a][a][a]" in html  # past the limit, as if the reference were not defined


def test_unclosed_brackets_do_not_stop_later_markup() -> None:
    html = markdown_render.render("[" * 20_000 + "\n\n**bold** and `code`").html
    assert "<strong>bold</strong> and <code>code</code>" in html
