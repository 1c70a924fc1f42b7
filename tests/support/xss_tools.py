"""The XSS corpus and the tools that judge a page: an HTML inspector that finds executable
or restyling markup, and an audit that collects every problem of a run (tests/test_xss.py and
tests/e2e/test_xss_browser.py use them)."""

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from xml.etree import ElementTree

JS = "alert(1)"

# ---------------------------------------------------------------- the corpus

PAYLOADS: tuple[str, ...] = (
    # <script> in assorted spellings
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt >alert(1)</sCrIpT >",
    "<script\n>alert(1)</script\t>",
    "< script >alert(1)</ script >",
    "<script src=//evil.example/x.js></script>",
    "<<script>alert(1)//<</script>",
    # event handlers
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)//",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    '" onmouseover="alert(1)',
    "' autofocus onfocus='alert(1)",
    '"><img src=x onerror=alert(1)>',
    # javascript:, vbscript: and data: URLs
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
    "&#x6A;avascript&colon;alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    " \x01\x0bjavascript:alert(1)",
    '<a href="javascript:alert(1)">x</a>',
    "<a href=' jav&#x09;ascript:alert(1)'>x</a>",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    # SVG and MathML
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    # breaking out of attributes, elements, the JSON-LD block and XML
    '"><script>alert(1)</script>',
    "'><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "</script><script>alert(1)</script>",
    "</script ><!--<script>alert(1)//-->",
    "]]><script>alert(1)</script><![CDATA[",
    '<a href="x',
    "</noscript><img src=x onerror=alert(1)>",
    "\u2028\u2029</script><script>alert(1)</script>",
    # Unicode tricks: RTL override, zero-width characters, full-width and homoglyph
    # brackets and quotes, a byte-order mark (the search highlighter's private-use marker
    # characters have a test of their own below)
    "\u202e<script>alert(1)</script>",
    "<scr\u200bipt>alert(1)</scr\u200dipt>",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",
    "\u201c onmouseover=\u201calert(1)\u201d \uff02 onfocus=\uff02alert(1)",
    "\ufeff<img src=x onerror=alert(1)>",
    # template injection
    "{{7*7}}",
    "tpl{{7*7}}tpl {% raw %}{{ 7*7 }}{% endraw %}",
    "${7*7} #{7*7} <%= 7*7 %> {{ config }} {{ request }}",
    # Markdown
    "[x](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "<javascript:alert(1)>",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    '[x](JaVa&#x09;ScRiPt:alert(1) "t")',
    "[x](<java\tscript:alert(1)>)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '[x](https://example.com "\\" onmouseover=\\"alert(1)")',
    '![x" onerror="alert(1)](https://example.com/x.png)',
    '```"><script>alert(1)</script>\nx\n```',
    # CSS
    "<style>*{background:url(javascript:alert(1))}</style>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    "<div style=x:expression(alert(1))>x</div>",
    "<link rel=stylesheet href=javascript:alert(1)>",
    # frames, plugins, <base>, meta refresh, form actions
    "<iframe src=javascript:alert(1)></iframe>",
    '<iframe srcdoc="<script>alert(1)</script>">',
    "<object data=javascript:alert(1)></object><embed src=javascript:alert(1)>",
    "<base href=javascript:alert(1)//>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    # already escaped: must be shown as the entities, never decoded into markup
    "&lt;script&gt;alert(1)&lt;/script&gt;",
)

# Only for fields that are never stored: PostgreSQL cannot hold NUL in text.
REFLECTED_ONLY: tuple[str, ...] = (
    "java\x00script:alert(1)",
    "<scr\x00ipt>alert(1)</script>",
)

# Open-redirect shapes for `next`, on top of the corpus.
NEXT_TARGETS: tuple[str, ...] = (
    "//evil.example/",
    "/\\evil.example",
    "/\t/evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)//",
    "/%0d%0aSet-Cookie:%20x=1",
    "/posts?x=<script>alert(1)</script>",
)

TEMPLATE_EVALUATED = "tpl49tpl"


def markdown_document(payload: str, number: int) -> str:
    """The payload in every Markdown context that ends up in an attribute or element."""
    return "\n\n".join(
        [
            # Searchable before anything PostgreSQL's parser might read as a tag to skip.
            f"xssmark{number}",
            payload,
            f"* {payload}",
            f"> {payload}",
            f"[link]({payload}) ![image]({payload}) <{payload}>",
            f"[ref{number}][r{number}]\n\n[r{number}]: {payload}",
            f"`{payload}`",
            f"```{payload}\ncode\n```",
            f"| a |\n| --- |\n| {payload} |",
            f'[titled](https://example.com "{payload}") ![{payload}](https://example.com/x.png)',
        ]
    )


def looks_like_markup(text: str) -> bool:
    return re.search(r"<[A-Za-z/!?]", text) is not None


# ---------------------------------------------------------------- the HTML inspector

VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr", "keygen"}
)
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background"}
    | {"cite", "longdesc", "usemap", "codebase", "ping", "manifest", "lowsrc", "dynsrc"}
)
DANGEROUS_SCHEMES = ("javascript:", "data:", "vbscript:")
FORBIDDEN_ELEMENTS = frozenset(
    {"style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math"}
    | {"base", "xmp", "plaintext", "noembed", "template", "portal"}
)
FORBIDDEN_ATTRIBUTES = frozenset({"style", "srcdoc"})
# The one inline SVG the site draws itself (services.two_factor): a QR code of paths. It may
# hold nothing but these elements with these attributes, so nothing can hide in one.
QR_CODE_CLASS = "qr-code"
QR_CODE_MARKUP = {
    "svg": {"width", "height", "class"},
    "title": set(),
    "g": {"transform"},
    "path": {"fill", "stroke", "d"},
}
# Elements whose content a browser reads as text only (RCDATA): markup inside is a bug.
TEXT_ONLY_ELEMENTS = frozenset({"title", "textarea"})
JSON_LD = "application/ld+json"
# Browsers drop these anywhere in a URL (tab, newline) or around it (C0 controls, space).
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")


@dataclass(eq=False)
class Node:
    tag: str
    attrs: dict[str, str]
    parent: "Node | None" = None
    children: list["Node | str"] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, tag: str, cls: str | None = None, **attrs: str) -> list["Node"]:
        return [
            node
            for node in self.walk()
            if node.tag == tag
            and (cls is None or cls in node.attrs.get("class", "").split())
            and all(node.attrs.get(name.replace("_", "-")) == v for name, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> "Node | None":
        return next((n for n in self.walk() if n.attrs.get("id") == element_id), None)

    def ancestors(self) -> Iterator["Node"]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


@dataclass(frozen=True)
class Problem:
    message: str
    executable: bool


def dangerous_url(value: str) -> bool:
    squashed = _URL_NOISE.sub("", value).lower()
    return squashed.startswith(DANGEROUS_SCHEMES)


class Inspector(HTMLParser):
    """Builds a small tree and records everything that could run script or restyle the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root
        self.problems: list[Problem] = []

    def _flag(self, message: str, *, executable: bool = True) -> None:
        source = (self.get_starttag_text() or "")[:200]
        self.problems.append(Problem(f"{message} in {source!r}", executable))

    def _open(self, tag: str, attrs: list[tuple[str, str | None]]) -> Node:
        values = [(name, value or "") for name, value in attrs]
        node = Node(tag, {}, self.current)
        for name, value in values:
            node.attrs.setdefault(name, value)  # browsers keep the first of duplicates
        self.current.children.append(node)
        for name, value in values:
            if name.startswith("on"):
                self._flag(f"event-handler attribute {name}")
            if name in FORBIDDEN_ATTRIBUTES:
                self._flag(f"{name} attribute")
            if name in URL_ATTRIBUTES and dangerous_url(value):
                self._flag(f"{name} with a script-capable URL")
            if name == "srcset" and any(
                dangerous_url(candidate.strip()) for candidate in value.split(",")
            ):
                self._flag("srcset with a script-capable URL")
        if tag in FORBIDDEN_ELEMENTS and not (tag == "svg" and self._is_qr_code(node)):
            self._flag(f"<{tag}> element")
        elif (
            tag != "svg"
            and any(a.tag == "svg" for a in node.ancestors())
            and not self._is_qr_code(node)
        ):
            self._flag(f"<{tag}> inside an <svg>")
        if tag == "meta" and "http-equiv" in node.attrs:
            self._flag("<meta http-equiv>")
        if tag == "script" and not (_inert_json_ld(node.attrs) or _site_script(node.attrs)):
            self._flag("<script> that is not inert JSON-LD or one of the site's own files")
        text_only = [a.tag for a in node.ancestors() if a.tag in TEXT_ONLY_ELEMENTS]
        if text_only:
            # A browser shows this as text (not XSS by itself), but it means raw markup
            # reached an element whose content must be escaped text.
            self._flag(f"markup inside <{text_only[0]}>", executable=False)
        return node

    @staticmethod
    def _is_qr_code(node: Node) -> bool:
        """Whether `node` is markup a QR code of the site's may hold (see QR_CODE_MARKUP)."""
        allowed = QR_CODE_MARKUP.get(node.tag)
        if allowed is None or not set(node.attrs) <= allowed:
            return False
        svgs = [a for a in node.ancestors() if a.tag == "svg"]
        if node.tag == "svg":
            return not svgs and node.attrs.get("class") == QR_CODE_CLASS
        return len(svgs) == 1 and svgs[0].attrs.get("class") == QR_CODE_CLASS

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = self._open(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def inspect_html(markup: str) -> tuple[Node, list[Problem]]:
    """Parse a page (or fragment); return its tree and everything unsafe in it."""
    inspector = Inspector()
    try:
        inspector.feed(markup)
        inspector.close()
    except AssertionError as exc:  # Python 3.11's parser gives up on some bogus markup
        inspector.problems.append(Problem(f"markup the parser cannot read: {exc}", True))
    problems = list(inspector.problems)
    for script in inspector.root.find_all("script"):
        if script.attrs.get("type", "").strip().lower() != JSON_LD:
            continue
        raw = script.text()  # script content is raw text: no character references
        for marker in ("</script", "<!--", "<script"):
            if marker in raw.lower():
                problems.append(Problem(f"{marker!r} inside JSON-LD: {raw[:200]!r}", True))
        try:
            json.loads(raw)
        except ValueError:
            problems.append(Problem(f"JSON-LD does not parse: {raw[:200]!r}", True))
    return inspector.root, problems


def json_ld(root: Node, kind: str) -> dict | None:
    for script in root.find_all("script", type=JSON_LD):
        try:
            data = json.loads(script.text())
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("@type") == kind:
            return data
    return None


def attr_of(root: Node, element_id: str, name: str) -> str | None:
    node = root.by_id(element_id)
    return None if node is None else node.attrs.get(name)


ATOM = "{http://www.w3.org/2005/Atom}"


# ---------------------------------------------------------------- the audit


# The site's own progressive-enhancement scripts: files under /static/js/, nothing inline.
SITE_SCRIPT = re.compile(r"http://testserver/static/js/[a-z-]+\.js\?v=[0-9a-f]{12}")


def _inert_json_ld(attrs: dict[str, str]) -> bool:
    return attrs.get("type", "").strip().lower() == JSON_LD and "src" not in attrs


def _site_script(attrs: dict[str, str]) -> bool:
    return set(attrs) <= {"src", "defer"} and bool(SITE_SCRIPT.fullmatch(attrs.get("src", "")))


@dataclass
class Audit:
    """Collects every problem (so one run reports them all) and counts what was checked."""

    backend: str
    problems: list[str] = field(default_factory=list)
    executable: int = 0
    responses: int = 0
    checks: int = 0
    payloads: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)

    def flag(self, where: str, message: str, *, executable: bool = False) -> None:
        self.problems.append(f"{where}: {message}")
        self.executable += executable

    def expect(self, where: str, condition: bool, message: str) -> None:
        if not condition:
            self.flag(where, message)

    def shows(
        self, where: str, what: str, text: str | None, expected: str, *, exact: bool = False
    ) -> None:
        """The parsed text (or attribute value) must hold the hostile value as typed: it was
        escaped into the markup, not parsed out of it. `exact` for elements that hold
        nothing else (headings, links, form fields)."""
        if text is None or (text != expected if exact else expected not in text):
            self.flag(where, f"{what} should show {expected!r} as text, shows {text!r}")

    def _count(self, shown: Iterable[tuple[str, str]]) -> None:
        for field_name, payload in shown:
            self.fields.add(field_name)
            self.payloads.add(payload)
            self.checks += 1

    def _response(self, where: str, response, status: int | tuple[int, ...]) -> None:
        self.responses += 1
        allowed = (status,) if isinstance(status, int) else status
        self.expect(where, response.status_code in allowed, f"status {response.status_code}")

    def page(self, where: str, response, *, status: int | tuple[int, ...] = 200, shown=()) -> Node:
        """Check an HTML response; `shown` is the (field, payload) pairs it displays."""
        shown = list(shown)
        self._response(where, response, status)
        content_type = response.headers.get("content-type", "")
        self.expect(where, content_type.startswith("text/html"), f"content type {content_type}")
        root, problems = inspect_html(response.text)
        for problem in problems:
            self.flag(where, problem.message, executable=problem.executable)
        self._unescaped(where, response.text, shown)
        self._count(shown)
        return root

    def fragment(self, where: str, markup: str, shown=()) -> Node:
        """Check HTML carried inside another document (a feed entry's content)."""
        shown = list(shown)
        root, problems = inspect_html(markup)
        for problem in problems:
            self.flag(where, problem.message, executable=problem.executable)
        self._unescaped(where, markup, shown)
        self._count(shown)
        return root

    def _unescaped(self, where: str, markup: str, shown: list[tuple[str, str]]) -> None:
        for field_name, payload in shown:
            if looks_like_markup(payload) and payload in markup:
                self.flag(where, f"{field_name} {payload!r} appears unescaped", executable=True)
        if TEMPLATE_EVALUATED in markup:
            self.flag(where, "a template expression was evaluated", executable=True)

    def feed(self, where: str, response, shown=()) -> ElementTree.Element | None:
        self._response(where, response, 200)
        content_type = response.headers.get("content-type", "")
        self.expect(where, content_type.startswith("application/atom+xml"), content_type)
        try:
            root = ElementTree.fromstring(response.content)
        except ElementTree.ParseError as exc:
            self.flag(where, f"not well-formed XML: {exc}", executable=True)
            return None
        for number, content in enumerate(root.iter(f"{ATOM}content")):
            self.expect(where, content.get("type") == "html", "content is not type=html")
            self.fragment(f"{where} entry {number} content", content.text or "")
        self._unescaped(where, response.text, list(shown))
        self._count(shown)
        return root

    def json(self, where: str, response, *, status: int | tuple[int, ...] = 200, shown=()):
        self._response(where, response, status)
        content_type = response.headers.get("content-type", "")
        self.expect(
            where,
            content_type.split(";")[0].strip() == "application/json",
            f"JSON answered as {content_type!r}",
        )
        self._count(shown)
        try:
            return response.json()
        except ValueError:
            self.flag(where, "body is not JSON")
            return None

    def summary(self) -> str:
        return (
            f"XSS [{self.backend}]: {len(self.payloads)} payloads, {len(self.fields)} fields, "
            f"{self.checks:,} page checks on {self.responses:,} responses, "
            f"{self.executable} executable, {len(self.problems)} problems"
        )
