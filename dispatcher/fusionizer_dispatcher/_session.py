"""The `requests_session` of original-style tasks (`handler(context, event, requests_session)`).

Kept apart from the dispatcher so that `requests` is imported only by functions whose tasks use
this call style: a fused function made only of Nuclio-native tasks needs nothing but
`nuclio_sdk` at run time.
"""

import collections
import json

import requests
import requests.adapters
import requests.cookies
import requests.hooks
import requests.models
import requests.sessions
import requests.structures
import requests.utils

from . import _codec, _contract

_DEFAULT_HOOKS = requests.hooks.default_hooks()
_CaseInsensitiveDict = requests.structures.CaseInsensitiveDict
_VALID_HEADERS = set()
_ENCODINGS = {}


def header_items(headers):
    """`headers.items()`; for a plain `CaseInsensitiveDict` read from its store, which holds
    exactly those (name, value) pairs in that order, without the per-key lookups."""
    if type(headers) is _CaseInsensitiveDict:
        store = getattr(headers, "_store", None)
        if type(store) is collections.OrderedDict:
            return store.values()
    return headers.items()


def header_pairs(headers):
    """The request's headers as (name, value) text, as they go on the wire (bytes as Latin-1,
    which is how http.client writes str values too); a tuple."""
    pairs = []
    for pair in header_items(headers):
        name, value = pair
        if type(name) is not str or type(value) is not str:
            if type(name) is not str:
                name = name.decode("latin-1")
            if type(value) is not str:
                value = value.decode("latin-1")
            pair = (name, value)
        pairs.append(pair)
    return tuple(pairs)


def _response_maker():
    """`requests.Response()`, as `Response.__init__` makes it: its attributes in its order, each
    mutable one new (headers, history, cookies). It fills `__dict__` from a copy of a default
    response's, when that holds nothing mutable besides those three (true of requests 2.x),
    else it is the constructor."""
    response_class = requests.Response
    fresh = ("headers", "history", "cookies")
    try:
        template = dict(vars(response_class()))
        plain = (
            "__slots__" not in vars(response_class)
            and all(name in template for name in fresh)
            and type(template["cookies"]) is requests.cookies.RequestsCookieJar
            and not template["cookies"]
            and all(
                name in fresh or value is None or type(value) in (bool, int, str)
                or name == "elapsed"  # an immutable timedelta
                for name, value in template.items()
            )
        )
    except Exception:
        plain = False
    if not plain:
        return response_class
    allocate = object.__new__
    jar = requests.cookies.RequestsCookieJar

    def make():
        state = template.copy()
        state["headers"] = _empty_headers()
        state["history"] = []
        state["cookies"] = jar()
        response = allocate(response_class)
        response.__dict__ = state
        return response

    return make


new_response = _response_maker()


def case_insensitive_dict(pairs):
    """`CaseInsensitiveDict(pairs)` for a plain dict of str names.

    Fills the store as `__setitem__` does (lower-case name -> (name, value), in order) without
    a Python call per item, when the store is the `OrderedDict` it has always been.
    """
    headers = _empty_headers()
    store = getattr(headers, "_store", None)
    if type(store) is not collections.OrderedDict:
        headers.update(pairs)
        return headers
    for name, value in pairs.items():
        store[name.lower()] = (name, value)
    return headers


def encoding_of(headers):
    """`requests.utils.get_encoding_from_headers`, memoised on the Content-Type it reads."""
    content_type = headers.get("content-type")
    if type(content_type) is not str:
        return requests.utils.get_encoding_from_headers(headers)
    encoding = _ENCODINGS.get(content_type, _ENCODINGS)
    if encoding is _ENCODINGS:
        encoding = requests.utils.get_encoding_from_headers(headers)
        if len(_ENCODINGS) < 256:
            _ENCODINGS[content_type] = encoding
    return encoding


# (session header pairs, request header pairs) -> the merged, checked pairs (all str values)
_MERGED = {}


def _empty_headers_maker():
    """`CaseInsensitiveDict()`: one holding a new empty `OrderedDict` as `_store`, as its
    `__init__` leaves it (checked here; else the constructor), without the generic `update`."""
    try:
        plain = vars(_CaseInsensitiveDict()) == {"_store": collections.OrderedDict()}
    except Exception:
        plain = False
    if not plain:
        return _CaseInsensitiveDict
    allocate = object.__new__
    ordered = collections.OrderedDict

    def make():
        headers = allocate(_CaseInsensitiveDict)
        headers._store = ordered()
        return headers

    return make


_empty_headers = _empty_headers_maker()


def _headers_of(pairs):
    """`CaseInsensitiveDict(pairs)` for pairs with distinct lower-case names."""
    headers = _empty_headers()
    store = getattr(headers, "_store", None)
    if type(store) is collections.OrderedDict:
        for pair in pairs:
            store[pair[0].lower()] = pair
    else:
        headers.update(pairs)
    return headers


def _prepare_headers(prep, headers, session_headers):
    """`prep.prepare_headers(merge_setting(headers, session_headers, CaseInsensitiveDict))`.

    For plain str-named dicts it merges in one pass and checks each distinct (name, value) str
    pair with `requests`' own `check_header_validity` once; the resulting headers are equal, in
    the same order, and invalid ones raise the same error. Anything unusual takes `requests`'
    own functions.
    """
    if type(session_headers) is _CaseInsensitiveDict and type(headers) in (dict, _CaseInsensitiveDict):
        try:
            key = (tuple(header_items(session_headers)), tuple(header_items(headers)))
            pairs = _MERGED.get(key)
        except TypeError:  # an unhashable name or value: `requests` checks it
            key = pairs = None
        if pairs is not None:
            prep.headers = _headers_of(pairs)
            return
        merged = {}
        for source in (session_headers, headers):
            for name, value in header_items(source):
                if type(name) is not str:
                    merged = None
                    break
                # like CaseInsensitiveDict: the first spelling's place, the last spelling and value
                merged[name.lower()] = (name, value)
            if merged is None:
                break
        if merged is not None:
            pairs = [pair for pair in merged.values() if pair[1] is not None]
            for pair in pairs:
                if pair not in _VALID_HEADERS:
                    requests.utils.check_header_validity(pair)
                    if type(pair[1]) is str and len(_VALID_HEADERS) < 4096:
                        _VALID_HEADERS.add(pair)
            if key is not None and all(type(pair[1]) is str for pair in pairs):
                if len(_MERGED) >= 1024:
                    _MERGED.clear()
                _MERGED[key] = tuple(pairs)
            prep.headers = _headers_of(pairs)
            return
    prep.prepare_headers(
        requests.sessions.merge_setting(headers, session_headers, dict_class=_CaseInsensitiveDict)
    )


_clock = requests.sessions.preferred_clock
_timedelta = requests.sessions.timedelta
# `PreparedRequest.prepare_body` for a str/bytes/empty body as requests 2.32 writes it (its
# `super_len` measures a str as UTF-8); other versions run their own.
_OWN_BODY = requests.__version__.startswith("2.32.")
_complexjson = requests.models.complexjson


def _json_dumps():
    """`complexjson.dumps(value, allow_nan=False)`: through the C encoder directly (the
    encoder's own last step) when `complexjson` is the standard `json` and that is proved to
    give the same text, else the call itself."""
    def reference(value):
        return _complexjson.dumps(value, allow_nan=False)

    if _complexjson is not json:
        return reference
    return _codec._proved(_codec._c_encoder(json.JSONEncoder(allow_nan=False)), reference)


_dumps_json_body = _json_dumps()


_NONE = (None, None)


def _prepare_body(prep, data, json):
    """`prep.prepare_body(data or {}, None, json)` for `data` None, str or bytes (what
    `TaskSession.request` lets through), without its generic steps; returns the JSON text of a
    `json=` body (for the callee's decode), else None.

    As `requests/models.py` does: `json` is sent only without `data`, as `complexjson.dumps(json,
    allow_nan=False)` in UTF-8 with `Content-Type: application/json` unless the request has
    one; a str/bytes `data` is the body as given; `Content-Length` is the body's length in bytes
    when not zero, and `0` for no body but on GET and HEAD unless already set.
    """
    if not _OWN_BODY:
        prep.prepare_body(data or {}, None, json)
        return None
    text = None
    content_type = None
    headers = prep.headers
    if not data and json is not None:
        content_type = "application/json"
        try:
            text = _dumps_json_body(json)
        except ValueError as ve:
            raise requests.exceptions.InvalidJSONError(ve, request=prep)
        if isinstance(text, bytes):
            body, text = text, None
        else:
            body = text.encode("utf-8")
    elif data:
        body = data
    else:
        body = None
    if body is not None:
        length = len(body.encode("utf-8") if type(body) is str else body)
        if length:
            headers["Content-Length"] = str(length)
    elif prep.method not in ("GET", "HEAD") and headers._store.get("content-length", _NONE)[1] is None:
        headers["Content-Length"] = "0"
    if content_type and "content-type" not in headers._store:
        headers["Content-Type"] = content_type
    prep.body = body
    return text


_RequestsCookieJar = requests.cookies.RequestsCookieJar


def _no_cookies(jar):
    """`not jar`, without counting the cookies of a plain jar: its `_cookies` (domain -> path ->
    name -> cookie, `http.cookiejar.CookieJar`) is empty exactly when `clear()` emptied it or
    nothing was set; a jar that only looks non-empty there is counted."""
    if type(jar) is _RequestsCookieJar and type(getattr(jar, "_cookies", None)) is dict:
        if not jar._cookies:
            return True
    return not jar


class TaskSession(requests.Session):
    """The `requests_session` handed to original-style handlers.

    A plain `requests.Session` with `_SiblingAdapter` mounted. For sibling calls it skips the
    environment lookups (proxy variables, `.netrc`) that `requests` performs before reaching the
    adapter, since those cannot affect a call that never leaves the process; every other request
    gets the full, unchanged `requests` behaviour.
    """

    def __init__(self, dispatcher, task):
        super(TaskSession, self).__init__()
        self._dispatcher = dispatcher
        self._prepared_urls = {}
        adapter = _SiblingAdapter(dispatcher, task)
        self._adapter = adapter
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, params=None, data=None, headers=None, cookies=None, files=None,
                auth=None, timeout=None, allow_redirects=True, proxies=None, hooks=None,
                stream=None, verify=None, cert=None, json=None):
        """`requests.Session.request`, preparing sibling calls without the generic steps.

        Only when those steps provably do nothing (no params, files, auth, cookies, hooks or
        extra adapters anywhere, a str/bytes/empty body): the request is then prepared by the
        same `PreparedRequest` methods, with its URL prepared once per distinct URL, and sent
        through `send` exactly as `requests` does, so redirects, hooks and the response stay
        `requests`' own. Anything else takes the unchanged `requests` path.
        """
        prepared_url = None
        if (
            not (params or files or auth or cookies or hooks or self.auth or self.params)
            and type(url) is str
            and (data is None or type(data) is bytes or type(data) is str)
            and self.hooks == _DEFAULT_HOOKS
            and len(self.adapters) == 2
            and _no_cookies(self.cookies)
        ):
            prepared_url = self._sibling_url(url)
        if prepared_url is None:
            return super(TaskSession, self).request(
                method, url, params=params, data=data, headers=headers, cookies=cookies,
                files=files, auth=auth, timeout=timeout, allow_redirects=allow_redirects,
                proxies=proxies, hooks=hooks, stream=stream, verify=verify, cert=cert, json=json,
            )
        prep = requests.models.PreparedRequest()
        prep.prepare_method(method.upper())
        prep.url = prepared_url
        # `Request` turns `headers=None` into `{}`, so None-valued session headers are dropped
        _prepare_headers(prep, headers if headers is not None else {}, self.headers)
        # an empty jar adds no Cookie header; the URL carries no credentials (`_sibling_url`)
        prep._cookies = requests.cookies.RequestsCookieJar()
        text = _prepare_body(prep, data, json)
        dispatcher = self._dispatcher
        parts, _, callee = dispatcher._url_target(prepared_url)  # a sibling (`_sibling_url`)
        # A sibling: what `Session.send` does around its adapter's `send` (`requests/sessions.py`)
        # is, for this request and its in-process answer, timing it and nothing else: the hooks
        # are the defaults (no response hook), the answer has no `raw` to take cookies from and
        # its body is read. Only a redirect takes `send`'s remaining steps.
        adapter = self._adapter
        adapters = self.adapters
        if not (
            adapters.get("http://") is adapter and adapters.get("https://") is adapter
            and prepared_url[:7].lower() in ("http://", "https:/")
        ):
            # what `send` would pick (`Session.get_adapter`)
            adapter = self.get_adapter(url=prepared_url)
        if type(adapter) is not _SiblingAdapter:
            return self.send(prep, **self._send_kwargs(prep, timeout, allow_redirects, proxies,
                                                       stream, verify, cert))
        start = _clock()
        response = dispatcher._requests_in_process(adapter, adapter._task, callee, prep, parts, text)
        response.elapsed = _timedelta(seconds=_clock() - start)
        if response.is_redirect:
            settings = self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)
            return self._after_redirect(response, prep, allow_redirects, timeout, settings)
        return response

    def _send_kwargs(self, prep, timeout, allow_redirects, proxies, stream, verify, cert):
        settings = self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)
        send_kwargs = {"timeout": timeout, "allow_redirects": allow_redirects}
        send_kwargs.update(settings)
        return send_kwargs

    def _after_redirect(self, response, prep, allow_redirects, timeout, settings):
        """The end of `Session.send` for a redirect answered in-process (`requests/sessions.py`)."""
        kwargs = {"timeout": timeout}
        kwargs.update(settings)
        if allow_redirects:
            history = [resp for resp in self.resolve_redirects(response, prep, **kwargs)]
        else:
            history = []
        if history:
            history.insert(0, response)
            response = history.pop()
            response.history = history
        if not allow_redirects:
            try:
                response._next = next(
                    self.resolve_redirects(response, prep, yield_requests=True, **kwargs)
                )
            except StopIteration:
                pass
        if not settings.get("stream"):
            response.content
        return response

    def _sibling_url(self, url):
        """`url` as `PreparedRequest.prepare_url` prepares it, if raw and prepared both address a
        sibling and it carries no credentials; else None."""
        prepared = self._prepared_urls.get(url)
        if prepared is None:
            try:
                scratch = requests.models.PreparedRequest()
                scratch.prepare_url(url, None)
                prepared = scratch.url
            except Exception:
                prepared = ""
            if any(requests.utils.get_auth_from_url(prepared or url)):
                prepared = ""
            if len(self._prepared_urls) >= 1024:
                self._prepared_urls.clear()
            self._prepared_urls[url] = prepared
        if not prepared:
            return None
        dispatcher = self._dispatcher
        if dispatcher._sibling_of_url(url) is None or (
            prepared != url and dispatcher._sibling_of_url(prepared) is None
        ):
            return None
        return prepared

    def prepare_request(self, request):
        if self.trust_env and self._dispatcher._sibling_of_url(request.url) is not None:
            self.trust_env = False
            try:
                return super(TaskSession, self).prepare_request(request)
            finally:
                self.trust_env = True
        return super(TaskSession, self).prepare_request(request)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if self.trust_env and self._dispatcher._sibling_of_url(url) is not None:
            if type(proxies) is dict and type(self.proxies) is dict and not (proxies or self.proxies):
                merged_proxies = collections.OrderedDict()  # what merge_setting({}, {}) returns
            else:
                merged_proxies = requests.sessions.merge_setting(proxies, self.proxies)
            return {
                "proxies": merged_proxies,
                "stream": requests.sessions.merge_setting(stream, self.stream),
                "verify": requests.sessions.merge_setting(verify, self.verify),
                "cert": requests.sessions.merge_setting(cert, self.cert),
            }
        return super(TaskSession, self).merge_environment_settings(url, proxies, stream, verify, cert)


class _SiblingAdapter(requests.adapters.HTTPAdapter):
    """Transport of a task's `requests_session`: sibling calls through the proxy run in-process.

    A request is a sibling call when its host is the proxy's (any port) and the first path
    segment names a task of this group. Other requests to the proxy get `X-Fusionizer-Caller`;
    anything else goes out unchanged.
    """

    def __init__(self, dispatcher, task):
        super(_SiblingAdapter, self).__init__()
        self._dispatcher = dispatcher
        self._task = task

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        dispatcher = self._dispatcher
        parts, host, callee = dispatcher._url_target(request.url)
        if host is not None and dispatcher._is_proxy_host(host):
            if callee is not None:
                return dispatcher._requests_in_process(self, self._task, callee, request, parts)
            request.headers[_contract.HEADER_CALLER] = self._task
            if dispatcher.traceparent and _contract.HEADER_TRACEPARENT not in request.headers:
                request.headers[_contract.HEADER_TRACEPARENT] = dispatcher.traceparent
            dispatcher.calls["remote"] += 1
        return super(_SiblingAdapter, self).send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
