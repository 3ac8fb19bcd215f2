"""The local platform's worker (`fusionizer_dispatcher.worker`), driven as the Rust side drives
it, with the same calls as `processor.Processor`: so the conformance suite can run one corpus
on both and compare.

The frames are the ones `dispatcher/fusionizer_dispatcher/worker.py` documents: E (event meta
JSON + body) in, S (ready), L (log) and R (response meta JSON + body) out.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from processor import ProcessorError

TIMEOUT = 60.0


def _frame(kind, payload):
    return (len(payload) + 1).to_bytes(4, "big") + kind + payload


class LocalWorker(object):
    """One local worker process on a fused function directory."""

    def __init__(self, root, python, function, trigger_kind="http", trigger_name="default-http",
                 env=None):
        self.root = root
        self.python = python
        self.function = function
        self.trigger_kind = trigger_kind
        self.trigger_name = trigger_name
        self.env = dict(env or {})
        self.logs = []
        self._dir = None
        self._proc = None
        self._conn = None
        self._buffer = b""

    def start(self):
        self._dir = tempfile.mkdtemp(prefix="fz-local-worker-")
        path = os.path.join(self._dir, "w.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONIZER_")}
        env.update(self.env)
        env.update({"PYTHONPATH": self.root, "FUSIONIZER_FUNCTION": self.function})
        self._proc = subprocess.Popen(
            [self.python, "-u", "-m", "fusionizer_dispatcher.worker", "--socket", path,
             "--handler", "_fusionizer_entry:handler", "--worker-id", "0",
             "--function", self.function],
            cwd=self.root, env=env, stderr=subprocess.PIPE,
        )
        try:
            self._conn, _ = listener.accept()
        except socket.timeout:
            raise ProcessorError("the local worker never connected")
        finally:
            listener.close()
        self._conn.settimeout(TIMEOUT)
        kind, payload = self._until(b"S")
        return self

    def stop(self):
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=30)
            self._proc.stderr.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _read(self, count):
        while len(self._buffer) < count:
            chunk = self._conn.recv(65536)
            if not chunk:
                raise ProcessorError("the local worker closed its socket")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _until(self, kind):
        while True:
            length = int.from_bytes(self._read(4), "big")
            payload = self._read(length)
            got, payload = payload[:1], payload[1:]
            if got == b"L":
                self.logs.append(json.loads(payload))
                continue
            if got != kind:
                raise ProcessorError("expected frame {0!r}, got {1!r}: {2!r}".format(
                    kind, got, payload[:200]))
            return got, payload

    def invoke(self, body=b"", content_type="", headers=None, method="POST", path="/",
               fields=None, trigger=None, url="", timestamp=None):
        """Same arguments and answer as `processor.Processor.invoke`."""
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        kind, name = trigger or (self.trigger_kind, self.trigger_name)
        meta = json.dumps({
            "id": "ev", "method": method, "path": path, "fields": dict(fields or {}),
            "headers": headers, "content_type": content_type,
            "timestamp": int(time.time() if timestamp is None else timestamp),
            "trigger": {"kind": kind, "name": name},
        }).encode()
        self._conn.sendall(_frame(b"E", len(meta).to_bytes(4, "big") + meta + body))
        _, payload = self._until(b"R")
        meta_len = int.from_bytes(payload[:4], "big")
        meta = json.loads(payload[4:4 + meta_len])
        return {
            "status": meta["status_code"],
            "content_type": meta["content_type"],
            "headers": dict(meta["headers"]),
            "body": payload[4 + meta_len:],
        }
