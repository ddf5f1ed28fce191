"""Slack incoming-webhook client: retries with backoff, honours 429 Retry-After, never raises.

Plain HTTP (urllib) rather than slack_sdk's WebhookClient: one retry loop whose attempts are
countable, and no library debug log that could print the webhook URL (the URL is the secret).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

MAX_RETRY_AFTER_SECONDS = 60.0  # a check must not hang for long on a rate-limited channel


@dataclass
class SlackOutcome:
    delivered: bool
    status: int | None
    attempts: int
    error: str | None  # never contains the webhook URL

    @property
    def worth_retrying_later(self) -> bool:
        """Slack or the network was down (not a refused message nor a missing webhook)."""
        if self.delivered or self.attempts == 0:
            return False
        return self.status is None or self.status == 429 or self.status >= 500


def _retry_after(value: str | None, fallback: float) -> float:
    try:
        seconds = float(value) if value is not None else fallback
    except ValueError:
        seconds = fallback
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL cannot be one (without quoting any of it), or None."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "it contains a space or a control character"
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return "it is not a valid URL (host or port)"
    if parts.scheme not in ("https", "http"):
        return "it must start with https://"
    if not parts.hostname:
        return "it has no host"
    if parts.username is not None or parts.password is not None:
        return "it carries user:password@, which a Slack webhook never has"
    if not port_ok:
        return "it is not a valid URL (host or port)"
    return None


def _secret_fragments(url: str) -> list[str]:
    """The URL and every part of it that could be the secret, in each spelling, longest first."""
    if not url:
        return []
    try:
        parts = urllib.parse.urlsplit(url)
        pieces = [parts.netloc.rpartition("@")[0], parts.path, parts.query, parts.fragment]
    except ValueError:
        pieces = [url.partition("://")[2]]
    words = [url, *pieces]
    for piece in pieces:
        words += [w for w in re.split(r"[/?&=#@:]", piece) if len(w) >= 4]
    spellings = set()
    for word in filter(None, words):
        for form in (word, urllib.parse.unquote(word), urllib.parse.quote(word, safe="/")):
            spellings.update({form, repr(form)[1:-1]})
    return sorted(filter(None, spellings), key=len, reverse=True)


class SlackNotifier:
    def __init__(
        self,
        webhook_url: str | None,
        channel: str = "calibration_monitoring",
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_seconds: float = 1.0,
        echo: Callable[[str], None] | None = print,
    ):
        self._webhook_url = (webhook_url or "").strip() or None
        self.channel = channel
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.echo = echo

    @property
    def configured(self) -> bool:
        return self._webhook_url is not None

    def __repr__(self) -> str:  # the URL is a secret: never in a repr
        state = "configured" if self.configured else "not configured"
        return f"SlackNotifier(channel={self.channel!r}, webhook {state})"

    def _scrub(self, text: str) -> str:
        """Every spelling of the URL and of its parts replaced: the http library and a proxy's error
        page quote the path, the query or the userinfo, escaped, percent-decoded or as they are."""
        for secret in _secret_fragments(self._webhook_url or ""):
            text = text.replace(secret, "<webhook>")
        return text

    def _post(self, body: bytes) -> tuple[int | None, str, str | None]:
        """One POST: (status or None on a connection error, response text, Retry-After)."""
        request = urllib.request.Request(
            self._webhook_url or "",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.read(2000).decode("utf-8", "replace"), None
        except urllib.error.HTTPError as exc:
            text = exc.read(2000).decode("utf-8", "replace") if exc.fp else ""
            return exc.code, text, exc.headers.get("Retry-After") if exc.headers else None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"{type(exc).__name__}: {reason}", None

    def send(self, text: str) -> SlackOutcome:
        """Post text; retries 429 (after Retry-After), 5xx and connection errors. Never raises."""
        try:
            return self._send(text)
        except Exception as exc:  # the check must survive anything Slack does
            return SlackOutcome(False, None, 0, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _send(self, text: str) -> SlackOutcome:
        if not self._webhook_url:
            if self.echo is not None:
                self.echo(f"[slack #{self.channel}, not sent: no webhook configured]\n{text}")
            return SlackOutcome(False, None, 0, "no webhook configured")
        problem = webhook_url_problem(self._webhook_url)
        if problem is not None:  # refused before any request: a DNS query would carry user:pass@
            return SlackOutcome(False, None, 0, f"webhook URL not used: {problem}")
        body = json.dumps({"text": text}).encode("utf-8")
        status: int | None = None
        error = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            status, response_text, retry_after = self._post(body)
            if status is not None and 200 <= status < 300:
                return SlackOutcome(True, status, attempt, None)
            detail = response_text.strip()[:200]
            error = f"HTTP {status}: {detail}" if status is not None else detail
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt == self.max_attempts:
                break
            backoff = self.backoff_seconds * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            time.sleep(_retry_after(retry_after, backoff) if status == 429 else backoff)
        return SlackOutcome(False, status, attempt, self._scrub(error))


class SlackResource(dg.ConfigurableResource):
    """Slack incoming webhook.

    Either webhook_url=dg.EnvVar("SLACK_WEBHOOK_URL") (Dagster refuses to start a run when that
    variable is unset), or leave webhook_url unset: the variable named by webhook_env_var is then
    read when the client is made, and an unset one means "echo to stdout". Either way the UI shows
    only the variable's name.
    """

    webhook_url: str | None = None
    webhook_env_var: str | None = "SLACK_WEBHOOK_URL"
    channel: str = "calibration_monitoring"
    max_attempts: int = 4
    timeout: float = 10.0
    backoff_seconds: float = 1.0

    def get_client(self) -> SlackNotifier:
        url = self.webhook_url or (os.environ.get(self.webhook_env_var) if self.webhook_env_var else None)
        return SlackNotifier(
            url,
            channel=self.channel,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )
