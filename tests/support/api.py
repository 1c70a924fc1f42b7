"""Arrange data for browser tests through the JSON API (accounts, tokens, posts)."""

import uuid
from dataclasses import dataclass

import httpx

# Long enough, and not on the common-passwords list the app refuses.
from tests.support.accounts import PASSWORD

# Password hashing (argon2) is deliberately slow; leave room for a busy test machine.
TIMEOUT_S = 30


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    email: str
    password: str


def unique_username(prefix: str = "user") -> str:
    """A username no other test (in any xdist worker) will pick."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def create_user(base_url: str, username: str | None = None, password: str = PASSWORD) -> Account:
    username = username or unique_username()
    email = f"{username}@example.com"
    response = httpx.post(
        f"{base_url}/api/users",
        json={"username": username, "email": email, "password": password},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    return Account(response.json()["id"], username, email, password)


def get_token(base_url: str, username: str, password: str = PASSWORD) -> str:
    """A bearer token from the OAuth2 password flow."""
    response = httpx.post(
        f"{base_url}/api/token",
        data={"username": username, "password": password},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer", body
    return body["access_token"]


def create_post(base_url: str, token: str, title: str, content: str) -> dict:
    response = httpx.post(
        f"{base_url}/api/posts",
        json={"title": title, "content": content},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    return response.json()


def edit_post(base_url: str, token: str, post_id: int, **fields: object) -> dict:
    """Change some of a post's fields (a PATCH); returns the post as the API shows it."""
    response = httpx.patch(
        f"{base_url}/api/posts/{post_id}",
        json=fields,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    return response.json()


def upload_picture(base_url: str, token: str, png: bytes) -> dict:
    """Set the profile picture of the token's user; returns the user as the API shows it."""
    response = httpx.put(
        f"{base_url}/api/users/me/picture",
        files={"picture": ("picture.png", png, "image/png")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    return response.json()


def upload_image(base_url: str, token: str, png: bytes) -> dict:
    """Add an image to the token's user's media library; returns it as the API shows it."""
    response = httpx.post(
        f"{base_url}/api/media",
        files={"file": ("image.png", png, "image/png")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    return response.json()


def create_author_with_post(
    base_url: str, title: str, content: str = "Written by the browser tests."
) -> dict:
    """A new account with one post; returns the post (its author included)."""
    account = create_user(base_url, unique_username("author"))
    return create_post(base_url, get_token(base_url, account.username), title, content)
