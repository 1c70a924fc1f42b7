"""What the JSON API's routes share: documented error answers, path parameters, the Link
header of lists, and posts as the API shows them."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol

from fastapi import (
    HTTPException,
    Path,
    Request,
    Response,
    status,
)
from sqlalchemy.orm import Session

from models import Post
from schemas import (
    MAX_ID,
    PostPublic,
)
from services import listings, posts, users
from services.errors import ThrottledError
from web.fragments import post_json, public_post

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
PostId = Annotated[int, Path(ge=1, le=MAX_ID)]


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"example": {"detail": description}}},
    }


Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: error_response("Not found")}
CONFLICT: Responses = {409: error_response(users.UNUSABLE)}
AUTH: Responses = {401: error_response("Not authenticated")}
OTP_NEEDED = "This account has two-factor sign-in: send the current code in the otp field"
OTP_WRONG = "The code in the otp field is not right, or it has been used already"
TOKEN_REFUSED: Responses = {
    401: error_response("Invalid username or password, or a two-factor code missing or wrong")
}
FORBIDDEN: Responses = {403: error_response("Not allowed for this user")}
WRONG_PASSWORD: Responses = {403: error_response("The current password is missing or incorrect")}
# Routes under /users/{user_id} that need the password refuse for either reason.
SELF_WITH_PASSWORD: Responses = {
    403: error_response("Not your own account, or the current password is missing or incorrect")
}
INVALID: Responses = {422: error_response("Invalid input")}
# Routes that read a body also answer 400 when it cannot be parsed at all.
BODY: Responses = {**INVALID, 400: error_response("Malformed request body")}
TOO_LARGE: Responses = {413: error_response("Request body too large")}
TOO_MANY_FAILURES = "Too many failed attempts; try again later"
TOO_MANY_REGISTRATIONS = "Too many registrations from this address; try again later"
TOO_MANY_NEW_POSTS = "A new account may write only a few posts in its first day; try again later"


def too_many(description: str) -> Responses:
    retry_after = {"description": "Seconds to wait", "schema": {"type": "integer"}}
    return {429: {**error_response(description), "headers": {"Retry-After": retry_after}}}


THROTTLED = too_many(TOO_MANY_FAILURES)
REGISTRATIONS_THROTTLED = too_many(TOO_MANY_REGISTRATIONS)
NEW_ACCOUNT_THROTTLED = too_many(TOO_MANY_NEW_POSTS)


@contextmanager
def throttled(detail: str = TOO_MANY_FAILURES) -> Iterator[None]:
    """Answer a ThrottledError with 429 and the wait in Retry-After."""
    try:
        yield
    except ThrottledError as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail,
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc


class Page(Protocol):
    """A page of any list: its number and whether pages come before and after it."""

    @property
    def number(self) -> int: ...
    @property
    def has_previous(self) -> bool: ...
    @property
    def has_next(self) -> bool: ...


LIST_HEADERS = {
    "Link": {"description": 'RFC 8288 links to the `rel="prev"` and `rel="next"` pages'}
}


def paginate(
    request: Request, response: Response, page: listings.PostPage | posts.SearchResults
) -> list[PostPublic]:
    """Advertise neighbouring pages in a Link header; the body stays a plain array."""
    link_neighbours(request, response, page)
    return [public_post(request, post) for post in page.posts]


def link_neighbours(request: Request, response: Response, page: Page) -> None:
    """The Link header to the pages before and after this one of a list."""
    links = []
    if page.has_previous:
        links.append(f'<{request.url.include_query_params(page=page.number - 1)}>; rel="prev"')
    if page.has_next:
        links.append(f'<{request.url.include_query_params(page=page.number + 1)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)


def post_response(
    request: Request,
    db: Session,
    post: Post,
    *,
    status_code: int = status.HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response:
    """A post as the API shows it, answered as it stands.

    Returned as the response itself, so FastAPI does not validate the model a second time
    on another trip to the thread pool; its JSON is the one a read of the post is served
    from next (web.fragments.post_json)."""
    return Response(
        post_json(request, db, post),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
