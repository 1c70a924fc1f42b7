"""Application settings, read from the environment and an optional `.env` file."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-deploy"


class Settings(BaseSettings):
    """Everything that differs between a laptop, CI and production."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./blog.db"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    debug: bool = True
    # Mark cookies Secure; turn on whenever the site is served over https.
    secure_cookies: bool = False
    media_dir: Path = PROJECT_ROOT / "media"
    page_size: int = Field(default=10, ge=1, le=100)
    site_name: str = "Inkwell"

    @property
    def avatar_dir(self) -> Path:
        return self.media_dir / "profile_pics"


@lru_cache
def get_settings() -> Settings:
    """Settings are read once per process; tests override them via dependency_overrides."""
    return Settings()


def get_app_settings(request: Request) -> Settings:
    """The settings the running app was created with."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
