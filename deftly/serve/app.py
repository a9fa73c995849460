"""The web app of lesson 2's deployment: an exported image classifier behind three routes.

    GET  /          the page: pick, drop or paste an image (or an image URL), see the ranked predictions
    POST /predict   multipart/form-data with `file` (the image) or `url` (its http(s) address), and
                    optionally `top` (keep the K most probable classes); answers JSON:
                    {"prediction": "7", "probabilities": [["7", 0.93], ["3", 0.07]],
                     "image": {"name": ..., "format": "PNG", "width": 28, "height": 28}}
    GET  /health    {"status": "ok", "model": file name, "classes": [...], and the limits}

Everything else is a JSON 404: no route serves files, so nothing on the server's disk can be
reached through a path. Every refusal is JSON `{"error": what was wrong, "status": code}`: 400 (no
image, not an image, a bad form or URL, a URL too slow to answer, a Host header the server does
not answer to), 408 (a body too slow to arrive), 413 (over the upload size or the pixel limit), 415
(not a multipart form), 404/405 (no such route or method).

The model is loaded once. Requests are read asynchronously; decoding and `predict` run in worker
threads, at most `ServeSettings.parallel` at once (the others wait their turn), so the CPU cores
are shared, not oversubscribed: `serve` also sets torch's threads with `set_inference_threads`.
URL fetches run in worker threads of their own, at most `ServeSettings.max_url_fetches` at once,
so slow URLs cannot take every thread. A server bound to a loopback address answers only requests
whose Host header names it (localhost, 127.0.0.1, ::1), so a web page cannot reach it through a
DNS name that rebinds to 127.0.0.1.
`create_app` builds the app (for tests, or another ASGI server); `serve` runs it with uvicorn.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from deftly.core.device import usable_cores
from deftly.core.errors import ConfigError, DataError
from deftly.serve.classify import image_classes, ranked_prediction, read_image
from deftly.serve.fetch import fetch_image_url
from deftly.serve.inputs import RequestError, check_image
from deftly.serve.page import page_headers, render_page

__all__ = ["LOOPBACK_HOSTS", "ServeSettings", "create_app", "listen", "serve", "served_hosts"]

#: room in a request for the multipart boundaries, part headers and the small fields, over the image
_FORM_OVERHEAD = 16 * 1024
#: the longest text field accepted (a URL, `top`)
_FIELD_BYTES = 8 * 1024
_FIELDS = ("file", "url", "top")
#: the most digits of `top` (more is refused) and of a Content-Length (more is over any limit)
_TOP_DIGITS, _LENGTH_DIGITS = 6, 18
#: the Host names a server bound to a loopback address answers to (with any port), besides its --host
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_ROUTES = "GET /, POST /predict and GET /health"


@dataclass(frozen=True)
class ServeSettings:
    """How the app treats requests.

    max_upload_bytes: the largest image accepted, uploaded or fetched from a URL (10 MiB).
    max_pixels: the most pixels an image's header may announce (40 million): a decompression-bomb guard.
    parallel: predictions run at once, each in a worker thread; more requests wait their turn (default:
        the usable CPU cores, at most 4: on a small machine one torch thread per prediction and one
        prediction per core answers about twice the requests of one prediction on every core).
    urls: whether `POST /predict` fetches a `url` field's image.
    allow_local_urls: whether those URLs (and their redirects) may point at non-public addresses:
        loopback, private, link-local and the like. Off, a URL whose host resolves to any such
        address is refused before a connection is made, and the connection goes to the very
        address that was checked, so neither a redirect nor a DNS answer that changes (rebinding)
        reaches the server's own network; a public host that relays requests inward still could.
    url_timeout: seconds a URL has to send its image, everything included: name lookup, connection,
        redirects, headers and body (`deftly.serve.fetch` enforces it at each step).
    max_url_fetches: URL fetches at once, each in a worker thread of their own pool; more wait their turn.
    max_pending: requests whose image is being read, held or predicted at once; more wait, unread,
        so memory stays under about max_pending x max_upload_bytes whatever the number of clients.
    read_timeout: seconds a client has to send its whole request body (a 408 after that).
    allowed_hosts: the Host header values answered (without the port; "*.example.com" matches its
        subdomains, "*" anything); other requests get a 400. None: `create_app` answers any Host, and
        `serve` answers any unless it is bound to a loopback address, when it answers LOOPBACK_HOSTS
        and its own `host` (a guard against DNS rebinding: a web page cannot reach a local server
        through a name of its own).
    bf16: predict in bfloat16 autocast (`learn.to_bf16()`): about 1.5x faster on a CPU with native
        bf16 (AVX512-BF16 or AMX, `deftly.core.cpu_has_bf16()`), slower elsewhere; probabilities
        differ from float32 ones in the second or third decimal.
    """

    max_upload_bytes: int = 10 * 2 ** 20
    max_pixels: int = 40_000_000
    parallel: int = field(default_factory=lambda: min(4, usable_cores()))
    urls: bool = True
    allow_local_urls: bool = False
    url_timeout: float = 10.0
    max_pending: int = 64
    read_timeout: float = 60.0
    max_url_fetches: int = 8
    allowed_hosts: tuple[str, ...] | None = None
    bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "parallel", "max_pending", "max_url_fetches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServeSettings.{name} must be a whole number >= 1, got {value!r}")
        for name in ("url_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"ServeSettings.{name} must be more than 0 seconds, got {value!r}")
        if self.allowed_hosts is not None:
            if isinstance(self.allowed_hosts, str):
                raise ConfigError(f"ServeSettings.allowed_hosts must be a tuple of host names, not the string "
                                  f"{self.allowed_hosts!r}")
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
            if not self.allowed_hosts:
                raise ConfigError("ServeSettings.allowed_hosts is empty: no request would be answered (None answers "
                                  "the default hosts, ('*',) any)")
            for host in self.allowed_hosts:
                if not isinstance(host, str) or not host or "*" in host[1:] or (
                        host.startswith("*") and host != "*" and not host.startswith("*.")):
                    raise ConfigError(f"ServeSettings.allowed_hosts: {host!r} is not a host name or a pattern "
                                      "like '*.example.com' or '*'")


@dataclass(frozen=True)
class _Image:
    """A request's image: its bytes, its name (the uploaded file's name or the URL) and how
    messages call it ("the file 'a.png'", "the URL 'http://...'", "the upload")."""

    data: bytes
    name: str
    described: str


class _Classifier:
    """The loaded model, its classes, and the limiters of how many requests are pending and how many
    predictions run at once."""

    def __init__(self, learn: Any, settings: ServeSettings, source: str):
        self.learn, self.settings = learn, settings
        self.classes = image_classes(learn, source, "`deftly serve` serves image classifiers")
        self.limiter = anyio.CapacityLimiter(settings.parallel)
        self.pending = anyio.CapacityLimiter(settings.max_pending)
        self.fetches = anyio.CapacityLimiter(settings.max_url_fetches)

    def classify(self, image: _Image, top: int) -> dict[str, Any]:
        """Check the image's header, decode it, then predict it (in a worker thread). A file that
        cannot be decoded is the request's fault (400); a failing model is the server's (500)."""
        info = check_image(image.data, self.settings.max_pixels, image.described)
        try:
            decoded = read_image(self.learn, image.data)
        except Exception as e:  # the header was fine but the pixels are not: PIL raises many kinds of errors
            cause = e.__cause__ if isinstance(e, DataError) and e.__cause__ is not None else e
            raise RequestError(f"{image.described} is not a readable image "
                               f"({type(cause).__name__}: {str(cause)[:200]})") from e
        record = ranked_prediction(self.learn, self.classes, decoded, top)
        return {**record, "image": {"name": image.name, "format": info.format, "width": info.width,
                                    "height": info.height}}


# ------------------------------------------------------------------------------------------ requests


async def _limited(stream: AsyncIterator[bytes], limit: int, max_upload: int) -> AsyncIterator[bytes]:
    """`stream`'s chunks, until more than `limit` bytes have come (then a 413)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise RequestError(f"the request is over the upload limit of {max_upload:,} bytes", status=413)
        yield chunk


async def _read_form(request: Request, settings: ServeSettings) -> FormData:
    """The request's multipart form, refused (4xx) if it is not one or is too large."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise RequestError(f"POST /predict takes multipart/form-data (a field `file` with the image, or `url` with "
                           f"its address), not {kind or 'a body without a Content-Type'}", status=415)
    limit = settings.max_upload_bytes + _FORM_OVERHEAD
    length = request.headers.get("content-length")
    if length is not None:
        digits = length.strip()
        if not (digits.isascii() and digits.isdecimal()):
            raise RequestError(f"the Content-Length header must be a whole number of bytes, got {length[:40]!r}")
        if len(digits) > _LENGTH_DIGITS or int(digits) > limit:
            size = f"{int(digits):,}" if len(digits) <= _LENGTH_DIGITS else f"a {len(digits)}-digit number of"
            raise RequestError(f"the request is {size} bytes, over the upload limit of "
                               f"{settings.max_upload_bytes:,} bytes", status=413)
    async with contextlib.aclosing(_limited(request.stream(), limit, settings.max_upload_bytes)) as stream:
        parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=2, max_part_size=_FIELD_BYTES)
        try:
            return await parser.parse()
        except MultiPartException as e:
            raise RequestError(f"cannot read the form: {e.message}") from e


def _top(form: FormData, n_classes: int) -> int:
    """The optional `top` field: how many classes to answer with (0: all)."""
    text = form.get("top")
    if text is None or text == "":
        return 0
    digits = text.strip() if isinstance(text, str) else ""
    if not (digits.isascii() and digits.isdecimal() and len(digits) <= _TOP_DIGITS):
        shown = repr(text[:40]) if isinstance(text, str) else "a file"
        raise RequestError(f"the field `top` must be a whole number >= 0 of at most {_TOP_DIGITS} digits, got {shown}")
    return min(int(digits), n_classes)


async def _image_bytes(form: FormData, settings: ServeSettings, fetches: anyio.CapacityLimiter) -> _Image:
    """The image the form holds: uploaded, or fetched from its URL in a thread of `fetches`."""
    unknown = sorted({key for key in form.keys() if key not in _FIELDS})
    if unknown:
        raise RequestError(f"unknown form field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                           "expected `file` (the image) or `url` (its address), and optionally `top`")
    file, url = form.get("file"), form.get("url")
    if isinstance(url, UploadFile):
        raise RequestError("the field `url` must be text (an http or https address), not a file")
    if file is not None and url:
        raise RequestError("send either a `file` or a `url`, not both")
    if isinstance(file, UploadFile):
        data = await file.read()
        if len(data) > settings.max_upload_bytes:
            raise RequestError(f"the file is {len(data):,} bytes, over the upload limit of "
                               f"{settings.max_upload_bytes:,} bytes", status=413)
        name = file.filename or ""
        return _Image(data, name, f"the file {name!r}" if name else "the upload")
    if file is not None:
        raise RequestError("the field `file` must be a file upload (a part with a filename), not text")
    if url:
        if not settings.urls:
            raise RequestError("this server does not fetch URLs: upload the image as the field `file`")
        # the fetch keeps its own deadline (settings.url_timeout) and answers a late URL with a RequestError
        data = await anyio.to_thread.run_sync(fetch_image_url, url, settings.max_upload_bytes, settings.url_timeout,
                                              settings.allow_local_urls, limiter=fetches)
        name = url.strip()[:500]
        return _Image(data, name, f"the URL {name[:200]!r}")
    raise RequestError("no image: send a field `file` with the image (multipart/form-data), or `url` with its address")


# ------------------------------------------------------------------------------------------ errors


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def _request_error(request: Request, exc: Exception) -> Response:
    """A refused request: its message, with its status."""
    assert isinstance(exc, RequestError)
    return _error(exc.status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method, a bad form) as JSON that says what was wrong."""
    assert isinstance(exc, HTTPException)
    path = request.url.path[:200]
    if exc.status_code == 404:
        return _error(404, f"nothing at {path!r}: this server has {_ROUTES}")
    if exc.status_code == 405:
        allowed = ", ".join(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()))
        return _error(405, f"{request.method} is not allowed on {path!r} (allowed: {allowed}); this server has "
                           f"{_ROUTES}", headers=exc.headers)
    return _error(exc.status_code, str(exc.detail), headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    """A failure of the server itself: no details in the answer (they go to the server's log)."""
    return _error(500, f"the server failed ({type(exc).__name__}); its log has the details")


# ------------------------------------------------------------------------------------------ the app


def create_app(model: Any, settings: ServeSettings | None = None, name: str | None = None) -> Starlette:
    """The Starlette app serving `model`: a learner (from `load_learner`) or the path of an
    exported one, loaded here once (`settings.bf16` switches it to bf16 autocast). `name` (default:
    the file's name) is how the page and /health call the model. A model that is not an image classifier raises ConfigError."""
    settings = settings or ServeSettings()
    if isinstance(model, (str, os.PathLike)):
        from deftly.export import load_learner

        file = Path(model)
        learn, name, source = load_learner(file.parent, file.name), name or file.name, str(file)
    else:
        learn, name = model, name or "model"
        source = name
    if settings.bf16:
        learn.to_bf16()
    clf = _Classifier(learn, settings, source)
    page = render_page(name, clf.classes, settings.max_upload_bytes, settings.urls)
    health = {"status": "ok", "model": name, "classes": clf.classes, "max_upload_bytes": settings.max_upload_bytes,
              "max_pixels": settings.max_pixels, "urls": settings.urls, "bf16": settings.bf16}

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=page_headers())

    async def health_check(request: Request) -> Response:
        return JSONResponse(health)

    async def predict(request: Request) -> Response:
        async with clf.pending:
            with anyio.move_on_after(settings.read_timeout) as reading:
                form = await _read_form(request, settings)
            if reading.cancelled_caught:
                raise RequestError(f"the request body took more than {settings.read_timeout:g} s to arrive", 408)
            try:
                image = await _image_bytes(form, settings, clf.fetches)
                top = _top(form, len(clf.classes))
            finally:
                await form.close()
            record = await anyio.to_thread.run_sync(clf.classify, image, top, limiter=clf.limiter)
        return JSONResponse(record, headers={"Cache-Control": "no-store"})

    routes = [Route("/", index, methods=["GET"]), Route("/health", health_check, methods=["GET"]),
              Route("/predict", predict, methods=["POST"])]
    handlers = {RequestError: _request_error, HTTPException: _http_error, Exception: _server_error}
    hosts = settings.allowed_hosts
    middleware = [] if hosts is None or "*" in hosts else [Middleware(_TrustedHosts, allowed_hosts=hosts)]
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


class _TrustedHosts(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware (the same patterns, no www redirect), refusing with the
    app's JSON 400 that names the hosts answered instead of a plain-text "Invalid host header"."""

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...]):
        super().__init__(app, allowed_hosts=allowed_hosts, www_redirect=False)

    def _allows(self, header: str | None) -> bool:
        host = _host_name(header)
        return host is not None and any(host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
                                         for pattern in self.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allows(Headers(scope=scope).get("host")):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        what = f"the Host {header[:100]!r}" if header else "a request without a Host header"
        await _error(400, f"this server does not answer {what}; it answers {', '.join(self.allowed_hosts)} "
                          "(start it with --allowed-hosts to add names)")(scope, receive, send)


def _host_name(header: str | None) -> str | None:
    """The host of a Host header, lower case, without its port or an IPv6 address's brackets."""
    if not header:
        return None
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        end = host.find("]")
        if end < 0 or host[end + 1:][:1] not in ("", ":"):
            return None
        return host[1:end]
    if host.count(":") > 1:  # an IPv6 address needs its brackets in a Host header
        return None
    return host.split(":")[0]


# ------------------------------------------------------------------------------------------ serving


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host`:`port` (0: a free port); ConfigError saying why when it cannot."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from e
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # from now on connections wait in the backlog until the server accepts them
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


def served_hosts(host: str, sock: socket.socket) -> tuple[str, ...] | None:
    """The Host names a server listening on `sock` (bound as `host`) answers by default: when bound
    to a loopback address, LOOPBACK_HOSTS and `host` itself; otherwise any (None)."""
    bound = str(sock.getsockname()[0]).split("%")[0]
    if not ipaddress.ip_address(bound).is_loopback:
        return None
    name = host.strip("[]").lower()
    return LOOPBACK_HOSTS + ((name,) if name and name not in LOOPBACK_HOSTS else ())


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(model: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          threads: int | None = None, quiet: bool = False, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the exported model at `model` on http://host:port/ with uvicorn until interrupted.

    Sets torch's threads first (`threads` each, default: the usable cores shared among
    `settings.parallel` predictions), binds the port (0: a free one), loads the model once, calls
    `on_ready(url)`, then serves. `quiet` keeps uvicorn to warnings (no request log). Errors before
    serving (a wrong model file, a port in use) raise ExportError or ConfigError saying what.
    Unless `settings.allowed_hosts` says otherwise, a server bound to a loopback address answers
    only the Host names of `served_hosts`.
    """
    import uvicorn

    from deftly.core.device import set_inference_threads

    settings = settings or ServeSettings()
    set_inference_threads(threads, processes=settings.parallel)
    sock = listen(host, port)  # first: a port in use fails before the model loads
    if settings.allowed_hosts is None:
        settings = dataclasses.replace(settings, allowed_hosts=served_hosts(host, sock))
    try:
        app = create_app(model, settings)
        config = uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet, lifespan="off",
                                server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        if on_ready is not None:
            on_ready(_url(sock))
        server.run(sockets=[sock])
    finally:
        sock.close()
