"""An image URL's body for the web app, fetched so a request can neither outlast its deadline nor
reach the server's own network.

`fetch_image_url(url, max_bytes, timeout, allow_local)` GETs an http(s) URL (following at most
MAX_REDIRECTS redirects) and returns at most `max_bytes` bytes. What it guarantees:

- **One deadline for everything.** Resolving the host, connecting, the TLS handshake, sending the
  request, reading the headers and the body, and every redirect hop share one deadline `timeout`
  seconds after the call: each blocking step waits at most the time left (a socket read of one
  byte every 0.2 s cannot stretch it). Name resolution cannot be interrupted, so it runs in a helper
  thread that is abandoned (and finishes on its own) when the deadline comes first.
- **The checked address is the connected one.** Unless `allow_local`, each hop's host is resolved
  once; if any of its addresses is loopback, private, link-local, multicast, reserved or
  unspecified (IPv4 addresses embedded in IPv6 ones, as IPv4-mapped, IPv4-compatible, NAT64
  64:ff9b::/96 and 6to4 2002::/16 addresses, are unpacked and checked as IPv4) the URL is refused
  before any connection, and the socket connects to one of those same addresses: a DNS answer that
  changes between the check and the connection (DNS rebinding) changes nothing. The connected
  peer's address is checked again. HTTPS verifies the certificate against the URL's host name.
- URLs with a user name or password, schemes other than http and https, and proxies (none are used,
  whatever the environment says) are refused.

Every failure raises RequestError (from deftly.serve.inputs) with a short message: 413 for a body
over `max_bytes`, 400 for the rest. When local URLs are not allowed, failures to connect to a
public host say no more than that (no errno), so the messages tell a requester nothing a public
port scan would not.
"""
from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from deftly.serve.inputs import RequestError

__all__ = ["MAX_REDIRECTS", "fetch_image_url", "is_public"]

#: redirects followed when fetching a URL
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"User-Agent": "deftly-serve", "Accept": "image/*"}
#: characters kept as they are in a request target; the rest (spaces, non-ASCII, controls) are %-encoded
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _shown(url: str) -> str:
    """`url` as messages quote it (at most 200 characters)."""
    return repr(url if len(url) <= 200 else url[:200] + "...")


@dataclass(frozen=True)
class _Target:
    """An http(s) URL split into what a connection needs; `host` is ASCII (IDNA), without brackets."""

    url: str
    tls: bool
    host: str
    port: int
    path: str  # the request target: path and query, %-encoded


def _parse(url: str) -> _Target:
    """`url` as a _Target; RequestError (400) if it is not an http(s) URL with a host, or holds a
    user name or password."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RequestError(f"not a valid URL: {_shown(url)} ({e})") from e
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RequestError(f"only http and https URLs can be fetched, not {_shown(url)}")
    if "@" in parts.netloc:  # said without repeating the URL: it holds a password
        raise RequestError("the URL holds a user name or password (user:password@host); this server does not "
                           "fetch such URLs")
    if not parts.hostname:
        raise RequestError(f"the URL {_shown(url)} has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise RequestError(f"the URL {_shown(url)} has an invalid host name ({e})") from e
    target = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
    return _Target(url, scheme == "https", host, port or (443 if scheme == "https" else 80), target)


# ------------------------------------------------------------------------------------------ addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public(address: _Address) -> bool:
    """Whether `address` is a public unicast address: not loopback, private, link-local, site-local,
    multicast, reserved or unspecified; an IPv6 address with an IPv4 one inside is judged by that."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_loopback
                                      or address.is_link_local or address.is_private or address.is_unspecified)


def _address(sockaddr: Any) -> _Address:
    """The IP address of a socket address from getaddrinfo or getpeername (an IPv6 scope dropped)."""
    return ipaddress.ip_address(str(sockaddr[0]).split("%")[0])


def _left(deadline: float) -> float:
    """Seconds left before `deadline` (socket.timeout when none)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("the deadline passed")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[tuple[Any, ...]]:
    """getaddrinfo(host, port) for TCP, given up at `deadline` (socket.timeout): a resolver still
    working then is left to finish in its helper thread, which nothing waits for."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # an address literal: nothing to look up
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    answer: dict[str, Any] = {}

    def look_up() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # handed to the waiting thread
            answer["error"] = e

    helper = threading.Thread(target=look_up, name="deftly-resolve", daemon=True)
    helper.start()
    helper.join(_left(deadline))
    if helper.is_alive():
        raise socket.timeout("name resolution did not finish in time")
    if "error" in answer:
        raise answer["error"]
    return answer["infos"]


def _open_socket(target: _Target, deadline: float, allow_local: bool) -> socket.socket:
    """A TCP socket connected to an address of `target.host`, resolved once; unless `allow_local`,
    every address it resolves to (and the connected peer) must be public (RequestError otherwise)."""
    try:
        infos = _resolve(target.host, target.port, deadline)
    except (socket.gaierror, UnicodeError) as e:
        raise RequestError(f"cannot resolve the host {target.host!r} of the URL") from e
    if not allow_local and not all(is_public(_address(info[4])) for info in infos):
        raise RequestError(f"the URL's host {target.host!r} is a local or private address; this server only "
                           "fetches public URLs (start it with --allow-local-urls to allow them)")
    failure: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)  # the address just checked: no second lookup
            if not allow_local and not is_public(_address(sock.getpeername())):
                raise RequestError(f"the URL's host {target.host!r} is a local or private address")
            return sock
        except socket.timeout:
            sock.close()
            raise
        except RequestError:
            sock.close()
            raise
        except OSError as e:
            sock.close()
            failure = e
    raise failure or OSError(f"no address for {target.host!r}")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, host names checked (made once: loading them takes a while)."""
    return ssl.create_default_context()


# ------------------------------------------------------------------------------------------ the connection


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each waiting at most the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock, self._deadline = sock, deadline
        self._io = sock.makefile("rb", buffering=0)  # counts as a user of the socket until closed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_left(self._deadline))
        return self._io.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._io.close()
        super().close()


class _DeadlineSocket:
    """What http.client uses of a connected socket (sendall, makefile, close), every send and read
    waiting at most the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock, self._deadline = sock, deadline

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(_left(self._deadline))
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        self._sock.close()  # a reader still open keeps it until the reader closes, as for a plain socket


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection to `target` that connects through `_open_socket` (checked addresses,
    the deadline) and, for https, verifies the certificate against the URL's host name."""

    def __init__(self, target: _Target, deadline: float, allow_local: bool):
        super().__init__(target.host, target.port)
        self.target, self.deadline, self.allow_local = target, deadline, allow_local
        if target.tls:
            self.default_port = 443  # the Host header leaves out the default port

    def connect(self) -> None:
        sock = _open_socket(self.target, self.deadline, self.allow_local)
        if self.target.tls:
            try:
                sock.settimeout(_left(self.deadline))
                sock = _tls_context().wrap_socket(sock, server_hostname=self.target.host)
            except BaseException:
                sock.close()
                raise
        self.sock = _DeadlineSocket(sock, self.deadline)  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------ fetching


def _next_hop(target: _Target, location: str | None) -> _Target:
    """The target a redirect's Location points at, checked as the first URL was."""
    if not location:
        raise RequestError("the URL answered with a redirect but no Location to go to")
    url = urllib.parse.urljoin(target.url, location.strip())
    try:
        return _parse(url)
    except RequestError as e:
        raise RequestError(f"the URL redirects to a URL this server does not fetch: {e}") from e


def _body(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body of `response`, at most `max_bytes` (413 when over)."""
    if response.length is not None and response.length > max_bytes:  # http.client parsed Content-Length
        raise RequestError(f"the URL's image is {response.length:,} bytes, over the limit of {max_bytes:,}",
                           status=413)
    body = bytearray()
    while chunk := response.read1(_CHUNK):  # what has come, without waiting for a whole chunk
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(f"the URL's image is over the limit of {max_bytes:,} bytes", status=413)
    if response.length:  # the connection closed before the announced length
        raise RequestError(f"the URL's answer ended {response.length:,} bytes short of its Content-Length")
    return bytes(body)


def fetch_image_url(url: str, max_bytes: int, timeout: float = 10.0, allow_local: bool = False) -> bytes:
    """The body of a GET of `url` (http or https), at most `max_bytes` bytes, returned or refused
    within about `timeout` seconds in all, redirects included (see the module's docstring).

    Raises RequestError: 413 when the body is over `max_bytes`; 400 for anything else (a bad or
    local URL, an HTTP error status, too many redirects, no whole answer within `timeout`).
    """
    deadline = time.monotonic() + timeout
    target = _parse(url.strip())
    try:
        for _ in range(MAX_REDIRECTS + 1):
            connection = _Connection(target, deadline, allow_local)
            try:
                connection.request("GET", target.path, headers=_HEADERS)
                with connection.getresponse() as response:
                    if response.status in _REDIRECTS:
                        target = _next_hop(target, response.getheader("Location"))
                        continue
                    if not 200 <= response.status < 300:
                        raise RequestError(f"fetching the URL gave HTTP {response.status} {response.reason[:80]}")
                    return _body(response, max_bytes)
            finally:
                connection.close()
        raise RequestError(f"the URL redirected more than {MAX_REDIRECTS} times")
    except RequestError:
        raise
    except socket.timeout as e:
        raise RequestError(f"the URL took more than {timeout:g} s to send its image") from e
    except ssl.SSLCertVerificationError as e:
        raise RequestError(f"the URL's certificate cannot be trusted ({e.verify_message})") from e
    except ssl.SSLError as e:
        raise RequestError("cannot fetch the URL (its secure connection failed)") from e
    except http.client.HTTPException as e:
        raise RequestError("cannot fetch the URL (its server did not answer with valid HTTP)") from e
    except OSError as e:
        detail = (e.strerror or type(e).__name__) if allow_local else "the connection failed"
        raise RequestError(f"cannot fetch the URL ({detail})") from e
