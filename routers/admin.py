"""The admin pages: accounts, posts, invitations and the log of what admins did. Every page
answers 404 to anyone but an admin, so that the section's existence is not disclosed; every
action on an account or a post asks for a reason on a confirmation page first, and every
action is logged (services.audit)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.orm import Session

from config import Settings, utcnow
from database import SessionDep
from models import AUDIT_REASON_MAX_LENGTH, Post, User
from schemas import InvitationCreate
from services import invitations, moderation, users
from services.errors import DuplicateError, NotFoundError
from web.deps import CurrentUser, PageNumber, SettingsDep, get_current_user
from web.forms import FormText, validate
from web.media import StorageDep
from web.middleware import BodyLimitedRoute
from web.security import CsrfProtected
from web.templating import redirect, render
from web.urls import mail_site, url_for


async def require_admin(user: CurrentUser) -> User:
    if user is None or not user.is_admin:
        raise NotFoundError
    return user


Admin = Annotated[User, Depends(require_admin)]
router = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)
UserAction = Literal["suspend", "unsuspend", "delete"]
PostAction = Literal["unpublish", "delete"]
SearchText = Annotated[str, Query(max_length=100)]
REASON_NEEDED = "Say why: the reason is kept in the admin log."
REASON_TOO_LONG = f"At most {AUDIT_REASON_MAX_LENGTH} characters."
DONE = {
    "suspend": "{} is suspended.",
    "unsuspend": "{} may log in again.",
    "delete": "{} is deleted.",
    "unpublish": "“{}” is a draft again.",
}


@router.get("", name="admin_users")
def admin_users(
    request: Request, db: SessionDep, admin: Admin, page: PageNumber = 1, q: SearchText = ""
) -> Response:
    """Accounts, newest first, searchable by name or address."""
    listing = moderation.list_users(db, search=q.strip(), page=page)
    page_url = url_for(request, "admin_users").include_query_params(q=q) if q else None
    context = {"listing": listing, "q": q, "page_url": page_url or url_for(request, "admin_users")}
    return render(request, "admin/users.html", context)


@router.get("/posts", name="admin_posts")
def admin_posts(request: Request, db: SessionDep, admin: Admin, page: PageNumber = 1) -> Response:
    """Every post, drafts included, newest first."""
    listing = moderation.list_posts(db, page=page)
    context = {"listing": listing, "page_url": url_for(request, "admin_posts")}
    return render(request, "admin/posts.html", context)


@router.get("/log", name="admin_log")
def admin_log(request: Request, db: SessionDep, admin: Admin, page: PageNumber = 1) -> Response:
    """What admins did, to whom, and why; newest first."""
    listing = moderation.audit_log(db, page=page)
    context = {"listing": listing, "page_url": url_for(request, "admin_log")}
    return render(request, "admin/log.html", context)


def _confirm(
    request: Request, target: User | Post, action: str, reason: str = "", error: str = ""
) -> Response:
    kind = "user" if isinstance(target, User) else "post"
    context = {
        "target": target,
        "kind": kind,
        "action": action,
        "values": {"reason": reason},
        "errors": {"reason": error} if error else {},
    }
    code = status.HTTP_422_UNPROCESSABLE_CONTENT if error else status.HTTP_200_OK
    return render(request, "admin/confirm.html", context, code)


def _reason_problem(reason: str) -> str:
    if not reason.strip():
        return REASON_NEEDED
    return REASON_TOO_LONG if len(reason) > AUDIT_REASON_MAX_LENGTH else ""


@router.get("/users/{user_id:int}/{action}", name="admin_user_action")
def confirm_user_action(
    request: Request, db: SessionDep, admin: Admin, user_id: int, action: UserAction
) -> Response:
    """Ask for a reason before suspending, restoring or deleting an account."""
    return _confirm(request, users.get_existing_user(db, user_id=user_id), action)


@router.post(
    "/users/{user_id:int}/{action}", name="admin_user_action_submit", dependencies=[CsrfProtected]
)
def user_action(
    request: Request,
    db: SessionDep,
    admin: Admin,
    storage: StorageDep,
    user_id: int,
    action: UserAction,
    reason: FormText = "",
) -> Response:
    """Suspend, restore or delete an account, with the reason logged."""
    user = users.get_existing_user(db, user_id=user_id)
    if problem := _reason_problem(reason):
        return _confirm(request, user, action, reason, problem)
    name = user.username
    if action == "suspend":
        moderation.suspend(db, admin=admin, user=user, reason=reason.strip())
    elif action == "unsuspend":
        moderation.unsuspend(db, admin=admin, user=user, reason=reason.strip())
    else:
        moderation.delete_user(db, admin=admin, user=user, reason=reason.strip(), storage=storage)
    return redirect(request, url_for(request, "admin_users"), DONE[action].format(name))


@router.get("/posts/{post_id:int}/{action}", name="admin_post_action")
def confirm_post_action(
    request: Request, db: SessionDep, admin: Admin, post_id: int, action: PostAction
) -> Response:
    """Ask for a reason before unpublishing or deleting a post."""
    return _confirm(request, moderation.get_any_post(db, post_id=post_id), action)


@router.post(
    "/posts/{post_id:int}/{action}", name="admin_post_action_submit", dependencies=[CsrfProtected]
)
def post_action(
    request: Request,
    db: SessionDep,
    admin: Admin,
    post_id: int,
    action: PostAction,
    reason: FormText = "",
) -> Response:
    """Unpublish or delete a post, with the reason logged."""
    post = moderation.get_any_post(db, post_id=post_id)
    if problem := _reason_problem(reason):
        return _confirm(request, post, action, reason, problem)
    title = post.title
    if action == "unpublish":
        moderation.unpublish_post(db, admin=admin, post=post, reason=reason.strip())
    else:
        moderation.delete_post(db, admin=admin, post=post, reason=reason.strip())
    done = DONE[action] if action == "unpublish" else "“{}” is deleted."
    return redirect(request, url_for(request, "admin_posts"), done.format(title))


# ---------------------------------------------------------------- invitations


def _invitations_page(
    request: Request,
    db: Session,
    settings: Settings,
    page: int = 1,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    context = {
        "listing": invitations.list_invitations(db, page=page),
        "page_url": url_for(request, "admin_invitations"),
        "mode": settings.registration_mode,
        "now": utcnow(),
        "values": values or {},
        "errors": errors or {},
    }
    return render(request, "admin/invitations.html", context, status_code)


@router.get("/invitations", name="admin_invitations")
def admin_invitations(
    request: Request, db: SessionDep, settings: SettingsDep, admin: Admin, page: PageNumber = 1
) -> Response:
    """Invitations sent, newest first, and the form that mails a new one."""
    return _invitations_page(request, db, settings, page)


@router.post("/invitations", name="admin_invite", dependencies=[CsrfProtected])
def invite(
    request: Request, db: SessionDep, settings: SettingsDep, admin: Admin, email: FormText = ""
) -> Response:
    """Mail an invitation to register (single-use, valid for a week), logged."""
    values = {"email": email}
    result = validate(InvitationCreate, values)
    if isinstance(result, dict):
        return _invitations_page(request, db, settings, 1, values, result, 422)
    try:
        invitations.invite(db, admin=admin, email=result.email, site=mail_site(request))
    except DuplicateError as exc:
        db.rollback()
        return _invitations_page(request, db, settings, 1, values, {"email": exc.message}, 409)
    done = f"An invitation is on its way to {result.email}."
    return redirect(request, url_for(request, "admin_invitations"), done)


@router.post(
    "/invitations/{invitation_id:int}/withdraw",
    name="admin_withdraw_invitation",
    dependencies=[CsrfProtected],
)
def withdraw_invitation(
    request: Request, db: SessionDep, admin: Admin, invitation_id: int
) -> Response:
    """Make a pending invitation open nothing, logged."""
    invitation, withdrawn = invitations.withdraw(db, admin=admin, invitation_id=invitation_id)
    if withdrawn:
        done = f"The invitation to {invitation.email} is withdrawn: it opens nothing now."
    else:
        done = f"The invitation to {invitation.email} was no longer pending; nothing changed."
    return redirect(request, url_for(request, "admin_invitations"), done)
