"""A session with the official `kaggle` client: credentials checked before it is imported (it
authenticates at import and prints a page of help when it cannot), its prints swallowed into the
debug log, and whatever it raises turned into one redacted KaggleError line that says what to do."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterator

from comp.errors import KaggleError
from comp.kaggle_credentials import Credentials, find_credentials, redact

log = logging.getLogger("comp.kaggle_client")  # one logger for everything comp says about Kaggle

RULES_URL = "https://www.kaggle.com/competitions/{slug}/rules"


@contextlib.contextmanager
def _quiet(creds: Credentials) -> Iterator[None]:
    """Swallow the client's prints (warnings, progress, auth help); keep them, redacted, in the debug log.

    With VERBOSE=1 at its import, the client prints a request with its Authorization header.
    """
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("kaggle client output: %s", redact(buf.getvalue().strip(), creds))


def _api(creds: Credentials):
    """An authenticated KaggleApi built from the environment as it is now."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except (Exception, SystemExit) as exc:
        raise KaggleError(
            redact(
                f"the kaggle client could not be loaded ({_describe(exc)}): reinstall it with "
                "pip install 'kaggle>=2.2.4,<2.3'",
                creds,
            )
        ) from exc
    api = KaggleApi()
    # the class reads these at import; a fresh read lets one process switch settings (and tests run)
    api.config_dir = str(creds.config_dir)
    api.config = str(creds.config_dir / "kaggle.json")
    # never "--verbose": it prints every request with its Authorization header
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    try:
        api.authenticate()
    except SystemExit:  # the client calls exit(1) when nothing it found logs in
        raise KaggleError(
            f"Kaggle did not accept the credentials from {creds.source}: create a new token "
            "(kaggle.com > Settings > API > Create New Token) and replace the old one"
        ) from None
    return api


@contextlib.contextmanager
def session(slug: str, action: str):
    """Yield an authenticated KaggleApi; turn whatever the client raises into one KaggleError line."""
    creds = find_credentials()
    with _quiet(creds):
        try:
            yield _api(creds)
        except KaggleError as exc:
            exc.args = (redact(str(exc), creds),)
            raise
        except Exception as exc:
            # not chained: the client's exception may quote a server message that holds a secret
            log.debug("kaggle client error: %s", redact(_describe(exc), creds))
            raise _translate(exc, creds, slug, action) from None


def _translate(exc: Exception, creds: Credentials, slug: str, action: str) -> KaggleError:
    import requests

    response = getattr(exc, "response", None)
    transient = False
    if isinstance(exc, requests.HTTPError) and response is not None:
        status = response.status_code
        transient = status >= 500  # a 429 asks to slow down for a minute or more: not worth a poll loop
        if status == 401:
            msg = (
                f"Kaggle rejected the credentials from {creds.source} (401): create a new token "
                "(kaggle.com > Settings > API > Create New Token) and replace the old one"
            )
        elif status == 403:
            msg = (
                f"Kaggle refused to {action} '{slug}' (403): accept the competition rules at "
                f"{RULES_URL.format(slug=slug)} with the same account, then retry"
            )
        elif status == 404:
            msg = (
                f"no competition '{slug}' on Kaggle (404): check the slug in comp.yaml "
                "(the part after /competitions/ in the competition's address)"
            )
        elif status == 429:
            wait = response.headers.get("Retry-After")
            msg = f"Kaggle rate limit reached (429) trying to {action} '{slug}': retry later" + (
                f" (Kaggle asks to wait {wait} s)" if wait else ""
            )
        else:
            msg = f"Kaggle answered {status} when asked to {action} '{slug}': {_server_message(exc)}; retry later"
    elif isinstance(exc, requests.ConnectionError | requests.Timeout):
        transient = True
        msg = f"could not reach Kaggle: {_network_reason(exc)}; check your connection or proxy (HTTPS_PROXY) and retry"
    else:
        msg = f"the kaggle client failed to {action} '{slug}': {_describe(exc)}"
    return KaggleError(redact(msg, creds), transient=transient)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace collapsed, cut to ``limit`` characters: a message stays one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _server_message(exc: Exception) -> str:
    try:
        message = exc.response.json().get("message")
    except Exception:  # not JSON: a proxy's or load balancer's page
        message = None
    return one_line(message or str(exc) or "no details")


def _network_reason(exc: Exception) -> str:
    import requests

    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    reason = found.group(1).strip() if found else ("timed out" if isinstance(exc, requests.Timeout) else "")
    reason = reason or type(exc).__name__
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"cannot connect to the proxy ({reason})"
    return reason
