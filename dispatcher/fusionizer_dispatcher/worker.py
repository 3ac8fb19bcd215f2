"""Local worker: plays Nuclio's Python wrapper for fusionizer's local platform.

    python -u -m fusionizer_dispatcher.worker --socket PATH --handler MODULE:FUNC \
        --worker-id N --function NAME [--max-response-size BYTES] [--watchdog-stdin]

The Rust side listens on the Unix socket; the worker connects (retrying for up to 10 s) and
keeps that one connection for its life. It handles one event at a time, like Nuclio's wrapper.

With `--watchdog-stdin` the worker's stdin is a pipe whose write end only its parent holds, and
the worker leads its own process group. A thread reads that pipe from the start: EOF means the
parent died (even `kill -9`), and the worker then kills its process group at once, whatever it
is doing (`init_context` included), so no worker outlives the process that started it.

Frames, both directions:

    frame := length:u32 BE | kind:u8 (ASCII letter) | payload (length - 1 bytes)

Rust -> worker
    E  event: meta_len:u32 BE | meta JSON | body (raw bytes, rest). meta = {"id", "method",
       "path", "fields", "headers", "content_type", "timestamp" (unix s), "trigger": {kind, name},
       "sample_rss" (only when true)}
    Q  quit: run the termination callback (see below), then exit 0.
Worker -> Rust
    S  ready, once, after every task's init_context: JSON {"pid", "tasks"}
    F  init failed: JSON {"task": str|null, "error": str (with the traceback), "summary": str
       (one line: what failed, `file:line: Type: message` where the task's code is known)};
       then exit 1
    R  response, exactly one per E, in order: meta_len:u32 BE | meta JSON | body (raw bytes).
       meta = {"status_code", "content_type", "headers", "task", "calls": {"local", "remote"}}
       plus, when there is something to report (`_trace`), "trace" (the in-process call
       records) and "peak_rss" (bytes, when the E frame's "sample_rss" asked for it);
       headers are strings, as Nuclio's HTTP trigger sends them (`_codec.response_headers`), and
       a `X-nuclio-filestream-path` response already carries the file as its body. An answer
       whose meta and body exceed `--max-response-size` is not sent: a 502 R frame without a
       body, its meta carrying "too_large" (the answer's size), takes its place, and the worker
       serves on
    L  log line: JSON {"task", "level": debug|info|warn|error, "message", "with",
       "stream": logger|stdout|stderr}, plus "truncated" (bytes dropped) when the line was
       longer than `_contract.MAX_LOG_LINE`

Task loggers and anything task code writes to sys.stdout/sys.stderr become L frames tagged with
the current task; the real stderr (fd 2) stays untouched for what cannot be framed. A line is
held only up to `_contract.MAX_LOG_LINE` bytes: the rest of a longer one is counted and dropped
as it is written, so a task printing without newlines grows neither this process nor the
frames. Frame letters, meta keys and arguments are `_contract`'s.

Tasks share this process (docs/architecture.md, "What fused tasks share"), so a task may patch
modules the worker uses too (`json.dumps`, `socket.socket.sendall`, `sys.stdout`...). The
worker's own framing never looks them up after import: it binds the functions it needs when this
module loads, before any task is imported, and flushes its own stream objects, not whatever
`sys.stdout` is at the time.

In-process asynchronous calls (`Prefer: respond-async`, `call_function(..., respond_async=True)`)
made during an event run after its R frame is sent, before the next frame is read.

Stopping and draining, as Nuclio's wrapper and processor do it
(`pkg/processor/runtime/python/py/_nuclio_wrapper.py`, `pkg/processor/runtime/python/runtime.go`,
`cmd/processor/app/processor.go`):

- SIGUSR1 (terminate) and SIGUSR2 (drain): after the event in progress, or at once when idle,
  the platform's termination or drain callback runs (`context.platform.
  set_termination_callback`/`set_drain_callback`; a coroutine it returns is awaited), and
  events that arrive afterwards are discarded. A drain signal while events are discarded is
  ignored. With both pending, drain runs first. SIGCONT takes events again.
- `Q`, SIGTERM and SIGINT stop the worker, as the processor stops on SIGTERM/SIGINT: the
  termination callback runs as for SIGUSR1 (unless a SIGUSR1 already ran it), then the worker
  exits 0.
- A callback that raises is logged and the worker exits 1, as the wrapper dies of it.
- Each signal is logged at debug level as the wrapper logs it ("Received signal").

One difference from the wrapper: a discarded event is answered (503, an R frame), because the
protocol answers every E; Nuclio's wrapper writes nothing back for it.
"""

import argparse
import asyncio
import collections
import gc
import inspect
import io
import json
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import traceback

import nuclio_sdk

from . import _codec, _contract as C, _trace
from .dispatcher import current_task, located

# Bound at import, before any task code runs: a task that patches `json`, `socket`, `select` or
# `os` changes what it sees, never the frames (see the module docstring).
_LOG_ENCODE = json.JSONEncoder(default=str).encode
_META_ENCODE = json.JSONEncoder().encode
_DECODE = json.JSONDecoder().decode
_SENDMSG = socket.socket.sendmsg
_SENDALL = socket.socket.sendall
_RECV_INTO = socket.socket.recv_into
_SELECT = select.select
_OS_READ = os.read
_OS_WRITE = os.write

_CONNECT_TIMEOUT = 10.0
_MAX_LINE = int(C.MAX_LOG_LINE)
# An F frame's traceback is kept to its first this many characters (the Rust side takes frames
# other than R of up to 1 MiB: JSON escapes at most 12 bytes per character).
_MAX_FAILURE = 4 * _MAX_LINE
_HANDLER_RE = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")
_LEVELS = {
    "DEBUG": C.LEVEL_DEBUG, "INFO": C.LEVEL_INFO, "WARNING": C.LEVEL_WARN, "ERROR": C.LEVEL_ERROR,
    "CRITICAL": C.LEVEL_ERROR,
}
_U32 = 4
_PLAIN_OUTPUTS = _codec.PLAIN_OUTPUTS
_EVENT = ord(C.FRAME_EVENT)
_QUIT = ord(C.FRAME_QUIT)
_READY = C.FRAME_READY.encode("ascii")
_INIT_FAILED = C.FRAME_INIT_FAILED.encode("ascii")
_RESPONSE = C.FRAME_RESPONSE.encode("ascii")
_LOG = C.FRAME_LOG.encode("ascii")
_NO_CALLS = {C.CALLS_LOCAL: 0, C.CALLS_REMOTE: 0}
_TERMINATION = "termination"
_DRAIN = "drain"


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
            count = _RECV_INTO(self._sock, self._view[self._end:])
            if count == 0:
                raise _Disconnected()
            self._end += count

    def fileno(self):
        return self._sock.fileno()

    def has_frame(self):
        """Whether a whole frame is already buffered (then `read` needs no socket read)."""
        pending = self._end - self._start
        if pending < _U32:
            return False
        start = self._start
        return pending >= _U32 + int.from_bytes(self._buf[start:start + _U32], "big")

    def read(self):
        """Next frame as (kind, meta text or None, body bytes)."""
        self._fill(_U32 + 1)
        start = self._start
        length = int.from_bytes(self._buf[start:start + _U32], "big")
        self._fill(_U32 + length)
        start = self._start
        kind = self._buf[start + _U32]
        first = start + _U32 + 1
        end = start + _U32 + length
        meta = None
        if kind == _EVENT:
            meta_len = int.from_bytes(self._buf[first:first + _U32], "big")
            # text, decoded straight from the buffer: `json.loads` of bytes would first sniff
            # their encoding and decode a copy
            meta = str(self._view[first + _U32:first + _U32 + meta_len], "utf-8")
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
            sent = _SENDMSG(self._sock, parts)
            if sent < total:
                _SENDALL(self._sock, b"".join(parts)[sent:])

    def send_json(self, kind, obj):
        self.send(kind, _LOG_ENCODE(obj).encode("utf-8"))


def _utf8_size(text, start, end, ascii):
    """Bytes of `text[start:end]` in UTF-8 (lone surrogates counted as 3), copying nothing when
    `ascii` says `text` is ASCII."""
    if ascii:
        return end - start
    return len(text[start:end].encode("utf-8", "surrogatepass"))


def _cut(text, limit=_MAX_LINE):
    """`text` held to `limit` characters: (what is kept, UTF-8 bytes dropped). The Rust side cuts
    what is kept to `_contract.MAX_LOG_LINE` bytes, counting that too."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], _utf8_size(text, limit, len(text), text.isascii())


class _LogHandler(logging.Handler):
    """Turns records of the SDK logger into L frames, tagged with the current task; a message
    and each field are held to `_MAX_LINE` characters."""

    def __init__(self, channel):
        super(_LogHandler, self).__init__()
        self._channel = channel

    def emit(self, record):
        try:
            fields = dict(getattr(record, "with", None) or {})
            task = fields.pop("task", None) or current_task()
            message, dropped = _cut(record.getMessage())
            frame = {
                C.LOG_TASK: task,
                C.LOG_LEVEL: _LEVELS.get(record.levelname, C.LEVEL_INFO),
                C.LOG_MESSAGE: message,
                C.LOG_WITH: fields,
                C.LOG_STREAM: C.STREAM_LOGGER,
            }
            payload = _LOG_ENCODE(frame)
            if len(payload) > 4 * _MAX_LINE:
                payload, more = self._bounded(frame, fields)
                dropped += more
            if dropped:
                frame[C.LOG_TRUNCATED] = dropped
                payload = _LOG_ENCODE(frame)
            self._channel.send(_LOG, payload.encode("utf-8"))
        except Exception:
            self.handleError(record)

    @staticmethod
    def _bounded(frame, fields):
        """`frame` with each field's text cut (or, when that is still too long, without its
        fields): (its JSON, bytes dropped)."""
        dropped = 0
        cut = {}
        for name, value in fields.items():
            text = value if isinstance(value, str) else _LOG_ENCODE(value)
            cut[str(name)[:_MAX_LINE]], more = _cut(text)
            dropped += more
        frame[C.LOG_WITH] = cut
        payload = _LOG_ENCODE(frame)
        if len(payload) > 16 * _MAX_LINE:
            frame[C.LOG_WITH] = {}
            dropped += len(_LOG_ENCODE(cut))
            payload = _LOG_ENCODE(frame)
        return payload, dropped


class _StreamToFrames(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: each complete line becomes an L frame.

    At most `_MAX_LINE` characters of a line are held; the rest is counted as it is written and
    dropped, and its frame says how many bytes went (`LOG_TRUNCATED`).
    """

    def __init__(self, channel, stream, level):
        super(_StreamToFrames, self).__init__()
        self._channel = channel
        self._stream = stream
        self._level = level
        self._parts = []
        self._held = 0
        self._dropped = 0

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not {0}".format(type(text).__name__))
        start, end = 0, len(text)
        ascii = None
        while True:
            newline = text.find("\n", start)
            stop = end if newline < 0 else newline
            if stop > start:
                take = min(_MAX_LINE - self._held, stop - start)
                if take > 0:
                    self._parts.append(text[start:start + take])
                    self._held += take
                if start + take < stop:
                    if ascii is None:
                        ascii = text.isascii()
                    self._dropped += _utf8_size(text, start + take, stop, ascii)
            if newline < 0:
                return end
            self._emit()
            start = newline + 1

    def flush(self):
        if self._parts or self._dropped:
            self._emit()

    def _emit(self):
        frame = {
            C.LOG_TASK: current_task(),
            C.LOG_LEVEL: self._level,
            C.LOG_MESSAGE: "".join(self._parts),
            C.LOG_WITH: {},
            C.LOG_STREAM: self._stream,
        }
        if self._dropped:
            frame[C.LOG_TRUNCATED] = self._dropped
        self._parts = []
        self._held = 0
        self._dropped = 0
        self._channel.send_json(_LOG, frame)


# The worker's own sys.stdout and sys.stderr (`main`): what it flushes before each frame it
# sends, whatever a task has put in `sys.stdout` since.
_STREAMS = []


def _flush():
    for stream in _STREAMS:
        stream.flush()


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


def _watch_parent():
    """`--watchdog-stdin`: moves the pipe off fd 0 (tasks get /dev/null) and kills the process
    group, or this process when it leads none, once the pipe reads EOF."""
    pipe = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    def watch():
        try:
            while _OS_READ(pipe, 512):
                pass
        except OSError:
            pass
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="fusionizer-watchdog", daemon=True).start()


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


class _Signals(object):
    """Signals, as flags the serve loop reads between events.

    A handler only records the signal, sets flags and writes a byte to a pipe, which wakes the
    loop when it waits for the next frame (`wait`). The loop logs and acts on them in its own
    time, as the wrapper does in its serve loop, never inside a handler that may have
    interrupted a write to the socket.
    """

    def __init__(self):
        self.drain = False
        self.terminate = False
        self.stop = False
        self.discard = False
        self.terminated = False
        self.received = collections.deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def install(self):
        """The wrapper's signals (`_register_to_signal`) and the processor's stop signals."""
        signal.signal(signal.SIGUSR1, self._on_terminate)
        signal.signal(signal.SIGUSR2, self._on_drain)
        signal.signal(signal.SIGCONT, self._on_continue)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def pending(self):
        return self.drain or self.terminate or self.stop or bool(self.received)

    def _note(self, signum, ignored=False):
        self.received.append((signal.Signals(signum).name, ignored))
        try:
            _OS_WRITE(self._write, b"\0")
        except OSError:
            pass  # the pipe is full: the loop is awake already

    def _on_terminate(self, signum, frame):
        # `_on_termination_signal`: discard events from now on, terminate when idle
        self.terminate = True
        self.discard = True
        self._note(signum)

    def _on_drain(self, signum, frame):
        # `_on_drain_signal`: ignored while events are discarded
        if self.discard:
            self._note(signum, ignored=True)
            return
        self.drain = True
        self.discard = True
        self._note(signum)

    def _on_continue(self, signum, frame):
        # `_on_continue_signal`: take events again
        self.discard = False
        self._note(signum)

    def _on_stop(self, signum, frame):
        # the processor's SIGTERM/SIGINT (`cmd/processor/app/processor.go`, `handleSignals`)
        self.stop = True
        self.discard = True
        self._note(signum)

    def wait(self, channel):
        """Wait until a frame can be read (True) or a signal asks for attention (False)."""
        if channel.has_frame():
            return True
        while True:
            if self.pending():
                return False
            ready, _, _ = _SELECT([channel, self._read], [], [])
            if self._read in ready:
                try:
                    while _OS_READ(self._read, 512):
                        pass
                except BlockingIOError:
                    pass
            if channel in ready:
                return True


class Worker(object):
    """One worker process: init, then serve E frames until Q, a stop signal or the socket closes."""

    def __init__(self, channel, entrypoint, context, loop, signals=None, max_response=None):
        self._channel = channel
        # the largest answer (R meta and body, bytes) sent; None: no limit
        self._max_response = max_response
        self._entrypoint = entrypoint
        self._context = context
        self._loop = loop
        self._dispatcher = getattr(entrypoint, "fusionizer_dispatcher", None)
        if self._dispatcher is not None:
            # the trace goes in the R frame, and in-process async calls run after it is sent
            self._dispatcher.defer_after_response = True
        self._signals = signals
        self._triggers = {}
        self._metas = {}

    def _event(self, meta, body):
        content_type = meta.get(C.EVENT_CONTENT_TYPE) or ""
        trigger = meta.get(C.EVENT_TRIGGER) or {}
        key = (
            trigger.get(C.TRIGGER_KIND, C.TRIGGER_KIND_HTTP),
            trigger.get(C.TRIGGER_NAME, C.DEFAULT_HTTP_TRIGGER),
        )
        trigger_info = self._triggers.get(key)
        if trigger_info is None:
            trigger_info = self._triggers[key] = nuclio_sdk.TriggerInfo(*key)
        headers = meta.get(C.EVENT_HEADERS) or {}
        if key[0] == C.TRIGGER_KIND_HTTP:
            # names as Nuclio's HTTP trigger presents them (fasthttp, `pkg/processor/trigger/
            # http/event.go`); other triggers' headers are handed on as they are, as a cron
            # trigger's `attributes.event.headers` (`pkg/processor/trigger/cron/event.go`)
            canonical = _codec.canonical_header
            headers = {canonical(name): value for name, value in headers.items()}
        return nuclio_sdk.Event(
            body=_codec.decode_body(body, content_type),
            content_type=content_type,
            trigger=trigger_info,
            fields=meta.get(C.EVENT_FIELDS),
            headers=headers,
            _id=meta.get(C.EVENT_ID),
            method=meta.get(C.EVENT_METHOD),
            path=meta.get(C.EVENT_PATH),
            size=len(body),
            timestamp=_codec.utc_timestamp(meta.get(C.EVENT_TIMESTAMP) or 0),
            url="",
        )

    def handle(self, meta, body):
        """Run the handler on one event; returns (R meta dict, body bytes).

        The result is encoded as Nuclio answers it (`_codec.encode_output`: headers whose
        values are not strings are dropped or converted as Nuclio's wrapper and HTTP trigger
        do); a handler that raises, or whose result cannot be encoded, is a 500, as in the
        wrapper (`_handle_event` / `_on_handle_event_error`).
        """
        sample = False
        try:
            meta = _DECODE(meta)
            sample = bool(meta.get(C.EVENT_SAMPLE_RSS)) and _trace.reset_peak_rss()
            event = self._event(meta, body)
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
        response = {
            C.RESPONSE_STATUS_CODE: status,
            C.RESPONSE_CONTENT_TYPE: content_type,
            C.RESPONSE_HEADERS: headers,
            C.RESPONSE_TASK: dispatcher.last_task if dispatcher is not None else None,
            C.RESPONSE_CALLS: dispatcher.calls if dispatcher is not None else _NO_CALLS,
        }
        if dispatcher is not None and dispatcher.trace:
            response[C.RESPONSE_TRACE] = dispatcher.trailer()
        if sample:
            response[C.RESPONSE_PEAK_RSS] = _trace.peak_rss()
        return response, out

    def discarded(self):
        """The answer to an event that arrives after a termination or drain signal."""
        self._context.logger.debug("Event has been discarded")
        return {
            C.RESPONSE_STATUS_CODE: 503,
            C.RESPONSE_CONTENT_TYPE: "text/plain",
            C.RESPONSE_HEADERS: {},
            C.RESPONSE_TASK: None,
            C.RESPONSE_CALLS: _NO_CALLS,
        }, b"event discarded: the worker is terminating or drained\n"

    def serve(self):
        """Serve until `Q`, a stop signal or the socket closes; returns the exit status."""
        channel = self._channel
        signals = self._signals
        max_response = self._max_response
        while True:
            if signals is not None:
                if signals.pending():
                    status = self._on_signals()
                    if status is not None:
                        return status
                if not signals.wait(channel):
                    continue
            try:
                kind, meta, body = channel.read()
            except (_Disconnected, ConnectionError):
                return 0
            if kind == _QUIT:
                return self._terminate_and_exit()
            if kind != _EVENT:
                sys.__stderr__.write("fusionizer worker: unknown frame kind {0!r}\n".format(chr(kind)))
                continue
            if signals is not None and signals.discard:
                response, out = self.discarded()
            else:
                response, out = self.handle(meta, body)
            _flush()
            encoded = self._encode_meta(response)
            if max_response is not None and len(encoded) + len(out) > max_response:
                encoded, out = _too_large(response, len(encoded) + len(out)), b""
            channel.send(_RESPONSE, encoded, out)
            dispatcher = self._dispatcher
            if dispatcher is not None and dispatcher.deferred:
                # in-process asynchronous calls, now that the caller has its answer
                dispatcher.run_deferred()
                _flush()

    def _on_signals(self):
        """Run what the signals since the last event ask for; an exit status to stop with."""
        signals = self._signals
        logger = self._context.logger
        while signals.received:
            name, ignored = signals.received.popleft()
            if ignored:
                logger.debug("Draining signal is received, but it will be ignored as the worker "
                             "is already drained")
            else:
                logger.debug_with("Received signal", signal=name)
        # the wrapper's order (`serve_requests`, `finally`): drain, then termination
        if signals.drain:
            signals.drain = False
            if not self._run_callback(_DRAIN):
                return 1
        if signals.terminate:
            signals.terminate = False
            signals.terminated = True
            if not self._run_callback(_TERMINATION):
                return 1
        if signals.stop:
            return self._terminate_and_exit()
        return None

    def _terminate_and_exit(self):
        """`Q` or a stop signal: the termination callback, unless a SIGUSR1 ran it; exit 0."""
        signals = self._signals
        if signals is not None:
            signals.discard = True
            if signals.terminated:
                return 0
            signals.terminated = True
        return 0 if self._run_callback(_TERMINATION) else 1

    def _run_callback(self, kind):
        """`platform._on_signal(kind)`, awaiting a coroutine it returns, as the wrapper does
        (`_call_drain_handler`, `_call_termination_handler`); False when it raised."""
        logger = self._context.logger
        logger.debug("Calling platform {0} handler".format(kind))
        try:
            result = self._context.platform._on_signal(callback_type=kind)
            if asyncio.iscoroutine(result):
                self._loop.run_until_complete(result)
        except Exception as exc:
            logger.error_with(
                "Exception raised in {0} callback".format(kind), exc=str(exc),
                traceback=traceback.format_exc(),
            )
            return False
        finally:
            _flush()
        return True

    def _encode_meta(self, response):
        """The JSON of `response` as UTF-8, memoised for the common shape (no headers, int
        counts).

        The key holds every value the JSON text depends on, with the types of those whose equal
        values could spell differently (True == 1), so a hit is byte-identical to a fresh dump.
        """
        calls = response[C.RESPONSE_CALLS]
        status = response[C.RESPONSE_STATUS_CODE]
        content_type = response[C.RESPONSE_CONTENT_TYPE]
        task = response[C.RESPONSE_TASK]
        if (
            response[C.RESPONSE_HEADERS] or len(response) != 5
            or type(calls) is not dict or len(calls) != 2
            or type(status) is not int or type(content_type) is not str
            or (task is not None and type(task) is not str)
        ):
            return _META_ENCODE(response).encode("utf-8")
        local, remote = calls.get(C.CALLS_LOCAL), calls.get(C.CALLS_REMOTE)
        if (
            type(local) is not int or type(remote) is not int
            or list(calls) != [C.CALLS_LOCAL, C.CALLS_REMOTE]
        ):
            return _META_ENCODE(response).encode("utf-8")
        key = (status, content_type, task, local, remote)
        encoded = self._metas.get(key)
        if encoded is None:
            encoded = _META_ENCODE(response).encode("utf-8")
            if len(self._metas) >= 256:
                self._metas.clear()
            self._metas[key] = encoded
        return encoded


def _too_large(response, size):
    """The meta of the R frame sent instead of an answer of `size` bytes over the limit: a 502
    without a body, saying the size (the Rust side names the limit and its setting)."""
    small = dict(response)
    small[C.RESPONSE_STATUS_CODE] = 502
    small[C.RESPONSE_CONTENT_TYPE] = "text/plain"
    small[C.RESPONSE_HEADERS] = {}
    small[C.RESPONSE_TOO_LARGE] = size
    return _META_ENCODE(small).encode("utf-8")


def _freeze_heap():
    """After every `init_context`: what exists now (modules, task state) lives as long as the
    worker, so the cyclic collector stops scanning it (`gc.freeze`), and each collection during
    events walks only what events allocate."""
    gc.collect()
    gc.freeze()


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="fusionizer local worker (plays Nuclio's wrapper)")
    parser.add_argument(C.WORKER_ARG_SOCKET, required=True, help="Unix socket the platform listens on")
    parser.add_argument(C.WORKER_ARG_HANDLER, required=True, help="module.sub:function")
    parser.add_argument(C.WORKER_ARG_WORKER_ID, default="0")
    parser.add_argument(C.WORKER_ARG_FUNCTION, default=os.environ.get(C.ENV_FUNCTION, ""))
    parser.add_argument(C.WORKER_ARG_MAX_RESPONSE, type=int, default=None,
                        help="largest answer in bytes (R meta and body); larger ones become a 502")
    parser.add_argument(C.WORKER_ARG_WATCHDOG, action="store_true",
                        help="stdin is a pipe the parent holds: exit with the process group at EOF")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    if args.watchdog_stdin:
        _watch_parent()
    try:
        sock = _connect(args.socket)
    except OSError as exc:
        sys.stderr.write("fusionizer worker: cannot connect to {0}: {1}\n".format(args.socket, exc))
        return 1
    channel = _Channel(sock)

    logger = nuclio_sdk.Logger(logging.DEBUG, name="nuclio_sdk")
    logger._logger.handlers[:] = [_LogHandler(channel)]
    logger._logger.propagate = False
    sys.stdout = _StreamToFrames(channel, C.STREAM_STDOUT, C.LEVEL_INFO)
    sys.stderr = _StreamToFrames(channel, C.STREAM_STDERR, C.LEVEL_WARN)
    _STREAMS[:] = [sys.stdout, sys.stderr]

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
            nuclio_sdk.TriggerInfo(C.TRIGGER_KIND_HTTP, C.DEFAULT_HTTP_TRIGGER),
        )
        init_context = getattr(sys.modules[entrypoint.__module__], "init_context", None)
        if init_context is not None:
            result = init_context(context)
            if inspect.isawaitable(result):
                loop.run_until_complete(result)
    except BaseException as exc:
        _flush()
        channel.send_json(_INIT_FAILED, {
            C.FAILED_TASK: getattr(exc, "task", None),
            C.FAILED_ERROR: _cut("{0}\n{1}".format(exc, traceback.format_exc()), _MAX_FAILURE)[0],
            C.FAILED_SUMMARY: getattr(exc, "reason", None) or located(exc),
        })
        return 1
    _flush()
    # like the wrapper: signal handlers go in after init_context, before the ready message
    signals = _Signals()
    signals.install()
    tasks = sorted(dispatcher.tasks) if dispatcher is not None else []
    _freeze_heap()
    channel.send_json(_READY, {C.READY_PID: os.getpid(), C.READY_TASKS: tasks})
    return Worker(channel, entrypoint, context, loop, signals, args.max_response_size).serve()


if __name__ == "__main__":
    sys.exit(main())
