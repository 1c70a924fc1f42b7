"""Signing (CSRF tokens, flash messages), the CSRF check, safe redirects and client addresses."""

import base64
import hashlib
import hmac
import json
import secrets
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status

from web.cookies import ANON_CSRF_COOKIE, SESSION_COOKIE
from web.privacy import mark_personal


def _secret(request: Request) -> bytes:
    return request.app.state.settings.secret_key.encode()


def _as_bytes(text: str) -> bytes:
    # Whatever a client sent: cookies arrive decoded as Latin-1, form fields as UTF-8, and
    # "surrogatepass" encodes even a lone surrogate instead of raising.
    return text.encode("utf-8", "surrogatepass")


def same_signature(sent: object, expected: str) -> bool:
    """Whether `sent` is exactly `expected`, in constant time.

    hmac.compare_digest raises TypeError on a str holding any non-ASCII character, so both
    sides are compared as bytes; anything that is not a string is simply a mismatch.
    """
    return isinstance(sent, str) and hmac.compare_digest(_as_bytes(sent), _as_bytes(expected))


def sign(request: Request, purpose: str, value: str) -> str:
    mac = hmac.new(_secret(request), _as_bytes(f"{purpose}:{value}"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def dumps_signed(request: Request, purpose: str, data: object) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    return f"{payload}.{sign(request, purpose, payload)}"


def loads_signed(request: Request, purpose: str, text: str) -> object | None:
    """The data `dumps_signed` wrote, or None for anything else a client may send."""
    payload, _, signature = text.partition(".")
    if not same_signature(signature, sign(request, purpose, payload)):
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(_as_bytes(payload)))
    except ValueError:  # also binascii.Error and UnicodeDecodeError
        return None


def csrf_seed(request: Request) -> str:
    """What this client's CSRF token is bound to: its session token, or for a visitor who
    is not logged in, a random value in its own cookie (created on first use)."""
    # A page holding a token bound to one browser is that browser's alone.
    mark_personal(request)
    seed = request.cookies.get(SESSION_COOKIE) or request.cookies.get(ANON_CSRF_COOKIE)
    if not seed:
        seed = getattr(request.state, "new_csrf_seed", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_seed = seed
    return seed


def csrf_token(request: Request) -> str:
    return sign(request, "csrf", csrf_seed(request))


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing form whose token does not match this client's."""
    form = await request.form()
    sent = form.get("csrf_token")
    has_seed = SESSION_COOKIE in request.cookies or ANON_CSRF_COOKIE in request.cookies
    if not (has_seed and same_signature(sent, csrf_token(request))):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "The form has expired. Please try again.")


CsrfProtected = Depends(verify_csrf)


def safe_next(target: str | None) -> str:
    """A redirect target after login: a local path, or "/" for anything else."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
