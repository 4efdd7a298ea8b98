"""The demo's stand-in for an app container's program (uvicorn, celery, node, ...).

It does what the app would do at start-up, then reports what it saw WITHOUT any value: for every
environment variable and every pydantic-settings field, only a SHA-256 and a length, which the demo
compares with what it stored in Secrets Manager.

- env-file pods (SM_INJECTOR_ENV_FILE, dotenv or shell format): a pydantic-settings `BaseSettings`
  with `env_file=` that file, one `str` field per name in it (python-dotenv lists the names);
- files pods (SM_INJECTOR_SECRETS_DIR): a `BaseSettings` with `secrets_dir=` that directory, one
  field per file;
- every pod: the process environment (the command wrap sources the env file before exec'ing us).

Usage (argv[1] is the name the app was started as): app-view.py NAME [ARGS...]
"""

import hashlib
import json
import os
import sys


def fingerprint(value):
    data = value.encode("utf-8", "surrogateescape")
    return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(value)}


def settings_view():
    """pydantic-settings reading what the init container wrote, the way a FastAPI app would."""
    env_file = os.environ.get("SM_INJECTOR_ENV_FILE")
    secrets_dir = os.environ.get("SM_INJECTOR_SECRETS_DIR")
    if not env_file and not secrets_dir:
        return None
    from pydantic import create_model
    from pydantic_settings import BaseSettings, SettingsConfigDict

    if secrets_dir:
        names = sorted(n for n in os.listdir(secrets_dir) if not n.startswith("."))
        config = SettingsConfigDict(secrets_dir=secrets_dir, env_ignore_empty=False)
        source = {"secrets_dir": secrets_dir}
    else:
        if env_file.endswith(".json"):
            return {"source": {"env_file": env_file}, "skipped": "a JSON file is not read by pydantic-settings"}
        with open(env_file, encoding="utf-8", errors="surrogateescape") as f:
            if any(line.startswith("export ") for line in f):
                # The shell format is for `. FILE` (the command wrap): the app reads its environment.
                return {"source": {"env_file": env_file}, "skipped": "shell format: sourced by /bin/sh, read from the environment"}
        from dotenv import dotenv_values

        names = sorted(dotenv_values(env_file).keys())
        config = SettingsConfigDict(env_file=env_file)
        source = {"env_file": env_file}

    # Field names are lower case (pydantic-settings matches them case-insensitively).
    fields = {n.lower(): (str, ...) for n in names}
    class Base(BaseSettings):
        model_config = config

    Settings = create_model("Settings", __base__=Base, **fields)
    values = Settings().model_dump()
    return {"source": source, "fields": {k: fingerprint(v) for k, v in values.items()}}


def main():
    report = {
        "argv": [os.path.basename(sys.argv[1]) if len(sys.argv) > 1 else "app", *sys.argv[2:]],
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "environment": {k: fingerprint(v) for k, v in sorted(os.environ.items())},
    }
    try:
        report["settings"] = settings_view()
    except Exception as e:  # the demo shows it: the error's type and, for pydantic, the fields and kinds
        # of problem; never an exception's message, which may quote a value.
        errors = getattr(e, "errors", None)
        where = (
            ", ".join(f"{'.'.join(map(str, x.get('loc', ())))}: {x.get('type')}" for x in errors())
            if callable(errors)
            else ""
        )
        report["settingsError"] = f"{type(e).__name__}{f' ({where})' if where else ''}"
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
