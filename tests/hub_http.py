"""HTTP plumbing of the local Hub server (``tests/hub_server.py``): which endpoint a request is,
reading its body (plain or chunked), answering it, and a quiet threaded server."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def route(method: str, path: str) -> tuple[str | None, tuple]:
    p = path.strip("/").split("/")
    if method == "POST" and path == "/api/repos/create":
        return "create", ()
    if method == "POST" and path == "/api/validate-yaml":
        return "validate_yaml", ()
    if method == "PUT" and p[0] == "lfs" and len(p) == 2:
        return "lfs_upload", (p[1],)
    if method == "POST" and p == ["lfs", "verify"]:
        return "lfs_verify", ()
    if method == "POST" and p[0] == "datasets" and path.endswith(".git/info/lfs/objects/batch"):
        return "lfs_batch", (f"{p[1]}/{p[2][: -len('.git')]}",)
    if p[0] == "datasets" and len(p) >= 6 and p[3] == "resolve" and method in ("GET", "HEAD"):
        return "resolve", (f"{p[1]}/{p[2]}", p[4], "/".join(p[5:]), method == "HEAD")
    if p[:2] != ["api", "datasets"] or len(p) < 4:
        return None, ()
    repo, rest = f"{p[2]}/{p[3]}", p[4:]
    if method == "GET" and rest and rest[0] == "xet-write-token":
        return "xet_token", (repo,)
    if method == "GET" and not rest:
        return "info", (repo,)
    if method == "GET" and rest[0] == "revision" and len(rest) == 2:
        return "info", (repo, rest[1])
    if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
        return "tree", (repo, rest[1], "/".join(rest[2:]))
    actions = {
        "preupload": "preupload",
        "commit": "commit",
        "paths-info": "paths_info",
        "branch": "branch",
    }
    if method == "POST" and len(rest) == 2 and rest[0] in actions:
        return actions[rest[0]], (repo, rest[1])
    return None, ()


def read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                h.rfile.readline()
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    return h.rfile.read(int(h.headers.get("content-length") or 0))


def send(
    h,
    status: int,
    obj,
    headers: dict | None = None,
    ctype: str = "application/json",
    head: bool = False,
) -> None:
    blob = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(blob)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if not head:
        h.wfile.write(blob)


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client is expected
            super().handle_error(request, client_address)


def handler(hub):
    """The request handler class of ``hub`` (anything with ``handle(h, method)``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two sends: no 40 ms stall

        def log_message(self, *args):  # quiet test output
            pass

        def do_GET(self):
            hub.handle(self, "GET")

        def do_HEAD(self):
            hub.handle(self, "HEAD")

        def do_POST(self):
            hub.handle(self, "POST")

        def do_PUT(self):
            hub.handle(self, "PUT")

    return Handler
