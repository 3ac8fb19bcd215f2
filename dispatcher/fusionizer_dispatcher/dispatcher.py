"""The dispatcher: one fused Nuclio function serving several tasks.

Nuclio's wrapper (or our local worker) imports the generated `_fusionizer_entry` module, calls
`init_context(context)` once per worker and `handler(context, event)` per event. The dispatcher
routes each event to a task (`Dispatcher.route`: its `Task-Name` header, else its trigger, else
the only task, else its path) and runs the task's own handler with the task's own
`nuclio_sdk.Context`, and turns calls between tasks of this group into plain function calls that
keep the exact semantics of the HTTP call they replace (see `_codec`).
"""

import asyncio
import collections
import contextvars
import copy
import functools
import http.client
import importlib.util
import inspect
import logging
import os
import queue
import re
import sys
import threading
import time
import urllib.parse

import nuclio_sdk

from . import _codec, _contract, _imports, _trace

_HANDLER_RE = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")
_PLAIN_OUTPUTS = _codec.PLAIN_OUTPUTS
_DEFAULT_PROXY_PORT = int(_contract.DEFAULT_PROXY_PORT)
_HTTP = _contract.TRIGGER_KIND_HTTP
_LOCAL = _contract.CALLS_LOCAL
_REMOTE = _contract.CALLS_REMOTE
# In-process asynchronous calls waiting to run, at most; past it such a call answers 503.
MAX_DEFERRED = 256
# Distinct (caller, callee, proxy, request headers, body size) of in-process calls remembered.
_MAX_PLANS = 1024
_perf_counter = time.perf_counter
_new_event = _codec.new_event
_encode_output_text = _codec.encode_output_text
_plain_sdk_response = _codec.plain_sdk_response
_MAX_RECORDS = _trace.MAX_RECORDS
_UNPARSABLE = object()
# The hidden task `Dispatcher._warm` calls: no event or URL of a real task can name it.
_WARM_TASK = "fusionizer warm-up"
_WARM_PROXY = ("fusionizer-warm-up.invalid", _DEFAULT_PROXY_PORT)
_WARM_URL = "http://{0}:{1}/fusionizer%20warm-up".format(*_WARM_PROXY)
_WARM_CALLS = 20


def _warm_handler(context, event):
    return {"warm": event.body}
_ACCEPTED_BODY = b"accepted: the call runs after this event\n"
_QUEUE_FULL_BODY = b"too many asynchronous calls waiting in this function; retry later\n"


class _Frame(object):
    """The task currently running in this thread of control, and where the proxy is."""

    __slots__ = ("task", "proxy")

    def __init__(self, task, proxy):
        self.task = task
        self.proxy = proxy


_CURRENT = contextvars.ContextVar("fusionizer_frame", default=None)


def current_task():
    """Name of the task whose code is running now (None outside any task)."""
    frame = _CURRENT.get()
    return frame.task if frame is not None else None


class TaskError(Exception):
    """A task failed to load or to initialise; `task` names it, `reason` is the one line that
    says what went wrong without the task's name (the message is `task `<task>`: <reason>`)."""

    def __init__(self, task, message, reason=None):
        super(TaskError, self).__init__(message)
        self.task = task
        self.reason = reason if reason is not None else message


def _failed(task, reason):
    return TaskError(task, "task `{0}`: {1}".format(task, reason), reason)


# A failure's one line is cut to this many characters.
_MAX_REASON = 500


def one_line(text):
    """`text` on one line (whitespace runs collapsed), cut to `_MAX_REASON` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."


def located(exc, directory=None):
    """`file:line[:column]: Type: message` for `exc`, raised by a task's code: where in the task's
    `directory` it happened (a `SyntaxError`'s own place, else the innermost frame there),
    relative to it; without a place when none is in that directory. One line."""
    where = None
    text = str(exc)
    if isinstance(exc, SyntaxError):
        text = exc.msg or text
        if exc.filename and _below(exc.filename, directory):
            where = "{0}:{1}".format(os.path.relpath(exc.filename, directory), exc.lineno)
            if exc.offset:
                where += ":{0}".format(exc.offset)
    if where is None and directory is not None:
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if _below(filename, directory):
                where = "{0}:{1}".format(os.path.relpath(filename, directory), tb.tb_lineno)
            tb = tb.tb_next
    described = "{0}: {1}".format(type(exc).__name__, text) if text else type(exc).__name__
    return one_line("{0}: {1}".format(where, described) if where else described)


def _below(path, directory):
    if not directory or not path:
        return False
    directory = os.path.abspath(directory)
    return os.path.abspath(path).startswith(directory + os.sep)


class _TaskLogger(object):
    """The worker's logger with `task=<name>` bound, without touching the shared logger."""

    def __init__(self, parent, task):
        self._parent = parent
        self._bound = {"task": task}

    def _log(self, method, message, args, kw):
        kw.update(self._bound)
        getattr(self._parent, method)(message, *args, **kw)

    def debug(self, message, *args):
        self._log("debug_with", message, args, {})

    def info(self, message, *args):
        self._log("info_with", message, args, {})

    def warn(self, message, *args):
        self._log("warn_with", message, args, {})

    def error(self, message, *args):
        self._log("error_with", message, args, {})

    def debug_with(self, message, *args, **kw):
        self._log("debug_with", message, args, kw)

    def info_with(self, message, *args, **kw):
        self._log("info_with", message, args, kw)

    def warn_with(self, message, *args, **kw):
        self._log("warn_with", message, args, kw)

    def error_with(self, message, *args, **kw):
        self._log("error_with", message, args, kw)

    def bind(self, **kw):
        self._bound.update(kw)

    def __getattr__(self, name):
        return getattr(self._parent, name)


def _no_proxy_response(function, callee):
    """The 502 a call to a task in another function gets when no proxy is known."""
    body = (
        "cannot call task `{0}`: it is not in this function (`{1}`) and no fusionizer proxy is "
        "configured, so there is no way to reach it. Set `[nuctl] proxy-url` (or `[serve] "
        "advertise`) in fusion.toml to a URL of `fusionizer serve` that functions can reach, then "
        "plan and apply; fusionizer bakes it into every function as `{2}`. To call a Nuclio "
        "function that is not a fusionizer task, pass `service_name_override`.\n"
    ).format(callee, function, _contract.ENV_PROXY_URL)
    return nuclio_sdk.Response(body=body, headers={}, content_type="text/plain", status_code=502)


class _PlatformProxy(object):
    """`context.platform` of a task: `call_function` to a sibling runs in-process.

    Everything else is the real platform's. Termination and drain callbacks are kept per task,
    and the real platform's single slot for each runs them all (`Dispatcher.signal_callback`).
    """

    def __init__(self, dispatcher, task, platform):
        self._dispatcher = dispatcher
        self._task = task
        self._platform = platform

    def call_function(self, function_name, event, node=None, timeout=None, service_name_override=None):
        """`nuclio_sdk.Platform.call_function`, same signature and errors (`nuclio_sdk/platform.py`).

        An `event` carrying the header `Prefer: respond-async` (RFC 7240) makes the call
        fire-and-forget, as `call_function_async` does.

        A sibling runs in-process; a task elsewhere is reached through the proxy; with
        `service_name_override` the real platform makes the call. With no proxy known (no
        `FUSIONIZER_PROXY_URL`, and the event did not come through the proxy), a call to another
        task answers 502 at once, naming the setting to add. The
        caller's `event` is never changed, although the SDK's own call writes `Content-Type` and
        `X-Nuclio-Target` into `event.headers`: every path works on a copy of them. `timeout`
        and `node` do not apply in-process (the SDK ignores `node` too).
        """
        dispatcher = self._dispatcher
        if (
            service_name_override is None and isinstance(function_name, str)
            and function_name in dispatcher.tasks
        ):
            return dispatcher._call_function_in_process(self._task, function_name, event, node, timeout)
        proxy = dispatcher._proxy()
        if proxy is not None and service_name_override is None:
            return dispatcher._call_function_via_proxy(
                self._task, function_name, event, node, proxy, timeout
            )
        if service_name_override is None and isinstance(function_name, str):
            # The SDK would resolve `function_name` as Nuclio function `nuclio-<name>`, which a
            # fused task is not: fail at once, saying what to configure.
            return _no_proxy_response(dispatcher.function, function_name)
        dispatcher.calls[_REMOTE] += 1
        return self._platform.call_function(
            function_name, _CallEvent(event), node=node, timeout=timeout,
            service_name_override=service_name_override,
        )

    def call_function_async(self, function_name, event, node=None, timeout=None,
                            service_name_override=None):
        """`call_function` as a fire-and-forget call: `event` is sent with `Prefer:
        respond-async` (RFC 7240; the caller's event is not changed), and the answer is
        `202 Accepted` at once. The callee runs later: through the proxy, serve runs it in the
        background; in-process, it runs after the caller's event (local platform) or on a
        separate thread (Nuclio). When too many asynchronous calls wait, the answer is 503 with
        `Retry-After` instead: a call is never dropped without an answer. Either way the call
        counts as `async` in serve's traces. Code that must also run on Nuclio without
        fusionizer can set the header itself and call `call_function`.
        """
        return self.call_function(
            function_name, _with_prefer_async(event), node=node, timeout=timeout,
            service_name_override=service_name_override,
        )

    def set_termination_callback(self, callback):
        """Like `nuclio_sdk.Platform.set_termination_callback`: replaces this task's callback."""
        self._dispatcher._set_signal_callback("termination", self._task, callback)

    def set_drain_callback(self, callback):
        """Like `nuclio_sdk.Platform.set_drain_callback`: replaces this task's callback."""
        self._dispatcher._set_signal_callback("drain", self._task, callback)

    def __getattr__(self, name):
        return getattr(self._platform, name)


# Argument errors name the method as Python spells its qualified name ("Platform.call_function()
# missing 1 required positional argument: 'event'"): spell it as the SDK's.
_PlatformProxy.call_function.__qualname__ = nuclio_sdk.Platform.call_function.__qualname__


def _with_prefer_async(event):
    """A shallow copy of `event` whose headers (a copy) carry `Prefer: respond-async`."""
    copied = copy.copy(event)
    headers = getattr(event, "headers", None)
    headers = dict(headers) if headers else {}
    headers[_contract.HEADER_PREFER] = _contract.PREFER_RESPOND_ASYNC
    copied.headers = headers
    return copied


class _CallEvent(object):
    """The caller's event as `nuclio_sdk.Platform.call_function` reads it, with private headers.

    The SDK writes `Content-Type` and `X-Nuclio-Target` into `event.headers` and pops
    `Content-Length` (`nuclio_sdk/platform.py`); through this view it writes into a copy, made
    when it first reads them. Every other attribute is the event's own, read when the SDK reads
    it, so a missing one fails where and as it would in the SDK.
    """

    __slots__ = ("_event", "_headers")

    def __init__(self, event):
        self._event = event
        self._headers = _CallEvent

    def __getattr__(self, name):
        return getattr(self._event, name)

    @property
    def headers(self):
        if self._headers is _CallEvent:
            headers = self._event.headers
            if type(headers) is dict:
                headers = dict(headers)
            elif callable(getattr(headers, "copy", None)):
                headers = headers.copy()
            else:
                headers = copy.copy(headers)
            self._headers = headers
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = value


class _Task(object):
    __slots__ = (
        "name", "handler", "init", "wants_session", "context", "session", "package",
    )

    def __init__(self, name=None, handler=None):
        self.name, self.handler, self.init, self.wants_session = name, handler, None, False
        self.context = self.session = self.package = None


def _positional_arity(function):
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds)


class Dispatcher(object):
    """Serves the tasks of one fused function; see the module docstring.

        Dispatcher(function, tasks, root, module=None, triggers=None)

    - `function`: the fused function's name (for messages);
    - `tasks`: {task: handler spec `module.sub:function`, relative to the task's directory};
    - `root`: the artifact directory holding `fusionizer_tasks/<task>/`;
    - `module`: the module whose `handler`/`init_context` these are (default: the caller's);
    - `triggers`: {trigger name: task} for the function's non-HTTP triggers (Kafka, NATS, v3io,
      RabbitMQ, ...), whose events carry no `Task-Name` header; default none. Each task must
      be one of `tasks`.

    An event goes to the task named by, in order (`route`): its `Task-Name` header; for an
    event of a non-HTTP trigger, `triggers[<trigger name>]`; the only task, when there is one;
    for an event of the HTTP trigger, the first segment of its path (`/<task>/...`). Otherwise
    it is answered 400, saying how to address a task; a `Task-Name` naming no task is a 404.
    Cron events carry `Task-Name` (fusionizer adds it to each cron trigger's
    `attributes.event.headers`), in both of Nuclio's cron modes: in `processor` mode on the cron
    trigger's own events, in `kube` mode on the HTTP trigger with `X-Nuclio-Invoke-Trigger:
    cron`.

    `handler` and `init_context` are plain functions whose `__module__` is the module that
    created the dispatcher (the generated entry), because Nuclio looks `init_context` up on
    `sys.modules[handler.__module__]`. `init_context` is `async` when some task's is.
    """

    def __init__(self, function, tasks, root, module=None, triggers=None):
        self.function = function
        self.tasks = {}
        self.root = root
        self.triggers = dict(triggers or {})
        self.calls = {_LOCAL: 0, _REMOTE: 0}
        # In-process calls of the current event, for the proxy (`_trace`), and those past the cap.
        self.trace = []
        self.trace_more = 0
        self._event_headers = None
        # Where in-process asynchronous calls wait: the local worker runs them after it answered
        # the event (`run_deferred`) and sets `defer_after_response`; otherwise (Nuclio) a
        # helper thread runs them, and the trace goes out as a response header.
        self.defer_after_response = False
        self.deferred = collections.deque()
        self._deferred_thread = None
        self.last_task = None
        self.loop = None
        self._signal_callbacks = {"termination": {}, "drain": {}}
        self._top = None
        self._env_proxy_cache = (None, None)
        self._url_targets = {}
        self._call_plans = {}
        self._request_plans = {}
        self._http_trigger = None
        self._async_runner = None
        self._only = None
        module = module or sys._getframe(1).f_globals.get("__name__", __name__)
        self._load(tasks)
        for trigger, task in sorted(self.triggers.items()):
            if task not in self.tasks:
                raise TaskError(task, "trigger `{0}` is mapped to task `{1}`, which function `{2}` "
                                "does not serve (tasks: {3})".format(
                                    trigger, task, function, self._task_list()))
        if len(self.tasks) == 1:
            self._only = next(iter(self.tasks))

        def handler(context, event):
            return self._handle(context, event)

        if any(inspect.iscoroutinefunction(task.init) for task in self.tasks.values()):
            async def init_context(context):
                for awaitable in self._init_tasks(context):
                    await awaitable
        else:
            def init_context(context):
                for awaitable in self._init_tasks(context):
                    self.run_coroutine(awaitable)

        for function_ in (handler, init_context):
            function_.__module__ = module
            function_.fusionizer_dispatcher = self
        self.handler = handler
        self.init_context = init_context

    # ----------------------------------------------------------------- loading and init

    def _load(self, tasks):
        packages = _imports.mount_tasks(self.root, tasks)
        for name in sorted(tasks):
            spec = tasks[name]
            match = _HANDLER_RE.match(spec)
            if not match:
                raise TaskError(name, "task `{0}`: malformed handler {1!r}".format(name, spec))
            module_name, attribute = match.group(1), match.group(3)
            token = _CURRENT.set(_Frame(name, None))
            directory = _imports.task_directory(packages[name])
            try:
                module = _imports.import_task_module(packages[name], module_name)
            except Exception as exc:
                raise _failed(name, "cannot import handler `{0}`: {1}".format(
                    spec, located(exc, directory))) from exc
            finally:
                _CURRENT.reset(token)
            entrypoint = getattr(module, attribute, None)
            if entrypoint is None:
                raise _failed(name, "handler `{0}`: module `{1}` defines no `{2}`".format(
                    spec, module_name, attribute))
            task = _Task()
            task.name = name
            task.handler = entrypoint
            task.package = packages[name]
            # like Nuclio: init_context is looked up on the handler's own module
            home = sys.modules.get(getattr(entrypoint, "__module__", None), module)
            task.init = getattr(home, "init_context", None)
            task.wants_session = _positional_arity(entrypoint) >= 3
            if task.wants_session:
                _require_requests(name)
            task.context = None
            task.session = None
            self.tasks[name] = task

    def _init_tasks(self, context):
        """Build each task's Context and run its init_context; yields coroutines to await."""
        self._http_trigger = None
        logger = context.logger or nuclio_sdk.Logger(logging.DEBUG, name="fusionizer")
        for name in sorted(self.tasks):
            task = self.tasks[name]
            task.context = nuclio_sdk.Context(
                _TaskLogger(logger, name),
                _PlatformProxy(self, name, context.platform),
                context.worker_id,
                context.trigger,
            )
            if task.init is None:
                continue
            token = _CURRENT.set(_Frame(name, None))
            try:
                result = task.init(task.context)
                if inspect.isawaitable(result):
                    result = _in_frame(result, _Frame(name, None))
            except Exception as exc:
                raise _failed(name, "`init_context` failed: {0}".format(
                    located(exc, _imports.task_directory(task.package)))) from exc
            finally:
                _CURRENT.reset(token)
            if result is not None and inspect.isawaitable(result):
                yield _named_init(name, result, _imports.task_directory(task.package))
        self._warm()

    def _warm(self):
        """Run the in-process call paths a few times now, so that the first call of the first
        event does not pay for what they build on first use (caches, the `requests` session of
        each task that takes one, the interpreter's specialised bytecode).

        The calls go to a hidden task, which no event can name (its name has a space), added for
        the time of the warm-up; the call counters, records and caches of real calls are left
        as they were. A failure here is ignored: the real calls would meet it again.
        """
        sessions = [task for task in self.tasks.values() if task.wants_session]
        for task in sessions:
            self._session(task)
        self._trigger()
        task = _Task(_WARM_TASK, _warm_handler)
        saved = (self.calls, self.trace, self.trace_more, self._top, self._env_proxy_cache)
        self.tasks[_WARM_TASK] = task
        self.calls = {_LOCAL: 0, _REMOTE: 0}
        frame = _Frame(_WARM_TASK, _WARM_PROXY)
        token = _CURRENT.set(frame)
        try:
            platform = _PlatformProxy(self, _WARM_TASK, None)
            session = None
            if sessions:
                session = _requests_support().TaskSession(self, _WARM_TASK)
            for _ in range(_WARM_CALLS):
                self.trace = []
                platform.call_function(_WARM_TASK, nuclio_sdk.Event(body={"warm": 1}, method="POST"))
                if session is not None:
                    session.post(_WARM_URL, json={"warm": 1}).json()
        except Exception:
            pass
        finally:
            _CURRENT.reset(token)
            del self.tasks[_WARM_TASK]
            self.calls, self.trace, self.trace_more, self._top, self._env_proxy_cache = saved
            for plans in (self._call_plans, self._request_plans):
                for key in [key for key in plans if key[1] == _WARM_TASK]:
                    del plans[key]
            self._url_targets.pop(_WARM_URL, None)

    # ----------------------------------------------------------------- routing

    def route(self, context, event):
        """(task, None) for the task `event` is for, or (None, the 4xx `nuclio_sdk.Response`).

        In order: the `Task-Name` header, read as `Event.get_header` reads it (any case); for a
        non-HTTP trigger, `triggers` by the trigger's name; the only task; for the HTTP trigger,
        the first segment of `event.path` (the decoded path, `pkg/processor/trigger/http/
        event.go`). The trigger is `event.trigger` (`.kind`, `.name`; `nuclio_sdk/event.py`),
        which the processor sets on every event to the trigger's kind and its name in
        `spec.triggers` (`pkg/processor/trigger/trigger.go`, `prepareEvent`) and encodes
        (`pkg/processor/runtime/rpc/encoder/encode.go`); else `context.trigger` (`.kind`,
        `.name`; `nuclio_sdk/context.py`, which has no `trigger_kind`), the worker's own trigger
        (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`, `--trigger-kind`/`--trigger-name`).
        """
        name = _codec.header_value(event.headers, _contract.HEADER_TASK_NAME)
        if name:
            if name in self.tasks:
                return name, None
            return None, nuclio_sdk.Response(
                body="task `{0}` is not in function `{1}`, which serves tasks {2}\n".format(
                    name, self.function, self._task_list()
                ),
                content_type="text/plain",
                status_code=404,
            )
        kind, trigger = _trigger_of(event, context)
        if kind != _HTTP:
            name = self.triggers.get(trigger)
            if name is not None:
                return name, None
        if self._only is not None:
            return self._only, None
        path = _text(event.path)
        if kind == _HTTP or not kind:
            segment = path.lstrip("/").partition("/")[0]
            if segment in self.tasks:
                return segment, None
        return None, nuclio_sdk.Response(
            body=self._unaddressed(kind, trigger, path),
            content_type="text/plain",
            status_code=400,
        )

    def _unaddressed(self, kind, trigger, path):
        example = min(self.tasks) if self.tasks else "task"
        if self.triggers:
            mapped = ", ".join(
                "`{0}` -> `{1}`".format(name, task) for name, task in sorted(self.triggers.items())
            )
        else:
            mapped = "this function maps none"
        return (
            "no task named for this event (trigger `{0}` of kind `{1}`, path `{2}`): function "
            "`{3}` serves tasks {4}. Name one with:\n"
            "- the header `{5}`, e.g. `{5}: {6}`;\n"
            "- the path `/<task>` on the HTTP trigger, e.g. `/{6}`;\n"
            "- a non-HTTP trigger mapped to a task ({7}).\n"
        ).format(
            trigger, kind, path, self.function, self._task_list(), _contract.HEADER_TASK_NAME,
            example, mapped,
        )

    def _handle(self, context, event):
        self.calls = {_LOCAL: 0, _REMOTE: 0}
        if self.trace:
            self.trace = []
        self.trace_more = 0
        self._event_headers = event.headers
        self.last_task = None
        name, refusal = self.route(context, event)
        if refusal is not None:
            return refusal
        if not self.defer_after_response and _codec.proxy_headers(event.headers)[0]:
            return self._handle_reporting(name, event)
        return self._handle_task(name, event)

    def _handle_reporting(self, name, event):
        """`_handle_task`, plus what the proxy records (`_trace`) as response headers: on Nuclio
        nothing else carries it back. Only for an event that came through the proxy (it names
        itself in `Fusionizer-Server-Address`), which strips them; and only an answer with
        something to report is rebuilt."""
        sample = bool(_codec.header_value(event.headers, _contract.HEADER_SAMPLE_RSS))
        if sample:
            sample = _trace.reset_peak_rss()
        result = self._handle_task(name, event)
        if type(result) not in _PLAIN_OUTPUTS and inspect.isawaitable(result):
            return self._report_after(result, sample)
        return self._reported(result, sample)

    async def _report_after(self, awaitable, sample):
        return self._reported(await awaitable, sample)

    def _reported(self, result, sample):
        text = _trace.trailer(self.trace, self.trace_more)
        rss = _trace.peak_rss() if sample else None
        if not text and rss is None:
            return result
        status, content_type, headers, body = _codec.encode_output(result)
        headers = dict(headers)
        if text:
            headers[_contract.HEADER_TRACE] = text
        if rss is not None:
            headers[_contract.HEADER_PEAK_RSS] = str(rss)
        return nuclio_sdk.Response(
            body=body, headers=headers, content_type=content_type, status_code=status
        )

    @property
    def traceparent(self):
        """The current event's W3C `traceparent`, sent on with calls through the proxy (looked
        up only when such a call is made)."""
        headers = self._event_headers
        if not headers:
            return None
        return _codec.header_value(headers, _contract.HEADER_TRACEPARENT) or None

    def trailer(self):
        """The current event's in-process call records as the proxy reads them ('' if none)."""
        return _trace.trailer(self.trace, self.trace_more)

    def _handle_task(self, name, event):
        task = self.tasks[name]
        self.last_task = name
        if task.session is not None:
            task.session.cookies.clear()
        frame = _Frame(name, self._proxy_of(event))
        self._top = frame
        token = _CURRENT.set(frame)
        try:
            if task.wants_session:
                result = task.handler(task.context, event, self._session(task))
            else:
                result = task.handler(task.context, event)
        finally:
            _CURRENT.reset(token)
        if type(result) not in _PLAIN_OUTPUTS and inspect.isawaitable(result):
            return _in_frame(result, frame)
        return result

    def _task_list(self):
        return ", ".join("`{0}`".format(name) for name in sorted(self.tasks))

    def _session(self, task):
        if task.session is None:
            # `requests` is imported only when a task uses the original call style, so fused
            # functions whose tasks do not need it deploy without it.
            from ._session import TaskSession

            task.session = TaskSession(self, task.name)
        return task.session

    def _sibling_of_url(self, url):
        """The sibling task a URL addresses through the proxy, else None."""
        parts, host, callee = self._url_target(url)
        if callee is None or not self._is_proxy_host(host):
            return None
        return callee

    def _url_target(self, url):
        """(urlsplit parts, host, callee task or None), memoised: every part depends on `url` only."""
        target = self._url_targets.get(url)
        if target is None:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
            callee = None
            if host is not None:
                callee = urllib.parse.unquote(parts.path.lstrip("/").partition("/")[0])
                if callee not in self.tasks:
                    callee = None
            target = (parts, host, callee)
            if len(self._url_targets) >= 1024:
                self._url_targets.clear()
            self._url_targets[url] = target
        return target

    # ----------------------------------------------------------------- the proxy

    def _proxy_of(self, event):
        host, port = _codec.proxy_headers(event.headers)
        if host:
            try:
                return host, int(port) if port else _DEFAULT_PROXY_PORT
            except ValueError:
                return host, _DEFAULT_PROXY_PORT
        return self._env_proxy()

    def _env_proxy(self):
        url = os.environ.get(_contract.ENV_PROXY_URL)
        cached_url, proxy = self._env_proxy_cache
        if url != cached_url:
            proxy = None
            if url:
                parts = urllib.parse.urlsplit(url)
                if parts.hostname:
                    proxy = (parts.hostname, parts.port or _DEFAULT_PROXY_PORT)
            self._env_proxy_cache = (url, proxy)
        return proxy

    def _proxy(self):
        frame = _CURRENT.get() or self._top
        return frame.proxy if frame is not None else self._env_proxy()

    def _is_proxy_host(self, host):
        host = host.lower()
        proxy = self._proxy()
        if proxy is not None and proxy[0].lower() == host:
            return True
        env = self._env_proxy()
        return env is not None and env[0].lower() == host

    def _proxy_headers(self, caller, callee, proxy):
        """Headers the proxy adds when it forwards a call, plus the caller's own marker."""
        if proxy is None:
            return ((_contract.HEADER_CALLER, caller), (_contract.HEADER_TASK_NAME, callee))
        return (
            (_contract.HEADER_CALLER, caller), (_contract.HEADER_TASK_NAME, callee),
            (_contract.HEADER_SERVER_ADDRESS, proxy[0]),
            (_contract.HEADER_SERVER_PORT, str(proxy[1])),
        )

    # ----------------------------------------------------------------- in-process calls

    def _run_task(self, callee, event, proxy, frame=None):
        """Run a sibling's handler on `event` and encode its result as Nuclio would:
        `_codec.encode_output`'s (status, content type, headers, body); given the `frame` to run
        in, `_codec.encode_output_text`'s, with the JSON text last."""
        task = self.tasks[callee]
        texts = frame is not None
        if frame is None:
            frame = _Frame(callee, proxy)
        token = _CURRENT.set(frame)
        try:
            if task.wants_session:
                output = task.handler(task.context, event, self._session(task))
            else:
                output = task.handler(task.context, event)
            if type(output) not in _PLAIN_OUTPUTS and inspect.isawaitable(output):
                output = self.run_coroutine(_in_frame(output, frame))
            if texts:
                return _encode_output_text(output)
            return _codec.encode_output(output)
        except Exception as exc:
            result = _codec.error_output(exc)
            if task.context is not None:
                task.context.logger.error_with(
                    "Exception caught in handler", exc=str(exc), traceback=result[3].decode("utf-8")
                )
            return result + (None,) if texts else result
        finally:
            _CURRENT.reset(token)

    def _trigger(self):
        """The function's HTTP trigger, on which a call through the proxy would arrive (the
        first task's context's, once the tasks have one, is looked up once)."""
        trigger = self._http_trigger
        if trigger is not None:
            return trigger
        task = next(iter(self.tasks.values()), None)
        if task is None or task.context is None:
            return nuclio_sdk.TriggerInfo(_HTTP, _contract.DEFAULT_HTTP_TRIGGER)
        trigger = task.context.trigger
        if trigger is None or trigger.kind != _HTTP:
            trigger = nuclio_sdk.TriggerInfo(_HTTP, _contract.DEFAULT_HTTP_TRIGGER)
        self._http_trigger = trigger
        return trigger

    def _call_sibling(self, caller, callee, method, body, pairs):
        """Run `callee` on the request (method, header pairs, body) `caller` sent to `/<callee>`,
        with the event Nuclio's HTTP trigger would build from what the proxy forwards
        (`_codec.forwarded_headers`): path `/<callee>`, no fields, the same method."""
        proxy = self._proxy()
        headers = _codec.forwarded_headers(pairs, self._proxy_headers(caller, callee, proxy), len(body))
        event = _codec.new_event(
            body, headers.get("Content-Type", ""), headers, method, "/" + callee, {}, self._trigger()
        )
        return self._run_traced(caller, callee, event, proxy, pairs, len(body))

    # ----------------------------------------------------------------- traced and async calls

    def _run_traced(self, caller, callee, event, proxy, pairs, request_size):
        """`_run_task`, recorded for the proxy; with `Prefer: respond-async`, deferred instead
        (answered 202, or 503 when too many wait)."""
        started = time.perf_counter()
        if _trace.prefers_async(pairs):
            result = self._defer(caller, callee, event, proxy)
            mode, size = "a", request_size
        else:
            result = self._run_task(callee, event, proxy)
            mode, size = "s", request_size + len(result[3])
        micros = int((time.perf_counter() - started) * 1e6)
        if not _trace.record(self.trace, caller, callee, mode, result[0], micros, size):
            self.trace_more += 1
        return result

    def _defer(self, caller, callee, event, proxy):
        """Queue `callee` on `event` to run later (`run_deferred`, or the helper thread)."""
        job = (caller, callee, event, proxy)
        if self.defer_after_response:
            if len(self.deferred) >= MAX_DEFERRED:
                return self._queue_full()
            self.deferred.append(job)
        else:
            if self._deferred_thread is None:
                self._deferred_thread = _DeferredThread(self)
            if not self._deferred_thread.put(job):
                return self._queue_full()
        headers = {_contract.HEADER_PREFERENCE_APPLIED: _contract.PREFER_RESPOND_ASYNC}
        return 202, "text/plain", headers, _ACCEPTED_BODY

    def _queue_full(self):
        return 503, "text/plain", {"Retry-After": "1"}, _QUEUE_FULL_BODY

    def run_deferred(self):
        """Run the in-process asynchronous calls the last event made, in order (the local worker
        calls this once it has answered the event)."""
        while self.deferred:
            self._run_deferred(self.deferred.popleft())

    def _run_deferred(self, job):
        caller, callee, event, proxy = job
        status = self._run_task(callee, event, proxy)[0]
        if status >= 500:
            task = self.tasks[callee]
            if task.context is not None:
                task.context.logger.error_with(
                    "asynchronous call failed", caller=caller, status=status
                )

    def _call_function_in_process(self, caller, callee, event, node, timeout):
        self.calls[_LOCAL] += 1
        request = _codec.call_request(callee, event)
        if request is None:
            # anything unusual: the SDK's own code builds the request, raising its errors
            answer = functools.partial(self._answer_in_process, caller, callee)
            return self._sdk_call(
                callee, event, node, timeout,
                functools.partial(_codec.InProcessConnection, answer=answer),
            )
        method, body, pairs, text = request
        frame = _CURRENT.get() or self._top  # `_proxy()`, inlined on this path
        proxy = frame.proxy if frame is not None else self._env_proxy()
        size = len(body)
        key = (caller, callee, proxy, pairs, size)
        plan = self._call_plans.get(key)
        if plan is None:
            plan = self._call_plan(caller, callee, proxy, pairs, size)
            if len(self._call_plans) >= _MAX_PLANS:
                self._call_plans.clear()
            self._call_plans[key] = plan
        headers, content_type, path, frame, deferred = plan
        event = _new_event(
            body, content_type, headers.copy(), method, path, {},
            self._http_trigger or self._trigger(), text,
        )
        if deferred:
            status, content_type, headers, out = self._run_traced(
                caller, callee, event, proxy, pairs, size
            )
            return _codec.sdk_response(status, _codec.wire_headers(content_type, headers, out), out)
        started = _perf_counter()
        status, content_type, headers, out, out_text = self._run_task(callee, event, proxy, frame)
        micros = int((_perf_counter() - started) * 1e6)
        trace = self.trace  # `_trace.record`, inlined on this path
        if len(trace) < _MAX_RECORDS:
            trace.append((caller, callee, "s", status, micros, size + len(out)))
        else:
            self.trace_more += 1
        if headers:
            return _codec.sdk_response(
                status, _codec.wire_headers(content_type, headers, out), out, out_text
            )
        return _plain_sdk_response(status, content_type, out, out_text)

    def _call_plan(self, caller, callee, proxy, pairs, size):
        """What every in-process call of `caller` to `callee` through `proxy` with these request
        header pairs and body size shares: (the callee's event headers, to copy; its content
        type; its path; the frame it runs in; whether the call is asynchronous)."""
        headers = _codec.forwarded_headers(pairs, self._proxy_headers(caller, callee, proxy), size)
        return (
            headers, headers.get("Content-Type", ""), "/" + callee, _Frame(callee, proxy),
            _trace.prefers_async(pairs),
        )

    def _answer_in_process(self, caller, callee, method, pairs, body):
        if not _codec.parses(method, pairs):
            return _codec.BAD_REQUEST
        status, content_type, headers, out = self._call_sibling(caller, callee, method, body, pairs)
        return status, _codec.wire_headers(content_type, headers, out), out

    def _call_function_via_proxy(self, caller, callee, event, node, proxy, timeout):
        self.calls[_REMOTE] += 1

        traceparent = self.traceparent

        def connect(url, timeout=None):
            return _codec.ProxyConnection(proxy[0], proxy[1], timeout, callee, caller, traceparent)

        return self._sdk_call(callee, event, node, timeout, connect)

    def _sdk_call(self, function_name, event, node, timeout, connect):
        """`nuclio_sdk.Platform.call_function` itself, on a copy of the event's headers, over
        the connection `connect(url, timeout=...)` returns (the SDK's `connection_provider`)."""
        platform = nuclio_sdk.Platform("local", connection_provider=connect)
        return platform.call_function(function_name, _CallEvent(event), node, timeout)

    def _requests_in_process(self, adapter, caller, callee, request, parts, text=None):
        """Run `callee` on a prepared `requests` request to `/<callee>` through the proxy, and
        answer with the `requests.Response` the call over HTTP gets. `text`, when given, is the
        body as JSON text (from `json=`), decoded for the callee without the bytes."""
        self.calls[_LOCAL] += 1
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes):
            body = body.read() if hasattr(body, "read") else b"".join(
                chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in body
            )
        proxy = self._proxy()
        _session = _requests_support()
        pairs = _session.header_pairs(request.headers)
        size = len(body)
        key = (caller, callee, request.method, proxy, pairs, size)
        plan = self._request_plans.get(key)
        if plan is None:
            plan = self._request_plan(caller, callee, request.method, proxy, pairs, size)
            if len(self._request_plans) >= _MAX_PLANS:
                self._request_plans.clear()
            self._request_plans[key] = plan
        if plan is _UNPARSABLE:
            status, out_headers, out_body = _codec.BAD_REQUEST
            return self._requests_response(adapter, request, status, out_headers, out_body)
        headers, content_type, frame, deferred = plan
        query = parts.query
        fields = {}
        if query:
            # fasthttp's query arguments: `+` is a space, the last of a repeated name wins
            fields = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        event = _codec.new_event(
            body, content_type, headers.copy(), request.method,
            _codec.nuclio_path(parts.path or "/"), fields, self._trigger(), text,
        )
        if deferred:
            status, content_type, out_headers, out_body = self._run_traced(
                caller, callee, event, proxy, pairs, size
            )
        else:
            started = _perf_counter()
            status, content_type, out_headers, out_body, _ = self._run_task(
                callee, event, proxy, frame
            )
            micros = int((_perf_counter() - started) * 1e6)
            if not _trace.record(self.trace, caller, callee, "s", status, micros, size + len(out_body)):
                self.trace_more += 1
        return self._requests_response(
            adapter, request, status, _codec.wire_headers(content_type, out_headers, out_body),
            out_body,
        )

    def _request_plan(self, caller, callee, method, proxy, pairs, size):
        """`_call_plan` for a `requests` call (the request method and header pairs as sent), or
        `_UNPARSABLE` when the proxy's HTTP server would refuse the request."""
        if not _codec.parses(method, pairs):
            return _UNPARSABLE
        return self._call_plan(caller, callee, proxy, pairs, size)[:2] + (
            _Frame(callee, proxy), _trace.prefers_async(pairs),
        )

    def _requests_response(self, adapter, request, status, headers, out_body):
        _session = _requests_support()
        response = _session.new_response()
        response.status_code = status
        response.headers = _session.case_insensitive_dict(headers)
        response._content = out_body
        response._content_consumed = True
        response.encoding = _session.encoding_of(response.headers)
        response.reason = http.client.responses.get(status, "")
        response.url = request.url
        response.request = request
        response.connection = adapter
        return response

    # ----------------------------------------------------------------- async support

    def run_coroutine(self, coroutine):
        """Run a coroutine to completion from synchronous code.

        Outside a running loop it runs on this dispatcher's own loop (`self.loop`, which the
        local worker also uses for async handlers and init_context). Inside a running loop (a
        sync handler called by an asyncio-based wrapper calling an async sibling) it cannot be
        awaited without blocking that loop, so it runs on a helper thread's loop and the caller
        blocks, exactly as `call_function`'s HTTP request would; objects bound to the caller's
        loop cannot be used by that callee.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self.loop is None or self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
            return self.loop.run_until_complete(coroutine)
        if self._async_runner is None:
            self._async_runner = _LoopThread()
        return self._async_runner.run(coroutine)

    def _set_signal_callback(self, kind, task, callback):
        """Record `task`'s termination or drain callback (a falsy one clears it, as the SDK's
        slot does, `nuclio_sdk/platform.py`) and put `signal_callback(kind)` in the real
        platform's slot, or clear the slot when no task has one."""
        callbacks = self._signal_callbacks[kind]
        if callback:
            callbacks[task] = callback
        else:
            callbacks.pop(task, None)
        platform = self._root_platform()
        if platform is None:
            return
        runner = self.signal_callback(kind) if callbacks else None
        if kind == "termination":
            platform.set_termination_callback(runner)
        else:
            platform.set_drain_callback(runner)

    def signal_callback(self, kind):
        """The one callback the platform calls on `kind` ("termination" or "drain").

        Nuclio's wrapper calls `platform._on_signal(kind)` once per signal and awaits what it
        returns when that is a coroutine (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`,
        `_call_termination_handler`, `serve_requests`). This runs every task's callback in task
        order, each as that task's code (its logs are tagged with it); when one returns a
        coroutine, it returns a coroutine that awaits it, then runs and awaits the rest in turn.
        Every callback runs even when one raises; the first exception is raised at the end.
        """
        callbacks = self._signal_callbacks[kind]

        def run_all():
            names = sorted(callbacks)
            errors = []
            for index, name in enumerate(names):
                result = self._run_signal_callback(name, callbacks[name], errors)
                if asyncio.iscoroutine(result):
                    return self._finish_signal_callbacks(result, names[index + 1:], callbacks, errors)
            if errors:
                raise errors[0]
            return None

        return run_all

    def _run_signal_callback(self, name, callback, errors):
        token = _CURRENT.set(_Frame(name, None))
        try:
            result = callback()
        except Exception as exc:
            errors.append(exc)
            return None
        finally:
            _CURRENT.reset(token)
        if asyncio.iscoroutine(result):
            return _in_frame(result, _Frame(name, None))
        return result

    async def _finish_signal_callbacks(self, pending, names, callbacks, errors):
        try:
            await pending
        except Exception as exc:
            errors.append(exc)
        for name in names:
            result = self._run_signal_callback(name, callbacks[name], errors)
            if asyncio.iscoroutine(result):
                try:
                    await result
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def _root_platform(self):
        for task in self.tasks.values():
            if task.context is not None:
                return task.context.platform._platform
        return None


_SESSION_MODULE = []


def _text(value):
    """An event string as text: the wrapper hands bytes when event strings are not decoded."""
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _trigger_of(event, context):
    """(kind, name) of the trigger `event` came from: its own, else the context's."""
    for info in (getattr(event, "trigger", None), getattr(context, "trigger", None)):
        kind = _text(getattr(info, "kind", None))
        if kind:
            return kind, _text(getattr(info, "name", None))
    return "", ""


def _require_requests(task):
    """Fail the load of a requests_session-style task whose function lacks `requests`.

    Neither Nuclio's Python image (its wrapper installs nuclio-sdk and msgpack only) nor the local
    platform has `requests`: the task installs it in its own build commands. Without it the task
    would load and then fail on its first event; this says so at deploy instead.
    """
    if importlib.util.find_spec("requests") is None:
        raise TaskError(
            task,
            "task `{0}` takes a `requests_session` (its handler has three arguments) but "
            "`requests` is not installed in its function: add `pip install requests` to the "
            "task's build commands (`spec.build.commands` in its function.yaml)".format(task))


def _requests_support():
    """The `_session` module, imported on first use (it imports `requests`)."""
    if not _SESSION_MODULE:
        from . import _session

        _SESSION_MODULE.append(_session)
    return _SESSION_MODULE[0]


async def _in_frame(awaitable, frame):
    token = _CURRENT.set(frame)
    try:
        return await awaitable
    finally:
        _CURRENT.reset(token)


async def _named_init(name, awaitable, directory):
    try:
        return await awaitable
    except Exception as exc:
        raise _failed(name, "`init_context` failed: {0}".format(located(exc, directory))) from exc


class _DeferredThread(object):
    """A daemon thread running a dispatcher's in-process asynchronous calls, one at a time,
    from a queue of at most `MAX_DEFERRED` (Nuclio, where no hook runs after the answer).

    The callee then runs beside the worker's current event, on this thread: task code that
    keeps unguarded module state shared between tasks must expect that.
    """

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        self._queue = queue.Queue(MAX_DEFERRED)
        thread = threading.Thread(target=self._run, name="fusionizer-deferred", daemon=True)
        thread.start()

    def put(self, job):
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _run(self):
        while True:
            job = self._queue.get()
            try:
                self._dispatcher._run_deferred(job)
            except Exception:
                pass  # `_run_task` already logged it through the callee's logger


class _LoopThread(object):
    """A daemon thread running an event loop, for coroutines started inside a running loop."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._loop.run_forever, name="fusionizer-async", daemon=True)
        thread.start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
