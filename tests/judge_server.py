"""A real OpenAI-compatible judge on localhost for the learning tests: it prefers the reply
without an exclamation mark, and records every prompt it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class Judge(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][1]["content"]
        Judge.asked.append(prompt)
        first = prompt.split("\nA: ", 1)[1].split("\nB: ", 1)[0]
        better = "B" if "!" in first else "A"
        answer = {"choices": [{"message": {"content": json.dumps({"better": better})}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def judging() -> Iterator[str]:
    """Serve the judge while inside; yields its API root (http://127.0.0.1:PORT/v1)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
