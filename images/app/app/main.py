"""The example FastAPI service of examples/fastapi-env-file.yaml, run by the e2e tests and the demo.

Its settings come from pydantic-settings reading the env file the sm-injector init container wrote
(SM_INJECTOR_ENV_FILE, default /run/sm-injector/env; `sm-injector.io/format: dotenv`). It never
returns a value: GET /settings answers the SHA-256 of each setting, so a test that knows the secret
can prove the app loaded it, and nobody else learns anything useful.
"""

import hashlib
import os

from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_FILE = os.environ.get("SM_INJECTOR_ENV_FILE", "/run/sm-injector/env")


class Settings(BaseSettings):
    # The two settings of the example; any other variable in the file is kept as an extra setting.
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="allow", case_sensitive=True)

    DATABASE_URL: str
    JWT_SECRET_KEY: str


def env_file_names() -> set[str]:
    """The variable names the env file defines (only those are reported, not the pod's whole env)."""
    from dotenv import dotenv_values

    return {name for name in dotenv_values(ENV_FILE) if name}


def load_settings() -> Settings:
    """The settings, or exit naming each missing or invalid setting and never its value (pydantic's
    own message would print the input it was given, secrets included)."""
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"settings from {ENV_FILE} are incomplete: {problems}") from None


# Loaded once at start-up, like a real app: a missing file or setting stops uvicorn here.
settings = load_settings()
app = FastAPI(title="sm-injector example app")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/settings")
def settings_hashes() -> dict[str, str]:
    """sha256:<hex> of each setting the env file gave the app, by name; never a value."""
    values = settings.model_dump()
    return {
        name: "sha256:" + hashlib.sha256(str(values[name]).encode()).hexdigest()
        for name in sorted(env_file_names())
        if name in values
    }
