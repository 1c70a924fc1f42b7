"""Public pages: post listings, single posts and author pages."""

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse

from database import SessionDep
from services import posts, search, users
from web.deps import PageNumber, SettingsDep, get_current_user
from web.middleware import BodyLimitedRoute
from web.privacy import Public
from web.templating import render

# Every page shows who is logged in, so every page looks the session up.
router = APIRouter(
    include_in_schema=False,
    dependencies=[Public, Depends(get_current_user)],
    route_class=BodyLimitedRoute,
)
# Pages show two page numbers beyond the current one when they exist.
LOOKAHEAD_PAGES = 2


def _require_rows(listing: posts.PostPage) -> None:
    # Page 1 may be empty (the friendly empty state); later pages past the end do not exist.
    if listing.number > 1 and not listing.posts:
        raise HTTPException(status.HTTP_404_NOT_FOUND)


@router.get("/", response_class=HTMLResponse, name="home")
@router.get("/posts", response_class=HTMLResponse, name="posts")
def home(request: Request, db: SessionDep, settings: SettingsDep, page: PageNumber = 1) -> Response:
    """Newest posts from every author."""
    listing = posts.list_posts(
        db, page=page, per_page=settings.page_size, lookahead_pages=LOOKAHEAD_PAGES
    )
    _require_rows(listing)
    return render(request, "posts/list.html", {"listing": listing})


@router.get("/posts/{post_id:int}", response_class=HTMLResponse, name="post_detail")
def post_detail(request: Request, post_id: int, db: SessionDep) -> Response:
    """One post."""
    post = posts.get_post(db, post_id=post_id)
    return render(request, "posts/detail.html", {"post": post})


@router.get("/users/{user_id:int}/posts", response_class=HTMLResponse, name="user_posts")
def user_posts(
    request: Request,
    user_id: int,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
) -> Response:
    """An author's page: their avatar and their posts."""
    author = users.get_existing_user(db, user_id=user_id)
    listing = posts.list_posts(
        db,
        page=page,
        per_page=settings.page_size,
        author_id=author.id,
        lookahead_pages=LOOKAHEAD_PAGES,
    )
    _require_rows(listing)
    return render(request, "users/posts.html", {"author": author, "listing": listing})


@router.get("/search", response_class=HTMLResponse, name="search")
def search_page(
    request: Request, db: SessionDep, settings: SettingsDep, q: str = "", page: PageNumber = 1
) -> HTMLResponse:
    """Full-text search over titles and content."""
    results = posts.search_posts(db, query=q, page=page, per_page=settings.page_size)
    context = {"query": q, "results": results, "search_candidates": search.CANDIDATES}
    return render(request, "search.html", context)
