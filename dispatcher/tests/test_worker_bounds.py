"""Worker bounds (issue 19): output lines held to `MAX_LOG_LINE`, answers to
`--max-response-size`, and frames that a task's monkeypatches cannot break."""

import io
import json
import unittest

from fusionizer_dispatcher import _contract as C
from fusionizer_dispatcher import worker

from .test_worker import WorkerCase, event_frame, frame

LIMIT = int(C.MAX_LOG_LINE)

SPEW = {"main.py": """
    import sys

    def handler(context, event):
        size, chunk = event.body["size"], event.body["chunk"]
        piece = chunk * (65536 // len(chunk))
        written = 0
        while written < size:
            sys.stdout.write(piece)
            written += len(piece)
        print("!")
        context.logger.info_with("x" * (3 * 65536), field="y" * 100000)
        return {"written": written}
"""}

BIG = {"main.py": """
    def handler(context, event):
        return b"z" * event.body["size"]
"""}

# Patches everything the worker's framing uses, then logs and prints through all of it.
PATCHER = {"main.py": """
    import json
    import os
    import select
    import socket
    import sys

    def broken(*args, **kwargs):
        raise RuntimeError("patched by a task")

    def handler(context, event):
        json.dumps = broken
        json.loads = broken
        json.JSONEncoder.encode = lambda self, o: "garbage{"
        socket.socket.sendall = broken
        socket.socket.sendmsg = broken
        socket.socket.recv_into = broken
        select.select = broken
        os.write = broken
        print("patched")
        context.logger.info_with("logged after the patch", n=1)
        sys.stdout = None
        sys.stderr = None
        return "patched"
"""}

SIBLING = {"main.py": """
    def handler(context, event):
        context.logger.info_with("sibling", got=event.body)
        print("sibling printed")
        return {"sibling": event.body}
"""}


class FakeChannel(object):
    def __init__(self):
        self.frames = []

    def send_json(self, kind, obj):
        self.frames.append((kind, obj))


class StreamBoundsTest(unittest.TestCase):
    def test_a_line_without_newline_is_held_to_the_limit_and_counted(self):
        channel = FakeChannel()
        stream = worker._StreamToFrames(channel, C.STREAM_STDOUT, C.LEVEL_INFO)
        chunk = "a" * 65536
        for _ in range(160):  # 10 MiB, one line
            stream.write(chunk)
            self.assertLessEqual(stream._held, LIMIT)
        self.assertEqual(channel.frames, [])
        stream.write("tail\nnext")
        stream.flush()
        (_, first), (_, second) = channel.frames
        self.assertEqual(first["message"], "a" * LIMIT)
        self.assertEqual(first[C.LOG_TRUNCATED], 160 * 65536 + len("tail") - LIMIT)
        self.assertEqual(second["message"], "next")
        self.assertNotIn(C.LOG_TRUNCATED, second)

    def test_dropped_bytes_are_counted_in_utf8(self):
        channel = FakeChannel()
        stream = worker._StreamToFrames(channel, C.STREAM_STDERR, C.LEVEL_WARN)
        stream.write("é" * (LIMIT + 10) + "\n")
        (_, line), = channel.frames
        self.assertEqual(line["message"], "é" * LIMIT)
        self.assertEqual(line[C.LOG_TRUNCATED], 20)

    def test_short_lines_are_unchanged(self):
        channel = FakeChannel()
        stream = worker._StreamToFrames(channel, C.STREAM_STDOUT, C.LEVEL_INFO)
        stream.write("one\n\ntwo")
        stream.write(" halves\n")
        self.assertEqual([obj["message"] for _, obj in channel.frames], ["one", "", "two halves"])
        self.assertTrue(all(C.LOG_TRUNCATED not in obj for _, obj in channel.frames))
        self.assertIsInstance(stream, io.TextIOBase)


class WorkerBoundsTest(WorkerCase):
    def test_long_output_and_log_lines_reach_the_socket_bounded(self):
        process, conn, peer = self.start({"spew": SPEW})
        peer.until(b"S")
        size = 8 << 20
        conn.sendall(event_frame(json.dumps({"size": size, "chunk": "s"}).encode(),
                                 {"Task-Name": "spew"}, "application/json"))
        meta, body, logs = peer.response()
        self.assertEqual(meta["status_code"], 200, body)
        self.assertEqual(json.loads(body), {"written": size})
        printed = [log for log in logs if log["stream"] == "stdout"]
        self.assertEqual(len(printed), 1, [log["message"][:40] for log in printed])
        self.assertEqual(printed[0]["message"], "s" * LIMIT)
        self.assertEqual(printed[0][C.LOG_TRUNCATED], size + 1 - LIMIT)
        logged, = [log for log in logs if log["stream"] == "logger"]
        self.assertEqual(logged["message"], "x" * LIMIT)
        self.assertEqual(logged["with"], {"field": "y" * LIMIT})
        self.assertEqual(logged[C.LOG_TRUNCATED], 3 * 65536 - LIMIT + 100000 - LIMIT)
        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(30), 0)

    def test_an_answer_over_the_limit_is_a_502_without_body_and_the_worker_serves_on(self):
        process, conn, peer = self.start({"big": BIG}, args=("--max-response-size", "65536"))
        peer.until(b"S")
        conn.sendall(event_frame(b'{"size": 300000}', {"Task-Name": "big"}, "application/json"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], meta["task"], body), (502, "big", b""))
        self.assertGreater(meta[C.RESPONSE_TOO_LARGE], 300000)
        # the next answer, under the limit, is sent whole by the same worker
        conn.sendall(event_frame(b'{"size": 10}', {"Task-Name": "big"}, "application/json"))
        meta, body, _ = peer.response()
        self.assertEqual((meta["status_code"], body), (200, b"z" * 10))
        self.assertNotIn(C.RESPONSE_TOO_LARGE, meta)
        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(30), 0)

    def test_a_task_patching_json_socket_and_streams_breaks_no_frame(self):
        process, conn, peer = self.start({"patcher": PATCHER, "sibling": SIBLING})
        peer.until(b"S")
        conn.sendall(event_frame(headers={"Task-Name": "patcher"}))
        meta, body, logs = peer.response()
        self.assertEqual((meta["status_code"], body), (200, b"patched"))
        messages = {(log["task"], log["message"]) for log in logs}
        self.assertIn(("patcher", "patched"), messages)
        self.assertIn(("patcher", "logged after the patch"), messages)
        for _ in range(2):
            conn.sendall(event_frame(b'{"n": 7}', {"Task-Name": "sibling"}, "application/json"))
            meta, body, logs = peer.response()
            self.assertEqual((meta["status_code"], json.loads(body)), (200, {"sibling": {"n": 7}}))
            self.assertIn({"task": "sibling", "level": "info", "message": "sibling",
                           "with": {"got": {"n": 7}}, "stream": "logger"}, logs)
        conn.sendall(frame(b"Q", b""))
        self.assertEqual(process.wait(30), 0)


if __name__ == "__main__":
    unittest.main()
