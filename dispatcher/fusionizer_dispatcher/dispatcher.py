"""The dispatcher: one fused Nuclio function serving several tasks.

Nuclio's wrapper (or our local worker) imports the generated `_fusionizer_entry` module, calls
`init_context(context)` once per worker and `handler(context, event)` per event. The dispatcher
routes each event by its `Task-Name` header to the task's own handler with the task's own
`nuclio_sdk.Context`, and turns calls between tasks of this group into plain function calls that
keep the exact semantics of the HTTP call they replace (see `_codec`).
"""

import asyncio
import contextvars
import http.client
import inspect
import logging
import os
import re
import sys
import threading
import urllib.parse

import nuclio_sdk

from . import _codec, _imports

_HANDLER_RE = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")
_PLAIN_OUTPUTS = _codec.PLAIN_OUTPUTS
_DEFAULT_PROXY_PORT = 8000


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
    """A task failed to load or to initialise; `task` names it."""

    def __init__(self, task, message):
        super(TaskError, self).__init__(message)
        self.task = task


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


class _PlatformProxy(object):
    """`context.platform` of a task: `call_function` to a sibling runs in-process.

    Everything else is the real platform's; termination/drain callbacks are kept per task and
    all run when the platform signals (Nuclio has a single slot for each).
    """

    def __init__(self, dispatcher, task, platform):
        self._dispatcher = dispatcher
        self._task = task
        self._platform = platform

    def call_function(self, function_name, event, node=None, timeout=None, service_name_override=None):
        dispatcher = self._dispatcher
        if service_name_override is None and function_name in dispatcher.tasks:
            status, content_type, headers, body = dispatcher._call_function_in_process(
                self._task, function_name, event
            )
            return _codec.sdk_response(status, _codec.wire_headers(content_type, headers, body), body)
        proxy = dispatcher._proxy()
        if proxy is not None and service_name_override is None:
            return dispatcher._call_function_via_proxy(self._task, function_name, event, proxy, timeout)
        dispatcher.calls["remote"] += 1
        return self._platform.call_function(
            function_name, event, node=node, timeout=timeout,
            service_name_override=service_name_override,
        )

    def set_termination_callback(self, callback):
        self._dispatcher._set_signal_callback("termination", self._task, callback)

    def set_drain_callback(self, callback):
        self._dispatcher._set_signal_callback("drain", self._task, callback)

    def __getattr__(self, name):
        return getattr(self._platform, name)


class _Task(object):
    __slots__ = (
        "name", "handler", "init", "wants_session", "context", "session", "package",
    )


def _positional_arity(function):
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds)


class Dispatcher(object):
    """Serves the tasks of one fused function; see the module docstring.

    `handler` and `init_context` are plain functions whose `__module__` is the module that
    created the dispatcher (the generated entry), because Nuclio looks `init_context` up on
    `sys.modules[handler.__module__]`. `init_context` is `async` when some task's is.
    """

    def __init__(self, function, tasks, root, module=None):
        self.function = function
        self.tasks = {}
        self.root = root
        self.calls = {"local": 0, "remote": 0}
        self.last_task = None
        self.loop = None
        self._signal_callbacks = {"termination": {}, "drain": {}}
        self._top = None
        self._env_proxy_cache = (None, None)
        self._url_targets = {}
        self._async_runner = None
        module = module or sys._getframe(1).f_globals.get("__name__", __name__)
        self._load(tasks)

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
            try:
                module = _imports.import_task_module(packages[name], module_name)
                entrypoint = getattr(module, attribute)
            except Exception as exc:
                raise TaskError(
                    name, "task `{0}`: cannot load handler `{1}`: {2}".format(name, spec, exc)
                ) from exc
            finally:
                _CURRENT.reset(token)
            task = _Task()
            task.name = name
            task.handler = entrypoint
            task.package = packages[name]
            # like Nuclio: init_context is looked up on the handler's own module
            home = sys.modules.get(getattr(entrypoint, "__module__", None), module)
            task.init = getattr(home, "init_context", None)
            task.wants_session = _positional_arity(entrypoint) >= 3
            task.context = None
            task.session = None
            self.tasks[name] = task

    def _init_tasks(self, context):
        """Build each task's Context and run its init_context; yields coroutines to await."""
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
                raise TaskError(
                    name, "task `{0}`: init_context failed: {1}".format(name, exc)
                ) from exc
            finally:
                _CURRENT.reset(token)
            if result is not None and inspect.isawaitable(result):
                yield _named_init(name, result)

    # ----------------------------------------------------------------- routing

    def _handle(self, context, event):
        self.calls = {"local": 0, "remote": 0}
        self.last_task = None
        headers = event.headers
        name = headers.get("Task-Name") if headers else None
        if name is None:
            name = event.get_header("Task-Name")
        if not name:
            return nuclio_sdk.Response(
                body="missing header `Task-Name`: function `{0}` serves tasks {1}\n".format(
                    self.function, self._task_list()
                ),
                content_type="text/plain",
                status_code=400,
            )
        task = self.tasks.get(name)
        if task is None:
            return nuclio_sdk.Response(
                body="task `{0}` is not in function `{1}`, which serves tasks {2}\n".format(
                    name, self.function, self._task_list()
                ),
                content_type="text/plain",
                status_code=404,
            )
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
        url = os.environ.get("FUSIONIZER_PROXY_URL")
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
            return (("X-Fusionizer-Caller", caller), ("Task-Name", callee))
        return (
            ("X-Fusionizer-Caller", caller), ("Task-Name", callee),
            ("Fusionizer-Server-Address", proxy[0]), ("Fusionizer-Server-Port", str(proxy[1])),
        )

    # ----------------------------------------------------------------- in-process calls

    def _run_task(self, callee, event, proxy):
        """Run a sibling's handler on `event` and encode its result as Nuclio would."""
        task = self.tasks[callee]
        frame = _Frame(callee, proxy)
        token = _CURRENT.set(frame)
        try:
            if task.wants_session:
                output = task.handler(task.context, event, self._session(task))
            else:
                output = task.handler(task.context, event)
            if type(output) not in _PLAIN_OUTPUTS and inspect.isawaitable(output):
                output = self.run_coroutine(_in_frame(output, frame))
            return _codec.encode_output(output)
        except Exception as exc:
            result = _codec.error_output(exc)
            if task.context is not None:
                task.context.logger.error_with(
                    "Exception caught in handler", exc=str(exc), traceback=result[3].decode("utf-8")
                )
            return result
        finally:
            _CURRENT.reset(token)

    def _trigger(self):
        task = next(iter(self.tasks.values()), None)
        trigger = task.context.trigger if task is not None and task.context is not None else None
        if trigger is not None and trigger.kind == "http":
            return trigger
        return nuclio_sdk.TriggerInfo("http", "default-http")

    def _call_function_in_process(self, caller, callee, event):
        self.calls["local"] += 1
        body, content_type, target = _codec.call_function_body(callee, event)
        proxy = self._proxy()
        headers = _codec.call_function_headers(
            event.headers, content_type, target, len(body),
            self._proxy_headers(caller, callee, proxy),
        )
        callee_event = _codec.new_event(
            body, content_type, headers, event.method or "POST", event.path or "/",
            dict(event.fields or {}), self._trigger(),
        )
        return self._run_task(callee, callee_event, proxy)

    def _call_function_via_proxy(self, caller, callee, event, proxy, timeout):
        self.calls["remote"] += 1
        body, _, headers = _codec.call_function_request(callee, event)
        _codec.set_header(headers, "X-Fusionizer-Caller", caller)
        connection = http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout)
        try:
            connection.request(
                event.method or "POST", "/" + urllib.parse.quote(callee), body=body, headers=headers
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return _codec.sdk_response(response.status, dict(response.getheaders()), data)

    def _requests_in_process(self, adapter, caller, callee, request, parts):
        self.calls["local"] += 1
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
        headers = _codec.requests_headers(
            _session.header_items(request.headers), parts.netloc, len(body),
            self._proxy_headers(caller, callee, proxy),
        )
        content_type = headers.get("Content-Type", "")
        fields = {}
        if parts.query:
            fields = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        event = _codec.new_event(
            body, content_type, headers, request.method, parts.path or "/", fields, self._trigger()
        )
        status, content_type, out_headers, out_body = self._run_task(callee, event, proxy)
        response = _session.requests.Response()
        response.status_code = status
        response.headers = _session.case_insensitive_dict(
            _codec.wire_headers(content_type, out_headers, out_body)
        )
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
        callbacks = self._signal_callbacks[kind]
        callbacks[task] = callback
        platform = self._root_platform()
        if platform is None:
            return
        def run_all():
            for name in sorted(callbacks):
                callbacks[name]()
        if kind == "termination":
            platform.set_termination_callback(run_all)
        else:
            platform.set_drain_callback(run_all)

    def _root_platform(self):
        for task in self.tasks.values():
            if task.context is not None:
                return task.context.platform._platform
        return None


_SESSION_MODULE = []


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


async def _named_init(name, awaitable):
    try:
        return await awaitable
    except Exception as exc:
        raise TaskError(name, "task `{0}`: init_context failed: {1}".format(name, exc)) from exc


class _LoopThread(object):
    """A daemon thread running an event loop, for coroutines started inside a running loop."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._loop.run_forever, name="fusionizer-async", daemon=True)
        thread.start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
