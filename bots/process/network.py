"""One line for a network failure at start-up (DNS, refused, TLS, timeout): which URL, what went wrong, and
what to check, instead of a long traceback. Works on the exceptions of httpx (python-telegram-bot, OpenAI),
aiohttp (discord.py) and the standard library, by walking the exception's causes."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from bots.process.logs import Redactor

_DNS_TEXT = ("name or service not known", "nodename nor servname", "getaddrinfo failed",
             "temporary failure in name resolution", "no address associated", "could not resolve")
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the OS errors aiohttp keeps as attributes."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in ("__cause__", "__context__", "os_error", "certificate_error"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                todo.append(nested)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def shown_url(url: str) -> str:
    """The URL without credentials, query or a token in its path: scheme://host[:port]/path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return Redactor()(url.split("?", 1)[0])
    return Redactor()(f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/"))


def _kind(exc: BaseException) -> tuple[str, str] | None:
    """(what happened, what to check) for the first recognisable failure in the chain."""
    for error in _chain(exc):
        text = str(error).lower()
        if isinstance(error, socket.gaierror) or any(t in text for t in _DNS_TEXT):
            return ("the host name does not resolve (DNS)",
                    "the URL's spelling, and this machine's DNS and internet connection")
        if isinstance(error, ssl.SSLCertVerificationError) or "certificate_verify_failed" in text:
            return ("its TLS certificate could not be verified",
                    "the URL, the system's CA certificates (the ca-certificates package), and any proxy that "
                    "intercepts TLS")
        if isinstance(error, ssl.SSLError) or "wrong version number" in text or "ssl" in type(error).__name__.lower():
            return ("the TLS handshake failed",
                    "that the URL's scheme matches the server (https:// for TLS, http:// for plain), and any "
                    "proxy in between")
        if isinstance(error, ConnectionRefusedError) or "connection refused" in text:
            return ("the connection was refused", "that the server is running and the URL's host and port are right")
        if isinstance(error, OSError) and error.errno in _UNREACHABLE:
            return ("the network is unreachable", "this machine's network, firewall and proxy settings")
        if isinstance(error, TimeoutError) or "timed out" in text or "timeout" in type(error).__name__.lower():
            return ("it did not answer in time", "this machine's internet connection, a firewall or a proxy")
        if isinstance(error, ConnectionResetError | ConnectionAbortedError) or "reset by peer" in text:
            return ("the connection was closed abruptly", "any proxy or firewall in between, and the URL")
    return None


def is_network_error(exc: BaseException) -> bool:
    return _kind(exc) is not None


def describe_network_error(exc: BaseException, url: str, setting: str | None = None) -> str:
    """One line naming the URL (without secrets), what went wrong and what to check; `setting` names the
    variable that holds the URL, when there is one."""
    kind = _kind(exc)
    where = shown_url(url)
    variable = f" ({setting})" if setting else ""
    if kind is None:
        return f"cannot reach {where}{variable}: {type(exc).__name__}; check the URL and this machine's network"
    what, check = kind
    return f"cannot reach {where}{variable}: {what}; check {check}"
