"""Property-based fuzzing of the JSON API with Schemathesis, in-process over ASGI.

Every operation of the OpenAPI schema is called with generated requests, valid and invalid,
and every response goes through all of Schemathesis' checks: no 5xx, documented status codes,
content types, headers and bodies as the schema says, invalid input rejected, valid input
accepted, authentication enforced, `Allow` on 405. Each operation runs on SQLite and PostgreSQL.

The fuzzer is a real user with a password and a post, and another user has a post too. Before
every request that world is rebuilt from scratch (users and posts with their ids, names and
password) and a fresh token is issued, so an operation that destroys it (revoking the token in
use, deleting the account, changing the password or the name, deleting a post) cannot spoil the
next one, and every example is reproducible.
Random ids and secrets would only ever meet 404, 401 and 403, so some of the valid requests,
chosen from a hash of the request itself (which keeps examples replayable), are pointed at the
real rows and given the real password, a real picture and a fresh precondition.
"""

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup
from schemathesis.openapi.checks import RejectedPositiveData
from sqlalchemy import delete
from sqlalchemy.orm import Session

import main
from config import utcnow
from database import Database
from models import (
    AccountToken,
    AuthSession,
    LoginFailure,
    MediaFile,
    OutboxMessage,
    Post,
    RecoveryCode,
    User,
)
from services import account_links, revisions
from services.passwords import hash_password
from services.posts import rendered_fields
from services.sessions import create_session
from tests.support.accounts import PASSWORD
from tests.support.archives import zip_of
from tests.support.images import png_bytes
from tests.support.two_factor import SECRET, code_at

FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixtures are set up once per operation and backend on purpose (the world is restored
    # before every example instead); multipart bodies and long strings can be slow to draw.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def fuzz_config() -> schemathesis.Config:
    """Every check; valid and invalid data; the examples, coverage and fuzzing phases."""
    return schemathesis.Config.from_dict(
        {
            "seed": 20_251_122,
            "checks": {
                "enabled": True,
                # 412 joins the defaults (409 is one): both are documented answers to an edit
                # of a post that changed meanwhile, however well-formed the request.
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
                },
            },
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
            },
        }
    )


# ---------------------------------------------------------------- the app under test


class AppUnderTest:
    """An ASGI app that forwards every request to the app of the running test.

    The schema is loaded once, at import, so that pytest makes one test per operation; the app
    it is fuzzed against is built per test, on that test's database (the `app` fixture). That
    app's lifespan is the fixture's business, so lifespan messages are answered here.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        assert self.app is not None, "no app under test: use the `fuzzed_app` fixture"
        await self.app(scope, receive, send)


APP = AppUnderTest()
# The schema as the app serves it; any instance serves the same one (it comes from the code).
APP.app = main.app
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=fuzz_config())
APP.app = None

# Two rules no JSON Schema can state, both in the README: a common password is refused, and
# so is an upload that is not a picture. A schema-valid request may get 422 for these only.
COMMON_PASSWORD = "is too common"
PICTURE_ROUTE = "PUT /api/users/me/picture"
MEDIA_ROUTE = "POST /api/media"
# An upload that is not an archive or a WordPress export is refused the same way.
IMPORT_ROUTE = "POST /api/users/me/import"


# email-validator refuses special-use domains (.test, .local …): they cannot receive mail.
RESERVED_EMAIL_DOMAIN = "special-use or reserved name"


# A reset token the schema allows may simply not be live: 400, as documented, is the answer.
RESET_CONFIRM_ROUTE = "POST /api/password-reset/confirm"


@SCHEMA.hook
def filter_failure(context: Any, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    """Keep every failure except "valid data rejected" caused by those rules alone."""
    if isinstance(failure, RejectedPositiveData) and response.status_code == 400:
        return route(case) != RESET_CONFIRM_ROUTE
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    try:
        detail = response.json()["detail"]
    except (ValueError, TypeError, KeyError):
        return True
    if route(case) in (PICTURE_ROUTE, MEDIA_ROUTE, IMPORT_ROUTE) and isinstance(detail, str):
        return False  # a well-formed upload whose bytes are not a picture (or an archive)
    errors = detail if isinstance(detail, list) else []
    unexpressible = (COMMON_PASSWORD, RESERVED_EMAIL_DOMAIN)
    # For optional PATCH fields pydantic also reports the (unadvertised) null branch.
    relevant = [error for error in errors if error.get("type") != "none_required"]
    return not relevant or not all(
        any(rule in error.get("msg", "") for rule in unexpressible) for error in relevant
    )


@pytest.fixture
def fuzzed_app(app: FastAPI) -> Iterator[FastAPI]:
    APP.app = app
    yield app
    APP.app = None


# ---------------------------------------------------------------- the world the fuzzer acts in


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def tiny_png() -> bytes:
    return png_bytes((8, 8), (200, 80, 40))


@dataclass(frozen=True)
class Account:
    user_id: int
    username: str
    post_id: int
    media_id: int


class World:
    """Two users with a post each, the first being the fuzzer; rebuilt before each request.
    The second has two-factor sign-in, so a token for that account needs a code as well."""

    def __init__(self, database: Database) -> None:
        self.database = database
        with database.session(write=True) as db:
            users = [self._add_user(db, name) for name in ("fuzz-owner", "fuzz-other")]
            db.flush()
            posts = [self._add_post(db, user.id, user.username) for user in users]
            images = [self._add_image(db, user.id) for user in users]
            db.commit()
            rows = zip(users, posts, images, strict=True)
            self.owner, self.other = (Account(u.id, u.username, p.id, m.id) for u, p, m in rows)

    @staticmethod
    def _add_user(db: Session, username: str, user_id: int | None = None) -> User:
        user = User(id=user_id, username=username, email=f"{username}@example.com")
        user.password_hash = password_hash()
        if username == "fuzz-other":
            user.totp_secret = SECRET
        db.add(user)
        return user

    @staticmethod
    def _add_post(db: Session, user_id: int, username: str, post_id: int | None = None) -> Post:
        content = f"A post by *{username}*."
        post = Post(id=post_id, title=f"By {username}", content=content, user_id=user_id)
        for name, value in rendered_fields(content).items():
            setattr(post, name, value)
        db.add(post)
        return post

    @staticmethod
    def _add_image(db: Session, user_id: int, media_id: int | None = None) -> MediaFile:
        # A row alone: deleting it removes files that are not there, which is allowed.
        image = MediaFile(
            id=media_id, user_id=user_id, digest=f"{user_id:032x}", width=8, height=8, byte_size=1
        )
        db.add(image)
        return image

    def restore(self, db: Session) -> str:
        """Start from the same rows every time; return a new API token of the fuzzer.

        Everything the API writes is wiped (and each login attempt is judged on its
        credentials, not throttled by the earlier ones), so an example behaves the same when
        Hypothesis replays or shrinks it. The ids were drawn from the sequences at first.
        """
        for model in (
            OutboxMessage,
            AccountToken,
            LoginFailure,
            AuthSession,
            RecoveryCode,
            MediaFile,
            Post,
            User,
        ):
            db.execute(delete(model))
        for account in (self.owner, self.other):
            self._add_user(db, account.username, account.user_id)
        db.flush()
        added = [
            self._add_post(db, account.user_id, account.username, account.post_id)
            for account in (self.owner, self.other)
        ]
        db.flush()
        for post in added:  # each post's history starts with it, as for posts written here
            revisions.record_first(db, post=post)
        for account in (self.owner, self.other):
            self._add_image(db, account.user_id, account.media_id)
        db.commit()
        return create_session(db, user=db.get(User, self.owner.user_id), kind="api")

    def prepare(self, case: schemathesis.Case) -> dict[str, str]:
        """Restore the world, make a valid case realistic; return the headers to send."""
        # Read the case's metadata before changing it: reading it afterwards would re-judge
        # the edited parts against the schema.
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        without_auth = case.operation.schema.is_security_param_negated(case)
        with self.database.session(write=True) as db:
            token = self.restore(db)
            if positive:
                self.make_realistic(case, db)
        return {} if without_auth else {"Authorization": f"Bearer {token}"}

    def make_realistic(self, case: schemathesis.Case, db: Session) -> None:
        """Point some valid requests at the real rows, with the real secrets."""
        if isinstance(case.body, dict):
            # "No NUL anywhere" is a rule of every text field that the schema does not state (a
            # pattern that says it trips the fuzzer's own generation): valid cases leave NUL out.
            for name, value in case.body.items():
                if isinstance(value, str):
                    case.body[name] = value.replace("\x00", "")
                elif isinstance(value, list):
                    case.body[name] = [
                        item.replace("\x00", "") if isinstance(item, str) else item
                        for item in value
                    ]
        digest = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
        account = (None, self.owner, self.other)[digest % 3]
        if account is not None:
            if "user_id" in case.path_parameters:
                case.path_parameters["user_id"] = account.user_id
            if "post_id" in case.path_parameters:
                case.path_parameters["post_id"] = account.post_id
            if "number" in case.path_parameters:
                case.path_parameters["number"] = 1  # the revision each post starts with
            if "media_id" in case.path_parameters:
                case.path_parameters["media_id"] = account.media_id
        if not digest & 8:
            return
        for name in [name for name in case.headers if name.lower() == "if-match"]:
            del case.headers[name]  # no precondition: the edit goes through
        if not isinstance(case.body, dict):
            return
        if "version" in case.body and "post_id" in case.path_parameters:
            post = db.get(Post, case.path_parameters["post_id"])
            case.body["version"] = getattr(post, "version", case.body["version"])
        if route(case) == "POST /api/token":
            case.body.update(username=self.owner.username, password=PASSWORD)
            if digest & 16:  # the account with two-factor sign-in, and its current code
                case.body.update(username=self.other.username, otp=code_at(SECRET, utcnow()))
        elif route(case) == "PUT /api/users/me/password":
            case.body["current_password"] = PASSWORD
        elif route(case) in {"DELETE /api/users/me", "DELETE /api/users/{user_id}"}:
            case.body["password"] = PASSWORD
        elif route(case) in {"PATCH /api/users/me", "PATCH /api/users/{user_id}"}:
            if "email" in case.body:
                case.body["current_password"] = PASSWORD
        elif route(case) == PICTURE_ROUTE:
            case.body["picture"] = tiny_png()
        elif route(case) == RESET_CONFIRM_ROUTE:
            owner = db.get(User, self.owner.user_id)
            case.body["token"] = account_links.issue(
                db, user=owner, purpose="reset", email=owner.email, ttl=timedelta(hours=1)
            )
            db.commit()
        elif route(case) == "POST /api/password-reset":
            case.body["email"] = f"{self.owner.username}@example.com"
        elif route(case) == MEDIA_ROUTE:
            case.body["file"] = tiny_png()
        elif route(case) == IMPORT_ROUTE:
            case.body["file"] = zip_of({"fuzzed.md": "---\ntitle: Fuzzed\n---\nBrought in."})


def route(case: schemathesis.Case) -> str:
    return f"{case.method.upper()} {case.path}"


@pytest.fixture
def world(fuzzed_app: FastAPI) -> World:
    return World(fuzzed_app.state.database)


# ---------------------------------------------------------------- the fuzz test


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema(case: schemathesis.Case, world: World) -> None:
    case.call_and_validate(headers=world.prepare(case))


# ---------------------------------------------------------------- the fuzzer is not vacuous


class Item(BaseModel):
    id: int
    name: str


def server_error(app: FastAPI) -> None:
    @app.get("/items/{item_id}", response_model=Item)
    def read(item_id: int) -> Any:
        if item_id > 1000:
            raise HTTPException(500, "an overflow nobody handled")
        return {"id": item_id, "name": "fine"}


def undocumented_status(app: FastAPI) -> None:
    @app.get("/items/{item_id}", response_model=Item)
    def read(item_id: int) -> Any:
        if item_id < 0:
            return JSONResponse({"detail": "I'm a teapot"}, status_code=418)
        return {"id": item_id, "name": "fine"}


def response_not_in_schema(app: FastAPI) -> None:
    @app.get("/items/{item_id}", response_model=None, responses={200: {"model": Item}})
    def read(item_id: int) -> Any:
        return JSONResponse({"id": str(item_id), "name": None})


def invalid_input_accepted(app: FastAPI) -> None:
    limit = {"name": "limit", "in": "query", "required": True}
    limit["schema"] = {"type": "integer", "minimum": 1, "maximum": 10}

    @app.get("/items", response_model=list[Item], openapi_extra={"parameters": [limit]})
    def search() -> Any:
        return []  # never looks at the required `limit`, whatever it is


@pytest.mark.parametrize(
    ("defect", "code"),
    [
        pytest.param(server_error, "ST101", id="not_a_server_error"),
        pytest.param(undocumented_status, "ST103", id="status_code_conformance"),
        pytest.param(response_not_in_schema, "ST108", id="response_schema_conformance"),
        pytest.param(invalid_input_accepted, "ST201", id="negative_data_rejection"),
    ],
)
def test_fuzzer_catches_a_deliberate_defect(defect: Callable[[FastAPI], None], code: str) -> None:
    """The same configuration, settings and checks, on a small app with one known defect."""
    broken = FastAPI()
    defect(broken)
    schema = schemathesis.openapi.from_asgi("/openapi.json", broken, config=fuzz_config())
    (operation,) = [result.ok() for result in schema.get_all_operations()]

    @FUZZ_SETTINGS
    @given(case=st.one_of(operation.as_strategy(generation_mode=m) for m in GenerationMode))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate()

    with pytest.raises(FailureGroup) as caught:
        fuzz()
    assert code in {failure.code for failure in caught.value.exceptions}, caught.value
