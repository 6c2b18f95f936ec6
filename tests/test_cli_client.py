"""The API client the CLI uses (``meshrouter/api/client.py``), against a small
HTTP server written here with the standard library: JSON answers however they
are delimited, errors as one line with their status, garbage, caps, the per-call
timeout and a router that is not there."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshrouter.api import client as client_module
from meshrouter.api.client import ApiClient
from meshrouter.errors import ApiError


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApi:
    """An HTTP/1.1 server on 127.0.0.1:0 answering from ``answers`` and recording
    every request.  An answer is (status, body bytes, mode) where mode is
    "length" (Content-Length), "chunked", "close" (delimited by EOF), "raw"
    (the body is the whole response) or "sleep" (answer after 3 s)."""

    answers: dict[tuple[str, str], tuple[int, bytes, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    address: str = ""

    def json(self, method: str, path: str, value: Any, status: int = 200) -> None:
        self.answers[(method, path)] = (status, json.dumps(value).encode(), "length")


def _handler(fake: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append(
                Recorded(self.command, self.path, dict(self.headers.items()), body)
            )
            status, payload, mode = fake.answers.get(
                (self.command, self.path),
                (404, b'{"error": "no such route in the fake", "status": 404}', "length"),
            )
            if mode == "raw":
                self.wfile.write(payload)
                self.close_connection = True
                return
            if mode == "sleep":
                time.sleep(3)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if mode == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(payload), 7):
                    piece = payload[start : start + 7]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif mode == "close":
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def _answer_quietly(self) -> None:
            try:
                self._answer()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (cap or timeout tests)

        do_GET = do_POST = do_PUT = do_DELETE = _answer_quietly

    return Handler


@contextmanager
def running_fake_api() -> Iterator[FakeApi]:
    """A FakeApi serving on 127.0.0.1 (port 0) until the block ends."""
    fake = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with running_fake_api() as fake:
        yield fake


@pytest.mark.parametrize("mode", ["length", "chunked", "close"])
def test_json_answers_however_delimited(fake_api: FakeApi, mode: str) -> None:
    value = {"peers": [{"name": "aa:bb:cc:dd:ee:ff", "text": "x" * 300}], "n": 3}
    fake_api.answers[("GET", "/status")] = (200, json.dumps(value).encode(), mode)
    assert ApiClient(fake_api.address).request("GET", "/status") == value


def test_a_body_is_sent_as_json_and_get_sends_none(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/connect", {"connecting": ["10.0.0.1:6783"]})
    fake_api.json("GET", "/report", {"router": {}})
    api = ApiClient(fake_api.address)
    assert api.post("/connect", {"peers": ["10.0.0.1"], "replace": True}) == {
        "connecting": ["10.0.0.1:6783"]
    }
    assert api.get("/report") == {"router": {}}
    post, get = fake_api.requests
    assert (post.method, post.path) == ("POST", "/connect")
    assert json.loads(post.body) == {"peers": ["10.0.0.1"], "replace": True}
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Host"] == fake_api.address
    assert (get.method, get.path, get.body) == ("GET", "/report", b"")


def test_an_error_answer_is_one_line_with_its_status(fake_api: FakeApi) -> None:
    fake_api.json("PUT", "/ip/c/10.0.0.9", {"error": "address 10.0.0.9\nis taken", "status": 409},
                  status=409)
    with pytest.raises(ApiError) as caught:
        ApiClient(fake_api.address).request("PUT", "/ip/c/10.0.0.9")
    assert str(caught.value) == "address 10.0.0.9 is taken"
    assert caught.value.status == 409


def test_an_error_without_a_message_names_the_status(fake_api: FakeApi) -> None:
    fake_api.json("GET", "/x", [1, 2], status=500)
    with pytest.raises(ApiError, match=r"^HTTP 500$"):
        ApiClient(fake_api.address).get("/x")


def test_non_json_and_malformed_answers(fake_api: FakeApi) -> None:
    fake_api.answers[("GET", "/html")] = (200, b"<html>hello</html>", "length")
    fake_api.answers[("GET", "/raw")] = (0, b"SSH-2.0-OpenSSH\r\n\r\n", "raw")
    fake_api.answers[("GET", "/short")] = (
        0, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", "raw"
    )
    fake_api.answers[("GET", "/nothing")] = (0, b"", "raw")
    api = ApiClient(fake_api.address)
    with pytest.raises(ApiError, match="answered 200 with non-JSON content"):
        api.get("/html")
    with pytest.raises(ApiError, match=r"malformed HTTP answer \(status line 'SSH-2.0-OpenSSH'\)"):
        api.get("/raw")
    with pytest.raises(ApiError, match="body shorter than Content-Length 50"):
        api.get("/short")
    with pytest.raises(ApiError, match=r"malformed HTTP answer \(empty answer\)"):
        api.get("/nothing")


def test_an_answer_larger_than_the_cap_is_refused(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_RESPONSE", 1000)
    monkeypatch.setattr(client_module, "MAX_HEAD", 1000)
    fake_api.json("GET", "/big", ["x" * 5000])
    with pytest.raises(ApiError, match="more than 1000 bytes"):
        ApiClient(fake_api.address).get("/big")


def test_the_per_call_timeout_bounds_a_silent_server(fake_api: FakeApi) -> None:
    fake_api.answers[("GET", "/slow")] = (200, b"{}", "sleep")
    api = ApiClient(fake_api.address, timeout=30)
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"did not answer GET /slow within 0.3s") as caught:
        api.request("GET", "/slow", timeout=0.3)
    assert time.monotonic() - started < 2.5  # the server answers after 3 s
    assert caught.value.status == 504


def test_no_router_says_so_in_one_line() -> None:
    with socket.socket() as holder:  # a bound port nobody listens on: connect is refused
        holder.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(ApiError) as caught:
            ApiClient(address).get("/status")
    text = str(caught.value)
    assert text == (
        f"cannot reach the meshrouter API at {address} (Connection refused); "
        "is `meshrouter launch peer` running there?"
    )


def test_a_bad_address_is_an_api_error() -> None:
    with pytest.raises(ApiError, match="port must be a number"):
        ApiClient("127.0.0.1:99999")
