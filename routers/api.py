"""JSON API under /api."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

import crud
from config import SettingsDep
from database import SessionDep
from models import Post
from schemas import (
    MAX_ID,
    PostCreate,
    PostPublic,
    PostReplace,
    PostUpdate,
    UserCreate,
    UserPublic,
    UserUpdate,
)

MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000

router = APIRouter(prefix="/api", tags=["api"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
PostId = Annotated[int, Path(ge=1, le=MAX_ID)]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")]
PerPage = Annotated[
    int | None, Query(ge=1, le=MAX_PER_PAGE, description="Items per page (default 10)")
]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"example": {"detail": description}}},
    }


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("Not found")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _error("Username or email already taken")}
LIST_HEADERS = {
    "Link": {"description": 'RFC 8288 links to the `rel="prev"` and `rel="next"` pages'}
}


def _paginate(request: Request, response: Response, page: crud.PostPage) -> list[Post]:
    """Advertise neighbouring pages in a Link header; the body stays a plain array."""
    links = []
    if page.has_previous:
        links.append(f'<{request.url.include_query_params(page=page.number - 1)}>; rel="prev"')
    if page.has_next:
        links.append(f'<{request.url.include_query_params(page=page.number + 1)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return page.posts


@router.post(
    "/users", status_code=status.HTTP_201_CREATED, response_model=UserPublic, responses=CONFLICT
)
def create_user(data: UserCreate, db: SessionDep) -> Any:
    """Create a user."""
    return crud.create_user(db, data=data)


@router.get("/users/{user_id}", response_model=UserPublic, responses=NOT_FOUND)
def read_user(user_id: UserId, db: SessionDep) -> Any:
    """Read a user's public profile."""
    return crud.get_user_or_404(db, user_id=user_id)


@router.patch("/users/{user_id}", response_model=UserPublic, responses=NOT_FOUND | CONFLICT)
def update_user(user_id: UserId, data: UserUpdate, db: SessionDep) -> Any:
    """Change a user's username or email."""
    user = crud.get_user_or_404(db, user_id=user_id)
    return crud.update_user(db, user=user, data=data)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_user(user_id: UserId, db: SessionDep) -> None:
    """Delete a user and all their posts."""
    crud.delete_user(db, user=crud.get_user_or_404(db, user_id=user_id))


@router.get(
    "/users/{user_id}/posts",
    response_model=list[PostPublic],
    responses=NOT_FOUND | {200: {"headers": LIST_HEADERS}},
)
def list_user_posts(
    user_id: UserId,
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
    per_page: PerPage = None,
) -> Any:
    """List one user's posts, newest first."""
    author = crud.get_user_or_404(db, user_id=user_id)
    listing = crud.list_posts(
        db, page=page, per_page=per_page or settings.page_size, author_id=author.id
    )
    return _paginate(request, response, listing)


@router.get("/posts", response_model=list[PostPublic], responses={200: {"headers": LIST_HEADERS}})
def list_posts(
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    page: PageNumber = 1,
    per_page: PerPage = None,
) -> Any:
    """List posts, newest first."""
    listing = crud.list_posts(db, page=page, per_page=per_page or settings.page_size)
    return _paginate(request, response, listing)


@router.post(
    "/posts", status_code=status.HTTP_201_CREATED, response_model=PostPublic, responses=NOT_FOUND
)
def create_post(data: PostCreate, db: SessionDep) -> Any:
    """Publish a post by the user named in `user_id`."""
    author = crud.get_user_or_404(db, user_id=data.user_id)
    return crud.create_post(db, data=data, author=author)


@router.get("/posts/{post_id}", response_model=PostPublic, responses=NOT_FOUND)
def read_post(post_id: PostId, db: SessionDep) -> Any:
    """Read one post."""
    return crud.get_post_or_404(db, post_id=post_id)


@router.put("/posts/{post_id}", response_model=PostPublic, responses=NOT_FOUND)
def replace_post(post_id: PostId, data: PostReplace, db: SessionDep) -> Any:
    """Replace a post's title and content."""
    post = crud.get_post_or_404(db, post_id=post_id)
    return crud.update_post(db, post=post, data=data)


@router.patch("/posts/{post_id}", response_model=PostPublic, responses=NOT_FOUND)
def update_post(post_id: PostId, data: PostUpdate, db: SessionDep) -> Any:
    """Change some of a post's fields."""
    post = crud.get_post_or_404(db, post_id=post_id)
    return crud.update_post(db, post=post, data=data)


@router.delete("/posts/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_post(post_id: PostId, db: SessionDep) -> None:
    """Delete a post."""
    crud.delete_post(db, post=crud.get_post_or_404(db, post_id=post_id))
