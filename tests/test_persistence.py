"""Data written over HTTP survives stopping and restarting the real server process."""

import httpx
import pytest

from tests.support.accounts import PASSWORD
from tests.support.server import migrate, running_server

pytestmark = pytest.mark.server


def test_data_survives_restart(empty_database_url, tmp_path):
    migrate(empty_database_url)
    with running_server(empty_database_url, tmp_path / "media") as base_url:
        account = {"username": "persisted", "email": "p@example.com", "password": PASSWORD}
        assert httpx.post(f"{base_url}/api/users", json=account).status_code == 201
        token = httpx.post(
            f"{base_url}/api/token", data={"username": "persisted", "password": PASSWORD}
        ).json()["access_token"]
        post = httpx.post(
            f"{base_url}/api/posts",
            json={"title": "Still here", "content": "After a restart."},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert post.status_code == 201

    with running_server(empty_database_url, tmp_path / "media") as base_url:
        fetched = httpx.get(f"{base_url}/api/posts/{post.json()['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["title"] == "Still here"
        assert fetched.json()["author"]["username"] == "persisted"
        assert "Still here" in httpx.get(f"{base_url}/").text
        # The session survived too: the token still works after the restart.
        me = httpx.get(f"{base_url}/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "p@example.com"
