"""XSS in a real browser: the corpus of tests/test_xss.py in post titles and bodies, a search
query, a log-in `next` and an error-page address, rendered by Chromium.

The payloads set `window.__xss = 1` (and the originals call alert()), so a script that ran
shows up either as a dialog or as that variable. Every element also gets synthetic
mouseover/focus/load/error/toggle events, so an injected handler attribute that waits for
the user runs too, and the browser's own URL parser is asked whether any link, image, form or
frame points at javascript:, data: or vbscript:.

Each page is checked twice: with the site's Content-Security-Policy bypassed, which tests the
escaping alone, and with it enforced, where any CSP violation report means markup got in.
Requests to other hosts are aborted, so nothing is fetched from the network.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route

from tests.support.api import create_post, create_user, get_token, unique_username
from tests.support.xss_tools import PAYLOADS, markdown_document

MARKER = "window.__xss=1"
EVENTS = ["mouseover", "mouseenter", "focus", "focusin", "load", "error", "toggle", "input"]

# Runs before any page script: records CSP violations for the enforced run.
INIT_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""

# Fire what inline handlers wait for, then list every URL the browser would act on that
# has a script-capable scheme.
PROBE_SCRIPT = """
(events) => {
  for (const element of document.querySelectorAll("*")) {
    for (const type of events) {
      try { element.dispatchEvent(new Event(type)); } catch (error) {}
    }
  }
  const dangerous = /^(javascript|data|vbscript):/i;
  const urls = [];
  const attributes = ["href", "src", "action", "formaction", "data", "poster", "srcdoc"];
  for (const element of document.querySelectorAll("*")) {
    for (const name of attributes) {
      if (!element.hasAttribute(name)) continue;
      if (name === "srcdoc") { urls.push(`${element.tagName} srcdoc`); continue; }
      let resolved;
      try { resolved = new URL(element.getAttribute(name), document.baseURI).protocol; }
      catch (error) { continue; }
      if (dangerous.test(resolved)) urls.push(`${element.tagName} ${name}=${resolved}`);
    }
  }
  const scripts = [...document.scripts]
    .filter((script) => script.type !== "application/ld+json")
    .map((script) => script.outerHTML.slice(0, 120));
  return {urls, scripts, xss: window.__xss === undefined ? null : String(window.__xss)};
}
"""


def for_browser(payload: str) -> str:
    return payload.replace("alert(1)", MARKER)


@dataclass(frozen=True)
class Planted:
    author_id: int
    post_ids: list[int]
    combined_id: int


@pytest.fixture(scope="module")
def planted(live_server: str) -> Planted:
    """A post per payload (hostile title and body) and one post holding the whole corpus."""
    account = create_user(live_server, unique_username("xss"))
    token = get_token(live_server, account.username)
    post_ids = []
    for number, payload in enumerate(PAYLOADS):
        hostile = for_browser(payload)
        title = hostile if len(hostile.strip()) <= 100 else payload
        body = markdown_document(hostile, number)
        post_ids.append(create_post(live_server, token, title, body)["id"])
    everything = "\n\n".join(
        markdown_document(variant, number)
        for number, payload in enumerate(PAYLOADS)
        for variant in dict.fromkeys([payload, for_browser(payload)])
    )
    combined = create_post(
        live_server, token, "</title><script>window.__xss=1</script>", everything
    )
    return Planted(account.id, post_ids, combined["id"])


@pytest.fixture(params=["csp-bypassed", "csp-enforced"])
def hostile_page(
    request: pytest.FixtureRequest, browser: Browser, live_server: str
) -> Iterator[tuple[Page, list[str], bool]]:
    bypass = request.param == "csp-bypassed"
    context: BrowserContext = browser.new_context(base_url=live_server, bypass_csp=bypass)

    def only_this_site(route: Route) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_this_site)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    dialogs: list[str] = []

    def dismiss(dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        yield page, dialogs, bypass
    finally:
        context.close()


def probe(page: Page, dialogs: list[str], label: str) -> list[str]:
    """Provoke every handler on the open page; return whatever looks like script running."""
    result = page.evaluate(PROBE_SCRIPT, EVENTS)
    page.wait_for_timeout(10)  # let autofocus and timers have their turn
    after = page.evaluate("() => window.__xss === undefined ? null : String(window.__xss)")
    violations = page.evaluate("() => window.__cspViolations")
    problems = [f"dialog {d}" for d in dialogs]
    problems += [f"script-capable URL {u}" for u in result["urls"]]
    problems += [f"executable script {s}" for s in result["scripts"]]
    problems += [f"window.__xss = {x}" for x in {result["xss"], after} if x is not None]
    problems += [f"CSP violation {v}" for v in violations]
    dialogs.clear()
    return [f"{label}: {problem}" for problem in problems]


def visit(page: Page, dialogs: list[str], path: str, status: int = 200) -> list[str]:
    response = page.goto(path, wait_until="load")
    got = response.status if response else None
    problems = [] if got == status else [f"{path}: status {got}, expected {status}"]
    return problems + probe(page, dialogs, path)


def test_hostile_posts_run_no_script_in_the_browser(
    hostile_page: tuple[Page, list[str], bool], planted: Planted
) -> None:
    page, dialogs, csp_bypassed = hostile_page
    problems: list[str] = []
    paths = [f"/posts/{planted.combined_id}", f"/users/{planted.author_id}/posts"]
    if csp_bypassed:
        # Each title in <title>, the heading, meta tags and JSON-LD; the escaping alone
        # stands between these and the browser, so once is enough.
        paths += [f"/posts/{post_id}" for post_id in planted.post_ids]
    for path in paths:
        problems += visit(page, dialogs, path)
    # Every page of the listing: each card shows a hostile title and excerpt.
    pages = 0
    while (response := page.goto(f"/?page={pages + 1}")) and response.status == 200:
        pages += 1
        problems += probe(page, dialogs, f"/?page={pages}")
    assert pages * 10 >= len(planted.post_ids), f"the listing ended after {pages} pages"
    for payload in PAYLOADS[:8]:
        hostile = quote(for_browser(payload), safe="")
        problems += visit(page, dialogs, f"/search?q={hostile}")
        problems += visit(page, dialogs, f"/login?next={hostile}")
        problems += visit(page, dialogs, f"/posts/{hostile}", status=404)
    assert not problems, "\n".join(problems[:40])
