"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (in a thread) that records every
request and answers with the statuses it is told to, in turn (the last one over and over)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hold_s: float = 0.0  # answer only after this long (a receiver too slow for the sender's timeout)


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._answers: list[Answer] = [Answer()]
        self.received: list[Received] = []
        self.released = threading.Event()  # set at the end: a held answer stops waiting

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer_with(self, *answers: Answer | int) -> None:
        with self._lock:
            self._answers = [a if isinstance(a, Answer) else Answer(a) for a in answers]

    def record(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            answer = receiver.record(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            if answer.hold_s:
                receiver.released.wait(answer.hold_s)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
        thread.join()
