"""markdown_render: sanitised HTML, plain text, excerpts, reading time."""

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest

from services import markdown as markdown_render
from services.markdown import (
    RENDERER_VERSION,
    excerpt,
    plain_text,
    reading_minutes,
    render_markdown,
)

# Written out here rather than imported, so that widening the module's allowlist fails a test.
TAGS = {"p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre"}
TAGS |= {"blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {
    "a": {"href", "title", "rel"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "code": {"class"},
    "th": {"class"},
    "td": {"class"},
}
REL = "nofollow ugc noopener"
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


@dataclass(frozen=True)
class Element:
    tag: str
    attrs: dict[str, str]


class Collector(HTMLParser):
    """Every start tag with its (entity-decoded) attributes, and anything that is not a tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.oddities: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)), f"duplicate attribute on <{tag}>: {names}"
        self.elements.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert tag in TAGS, f"unexpected </{tag}>"

    def handle_comment(self, data: str) -> None:
        self.oddities.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.oddities.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.oddities.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.oddities.append(f"unknown declaration {data!r}")


def elements(html: str) -> list[Element]:
    collector = Collector()
    collector.feed(html)
    collector.close()
    assert collector.oddities == []
    return collector.elements


def url_scheme(url: str) -> str | None:
    """The scheme a browser could see, erring towards finding one (escapes decoded, blanks gone)."""
    squashed = re.sub(r"[\s\x00-\x1f\x7f]+", "", unquote(url)).lower()
    match = re.match(r"([a-z][a-z0-9+.-]*):", squashed)
    return match.group(1) if match else None


def assert_safe(html: str) -> None:
    assert "<script" not in html.lower()
    for element in elements(html):
        assert element.tag in TAGS, f"unexpected <{element.tag}>"
        for name, value in element.attrs.items():
            assert not name.startswith("on"), f"event handler {name}={value!r}"
            assert name in ATTRIBUTES.get(element.tag, set()), f"<{element.tag} {name}=...>"
            if name == "href":
                assert url_scheme(value) in {None, "http", "https", "mailto"}, value
            if name == "src":
                assert url_scheme(value) in {"http", "https"} or value.startswith("/media/")
                assert value.lower().startswith(("http://", "https://", "/media/")), value
                assert ".." not in unquote(value), value
            if name == "rel":
                assert value == REL
            if name == "start":
                assert re.fullmatch(r"[0-9]+", value), value
            if name == "class" and element.tag == "code":
                assert re.fullmatch(r"language-[A-Za-z0-9_+#.-]+", value), value
            if name == "class" and element.tag in {"th", "td"}:
                assert value in {"align-left", "align-center", "align-right"}, value


def only(html: str, tag: str) -> Element:
    found = [element for element in elements(html) if element.tag == tag]
    assert len(found) == 1, found
    return found[0]


XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](  JaVaScRiPt:alert(1)  'title')",
    "[x](java&#x09;script:alert(1))",
    "[x](java&#10;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1))",
    "[x](javascript%3Aalert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](\x00javascript:alert(1))",
    "[x](java\x00script:alert(1))",
    "[x](java\u200bscript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](vbscript:msgbox(1))",
    "![x](/media/../api/secret)",
    "![x](/media/%2e%2e/api/secret)",
    "![x](//evil.example/tracker.png)",
    "![x](/api/posts)",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<a href="javascript:alert(1)">x</a>',
    "<a href=&#01;javascript:alert(1)>x</a>",
    '<iframe src="https://evil.example"></iframe>',
    "<style>body { display: none }</style>",
    '<form action="https://evil.example"><input name="password"></form>',
    '<object data="javascript:alert(1)"></object>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<div onmouseover="alert(1)">hover</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<!-- x --><script>alert(1)</script>",
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "<vbscript:msgbox(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
    "[x][r]\n\n[r]: <data:text/html;base64,PHNjcmlwdD4=>",
    "![x][r]\n\n[r]: javascript:alert(1)",
    '"><script>alert(1)</script>',
    "'\"><img src=x onerror=alert(1)>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    '[x](https://example.com "\\" onmouseover=alert(1) x=\\"")',
    '![x" onerror="alert(1)](https://example.com/a.png)',
    '[x](mailto:a@b.example"onclick="alert(1))',
    '```"><script>alert(1)</script>\ncode\n```',
    "```js onload=alert(1)\ncode\n```",
    "| a |\n|---|\n| <script>alert(1)</script> |",
    "[\u202egnp.exe](https://example.com/)",
    "\u202e<script>alert(1)</script>",
    "[x](javascript:alert(1)\ud800)",
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payload_is_neutralised(payload: str) -> None:
    html = render_markdown(payload)
    assert_safe(html)
    # The other outputs are plain text that Jinja escapes; they only have to survive the input.
    assert isinstance(plain_text(payload), str)
    assert isinstance(excerpt(payload), str)
    assert reading_minutes(payload) >= 1


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payload_survives_surrounding_markup(payload: str) -> None:
    """The payload inside a list, a quote and a link label, where parsing contexts differ."""
    source = f"- {payload}\n\n> {payload}\n\n[{payload}](https://example.com)\n\n**{payload}**"
    assert_safe(render_markdown(source))


RAW_HTML = [
    "<h1>Second title</h1>",
    '<a href="javascript:alert(1)" onclick="alert(1)" style="color:red">x</a>',
    '<a href="JaVa&#x09;ScRiPt:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>',
    '<a href="ftp://example.com/">x</a>',
    '<a href="/posts/1" rel="opener" target="_blank">x</a>',
    '<img src="data:image/png;base64,iVBORw0KGgo=" onerror="alert(1)">',
    '<img src="/api/posts"><img src="/media/../api/posts">',
    '<code class="hljs language-py">x</code>',
    '<th style="text-align:left" align="justify">x</th>',
    '<ol start="1;alert(1)" type="a"><li>x</li></ol>',
    "<div><span><iframe src=https://evil.example></iframe></span></div>",
    "<svg><a href=javascript:alert(1)><text>x</text></a></svg>",
]


@pytest.mark.parametrize("html", RAW_HTML)
def test_sanitiser_alone_stops_raw_html(html: str) -> None:
    """The second line of defence, as if markdown-it had let raw HTML through."""
    assert_safe(markdown_render._sanitise(html))


def test_raw_html_is_shown_as_text() -> None:
    html = render_markdown("<b>bold</b> and <script>alert(1)</script>")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [element.tag for element in elements(html)] == ["p"]


def test_event_handler_in_link_title_stays_inside_the_attribute() -> None:
    link = only(render_markdown('[x](https://example.com "a\\" onclick=\\"alert(1)")'), "a")
    assert link.attrs == {
        "href": "https://example.com",
        "title": 'a" onclick="alert(1)',
        "rel": REL,
    }


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](java&#x09;script:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
    ],
)
def test_dangerous_links_have_no_href(source: str) -> None:
    for element in elements(render_markdown(source)):
        assert "href" not in element.attrs


@pytest.mark.parametrize(
    ("source", "href"),
    [
        ("[x](http://example.com/a?b=1&c=2)", "http://example.com/a?b=1&c=2"),
        ("[x](https://example.com/)", "https://example.com/"),
        ("[x](HTTPS://EXAMPLE.COM/)", "HTTPS://EXAMPLE.COM/"),
        ("[x](mailto:someone@example.com)", "mailto:someone@example.com"),
        ("<https://example.com/auto>", "https://example.com/auto"),
        ("<someone@example.com>", "mailto:someone@example.com"),
        ("[x](/posts/1)", "/posts/1"),
        ("[x](#comments)", "#comments"),
        ("[x][r]\n\n[r]: https://example.com/ref", "https://example.com/ref"),
    ],
)
def test_allowed_links_are_kept_with_rel(source: str, href: str) -> None:
    link = only(render_markdown(source), "a")
    assert link.attrs["href"] == href
    assert link.attrs["rel"] == REL


def test_every_link_gets_rel_exactly_once() -> None:
    html = render_markdown("[a](https://a.example) [b](/posts/2) <https://c.example>")
    links = [element for element in elements(html) if element.tag == "a"]
    assert len(links) == 3
    assert all(link.attrs["rel"] == REL for link in links)
    assert html.count("rel=") == 3


@pytest.mark.parametrize(
    "src",
    [
        "/media/2024/photo.jpg",
        "/media/a%20b.png",
        "https://images.example.com/cat.png",
        "http://images.example.com/cat.png",
    ],
)
def test_allowed_images_are_kept(src: str) -> None:
    image = only(render_markdown(f'![a cat](<{src}> "Cat")'), "img")
    assert image.attrs == {"src": src, "alt": "a cat", "title": "Cat"}


@pytest.mark.parametrize(
    "src",
    [
        "/api/posts",
        "/media",
        "media/photo.jpg",
        "photo.jpg",
        "../media/photo.jpg",
        "/media/../api/posts",
        "/media/%2E%2E/api/posts",
        "/media/..%5Capi",
        "//evil.example/media/x.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "mailto:a@example.com",
        "ftp://example.com/x.png",
    ],
)
def test_other_image_sources_are_dropped(src: str) -> None:
    image = only(render_markdown(f"![alt](<{src}>)"), "img")
    assert "src" not in image.attrs
    assert image.attrs["alt"] == "alt"


def test_h1_becomes_h2_and_other_levels_stay() -> None:
    html = render_markdown("# Title\n\nSetext\n======\n\n## Two\n\n### Three\n\n###### Six")
    assert [element.tag for element in elements(html)] == ["h2", "h2", "h2", "h3", "h6"]
    assert "<h2>Title</h2>" in html
    assert "<h1" not in html


def test_table_alignment_uses_a_class() -> None:
    source = "| L | R | C | N |\n|:--|--:|:-:|---|\n| 1 | 2 | 3 | 4 |"
    found = elements(render_markdown(source))
    cells = [element for element in found if element.tag in {"th", "td"}]
    expected = ["align-left", "align-right", "align-center", None] * 2
    assert [cell.attrs.get("class") for cell in cells] == expected
    assert not any("align" in cell.attrs for cell in cells)
    assert {element.tag for element in found} == {"table", "thead", "tbody", "tr", "th", "td"}
    assert "style" not in render_markdown(source)


def test_strikethrough_and_emphasis() -> None:
    html = render_markdown("~~gone~~ **bold** *it*")
    assert html == "<p><s>gone</s> <strong>bold</strong> <em>it</em></p>\n"


def test_code_keeps_content_escaped() -> None:
    html = render_markdown("```python\nif a < b and c > d: print('<script>')\n```\n\n`<em>x</em>`")
    assert "if a &lt; b and c &gt; d: print('&lt;script&gt;')" in html
    assert "<code>&lt;em&gt;x&lt;/em&gt;</code>" in html
    assert only(html, "pre").attrs == {}
    assert [element.attrs for element in elements(html) if element.tag == "code"] == [
        {"class": "language-python"},
        {},
    ]


@pytest.mark.parametrize("info", ['py"onclick=x', "py<b>", "py{.x}", "py'x"])
def test_code_class_other_than_a_plain_language_is_dropped(info: str) -> None:
    html = render_markdown(f"```{info}\ncode\n```")
    assert only(html, "code").attrs == {}


def test_lists_blockquotes_breaks_rules() -> None:
    html = render_markdown("3. a\n4. b\n\n- c\n\n> q\n\n---\n\nline  \nbreak")
    tags = [element.tag for element in elements(html)]
    assert tags == ["ol", "li", "li", "ul", "li", "blockquote", "p", "hr", "p", "br"]
    assert only(html, "ol").attrs == {"start": "3"}


def test_plain_text_removes_markup() -> None:
    source = (
        "# Heading\n\n**bold** _em_ [link](https://x.y) `code` ![alt *text*](/media/a.png)\n\n"
        "- one\n- two\n\n> quoted\n\n| a | b |\n|---|---|\n| c | d |\n\n```\nblock\n```"
    )
    assert plain_text(source) == ("Heading bold em link code alt text one two quoted a b c d block")


def test_plain_text_keeps_user_written_angle_brackets_and_decodes_entities() -> None:
    assert plain_text("a < b && c > d") == "a < b && c > d"
    assert plain_text("Tom &amp; Jerry &lt;3") == "Tom & Jerry <3"
    assert plain_text("**x** <https://example.com>") == "x https://example.com"


def test_plain_text_collapses_whitespace() -> None:
    assert plain_text("  a\t\tb\n\n\nc  \n d\u00a0\u2003e ") == "a b c d e"
    assert plain_text("") == ""
    assert plain_text("   \n\n  ") == ""


def test_excerpt_cuts_at_forty_words_without_markup() -> None:
    source = "**bold** [link](https://x.y) `code` " + " ".join(f"w{i}" for i in range(100))
    result = excerpt(source)
    assert result.endswith(ELLIPSIS)
    words = result.removesuffix(ELLIPSIS).split()
    assert len(words) == 40
    assert words[:4] == ["bold", "link", "code", "w0"]
    assert words[-1] == "w36"
    assert not set("<>*[]`()") & set(result)


def test_excerpt_is_whole_text_when_short_enough() -> None:
    forty = " ".join(["word"] * 40)
    assert excerpt(forty) == forty
    assert excerpt(forty + " more") == forty + ELLIPSIS
    assert excerpt("**Short** post.") == "Short post."
    assert excerpt("a b c d", words=2) == "a b" + ELLIPSIS
    assert excerpt("") == ""


def test_reading_minutes() -> None:
    assert reading_minutes("") == 1
    assert reading_minutes("A short post.") == 1
    assert reading_minutes(" ".join(["word"] * 2300)) == 10
    assert reading_minutes(" ".join(["word"] * 2301)) == 11
    assert reading_minutes(" ".join(["word"] * 100), words_per_minute=10) == 10
    assert reading_minutes("**markup** `is` [not](https://counted.example)") == 1


def test_reading_minutes_ignores_markup_when_counting() -> None:
    # 460 words of text; the URLs and asterisks must not add words.
    source = " ".join(["[**word**](https://example.com/a/b/c)"] * 460)
    assert reading_minutes(source, words_per_minute=230) == 2


def test_rendering_is_deterministic_and_a_sanitiser_fixed_point() -> None:
    source = "# T\n\n[a](https://a.example) ![b](/media/b.png)\n\n| x |\n|:-:|\n| y |\n\n~~z~~"
    first = render_markdown(source)
    assert render_markdown(source) == first
    assert markdown_render._sanitise(first) == first
    assert plain_text(source) == plain_text(source)


def test_renderer_version_is_a_positive_int() -> None:
    assert isinstance(RENDERER_VERSION, int)
    assert RENDERER_VERSION >= 1


def test_bidi_controls_and_lone_surrogates_are_replaced() -> None:
    source = "abc\u202edef\u2066g\ud800h\x00i\x07j"
    for output in (render_markdown(source), plain_text(source), excerpt(source)):
        assert not re.search("[\u202a-\u202e\u2066-\u2069\ud800-\udfff\x00-\x08]", output)
        assert "abc" in output
        assert "j" in output


PATHOLOGICAL = {
    "nested quotes": ">" * 5000 + " deep",
    "nested quotes on lines": "".join(">" * i + " x\n" for i in range(300)),
    "nested lists": "".join("  " * i + "- x\n" for i in range(2000)),
    "nested bullets": "- " * 5000 + "deep",
    "nested emphasis": "*" * 5000 + "x" + "*" * 5000,
    "nested brackets": "[" * 20000 + "x" + "](y)" * 20000,
    "nested images": "![" * 5000 + "x" + "](/media/a.png)" * 5000,
    "unclosed brackets": "[" * 50000,
    "unclosed backticks": "`a" * 50000,
    "unclosed links": "[a](" * 25000,
    "many references": "[a]: /x\n" * 20000 + "[a]",
    "wide table": "|a" * 2000 + "\n" + "|-" * 2000 + "\n" + "|x" * 2000,
    "entities": "&#x" * 30000 + "&#99999999;&#0;&#xD800;",
    "NUL bytes": "\x00" * 1000 + "[x](\x00)" + "a\x00b" * 1000,
    "control characters": "".join(chr(i) for i in range(32)) * 100,
    "combining marks": "a" + "\u0301" * 100000,
    "zalgo link": "[" + "\u0301" * 10000 + "](https://example.com)",
}


@pytest.mark.parametrize("source", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_input_does_not_raise(source: str) -> None:
    assert_safe(render_markdown(source))
    assert isinstance(plain_text(source), str)
    assert excerpt(source, words=5).count(" ") <= 4
    assert reading_minutes(source) >= 1


def test_deep_nesting_is_capped() -> None:
    html = render_markdown(">" * 5000 + " deep")
    assert 0 < html.count("<blockquote>") <= markdown_render.MAX_NESTING


def test_one_megabyte_of_text() -> None:
    paragraph = "Lorem *ipsum* dolor [sit](https://example.com) amet.\n\n"
    count = 1_000_000 // len(paragraph) + 1
    source = paragraph * count
    assert len(source) >= 1_000_000
    html = render_markdown(source)
    assert html.count("<p>Lorem <em>ipsum</em> dolor <a ") == count
    assert_safe(html)
    assert reading_minutes(source) == -(-5 * count // 230)
