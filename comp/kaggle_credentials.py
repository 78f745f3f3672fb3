"""Kaggle credentials as the official client would find them, and the redaction of every form a secret
takes (raw, base64 in HTTP Basic, percent-encoded in a URL) from text comp shows or logs."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from comp.errors import KaggleError

NO_CREDENTIALS = (
    "no Kaggle credentials: put kaggle.json (from kaggle.com > Settings > API > Create New Token) in "
    "~/.kaggle/ (chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)


@dataclass(frozen=True)
class Credentials:
    source: str  # where they were found, for messages: "KAGGLE_USERNAME/KAGGLE_KEY", a file path, ...
    config_dir: Path
    secrets: tuple[str, ...] = field(repr=False)


def config_dir() -> Path:
    """The kaggle client's rule for the folder of kaggle.json, evaluated now (it evaluates it at import)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~/.kaggle"))
    if sys.platform.startswith("linux") and not home.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")) / "kaggle"
    return home


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_credentials() -> Credentials:
    """What the kaggle client would log in with, in its order: access token, legacy key, OAuth login."""
    folder = config_dir()
    kaggle_dir = Path(os.path.expanduser("~/.kaggle"))
    secrets: list[str] = []
    sources: list[str] = []

    token = os.environ.get("KAGGLE_API_TOKEN", "")
    if token:
        if Path(token).exists():  # the client accepts a path to a file holding the token
            token, source = _read_text(Path(token)), "the file named by KAGGLE_API_TOKEN"
        else:
            source = "KAGGLE_API_TOKEN"
    else:
        source = ""
        for name in ("access_token", "access_token.txt"):
            token = _read_text(kaggle_dir / name)
            if token:
                source = str(kaggle_dir / name)
                break
    if token:
        secrets.append(token)
        sources.append(source)

    file_values = _read_json(folder / "kaggle.json")
    username = os.environ.get("KAGGLE_USERNAME", file_values.get("username"))
    key = os.environ.get("KAGGLE_KEY", file_values.get("key"))
    secrets += [str(v) for v in (key, file_values.get("key")) if v]
    if username and key:
        from_env = "KAGGLE_USERNAME" in os.environ and "KAGGLE_KEY" in os.environ
        sources.append("KAGGLE_USERNAME/KAGGLE_KEY" if from_env else str(folder / "kaggle.json"))

    oauth = _read_json(kaggle_dir / "credentials.json")
    if oauth.get("refresh_token"):
        secrets += [str(oauth[k]) for k in ("refresh_token", "access_token") if oauth.get(k)]
        sources.append(str(kaggle_dir / "credentials.json"))

    if not sources:
        raise KaggleError(NO_CREDENTIALS)
    # the forms a secret takes on the wire: HTTP Basic is base64("user:key"), URLs percent-encode
    users = {str(u) for u in (username, file_values.get("username"), os.environ.get("KAGGLE_USERNAME")) if u}
    keys = {str(k) for k in (key, file_values.get("key")) if k}
    encoded = [_b64(f"{u}:{k}") for u in users for k in keys] + [_b64(v) for v in secrets if v]
    secrets += encoded + [e.rstrip("=") for e in encoded] + [quote(v, safe="") for v in secrets if v]
    # very short values would redact ordinary words out of messages; longest first, so that a value
    # containing another is redacted whole
    return Credentials(sources[0], folder, tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# whatever follows an auth scheme is a credential, even one comp did not find (a proxy's, another user's)
_AUTH_SCHEME = re.compile(r"(?i)\b(basic|bearer)(\s+)([A-Za-z0-9+/=._~-]{8,})")
_AUTH_FIELD = re.compile(r"(?i)\b(token|key|password|secret)([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{4,})")


def redact(text: str, creds: Credentials) -> str:
    for secret in creds.secrets:
        text = text.replace(secret, "***")
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _AUTH_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
