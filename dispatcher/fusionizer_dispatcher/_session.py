"""The `requests_session` of original-style tasks (`handler(context, event, requests_session)`).

Kept apart from the dispatcher so that `requests` is imported only by functions whose tasks use
this call style: a fused function made only of Nuclio-native tasks needs nothing but
`nuclio_sdk` at run time.
"""

import urllib.parse

import requests
import requests.adapters
import requests.sessions


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
        adapter = _SiblingAdapter(dispatcher, task)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

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
            return {
                "proxies": requests.sessions.merge_setting(proxies, self.proxies),
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
        parts = urllib.parse.urlsplit(request.url)
        if parts.hostname is not None and dispatcher._is_proxy_host(parts.hostname):
            callee = urllib.parse.unquote(parts.path.lstrip("/").partition("/")[0])
            if callee in dispatcher.tasks:
                return dispatcher._requests_in_process(self, self._task, callee, request, parts)
            request.headers["X-Fusionizer-Caller"] = self._task
            dispatcher.calls["remote"] += 1
        return super(_SiblingAdapter, self).send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
