"""The JSON API for password reset by mail."""

from fastapi import APIRouter, HTTPException, Request, status

from database import SessionDep
from routers.api.common import BODY, error_response, throttled, too_many
from schemas import PasswordResetConfirmation, PasswordResetRequest
from services import password_reset
from services.errors import InvalidLinkError
from web.middleware import BodyLimitedRoute
from web.security import client_ip
from web.urls import mail_site

router = APIRouter(route_class=BodyLimitedRoute)

TOO_MANY_RESETS = "Too many reset links asked for; try again later"
INVALID_LINK = "The link is unknown, used, expired or replaced by a newer one"


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    responses=BODY | too_many(TOO_MANY_RESETS),
)
def request_password_reset(data: PasswordResetRequest, request: Request, db: SessionDep) -> None:
    """Mail a password reset link to the account with this address, if there is one. The
    answer is 202 either way; the link's last path segment is the token for
    /api/password-reset/confirm, and works once, within an hour. Throttled per client
    address and per email address (429)."""
    with throttled(TOO_MANY_RESETS):
        password_reset.request_reset(
            db, email=data.email, client_ip=client_ip(request), site=mail_site(request)
        )


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=BODY | {400: error_response(INVALID_LINK)},
)
def confirm_password_reset(
    data: PasswordResetConfirmation, request: Request, db: SessionDep
) -> None:
    """Set a new password with the token from a reset link; every session and API token of
    the account ends. 400 for a token that is unknown, used, expired or replaced."""
    try:
        password_reset.reset_password(db, token=data.token, new_password=data.new_password)
    except InvalidLinkError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_LINK) from exc
