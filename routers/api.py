"""JSON API under /api."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.security import OAuth2PasswordRequestForm

from database import SessionDep
from models import Post, User
from schemas import (
    MAX_ID,
    PasswordChange,
    PasswordConfirmation,
    PostCreate,
    PostPublic,
    PostReplace,
    PostUpdate,
    ReviewLinkPublic,
    TagPublic,
    Token,
    UserCreate,
    UserPrivate,
    UserPublic,
    UserUpdate,
)
from services import accounts, media, posts, search, sessions, tags, users
from services.errors import ThrottledError
from web.compression import identity_tag
from web.deps import ApiToken, ApiUser, MaybeApiUser, PageNumber, PerPage, SettingsDep
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, body_limit
from web.privacy import Public
from web.security import client_ip
from web.urls import post_url, url_for

router = APIRouter(prefix="/api", tags=["api"], route_class=BodyLimitedRoute)

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
PostId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"example": {"detail": description}}},
    }


Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: _error("Not found")}
CONFLICT: Responses = {409: _error(users.UNUSABLE)}
AUTH: Responses = {401: _error("Not authenticated")}
FORBIDDEN: Responses = {403: _error("Not allowed for this user")}
WRONG_PASSWORD: Responses = {403: _error("The current password is missing or incorrect")}
# Routes under /users/{user_id} that need the password refuse for either reason.
SELF_WITH_PASSWORD: Responses = {
    403: _error("Not your own account, or the current password is missing or incorrect")
}
INVALID: Responses = {422: _error("Invalid input")}
# Routes that read a body also answer 400 when it cannot be parsed at all.
BODY: Responses = {**INVALID, 400: _error("Malformed request body")}
TOO_LARGE: Responses = {413: _error("Request body too large")}
TOO_MANY_FAILURES = "Too many failed attempts; try again later"
TOO_MANY_REGISTRATIONS = "Too many registrations from this address; try again later"


def _too_many(description: str) -> Responses:
    retry_after = {"description": "Seconds to wait", "schema": {"type": "integer"}}
    return {429: {**_error(description), "headers": {"Retry-After": retry_after}}}


THROTTLED = _too_many(TOO_MANY_FAILURES)
REGISTRATIONS_THROTTLED = _too_many(TOO_MANY_REGISTRATIONS)


@contextmanager
def _throttled(detail: str = TOO_MANY_FAILURES) -> Iterator[None]:
    """Answer a ThrottledError with 429 and the wait in Retry-After."""
    try:
        yield
    except ThrottledError as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail,
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc


LIST_HEADERS = {
    "Link": {"description": 'RFC 8288 links to the `rel="prev"` and `rel="next"` pages'}
}


def _public(request: Request, post: Post) -> PostPublic:
    """A post as the API shows it, with its absolute canonical address."""
    public = PostPublic.model_validate(post)
    public.url = post_url(request, post)
    return public


def _paginate(
    request: Request, response: Response, page: posts.PostPage | posts.SearchResults
) -> list[PostPublic]:
    """Advertise neighbouring pages in a Link header; the body stays a plain array."""
    links = []
    if page.has_previous:
        links.append(f'<{request.url.include_query_params(page=page.number - 1)}>; rel="prev"')
    if page.has_next:
        links.append(f'<{request.url.include_query_params(page=page.number + 1)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return [_public(request, post) for post in page.posts]


# ---------------------------------------------------------------- tokens


@router.post("/token", response_model=Token, responses=AUTH | THROTTLED | BODY)
def issue_token(
    request: Request, db: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Any:
    """Exchange a username and password for a bearer token (OAuth2 password flow). The
    username may be written in any case."""
    try:
        with _throttled():
            logged_in = accounts.log_in(
                db,
                username=form.username,
                password=form.password,
                client_ip=client_ip(request),
                kind="api",
            )
    except accounts.InvalidLoginError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, accounts.INVALID_LOGIN, {"WWW-Authenticate": "Bearer"}
        ) from exc
    return Token(access_token=logged_in.token)


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH)
def revoke_token(db: SessionDep, user: ApiUser, token: ApiToken) -> None:
    """Revoke the token used for this request."""
    if token:
        sessions.end_session(db, token=token)


# ---------------------------------------------------------------- users


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=CONFLICT | BODY | REGISTRATIONS_THROTTLED,
)
def create_user(data: UserCreate, request: Request, db: SessionDep) -> Any:
    """Create an account. Usernames are unique whatever their case. A name or email address
    that belongs to another account gets 409, the same answer for either; each address may
    register a limited number of times an hour (429 past that)."""
    with _throttled(TOO_MANY_REGISTRATIONS):
        return users.create_user(db, data=data, client_ip=client_ip(request))


@router.get("/users/me", response_model=UserPrivate, responses=AUTH)
def read_me(user: ApiUser) -> Any:
    """The authenticated user, email included."""
    return user


USER_UPDATE_RESPONSES = AUTH | WRONG_PASSWORD | CONFLICT | BODY | THROTTLED


@router.patch("/users/me", response_model=UserPrivate, responses=USER_UPDATE_RESPONSES)
def update_me(data: UserUpdate, request: Request, db: SessionDep, user: ApiUser) -> Any:
    """Change the authenticated user's username or email. A new email address needs
    `current_password` in the body (403 without the right one; checks are throttled like
    logins, 429)."""
    with _throttled():
        return users.update_user(db, user=user, data=data, client_ip=client_ip(request))


@router.put(
    "/users/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTH | WRONG_PASSWORD | BODY | THROTTLED,
)
def change_my_password(
    data: PasswordChange, request: Request, db: SessionDep, user: ApiUser, token: ApiToken
) -> None:
    """Change the password; every other session and token is revoked. A wrong
    `current_password` gets 403, and the checks are throttled like logins (429)."""
    with _throttled():
        accounts.confirm_password(
            db, user=user, password=data.current_password, client_ip=client_ip(request)
        )
    accounts.set_password(db, user=user, password=data.new_password, keep_token=token)


@router.put("/users/me/picture", response_model=UserPrivate, responses=AUTH | BODY | TOO_LARGE)
@body_limit(UPLOAD_BODY_LIMIT)
def upload_my_picture(
    picture: Annotated[bytes, File(description="JPEG, PNG, WebP or GIF")],
    db: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
) -> Any:
    """Replace the profile picture (cropped to a square and resized)."""
    try:
        jpeg = media.make_avatar(picture)
    except media.PictureError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return users.set_profile_picture(db, user=user, jpeg=jpeg, avatar_dir=settings.avatar_dir)


DELETE_USER_RESPONSES = AUTH | WRONG_PASSWORD | BODY | THROTTLED


def _delete(
    request: Request, db: SessionDep, settings: SettingsDep, user: User, password: str
) -> None:
    with _throttled():
        users.delete_user(
            db,
            user=user,
            password=password,
            client_ip=client_ip(request),
            avatar_dir=settings.avatar_dir,
        )


@router.delete("/users/me", status_code=status.HTTP_204_NO_CONTENT, responses=DELETE_USER_RESPONSES)
def delete_me(
    data: PasswordConfirmation,
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
) -> None:
    """Delete the authenticated user, their posts and their picture. The body carries the
    account's password, `{"password": "…"}` (403 if wrong; throttled like logins, 429)."""
    _delete(request, db, settings, user, data.password)


@router.get(
    "/users/me/posts",
    response_model=list[PostPublic],
    responses=AUTH | INVALID | {200: {"headers": LIST_HEADERS}},
)
def list_my_posts(
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    page: PageNumber = 1,
    per_page: PerPage = None,
) -> Any:
    """Your own posts in every status: drafts and scheduled posts first, then newest first."""
    listing = posts.list_posts(
        db,
        page=page,
        per_page=per_page or settings.page_size,
        author_id=user.id,
        include_unpublished=True,
    )
    return _paginate(request, response, listing)


@router.get(
    "/users/{user_id}",
    response_model=UserPublic,
    responses=NOT_FOUND | INVALID,
    dependencies=[Public],
)
def read_user(user_id: UserId, db: SessionDep) -> Any:
    """Read a user's public profile."""
    return users.get_existing_user(db, user_id=user_id)


def _only_self(user_id: int, db: SessionDep, user: User) -> User:
    target = users.get_existing_user(db, user_id=user_id)
    if target.id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "You may only change your own account")
    return target


@router.patch(
    "/users/{user_id}",
    response_model=UserPrivate,
    responses=USER_UPDATE_RESPONSES | SELF_WITH_PASSWORD | NOT_FOUND,
)
def update_user(
    user_id: UserId, data: UserUpdate, request: Request, db: SessionDep, user: ApiUser
) -> Any:
    """Change a user's username or email (only your own; a new email address needs
    `current_password`, as for /users/me)."""
    target = _only_self(user_id, db, user)
    with _throttled():
        return users.update_user(db, user=target, data=data, client_ip=client_ip(request))


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=DELETE_USER_RESPONSES | SELF_WITH_PASSWORD | NOT_FOUND,
)
def delete_user(
    user_id: UserId,
    data: PasswordConfirmation,
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
) -> None:
    """Delete a user and all their posts (only yourself; the body carries your password,
    `{"password": "…"}`, as for /users/me)."""
    _delete(request, db, settings, _only_self(user_id, db, user), data.password)


@router.get(
    "/users/{user_id}/posts",
    dependencies=[Public],
    response_model=list[PostPublic],
    responses=NOT_FOUND | INVALID | {200: {"headers": LIST_HEADERS}},
)
def list_user_posts(
    user_id: UserId,
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
    per_page: PerPage = None,
) -> Any:
    """List one user's posts, newest first."""
    author = users.get_existing_user(db, user_id=user_id)
    listing = posts.list_posts(
        db, page=page, per_page=per_page or settings.page_size, author_id=author.id
    )
    return _paginate(request, response, listing)


# ---------------------------------------------------------------- posts


@router.get(
    "/posts",
    dependencies=[Public],
    response_model=list[PostPublic],
    responses=NOT_FOUND | INVALID | {200: {"headers": LIST_HEADERS}},
)
def list_posts(
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
    per_page: PerPage = None,
    q: Annotated[
        str | None,
        Query(
            description=(
                f"Full-text search: the newest {search.CANDIDATES:,} matches, ranked by "
                "relevance, not by date"
            )
        ),
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=80, description="Only posts carrying this tag (its slug)")
    ] = None,
) -> Any:
    """List published posts, newest first; search them with `q`, or filter by `tag`."""
    size = per_page or settings.page_size
    if q is not None:
        return _paginate(
            request, response, posts.search_posts(db, query=q, page=page, per_page=size)
        )
    tag_id = tags.get_tag(db, slug=tag).id if tag is not None else None
    listing = posts.list_posts(db, page=page, per_page=size, tag_id=tag_id)
    return _paginate(request, response, listing)


@router.get("/tags", response_model=list[TagPublic], dependencies=[Public])
def list_tags(db: SessionDep) -> Any:
    """Every tag with at least one published post, and how many it has."""
    return [
        TagPublic(name=entry.tag.name, slug=entry.tag.slug, post_count=entry.post_count)
        for entry in tags.list_tags(db)
    ]


@router.post(
    "/posts",
    status_code=status.HTTP_201_CREATED,
    response_model=PostPublic,
    responses=AUTH | BODY,
)
def create_post(request: Request, data: PostCreate, db: SessionDep, user: ApiUser) -> Any:
    """Write a post as the authenticated user: published (the default), a draft, or
    scheduled for a future `published_at`."""
    return _public(request, posts.create_post(db, data=data, author=user))


@router.get(
    "/posts/{post_id}",
    response_model=PostPublic,
    responses=NOT_FOUND | INVALID,
    dependencies=[Public],
)
def read_post(
    request: Request, post_id: PostId, db: SessionDep, response: Response, viewer: MaybeApiUser
) -> Any:
    """Read one post (a draft or a scheduled one only with its author's token). Its ETag
    may be sent back in If-Match when editing it."""
    post = posts.get_post(db, post_id=post_id, user=viewer)
    response.headers["ETag"] = post_etag(post)
    response.headers["Last-Modified"] = format_datetime(post.updated_at, usegmt=True)
    return _public(request, post)


IfMatch = Annotated[
    str | None, Header(description="The post's ETag; if it changed since, the edit gets 412")
]
AUTHOR_ONLY = AUTH | FORBIDDEN | NOT_FOUND | INVALID
EDIT_RESPONSES = (
    AUTHOR_ONLY
    | BODY
    | {
        409: _error("The post changed since the version being edited"),
        412: _error("The post changed since the ETag sent in If-Match"),
    }
)


def _edit(
    request: Request,
    db: SessionDep,
    user: User,
    post_id: int,
    data: PostReplace | PostUpdate,
    if_match: str | None,
    response: Response,
) -> PostPublic:
    """The shared body of PUT and PATCH: author check, precondition, then the update."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    if if_match is not None and not _etag_matches(post_etag(post), if_match):
        raise HTTPException(
            status.HTTP_412_PRECONDITION_FAILED, "The post has changed since you fetched it"
        )
    post = posts.update_post(db, post=post, data=data)
    response.headers["ETag"] = post_etag(post)
    return _public(request, post)


def post_etag(post: Post) -> str:
    """A strong validator for a post's API representation: its version and the status
    shown (which changes without a write when a scheduled post's moment comes), plus the
    author fields shown with it (they change without touching the post)."""
    author = hashlib.blake2b(
        f"{post.author.username}\0{post.author.image_file}".encode(), digest_size=6
    ).hexdigest()
    return f'"p{post.id}v{post.version}{post.status_now[0]}a{author}"'


def _etag_matches(current: str, if_match: str) -> bool:
    # If-Match uses the strong comparison: a weak tag never matches.
    candidates = {identity_tag(tag.strip()) for tag in if_match.split(",")}
    return "*" in candidates or current in candidates


@router.put("/posts/{post_id}", response_model=PostPublic, responses=EDIT_RESPONSES)
def replace_post(
    post_id: PostId,
    data: PostReplace,
    request: Request,
    db: SessionDep,
    user: ApiUser,
    response: Response,
    if_match: IfMatch = None,
) -> Any:
    """Replace a post's title and content, and the status, schedule, tags or slug sent
    (its author only)."""
    return _edit(request, db, user, post_id, data, if_match, response)


@router.patch("/posts/{post_id}", response_model=PostPublic, responses=EDIT_RESPONSES)
def update_post(
    request: Request,
    post_id: PostId,
    data: PostUpdate,
    db: SessionDep,
    user: ApiUser,
    response: Response,
    if_match: IfMatch = None,
) -> Any:
    """Change some of a post's fields (its author only)."""
    return _edit(request, db, user, post_id, data, if_match, response)


@router.post(
    "/posts/{post_id}/review-links",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewLinkPublic,
    responses=AUTHOR_ONLY | {409: _error("The post is already public")},
)
def create_review_link(request: Request, post_id: PostId, db: SessionDep, user: ApiUser) -> Any:
    """A link that shows this unpublished post to whoever holds it, for 7 days (its author
    only). The URL is shown once: only a hash of its token is kept."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    link, token = posts.create_review_link(db, post=post)
    url = str(url_for(request, "review", token=token))
    return ReviewLinkPublic(id=link.id, url=url, expires_at=link.expires_at)


@router.delete(
    "/posts/{post_id}/review-links/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=AUTHOR_ONLY,
)
def revoke_review_link(post_id: PostId, link_id: PostId, db: SessionDep, user: ApiUser) -> None:
    """Revoke a review link (its post's author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    posts.revoke_review_link(db, post=post, link_id=link_id)


@router.delete("/posts/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=AUTHOR_ONLY)
def delete_post(post_id: PostId, db: SessionDep, user: ApiUser) -> None:
    """Delete a post (its author only)."""
    post = posts.get_post(db, post_id=post_id, user=user, check_author=True)
    posts.delete_post(db, post=post)
