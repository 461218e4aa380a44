"""What the taps do beyond adding to calls in flight, set by the http plugin while it is active: a module of its own, so
that ``init()`` imports the taps' machinery (``_exchange``, ``_body``, ``_usage``) only with an HTTP library."""

from __future__ import annotations

from agentwatch.instrumentation import ProviderTable

__all__ = ["Settings", "settings"]


class Settings:
    """Whether requests to known provider hosts become calls of the taps' own, and the base URLs registered as
    providers."""

    __slots__ = ("capture_hosts", "providers")

    def __init__(self) -> None:
        self.capture_hosts = False
        self.providers = ProviderTable()


settings = Settings()
