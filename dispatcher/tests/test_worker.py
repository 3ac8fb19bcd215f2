"""Worker: the framed protocol over a Unix socket, against a real worker subprocess."""

import json
import os
import signal
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
            response = context.platform.call_function("taskb", nuclio_sdk.Event(body={"x": 2, "y": 3}, method="POST"))
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


def event_frame(body=b"", headers=None, content_type="", fields=None, path="/",
                trigger=("http", "default-http")):
    meta = json.dumps({
        "id": "ev-1", "method": "POST", "path": path, "fields": fields or {},
        "headers": headers or {}, "content_type": content_type, "timestamp": 1700000000,
        "trigger": {"kind": trigger[0], "name": trigger[1]},
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

    def until_log(self, message):
        """L frames up to and including the first whose message is `message`."""
        logs = []
        while True:
            got, payload = self.read()
            self.assert_kind(got, b"L")
            logs.append(json.loads(payload))
            if logs[-1]["message"] == message:
                return logs

    def rest(self):
        """Every frame until the worker closes the socket."""
        frames = []
        while True:
            try:
                frames.append(self.read())
            except EOFError:
                return frames


class WorkerCase(unittest.TestCase):
    """Runs a real worker subprocess against a socket this test listens on."""

    def start(self, tasks, triggers=None, args=()):
        tmp = tempfile.mkdtemp(prefix="fz-worker-")
        self.addCleanup(shutil.rmtree, tmp, True)
        write_artifact(tmp, tasks, function="fn", triggers=triggers)
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
             "--handler", "_fusionizer_entry:handler", "--worker-id", "3", "--function", "fn",
             *args],
            cwd=tmp, env=env, stderr=subprocess.PIPE,
        )
        self.addCleanup(process.stderr.close)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        conn, _ = listener.accept()
        conn.settimeout(DEADLINE)
        self.addCleanup(conn.close)
        return process, conn, Peer(conn)


class WorkerTest(WorkerCase):
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
        # the in-process call, for the proxy's traces (`_trace`), in the R frame
        self.assertRegex(meta["trace"], r"^taska taskb s 201 \d+ \d+$")
        self.assertNotIn("peak_rss", meta)

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
        # issue 21: the one line the Rust side shows, where in the task's code it failed
        self.assertEqual(failure["summary"],
                         "`init_context` failed: main.py:3: RuntimeError: no database")
        self.assertEqual(process.wait(DEADLINE), 1)

    def test_worker_exits_when_the_socket_closes(self):
        process, conn, peer = self.start({"taskb": TASKB})
        peer.until(b"S")
        conn.close()
        self.assertEqual(process.wait(DEADLINE), 0)


ROUTED = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        if event.headers.get("X-Kind") == "headers":
            return nuclio_sdk.Response(headers={"X-Str": "s", "X-Int": 1, "X-Bool": False, "X-None": None,
                                                "X-Bytes": b"b", "X-Nan": float("nan"), 2: "two"}, body="h")
        # a tuple: a returned list would answer with its first element only, as on Nuclio
        return 200, [event.trigger.kind, event.trigger.name, event.path]
"""}


class WorkerRoutingTest(WorkerCase):
    def test_routes_by_trigger_and_path_and_encodes_headers_as_nuclio(self):
        process, conn, peer = self.start({"taska": ROUTED, "taskb": ROUTED},
                                         triggers={"kafka-orders": "taska"})
        peer.until(b"S")
        conn.sendall(event_frame(b"order", trigger=("kafka-cluster", "kafka-orders"), path=""))
        meta, body, _ = peer.response()
        self.assertEqual((meta["task"], json.loads(body)), ("taska", ["kafka-cluster", "kafka-orders", "/"]))
        conn.sendall(event_frame(b"x", path="/taskb/items"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["task"], json.loads(body)), ("taskb", ["http", "default-http", "/taskb/items"]))
        conn.sendall(event_frame(b"x", path="/"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], meta["task"]), (400, None))
        self.assertIn(b"`kafka-orders` -> `taska`", body)
        # a cron event keeps its header names as the trigger's `attributes.event.headers` spell them
        conn.sendall(event_frame(b"tick", headers={"task-name": "taskb"}, trigger=("cron", "every-minute")))
        meta, body, _ = peer.response()
        self.assertEqual((meta["task"], json.loads(body)), ("taskb", ["cron", "every-minute", "/"]))
        # the R frame carries the headers Nuclio's HTTP trigger would send: strings only
        conn.sendall(event_frame(headers={"Task-Name": "taskb", "X-Kind": "headers"}))
        meta, body, _ = peer.response()
        self.assertEqual(meta["headers"], {"X-Str": "s", "X-Bytes": "b'b'", "X-Nan": "NaN", "2": "two"})
        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(DEADLINE), 0)


SIGNALS_A = {"main.py": """
    import os
    import signal

    def init_context(context):
        context.platform.set_termination_callback(lambda: print("a terminated"))
        context.platform.set_drain_callback(lambda: print("a drained"))

    def handler(context, event):
        if event.headers.get("X-Kind") == "self-terminate":
            os.kill(os.getpid(), signal.SIGUSR1)
            return "still answered"
        return "a ok"
"""}

SIGNALS_B = {"main.py": """
    import asyncio

    async def terminated():
        await asyncio.sleep(0)
        print("b terminated")

    async def drained():
        await asyncio.sleep(0)
        print("b drained")

    def init_context(context):
        context.platform.set_termination_callback(terminated)
        context.platform.set_drain_callback(drained)

    def handler(context, event):
        return "b ok"
"""}

FAILING = {"main.py": """
    def init_context(context):
        def boom():
            raise RuntimeError("cannot flush")
        context.platform.set_termination_callback(boom)

    def handler(context, event):
        return "ok"
"""}


def stdout_lines(logs):
    return [(log["task"], log["message"]) for log in logs if log["stream"] == "stdout"]


class WorkerSignalsTest(WorkerCase):
    """Termination and drain callbacks run as Nuclio's wrapper runs them
    (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`): SIGUSR2 drains, SIGUSR1 terminates,
    SIGCONT resumes, coroutines are awaited; `Q`, SIGTERM and SIGINT stop after terminating."""

    def started(self, tasks=None):
        process, conn, peer = self.start(tasks or {"taska": SIGNALS_A, "taskb": SIGNALS_B})
        peer.until(b"S")
        return process, conn, peer

    def test_drain_continue_terminate_then_quit(self):
        process, conn, peer = self.started()
        os.kill(process.pid, signal.SIGUSR2)
        logs = peer.until_log("b drained")
        self.assertIn({"signal": "SIGUSR2"}, [log["with"] for log in logs if log["message"] == "Received signal"])
        self.assertEqual(stdout_lines(logs), [("taska", "a drained"), ("taskb", "b drained")])

        conn.sendall(event_frame(headers={"Task-Name": "taska"}))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], meta["task"]), (503, None))
        self.assertIn(b"discarded", body)

        os.kill(process.pid, signal.SIGUSR2)  # ignored while drained, as the wrapper does
        logs = peer.until_log("Draining signal is received, but it will be ignored as the worker is already drained")
        self.assertEqual(stdout_lines(logs), [])

        os.kill(process.pid, signal.SIGCONT)
        logs = peer.until_log("Received signal")
        self.assertEqual(logs[-1]["with"], {"signal": "SIGCONT"})
        conn.sendall(event_frame(headers={"Task-Name": "taska"}))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], body), (200, b"a ok"))

        os.kill(process.pid, signal.SIGUSR1)
        logs = peer.until_log("b terminated")
        self.assertEqual(stdout_lines(logs), [("taska", "a terminated"), ("taskb", "b terminated")])
        conn.sendall(event_frame(headers={"Task-Name": "taskb"}))
        meta, _, _ = peer.response()
        self.assertEqual(meta["status_code"], 503)

        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(DEADLINE), 0)
        rest = [json.loads(payload) for kind, payload in peer.rest() if kind == b"L"]
        self.assertEqual(stdout_lines(rest), [])  # terminated once only

    def test_quit_runs_the_termination_callbacks_first(self):
        process, conn, peer = self.started()
        conn.sendall(frame(b"Q", b""))
        logs = [json.loads(payload) for kind, payload in peer.rest()]
        self.assertEqual(process.wait(DEADLINE), 0)
        self.assertEqual(stdout_lines(logs), [("taska", "a terminated"), ("taskb", "b terminated")])

    def test_sigterm_and_sigint_terminate_then_exit(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal.Signals(signum).name):
                process, conn, peer = self.started()
                os.kill(process.pid, signum)
                logs = [json.loads(payload) for kind, payload in peer.rest()]
                self.assertEqual(process.wait(DEADLINE), 0)
                self.assertEqual(stdout_lines(logs), [("taska", "a terminated"), ("taskb", "b terminated")])

    def test_a_signal_during_an_event_waits_for_its_answer(self):
        process, conn, peer = self.started()
        conn.sendall(event_frame(headers={"Task-Name": "taska", "X-Kind": "self-terminate"}))
        meta, body, logs = peer.response()
        self.assertEqual((meta["status_code"], body), (200, b"still answered"))
        self.assertEqual(stdout_lines(logs), [])
        logs = peer.until_log("b terminated")
        self.assertEqual(stdout_lines(logs), [("taska", "a terminated"), ("taskb", "b terminated")])
        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(DEADLINE), 0)

    def test_a_failing_callback_ends_the_worker_with_status_1(self):
        process, conn, peer = self.started({"solo": FAILING})
        conn.sendall(frame(b"Q", b""))
        logs = [json.loads(payload) for kind, payload in peer.rest()]
        self.assertEqual(process.wait(DEADLINE), 1)
        failures = [log for log in logs if log["message"] == "Exception raised in termination callback"]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["with"]["exc"], "cannot flush")
