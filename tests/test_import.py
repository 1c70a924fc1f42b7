"""Import: an export comes back byte for byte; Markdown folders and WordPress exports come
in; bad input is reported or refused, and never half written."""

import io
import itertools
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models import MediaBlob, MediaFile, Post, Revision, Tag
from services import importing, media
from services.import_formats import Limits, ZipSource, html_to_markdown
from tests.support.accounts import PASSWORD, form_token, login
from tests.support.archives import members, without_ids, write_sample_posts, zip_of
from tests.support.images import png_bytes, varied_png
from web import portability

HUGO_POST = """---
title: "From Hugo"
date: 2024-05-01T10:00:00Z
lastmod: 2024-05-02T11:00:00Z
tags: [go, static]
categories: [Writing]
---
Hello from **Hugo**. ![A picture](images/photo.png)
"""
JEKYLL_DRAFT = """---
title: Jekyll draft
published: false
---
Not yet.
"""
TOML_POST = """+++
title = "In TOML"
date = 2023-01-02T03:04:05Z
draft = true
+++
TOML body.
"""

# Nine levels of nine aliases: 387 million items once written out as text.
YAML_BOMB = (
    "---\na0: &a0 [x]\n"
    + "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 10))
    + "title: *a9\n---\nbody"
)

WXR = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
  xmlns:wp="http://wordpress.org/export/1.2/">
<channel><title>My WordPress</title>
<item><title>Hello world</title>
  <content:encoded><![CDATA[<p>First <strong>bold</strong> and
<a href="https://example.org/x">a link</a>.</p>
<ul><li>one</li><li>two</li></ul>
<blockquote>Quoted</blockquote>
Second paragraph
with a line break.<script>alert(1)</script>]]></content:encoded>
  <wp:post_date_gmt>2021-02-03 04:05:06</wp:post_date_gmt>
  <wp:post_modified_gmt>2021-02-04 04:05:06</wp:post_modified_gmt>
  <wp:post_name>hello-world</wp:post_name><wp:status>publish</wp:status>
  <wp:post_type>post</wp:post_type>
  <category domain="category" nicename="news"><![CDATA[News]]></category>
  <category domain="post_tag" nicename="intro"><![CDATA[Intro]]></category>
</item>
<item><title>Unfinished</title><content:encoded><![CDATA[draft text]]></content:encoded>
  <wp:post_date_gmt>0000-00-00 00:00:00</wp:post_date_gmt><wp:status>draft</wp:status>
  <wp:post_type>post</wp:post_type></item>
<item><title>Later</title><content:encoded><![CDATA[future text]]></content:encoded>
  <wp:post_date_gmt>2030-01-01 00:00:00</wp:post_date_gmt><wp:status>future</wp:status>
  <wp:post_type>post</wp:post_type></item>
<item><title>About</title><wp:post_type>page</wp:post_type></item>
</channel></rss>
"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss><channel><item><title>&lol3;</title></item></channel></rss>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss><channel><item><title>&secret;</title></item></channel></rss>
"""


@pytest.fixture(autouse=True)
def _clock(clock):
    return clock


def upload(client, headers, data: bytes, name: str = "export.zip"):
    files = {"file": (name, data, "application/zip")}
    return client.post("/api/users/me/import", files=files, headers=headers)


def counts(db) -> tuple[int, int, int]:
    db.commit()
    return (
        db.scalar(select(func.count(Post.id))),
        db.scalar(select(func.count(MediaFile.id))),
        db.scalar(select(func.count(Revision.id))),
    )


def stored_files(settings) -> list[Path]:
    folder = settings.media_dir / "images"
    return sorted(folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- the round trip


@pytest.mark.parametrize("settings", ["local", "database"], indirect=True)
def test_an_export_imported_exports_the_same_bytes(client, db, make_user, api_headers, clock):
    headers = api_headers(make_user("original"))
    write_sample_posts(client, headers, clock)
    first = client.get("/api/users/me/export", headers=headers).content
    clock.advance(days=1)

    fresh = api_headers(make_user("fresh"))
    response = upload(client, fresh, first)

    assert response.status_code == 200, response.text
    report = response.json()
    assert [item["slug"] for item in report["imported"]] == [
        "cafe-culture",
        "half-an-idea",
        "next-week",
    ]
    assert [item["status"] for item in report["imported"]] == ["published", "draft", "scheduled"]
    assert report["skipped"] == []
    second = client.get("/api/users/me/export", headers=fresh).content
    assert second != first  # the canonical URLs name the new posts' ids
    assert without_ids(second) == without_ids(first)
    imported = db.scalars(select(Post).where(Post.slug == "cafe-culture").order_by(Post.id)).all()
    assert imported[0].date_posted == imported[1].date_posted
    assert imported[0].updated_at == imported[1].updated_at
    assert [tag.name for tag in imported[1].tags] == ["Travel", "Coffee"]
    assert "/media/images/" in imported[1].content_html  # shown from this site's storage
    shown = client.get(f"/posts/{imported[1].id}/cafe-culture")
    assert 'srcset="' in shown.text


def test_an_export_imported_again_skips_every_post_and_writes_nothing(
    client, db, make_user, api_headers, clock
):
    headers = api_headers(make_user())
    write_sample_posts(client, headers, clock)
    archive = client.get("/api/users/me/export", headers=headers).content
    before = counts(db)

    report = upload(client, headers, archive).json()

    assert report["imported"] == []
    assert {item["name"]: item["reason"] for item in report["skipped"]} == {
        "0001-cafe-culture.md": "You already have a post with the slug 'cafe-culture'",
        "0002-half-an-idea.md": "You already have a post with the slug 'half-an-idea'",
        "0003-next-week.md": "You already have a post with the slug 'next-week'",
    }
    assert counts(db) == before


def test_the_command_line_imports_and_exports_the_same(
    tmp_path, client, make_user, api_headers, clock, inkwell
):
    headers = api_headers(make_user("source"))
    write_sample_posts(client, headers, clock)
    archive = tmp_path / "export.zip"
    archive.write_bytes(client.get("/api/users/me/export", headers=headers).content)
    make_user("copy")

    result = inkwell("import", str(archive), "--user", "COPY")

    assert result.exit_code == 0, result.output
    assert "3 imported, 1 skipped." not in result.output
    assert result.output.endswith("3 imported, 0 skipped.\n")
    again = inkwell("export", "--user", "copy", "--output", str(tmp_path / "copy.zip"))
    assert again.exit_code == 0, again.output
    copy = (tmp_path / "copy.zip").read_bytes()
    # Canonical URLs come from PUBLIC_URL (the fixture gives the test client's address).
    assert without_ids(copy) == without_ids(archive.read_bytes())
    site = inkwell("export", "--all", "--output", str(tmp_path / "site.zip"))
    assert site.exit_code == 0, site.output
    assert {name.split("/")[0] for name in members((tmp_path / "site.zip").read_bytes())} == {
        "source",
        "copy",
    }


def test_the_command_line_imports_a_directory(tmp_path, db, make_user, inkwell):
    make_user("dirwriter")
    (tmp_path / "site" / "posts").mkdir(parents=True)
    (tmp_path / "site" / "posts" / "2024-01-02-hello.md").write_text("---\ntitle: Hello\n---\nHi")
    (tmp_path / "site" / "posts" / "photo.png").write_bytes(png_bytes((30, 20)))
    (tmp_path / "site" / "posts" / "with-image.md").write_text(
        "---\ntitle: Img\n---\n![](photo.png)"
    )
    (tmp_path / "site" / "link.md").symlink_to("/etc/passwd")
    result = inkwell("import", str(tmp_path / "site"), "--user", "dirwriter")
    assert result.exit_code == 0, result.output
    assert "skipped: link.md: It is a link; links are not followed" in result.output
    assert "2 imported, 1 skipped." in result.output
    assert counts(db)[:2] == (2, 1)


SECOND_DATABASES = itertools.count(1)


@pytest.fixture
def second_app(backend, request, tmp_path, settings):
    """Another app on a database of its own, migrated and empty, with its own media."""
    import shutil

    from config import Settings
    from main import create_app
    from tests.conftest import migrate_to_head

    if backend == "sqlite":
        target = tmp_path / "second.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("postgres").create_database(
            f"inkwell_second_{id(target := tmp_path)}"[:60]
        )
        migrate_to_head(url)
    second = create_app(
        Settings(
            database_url=url,
            media_dir=tmp_path / "second-media",
            debug=True,
            media_storage=settings.media_storage,
            outbox_dir=tmp_path / "outbox",
            mail_poll_seconds=0,
        )
    )
    yield second
    second.state.database.dispose()


@pytest.mark.parametrize("settings", ["local", "database"], indirect=True)
def test_an_export_imported_into_a_fresh_database_is_the_same_bytes(
    client, make_user, api_headers, clock, second_app
):
    from fastapi.testclient import TestClient

    from services.sessions import create_session

    headers = api_headers(make_user("original"))
    write_sample_posts(client, headers, clock)
    first = client.get("/api/users/me/export", headers=headers).content
    clock.advance(days=1)
    with TestClient(second_app) as other:
        with second_app.state.database.session(write=True) as db:
            from models import User

            user = User(username="elsewhere", email="elsewhere@example.com")
            db.add(user)
            db.commit()
            token = create_session(db, user=user, kind="api")
        fresh = {"Authorization": f"Bearer {token}"}
        assert upload(other, fresh, first).status_code == 200
        second = other.get("/api/users/me/export", headers=fresh).content
    assert second == first


# ---------------------------------------------------------------- other sources


def test_markdown_folder_zip_hugo_and_jekyll(client, db, make_user, api_headers):
    archive = zip_of(
        {
            "content/posts/from-hugo.md": HUGO_POST,
            "content/posts/images/photo.png": png_bytes((40, 30)),
            "_posts/2022-03-04-jekyll-draft.md": JEKYLL_DRAFT,
            "toml.md": TOML_POST,
            "notes.txt": "not a post",
            "unused.png": png_bytes(),
        }
    )
    report = upload(client, api_headers(make_user()), archive).json()

    assert [(i["slug"], i["status"]) for i in report["imported"]] == [
        ("from-hugo", "published"),
        ("jekyll-draft", "draft"),
        ("toml", "draft"),
    ]
    assert {i["name"]: i["reason"] for i in report["skipped"]} == {
        "notes.txt": importing.NOT_A_POST,
        "unused.png": importing.NOT_SHOWN,
    }
    hugo = db.get(Post, report["imported"][0]["id"])
    assert hugo.published_at.isoformat() == "2024-05-01T10:00:00+00:00"
    assert hugo.updated_at.isoformat() == "2024-05-02T11:00:00+00:00"
    assert [tag.name for tag in hugo.tags] == ["go", "static", "Writing"]
    assert "![A picture](/media/images/" in hugo.content
    assert db.scalar(select(func.count(MediaFile.id))) == 1


def test_wordpress_export(client, db, make_user, api_headers, clock):
    report = upload(client, api_headers(make_user()), WXR.encode(), "wordpress.xml").json()

    assert [(i["title"], i["status"]) for i in report["imported"]] == [
        ("Hello world", "published"),
        ("Unfinished", "draft"),
        ("Later", "scheduled"),
    ]
    assert report["skipped"] == [{"name": "export.xml#4", "reason": "A WordPress page, not a post"}]
    post = db.get(Post, report["imported"][0]["id"])
    assert post.slug == "hello-world"
    assert post.published_at.isoformat() == "2021-02-03T04:05:06+00:00"
    assert [tag.name for tag in post.tags] == ["News", "Intro"]
    assert post.content == (
        "First **bold** and [a link](https://example.org/x).\n\n- one\n- two\n\n> Quoted\n\n"
        "Second paragraph\\\nwith a line break."
    )
    assert "<strong>bold</strong>" in post.content_html and "alert" not in post.content_html


def test_wordpress_inside_a_zip(client, make_user, api_headers):
    report = upload(client, api_headers(make_user()), zip_of({"site.xml": WXR})).json()
    assert len(report["imported"]) == 3


def test_html_conversion_escapes_markdown_and_drops_unsafe_links():
    assert html_to_markdown("<p>2 * 3 = 6_</p>") == "2 \\* 3 = 6\\_"
    assert html_to_markdown('<a href="javascript:alert(1)">x</a>') == "x"
    assert (
        html_to_markdown('<img src="https://e.org/a b.png" alt="A">')
        == "![A](<https://e.org/a b.png>)"
    )
    assert html_to_markdown("<h2>Title</h2><pre><code>a *b*</code></pre>") == (
        "## Title\n\n```\na *b*\n```"
    )


# ---------------------------------------------------------------- refused input


@pytest.mark.parametrize(
    ("document", "word"), [(BILLION_LAUGHS, "entities"), (EXTERNAL_ENTITY, "entities")]
)
def test_xml_entities_are_refused(client, db, make_user, api_headers, document, word):
    response = upload(client, api_headers(make_user()), document.encode(), "evil.xml")
    assert response.status_code == 422
    assert word in response.json()["detail"]
    assert counts(db) == (0, 0, 0)


def test_garbage_is_refused(client, db, make_user, api_headers):
    headers = api_headers(make_user())
    response = upload(client, headers, b"\x00\x01 this is not an archive" * 100)
    assert response.status_code == 422
    assert "neither a zip archive nor a WordPress export" in response.json()["detail"]
    truncated = zip_of({"a.md": "---\ntitle: A\n---\nA"})[:40]
    assert upload(client, headers, truncated).status_code == 422
    assert counts(db) == (0, 0, 0)


def test_zip_bomb_is_refused_while_reading(client, db, make_user, api_headers):
    # 900 KB of spaces (within the size allowed for one post) deflate to about 1 KB.
    bomb = zip_of({"post.md": "---\ntitle: A\n---\n" + " " * (900 * 1024)})
    assert len(bomb) < 5_000
    response = upload(client, api_headers(make_user()), bomb)
    assert response.status_code == 413
    assert "zip bomb" in response.json()["detail"]
    assert counts(db) == (0, 0, 0)


def test_headers_that_lie_about_sizes_are_not_believed(tmp_path):
    data = bytearray(zip_of({"post.md": "x" * 200_000}))
    # Claim a small uncompressed size in both headers: the bytes inflated are counted anyway.
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(header)
        data[start + offset : start + offset + 4] = (10).to_bytes(4, "little")
    source = ZipSource(io.BytesIO(bytes(data)), Limits(max_ratio=10**6))
    with pytest.raises(Exception) as refused:
        source.read("post.md", 1000)
    assert "damaged" in str(refused.value) or "larger" in str(refused.value)


def test_too_many_members_and_too_much_in_total(client, db, make_user, api_headers, monkeypatch):
    headers = api_headers(make_user())
    monkeypatch.setattr(portability, "IMPORT_LIMITS", Limits(max_members=3, max_total_bytes=5000))
    many = zip_of({f"{n}.md": f"---\ntitle: T{n}\n---\nx" for n in range(4)})
    response = upload(client, headers, many)
    assert response.status_code == 413 and "4 files" in response.json()["detail"]
    big = zip_of({"a.md": "---\ntitle: A\n---\n" + "word " * 2000}, zipfile.ZIP_STORED)
    response = upload(client, headers, big)
    assert response.status_code == 413 and "unpacks to more than" in response.json()["detail"]
    assert counts(db) == (0, 0, 0)


def test_oversize_upload_is_refused(client, make_user, api_headers):
    data = b"PK\x03\x04" + b"\x00" * portability.IMPORT_BODY_LIMIT
    response = upload(client, api_headers(make_user()), data)
    assert response.status_code == 413
    # One member declaring more than a post may hold is left out before it is inflated.
    big = zip_of({"big.md": "x" * (2 * 1024 * 1024), "ok.md": "---\ntitle: OK\n---\nx"})
    report = upload(client, api_headers(make_user()), big).json()
    assert report["skipped"] == [{"name": "big.md", "reason": "It is larger than 1 MB"}]


def test_path_traversal_and_bad_members_are_skipped(client, db, make_user, api_headers):
    archive = zip_of(
        {
            "../evil.md": "---\ntitle: Evil\n---\nx",
            "/etc/absolute.md": "---\ntitle: Absolute\n---\nx",
            "dir\\back.md": "---\ntitle: Back\n---\nx",
            "good.md": "---\ntitle: Good\n---\nFine. ![](../../outside.png)",
            "bad-yaml.md": "---\ntitle: [unclosed\n---\nx",
            "no-title.md": "---\ntitle: ''\nslug: x\n---\nbody",
            "latin1.md": "---\ntitle: T\n---\ncaf\xe9".encode("latin-1"),
            "bad-status.md": "---\ntitle: T\nstatus: archived\n---\nx",
            "yaml-bomb.md": YAML_BOMB,
        }
    )
    report = upload(client, api_headers(make_user()), archive).json()
    # No title: the file's name stands in for it.
    assert [(item["slug"], item["title"]) for item in report["imported"]] == [
        ("good", "Good"),
        ("x", "no-title"),
    ]
    reasons = {item["name"]: item["reason"] for item in report["skipped"]}
    assert reasons["../evil.md"] == "Its name climbs out of the archive (..)"
    assert reasons["/etc/absolute.md"] == "Its name is an absolute path"
    assert reasons["dir\\back.md"] == "Its name contains a backslash"
    assert reasons["bad-yaml.md"] == "Its front matter cannot be read"
    assert reasons["latin1.md"] == "It is not UTF-8 text"
    assert "archived" in reasons["bad-status.md"]
    assert reasons["yaml-bomb.md"] == "Its title is not a single value"
    assert len(reasons) == 7


def test_a_post_whose_image_is_not_a_picture_is_left_out(client, db, make_user, api_headers):
    archive = zip_of(
        {
            "a.md": "---\ntitle: A\n---\n![](media/fake.png)",
            "media/fake.png": b"<html>not a picture</html>",
            "b.md": "---\ntitle: B\n---\nfine",
        }
    )
    report = upload(client, api_headers(make_user()), archive).json()
    assert [item["slug"] for item in report["imported"]] == ["b"]
    assert report["skipped"] == [
        {"name": "a.md", "reason": f"its image media/fake.png was refused: {media.NOT_A_PICTURE}"}
    ]
    assert counts(db)[1] == 0


def test_images_past_the_quota_refuse_the_whole_import(
    client, db, settings, make_user, api_headers
):
    settings.media_max_files_per_user = 1
    archive = zip_of(
        {
            "a.md": "---\ntitle: A\n---\n![](one.png) ![](two.png)",
            "one.png": varied_png("one"),
            "two.png": varied_png("two"),
        }
    )
    response = upload(client, api_headers(make_user()), archive)
    assert response.status_code == 409
    assert "room for 1" in response.json()["detail"]
    assert counts(db) == (0, 0, 0) and stored_files(settings) == []


@pytest.mark.parametrize("settings", ["local", "database"], indirect=True)
def test_a_failing_transaction_leaves_no_rows_and_no_files(
    app, db, settings, make_user, monkeypatch
):
    user = make_user()
    archive = zip_of({"a.md": "---\ntitle: A\n---\n![](one.png)", "one.png": varied_png("x")})
    saved = []
    storage = app.state.media_storage
    original_save = storage.save

    def save(*args, **kwargs):
        saved.append(args[1])
        return original_save(*args, **kwargs)

    def fail(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(storage, "save", save)
    monkeypatch.setattr(importing.revisions, "record_first", fail)
    session = app.state.database.session(write=True)
    with pytest.raises(RuntimeError):
        importing.import_posts(
            session,
            user=session.get(type(user), user.id),
            source=ZipSource(io.BytesIO(archive), Limits()),
            storage=storage,
            limits=Limits(),
            max_files=10,
            max_bytes=10**9,
        )
    session.close()
    assert len(saved) == 1  # the file had been written (one width: the picture is 480 wide) …
    assert counts(db) == (0, 0, 0)  # … and are gone with the rows
    assert stored_files(settings) == []
    assert db.scalar(select(func.count()).select_from(MediaBlob)) == 0
    assert db.scalar(select(func.count(Tag.id))) == 0


def test_slow_work_happens_before_the_write_transaction(app, backend, make_user, monkeypatch):
    """Rendering and decoding run with no transaction open, so SQLite's write lock is free
    meanwhile (DESIGN.md: bounded work per request)."""
    user = make_user()
    session = app.state.database.session(write=True)
    seen = []
    render, decode = importing.rendered_fields, media.make_post_image

    def watched(function):
        def call(*args, **kwargs):
            seen.append(session.in_transaction())
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(importing, "rendered_fields", watched(render))
    monkeypatch.setattr(media, "make_post_image", watched(decode))
    archive = zip_of({"a.md": "---\ntitle: A\n---\n![](one.png)", "one.png": varied_png("y")})
    report = importing.import_posts(
        session,
        user=session.get(type(user), user.id),
        source=ZipSource(io.BytesIO(archive), Limits()),
        storage=app.state.media_storage,
        limits=Limits(),
        max_files=10,
        max_bytes=10**9,
    )
    session.close()
    assert len(report.imported) == 1
    assert seen == [False, False]


# ---------------------------------------------------------------- the form


def test_import_form_shows_what_came_in_and_what_was_left_out(client, db, make_account):
    make_account("former")
    login(client, "former", PASSWORD)
    assert "/account/import" in client.get("/account").text
    token = form_token(client, "/account/import")
    archive = zip_of({"a.md": "---\ntitle: Came in\n---\nx", "b.txt": "x"})
    files = {"file": ("export.zip", archive, "application/zip")}

    response = client.post("/account/import", data={"csrf_token": token}, files=files)

    assert response.status_code == 200
    assert "Came in" in response.text and "b.txt" in response.text
    assert importing.NOT_A_POST in response.text
    refused = client.post("/account/import", data={"csrf_token": "wrong"}, files=files)
    assert refused.status_code == 403
    garbage = {"file": ("x.zip", b"garbage", "application/zip")}
    response = client.post("/account/import", data={"csrf_token": token}, files=garbage)
    assert response.status_code == 422 and "neither a zip archive" in response.text
    assert counts(db)[0] == 1


@pytest.fixture
def inkwell(settings, monkeypatch):
    """Run an `inkwell` command against the test's database and media."""
    from typer.testing import CliRunner

    import cli
    from config import get_settings

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(settings.media_dir))
    monkeypatch.setenv("MEDIA_STORAGE", settings.media_storage)
    monkeypatch.setenv("PUBLIC_URL", "http://testserver")
    get_settings.cache_clear()

    def run(*args: str):
        return CliRunner().invoke(cli.app, list(args))

    yield run
    get_settings.cache_clear()


def test_only_a_jpeg_in_the_stored_form_keeps_its_bytes():
    """An export's image (a bare baseline JPEG this site wrote) is kept as it is after the
    pipeline decoded it; a JPEG carrying anything else is re-encoded, metadata dropped."""
    from PIL import Image

    from services.importing import is_stored_form, keep_stored_copy

    stored = media.make_post_image(varied_png("stored")).variants[-1].jpeg
    assert is_stored_form(stored)
    assert keep_stored_copy(media.make_post_image(stored), stored).variants[-1].jpeg == stored
    buffer = io.BytesIO()
    Image.open(io.BytesIO(stored)).save(buffer, "JPEG", comment=b"<script>x</script>")
    commented = buffer.getvalue()
    assert not is_stored_form(commented)
    assert not is_stored_form(stored + b"trailing")
    kept = keep_stored_copy(media.make_post_image(commented), commented).variants[-1].jpeg
    assert kept != commented and b"<script>" not in kept
