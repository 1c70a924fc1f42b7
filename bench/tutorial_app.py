"""A second reference: the blog as a typical FastAPI tutorial builds it, on the same dataset.

A sync SQLAlchemy ORM session per request from a generator dependency, the ORM models
declared here, a Jinja2 `TemplateResponse` for the post page and a Pydantic model for the
API. No cache, no middleware: what most FastAPI blogs are, to set Inkwell's figures beside.

    DATABASE_URL=sqlite:///bench/data/inkwell-1k.db uvicorn bench.tutorial_app:app --workers 2
"""

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///./blog.db")
engine = create_engine(
    DATABASE_URL,
    # The tutorials' SQLite setting (sync routes run on a thread pool); PostgreSQL has none.
    connect_args={"check_same_thread": False} if DATABASE_URL.startswith("sqlite") else {},
)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "tutorial_templates")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str]
    image_file: Mapped[str | None]


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    content_html: Mapped[str | None]
    published_at: Mapped[datetime | None]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author: Mapped[User] = relationship()


class AuthorPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str


class PostPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    content_html: str | None
    published_at: datetime | None
    author: AuthorPublic


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
app = FastAPI()


def _post(db: Session, post_id: int) -> Post:
    post = db.get(Post, post_id)
    if post is None:
        raise HTTPException(404, "Post not found")
    return post


@app.get("/posts/{post_id}", response_class=HTMLResponse)
def post_page(request: Request, post_id: int, db: SessionDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "post.html", {"post": _post(db, post_id)})


@app.get("/api/posts/{post_id}", response_model=PostPublic)
def read_post(post_id: int, db: SessionDep) -> Post:
    return _post(db, post_id)
