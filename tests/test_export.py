"""Export: every post of an author as Markdown with front matter, their images and
posts.json, streamed and the same bytes for the same data."""

import json
import zipfile

import pytest
import yaml
from sqlalchemy import select

from models import MediaFile
from services import export, images
from services.export import markdown_file, yaml_string
from services.import_formats import split_front_matter
from tests.support.accounts import PASSWORD, login
from tests.support.archives import members, write_sample_posts


@pytest.fixture(autouse=True)
def _clock(clock):
    return clock


def test_export_holds_every_post_with_its_images_and_data(
    client, db, make_user, api_headers, clock
):
    author = make_user("writer")
    headers = api_headers(author)
    write_sample_posts(client, headers, clock)
    client.post(
        "/api/posts", json={"title": "Not mine", "content": "x"}, headers=api_headers(make_user())
    )

    response = client.get("/api/users/me/export", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["cache-control"] == "private, no-store"
    assert "attachment" in response.headers["content-disposition"]
    files = members(response.content)
    assert list(files) == [
        "0001-cafe-culture.md",
        "media/image-0001-480x360.jpg",
        "0002-half-an-idea.md",
        "0003-next-week.md",
        "posts.json",
    ]
    fields, body = split_front_matter(files["0001-cafe-culture.md"].decode())
    assert fields["title"] == "Café culture"
    assert fields["status"] == "published"
    assert fields["tags"] == ["Travel", "Coffee"]
    assert fields["canonical_url"].startswith("http://testserver/posts/")
    assert fields["canonical_url"].endswith("/cafe-culture")
    assert "![](media/image-0001-480x360.jpg)" in body and "/media/images/" not in body
    media = db.scalars(select(MediaFile)).one()
    stored = (client.app.state.settings.media_dir / images.file_names(media)[-1]).read_bytes()
    assert files["media/image-0001-480x360.jpg"] == stored
    draft, _ = split_front_matter(files["0002-half-an-idea.md"].decode())
    assert (draft["status"], draft["published_at"], draft["canonical_url"]) == ("draft", None, None)
    scheduled, text = split_front_matter(files["0003-next-week.md"].decode())
    assert scheduled["status"] == "scheduled" and scheduled["canonical_url"] is None
    assert text == 'Coming soon: «quotes», "double", back\\slash, émoji 🎉.'
    data = json.loads(files["posts.json"])
    assert data["format"] == "inkwell-export"
    assert [post["file"] for post in data["posts"]] == [n for n in files if n.endswith(".md")]
    assert data["posts"][2]["content"] == text
    assert {k: v for k, v in data["posts"][0].items() if k not in ("file", "content")} == fields


def test_same_data_gives_the_same_bytes(client, make_user, api_headers, clock):
    headers = api_headers(make_user())
    write_sample_posts(client, headers, clock)
    first = client.get("/api/users/me/export", headers=headers).content
    clock.advance(days=3)
    assert client.get("/api/users/me/export", headers=headers).content == first
    with zipfile.ZipFile(__import__("io").BytesIO(first)) as archive:
        times = {info.filename: info.date_time for info in archive.infolist()}
    # Entry times come from the posts (the clock of the fixture starts on 2 March 2026).
    assert times["0001-cafe-culture.md"][:3] == (2026, 3, 2)


def test_export_is_written_in_pieces_reading_posts_a_batch_at_a_time(
    app, db, make_user, make_post, monkeypatch, count_statements
):
    author = make_user()
    for number in range(7):
        make_post(author, title=f"Post {number}")
    monkeypatch.setattr(export, "BATCH_SIZE", 2)
    counter = count_statements()
    pieces = list(
        export.export_archive(
            db,
            authors=[author],
            storage=app.state.media_storage,
            canonical_url=lambda post: f"https://example.org/posts/{post.id}",
        )
    )
    selects = [s for s in counter.statements if s.lstrip().upper().startswith("SELECT POSTS.")]
    # Two passes over 7 posts in batches of 2 (and the empty batch that ends each pass).
    assert len(selects) == 2 * 5
    assert all("LIMIT" in statement for statement in selects)
    assert len([piece for piece in pieces if piece]) >= 8
    assert len(members(b"".join(pieces))) == 8


def test_yaml_strings_read_back_exactly():
    for text in ["plain", 'quote " and \\ slash', "line\nbreak", "\x85\x7f\u2028\ufffe", "🎉"]:
        assert yaml.safe_load(f"value: {yaml_string(text)}")["value"] == text
    record = {"title": "A: b # c", "tags": ["x, y"], "published_at": None}
    fields, body = split_front_matter(markdown_file(record, "---\nbody"))
    assert fields == record and body == "---\nbody"


def test_export_needs_a_token(client):
    assert client.get("/api/users/me/export").status_code == 401


def test_export_page_and_download(client, make_account, api_headers, clock):
    author = make_account("pagewriter")
    write_sample_posts(client, api_headers(author), clock)
    assert client.get("/account/export", follow_redirects=False).status_code == 303
    login(client, "pagewriter", PASSWORD)
    page = client.get("/account/export")
    assert page.status_code == 200 and "/account/export/download" in page.text
    assert "/account/export" in client.get("/account").text
    download = client.get("/account/export/download")
    assert download.headers["content-type"] == "application/zip"
    assert download.headers["cache-control"] == "private, no-store"
    assert len([name for name in members(download.content) if name.endswith(".md")]) == 3


def test_site_export_has_a_folder_per_author(app, db, make_user, make_post):
    alice, bob = make_user("alice"), make_user("..")
    make_post(alice, title="By Alice")
    make_post(bob, title="By Bob")
    make_user("nobody")
    data = b"".join(
        export.export_archive(
            db,
            authors=export.all_authors(db),
            storage=app.state.media_storage,
            canonical_url=lambda post: "x",
            folder_per_author=True,
        )
    )
    assert sorted(members(data)) == [
        "_../0001-by-bob.md",
        "_../posts.json",
        "alice/0001-by-alice.md",
        "alice/posts.json",
    ]
