"""Which Host and Origin headers the UIs accept: loopback always, a forwarded name in Codespaces.

VS Code and Codespaces forward a port under a host like `<codespace>-5000.app.github.dev`;
MLflow's DNS-rebinding guard and Jupyter's host/origin checks must accept exactly that name,
while a plain local run keeps refusing foreign Host headers.
"""

from __future__ import annotations

from collections.abc import Mapping

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]


def forwarded_host(port: int, environ: Mapping[str, str]) -> str | None:
    """The host name Codespaces forwards `port` under, or None outside Codespaces."""
    name = environ.get("CODESPACE_NAME", "").strip()
    domain = environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "").strip()
    if not name or not domain:
        return None
    return f"{name}-{port}.{domain}"


def mlflow_allowed_hosts(port: int, environ: Mapping[str, str]) -> list[str]:
    """Host header patterns for MLflow's `--allowed-hosts` (fnmatch patterns, port optional)."""
    hosts = [*LOOPBACK_NAMES, "localhost:*", "127.0.0.1:*", "[[]::1]:*"]
    if forwarded := forwarded_host(port, environ):
        hosts += [forwarded, f"{forwarded}:*"]
    return hosts


def allowed_origins(port: int, environ: Mapping[str, str]) -> list[str]:
    """Browser origins allowed cross-origin: the forwarded https origin in Codespaces, else none."""
    forwarded = forwarded_host(port, environ)
    return [f"https://{forwarded}"] if forwarded else []


def jupyter_local_hostnames(port: int, environ: Mapping[str, str]) -> list[str]:
    """Names Jupyter treats as local when remote access stays disallowed."""
    names = ["localhost"]
    if forwarded := forwarded_host(port, environ):
        names.append(forwarded)
    return names
