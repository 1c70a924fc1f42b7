"""Revision history: every save recorded, compactly; the history pages and API; restoring."""

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from bench.revisions_size import edited, long_post, measure
from models import Post, Revision, User
from schemas import PostUpdate
from services import posts, revisions
from tests.support.accounts import form_token


@pytest.fixture
def author(make_user):
    return make_user("writer")


@pytest.fixture
def headers(api_headers, author):
    return api_headers(author)


def create(client, headers, **fields):
    body = {"title": "First title", "content": "One.\n\nTwo.", "tags": ["a"]} | fields
    response = client.post("/api/posts", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def revision_numbers(db, post_id):
    db.commit()
    return db.scalars(
        select(Revision.number).where(Revision.post_id == post_id).order_by(Revision.number)
    ).all()


def test_every_save_is_a_revision_equal_to_that_version(client, headers, db):
    post = create(client, headers)
    path = f"/api/posts/{post['id']}"
    client.patch(path, json={"content": "One.\n\nTwo changed."}, headers=headers)
    client.put(path, json={"title": "Second title", "content": "Three."}, headers=headers)
    client.patch(path, json={"status": "draft"}, headers=headers)
    client.patch(path, json={"tags": ["b", "c"]}, headers=headers)
    final = client.patch(path, json={"status": "published"}, headers=headers).json()
    assert final["version"] == 6
    assert revision_numbers(db, post["id"]) == [1, 2, 3, 4, 5, 6]
    listed = client.get(f"{path}/revisions", headers=headers).json()
    assert [entry["number"] for entry in listed] == [6, 5, 4, 3, 2, 1]
    assert [entry["status"] for entry in listed] == [
        "published",
        "draft",
        "draft",
        "published",
        "published",
        "published",
    ]
    assert listed[-1]["saved_by"]["username"] == "writer"
    assert (listed[-1]["words_added"], listed[-1]["words_removed"]) == (2, 0)
    assert (listed[-2]["words_added"], listed[-2]["words_removed"]) == (2, 1)
    first = client.get(f"{path}/revisions/1", headers=headers).json()
    assert (first["title"], first["content"], first["tags"]) == (
        "First title",
        "One.\n\nTwo.",
        ["a"],
    )
    second = client.get(f"{path}/revisions/2", headers=headers).json()
    assert second["content"] == "One.\n\nTwo changed."
    latest = client.get(f"{path}/revisions/6", headers=headers).json()
    current = client.get(path, headers=headers).json()
    for field in ("title", "content", "tags", "status", "published_at"):
        assert latest[field] == current[field], field


def test_revision_times_come_from_the_clock(client, headers, clock):
    post = create(client, headers)
    clock.advance(hours=5)
    client.patch(f"/api/posts/{post['id']}", json={"title": "Later"}, headers=headers)
    listed = client.get(f"/api/posts/{post['id']}/revisions", headers=headers).json()
    saved = [datetime.fromisoformat(entry["saved_at"]) for entry in listed]
    assert saved == [clock.moment, clock.moment - timedelta(hours=5)]


def test_a_refused_edit_records_no_revision(client, headers, db):
    post = create(client, headers)
    stale = client.patch(
        f"/api/posts/{post['id']}", json={"title": "Stale", "version": 7}, headers=headers
    )
    assert stale.status_code == 409
    assert revision_numbers(db, post["id"]) == [1]


def test_post_written_without_history_gets_it_at_its_first_edit(make_post, author, db):
    post = make_post(author, title="Old", content="Written before history.")
    posts.update_post(db, post=post, data=PostUpdate(content="Edited."))
    assert revision_numbers(db, post.id) == [1, 2]
    assert revisions.get_revision(db, post=post, number=1).content == "Written before history."
    assert revisions.get_revision(db, post=post, number=2).content == "Edited."


def test_long_chains_rebuild_every_revision_exactly(make_post, author, db):
    """Across snapshots and deltas, revision n is what the post held at version n."""
    text = long_post(words=600)
    count = text.count("This is sentence")
    post = make_post(author, content=text)
    posts.update_post(db, post=post, data=PostUpdate(title=post.title))  # history starts
    saved = {1: text, 2: text}
    for number in range(3, revisions.SNAPSHOT_EVERY * 2 + 5):
        text = edited(text, number, count)
        if number % 7 == 0:
            text = f"A new opening {number}.\n\n" + text
        posts.update_post(db, post=post, data=PostUpdate(content=text))
        saved[number] = text
    for number, expected in saved.items():
        assert revisions.get_revision(db, post=post, number=number).content == expected
    encodings = db.scalars(select(Revision.encoding).where(Revision.post_id == post.id)).all()
    assert encodings.count("zlib") == 3 and encodings.count("delta") == len(saved) - 3


STORAGE_EDITS = 200


def test_storage_for_small_edits_of_a_long_post_is_bounded(db):
    """200 one-sentence edits of a 5,000-word post (about 32 kB): the revisions' text takes
    under 100 kB where a compressed copy per edit would take 1.7 MB, and the whole database
    grows by less than 1 MiB (search index included). bench/revisions_size.py runs 1,000."""
    result = measure(db, edits=STORAGE_EDITS, words=5000)
    assert result.revision_bytes < 100_000, result
    assert result.zlib_copy_per_edit_bytes > 10 * result.revision_bytes
    if result.table_bytes is not None:  # PostgreSQL: the table as stored, pages and all
        assert result.table_bytes < 400_000, result
    else:
        assert result.database_growth < 1024 * 1024, result
    (post,) = db.scalars(select(Post)).all()
    rebuilt = revisions.get_revision(db, post=post, number=STORAGE_EDITS + 1)
    assert rebuilt.content == post.content


def test_restore_makes_a_new_revision_equal_to_the_old_one(client, headers, db):
    post = create(client, headers, status="published")
    path = f"/api/posts/{post['id']}"
    client.put(
        path, json={"title": "New title", "content": "All new.", "tags": []}, headers=headers
    )
    restored = client.post(f"{path}/revisions/1/restore", headers=headers)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["title"], body["content"], body["tags"], body["version"]) == (
        "First title",
        "One.\n\nTwo.",
        ["a"],
        3,
    )
    assert restored.headers["etag"]
    assert revision_numbers(db, post["id"]) == [1, 2, 3]
    second = client.get(f"{path}/revisions/2", headers=headers).json()
    assert second["content"] == "All new."  # history is not rewritten


def test_restore_respects_if_match(client, headers, db):
    post = create(client, headers)
    path = f"/api/posts/{post['id']}"
    etag = client.get(path, headers=headers).headers["etag"]
    client.patch(path, json={"title": "Moved on"}, headers=headers)
    stale = client.post(f"{path}/revisions/1/restore", headers={**headers, "If-Match": etag})
    assert stale.status_code == 412
    db.commit()
    assert db.scalar(select(Post.title)) == "Moved on"
    fresh = client.get(path, headers=headers).headers["etag"]
    ok = client.post(f"{path}/revisions/1/restore", headers={**headers, "If-Match": fresh})
    assert ok.status_code == 200


def test_restoring_keeps_the_publication_state(client, headers):
    post = create(client, headers, status="draft")
    path = f"/api/posts/{post['id']}"
    client.patch(path, json={"status": "published", "content": "Live."}, headers=headers)
    restored = client.post(f"{path}/revisions/1/restore", headers=headers).json()
    assert (restored["status"], restored["content"]) == ("published", "One.\n\nTwo.")


def test_unknown_revision_is_404(client, headers):
    post = create(client, headers)
    for path in ("revisions/2", "revisions/99"):
        assert client.get(f"/api/posts/{post['id']}/{path}", headers=headers).status_code == 404
    response = client.post(f"/api/posts/{post['id']}/revisions/5/restore", headers=headers)
    assert response.status_code == 404


def test_history_is_the_authors_alone(client, headers, make_user, api_headers):
    post = create(client, headers)
    other = api_headers(make_user("other"))
    for path in ("revisions", "revisions/1"):
        assert client.get(f"/api/posts/{post['id']}/{path}", headers=other).status_code == 404
        assert client.get(f"/api/posts/{post['id']}/{path}").status_code == 401


def test_deleting_a_post_or_its_author_deletes_the_revisions(client, headers, db, author):
    kept = create(client, headers)
    gone = create(client, headers)
    client.patch(f"/api/posts/{gone['id']}", json={"title": "Edited"}, headers=headers)
    assert client.delete(f"/api/posts/{gone['id']}", headers=headers).status_code == 204
    assert revision_numbers(db, gone["id"]) == []
    assert revision_numbers(db, kept["id"]) == [1]
    db.delete(db.get(User, author.id))
    db.commit()
    assert db.scalar(select(func.count()).select_from(Revision)) == 0


# ---------------------------------------------------------------- pages


def test_history_page_lists_revisions_and_links_to_diffs(client, headers, author, browser_session):
    post = create(client, headers)
    client.patch(f"/api/posts/{post['id']}", json={"content": "One.\n\nTwo more."}, headers=headers)
    browser_session(client, author)
    page = client.get(f"/posts/{post['id']}/history")
    assert page.status_code == 200
    assert "private" in page.headers["cache-control"]
    rows = re.findall(r'<th scope="row">(\d+)', page.text)
    assert rows == ["2", "1"]
    assert f"/posts/{post['id']}/history/diff?from=1&amp;to=2" in page.text
    assert f'/posts/{post["id"]}/history/diff">' in page.text
    for link_page in (f"/posts/{post['id']}/edit", f"/posts/{post['id']}/{post['slug']}"):
        assert f"/posts/{post['id']}/history" in client.get(link_page).text


def test_history_pages_are_404_for_anyone_but_the_author(
    client, headers, make_user, browser_session
):
    post = create(client, headers, status="draft")
    published = create(client, headers)
    browser_session(client, make_user("other"))
    for post_id in (post["id"], published["id"]):
        for path in ("history", "history/diff?from=1&to=1", "history/1/restore"):
            assert client.get(f"/posts/{post_id}/{path}").status_code == 404, path


def test_diff_marks_words_added_and_removed(client, headers, author, browser_session):
    post = create(client, headers, content="The quick brown fox jumps.\n\nSecond paragraph.")
    client.patch(
        f"/api/posts/{post['id']}",
        json={"content": "The slow brown fox jumps.\n\nSecond paragraph."},
        headers=headers,
    )
    browser_session(client, author)
    page = client.get(f"/posts/{post['id']}/history/diff?from=1&to=2")
    assert page.status_code == 200
    assert '<del><span class="visually-hidden">[removed: </span>quick' in page.text
    assert '<ins><span class="visually-hidden">[added: </span>slow' in page.text
    assert "Second paragraph." in page.text
    # Without a choice, the latest revision against the one before.
    assert client.get(f"/posts/{post['id']}/history/diff").text.count("<ins>") == 1
    assert client.get(f"/posts/{post['id']}/history/diff?from=1&to=9").status_code == 404
    assert client.get(f"/posts/{post['id']}/history/diff?from=0&to=1").status_code == 400


def test_restore_through_the_form_asks_first_then_saves_a_new_revision(
    client, headers, author, browser_session, db
):
    post = create(client, headers)
    client.patch(f"/api/posts/{post['id']}", json={"title": "Changed"}, headers=headers)
    browser_session(client, author)
    confirm = client.get(f"/posts/{post['id']}/history/1/restore")
    assert confirm.status_code == 200
    assert "Restore revision 1?" in confirm.text
    version = re.search(r'name="version" value="(\d+)"', confirm.text).group(1)
    data = {"version": version, "csrf_token": form_token(client, "/")}
    done = client.post(f"/posts/{post['id']}/history/1/restore", data=data, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].endswith(f"/posts/{post['id']}/history")
    db.commit()
    assert db.scalar(select(Post.title)) == "First title"
    assert revision_numbers(db, post["id"]) == [1, 2, 3]
    # The same confirmation sent again is stale: nothing more is saved.
    again = client.post(f"/posts/{post['id']}/history/1/restore", data=data, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].endswith("/history/1/restore")
    assert revision_numbers(db, post["id"]) == [1, 2, 3]


def test_restore_form_needs_the_csrf_token(client, headers, author, browser_session, db):
    post = create(client, headers)
    client.patch(f"/api/posts/{post['id']}", json={"title": "Changed"}, headers=headers)
    browser_session(client, author)
    response = client.post(f"/posts/{post['id']}/history/1/restore", data={"version": "2"})
    assert response.status_code == 403
    assert revision_numbers(db, post["id"]) == [1, 2]


def test_history_page_statement_count_does_not_grow_with_revisions(
    client, headers, author, browser_session, count_statements
):
    post = create(client, headers)
    browser_session(client, author)
    counts = []
    for edits in (0, 24):
        for number in range(edits):
            client.patch(
                f"/api/posts/{post['id']}", json={"title": f"Edit {number}"}, headers=headers
            )
        counter = count_statements()
        page = client.get(f"/posts/{post['id']}/history")
        assert page.text.count('<th scope="row">') == edits + 1
        counts.append(counter.count)
    assert counts[0] == counts[1]


def test_history_is_paginated(client, headers, author, browser_session):
    post = create(client, headers)
    for number in range(30):
        client.patch(f"/api/posts/{post['id']}", json={"title": f"T{number}"}, headers=headers)
    browser_session(client, author)
    first = client.get(f"/posts/{post['id']}/history")
    assert first.text.count('<th scope="row">') == 25
    assert 'rel="next"' in first.text
    second = client.get(f"/posts/{post['id']}/history?page=2")
    assert re.findall(r'<th scope="row">(\d+)', second.text) == [str(n) for n in range(6, 0, -1)]
    assert client.get(f"/posts/{post['id']}/history?page=3").status_code == 404
    api = client.get(f"/api/posts/{post['id']}/revisions?per_page=10&page=2", headers=headers)
    assert [entry["number"] for entry in api.json()] == list(range(21, 11, -1))
    assert 'rel="next"' in api.headers["link"] and 'rel="prev"' in api.headers["link"]


def test_word_diff_marks_changes_in_place():
    parts = revisions.diff_words("A <b>bold</b> claim.\n\nKept.", "A <i>bold</i> claim.\n\nKept.")
    assert [(part.kind, part.text) for part in parts] == [
        ("equal", "A "),
        ("delete", "<b>bold</b>"),
        ("insert", "<i>bold</i>"),
        ("equal", " claim.\n\nKept."),
    ]


def test_comparing_two_long_unrelated_texts_stays_bounded():
    """Beyond WORD_DIFF_LIMIT words a changed stretch is shown whole, not word by word."""
    old = " ".join(f"w{n}" for n in range(revisions.WORD_DIFF_LIMIT * 2))
    new = " ".join(f"v{n}" for n in range(revisions.WORD_DIFF_LIMIT * 2))
    parts = revisions.diff_words(old, new)
    assert [(part.kind, part.text) for part in parts] == [("delete", old), ("insert", new)]
    change = revisions.Change.between(old, new)
    assert (change.words_added, change.words_removed) == (len(new.split()), len(old.split()))
