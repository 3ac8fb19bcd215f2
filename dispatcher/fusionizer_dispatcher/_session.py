"""The `requests_session` of original-style tasks (`handler(context, event, requests_session)`).

Kept apart from the dispatcher so that `requests` is imported only by functions whose tasks use
this call style: a fused function made only of Nuclio-native tasks needs nothing but
`nuclio_sdk` at run time.
"""

import collections

import requests
import requests.adapters
import requests.cookies
import requests.hooks
import requests.models
import requests.sessions
import requests.structures
import requests.utils

from . import _contract

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
    which is how http.client writes str values too)."""
    pairs = []
    for name, value in header_items(headers):
        if type(name) is not str:
            name = name.decode("latin-1")
        if type(value) is not str:
            value = value.decode("latin-1")
        pairs.append((name, value))
    return pairs


def case_insensitive_dict(pairs):
    """`CaseInsensitiveDict(pairs)` for a plain dict of str names.

    Fills the store as `__setitem__` does (lower-case name -> (name, value), in order) without
    a Python call per item, when the store is the `OrderedDict` it has always been.
    """
    headers = _CaseInsensitiveDict()
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


def _prepare_headers(prep, headers, session_headers):
    """`prep.prepare_headers(merge_setting(headers, session_headers, CaseInsensitiveDict))`.

    For plain str-named dicts it merges in one pass and checks each distinct (name, value) str
    pair with `requests`' own `check_header_validity` once; the resulting headers are equal, in
    the same order, and invalid ones raise the same error. Anything unusual takes `requests`'
    own functions.
    """
    if type(session_headers) is _CaseInsensitiveDict and type(headers) in (dict, _CaseInsensitiveDict):
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
            headers = _CaseInsensitiveDict()
            store = getattr(headers, "_store", None)
            if type(store) is collections.OrderedDict:
                for pair in pairs:
                    store[pair[0].lower()] = pair
            else:
                headers.update(pairs)
            prep.headers = headers
            return
    prep.prepare_headers(
        requests.sessions.merge_setting(headers, session_headers, dict_class=_CaseInsensitiveDict)
    )


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
            and not self.cookies
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
        prep.prepare_body(data or {}, None, json)
        settings = self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)
        send_kwargs = {"timeout": timeout, "allow_redirects": allow_redirects}
        send_kwargs.update(settings)
        return self.send(prep, **send_kwargs)

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
