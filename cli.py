"""The `inkwell` command line: serve, migrate, seed, backup, check, send-mail.

The outermost layer, beside main.py: each command is one function below that parses its
options and calls the services, so a new command (create-admin, export, import) is one more
`@app.command()` function. Commands import what they use when they run, so `--help` answers
at once. Whatever a command raises ends as one line on stderr and exit status 1; with
INKWELL_DEBUG=1 the unexpected ones keep their traceback.
"""

import importlib.util
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session as OrmSession

ROOT = Path(__file__).resolve().parent
DEBUG_VARIABLE = "INKWELL_DEBUG"


class CliError(Exception):
    """A command cannot go on; the message, meant for the person running it, says why."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def explain(exc: Exception) -> str | None:
    """A one-line reason for an expected failure (the services' own errors, settings, the
    database, files); None for anything else."""
    if isinstance(exc, CliError | OSError) or type(exc).__module__.startswith("services."):
        return one_line(exc)
    # Imported only once something has failed, cheapest first.
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        fields = (f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        return f"invalid settings: {'; '.join(fields)}"
    from sqlalchemy.exc import ArgumentError, DBAPIError

    if isinstance(exc, DBAPIError):
        return f"database error: {one_line(exc.orig)}"
    if isinstance(exc, ArgumentError):
        return f"invalid database URL: {one_line(exc)}"
    from alembic.util import CommandError

    return one_line(exc) if isinstance(exc, CommandError) else None


class Commands(TyperGroup):
    """Runs the command asked for; what it raises becomes one line on stderr and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # deliberate exits, usage errors and a closed pipe: Typer's to report
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                raise
            reason = explain(exc) or (
                f"{type(exc).__name__}: {one_line(exc)} ({DEBUG_VARIABLE}=1 shows the traceback)"
            )
            command = " ".join(filter(None, (ctx.info_name, ctx.invoked_subcommand)))
            typer.echo(f"{command}: {reason}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    name="inkwell",
    cls=Commands,
    help="Inkwell's command line: serve the blog, migrate, seed and back up its database, "
    "and check its settings for production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the database (default: the DATABASE_URL setting).",
        show_default=False,
    ),
]


def database_url_or_setting(database_url: str | None) -> str:
    if database_url:
        return database_url
    from config import get_settings

    return get_settings().database_url


@contextmanager
def open_engine(database_url: str | None) -> Iterator["Engine"]:
    """An engine for `database_url` (default: the setting), disposed of afterwards."""
    from database import make_engine

    engine = make_engine(database_url_or_setting(database_url))
    try:
        yield engine
    finally:
        engine.dispose()


class ProgressBars:
    """Progress bars on stderr, one for each table filled in turn (a `services.seed.Progress`).
    Where stderr is not a terminal, each bar is just its label, printed once."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = typer.progressbar(
                length=total, label=f"{label:<6}", file=sys.stderr, show_pos=True
            )
        self._bar.update(done - self._bar.pos)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
            self._bar = None

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def installed(module: str, fallback: str) -> str:
    return module if importlib.util.find_spec(module) else fallback


# ---------------------------------------------------------------- commands


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
    workers: Annotated[
        int, typer.Option(envvar="WEB_CONCURRENCY", min=1, help="Worker processes.")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            "--drain",
            envvar="GRACEFUL_TIMEOUT",
            min=1,
            help="Seconds a stopping worker lets requests in flight finish.",
        ),
    ] = 20,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(
            "--keep-alive",
            envvar="KEEP_ALIVE_TIMEOUT",
            min=1,
            help="Seconds an idle connection stays open (keep above a balancer's own).",
        ),
    ] = 5,
) -> None:
    """Serve the blog with uvicorn (uvloop and httptools where installed)."""
    import uvicorn

    from config import get_settings, startup_problem

    # Refuse here, once, rather than in every worker (which uvicorn would keep restarting).
    problem = startup_problem(get_settings())
    if problem:
        raise CliError(f"refusing to start: {problem}")
    uvicorn.run(
        "main:app",
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout,
        timeout_keep_alive=keep_alive_timeout,
        loop=installed("uvloop", "asyncio"),
        http=installed("httptools", "h11"),
        app_dir=str(ROOT),
    )


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    if database_url:
        # The ini file's interpolation would read a URL-encoded password's % signs.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


@app.command()
def seed(
    users: Annotated[int, typer.Option(min=0, help="Users to add.")] = 10,
    posts: Annotated[int, typer.Option(min=0, help="Posts to add, spread over all users.")] = 100,
    database_url: DatabaseUrl = None,
    random_seed: Annotated[
        int, typer.Option("--seed", help="Random seed, for repeatable data.")
    ] = 1,
) -> None:
    """Add demo users and posts to a migrated database."""
    from services.seed import seed as add_demo_data

    with open_engine(database_url) as engine, ProgressBars() as progress:
        rng = random.Random(random_seed)
        add_demo_data(engine, users=users, posts=posts, rng=rng, progress=progress)
    typer.echo(f"Added {users:,} users and {posts:,} posts.")


@app.command()
def backup(
    output: Annotated[
        Path | None,
        typer.Option(
            help="File to write (default: backups/inkwell-<UTC timestamp>.db or .dump).",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Copy the database while the server keeps running, and the media directory with it.

    SQLite's online backup API, or pg_dump for PostgreSQL; checked before it takes its name.
    In local media storage, MEDIA_DIR is copied to <backup name>.media/ beside it.
    """
    from sqlalchemy.engine import make_url

    from config import get_settings
    from services.backup import backup as copy_database
    from services.backup import default_output, media_copy_path

    url = database_url_or_setting(database_url)
    settings = get_settings()
    media_dir = settings.media_dir if settings.media_storage == "local" else None
    written = copy_database(url, output or default_output(make_url(url)), media_dir)
    typer.echo(f"Backup written to {written} ({written.stat().st_size:,} bytes)")
    if media_dir is not None:
        typer.echo(f"Media copied to {media_copy_path(written)}")


@app.command()
def check() -> None:
    """Check the settings for production.

    One line per problem; the exit status is 1 if there is any, 0 otherwise.
    """
    from config import deployment_problems, get_settings

    problems = deployment_problems(get_settings())
    for problem in problems:
        typer.echo(f"problem: {problem}")
    if problems:
        raise typer.Exit(1)
    typer.echo("No problems found: the settings are fit for production.")


@app.command("send-mail")
def send_mail() -> None:
    """Deliver the mail that is due now, once (for cron; the server also does it itself).

    Messages that fail are tried again later with a growing wait, until given up on.
    """
    from config import get_settings
    from database import Database
    from services.mail import deliver_due

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        report = deliver_due(database, settings)
    finally:
        database.dispose()
    typer.echo(f"Sent {report.sent}, to retry {report.retrying}, given up {report.failed}.")


def _media_storage(settings: Any) -> Any:
    from services.storage import storage_for

    return storage_for(settings)


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="The new admin's username.")],
    email: Annotated[str, typer.Option(help="The new admin's email address.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="INKWELL_ADMIN_PASSWORD",
            help="Asked for when not given (or set INKWELL_ADMIN_PASSWORD for scripts).",
        ),
    ],
) -> None:
    """Create an admin account: the only way to make the first one (no web page can)."""
    from pydantic import ValidationError

    from schemas import UserCreate
    from services import moderation

    try:
        data = UserCreate(username=username, email=email, password=password)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CliError(problems) from exc
    with _session() as db:
        user = moderation.create_admin(db, data=data)
    typer.echo(f"Admin {user.username} created.")


def _set_role(username: str, *, admin: bool) -> None:
    from services import moderation

    with _session() as db:
        user = moderation.set_role(db, username=username, admin=admin)
    typer.echo(f"{user.username} is now {'an admin' if admin else 'an author'}.")


@app.command()
def promote(username: Annotated[str, typer.Argument(help="The account to make an admin.")]) -> None:
    """Make an existing account an admin."""
    _set_role(username, admin=True)


@app.command()
def demote(username: Annotated[str, typer.Argument(help="The admin to make an author.")]) -> None:
    """Make an admin an ordinary author again."""
    _set_role(username, admin=False)


@contextmanager
def _session() -> Iterator["OrmSession"]:
    """A write session on the configured database, disposed of afterwards."""
    from config import get_settings
    from database import Database

    database = Database(get_settings().database_url)
    try:
        with database.session(write=True) as db:
            yield db
    finally:
        database.dispose()


@app.command("export")
def export_posts(
    everyone: Annotated[
        bool, typer.Option("--all", help="The whole site, one folder per author.")
    ] = False,
    user: Annotated[
        str | None, typer.Option(help="One author's posts, as their export page gives them.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="File to write (default: inkwell-export-<UTC date>.zip).", show_default=False
        ),
    ] = None,
) -> None:
    """Export posts as a zip of Markdown files with their images and posts.json.

    Canonical URLs are made from PUBLIC_URL. The file is written under a temporary name
    and renamed when complete.
    """
    from config import get_settings, utcnow
    from database import Database
    from services import export

    if everyone == (user is not None):
        raise CliError("give either --all or --user NAME")
    settings = get_settings()
    base = settings.public_url.rstrip("/")
    target = output or Path(f"inkwell-export-{utcnow():%Y-%m-%d}.zip")
    partial = target.with_name(f".{target.name}.partial")
    database = Database(settings.database_url)
    try:
        with database.session(write=False) as db, partial.open("wb") as file:
            authors = export.all_authors(db) if everyone else [export.find_author(db, user or "")]
            for piece in export.export_archive(
                db,
                authors=authors,
                storage=_media_storage(settings),
                # The address the post page has (routers.pages), on the configured site.
                canonical_url=lambda post: f"{base}/posts/{post.id}/{post.slug}",
                folder_per_author=everyone,
            ):
                file.write(piece)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        database.dispose()
    typer.echo(f"Export written to {target} ({target.stat().st_size:,} bytes)")


@app.command("import")
def import_posts(
    path: Annotated[
        Path,
        typer.Argument(
            help="An Inkwell export or a zip of Markdown files, a WordPress export (XML), "
            "or a directory of Markdown files."
        ),
    ],
    user: Annotated[str, typer.Option(help="The author the posts are imported for.")],
) -> None:
    """Import posts into an author's account: all or nothing, with a line for each file left
    out and why. Larger limits than the web form (1 GB archives, 50,000 posts)."""
    from config import get_settings
    from database import Database, reading
    from services import export, importing
    from services.import_formats import Limits, open_path

    settings = get_settings()
    limits = Limits.for_command_line()
    source = open_path(path, limits)
    database = Database(settings.database_url)
    try:
        with database.session(write=True) as db:
            reading(db)  # the lookup is a read: the write lock waits for the write itself
            author = export.find_author(db, user)
            db.commit()
            report = importing.import_posts(
                db,
                user=author,
                source=source,
                storage=_media_storage(settings),
                limits=limits,
                max_files=settings.media_max_files_per_user,
                max_bytes=settings.media_max_bytes_per_user,
            )
    finally:
        source.close()
        database.dispose()
    for item in report.imported:
        typer.echo(f"imported: {item.slug} ({item.status}, id {item.id})")
    for skipped in report.skipped:
        typer.echo(f"skipped: {skipped.name}: {skipped.reason}")
    typer.echo(f"{len(report.imported)} imported, {len(report.skipped)} skipped.")


if __name__ == "__main__":
    app()
