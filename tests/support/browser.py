"""Where the browser tests find Chromium and keep their files."""

from tests.support.server import ROOT

E2E_DIR = ROOT / "tests" / "e2e"
ARTIFACTS_DIR = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
