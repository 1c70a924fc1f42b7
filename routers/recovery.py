"""Recovering an account by mail: the password reset pages, and the email verification
links (services.password_reset, services.verification)."""

from fastapi import APIRouter, Depends, Request, Response, status

from database import SessionDep
from models import User
from schemas import PasswordResetConfirmation, PasswordResetRequest
from services import password_reset, verification
from services.errors import DuplicateError, InvalidLinkError, SuspendedError, ThrottledError
from services.text import duration
from web.deps import CurrentUser, get_current_user
from web.forms import FormText, validate, validate_confirmed
from web.login import finish_login
from web.middleware import BodyLimitedRoute
from web.security import CsrfProtected, client_ip
from web.templating import redirect, render
from web.urls import mail_site, url_for

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)


RESET_SENT = (
    "If an account has that address, we have sent a link to it. It works once, within an hour."
)


def _invalid_link(request: Request, *, reset: bool) -> Response:
    """The page for a link that is unknown, used, expired or replaced."""
    context = {
        "site_name": request.app.state.settings.site_name,
        "lifetime": "a reset link for an hour." if reset else "a confirmation link for 48 hours.",
        "again": "password_reset" if reset else "account",
        "again_label": "Ask for a new link" if reset else "Go to your account",
    }
    return render(request, "auth/link_invalid.html", context, status.HTTP_400_BAD_REQUEST)


@router.get("/password-reset", name="password_reset")
def password_reset_form(request: Request) -> Response:
    """Ask for a password reset link by email."""
    return render(request, "auth/password_reset_request.html", {"values": {}, "errors": {}})


@router.post("/password-reset", name="password_reset_submit", dependencies=[CsrfProtected])
def request_password_reset(request: Request, db: SessionDep, email: FormText = "") -> Response:
    """Mail a reset link if an account has the address; the same answer either way."""
    values = {"email": email}
    result = validate(PasswordResetRequest, values)
    if isinstance(result, dict):
        context = {"values": values, "errors": result}
        return render(request, "auth/password_reset_request.html", context, 422)
    try:
        password_reset.request_reset(
            db, email=result.email, client_ip=client_ip(request), site=mail_site(request)
        )
    except ThrottledError as exc:
        message = f"Too many links were asked for. Try again in {duration(exc.retry_after)}."
        context = {"values": values, "errors": {"form": message}}
        return render(request, "auth/password_reset_request.html", context, 429)
    return redirect(request, url_for(request, "login"), RESET_SENT)


def _reset_page(
    request: Request, token: str, account: User, errors: dict[str, str], status_code: int = 200
) -> Response:
    context = {"token": token, "account": account, "errors": errors}
    return render(request, "auth/password_reset_form.html", context, status_code)


@router.get("/password-reset/{token}", name="password_reset_form")
def password_reset_link(request: Request, db: SessionDep, token: str) -> Response:
    """The form a mailed reset link opens: choose a new password."""
    try:
        account = password_reset.check_link(db, token=token)
    except InvalidLinkError:
        return _invalid_link(request, reset=True)
    return _reset_page(request, token, account, {})


@router.post("/password-reset/{token}", name="password_reset_confirm", dependencies=[CsrfProtected])
def confirm_password_reset(
    request: Request,
    db: SessionDep,
    token: str,
    new_password: FormText = "",
    confirm_password: FormText = "",
) -> Response:
    """Set the new password, end every session and token of the account, and log in."""
    try:
        account = password_reset.check_link(db, token=token)
    except InvalidLinkError:
        return _invalid_link(request, reset=True)
    fields = {"token": token, "new_password": new_password}
    result = validate_confirmed(PasswordResetConfirmation, fields, new_password, confirm_password)
    if isinstance(result, dict):
        return _reset_page(request, token, account, result, 422)
    try:
        user = password_reset.reset_password(db, token=token, new_password=result.new_password)
    except InvalidLinkError:
        return _invalid_link(request, reset=True)
    message = "Your password has been changed, and every other session has been logged out."
    try:
        return finish_login(request, db, user, message, "/")
    except SuspendedError:
        # The new password stands for when the suspension is lifted; no session meanwhile.
        message = f"Your password has been changed. {SuspendedError.message}"
        return redirect(request, url_for(request, "login"), message, "error")


@router.get("/verify-email/{token}", name="verify_email")
def verify_email_link(request: Request, db: SessionDep, token: str) -> Response:
    """The page a mailed verification link opens: confirm the address with one button (a
    link alone changes nothing, as mail scanners follow links)."""
    try:
        account, email = verification.check_link(db, token=token)
    except InvalidLinkError:
        return _invalid_link(request, reset=False)
    context = {"token": token, "account": account, "email": email}
    return render(request, "auth/verify_email.html", context)


@router.post("/verify-email/{token}", name="verify_email_submit", dependencies=[CsrfProtected])
def verify_email(request: Request, db: SessionDep, user: CurrentUser, token: str) -> Response:
    """Confirm the address; a new one replaces the old, which is told."""
    target = url_for(request, "account") if user else url_for(request, "home")
    try:
        account = verification.verify(db, token=token, site=mail_site(request))
    except InvalidLinkError:
        return _invalid_link(request, reset=False)
    except DuplicateError as exc:
        return redirect(request, target, f"{exc.message}.", "error")
    return redirect(request, target, f"Thank you: {account.email} is confirmed.")
