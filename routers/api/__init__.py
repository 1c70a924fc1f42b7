"""JSON API under /api: one router for the audience, built from its two halves."""

from fastapi import APIRouter

from routers.api import accounts, media, portability, posts, recovery, revisions
from web.middleware import BodyLimitedRoute

router = APIRouter(prefix="/api", tags=["api"], route_class=BodyLimitedRoute)
router.include_router(accounts.router)
router.include_router(posts.router)
router.include_router(revisions.router)
router.include_router(recovery.router)
router.include_router(media.router)
router.include_router(portability.router)
