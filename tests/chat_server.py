"""A real local HTTP server that speaks the chat-completions protocol (POST <base>/chat/completions) with
deterministic answers, for testing the llm query generator without a model. A passage's text steers it:
a passage containing `FLAKY` gets HTTP 500 on its first two requests, `BROKEN` always gets 500, `SLOW`
is answered after `slow_seconds`, `GARBLED` gets a body that is not JSON, `EMPTY` a reply whose message
has no content, and any other passage gets `questions` questions naming its first word. A request for a
model other than `model` gets 404, as servers answer an unknown model."""

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

PASSAGE = re.compile(r"-{5,}\n(.*?)\n-{5,}", re.DOTALL)


class ChatServer:
    """Start with `with ChatServer() as server:`; `server.base_url` is the endpoint, `server.requests`
    counts requests per passage (its first word)."""

    def __init__(self, model: str = "test-model", slow_seconds: float = 2.0) -> None:
        self.model = model
        self.slow_seconds = slow_seconds
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("model") != server.model:
                    return self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
                passage = PASSAGE.search(body["messages"][-1]["content"]).group(1)
                word = passage.split()[0]
                with server._lock:
                    server.requests[word] += 1
                    seen = server.requests[word]
                if "BROKEN" in passage or ("FLAKY" in passage and seen <= 2):
                    return self._send(500, {"error": {"message": "internal error"}})
                if "SLOW" in passage:
                    time.sleep(server.slow_seconds)
                if "GARBLED" in passage:
                    return self._send_raw(200, b"<html>not json</html>")
                content = (
                    None
                    if "EMPTY" in passage
                    else "Here are the questions:\n"
                    + "\n".join(f"{n}. What does {word} say, part {n}?" for n in range(1, 4))
                )
                self._send(200, _completion(body["model"], content))

            def _send(self, status: int, payload: dict) -> None:
                self._send_raw(status, json.dumps(payload).encode())

            def _send_raw(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    pass

        return Handler


def _completion(model: str, content: str | None) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
