"""Account forms: register, log in and out, and the account page (password reset and
verification links: routers.recovery)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from starlette.datastructures import UploadFile

from database import SessionDep
from models import User
from schemas import (
    PasswordChange,
    UserCreate,
    UserUpdate,
    known_timezones,
)
from services import (
    accounts,
    invitations,
    media,
    sessions,
    users,
    verification,
)
from services.errors import (
    DuplicateError,
    SuspendedError,
    ThrottledError,
    WrongPasswordError,
)
from services.text import duration
from web.cookies import SESSION_COOKIE, clear_cookie
from web.deps import CurrentUser, RequiredUser, SettingsDep, get_current_user
from web.forms import FormText, too_many_failures, validate, validate_confirmed
from web.login import end_browser_session, finish_login, login_response
from web.media import StorageDep
from web.middleware import UPLOAD_BODY_LIMIT, BodyLimitedRoute, RequestTooLarge, body_limit
from web.security import CsrfProtected, client_ip, safe_next, verify_csrf
from web.templating import redirect, render
from web.urls import mail_site, url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)


# ---------------------------------------------------------------- register, log in, log out


def _register_page(
    request: Request, values: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(request, "auth/register.html", {"values": values, "errors": errors}, status_code)


def _refused(request: Request, exc: invitations.RegistrationRefusedError, code: int) -> Response:
    return render(request, "auth/register.html", {"refused": exc.message}, code)


@router.get("/register", name="register")
def register_form(
    request: Request, db: SessionDep, settings: SettingsDep, user: CurrentUser, invitation: str = ""
) -> Response:
    """Sign-up form, or why there is none (registration closed, or by invitation and the
    link is not live); an invitation fills in the address it was sent to."""
    if user:
        return redirect(request, url_for(request, "home"))
    try:
        found = invitations.check_mode(db, mode=settings.registration_mode, token=invitation)
    except invitations.RegistrationRefusedError as exc:
        return _refused(request, exc, status.HTTP_200_OK)
    values = {"invitation": invitation, "email": found.email} if found else {}
    return _register_page(request, values, {})


@router.post("/register", name="register_submit", dependencies=[CsrfProtected])
def register(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    username: FormText = "",
    email: FormText = "",
    password: FormText = "",
    confirm_password: FormText = "",
    invitation: FormText = "",
) -> Response:
    """Create an account and log in."""
    values = {"username": username, "email": email, "invitation": invitation}
    result = validate_confirmed(
        UserCreate, {**values, "password": password}, password, confirm_password
    )
    if isinstance(result, dict):
        return _register_page(request, values, result, 422)
    try:
        user = users.create_user(
            db,
            data=result,
            client_ip=client_ip(request),
            site=mail_site(request),
            mode=settings.registration_mode,
        )
    except invitations.RegistrationRefusedError as exc:
        return _refused(request, exc, status.HTTP_403_FORBIDDEN)
    except DuplicateError as exc:
        # One message for the form, naming neither field (see users.UNUSABLE).
        return _register_page(request, values, {"form": exc.message}, status.HTTP_409_CONFLICT)
    except ThrottledError as exc:
        message = (
            f"Too many accounts were created from here. Try again in {duration(exc.retry_after)}."
        )
        return _register_page(request, values, {"form": message}, 429)
    if user.email_verified:
        message = f"Welcome to Inkwell, {user.username}!"
    else:
        message = (
            f"Welcome to Inkwell, {user.username}! We have sent you a link to confirm {user.email}."
        )
    return finish_login(request, db, user, message, "/")


@router.get("/login", name="login")
def login_form(request: Request, user: CurrentUser, next: str = "") -> Response:
    """Log-in form."""
    if user:
        return redirect(request, safe_next(next))
    return render(request, "auth/login.html", {"values": {"next": next}, "errors": {}})


@router.post("/login", name="login_submit", dependencies=[CsrfProtected])
def login(
    request: Request,
    db: SessionDep,
    username: FormText = "",
    password: FormText = "",
    next: FormText = "",
) -> Response:
    """Check the credentials, slowing down and then refusing repeated failures."""
    values = {"username": username, "next": next}
    try:
        result = accounts.log_in(
            db, username=username, password=password, client_ip=client_ip(request)
        )
    except ThrottledError as exc:
        context = {"values": values, "errors": {"form": too_many_failures(exc)}}
        return render(request, "auth/login.html", context, status.HTTP_429_TOO_MANY_REQUESTS)
    except accounts.InvalidLoginError:
        context = {"values": values, "errors": {"form": accounts.INVALID_LOGIN}}
        return render(request, "auth/login.html", context, status.HTTP_400_BAD_REQUEST)
    except SuspendedError:
        context = {"values": values, "errors": {"form": SuspendedError.message}}
        return render(request, "auth/login.html", context, status.HTTP_403_FORBIDDEN)
    return login_response(request, db, result, f"Welcome back, {result.user.username}!", next)


@router.post("/logout", name="logout", dependencies=[CsrfProtected])
def logout(request: Request, db: SessionDep) -> Response:
    """End this browser's session on the server."""
    end_browser_session(request, db)
    response = redirect(request, url_for(request, "home"), "You have been logged out.")
    clear_cookie(response, SESSION_COOKIE)
    return response


# ---------------------------------------------------------------- the account page

WRONG_PASSWORD = "That is not your current password"
EMAIL_NEEDS_PASSWORD = "Enter your current password to change the email address"


def _account_page(
    request: Request, user: User, status_code: int = 200, **sections: object
) -> Response:
    context = {
        "values": {"username": user.username, "email": user.email},
        "errors": {},
        "password_errors": {},
        "picture_error": None,
        "timezone_error": None,
        "timezone_value": None,
        "timezones": sorted(known_timezones()),
        **sections,
    }
    return render(request, "account/account.html", context, status_code)


@router.get("/account", name="account")
def account(request: Request, user: RequiredUser) -> Response:
    """Profile, picture, password and sessions."""
    return _account_page(request, user)


@router.post("/account", name="account_update", dependencies=[CsrfProtected])
def update_account(
    request: Request,
    db: SessionDep,
    user: RequiredUser,
    username: FormText = "",
    email: FormText = "",
    password: FormText = "",
) -> Response:
    """Change username and email; a new email address needs the current password."""
    values = {"username": username, "email": email}
    result = validate(UserUpdate, {**values, "current_password": password})
    if isinstance(result, dict):
        # The form names the current password just "password" (the password section of the
        # same page has its own "current_password" field).
        errors = {("password" if k == "current_password" else k): v for k, v in result.items()}
        return _account_page(request, user, 422, values=values, errors=errors)
    try:
        users.update_user(
            db, user=user, data=result, client_ip=client_ip(request), site=mail_site(request)
        )
    except DuplicateError as exc:
        errors = {"form": exc.message}
        return _account_page(request, user, status.HTTP_409_CONFLICT, values=values, errors=errors)
    except WrongPasswordError as exc:
        missing = str(exc) == accounts.PASSWORD_NEEDED
        message = EMAIL_NEEDS_PASSWORD if missing else WRONG_PASSWORD
        return _account_page(request, user, 422, values=values, errors={"password": message})
    except ThrottledError as exc:
        errors = {"password": too_many_failures(exc)}
        return _account_page(request, user, 429, values=values, errors=errors)
    message = "Your account has been updated."
    if user.pending_email and user.pending_email == result.email:
        message += f" We have sent a link to {user.pending_email}: it becomes your address"
        message += " once you follow it."
    return redirect(request, url_for(request, "account"), message)


@router.post("/account/timezone", name="account_timezone", dependencies=[CsrfProtected])
def update_timezone(
    request: Request, db: SessionDep, user: RequiredUser, timezone: FormText = ""
) -> Response:
    """Change the time zone schedules are entered and shown in."""
    result = validate(UserUpdate, {"timezone": timezone})
    if isinstance(result, dict):
        error = "Choose a time zone from the list, such as Europe/Paris"
        return _account_page(request, user, 422, timezone_error=error, timezone_value=timezone)
    users.update_user(
        db, user=user, data=result, client_ip=client_ip(request), site=mail_site(request)
    )
    return redirect(request, url_for(request, "account"), "Your time zone has been saved.")


@router.post("/account/password", name="account_password", dependencies=[CsrfProtected])
def change_password(
    request: Request,
    db: SessionDep,
    user: RequiredUser,
    current_password: FormText = "",
    new_password: FormText = "",
    confirm_password: FormText = "",
) -> Response:
    """Change the password; every other session ends."""
    fields = {"current_password": current_password, "new_password": new_password}
    result = validate_confirmed(PasswordChange, fields, new_password, confirm_password)
    if isinstance(result, dict):
        return _account_page(request, user, 422, password_errors=result)
    try:
        accounts.confirm_password(
            db, user=user, password=current_password, client_ip=client_ip(request)
        )
    except WrongPasswordError:
        errors = {"current_password": WRONG_PASSWORD}
        return _account_page(request, user, 422, password_errors=errors)
    except ThrottledError as exc:
        errors = {"current_password": too_many_failures(exc)}
        return _account_page(request, user, 429, password_errors=errors)
    keep = request.cookies.get(SESSION_COOKIE)
    accounts.set_password(db, user=user, password=result.new_password, keep_token=keep)
    message = "Your password has been changed. Other sessions have been logged out."
    return redirect(request, url_for(request, "account"), message)


@dataclass(frozen=True)
class PictureUpload:
    data: bytes | None = None
    error: str | None = None


async def read_picture_form(request: Request) -> PictureUpload:
    """Parse the upload form here, so an oversize body becomes a form error, not a bare 413.

    The CSRF token is checked on the parsed form; nothing else reads the body.
    """
    try:
        form = await request.form(max_files=1, max_fields=4)
    except RequestTooLarge:
        return PictureUpload(error=_too_large_message())
    try:
        await verify_csrf(request)
        picture = form.get("picture")
        if not isinstance(picture, UploadFile) or not picture.filename:
            return PictureUpload(error="Choose a picture to upload.")
        return PictureUpload(data=media.read_limited(picture.file))
    except media.PictureError as exc:
        return PictureUpload(error=str(exc))
    finally:
        await form.close()


def _too_large_message() -> str:
    return f"The picture is larger than {media.MAX_PICTURE_BYTES // (1024 * 1024)} MB."


@router.post("/account/picture", name="account_picture")
@body_limit(UPLOAD_BODY_LIMIT)
def upload_picture(
    request: Request,
    db: SessionDep,
    storage: StorageDep,
    user: RequiredUser,
    upload: Annotated[PictureUpload, Depends(read_picture_form)],
) -> Response:
    """Replace the profile picture."""
    if upload.data is None:
        status_code = 413 if upload.error == _too_large_message() else 422
        return _account_page(request, user, status_code, picture_error=upload.error)
    try:
        jpeg = media.make_avatar(upload.data)
    except media.PictureError as exc:
        return _account_page(request, user, 422, picture_error=str(exc))
    users.set_profile_picture(db, user=user, jpeg=jpeg, storage=storage)
    return redirect(request, url_for(request, "account"), "Your picture has been updated.")


@router.post("/account/logout-everywhere", name="logout_everywhere", dependencies=[CsrfProtected])
def logout_everywhere(request: Request, db: SessionDep, user: RequiredUser) -> Response:
    """End every session and API token of this account, this one included."""
    sessions.end_all_sessions(db, user=user)
    message = "You have been logged out everywhere."
    response = redirect(request, url_for(request, "login"), message)
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.get("/account/delete", name="account_delete")
def delete_account_form(request: Request, user: RequiredUser) -> Response:
    """Ask for confirmation before deleting the account."""
    return render(request, "account/delete.html", {"errors": {}})


@router.post("/account/delete", name="account_delete_submit", dependencies=[CsrfProtected])
def delete_account(
    request: Request,
    db: SessionDep,
    storage: StorageDep,
    user: RequiredUser,
    password: FormText = "",
) -> Response:
    """Delete the account and everything in it, once the password confirms it."""
    try:
        users.delete_user(
            db,
            user=user,
            password=password,
            client_ip=client_ip(request),
            storage=storage,
        )
    except WrongPasswordError:
        errors = {"password": "That is not your password"}
        return render(request, "account/delete.html", {"errors": errors}, 422)
    except ThrottledError as exc:
        errors = {"password": too_many_failures(exc)}
        return render(request, "account/delete.html", {"errors": errors}, 429)
    message = "Your account and your posts have been deleted."
    response = redirect(request, url_for(request, "home"), message)
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.post("/account/verification", name="account_verification", dependencies=[CsrfProtected])
def resend_verification(request: Request, db: SessionDep, user: RequiredUser) -> Response:
    """Mail a fresh verification link to the address waiting for one (a few an hour)."""
    try:
        email = verification.send_again(db, user=user, site=mail_site(request))
    except ThrottledError as exc:
        message = (
            f"Links were sent several times already. Try again in {duration(exc.retry_after)}."
        )
        return redirect(request, url_for(request, "account"), message, "error")
    message = f"We have sent a new link to {email}." if email else "Your address is verified."
    return redirect(request, url_for(request, "account"), message)
