"""The `inkwell` command line: every command documents its options, `check` judges the
settings, `serve` starts uvicorn as production runs it, and a failure is one line on stderr
with exit status 1, never a traceback."""

import os
import re

import pytest
import typer
from typer.testing import CliRunner

import cli
import config
from config import Settings, get_settings
from tests.support.commands import run_inkwell

COMMANDS = {
    "serve": [
        "--host",
        "--port",
        "--workers",
        "--access-log",
        "--no-access-log",
        "--drain",
        "--keep-alive",
    ],
    "migrate": ["--database-url"],
    "seed": ["--users", "--posts", "--database-url", "--seed"],
    "backup": ["--output", "--database-url"],
    "check": [],
    "send-mail": [],
    "export": ["--all", "--user", "--output"],
    "import": ["--user"],
    "create-admin": ["--email", "--password"],
    "promote": [],
    "demote": [],
}
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 40,
    "SECURE_COOKIES": "true",
    "ALLOWED_HOSTS": "blog.example.org",
    "SMTP_HOST": "smtp.example.org",
    "MAIL_FROM": "Inkwell <blog@example.org>",
    "PUBLIC_URL": "https://blog.example.org",
}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def assert_one_line_error(stderr: str, starts_with: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(starts_with), stderr


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """In-process runs read the settings afresh, from a clean environment and no .env file."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.startswith("INKWELL_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_every_command_is_listed_and_has_help():
    runner = CliRunner()
    assert set(typer.main.get_command(cli.app).commands) == set(COMMANDS)
    overview = runner.invoke(cli.app, ["--help"])
    assert overview.exit_code == 0, overview.output
    for name, options in COMMANDS.items():
        assert name in overview.stdout
        result = runner.invoke(cli.app, [name, "--help"])
        assert result.exit_code == 0, result.output
        text = ANSI_ESCAPE.sub("", result.stdout)
        assert f"Usage: inkwell {name}" in text
        for option in [*options, "--help"]:
            assert option in text, f"{name} --help does not name {option}"


def test_the_console_script_is_installed(tmp_path):
    result = run_inkwell("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in COMMANDS)


def test_check_fails_with_the_development_defaults(tmp_path):
    result = run_inkwell("check", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stdout.splitlines()
    assert "problem: DEBUG is on" in problems
    assert "problem: SECRET_KEY is empty or the development default" in problems
    assert all(line.startswith("problem: ") for line in problems)
    assert result.stderr == ""


def test_check_passes_with_production_settings(tmp_path):
    result = run_inkwell("check", cwd=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem:" not in result.stdout
    assert "No problems found" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "starts_with"),
    [
        (["seed", "--database-url", "sqlite:///{tmp}/missing/dir/x.db"], {}, "database error"),
        (
            ["backup", "--database-url", "sqlite:///{tmp}/none.db", "--output", "{tmp}/x.db"],
            {},
            "no SQLite database at",
        ),
        (["backup", "--output", "{tmp}/a-file/x.db"], {}, "[Errno"),
        (["migrate", "--database-url", "not a url"], {}, "invalid database URL"),
    ],
    ids=["unreachable-database", "no-database", "output-not-a-dir", "bad-url"],
)
def test_an_error_is_one_line_without_traceback(tmp_path, args, env, starts_with):
    (tmp_path / "a-file").write_text("")
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = run_inkwell(*args, cwd=tmp_path, **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_one_line_error(result.stderr, f"inkwell {args[0]}: {starts_with}")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("args", "env", "starts_with"),
    [
        (["check"], {"DEBUG": "perhaps"}, "invalid settings: DEBUG"),
        (["serve"], {"DEBUG": "false"}, "refusing to start: SECRET_KEY"),
    ],
    ids=["bad-setting", "serve-with-the-development-key"],
)
def test_a_settings_error_is_one_line(settings_env, args, env, starts_with):
    result = CliRunner().invoke(cli.app, args, env=env)
    assert result.exit_code == 1, result.output
    assert_one_line_error(result.stderr, f"inkwell {args[0]}: {starts_with}")


def test_an_unexpected_error_is_one_line_unless_debugging(settings_env, monkeypatch):
    def broken(_settings: Settings) -> list[str]:
        raise ValueError("broken\nover two lines")

    monkeypatch.setattr(config, "deployment_problems", broken)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["check"])
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "inkwell check: ValueError: broken over two lines")
    assert "INKWELL_DEBUG=1" in result.stderr

    debugging = runner.invoke(cli.app, ["check"], env={"INKWELL_DEBUG": "1"})
    assert debugging.exit_code == 1
    assert isinstance(debugging.exception, ValueError)


def test_serve_runs_uvicorn_as_the_benchmark_does(settings_env, monkeypatch):
    for name in ("HOST", "PORT", "WEB_CONCURRENCY", "GRACEFUL_TIMEOUT", "KEEP_ALIVE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: calls.append((app, options)))
    runner = CliRunner()
    result = runner.invoke(cli.app, ["serve"], env={"HOST": "0.0.0.0", "PORT": "9000"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli.app, ["serve", "--workers", "3", "--no-access-log"], env={"GRACEFUL_TIMEOUT": "7"}
    )
    assert result.exit_code == 0, result.output
    (app, default), (_, tuned) = calls
    assert app == "main:app"
    assert default["host"] == "0.0.0.0"
    assert default["port"] == 9000
    assert default["workers"] == 1
    assert default["access_log"] is True
    assert (default["loop"], default["http"]) == ("uvloop", "httptools")
    assert (tuned["host"], tuned["port"]) == ("127.0.0.1", 8000)
    assert tuned["workers"] == 3
    assert tuned["access_log"] is False
    assert (default["timeout_graceful_shutdown"], tuned["timeout_graceful_shutdown"]) == (20, 7)
    assert default["timeout_keep_alive"] == tuned["timeout_keep_alive"] == 5
