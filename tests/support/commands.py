"""Run the project's command line (cli.py) in a subprocess, as `make` and deployments do."""

import os
import subprocess
import sys
from pathlib import Path

from config import Settings

# The console script `make install` puts beside the interpreter.
INKWELL = Path(sys.executable).with_name("inkwell")


def inkwell(*args: str) -> list[str]:
    """The command line for `inkwell ARGS...`, run with this interpreter from the project."""
    return [sys.executable, "-m", "cli", *args]


def clean_environment() -> dict[str, str]:
    """This process's environment without any of the app's settings (nor INKWELL_DEBUG)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields and not name.startswith("INKWELL_")
    }


def run_inkwell(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in a directory of its own (no .env file there), with
    only the settings given."""
    assert INKWELL.is_file(), f"{INKWELL} is missing: run `make install`"
    return subprocess.run(
        [str(INKWELL), *args],
        cwd=cwd,
        env={**clean_environment(), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
