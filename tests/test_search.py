"""Full-text search: the same behaviour on SQLite (FTS5) and PostgreSQL (tsvector)."""

import pytest

from services import search
from services.search import highlight, search_terms


@pytest.fixture
def corpus(make_user, make_post):
    author = make_user("searcher")
    return {
        "bread": make_post(
            author,
            title="Sourdough bread at home",
            content="Feeding the starter every morning makes better loaves.",
        ),
        "bikes": make_post(
            author,
            title="Bicycle maintenance",
            content="Chains need oil; bread crumbs do not belong in them.",
        ),
        "chess": make_post(
            author, title="Opening ideas", content="The Sicilian defence rewards patience."
        ),
    }


def ids(response) -> list[int]:
    return [post["id"] for post in response.json()]


def test_api_search_is_ranked_title_first(client, corpus):
    response = client.get("/api/posts?q=bread")
    assert response.status_code == 200
    assert ids(response) == [corpus["bread"].id, corpus["bikes"].id]


def test_search_stems_words(client, corpus):
    assert ids(client.get("/api/posts?q=feeds+starters")) == [corpus["bread"].id]
    assert ids(client.get("/api/posts?q=chain")) == [corpus["bikes"].id]


def test_every_word_is_required(client, corpus):
    assert ids(client.get("/api/posts?q=bread+sicilian")) == []


def test_search_follows_edits_and_deletes(client, corpus, db, api_headers):
    post = corpus["chess"]
    headers = api_headers(post.author)
    client.patch(f"/api/posts/{post.id}", json={"title": "Endgame bread"}, headers=headers)
    assert post.id in ids(client.get("/api/posts?q=endgame"))
    assert ids(client.get("/api/posts?q=opening")) == []
    client.delete(f"/api/posts/{post.id}", headers=headers)
    assert ids(client.get("/api/posts?q=endgame")) == []


def test_search_page_highlights_matches_and_escapes_text(client, make_post):
    make_post(title="Bread <script>alert(1)</script>", content="Some <b>bread</b> talk.")
    response = client.get("/search?q=bread")
    assert response.status_code == 200
    assert "<mark>Bread</mark>" in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "<b>" not in response.text.split("<main", 1)[1]


def test_search_page_paginates(client, settings, make_user, make_post):
    author = make_user()
    for n in range(settings.page_size + 3):
        make_post(author, title=f"Kettle story {n}", content="About a kettle.")
    first = client.get("/search?q=kettle")
    assert first.text.count('class="post-card"') == settings.page_size
    assert 'href="http://testserver/search?q=kettle&amp;page=2"' in first.text
    second = client.get("/search?q=kettle&page=2")
    assert second.text.count('class="post-card"') == 3


@pytest.mark.parametrize("matches", [4, 5])
def test_only_the_newest_matches_are_ranked(client, monkeypatch, make_user, make_post, matches):
    monkeypatch.setattr(search, "CANDIDATES", 4)
    author = make_user()
    # The oldest post is the best match (the word is in its title), the rest mention it.
    posts = [make_post(author, title="Kettle care", content="Descale the kettle.")]
    posts += [
        make_post(author, title=f"Tea notes {n}", content="The kettle sang.")
        for n in range(matches - 1)
    ]
    found = ids(client.get("/api/posts?q=kettle&per_page=10"))
    page = client.get("/search?q=kettle")
    if matches == 4:
        assert found[0] == posts[0].id
        assert sorted(found) == [post.id for post in posts]
        assert "search-narrowed" not in page.text
    else:
        assert sorted(found) == [post.id for post in posts[1:]]
        assert "search-narrowed" in page.text
        assert "only the 4 newest are ranked" in page.text
    # A page past the ranked matches still says why it is empty; the API's is simply empty.
    past = client.get("/search?q=kettle&page=3")
    assert past.status_code == 200
    assert ("search-narrowed" in past.text) == (matches == 5)
    assert ("No posts match" in past.text) == (matches == 4)
    assert ids(client.get("/api/posts?q=kettle&per_page=2&page=3")) == []


def test_empty_query_shows_only_the_form(client, corpus):
    response = client.get("/search")
    assert response.status_code == 200
    assert 'class="post-card"' not in response.text
    assert ids(client.get("/api/posts?q=")) == []


HOSTILE = [
    '"',
    "'",
    '"unbalanced',
    "a AND OR NOT",
    "NEAR(a b)",
    "title:bread",
    "*",
    "bread*",
    "-bread",
    "^bread",
    "(bread",
    "bread)",
    "{bread}",
    "a:b:c",
    "\x00bread",
    "bread\x00",
    "&|!<->",
    "'; DROP TABLE posts; --",
    "\\",
    "%",
    "_",
    "ünïcödé",
    "🍞",
    "x" * 5000,
    " ".join(["bread"] * 500),
    "\u202e\u200b",
    "<mark>",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_any_query_is_safe(client, corpus, query):
    api = client.get("/api/posts", params={"q": query})
    assert api.status_code == 200
    assert isinstance(api.json(), list)
    page = client.get("/search", params={"q": query})
    assert page.status_code == 200


def test_nul_byte_query_still_finds_words(client, corpus):
    assert ids(client.get("/api/posts", params={"q": "\x00bread"}))[0] == corpus["bread"].id


def test_search_statement_count_is_constant(client, make_user, make_post, count_statements):
    counts = []
    for total in (1, 10):
        while len(client.get("/api/posts?q=teapot&per_page=100").json()) < total:
            make_post(make_user(), title="Teapot", content="A teapot post.")
        counter = count_statements()
        assert len(client.get("/api/posts?q=teapot&per_page=50").json()) == total
        counts.append(counter.count)
    assert counts[0] == counts[1] <= 4  # content version (page cache), matches, posts, tags


def test_search_terms_are_words_only():
    assert search_terms('Bread "AND" (crumbs)* NEAR/2') == ["bread", "and", "crumbs", "near", "2"]
    assert len(search_terms(" ".join(f"w{n}" for n in range(100)))) == 12


def test_highlight_escapes_before_marking():
    assert str(highlight("\ue000<b>\ue001 & more")) == "<mark>&lt;b&gt;</mark> &amp; more"
