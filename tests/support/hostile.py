"""A registry that answers badly on purpose: oversized, truncated, mistyped, redirecting,
never-ending and trickling answers, chosen by the first path segment of the repository.

`/v2/<mode>/...`: every call under that repository prefix gets the fault `<mode>`, so one server
serves every case at once. A pull (`releaser lock` of `HOST/<mode>/app:v1`) meets it on the
manifest or, for the blob modes, on the image config; a push (`airgap --to HOST/<mode>`) meets it
on its first upload (HEADs answer 404 so the client goes on to upload). `/v2/` itself answers as a
registry does; `/token/<mode>` is a token service with the same faults.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()

# mode -> what the client must say about it (a fragment of the error message)
MANIFEST_FAULTS = {
    "huge": "more than the 4194304 an answer may have",
    "endless": "goes on past the 4194304 bytes",
    "truncated": "was cut off",
    "trickle": "took over",
    "silent": "did not answer within",
    "list": "is a JSON list, not an object",
    "notjson": "is not JSON",
    "deep": "too big or too deep",
    "loop": "more than 5 times",
    "badindex": "manifests[0] is not a descriptor",
    "badconfig": "config is not a descriptor",
    "endlessblob": "goes on past the 78 bytes its descriptor gives",
    "slowblob": "bytes/s, below 1024 bytes/s",
    "tokenlist": "the token service's answer is a JSON list",
    "tokenendless": "goes on past the 4194304 bytes",
    "tokenloop": "more than 5 times",
}


def _manifest(config_size: int = len(CONFIG)) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": CONFIG_DIGEST,
                "size": config_size,
            },
            "layers": [],
        }
    ).encode()


class _Quiet(ThreadingHTTPServer):
    """A client that hangs up is what the faults provoke: not worth a traceback on stderr (which
    the in-process CLI runs of the tests would capture as their own)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class HostileRegistry:
    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.scripted: dict[str, tuple[int, dict[str, str], bytes]] = {}  # mode -> the answer to every GET
        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HostileRegistry:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ answers

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        path = h.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        try:
            if path == "/v2/" or parts[0] not in ("v2", "token"):
                return self.send(h, 200, b"{}")
            mode = parts[1] if len(parts) > 1 else ""
            if parts[0] == "token":
                return self.token(h, mode)
            if mode.startswith("token") and "Authorization" not in h.headers:
                realm = f"http://{self.host}/token/{mode}"
                return self.send(h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})
            if mode == "auth":
                return self.send(h, 401, b"{}", {"WWW-Authenticate": 'Basic realm="hostile"'})
            if mode in self.scripted and h.command in ("GET", "HEAD"):
                code, headers, body = self.scripted[mode]
                return self.send(h, code, body, headers)
            if mode == "loop":
                return self.send(h, 302, b"", {"Location": h.path})
            if h.command == "HEAD":
                return self.send(h, 404, b"")
            if "/blobs/" in path and h.command == "GET":
                return self.blob(h, mode)
            if h.command != "GET":
                return self.fault(h, mode, b"{}")
            return self.manifest(h, mode)
        except (BrokenPipeError, ConnectionResetError):
            return None

    def manifest(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        docs = {
            "list": b"[]",
            "notjson": b"<html>a web server, not a registry</html>",
            "deep": b"[" * 100_000 + b"]" * 100_000,
            "badindex": json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [1]}).encode(),
            "badconfig": json.dumps({"schemaVersion": 2, "config": {"digest": 5}, "layers": []}).encode(),
        }
        kind = OCI_INDEX if mode == "badindex" else OCI_MANIFEST
        self.fault(h, mode, docs.get(mode, _manifest()), {"Content-Type": kind})

    def blob(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        if mode == "endlessblob":
            return self.endless(h)
        if mode == "slowblob":
            return self.trickle(h, len(CONFIG))
        return self.send(h, 200, CONFIG)

    def token(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        if mode == "tokenlist":
            return self.send(h, 200, b"[]")
        if mode == "tokenendless":
            return self.endless(h)
        if mode == "tokenloop":
            return self.send(h, 302, b"", {"Location": h.path})
        return self.send(h, 200, b'{"token": "t"}')

    def fault(
        self, h: BaseHTTPRequestHandler, mode: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        if mode == "huge":
            return self.send(h, 200, b" " * (5 << 20), headers)
        if mode == "endless":
            return self.endless(h)
        if mode == "truncated":
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.write(b'{"schemaVersion"')
            h.close_connection = True
            return None
        if mode == "trickle":
            return self.trickle(h, 1000)
        if mode == "silent":
            self.stopping.wait(30)
            return None
        if mode == "loop":
            return self.send(h, 302, b"", {"Location": h.path})
        return self.send(h, 200 if h.command == "GET" else 201, body, headers)

    def send(
        self, h: BaseHTTPRequestHandler, code: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(code)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def endless(self, h: BaseHTTPRequestHandler) -> None:
        """A body that never ends (no length, closed only by the client)."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        chunk = b"{" + b" " * (1 << 16)
        while not self.stopping.is_set():
            h.wfile.write(chunk)

    def trickle(self, h: BaseHTTPRequestHandler, length: int) -> None:
        """One byte every 0.2 s, of a body of `length` bytes."""
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        for _ in range(length):
            if self.stopping.wait(0.2):
                return
            h.wfile.write(b" ")
            h.wfile.flush()


class HeadOnlyCache:
    """In front of a real registry, what a pull-through cache that lost a blob looks like: every
    request is passed on, except a GET of the blobs in `lost`, which answers 404 while HEAD still
    says 200."""

    def __init__(self, upstream: str) -> None:
        outer = self
        self.upstream = upstream
        self.lost: set[str] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.forward(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HeadOnlyCache:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        import requests

        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if h.command == "GET" and any(h.path.split("?")[0].endswith(f"/blobs/{d}") for d in self.lost):
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length")}
        resp = requests.request(
            h.command,
            f"http://{self.upstream}{h.path}",
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=30,
        )
        h.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                h.send_header(k, v.replace(self.upstream, self.host))
        h.send_header("Content-Length", str(len(resp.content)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(resp.content)
