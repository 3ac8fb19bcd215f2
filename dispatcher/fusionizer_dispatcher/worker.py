"""Local worker: plays Nuclio's Python wrapper for fusionizer's local platform.

    python -u -m fusionizer_dispatcher.worker --socket PATH --handler MODULE:FUNC \
        --worker-id N --function NAME

The Rust side listens on the Unix socket; the worker connects (retrying for up to 10 s) and
keeps that one connection for its life. It handles one event at a time, like Nuclio's wrapper.

Frames, both directions:

    frame := length:u32 BE | kind:u8 (ASCII letter) | payload (length - 1 bytes)

Rust -> worker
    E  event: meta_len:u32 BE | meta JSON | body (raw bytes, rest). meta = {"id", "method",
       "path", "fields", "headers", "content_type", "timestamp" (unix s), "trigger": {kind, name}}
    Q  quit: exit 0.
Worker -> Rust
    S  ready, once, after every task's init_context: JSON {"pid", "tasks"}
    F  init failed: JSON {"task": str|null, "error": str}; then exit 1
    R  response, exactly one per E, in order: meta_len:u32 BE | meta JSON | body (raw bytes).
       meta = {"status_code", "content_type", "headers", "task", "calls": {"local", "remote"}}
    L  log line: JSON {"task", "level": debug|info|warn|error, "message", "with",
       "stream": logger|stdout|stderr}

Task loggers and anything task code writes to sys.stdout/sys.stderr become L frames tagged with
the current task; the real stderr (fd 2) stays untouched for what cannot be framed.
"""

import argparse
import asyncio
import inspect
import io
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import traceback

import nuclio_sdk

from . import _codec
from .dispatcher import current_task

_CONNECT_TIMEOUT = 10.0
_HANDLER_RE = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}
_U32 = 4
_PLAIN_OUTPUTS = _codec.PLAIN_OUTPUTS


class _Disconnected(Exception):
    pass


class _Channel(object):
    """Framed reads (buffered, `recv_into`) and locked writes (`sendmsg`) on the socket."""

    def __init__(self, sock):
        self._sock = sock
        self._buf = bytearray(1 << 16)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._lock = threading.Lock()

    def _fill(self, need):
        if self._end - self._start >= need:
            return
        if len(self._buf) - self._start < need:
            pending = self._end - self._start
            if need > len(self._buf):
                grown = bytearray(max(need, 2 * len(self._buf)))
                grown[:pending] = self._view[self._start:self._end]
                self._buf = grown
                self._view = memoryview(grown)
            else:
                self._buf[:pending] = self._view[self._start:self._end]
            self._start, self._end = 0, pending
        while self._end - self._start < need:
            count = self._sock.recv_into(self._view[self._end:])
            if count == 0:
                raise _Disconnected()
            self._end += count

    def read(self):
        """Next frame as (kind, meta bytes or None, body bytes)."""
        self._fill(_U32 + 1)
        start = self._start
        length = int.from_bytes(self._buf[start:start + _U32], "big")
        self._fill(_U32 + length)
        start = self._start
        kind = self._buf[start + _U32]
        first = start + _U32 + 1
        end = start + _U32 + length
        meta = None
        if kind == 0x45:  # E
            meta_len = int.from_bytes(self._buf[first:first + _U32], "big")
            meta = bytes(self._view[first + _U32:first + _U32 + meta_len])
            first += _U32 + meta_len
        body = bytes(self._view[first:end])
        self._start = end
        if self._start == self._end:
            self._start = self._end = 0
        return kind, meta, body

    def send(self, kind, payload, body=None):
        """Send one frame; with `body`, payload is the meta JSON of an R frame."""
        if body is None:
            parts = [(len(payload) + 1).to_bytes(_U32, "big") + kind, payload]
        else:
            length = 1 + _U32 + len(payload) + len(body)
            parts = [
                length.to_bytes(_U32, "big") + kind + len(payload).to_bytes(_U32, "big"),
                payload,
                body,
            ]
        total = sum(len(part) for part in parts)
        with self._lock:
            sent = self._sock.sendmsg(parts)
            if sent < total:
                self._sock.sendall(b"".join(parts)[sent:])

    def send_json(self, kind, obj):
        self.send(kind, json.dumps(obj, default=str).encode("utf-8"))


class _LogHandler(logging.Handler):
    """Turns records of the SDK logger into L frames, tagged with the current task."""

    def __init__(self, channel):
        super(_LogHandler, self).__init__()
        self._channel = channel

    def emit(self, record):
        try:
            fields = dict(getattr(record, "with", None) or {})
            task = fields.pop("task", None) or current_task()
            self._channel.send_json(b"L", {
                "task": task,
                "level": _LEVELS.get(record.levelname, "info"),
                "message": record.getMessage(),
                "with": fields,
                "stream": "logger",
            })
        except Exception:
            self.handleError(record)


class _StreamToFrames(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: each complete line becomes an L frame."""

    def __init__(self, channel, stream, level):
        super(_StreamToFrames, self).__init__()
        self._channel = channel
        self._stream = stream
        self._level = level
        self._pending = ""

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not {0}".format(type(text).__name__))
        data = self._pending + text
        lines = data.split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self):
        if self._pending:
            line, self._pending = self._pending, ""
            self._emit(line)

    def _emit(self, line):
        self._channel.send_json(b"L", {
            "task": current_task(),
            "level": self._level,
            "message": line,
            "with": {},
            "stream": self._stream,
        })


def _connect(path):
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _load_entrypoint(handler):
    """Like Nuclio's wrapper: `module.sub:function`, imported with `__import__`."""
    match = _HANDLER_RE.match(handler)
    if not match:
        raise ValueError("Malformed handler - {0!r}".format(handler))
    module_name, attribute = match.group(1), match.group(3)
    module = __import__(module_name)
    for sub in module_name.split(".")[1:]:
        module = getattr(module, sub)
    return getattr(module, attribute)


class Worker(object):
    """One worker process: init, then serve E frames until Q or the socket closes."""

    def __init__(self, channel, entrypoint, context, loop):
        self._channel = channel
        self._entrypoint = entrypoint
        self._context = context
        self._loop = loop
        self._dispatcher = getattr(entrypoint, "fusionizer_dispatcher", None)
        self._triggers = {}
        self._metas = {}

    def _event(self, meta, body):
        content_type = meta.get("content_type") or ""
        trigger = meta.get("trigger") or {}
        key = (trigger.get("kind", "http"), trigger.get("name", "default-http"))
        trigger_info = self._triggers.get(key)
        if trigger_info is None:
            trigger_info = self._triggers[key] = nuclio_sdk.TriggerInfo(*key)
        canonical = _codec.canonical_header
        return nuclio_sdk.Event(
            body=_codec.decode_body(body, content_type),
            content_type=content_type,
            trigger=trigger_info,
            fields=meta.get("fields"),
            headers={canonical(name): value for name, value in (meta.get("headers") or {}).items()},
            _id=meta.get("id"),
            method=meta.get("method"),
            path=meta.get("path"),
            size=len(body),
            timestamp=_codec.utc_timestamp(meta.get("timestamp") or 0),
            url="",
        )

    def handle(self, meta, body):
        """Run the handler on one event; returns (R meta dict, body bytes)."""
        try:
            event = self._event(json.loads(meta), body)
            output = self._entrypoint(self._context, event)
            if type(output) not in _PLAIN_OUTPUTS and inspect.isawaitable(output):
                output = self._loop.run_until_complete(output)
            status, content_type, headers, out = _codec.encode_output(output)
        except Exception as exc:
            status, content_type, headers, out = _codec.error_output(exc)
            self._context.logger.error_with(
                "Exception caught in handler", exc=str(exc), traceback=traceback.format_exc()
            )
        dispatcher = self._dispatcher
        return {
            "status_code": status,
            "content_type": content_type,
            "headers": {k: v for k, v in headers.items() if type(v) is str or type(v) is int},
            "task": dispatcher.last_task if dispatcher is not None else None,
            "calls": dispatcher.calls if dispatcher is not None else {"local": 0, "remote": 0},
        }, out

    def serve(self):
        channel = self._channel
        dumps = json.dumps
        while True:
            try:
                kind, meta, body = channel.read()
            except (_Disconnected, ConnectionError):
                return 0
            if kind == 0x51:  # Q
                return 0
            if kind != 0x45:
                sys.__stderr__.write("fusionizer worker: unknown frame kind {0!r}\n".format(chr(kind)))
                continue
            response, out = self.handle(meta, body)
            sys.stdout.flush()
            sys.stderr.flush()
            channel.send(b"R", self._encode_meta(response, dumps), out)

    def _encode_meta(self, response, dumps):
        """`dumps(response)` as UTF-8, memoised for the common shape (no headers, int counts).

        The key holds every value the JSON text depends on, with the types of those whose equal
        values could spell differently (True == 1), so a hit is byte-identical to a fresh dump.
        """
        calls = response["calls"]
        status = response["status_code"]
        content_type = response["content_type"]
        task = response["task"]
        if (
            response["headers"]
            or type(calls) is not dict or len(calls) != 2
            or type(status) is not int or type(content_type) is not str
            or (task is not None and type(task) is not str)
        ):
            return dumps(response).encode("utf-8")
        local, remote = calls.get("local"), calls.get("remote")
        if type(local) is not int or type(remote) is not int or list(calls) != ["local", "remote"]:
            return dumps(response).encode("utf-8")
        key = (status, content_type, task, local, remote)
        encoded = self._metas.get(key)
        if encoded is None:
            encoded = dumps(response).encode("utf-8")
            if len(self._metas) >= 256:
                self._metas.clear()
            self._metas[key] = encoded
        return encoded


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="fusionizer local worker (plays Nuclio's wrapper)")
    parser.add_argument("--socket", required=True, help="Unix socket the platform listens on")
    parser.add_argument("--handler", required=True, help="module.sub:function")
    parser.add_argument("--worker-id", default="0")
    parser.add_argument("--function", default=os.environ.get("FUSIONIZER_FUNCTION", ""))
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    try:
        sock = _connect(args.socket)
    except OSError as exc:
        sys.stderr.write("fusionizer worker: cannot connect to {0}: {1}\n".format(args.socket, exc))
        return 1
    channel = _Channel(sock)

    logger = nuclio_sdk.Logger(logging.DEBUG, name="nuclio_sdk")
    logger._logger.handlers[:] = [_LogHandler(channel)]
    logger._logger.propagate = False
    sys.stdout = _StreamToFrames(channel, "stdout", "info")
    sys.stderr = _StreamToFrames(channel, "stderr", "warn")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        entrypoint = _load_entrypoint(args.handler)
        dispatcher = getattr(entrypoint, "fusionizer_dispatcher", None)
        if dispatcher is not None:
            dispatcher.loop = loop
        context = nuclio_sdk.Context(
            logger,
            nuclio_sdk.Platform("local", namespace="default"),
            args.worker_id,
            nuclio_sdk.TriggerInfo("http", "default-http"),
        )
        init_context = getattr(sys.modules[entrypoint.__module__], "init_context", None)
        if init_context is not None:
            result = init_context(context)
            if inspect.isawaitable(result):
                loop.run_until_complete(result)
    except BaseException as exc:
        sys.stdout.flush()
        sys.stderr.flush()
        channel.send_json(b"F", {
            "task": getattr(exc, "task", None),
            "error": "{0}\n{1}".format(exc, traceback.format_exc()),
        })
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    tasks = sorted(dispatcher.tasks) if dispatcher is not None else []
    channel.send_json(b"S", {"pid": os.getpid(), "tasks": tasks})
    return Worker(channel, entrypoint, context, loop).serve()


if __name__ == "__main__":
    sys.exit(main())
