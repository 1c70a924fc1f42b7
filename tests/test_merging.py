"""Edits that merge: a stale form edit and the version saved meanwhile, merged three ways
against the revision the form started from; only overlapping changes are a conflict."""

import html
import re

import pytest
from sqlalchemy import select

from models import Post
from services.merging import merge_field, merge_fields, merge_text

BASE = "First paragraph.\n\nSecond paragraph.\n\nThird paragraph."


# ---------------------------------------------------------------- the merge itself


def test_changes_to_different_paragraphs_merge():
    mine = BASE.replace("First", "My first")
    theirs = BASE.replace("Third", "Their third")
    merged = merge_text(BASE, mine, theirs)
    assert not merged.conflicted
    assert merged.text == "My first paragraph.\n\nSecond paragraph.\n\nTheir third paragraph."


def test_changes_to_the_same_paragraph_conflict_and_keep_mine():
    mine = BASE.replace("Second", "My second")
    theirs = BASE.replace("Second", "Their second")
    merged = merge_text(BASE, mine, theirs)
    assert merged.conflicted
    assert merged.text == mine


def test_the_same_change_on_both_sides_is_taken_once():
    both = BASE.replace("Second", "Same second")
    assert merge_text(BASE, both, both) == merge_text(BASE, BASE, both)
    assert merge_text(BASE, both, both).text == both


def test_line_endings_do_not_make_a_conflict():
    mine = BASE.replace("First", "Mine").replace("\n", "\r\n")
    theirs = BASE.replace("Third", "Theirs")
    merged = merge_text(BASE, mine, theirs)
    assert not merged.conflicted
    assert merged.text == "Mine paragraph.\n\nSecond paragraph.\n\nTheirs paragraph."


def test_additions_at_both_ends_merge():
    merged = merge_text(BASE, "Intro.\n\n" + BASE, BASE + "\n\nOutro.")
    assert merged == merge_text(BASE, "Intro.\n\n" + BASE, BASE + "\n\nOutro.")
    assert merged.text == "Intro.\n\n" + BASE + "\n\nOutro."


@pytest.mark.parametrize(
    ("base", "mine", "theirs", "expected"),
    [
        ("a", "a", "b", ("b", False)),  # only theirs changed
        ("a", "b", "a", ("b", False)),  # only mine changed
        ("a", "b", "b", ("b", False)),  # both alike
        ("a", "b", "c", ("b", True)),  # both, differently
    ],
)
def test_a_field_merges_as_a_whole(base, mine, theirs, expected):
    assert merge_field(base, mine, theirs) == expected


def test_fields_merge_each_on_their_own():
    base = {"title": "T", "tags": ("a",)}
    merged = merge_fields(base, {"title": "Mine", "tags": ("a",)}, {"title": "T", "tags": ("b",)})
    assert merged.values == {"title": "Mine", "tags": ("b",)} and merged.conflicts == []
    clash = merge_fields(base, {"title": "Mine", "tags": ("a",)}, {"title": "Theirs", "tags": ()})
    assert clash.conflicts == ["title"] and clash.values["tags"] == ()


# ---------------------------------------------------------------- the edit form


@pytest.fixture
def author(make_user):
    return make_user("editor")


@pytest.fixture
def post_id(client, api_headers, author):
    body = {"title": "Original", "content": BASE, "tags": ["one"]}
    return client.post("/api/posts", json=body, headers=api_headers(author)).json()["id"]


def open_form(client, post_id) -> dict[str, str]:
    """The edit form's fields as the browser would send them back unchanged."""
    page = client.get(f"/posts/{post_id}/edit").text
    value = {
        name: html.unescape(v)
        for name, v in re.findall(r'name="(\w+)"[^>]*? value="([^"]*)"', page)
    }
    content = re.search(
        r'<textarea id="field-content" name="content"[^>]*>(.*?)</textarea>', page, re.S
    )
    status = re.search(r'name="status" value="(\w+)" checked', page).group(1)
    return {
        "title": value["title"],
        "content": html.unescape(content.group(1)),
        "tags": value["tags"],
        "slug": value["slug"],
        "status": status,
        "publish_at": value.get("publish_at", ""),
        "version": value["version"],
        "csrf_token": value["csrf_token"],
    }


def save(client, post_id, form):
    return client.post(f"/posts/{post_id}/edit", data=form, follow_redirects=False)


def stored(db):
    db.commit()
    db.expire_all()
    return db.scalars(select(Post)).one()


def test_stale_edit_of_another_paragraph_is_merged_and_saved(
    client, api_headers, author, browser_session, post_id, db
):
    browser_session(client, author)
    form = open_form(client, post_id)
    theirs = {"content": BASE.replace("Third", "Their third"), "tags": ["one", "two"]}
    assert (
        client.patch(f"/api/posts/{post_id}", json=theirs, headers=api_headers(author)).status_code
        == 200
    )
    form |= {"content": BASE.replace("First", "My first"), "title": "My title"}
    response = save(client, post_id, form)
    assert response.status_code == 303
    post = stored(db)
    assert post.content == "My first paragraph.\n\nSecond paragraph.\n\nTheir third paragraph."
    assert post.title == "My title"
    assert [tag.name for tag in post.tags] == ["one", "two"]
    assert post.version == 3
    page = client.get(response.headers["location"], follow_redirects=True).text
    assert "both have been kept" in page


def test_stale_edit_of_the_same_paragraph_is_a_conflict_with_both_texts(
    client, api_headers, author, browser_session, post_id, db
):
    browser_session(client, author)
    form = open_form(client, post_id)
    theirs = BASE.replace("Second", "Their second")
    client.patch(f"/api/posts/{post_id}", json={"content": theirs}, headers=api_headers(author))
    mine = BASE.replace("Second", "My second")
    response = save(client, post_id, form | {"content": mine})
    assert response.status_code == 409
    assert "changed elsewhere" in response.text
    assert html.escape(mine) in response.text  # my text, in the textarea
    assert "Their second paragraph." in response.text  # the saved version, beside it
    assert stored(db).content == theirs
    # The form now carries the saved version: saving again is deliberate, and goes through.
    again = open_form(client, post_id) | {"content": mine}
    again["version"] = re.search(r'name="version" value="(\d+)"', response.text).group(1)
    assert save(client, post_id, again).status_code == 303
    assert stored(db).content == mine


def test_both_changing_the_title_differently_is_a_conflict(
    client, api_headers, author, browser_session, post_id, db
):
    browser_session(client, author)
    form = open_form(client, post_id)
    client.patch(f"/api/posts/{post_id}", json={"title": "Theirs"}, headers=api_headers(author))
    response = save(client, post_id, form | {"title": "Mine", "content": BASE + "\n\nMore."})
    assert response.status_code == 409
    assert 'value="Mine"' in response.text
    post = stored(db)
    assert (post.title, post.content) == ("Theirs", BASE)


def test_an_unchanged_stale_form_keeps_the_newer_version(
    client, api_headers, author, browser_session, post_id, db
):
    """Saving a form nobody changed after another save must not undo that save."""
    browser_session(client, author)
    form = open_form(client, post_id)
    theirs = {"title": "Theirs", "content": BASE + "\n\nAdded.", "tags": [], "status": "draft"}
    client.patch(f"/api/posts/{post_id}", json=theirs, headers=api_headers(author))
    assert save(client, post_id, form).status_code == 303
    post = stored(db)
    assert (post.title, post.content, post.tags, post.status) == (
        "Theirs",
        BASE + "\n\nAdded.",
        [],
        "draft",
    )


def test_the_api_still_refuses_stale_edits(client, api_headers, author, post_id, db):
    headers = api_headers(author)
    client.patch(f"/api/posts/{post_id}", json={"content": BASE + "\n\nOne."}, headers=headers)
    stale = {"content": "Other.\n\n" + BASE, "version": 1}
    assert client.patch(f"/api/posts/{post_id}", json=stale, headers=headers).status_code == 409
    assert stored(db).content == BASE + "\n\nOne."
