"""Local worker: plays Nuclio's Python wrapper for fusionizer's local platform.

    python -u -m fusionizer_dispatcher.worker --socket PATH --handler MODULE:FUNC \
        --worker-id N --function NAME [--watchdog-stdin]

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
    F  init failed: JSON {"task": str|null, "error": str}; then exit 1
    R  response, exactly one per E, in order: meta_len:u32 BE | meta JSON | body (raw bytes).
       meta = {"status_code", "content_type", "headers", "task", "calls": {"local", "remote"}}
       plus, when there is something to report (`_trace`), "trace" (the in-process call
       records) and "peak_rss" (bytes, when the E frame's "sample_rss" asked for it);
       headers are strings, as Nuclio's HTTP trigger sends them (`_codec.response_headers`), and
       a `X-nuclio-filestream-path` response already carries the file as its body
    L  log line: JSON {"task", "level": debug|info|warn|error, "message", "with",
       "stream": logger|stdout|stderr}

Task loggers and anything task code writes to sys.stdout/sys.stderr become L frames tagged with
the current task; the real stderr (fd 2) stays untouched for what cannot be framed. Frame
letters, meta keys and arguments are `_contract`'s.

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
from .dispatcher import current_task

_CONNECT_TIMEOUT = 10.0
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
            count = self._sock.recv_into(self._view[self._end:])
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
            self._channel.send_json(_LOG, {
                C.LOG_TASK: task,
                C.LOG_LEVEL: _LEVELS.get(record.levelname, C.LEVEL_INFO),
                C.LOG_MESSAGE: record.getMessage(),
                C.LOG_WITH: fields,
                C.LOG_STREAM: C.STREAM_LOGGER,
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
        self._channel.send_json(_LOG, {
            C.LOG_TASK: current_task(),
            C.LOG_LEVEL: self._level,
            C.LOG_MESSAGE: line,
            C.LOG_WITH: {},
            C.LOG_STREAM: self._stream,
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


def _watch_parent():
    """`--watchdog-stdin`: moves the pipe off fd 0 (tasks get /dev/null) and kills the process
    group, or this process when it leads none, once the pipe reads EOF."""
    pipe = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    def watch():
        try:
            while os.read(pipe, 512):
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
            os.write(self._write, b"\0")
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
            ready, _, _ = select.select([channel, self._read], [], [])
            if self._read in ready:
                try:
                    while os.read(self._read, 512):
                        pass
                except BlockingIOError:
                    pass
            if channel in ready:
                return True


class Worker(object):
    """One worker process: init, then serve E frames until Q, a stop signal or the socket closes."""

    def __init__(self, channel, entrypoint, context, loop, signals=None):
        self._channel = channel
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
            meta = json.loads(meta)
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
        dumps = json.dumps
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
            sys.stdout.flush()
            sys.stderr.flush()
            channel.send(_RESPONSE, self._encode_meta(response, dumps), out)
            dispatcher = self._dispatcher
            if dispatcher is not None and dispatcher.deferred:
                # in-process asynchronous calls, now that the caller has its answer
                dispatcher.run_deferred()
                sys.stdout.flush()
                sys.stderr.flush()

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
            sys.stdout.flush()
            sys.stderr.flush()
        return True

    def _encode_meta(self, response, dumps):
        """`dumps(response)` as UTF-8, memoised for the common shape (no headers, int counts).

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
            return dumps(response).encode("utf-8")
        local, remote = calls.get(C.CALLS_LOCAL), calls.get(C.CALLS_REMOTE)
        if (
            type(local) is not int or type(remote) is not int
            or list(calls) != [C.CALLS_LOCAL, C.CALLS_REMOTE]
        ):
            return dumps(response).encode("utf-8")
        key = (status, content_type, task, local, remote)
        encoded = self._metas.get(key)
        if encoded is None:
            encoded = dumps(response).encode("utf-8")
            if len(self._metas) >= 256:
                self._metas.clear()
            self._metas[key] = encoded
        return encoded


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
        sys.stdout.flush()
        sys.stderr.flush()
        channel.send_json(_INIT_FAILED, {
            C.FAILED_TASK: getattr(exc, "task", None),
            C.FAILED_ERROR: "{0}\n{1}".format(exc, traceback.format_exc()),
        })
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    # like the wrapper: signal handlers go in after init_context, before the ready message
    signals = _Signals()
    signals.install()
    tasks = sorted(dispatcher.tasks) if dispatcher is not None else []
    _freeze_heap()
    channel.send_json(_READY, {C.READY_PID: os.getpid(), C.READY_TASKS: tasks})
    return Worker(channel, entrypoint, context, loop, signals).serve()


if __name__ == "__main__":
    sys.exit(main())
