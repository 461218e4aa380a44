"""Delivering alerts: a Slack-compatible webhook (``{"text": ...}``) or an email over SMTP (stdlib)."""

from __future__ import annotations

import json
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


def validate_webhook_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("webhook_url must be an http(s) URL")
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
