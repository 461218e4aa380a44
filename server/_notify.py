"""Delivering alerts: a Slack-compatible webhook (``{"text": ...}``) or an email over SMTP (stdlib)."""

from __future__ import annotations

import ipaddress
import json
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any

from ._settings import Settings

__all__ = ["send_webhook", "send_email", "validate_webhook_url", "DeliveryError"]


class DeliveryError(Exception):
    pass


_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?").fullmatch


def validate_webhook_url(url: str) -> str:
    """The URL as given, if urllib can send to it as it is; ValueError (a 422 at rule creation) otherwise.

    Checked strictly because a URL that parses but cannot be sent (a space, a bad port) would only fail at the
    first alert, when nobody is looking."""
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in url):
        raise ValueError("webhook_url must not contain spaces, control or non-ASCII characters (percent-encode them)")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("webhook_url must be an http(s) URL with a host, like https://hooks.example.com/T0/B0")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("webhook_url must not carry user:password@; put a token in the path or query")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("webhook_url has an invalid port") from None
    host = parsed.hostname
    if not _HOST(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"webhook_url host {host!r} is not a valid host name or IP address") from None
    if "\\" in url:
        raise ValueError("webhook_url must not contain backslashes")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects elsewhere is refused rather than followed: the target was configured on purpose.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def send_webhook(url: str, text: str, details: dict[str, Any], timeout: float) -> None:
    body = json.dumps({"text": text, "agentwatch": details}, default=str).encode("utf-8")
    request = urllib.request.Request(validate_webhook_url(url), data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "agentwatch"})
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status >= 300:
                raise DeliveryError(f"webhook answered HTTP {response.status}")
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"webhook answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DeliveryError(f"webhook not reachable: {error}") from None


def send_email(settings: Settings, to: str, subject: str, text: str) -> None:
    if not settings.smtp_host:
        raise DeliveryError("email alerts need SMTP_HOST")
    message = EmailMessage()
    message["From"] = settings.from_email
    message["To"] = to
    # Header injection is impossible through EmailMessage, but a newline would still garble the subject.
    message["Subject"] = " ".join(subject.split())[:200]
    message.set_content(text)
    try:
        if settings.smtp_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                                    timeout=settings.webhook_timeout_seconds,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.webhook_timeout_seconds)
        with client:
            if settings.smtp_starttls and not settings.smtp_ssl:
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                client.login(settings.smtp_user, settings.smtp_password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"email not sent: {error}") from None
