"""A stand-in for Nuclio's processor: runs Nuclio's own Python wrapper and talks to it as the
processor does.

Written from the processor's side of the protocol in Nuclio 1.14.1 (files cited beside each
step), so that tests can run a task, or a fused function, inside the real
`_nuclio_wrapper.py` on the SDK the image ships, and compare what a client would see:

- `pkg/processor/runtime/python/runtime.go` (`RunWrapper`): `python -u _nuclio_wrapper.py
  --handler H --event-socket-path P --control-socket-path C --platform-kind K --namespace N
  --worker-id W --trigger-kind T --trigger-name TN --decode-event-strings`, PYTHONPATH =
  `NUCLIO_PYTHON_PATH` (the function's directory, `/opt/nuclio` in an image) then the inherited
  PYTHONPATH, the function's env on top of the processor's;
- `pkg/processor/runtime/rpc/connection/socketallocator.go`: the processor listens on two Unix
  sockets (events, control) and accepts the wrapper's connections, events first;
- `pkg/processor/runtime/rpc/encoder/encode_msgpack.go`, `encode.go`: an event is a msgpack map
  (`eventAsMap`) prefixed by its length as a big-endian int32;
- `pkg/processor/runtime/rpc/connection/abstract.go` (`RunHandler`): the wrapper answers with
  newline-terminated lines: `s` (started), `l` + a JSON log record, `m` + JSON metrics, `r` +
  the JSON result, which `pkg/processor/runtime/rpc/result/result.go` reads as an array of
  results, else as one result;
- `pkg/processor/runtime/rpc/abstract.go` (`ProcessEvent`): the HTTP answer is the FIRST result
  of that array; an empty array panics at `Results[0]`, which the trigger recovers
  (`pkg/processor/trigger/trigger.go`, `HandleSubmitPanic`) and answers 500 with no body;
- `pkg/processor/trigger/http/trigger.go` (`case nuclio.Response`): only string header values
  are set, an empty content type leaves fasthttp's default, status 0 leaves 200.

Usage: `Processor(handler, paths, python=..., wrapper=...)`, `start()`, `invoke(...)`, `stop()`.
Needs `msgpack` in the interpreter that runs this module (any version: the event is plain maps,
strings, ints and one bin body).
"""

import base64
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import msgpack

WRAPPER = os.path.join("pkg", "processor", "runtime", "python", "py", "_nuclio_wrapper.py")
# fasthttp's Content-Type for a response that sets none
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"
START_TIMEOUT = 60.0
EVENT_TIMEOUT = 60.0


class ProcessorError(Exception):
    """The wrapper did not start, died, or answered something the processor cannot read."""


class Processor(object):
    """One wrapper process (one Nuclio worker) and the processor's two sockets to it."""

    def __init__(self, handler, paths, python, wrapper, env=None, trigger_kind="http",
                 trigger_name="default-http", worker_id=0, namespace="nuclio",
                 platform_kind="local", output=None, on_log=None):
        self.handler = handler
        self.paths = list(paths)
        self.python = python
        self.wrapper = wrapper
        self.env = dict(env or {})
        self.trigger_kind = trigger_kind
        self.trigger_name = trigger_name
        self.worker_id = worker_id
        self.namespace = namespace
        self.platform_kind = platform_kind
        # the wrapper's stdout and stderr (before it connects it prints there), else a pipe
        self.output = output
        # each log record the wrapper sends; by default they are kept in `logs`
        self.logs = []
        self.on_log = on_log or self.logs.append
        self.metrics = []  # the last few
        self.control = []
        self._dir = None
        self._proc = None
        self._event = None
        self._control = None
        self._buffer = b""
        self._ids = 0

    # -------------------------------------------------------------- lifecycle

    def start(self):
        self._dir = tempfile.mkdtemp(prefix="nuclio-processor-")
        event_path = os.path.join(self._dir, "event.sock")
        control_path = os.path.join(self._dir, "control.sock")
        listeners = []
        for path in (event_path, control_path):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(START_TIMEOUT)
            listeners.append(listener)
        env = dict(os.environ)
        env.update(self.env)
        # runtime.go getPythonPath: NUCLIO_PYTHON_PATH first, then the inherited PYTHONPATH
        inherited = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = ":".join(self.paths + ([inherited] if inherited else []))
        args = [
            self.python, "-u", self.wrapper,
            "--handler", self.handler,
            "--event-socket-path", event_path,
            "--control-socket-path", control_path,
            "--platform-kind", self.platform_kind,
            "--namespace", self.namespace,
            "--worker-id", str(self.worker_id),
            "--trigger-kind", self.trigger_kind,
            "--trigger-name", self.trigger_name,
            "--decode-event-strings",
        ]
        self._proc = subprocess.Popen(args, env=env, cwd=self._dir,
                                      stdout=self.output or subprocess.PIPE,
                                      stderr=self.output or subprocess.STDOUT)
        try:
            self._event, _ = listeners[0].accept()
            self._control, _ = listeners[1].accept()
        except socket.timeout:
            raise ProcessorError("the wrapper never connected:\n" + self._output())
        finally:
            for listener in listeners:
                listener.close()
        line = self._line(START_TIMEOUT)
        if line[:1] != b"s":
            raise ProcessorError("the wrapper sent {0!r} before starting".format(line))
        return self

    def stop(self):
        for sock in (self._event, self._control):
            if sock is not None:
                sock.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=30)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _output(self):
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=30)
        if self._proc.stdout is None:
            return "(the wrapper's output went to {0})".format(self.output)
        return self._proc.stdout.read().decode("utf-8", "replace")

    # -------------------------------------------------------------- reading the wrapper

    def _line(self, timeout):
        """The next output line that is not a log or metric (those are recorded)."""
        deadline = time.monotonic() + timeout
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1:]
                if not line:
                    continue
                kind = line[:1]
                if kind == b"l":
                    self.on_log(json.loads(line[1:]))
                elif kind == b"m":
                    self.metrics = self.metrics[-9:] + [json.loads(line[1:])]
                else:
                    return line
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcessorError("no answer from the wrapper in {0}s".format(timeout))
            ready, _, _ = select.select([self._event, self._control], [], [], left)
            if self._control in ready:
                data = self._control.recv(65536)
                if data and len(self.control) < 100:
                    self.control.append(data)
            if self._event in ready:
                data = self._event.recv(65536)
                if not data:
                    raise ProcessorError("the wrapper closed its socket:\n" + self._output())
                self._buffer += data

    # -------------------------------------------------------------- events

    def invoke(self, body=b"", content_type="", headers=None, method="POST", path="/",
               fields=None, trigger=None, url="", timestamp=None):
        """Send one event as the HTTP trigger builds it; answer as the trigger answers.

        Returns {"status", "content_type", "headers", "body" (bytes)}.
        """
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        self._ids += 1
        kind, name = trigger or (self.trigger_kind, self.trigger_name)
        # encode.go eventAsMap + encode_msgpack.go prepareOneEvent
        event = {
            "content_type": content_type,
            "content-type": content_type,
            "trigger": {"kind": kind, "name": name},
            "fields": dict(fields or {}),
            "headers": headers,
            "id": "00000000-0000-4000-8000-{0:012d}".format(self._ids),
            "method": method,
            "path": path,
            "size": len(body),
            "timestamp": int(time.time() if timestamp is None else timestamp),
            "url": url,
            "shard_id": 0,
            "num_shards": 0,
            "type": "",
            "type_version": "",
            "version": "",
            "offset": 0,
            "topic": "",
            "body": body,
        }
        packed = msgpack.packb(event, use_bin_type=True)
        self._event.sendall(struct.pack(">i", len(packed)) + packed)
        line = self._line(EVENT_TIMEOUT)
        if line[:1] != b"r":
            raise ProcessorError("expected a result, got {0!r}".format(line))
        return http_answer(line[1:])


def _results(data):
    """result.go UnmarshalResponseData: an array of results, else one result."""
    parsed = json.loads(data)
    return parsed if isinstance(parsed, list) else [parsed]


def http_answer(data):
    """What the HTTP trigger answers for a wrapper's `r` line (abstract.go ProcessEvent, then
    trigger.go)."""
    results = _results(data)
    if not results:
        # abstract.go indexes Results[0]: a panic, recovered by HandleSubmitPanic -> 500
        return {"status": 500, "content_type": DEFAULT_CONTENT_TYPE, "headers": {}, "body": b""}
    result = results[0]
    encoding = result.get("body_encoding")
    body = result.get("body") or ""
    if encoding == "text":
        body = body.encode("utf-8")
    elif encoding == "base64":
        body = base64.b64decode(body)
    else:
        # result.go: an unknown encoding is the result's Err, answered as a process error
        message = 'Unknown body encoding - "{0}"'.format(encoding)
        return {"status": 500, "content_type": DEFAULT_CONTENT_TYPE, "headers": {},
                "body": message.encode("utf-8")}
    headers = {}
    for name, value in (result.get("headers") or {}).items():
        # trigger.go: only string values are set (a JSON number decodes as float64, never int)
        if isinstance(value, str) and name.lower() not in (
                "x-nuclio-filestream-path", "x-nuclio-filestream-delete-after-send"):
            headers[name] = value
    return {
        "status": result.get("status_code") or 200,
        "content_type": result.get("content_type") or DEFAULT_CONTENT_TYPE,
        "headers": headers,
        "body": body,
    }


def find_wrapper(upstream):
    """The wrapper's path inside an upstream directory, or ProcessorError naming what is missing."""
    path = os.path.join(upstream, WRAPPER)
    if not os.path.isfile(path):
        raise ProcessorError("{0} is missing (FUSIONIZER_NUCLIO_UPSTREAM={1})".format(path, upstream))
    return path
