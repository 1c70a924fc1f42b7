"""Application factory: wires settings, database, routers, static files and error handlers."""

import ctypes
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from config import Settings, file_clock, get_settings, startup_problem, use_clock
from database import Database
from routers import (
    account,
    admin,
    api,
    feeds,
    health,
    history,
    pages,
    portability,
    recovery,
    two_factor,
    writing,
)
from routers import media as media_pages
from services.mail import MailSender
from services.maintenance import maintenance_turn
from services.posts import rerender_stale_posts
from services.storage import LocalStorage, storage_for
from services.users import remove_orphaned_files
from web.compression import CompressionMiddleware, HeadMiddleware
from web.errors import register_error_handlers
from web.fragments import FragmentCache
from web.media import MediaFiles
from web.middleware import (
    ETagMiddleware,
    FingerprintedStaticFiles,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    SingleHostMiddleware,
)
from web.pagecache import PageCache, PageCacheMiddleware
from web.templating import STATIC_DIR, templates

logger = logging.getLogger("inkwell")

# glibc's mallopt() parameter for the size from which allocations get their own mapping.
M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION_BYTES = 1024 * 1024


def return_large_allocations_to_os() -> bool:
    """Give every allocation of 1 MiB or more its own mapping, unmapped again when freed.

    glibc raises this threshold by itself once a large block is freed, after which such
    blocks come from a thread's arena and stay there: each argon2 hash (19 MiB) computed
    on a request thread would then stay resident for the life of the worker. Fixing the
    threshold turns the dynamic rule off. Returns False where the C library has no mallopt.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES) == 1


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not return_large_allocations_to_os():
        logger.info("mallopt is not available: large freed blocks may stay resident")
    database: Database = app.state.database
    with maintenance_turn(database.engine) as mine, database.session(write=True) as db:
        # Posts written before the current Markdown renderer get their HTML brought up to
        # date, by one process of the whole site.
        if mine:
            rerender_stale_posts(db)
        # Files a crash stranded between writing a picture and committing it: each host
        # looks after its own media directory (in database storage the transaction took
        # them with it).
        storage = app.state.media_storage
        if isinstance(storage, LocalStorage):
            removed = remove_orphaned_files(
                db, storage=storage, grace_seconds=settings.upload_orphan_grace_seconds
            )
            if removed:
                logger.warning("Removed %d orphaned picture files", len(removed))
    # Everything loaded so far lives as long as the process: keep the garbage collector from
    # scanning it again and again (fewer, shorter pauses under load).
    gc.freeze()
    # Each process delivers due mail in the background; the outbox's claims keep any two
    # processes from sending the same message.
    sender = (
        MailSender(app.state.database, settings).start() if settings.mail_poll_seconds else None
    )
    app.state.lifespans += 1
    yield
    app.state.lifespans -= 1
    if sender:
        sender.stop()
    # One app may be served by several servers at once (test clients do it): the last one
    # to stop closes the pool, so no server's stop strands a connection another still uses.
    if app.state.lifespans == 0:
        app.state.database.dispose()


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first: a request meets the request id, HEAD-as-GET, the security
    # headers, the host checks, compression, the page cache, and last the ETag buffering.
    # (Body limits are the routes' own: web.middleware.BodyLimitedRoute.)
    app.add_middleware(ETagMiddleware)
    app.add_middleware(PageCacheMiddleware, database=app.state.database, cache=app.state.page_cache)
    app.add_middleware(CompressionMiddleware)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SingleHostMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(RequestIdMiddleware)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an Inkwell application for `settings` (the environment's by default)."""
    settings = settings or get_settings()
    problem = startup_problem(settings)
    if problem:
        raise RuntimeError(f"Refusing to start: {problem}")
    app = FastAPI(
        title=settings.site_name,
        summary="A server-rendered blog with a JSON API.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if settings.clock_file:
        use_clock(file_clock(settings.clock_file))
    app.state.database = Database(settings.database_url)
    app.state.lifespans = 0
    app.state.page_cache = PageCache()
    app.state.fragments = FragmentCache()
    # Outside development the templates never change under a running server, so Jinja need
    # not look at each file's modification time on every render.
    templates.env.auto_reload = settings.debug
    app.state.media_storage = storage_for(settings)
    app.mount("/static", FingerprintedStaticFiles(directory=STATIC_DIR), name="static")
    if settings.media_storage == "database":
        app.include_router(media_pages.serving)
    else:
        settings.avatar_dir.mkdir(parents=True, exist_ok=True)
        app.mount("/media", MediaFiles(directory=settings.media_dir), name="media")
    app.include_router(health.router)
    # Routes are tried in order, every one of a router in turn: the pages most read come
    # first. A post's page does not take /posts/{id}/edit and the like for its own (its
    # slug may not be one of their names: web.urls.PostSlugConvertor).
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(writing.router)
    app.include_router(history.router)
    app.include_router(admin.router)
    app.include_router(account.router)
    app.include_router(recovery.router)
    app.include_router(media_pages.router)
    app.include_router(portability.router)
    app.include_router(two_factor.router)
    app.include_router(feeds.router)
    _add_middleware(app, settings)
    register_error_handlers(app)
    return app


app = create_app()
