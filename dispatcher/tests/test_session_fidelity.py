"""The `requests_session` sibling shortcut (`TaskSession.request` answering in-process before
`requests` prepares the request) against `requests`' own path on the same call (the shortcut
refused): the callee's event and the `Response` the task reads are the same."""

import unittest
import unittest.mock

from fusionizer_dispatcher import _session

from .support import ArtifactTestCase
from .test_calls import ECHO

REDIRECT = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        return nuclio_sdk.Response(body="moved", status_code=302,
                                   headers={"Location": event.body.decode()})
"""}

MISSING = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        return nuclio_sdk.Response(body="no such thing", status_code=404,
                                   content_type="text/plain; charset=latin-1")
"""}


def _view(response):
    """What a task reads of a `requests.Response`."""
    try:
        parsed = response.json()
    except ValueError as exc:
        parsed = ("not JSON", type(exc).__name__)
    try:
        response.raise_for_status()
        raised = None
    except Exception as exc:
        raised = (type(exc).__name__, str(exc))
    request = response.request
    return {
        "status": response.status_code, "reason": response.reason, "ok": response.ok,
        "headers": dict(response.headers), "json": parsed, "text": response.text,
        "content": response.content, "encoding": response.encoding, "url": response.url,
        "raised": raised, "history": [r.status_code for r in response.history],
        "next": response.next.url if response.next is not None else None,
        "is_redirect": response.is_redirect, "cookies": dict(response.cookies),
        "elapsed": type(response.elapsed).__name__, "type": type(response).__name__,
        "request": (request.method, request.url, dict(request.headers), request.body,
                    type(request).__name__, dict(request._cookies), request.hooks),
        "attributes": sorted(vars(response)),
    }


CALLS = {
    "json body": lambda s, url: s.post(url + "/callee", json={"x": 2, "y": [1, "\u00e9"]}),
    "json with non-str keys": lambda s, url: s.post(url + "/callee", json={1: "a", None: (1,)}),
    "json NaN": lambda s, url: s.post(url + "/callee", json={"n": float("nan")}),
    "str data": lambda s, url: s.post(url + "/callee", data="caf\u00e9"),
    "bytes data": lambda s, url: s.put(url + "/callee", data=b"\x00\xff"),
    "data wins over json": lambda s, url: s.post(url + "/callee", data=b"d", json={"j": 1}),
    "empty data": lambda s, url: s.post(url + "/callee", data=b""),
    "GET": lambda s, url: s.get(url + "/callee"),
    "HEAD": lambda s, url: s.head(url + "/callee"),
    "DELETE without body": lambda s, url: s.delete(url + "/callee"),
    "own headers": lambda s, url: s.post(url + "/callee", json={"a": 1}, headers={
        "Content-Type": "text/x", "X-A": "1", "accept": "x/y", "User-Agent": None}),
    "own content length": lambda s, url: s.post(url + "/callee", data=b"abc",
                                                headers={"content-length": "3"}),
    "query and path": lambda s, url: s.post(url + "/callee/sub%20path?a=1&a=2&b=+", data=b"q"),
    "invalid header": lambda s, url: s.post(url + "/callee", data=b"x", headers={"X-A": " bad"}),
    "404": lambda s, url: s.post(url + "/missing", data=b"x"),
    "redirect followed": lambda s, url: s.post(url + "/redirect", data=(url + "/callee").encode()),
    "redirect not followed": lambda s, url: s.post(url + "/redirect", allow_redirects=False,
                                                   data=(url + "/callee").encode()),
}


class SessionShortcutTest(ArtifactTestCase):
    def setUp(self):
        super(SessionShortcutTest, self).setUp()
        self.url = "http://127.0.0.1:9"
        self.patch_env("FUSIONIZER_PROXY_URL", self.url)

    def patch_env(self, name, value):
        patcher = unittest.mock.patch.dict("os.environ", {name: value})
        patcher.start()
        self.addCleanup(patcher.stop)

    def outcome(self, session, call, shortcut):
        before = session._dispatcher.calls["local"]
        try:
            if shortcut:
                response = call(session, self.url)
            else:
                with unittest.mock.patch.object(_session, "_no_cookies", return_value=False):
                    response = call(session, self.url)
        except Exception as exc:
            return {"raised": (type(exc).__name__, str(exc))}
        view = _view(response)
        view["in process"] = session._dispatcher.calls["local"] - before
        return view

    def test_every_call_with_and_without_the_shortcut(self):
        dispatcher = self.load(
            {"caller": ECHO, "callee": ECHO, "missing": MISSING, "redirect": REDIRECT}
        )
        session = dispatcher._session(dispatcher.tasks["caller"])
        for label, call in CALLS.items():
            with self.subTest(label):
                with unittest.mock.patch.object(
                    session, "send", wraps=session.send
                ) as send:
                    shortcut = self.outcome(session, call, True)
                if label != "redirect followed" and "status" in shortcut:
                    self.assertEqual(send.call_count, 0, "the shortcut was not taken")
                generic = self.outcome(session, call, False)
                self.assertEqual(shortcut, generic)
                if "status" in generic:
                    self.assertGreater(generic["in process"], 0)


if __name__ == "__main__":
    unittest.main()
