"""Data written over HTTP survives stopping and restarting the real server process."""

import httpx
import pytest

from tests.server import migrate, running_server

pytestmark = pytest.mark.server


def test_data_survives_restart(empty_database_url, tmp_path):
    migrate(empty_database_url)
    with running_server(empty_database_url, tmp_path / "media") as base_url:
        user = httpx.post(
            f"{base_url}/api/users", json={"username": "persisted", "email": "p@example.com"}
        )
        assert user.status_code == 201
        post = httpx.post(
            f"{base_url}/api/posts",
            json={
                "title": "Still here",
                "content": "After a restart.",
                "user_id": user.json()["id"],
            },
        )
        assert post.status_code == 201

    with running_server(empty_database_url, tmp_path / "media") as base_url:
        fetched = httpx.get(f"{base_url}/api/posts/{post.json()['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["title"] == "Still here"
        assert fetched.json()["author"]["username"] == "persisted"
        assert "Still here" in httpx.get(f"{base_url}/").text
