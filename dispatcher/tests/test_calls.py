"""`call_function` between tasks: the SDK's signature and errors, the callee's event equal to the
one it gets through the proxy, and the caller's event never changed."""

import collections
import http.client
import http.server
import json
import os
import shutil
import socket
import tempfile
import threading
import unittest.mock
import urllib.parse

import nuclio_sdk

from fusionizer_dispatcher import Dispatcher, _codec

from .support import ArtifactTestCase, closed_port, root_context, write_artifact

ECHO = {"main.py": """
    def handler(context, event):
        body = event.body
        if isinstance(body, bytes):
            body = {"bytes": body.decode("latin-1")}
        return {"method": event.method, "path": event.path, "fields": event.fields,
                "headers": event.headers, "content_type": event.content_type, "body": body,
                "size": event.size}
"""}

CALLER = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        before = dict(event.headers)
        response = context.platform.call_function("callee", event)
        return {"unchanged": event.headers == before, "answer": response.body}
"""}


class _SocketPairConnection(http.client.HTTPConnection):
    """http.client on one end of a socketpair: the SDK's own call on a real socket, no network."""

    peers = []

    def connect(self):
        self.sock, peer = socket.socketpair()
        self.sock.settimeout(10)
        _SocketPairConnection.peers.append(peer)


def sdk_error(args, kwargs):
    """What the real `nuclio_sdk.Platform.call_function` raises for these arguments."""
    platform = nuclio_sdk.Platform("local", connection_provider=_SocketPairConnection)
    try:
        platform.call_function(*args, **kwargs)
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("the SDK accepted {0!r} {1!r}".format(args, kwargs))


def post(**kw):
    kw.setdefault("method", "POST")
    return nuclio_sdk.Event(**kw)


def headers_none():
    event = post(body=b"x")
    event.headers = None
    return event


# Mistakes the SDK refuses; each (args, kwargs) is built anew for every call, as the SDK writes
# into the event it is given.
MISTAKES = {
    "no event": lambda: (("callee",), {}),
    "unknown keyword": lambda: (("callee", post(body=b"x")), {"timeout_s": 3}),
    "too many arguments": lambda: (("callee", post(body=b"x"), None, None, None, "extra"), {}),
    "event given as a dict": lambda: (("callee", {"x": 1}), {}),
    "event without a method": lambda: (("callee", nuclio_sdk.Event(body={"x": 1})), {}),
    "method with a control character": lambda: (("callee", post(body=b"x", method="GET\n")), {}),
    "path with a space": lambda: (("callee", post(body=b"x", path="/a b")), {}),
    "non-ASCII path": lambda: (("callee", post(body=b"x", path="/caf\u00e9")), {}),
    "str body that is not Latin-1": lambda: (("callee", post(body="\u20ac")), {}),
    "int body": lambda: (("callee", post(body=5)), {}),
    "list body": lambda: (("callee", post(body=[1, 2])), {}),
    "body JSON cannot encode": lambda: (("callee", post(body={"x": object()})), {}),
    "non-ASCII header name": lambda: (("callee", post(body=b"x", headers={"X-\u00e9": "v"})), {}),
    "header value with a newline": lambda: (("callee", post(body=b"x", headers={"X-A": "a\r\nb"})), {}),
    "float header value": lambda: (("callee", post(body=b"x", headers={"X-A": 1.5})), {}),
    "header value not Latin-1": lambda: (("callee", post(body=b"x", headers={"X-A": "\u20ac"})), {}),
    "content type not a string": lambda: (("callee", post(body=b"x", content_type=2.5)), {}),
    "headers set to None": lambda: (("callee", headers_none()), {}),
}


class _Sink(object):
    """A loopback server that reads what it gets until the client closes (for refused calls)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.address = self.server.getsockname()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                try:
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass

    def close(self):
        self.server.close()


class SignatureAndErrorsTest(ArtifactTestCase):
    """Item 12: a missing or wrong argument raises what `nuclio_sdk.Platform.call_function` raises."""

    def setUp(self):
        super(SignatureAndErrorsTest, self).setUp()
        self.addCleanup(self._close_peers)

    def _close_peers(self):
        while _SocketPairConnection.peers:
            _SocketPairConnection.peers.pop().close()

    def check(self, platform):
        for label, build in MISTAKES.items():
            with self.subTest(label):
                expected = sdk_error(*build())
                args, kwargs = build()
                with self.assertRaises(Exception) as caught:
                    platform.call_function(*args, **kwargs)
                self.assertEqual((type(caught.exception), str(caught.exception)), expected)

    def test_in_process_call_raises_the_sdks_errors(self):
        dispatcher = self.load({"caller": ECHO, "callee": ECHO})
        self.check(dispatcher.tasks["caller"].context.platform)
        self.assertEqual(dispatcher.calls["remote"], 0)

    def test_call_through_the_proxy_raises_the_sdks_errors(self):
        sink = _Sink()
        self.addCleanup(sink.close)
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % sink.address[1]
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        dispatcher = self.load({"caller": ECHO})
        self.check(dispatcher.tasks["caller"].context.platform)

    def test_signature_is_the_sdks(self):
        import inspect
        dispatcher = self.load({"caller": ECHO})
        ours = inspect.signature(dispatcher.tasks["caller"].context.platform.call_function)
        theirs = inspect.signature(nuclio_sdk.Platform("local").call_function)
        self.assertEqual(ours, theirs)


class _NuclioBehindProxy(object):
    """A loopback server playing fusionizer's proxy in front of a function's HTTP trigger, written
    from their sources: `src/serve/http/mod.rs` (`invoke`, `forwardable`: hop-by-hop headers, `host`,
    `content-length` and its own routing headers are not forwarded, nor values that are not
    visible ASCII; `Task-Name` and the proxy's address and port are added) and Nuclio's
    `pkg/processor/trigger/http/event.go` (every header of the request, names as fasthttp
    normalises them, the last of a repeated name winning; `Content-Length` when the forwarded
    body is not empty; `Content-Type`/`User-Agent` left out when empty; the decoded path; the
    query as fields). It answers with the event the task's handler would get, as `ECHO` does."""

    NOT_FORWARDED = {
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "task-name",
        "fusionizer-server-address", "fusionizer-server-port",
    }

    def __init__(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                answer = json.dumps(owner.event(self)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = self.server.server_address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _body(request):
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(request.rfile.readline().strip(), 16)
                if size == 0:
                    request.rfile.readline()
                    return b"".join(chunks)
                chunks.append(request.rfile.read(size))
                request.rfile.readline()
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    @staticmethod
    def _fasthttp_name(name):
        out = []
        upper = True
        for char in name:
            out.append(char.upper() if upper else char.lower())
            upper = char == "-"
        return "".join(out)

    def event(self, request):
        body = self._body(request)
        path, _, query = request.path.partition("?")
        task = urllib.parse.unquote(path.lstrip("/").split("/")[0])
        forwarded = [
            (name, value.strip(" \t")) for name, value in request.headers.items()
            if name.lower() not in self.NOT_FORWARDED
            and all(char == "\t" or " " <= char <= "~" for char in value)
        ]
        forwarded += [("task-name", task), ("fusionizer-server-address", self.address[0]),
                      ("fusionizer-server-port", str(self.address[1]))]
        headers = {}
        for name, value in forwarded:
            headers[self._fasthttp_name(name)] = value
        if body:
            headers["Content-Length"] = str(len(body))
        for name in ("Content-Type", "User-Agent"):
            if headers.get(name) == "":
                del headers[name]
        content_type = headers.get("Content-Type", "")
        decoded = json.loads(body) if content_type == "application/json" else {"bytes": body.decode("latin-1")}
        return {"method": request.command, "path": urllib.parse.unquote(path),
                "fields": dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
                "headers": headers, "content_type": content_type, "body": decoded, "size": len(body)}


# Events a task sends with call_function; all of them valid for the SDK.
SENT = collections.OrderedDict((
    ("dict body", lambda: post(body={"a": [1, "\u00e9"], "n": None})),
    ("bytes body with its content type", lambda: post(body=b"\x00\xff", method="PUT",
                                                      content_type="application/octet-stream")),
    ("Latin-1 str body", lambda: post(body="caf\u00e9")),
    ("JSON bytes body", lambda: post(body=b'{"a": 1}', content_type="application/json")),
    ("GET without a body", lambda: post(body=None, method="GET")),
    ("POST without a body", lambda: post(body=None)),
    ("empty body", lambda: post(body=b"", method="DELETE")),
    ("path and query stay with the caller", lambda: post(body=b"x", path="/sub/path?a=1&b=2")),
    ("content type in another case", lambda: post(body=b"x", headers={"content-type": "text/x"})),
    ("empty content type", lambda: post(body=b"x", content_type="")),
    ("headers", lambda: post(body=b"x", method="PATCH", headers={
        "x-lower": "v", "X-Dup": "first", "x-dup": "second", "X-Spaces": "  padded  ",
        "X-Tab": "a\tb", "Task-Name": "spoofed",
        "X-Fusionizer-Caller": "spoofed", "Fusionizer-Server-Port": "1", "Connection": "close",
        "Keep-Alive": "timeout=5", "Upgrade": "h2c", "Te": "trailers", "Accept-Encoding": "gzip",
        "X-Nuclio-Target": "elsewhere", "User-Agent": "", "Host": "example.invalid",
        "Content-Length": "999", "X-Empty": "",
    })),
))

# Valid events only the SDK's own code path (not the direct one) takes.
SENT_SLOW = collections.OrderedDict((
    ("bytearray body", lambda: post(body=bytearray(b"ba"))),
    ("memoryview body", lambda: post(body=memoryview(b"mv"))),
    ("chunked list body", lambda: post(body=[b"ch", b"", b"unks"])),
    ("OrderedDict body", lambda: post(body=collections.OrderedDict(z=1, a=2))),
    ("Event subclass", lambda: type("MyEvent", (nuclio_sdk.Event,), {})(body=b"sub", method="POST")),
    ("bytes header value", lambda: post(body=b"x", headers={"X-B": b"raw"})),
    ("non-ASCII header value", lambda: post(body=b"x", headers={"X-Latin": "caf\u00e9", "X-A": "a"})),
    ("int header value", lambda: post(body=b"x", headers={"X-N": 5})),
))


class CalleeEventTest(unittest.TestCase):
    """Item 13: the callee's event in-process equals the one it gets through the proxy."""

    def setUp(self):
        saved = os.environ.pop("FUSIONIZER_PROXY_URL", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "FUSIONIZER_PROXY_URL", saved)
        self.nuclio = _NuclioBehindProxy()
        self.addCleanup(self.nuclio.close)
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % self.nuclio.address[1]
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        self.fused = self._dispatcher({"caller": CALLER, "callee": ECHO})
        self.alone = self._dispatcher({"caller": CALLER})

    def _dispatcher(self, tasks):
        root = tempfile.mkdtemp(prefix="fz-calls-")
        self.addCleanup(shutil.rmtree, root, True)
        write_artifact(root, tasks)
        dispatcher = Dispatcher(function="fn", tasks={name: "main:handler" for name in tasks}, root=root)
        context, _ = root_context()
        dispatcher.init_context(context)
        return dispatcher

    def call(self, dispatcher, event):
        dispatcher.calls = {"local": 0, "remote": 0}
        response = dispatcher.tasks["caller"].context.platform.call_function("callee", event)
        self.assertEqual(response.status_code, 200, response.body)
        local = dispatcher is self.fused
        self.assertEqual(dispatcher.calls, {"local": int(local), "remote": int(not local)})
        return response.body

    def compare(self, cases, path):
        """In-process vs through the proxy, the in-process call taking `path`: "direct" (computed
        by `_codec.call_request`), "sdk" (the SDK's own code; "forced-sdk" forces it)."""
        for label, build in cases.items():
            with self.subTest(label):
                through_proxy = self.call(self.alone, build())
                direct = _codec.call_request("callee", build())
                if path == "direct":
                    self.assertIsNotNone(direct, "not the direct path")
                elif path == "sdk":
                    self.assertIsNone(direct, "not the SDK's path")
                if path == "forced-sdk":
                    spy = unittest.mock.patch.object(_codec, "call_request", return_value=None)
                else:
                    spy = unittest.mock.patch.object(_codec, "call_request", wraps=_codec.call_request)
                with spy as called:
                    in_process = self.call(self.fused, build())
                self.assertEqual(called.call_count, 1)
                self.assertEqual(in_process, through_proxy)

    def test_direct_path_gives_the_event_the_proxy_gives(self):
        self.compare(SENT, "direct")

    def test_sdk_path_gives_the_event_the_proxy_gives(self):
        self.compare(SENT, "forced-sdk")
        self.compare(SENT_SLOW, "sdk")

    def test_what_the_callee_sees(self):
        seen = self.call(self.fused, SENT["headers"]())
        headers = seen["headers"]
        port = str(self.nuclio.address[1])
        self.assertEqual((seen["method"], seen["path"], seen["fields"]), ("PATCH", "/callee", {}))
        self.assertEqual(headers, {
            "Accept-Encoding": "gzip", "X-Lower": "v", "X-Dup": "second", "X-Spaces": "padded",
            "X-Tab": "a\tb", "X-Nuclio-Target": "elsewhere", "Content-Type": "text/plain",
            "X-Empty": "", "X-Fusionizer-Caller": "caller", "Task-Name": "callee",
            "Fusionizer-Server-Address": "127.0.0.1", "Fusionizer-Server-Port": port,
            "Content-Length": "1",
        })
        seen = self.call(self.fused, SENT["GET without a body"]())
        self.assertEqual(seen["headers"]["Accept-Encoding"], "identity")
        self.assertNotIn("Content-Length", seen["headers"])
        self.assertEqual((seen["content_type"], seen["body"], seen["size"]), ("text/plain", {"bytes": ""}, 0))


class UnparsableRequestTest(ArtifactTestCase):
    """What http.client sends but the proxy's HTTP server (hyper/httparse) refuses is its 400."""

    def test_bad_request(self):
        dispatcher = self.load({"caller": ECHO, "callee": ECHO})
        platform = dispatcher.tasks["caller"].context.platform
        for ev in (post(body=b"x", headers={"Bad Name": "v"}), post(body=b"x", method="PO ST"),
                   post(body=b"x", headers={"X-A": "a\x01b"})):
            response = platform.call_function("callee", ev)
            self.assertEqual((response.status_code, response.body), (400, b""))
        self.assertEqual(platform.call_function("callee", post(body=b"x")).status_code, 200)
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % closed_port()
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        session = dispatcher._session(dispatcher.tasks["caller"])
        reply = session.post(os.environ["FUSIONIZER_PROXY_URL"] + "/callee", data=b"x",
                             headers={"Bad Name": "v"})
        self.assertEqual((reply.status_code, reply.content), (400, b""))


class CallerEventUntouchedTest(ArtifactTestCase):
    """Item 13: the caller's `event.headers` are never changed, whichever way the call goes."""

    def event(self, body=b"x"):
        headers = {"X-A": "1", "Content-Length": "1", "X-Nuclio-Target": "t"}
        ev = nuclio_sdk.Event(body=body, method="POST", headers=headers)
        return ev, headers, dict(headers)

    def assert_untouched(self, ev, headers, before):
        self.assertIs(ev.headers, headers)
        self.assertEqual(ev.headers, before)

    def test_in_process_both_paths(self):
        dispatcher = self.load({"caller": ECHO, "callee": ECHO})
        platform = dispatcher.tasks["caller"].context.platform
        for body in (b"x", bytearray(b"x")):  # the direct path, the SDK's path
            ev, headers, before = self.event(body)
            self.assertEqual(platform.call_function("callee", ev).status_code, 200)
            self.assert_untouched(ev, headers, before)

    def test_the_callers_own_event_passed_on(self):
        dispatcher = self.load({"caller": CALLER, "callee": ECHO})
        incoming = nuclio_sdk.Event(body=b"x", method="POST", path="/caller",
                                    headers={"Task-Name": "caller", "X-A": "1"},
                                    trigger=nuclio_sdk.TriggerInfo("http", "default-http"))
        result = dispatcher.handler(self.context, incoming)
        self.assertTrue(result["unchanged"])
        self.assertEqual(incoming.headers, {"Task-Name": "caller", "X-A": "1"})
        self.assertEqual(result["answer"]["headers"]["Task-Name"], "callee")

    def test_through_the_proxy(self):
        server = _NuclioBehindProxy()
        self.addCleanup(server.close)
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % server.address[1]
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        dispatcher = self.load({"caller": ECHO})
        ev, headers, before = self.event()
        response = dispatcher.tasks["caller"].context.platform.call_function("callee", ev)
        self.assertEqual(response.body["headers"]["X-A"], "1")
        self.assert_untouched(ev, headers, before)

    def test_through_the_real_platform(self):
        # service_name_override: the root platform's own call_function (here, to a closed port)
        port = closed_port()

        def connect(url, timeout=None):
            return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

        dispatcher = self.load({"caller": ECHO}, platform=nuclio_sdk.Platform(
            "local", connection_provider=connect))
        ev, headers, before = self.event()
        with self.assertRaises(ConnectionRefusedError):
            dispatcher.tasks["caller"].context.platform.call_function(
                "elsewhere", ev, service_name_override="127.0.0.1")
        self.assert_untouched(ev, headers, before)
        self.assertEqual(dispatcher.calls["remote"], 1)


class RequestsPathTest(ArtifactTestCase):
    """The `requests_session` style: path decoded and normalised, fields, headers as forwarded."""

    def test_path_fields_and_headers(self):
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % closed_port()
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        dispatcher = self.load({"caller": ECHO, "callee": ECHO})
        session = dispatcher._session(dispatcher.tasks["caller"])
        url = os.environ["FUSIONIZER_PROXY_URL"] + "/callee/a%20b//c/./d/../e?x=1&x=2&y=+z&flag"
        seen = session.get(url, headers={"X-Custom": "v \t", "Connection": "close"}).json()
        self.assertEqual(seen["path"], "/callee/a b/c/e")
        self.assertEqual(seen["fields"], {"x": "2", "y": " z", "flag": ""})
        headers = seen["headers"]
        self.assertEqual(headers["X-Custom"], "v")
        for absent in ("Host", "Connection", "Content-Length"):
            self.assertNotIn(absent, headers)
        self.assertEqual((headers["Task-Name"], headers["X-Fusionizer-Caller"]), ("callee", "caller"))
        seen = session.post(url, data=b"abc").json()
        self.assertEqual(seen["headers"]["Content-Length"], "3")

    def test_nuclio_path(self):
        # fasthttp's URI.Path(): decoded, `+` kept, duplicate slashes and dot segments removed
        for raw, path in (("/a//b", "/a/b"), ("/a/./b", "/a/b"), ("/a/b/../c", "/a/c"),
                          ("/a%20b", "/a b"), ("/a+b", "/a+b"), ("/a/b/..", "/a/"), ("/..", "/"),
                          ("/a/", "/a/"), ("", "/"), ("/a%2Fb", "/a/b")):
            self.assertEqual(_codec.nuclio_path(raw), path, raw)


class NoProxyTest(ArtifactTestCase):
    """A call to a task in another function with no proxy known fails at once, saying what to set."""

    def test_a_call_to_another_function_without_a_proxy_is_a_502_naming_the_setting(self):
        class Refusing(nuclio_sdk.Platform):
            def call_function(self, *args, **kwargs):
                raise AssertionError("the SDK's own resolution (`nuclio-<name>`) must not be used")

        dispatcher = self.load({"caller": ECHO}, platform=Refusing("kube"))
        platform = dispatcher.tasks["caller"].context.platform
        response = platform.call_function("elsewhere", nuclio_sdk.Event(body=b"x", method="POST"))
        self.assertEqual(response.status_code, 502)
        self.assertIn("`elsewhere`", response.body)
        self.assertIn("[nuctl] proxy-url", response.body)
        self.assertIn("FUSIONIZER_PROXY_URL", response.body)
        self.assertEqual(dispatcher.calls["remote"], 0)

    def test_service_name_override_still_reaches_the_real_platform(self):
        seen = []

        class Recording(nuclio_sdk.Platform):
            def call_function(self, name, event, node=None, timeout=None, service_name_override=None):
                seen.append((name, service_name_override))
                return nuclio_sdk.Response(body=b"ok", status_code=200)

        dispatcher = self.load({"caller": ECHO}, platform=Recording("kube"))
        platform = dispatcher.tasks["caller"].context.platform
        response = platform.call_function(
            "legacy", nuclio_sdk.Event(body=b"x", method="POST"), service_name_override="legacy-svc"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(seen, [("legacy", "legacy-svc")])
