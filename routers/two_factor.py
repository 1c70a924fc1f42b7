"""Two-factor sign-in pages: the code step of a login, and turning it on and off from the
account page (set-up with a QR code, recovery codes)."""

from fastapi import APIRouter, Depends, Request, Response, status

from database import SessionDep, reading
from models import User
from services import accounts, two_factor
from services.errors import PendingLoginError, ThrottledError, WrongCodeError, WrongPasswordError
from web.cookies import PENDING_LOGIN_COOKIE, SESSION_COOKIE, clear_cookie
from web.deps import RequiredUser, SettingsDep, get_current_user
from web.forms import Errors, FormText, too_many_failures
from web.login import start_session
from web.middleware import BodyLimitedRoute
from web.privacy import mark_personal
from web.security import CsrfProtected, client_ip, safe_next
from web.templating import redirect, render
from web.urls import url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)

LOGIN_EXPIRED = "Your log-in took too long. Please log in again."
WRONG_PASSWORD = "That is not your current password"
SECRET_GROUP = 4


# ---------------------------------------------------------------- the code step of a login


def _pending_user(request: Request, db: SessionDep) -> User | None:
    """Whose login this browser has waiting for a code, if any."""
    token = request.cookies.get(PENDING_LOGIN_COOKIE)
    if not token:
        return None
    mark_personal(request)
    reading(db)
    user = accounts.pending_login_user(db, token=token)
    db.commit()
    return user


def _login_again(request: Request, next_path: str) -> Response:
    target = url_for(request, "login")
    if next_path:
        target = target.include_query_params(next=next_path)
    response = redirect(request, str(target), LOGIN_EXPIRED, "error")
    if PENDING_LOGIN_COOKIE in request.cookies:
        clear_cookie(response, PENDING_LOGIN_COOKIE)
    return response


def _code_form(request: Request, next_path: str, errors: Errors, status_code: int) -> Response:
    context = {"values": {"next": next_path}, "errors": errors}
    return render(request, "auth/login_code.html", context, status_code)


@router.get("/login/code", name="login_code")
def login_code_form(request: Request, db: SessionDep, next: str = "") -> Response:
    """The second step of a login: a code from the authenticator app, or a recovery code."""
    if _pending_user(request, db) is None:
        return _login_again(request, next)
    return _code_form(request, next, {}, status.HTTP_200_OK)


@router.post("/login/code", name="login_code_submit", dependencies=[CsrfProtected])
def login_code(
    request: Request, db: SessionDep, code: FormText = "", next: FormText = ""
) -> Response:
    """Check the code against the pending login and start the session (throttled like
    passwords; each code works once)."""
    token = request.cookies.get(PENDING_LOGIN_COOKIE)
    if not token:
        return _login_again(request, next)
    try:
        logged_in, kind = accounts.complete_login(
            db, token=token, code=code, client_ip=client_ip(request)
        )
    except PendingLoginError:
        return _login_again(request, next)
    except ThrottledError as exc:
        errors = {"code": too_many_failures(exc)}
        return _code_form(request, next, errors, status.HTTP_429_TOO_MANY_REQUESTS)
    except WrongCodeError as exc:
        return _code_form(request, next, {"code": exc.message}, status.HTTP_400_BAD_REQUEST)
    message = f"Welcome back, {logged_in.user.username}!"
    if kind == "recovery":
        left = two_factor.recovery_codes_left(db, user=logged_in.user)
        message += f" You used a recovery code: {left} left."
    response = redirect(request, safe_next(next), message)
    return start_session(request, db, response, logged_in.token)


# ---------------------------------------------------------------- the account's settings


def _grouped(secret: str) -> str:
    """The key as people copy it: in groups of four."""
    return " ".join(secret[i : i + SECRET_GROUP] for i in range(0, len(secret), SECRET_GROUP))


def _two_factor_page(
    request: Request,
    db: SessionDep,
    site_name: str,
    user: User,
    status_code: int = 200,
    **errors: Errors,
) -> Response:
    context: dict[str, object] = {
        "confirm_errors": {},
        "disable_errors": {},
        "codes_errors": {},
        **errors,
    }
    if user.two_factor_enabled:
        reading(db)
        context["codes_left"] = two_factor.recovery_codes_left(db, user=user)
        db.commit()
    elif user.totp_pending_secret:
        uri = two_factor.provisioning_uri(
            user.totp_pending_secret, username=user.username, issuer=site_name
        )
        context["qr_code"] = two_factor.qr_code_svg(uri, title=f"QR code for {site_name}")
        context["secret"] = _grouped(user.totp_pending_secret)
        context["issuer"] = site_name
    return render(request, "account/two_factor.html", context, status_code)


def _recovery_codes_page(request: Request, codes: list[str], message: str) -> Response:
    """The recovery codes, shown this once: only their hashes are kept."""
    return render(request, "account/recovery_codes.html", {"codes": codes, "message": message})


@router.get("/account/two-factor", name="two_factor")
def two_factor_settings(
    request: Request, db: SessionDep, settings: SettingsDep, user: RequiredUser
) -> Response:
    """Two-factor sign-in: set it up, or with it on, new recovery codes or turning it off."""
    return _two_factor_page(request, db, settings.site_name, user)


@router.post("/account/two-factor/setup", name="two_factor_setup", dependencies=[CsrfProtected])
def two_factor_setup(request: Request, db: SessionDep, user: RequiredUser) -> Response:
    """Make a new secret for the authenticator app, kept on the server until confirmed."""
    two_factor.begin_setup(db, user=user)
    return redirect(request, str(url_for(request, "two_factor")))


@router.post("/account/two-factor/confirm", name="two_factor_confirm", dependencies=[CsrfProtected])
def two_factor_confirm(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: RequiredUser,
    code: FormText = "",
) -> Response:
    """Turn two-factor sign-in on with a code from the app; other sessions end."""
    try:
        codes = two_factor.confirm_setup(
            db,
            user=user,
            code=code,
            client_ip=client_ip(request),
            keep_token=request.cookies.get(SESSION_COOKIE),
        )
    except ThrottledError as exc:
        errors = {"code": too_many_failures(exc)}
        return _two_factor_page(request, db, settings.site_name, user, 429, confirm_errors=errors)
    except WrongCodeError as exc:
        errors = {"code": exc.message}
        return _two_factor_page(request, db, settings.site_name, user, 400, confirm_errors=errors)
    message = "Two-factor sign-in is on. Other sessions have been logged out."
    return _recovery_codes_page(request, codes, message)


@router.post(
    "/account/two-factor/recovery-codes",
    name="two_factor_recovery_codes",
    dependencies=[CsrfProtected],
)
def two_factor_recovery_codes(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: RequiredUser,
    current_code: FormText = "",
) -> Response:
    """Replace the recovery codes, once a code proves the app (or a recovery code) is at
    hand; other sessions end."""
    try:
        two_factor.check_code(db, user=user, code=current_code, client_ip=client_ip(request))
    except ThrottledError as exc:
        errors = {"current_code": too_many_failures(exc)}
        return _two_factor_page(request, db, settings.site_name, user, 429, codes_errors=errors)
    except WrongCodeError as exc:
        errors = {"current_code": exc.message}
        return _two_factor_page(request, db, settings.site_name, user, 400, codes_errors=errors)
    keep = request.cookies.get(SESSION_COOKIE)
    codes = two_factor.regenerate_recovery_codes(db, user=user, keep_token=keep)
    message = "You have new recovery codes; the old ones no longer work."
    return _recovery_codes_page(request, codes, message + " Other sessions have been logged out.")


@router.post("/account/two-factor/disable", name="two_factor_disable", dependencies=[CsrfProtected])
def two_factor_disable(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: RequiredUser,
    password: FormText = "",
    code: FormText = "",
) -> Response:
    """Turn two-factor sign-in off: needs the password and a code; other sessions end."""
    refusal = _disable_refusal(request, db, user, password, code)
    if refusal:
        status_code, errors = refusal
        return _two_factor_page(
            request, db, settings.site_name, user, status_code, disable_errors=errors
        )
    two_factor.disable(db, user=user, keep_token=request.cookies.get(SESSION_COOKIE))
    message = "Two-factor sign-in is off. Other sessions have been logged out."
    return redirect(request, str(url_for(request, "account")), message)


def _disable_refusal(
    request: Request, db: SessionDep, user: User, password: str, code: str
) -> tuple[int, Errors] | None:
    """Why the password or the code does not allow turning two-factor sign-in off (the
    status and the form's errors), if it does not."""
    address = client_ip(request)
    try:
        accounts.confirm_password(db, user=user, password=password, client_ip=address)
    except WrongPasswordError:
        return status.HTTP_400_BAD_REQUEST, {"password": WRONG_PASSWORD}
    except ThrottledError as exc:
        return status.HTTP_429_TOO_MANY_REQUESTS, {"password": too_many_failures(exc)}
    try:
        two_factor.check_code(db, user=user, code=code, client_ip=address)
    except WrongCodeError as exc:
        return status.HTTP_400_BAD_REQUEST, {"code": exc.message}
    except ThrottledError as exc:
        return status.HTTP_429_TOO_MANY_REQUESTS, {"code": too_many_failures(exc)}
    return None
