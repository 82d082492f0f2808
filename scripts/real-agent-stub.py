#!/usr/bin/env python3
"""A tiny model-API stub on loopback for the real-agent bench: answers
Anthropic's `POST /v1/messages` (streamed or not) with a one-word reply, so
an offline Claude Code can finish a turn (and fire its `Stop` hook) without
the network. Point Claude Code at it with ANTHROPIC_BASE_URL=http://127.0.0.1:PORT.

Not a model replay: the full session driver is agentmem-replay. Listens on
127.0.0.1 only.

    scripts/real-agent-stub.py [--port 0] [--reply ok] [--delay-ms 0]

Prints `PORT N` on its first line, then serves until killed.
"""

import argparse, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=0)
p.add_argument("--reply", default="ok")
p.add_argument("--delay-ms", type=int, default=0, help="wait before answering (a model's latency)")
a = p.parse_args()


def sse(kind, obj):
    return f"event: {kind}\ndata: {json.dumps(obj)}\n\n".encode()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        self._json(200, {"data": [], "has_more": False})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            req = {}
        if a.delay_ms:
            time.sleep(a.delay_ms / 1000)
        if "count_tokens" in self.path:
            return self._json(200, {"input_tokens": 1})
        if not self.path.startswith("/v1/messages"):
            return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
        model = req.get("model", "stub")
        msg = {"id": "msg_stub", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 1, "output_tokens": 1}}
        if not req.get("stream"):
            msg["content"] = [{"type": "text", "text": a.reply}]
            msg["stop_reason"] = "end_turn"
            return self._json(200, msg)
        body = b"".join([
            sse("message_start", {"type": "message_start", "message": msg}),
            sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": a.reply}}),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": 1}}),
            sse("message_stop", {"type": "message_stop"}),
        ])
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = ThreadingHTTPServer(("127.0.0.1", a.port), H)
print(f"PORT {srv.server_address[1]}", flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
