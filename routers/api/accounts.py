"""The JSON API for accounts: tokens, registration, your account, users and their posts."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from database import SessionDep
from models import User
from routers.api.common import (
    AUTH,
    BODY,
    CONFLICT,
    INVALID,
    LIST_HEADERS,
    NOT_FOUND,
    OTP_NEEDED,
    OTP_WRONG,
    REGISTRATIONS_THROTTLED,
    SELF_WITH_PASSWORD,
    THROTTLED,
    TOKEN_REFUSED,
    TOO_LARGE,
    TOO_MANY_REGISTRATIONS,
    WRONG_PASSWORD,
    Responses,
    UserId,
    error_response,
    paginate,
    throttled,
)
from schemas import (
    PasswordChange,
    PasswordConfirmation,
    PostPublic,
    Token,
    UserCreate,
    UserPrivate,
    UserPublic,
    UserUpdate,
)
from services import accounts, listings, media, sessions, users
from services.errors import SuspendedError, WrongCodeError
from web.deps import ApiToken, ApiUser, Paging, SettingsDep
from web.media import StorageDep
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, body_limit
from web.privacy import Public
from web.security import client_ip
from web.urls import mail_site

router = APIRouter(route_class=BodyLimitedRoute)


# ---------------------------------------------------------------- tokens


OTP_MAX_LENGTH = 64
OtpField = Annotated[
    str | None,
    Form(
        max_length=OTP_MAX_LENGTH,
        description="For an account with two-factor sign-in: the current code from the "
        "authenticator app, or one of the recovery codes",
    ),
]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, {"WWW-Authenticate": "Bearer"})


@router.post("/token", response_model=Token, responses=TOKEN_REFUSED | THROTTLED | BODY)
def issue_token(
    request: Request,
    db: SessionDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    otp: OtpField = None,
) -> Any:
    """Exchange a username and password for a bearer token (OAuth2 password flow). The
    username may be written in any case. An account with two-factor sign-in also needs
    `otp`: a current code, or a recovery code (401 when missing, wrong or already used)."""
    try:
        with throttled():
            logged_in = accounts.issue_api_token(
                db,
                username=form.username,
                password=form.password,
                otp=otp,
                client_ip=client_ip(request),
            )
    except accounts.InvalidLoginError as exc:
        raise _unauthorized(accounts.INVALID_LOGIN) from exc
    except SuspendedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=SuspendedError.message) from exc
    except WrongCodeError as exc:
        raise _unauthorized(OTP_NEEDED if exc.missing else OTP_WRONG) from exc
    return Token(access_token=logged_in.token)


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH)
def revoke_token(db: SessionDep, user: ApiUser, token: ApiToken) -> None:
    """Revoke the token used for this request."""
    if token:
        sessions.end_session(db, token=token)


# ---------------------------------------------------------------- users

REGISTRATION_REFUSED: Responses = {
    403: error_response("Registration is closed, or by invitation and no live one was given")
}


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=CONFLICT | BODY | REGISTRATIONS_THROTTLED | REGISTRATION_REFUSED,
)
def create_user(data: UserCreate, request: Request, db: SessionDep, settings: SettingsDep) -> Any:
    """Create an account. Usernames are unique whatever their case. A name or email address
    that belongs to another account gets 409, the same answer for either; each address may
    register a limited number of times an hour (429 past that). While registration is
    closed, or by invitation and `invitation` is not the token of a live one, 403."""
    with throttled(TOO_MANY_REGISTRATIONS):
        return users.create_user(
            db,
            data=data,
            client_ip=client_ip(request),
            site=mail_site(request),
            mode=settings.registration_mode,
        )


@router.get("/users/me", response_model=UserPrivate, responses=AUTH)
def read_me(user: ApiUser) -> Any:
    """The authenticated user, email included."""
    return user


USER_UPDATE_RESPONSES = AUTH | WRONG_PASSWORD | CONFLICT | BODY | THROTTLED


@router.patch("/users/me", response_model=UserPrivate, responses=USER_UPDATE_RESPONSES)
def update_me(data: UserUpdate, request: Request, db: SessionDep, user: ApiUser) -> Any:
    """Change the authenticated user's username or email. A new email address needs
    `current_password` in the body (403 without the right one; checks are throttled like
    logins, 429), and becomes `pending_email` until the link mailed to it is followed."""
    with throttled():
        return users.update_user(
            db, user=user, data=data, client_ip=client_ip(request), site=mail_site(request)
        )


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
    with throttled():
        accounts.confirm_password(
            db, user=user, password=data.current_password, client_ip=client_ip(request)
        )
    accounts.set_password(db, user=user, password=data.new_password, keep_token=token)


@router.put("/users/me/picture", response_model=UserPrivate, responses=AUTH | BODY | TOO_LARGE)
@body_limit(UPLOAD_BODY_LIMIT)
def upload_my_picture(
    picture: Annotated[bytes, File(description="JPEG, PNG, WebP or GIF")],
    db: SessionDep,
    storage: StorageDep,
    user: ApiUser,
) -> Any:
    """Replace the profile picture (cropped to a square and resized)."""
    try:
        jpeg = media.make_avatar(picture)
    except media.PictureError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return users.set_profile_picture(db, user=user, jpeg=jpeg, storage=storage)


DELETE_USER_RESPONSES = AUTH | WRONG_PASSWORD | BODY | THROTTLED


def _delete(
    request: Request, db: SessionDep, storage: StorageDep, user: User, password: str
) -> None:
    with throttled():
        users.delete_user(
            db,
            user=user,
            password=password,
            client_ip=client_ip(request),
            storage=storage,
        )


@router.delete("/users/me", status_code=status.HTTP_204_NO_CONTENT, responses=DELETE_USER_RESPONSES)
def delete_me(
    data: PasswordConfirmation,
    request: Request,
    db: SessionDep,
    storage: StorageDep,
    user: ApiUser,
) -> None:
    """Delete the authenticated user, their posts and their picture. The body carries the
    account's password, `{"password": "…"}` (403 if wrong; throttled like logins, 429)."""
    _delete(request, db, storage, user, data.password)


@router.get(
    "/users/me/posts",
    response_model=list[PostPublic],
    responses=AUTH | INVALID | {200: {"headers": LIST_HEADERS}},
)
def list_my_posts(
    request: Request, response: Response, db: SessionDep, user: ApiUser, paging: Paging
) -> Any:
    """Your own posts in every status: drafts and scheduled posts first, then newest first."""
    listing = listings.list_posts(
        db,
        page=paging.number,
        per_page=paging.size,
        author_id=user.id,
        include_unpublished=True,
    )
    return paginate(request, response, listing)


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
    with throttled():
        return users.update_user(
            db, user=target, data=data, client_ip=client_ip(request), site=mail_site(request)
        )


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
    storage: StorageDep,
    user: ApiUser,
) -> None:
    """Delete a user and all their posts (only yourself; the body carries your password,
    `{"password": "…"}`, as for /users/me)."""
    _delete(request, db, storage, _only_self(user_id, db, user), data.password)


@router.get(
    "/users/{user_id}/posts",
    dependencies=[Public],
    response_model=list[PostPublic],
    responses=NOT_FOUND | INVALID | {200: {"headers": LIST_HEADERS}},
)
def list_user_posts(
    user_id: UserId, request: Request, response: Response, db: SessionDep, paging: Paging
) -> Any:
    """List one user's posts, newest first."""
    author = users.get_existing_user(db, user_id=user_id)
    listing = listings.list_posts(db, page=paging.number, per_page=paging.size, author_id=author.id)
    return paginate(request, response, listing)
