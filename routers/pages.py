"""Public pages: post listings, single posts and author pages."""

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from database import SessionDep
from models import Post
from services import listings, posts, reviews, search, tags, users
from services.errors import NotFoundError
from web.deps import (
    CurrentUser,
    PageNumber,
    RequiredUser,
    SettingsDep,
    get_current_user,
    short_read,
)
from web.fragments import post_entries, post_page_parts
from web.middleware import BodyLimitedRoute
from web.pagecache import stamp_with_post
from web.privacy import Public, mark_personal
from web.templating import render
from web.urls import post_url

# Every page shows who is logged in, so every page looks the session up.
router = APIRouter(
    include_in_schema=False,
    dependencies=[Public, Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)
# Pages show two page numbers beyond the current one when they exist.
LOOKAHEAD_PAGES = 2


def _entries(request: Request, db: Session, listing: listings.EntryPage) -> list[Markup]:
    """The listing's rendered entries; 404 for a page past the end (page 1 may be empty:
    the friendly empty state)."""
    if listing.number > 1 and not listing.entries:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return post_entries(request, db, listing)


@router.get("/", response_class=HTMLResponse, name="home")
@router.get("/posts", response_class=HTMLResponse, name="posts")
@short_read
def home(request: Request, db: SessionDep, settings: SettingsDep, page: PageNumber = 1) -> Response:
    """Newest posts from every author."""
    listing = listings.list_entries(
        db, page=page, per_page=settings.page_size, lookahead_pages=LOOKAHEAD_PAGES
    )
    entries = _entries(request, db, listing)
    return render(request, "posts/list.html", {"listing": listing, "entries": entries})


@router.get("/posts/{post_id:int}", name="post_short")
@short_read
def post_short(request: Request, post_id: int, db: SessionDep, viewer: CurrentUser) -> Response:
    """A post's permanent short address: moved for good to its canonical one."""
    post = posts.get_post(db, post_id=post_id, user=viewer, tags_when_used=True)
    stamp_with_post(request, post)
    return RedirectResponse(post_url(request, post), status.HTTP_301_MOVED_PERMANENTLY)


@router.get(
    "/posts/{post_id:int}/{slug:post_slug}", response_class=HTMLResponse, name="post_detail"
)
@short_read
def post_detail(
    request: Request, post_id: int, slug: str, db: SessionDep, viewer: CurrentUser
) -> Response:
    """One post, at its canonical address (an earlier slug redirects there)."""
    post = posts.get_post(db, post_id=post_id, user=viewer, tags_when_used=True)
    stamp_with_post(request, post)
    if slug != post.slug:
        return RedirectResponse(post_url(request, post), status.HTTP_301_MOVED_PERMANENTLY)
    return _post_page(request, db, post, preview=not post.is_live())


def _post_page(request: Request, db: Session, post: Post, *, preview: bool) -> HTMLResponse:
    context = {"post": post, **post_page_parts(request, db, post, preview=preview)}
    return render(request, "posts/detail.html", context)


@router.get("/review/{token}", response_class=HTMLResponse, name="review")
def review(request: Request, token: str, db: SessionDep) -> Response:
    """An unpublished post, for whoever holds its review link."""
    # Never stored for others: the link can be revoked at any moment.
    mark_personal(request)
    try:
        post = reviews.post_for_review(db, token=token)
    except NotFoundError:
        context = {"status_code": 404, "phrase": "Review link not found", "request_id": None}
        context["message"] = reviews.REVIEW_LINK_NOT_FOUND
        return render(request, "errors/error.html", context, status.HTTP_404_NOT_FOUND)
    response = _post_page(request, db, post, preview=True)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@router.get("/tags", response_class=HTMLResponse, name="tags")
@short_read
def tag_index(request: Request, db: SessionDep) -> Response:
    """Every tag, with how many posts carry it."""
    return render(request, "tags/index.html", {"tags": tags.list_tags(db)})


@router.get("/tags/{slug}", response_class=HTMLResponse, name="tag_posts")
@short_read
def tag_posts(
    request: Request, slug: str, db: SessionDep, settings: SettingsDep, page: PageNumber = 1
) -> Response:
    """A tag's posts, newest first."""
    tag = tags.get_tag(db, slug=slug)
    listing = listings.list_entries(
        db, page=page, per_page=settings.page_size, tag_id=tag.id, lookahead_pages=LOOKAHEAD_PAGES
    )
    entries = _entries(request, db, listing)
    return render(request, "tags/posts.html", {"tag": tag, "listing": listing, "entries": entries})


@router.get("/drafts", response_class=HTMLResponse, name="drafts")
@short_read
def drafts(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: RequiredUser,
    page: PageNumber = 1,
) -> Response:
    """Your drafts and scheduled posts, with everything you have published."""
    listing = listings.list_entries(
        db,
        page=page,
        per_page=settings.page_size,
        author_id=user.id,
        include_unpublished=True,
        lookahead_pages=LOOKAHEAD_PAGES,
    )
    entries = _entries(request, db, listing)
    return render(request, "posts/drafts.html", {"listing": listing, "entries": entries})


@router.get("/users/{user_id:int}/posts", response_class=HTMLResponse, name="user_posts")
@short_read
def user_posts(
    request: Request,
    user_id: int,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
) -> Response:
    """An author's page: their avatar and their posts."""
    author = users.get_existing_user(db, user_id=user_id)
    listing = listings.list_entries(
        db,
        page=page,
        per_page=settings.page_size,
        author_id=author.id,
        lookahead_pages=LOOKAHEAD_PAGES,
    )
    context = {"author": author, "listing": listing, "entries": _entries(request, db, listing)}
    return render(request, "users/posts.html", context)


@router.get("/search", response_class=HTMLResponse, name="search")
def search_page(
    request: Request, db: SessionDep, settings: SettingsDep, q: str = "", page: PageNumber = 1
) -> HTMLResponse:
    """Full-text search over titles and content."""
    results = posts.search_posts(db, query=q, page=page, per_page=settings.page_size)
    context = {"query": q, "results": results, "search_candidates": search.CANDIDATES}
    return render(request, "search.html", context)
