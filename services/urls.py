"""URLs clients on this machine use to reach a service bound to the configured host."""

from __future__ import annotations

from services.settings import StackSettings

_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def client_host(settings: StackSettings) -> str:
    """The address a client on this machine dials: a wildcard bind is reached on loopback."""
    return "127.0.0.1" if settings.host in _WILDCARD_HOSTS else settings.host


def service_url(settings: StackSettings, port: int) -> str:
    host = client_host(settings)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
