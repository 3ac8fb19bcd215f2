"""Worker: the framed protocol over a Unix socket, against a real worker subprocess."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import shutil
import unittest

from .support import write_artifact

DEADLINE = 30.0

TASKA = {"main.py": """
    import sys
    import nuclio_sdk

    def init_context(context):
        print("hello from init")

    def handler(context, event):
        context.logger.info_with("got", size=event.size)
        print("to stdout")
        sys.stderr.write("to stderr\\n")
        kind = event.headers.get("X-Kind")
        if kind == "raise":
            raise RuntimeError("kaput")
        if kind == "bytes":
            return event.body
        if kind == "call":
            response = context.platform.call_function("taskb", nuclio_sdk.Event(body={"x": 2, "y": 3}))
            return response.body
        return {"body": event.body, "fields": event.fields, "path": event.path, "method": event.method,
                "headers": event.headers, "id": event.id, "ts": str(event.timestamp),
                "trigger": [event.trigger.kind, event.trigger.name], "worker": context.worker_id}
"""}

TASKB = {"main.py": """
    def handler(context, event):
        return 201, {"sum": event.body["x"] + event.body["y"]}
"""}


def frame(kind, payload):
    return (len(payload) + 1).to_bytes(4, "big") + kind + payload


def event_frame(body=b"", headers=None, content_type="", fields=None, path="/"):
    meta = json.dumps({
        "id": "ev-1", "method": "POST", "path": path, "fields": fields or {},
        "headers": headers or {}, "content_type": content_type, "timestamp": 1700000000,
        "trigger": {"kind": "http", "name": "default-http"},
    }).encode()
    return frame(b"E", len(meta).to_bytes(4, "big") + meta + body)


class Peer(object):
    """The Rust side of the socket: reads frames with a deadline."""

    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""

    def _read(self, count):
        while len(self.buffer) < count:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError("worker closed the socket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read(self):
        length = int.from_bytes(self._read(4), "big")
        payload = self._read(length)
        return payload[:1], payload[1:]

    def until(self, kind):
        """Frames up to and including the first of `kind`; returns (that payload, logs)."""
        logs = []
        while True:
            got, payload = self.read()
            if got == kind:
                return payload, logs
            self.assert_kind(got, b"L")
            logs.append(json.loads(payload))

    @staticmethod
    def assert_kind(got, expected):
        if got != expected:
            raise AssertionError("expected frame %r, got %r" % (expected, got))

    def response(self):
        payload, logs = self.until(b"R")
        meta_len = int.from_bytes(payload[:4], "big")
        return json.loads(payload[4:4 + meta_len]), payload[4 + meta_len:], logs


class WorkerTest(unittest.TestCase):
    def start(self, tasks):
        tmp = tempfile.mkdtemp(prefix="fz-worker-")
        self.addCleanup(shutil.rmtree, tmp, True)
        write_artifact(tmp, tasks, function="fn")
        path = os.path.join(tmp, "w.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(DEADLINE)
        self.addCleanup(listener.close)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONIZER_")}
        env.update({"PYTHONPATH": tmp, "FUSIONIZER_FUNCTION": "fn"})
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "fusionizer_dispatcher.worker", "--socket", path,
             "--handler", "_fusionizer_entry:handler", "--worker-id", "3", "--function", "fn"],
            cwd=tmp, env=env, stderr=subprocess.PIPE,
        )
        self.addCleanup(process.stderr.close)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        conn, _ = listener.accept()
        conn.settimeout(DEADLINE)
        self.addCleanup(conn.close)
        return process, conn, Peer(conn)

    def test_round_trip(self):
        process, conn, peer = self.start({"taska": TASKA, "taskb": TASKB})
        ready, logs = peer.until(b"S")
        ready = json.loads(ready)
        self.assertEqual(ready["tasks"], ["taska", "taskb"])
        self.assertEqual(ready["pid"], process.pid)
        self.assertIn({"task": "taska", "level": "info", "message": "hello from init", "with": {},
                       "stream": "stdout"}, logs)

        conn.sendall(event_frame(b'{"a": 1}', {"task-name": "taska", "x-custom": "v"},
                                 "application/json", {"q": "1"}, "/taska"))
        meta, body, logs = peer.response()
        self.assertEqual((meta["status_code"], meta["content_type"], meta["task"]),
                         (200, "application/json", "taska"))
        self.assertEqual(meta["calls"], {"local": 0, "remote": 0})
        seen = json.loads(body)
        self.assertEqual(seen["body"], {"a": 1})
        self.assertEqual((seen["fields"], seen["path"], seen["method"]), ({"q": "1"}, "/taska", "POST"))
        self.assertEqual(seen["headers"], {"Task-Name": "taska", "X-Custom": "v"})
        self.assertEqual((seen["id"], seen["ts"], seen["worker"]), ("ev-1", "2023-11-14 22:13:20", "3"))
        self.assertEqual(seen["trigger"], ["http", "default-http"])
        streams = {(log["stream"], log["task"], log["message"]) for log in logs}
        self.assertIn(("logger", "taska", "got"), streams)
        self.assertIn(("stdout", "taska", "to stdout"), streams)
        self.assertIn(("stderr", "taska", "to stderr"), streams)
        self.assertIn({"size": 8}, [log["with"] for log in logs if log["message"] == "got"])

        conn.sendall(event_frame(b"\x00\xff", {"Task-Name": "taska", "X-Kind": "bytes"}, "application/octet-stream"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], body), (200, b"\x00\xff"))

        conn.sendall(event_frame(headers={"Task-Name": "taska", "X-Kind": "call"}))
        meta, body, _ = peer.response()
        self.assertEqual((json.loads(body), meta["calls"]), ({"sum": 5}, {"local": 1, "remote": 0}))

        conn.sendall(event_frame(headers={"Task-Name": "taska", "X-Kind": "raise"}))
        meta, body, logs = peer.response()
        self.assertEqual((meta["status_code"], meta["content_type"]), (500, "text/plain"))
        self.assertTrue(body.startswith(b'Exception caught in handler - "kaput": Traceback'), body)
        self.assertIn("error", [log["level"] for log in logs])

        conn.sendall(event_frame(headers={}))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], meta["task"]), (400, None))

        conn.sendall(event_frame(b'{"x": 1, "y": 1}', {"Task-Name": "taskb"}, "application/json"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], json.loads(body)), (201, {"sum": 2}))

        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(DEADLINE), 0)

    def test_init_failure_sends_F_naming_the_task(self):
        broken = {"main.py": """
            def init_context(context):
                raise RuntimeError("no database")

            def handler(context, event):
                return "unreachable"
        """}
        process, conn, peer = self.start({"good": TASKB, "broken": broken})
        payload, _ = peer.until(b"F")
        failure = json.loads(payload)
        self.assertEqual(failure["task"], "broken")
        self.assertIn("no database", failure["error"])
        self.assertIn("Traceback", failure["error"])
        self.assertEqual(process.wait(DEADLINE), 1)

    def test_worker_exits_when_the_socket_closes(self):
        process, conn, peer = self.start({"taskb": TASKB})
        peer.until(b"S")
        conn.close()
        self.assertEqual(process.wait(DEADLINE), 0)
