"""JSON API: CRUD, pagination, errors."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Post, User
from tests.support.accounts import PASSWORD


def create_user(client: TestClient, username: str = "alice", email: str | None = None) -> dict:
    """Register over the API and log in for a token; the result carries `headers`."""
    body = {"username": username, "email": email or f"{username}@example.com", "password": PASSWORD}
    response = client.post("/api/users", json=body)
    assert response.status_code == 201, response.text
    token = client.post("/api/token", data={"username": username, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {
        **response.json(),
        "headers": {"Authorization": f"Bearer {token.json()['access_token']}"},
    }


def create_post(
    client: TestClient, user: dict, title: str = "Hello", content: str = "World"
) -> dict:
    response = client.post(
        "/api/posts", json={"title": title, "content": content}, headers=user["headers"]
    )
    assert response.status_code == 201, response.text
    return response.json()


def public(user: dict) -> dict:
    return {key: value for key, value in user.items() if key != "headers"}


def test_create_and_read_user_hides_email(client):
    user = create_user(client, "alice", "Alice@Example.com")
    assert user["username"] == "alice"
    assert "email" not in user
    assert user["image_path"] == "/static/profile_pics/default.jpg"
    fetched = client.get(f"/api/users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == public(user)


def test_email_is_stored_lowercase(client, db: Session):
    create_user(client, "alice", "Alice@Example.COM")
    assert db.scalar(select(User.email)) == "alice@example.com"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {"username": "alice", "email": "a@example.com"},
            {"username": "alice", "email": "b@example.com"},
        ),
        (
            {"username": "alice", "email": "a@example.com"},
            {"username": "bob", "email": "A@example.com"},
        ),
    ],
    ids=["username", "email"],
)
def test_duplicate_user_is_409(client, db: Session, first, second):
    assert client.post("/api/users", json={**first, "password": PASSWORD}).status_code == 201
    response = client.post("/api/users", json={**second, "password": PASSWORD})
    assert response.status_code == 409
    assert response.json()["detail"] == "That username or email address cannot be used"
    assert db.scalar(select(func.count()).select_from(User)) == 1


def test_duplicate_from_a_racing_request_is_409_not_500(client, db: Session, monkeypatch):
    """The early check can miss a concurrent insert; the unique constraint must still give 409."""
    from services import users

    create_user(client, "alice")
    monkeypatch.setattr(users, "_ensure_unique", lambda *args, **kwargs: None)
    body = {"username": "alice", "email": "other@example.com", "password": PASSWORD}
    response = client.post("/api/users", json=body)
    assert response.status_code == 409
    assert db.scalar(select(func.count()).select_from(User)) == 1


def test_update_user_and_conflict(client):
    alice = create_user(client, "alice")
    create_user(client, "bob")
    renamed = client.patch(
        f"/api/users/{alice['id']}", json={"username": "alicia"}, headers=alice["headers"]
    )
    assert renamed.status_code == 200
    assert renamed.json()["username"] == "alicia"
    clash = client.patch(
        f"/api/users/{alice['id']}", json={"username": "bob"}, headers=alice["headers"]
    )
    assert clash.status_code == 409
    assert client.get(f"/api/users/{alice['id']}").json()["username"] == "alicia"


def test_user_may_keep_own_username_on_update(client):
    alice = create_user(client, "alice")
    response = client.patch(
        f"/api/users/{alice['id']}",
        json={"username": "alice", "email": "new@example.com", "current_password": PASSWORD},
        headers=alice["headers"],
    )
    assert response.status_code == 200


def test_delete_user_deletes_their_posts(client, db: Session):
    alice = create_user(client, "alice")
    bob = create_user(client, "bob")
    create_post(client, alice)
    kept = create_post(client, bob)
    deleted = client.request(
        "DELETE",
        f"/api/users/{alice['id']}",
        json={"password": PASSWORD},
        headers=alice["headers"],
    )
    assert deleted.status_code == 204
    assert client.get(f"/api/users/{alice['id']}").status_code == 404
    assert db.scalars(select(Post.id)).all() == [kept["id"]]


def test_post_crud(client):
    alice = create_user(client)
    post = create_post(client, alice, "First", "Some words")
    auth = alice["headers"]
    assert post["author"]["username"] == "alice"
    assert post["date_posted"].endswith("Z") or post["date_posted"].endswith("+00:00")

    replaced = client.put(
        f"/api/posts/{post['id']}", json={"title": "Second", "content": "New words"}, headers=auth
    )
    assert replaced.status_code == 200
    assert (replaced.json()["title"], replaced.json()["content"]) == ("Second", "New words")

    patched = client.patch(f"/api/posts/{post['id']}", json={"title": "Third"}, headers=auth)
    assert patched.status_code == 200
    assert (patched.json()["title"], patched.json()["content"]) == ("Third", "New words")
    assert patched.json()["updated_at"] >= patched.json()["date_posted"]

    assert client.delete(f"/api/posts/{post['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/posts/{post['id']}").status_code == 404


def test_create_post_rejects_a_user_id_in_the_body(client, db: Session):
    """The author is whoever the token belongs to; naming another one is invalid input."""
    alice = create_user(client)
    body = {"title": "t", "content": "c", "user_id": 999}
    response = client.post("/api/posts", json=body, headers=alice["headers"])
    assert response.status_code == 422
    assert db.scalar(select(func.count()).select_from(Post)) == 0


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("GET", "/api/posts/12345", "Post not found"),
        ("PUT", "/api/posts/12345", "Post not found"),
        ("PATCH", "/api/posts/12345", "Post not found"),
        ("DELETE", "/api/posts/12345", "Post not found"),
        ("GET", "/api/users/12345", "User not found"),
        ("PATCH", "/api/users/12345", "User not found"),
        ("DELETE", "/api/users/12345", "User not found"),
        ("GET", "/api/users/12345/posts", "User not found"),
    ],
)
def test_unknown_ids_are_json_404(client, method, path, detail):
    body = None
    if method in {"PUT", "PATCH"}:
        body = {"title": "t", "content": "c"} if "posts" in path else {"username": "someone"}
    elif method == "DELETE" and "users" in path:
        body = {"password": PASSWORD}
    headers = create_user(client)["headers"]
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 404
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("invoice\u202egnp.exe", "invoice gnp.exe"),
        ("\u2067Breaking\u2069 news", "Breaking  news"),
        ("two\nlines\tand a tab", "two lines and a tab"),
        ("next\u0085line\u2028and\u2029more", "next line and more"),
        ("marks\u200e\u200fhere\u061c", "marks  here"),
        ("Caf\u00e9 \u00a0: d\u00e9j\u00e0 vu", "Caf\u00e9 \u00a0: d\u00e9j\u00e0 vu"),
    ],
)
def test_titles_are_one_line_without_bidi_controls(client, sent, stored):
    alice = create_user(client)
    response = client.post(
        "/api/posts", json={"title": sent, "content": "c"}, headers=alice["headers"]
    )
    assert response.status_code == 201
    assert response.json()["title"] == stored


def test_a_title_of_only_control_characters_is_422(client):
    alice = create_user(client)
    body = {"title": "\u202e\u2066\t", "content": "c"}
    response = client.post("/api/posts", json=body, headers=alice["headers"])
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "", "content": "c"}, "title"),
        ({"title": "   ", "content": "c"}, "title"),
        ({"title": "x" * 101, "content": "c"}, "title"),
        ({"title": "t", "content": ""}, "content"),
        ({"title": "t", "content": " \n "}, "content"),
        ({"title": "nul\x00byte", "content": "c"}, "title"),
        ({"title": "t", "content": "nul\x00byte"}, "content"),
        ({"content": "c"}, "title"),
        ({"title": "t"}, "content"),
        ({"title": 5, "content": "c"}, "title"),
    ],
)
def test_invalid_post_is_422_with_field_errors(client, db: Session, body, field):
    alice = create_user(client)
    response = client.post("/api/posts", json=body, headers=alice["headers"])
    assert response.status_code == 422
    assert field in {error["loc"][-1] for error in response.json()["detail"]}
    assert db.scalar(select(func.count()).select_from(Post)) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"username": "", "email": "a@example.com"},
        {"username": "x" * 51, "email": "a@example.com"},
        {"username": "has space", "email": "a@example.com"},
        {"username": "nul\x00", "email": "a@example.com"},
        {"username": "alice", "email": "not-an-email"},
        {"username": "alice", "email": ("x" * 110) + "@example.com"},
        {"username": "alice", "email": "a@example.com", "password": "short"},
        {"username": "alice", "email": "a@example.com", "password": "password123"},
        {"username": "alice", "email": "a@example.com", "password": None},
    ],
)
def test_invalid_user_is_422(client, db: Session, body):
    response = client.post("/api/users", json={"password": PASSWORD, **body})
    assert response.status_code == 422
    assert db.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_a_lone_surrogate_is_a_field_error_not_a_server_error(client, db: Session, field):
    # Valid JSON (\ud800 escaped), but no string Python can encode as UTF-8.
    fields = {"username": '"alice"', "email": '"a@example.com"', "password": f'"{PASSWORD}"'}
    fields[field] = '"x\\ud800"'
    body = "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"
    response = client.post(
        "/api/users", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_patch_rejects_explicit_null(client):
    alice = create_user(client)
    post = create_post(client, alice)
    response = client.patch(
        f"/api/posts/{post['id']}", json={"title": None}, headers=alice["headers"]
    )
    assert response.status_code == 422
    assert client.get(f"/api/posts/{post['id']}").json()["title"] == post["title"]


@pytest.mark.parametrize(
    "path",
    ["/api/posts/2147483648", "/api/posts/0", "/api/posts/abc", "/api/users/99999999999999999999"],
)
def test_ids_beyond_integer_range_are_422(client, path):
    assert client.get(path).status_code == 422


@pytest.mark.parametrize("query", ["per_page=0", "per_page=101", "page=0", "page=x"])
def test_bad_pagination_is_422(client, query):
    assert client.get(f"/api/posts?{query}").status_code == 422


def _next_link(response) -> str | None:
    match = re.search(r'<([^>]+)>; rel="next"', response.headers.get("link", ""))
    return match.group(1) if match else None


def test_list_is_newest_first_paginated_with_link_header(client):
    alice = create_user(client)
    ids = [create_post(client, alice, f"Post {n}")["id"] for n in range(25)]
    first = client.get("/api/posts")
    assert first.status_code == 200
    assert [p["id"] for p in first.json()] == ids[::-1][:10]  # default page size is 10
    seen = []
    url: str | None = "/api/posts?per_page=7"
    while url:
        response = client.get(url)
        seen += [p["id"] for p in response.json()]
        url = _next_link(response)
    assert seen == ids[::-1]
    assert len(client.get("/api/posts?per_page=100").json()) == 25


def test_last_page_has_prev_but_no_next_link(client):
    alice = create_user(client)
    for n in range(3):
        create_post(client, alice, f"Post {n}")
    response = client.get("/api/posts?per_page=2&page=2")
    assert len(response.json()) == 1
    assert 'rel="prev"' in response.headers["link"]
    assert _next_link(response) is None


def test_same_timestamp_posts_have_stable_order(client, make_user, make_post):
    from datetime import UTC, datetime

    moment = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    author = make_user()
    posts = [make_post(author, date_posted=moment) for _ in range(5)]
    listed = [p["id"] for p in client.get("/api/posts?per_page=2").json()]
    listed += [p["id"] for p in client.get("/api/posts?per_page=2&page=2").json()]
    listed += [p["id"] for p in client.get("/api/posts?per_page=2&page=3").json()]
    assert listed == [p.id for p in reversed(posts)]


def test_every_page_continues_exactly_where_the_last_one_stopped(client, make_user, make_post):
    from datetime import UTC, datetime, timedelta

    authors = [make_user(), make_user()]
    start = datetime(2024, 3, 1, tzinfo=UTC)
    # Timestamps repeat in runs of three, so page boundaries fall inside runs of ties.
    posts = [
        make_post(authors[n % 2], date_posted=start + timedelta(minutes=n // 3)) for n in range(23)
    ]
    newest_first = sorted(posts, key=lambda post: (post.date_posted, post.id), reverse=True)

    def walk(path: str) -> list[int]:
        return [
            item["id"]
            for page in range(1, 10)
            for item in client.get(f"{path}?per_page=4&page={page}").json()
        ]

    assert walk("/api/posts") == [post.id for post in newest_first]
    first_author = [post.id for post in newest_first if post.user_id == authors[0].id]
    assert walk(f"/api/users/{authors[0].id}/posts") == first_author


def test_user_posts_lists_only_that_author(client):
    alice = create_user(client, "alice")
    bob = create_user(client, "bob")
    mine = create_post(client, alice, "Mine")
    create_post(client, bob, "Theirs")
    response = client.get(f"/api/users/{alice['id']}/posts")
    assert [p["id"] for p in response.json()] == [mine["id"]]


def test_post_list_statement_count_does_not_grow_with_page_size(
    client, make_user, make_post, count_statements
):
    counts = []
    for size in (1, 50):
        # A different author on every post: a lazy author load would cost a query per row.
        while len(client.get("/api/posts?per_page=100").json()) < size:
            make_post(make_user())
        counter = count_statements()
        assert len(client.get(f"/api/posts?per_page={size}").json()) == size
        counts.append(counter.count)
    assert counts[0] == counts[1] <= 4  # content version (page cache), posts, tags, count ahead


def test_author_list_statement_count_does_not_grow_with_page_size(
    client, make_user, make_post, count_statements
):
    author = make_user()
    counts = []
    for size in (1, 50):
        while len(client.get(f"/api/users/{author.id}/posts?per_page=100").json()) < size:
            make_post(author)
        counter = count_statements()
        assert len(client.get(f"/api/users/{author.id}/posts?per_page={size}").json()) == size
        counts.append(counter.count)
    assert counts[0] == counts[1] <= 5  # content version, author, posts, tags, count ahead


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert "/api/posts/{post_id}" in spec["paths"]
    assert "404" in spec["paths"]["/api/posts/{post_id}"]["get"]["responses"]
    assert not any(path.startswith("/users/") for path in spec["paths"])  # pages are not API
