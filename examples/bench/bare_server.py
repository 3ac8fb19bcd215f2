"""The baseline of the proxy-cost benchmark: one task's handler behind a bare Python HTTP server.

    <venv python> bare_server.py TASK_DIR

A `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive and TCP_NODELAY calls the task's
handler directly in the server process, building the `nuclio_sdk.Event` and encoding the result
exactly as fusionizer's worker does (the dispatcher's codec, found on PYTHONPATH), so the only
difference from `fusionizer serve` is the serving path. Prints the port it listens on
(127.0.0.1, an ephemeral port) on stdout, then serves until stdin closes.
"""

import http.server
import importlib.util
import logging
import os
import sys
import threading

import nuclio_sdk
from fusionizer_dispatcher import _codec

TRIGGER = nuclio_sdk.TriggerInfo("http", "default-http")


def load_handler(task_dir):
    spec = importlib.util.spec_from_file_location("bench_task", os.path.join(task_dir, "main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logger = nuclio_sdk.Logger(logging.WARNING, name="bare")
    context = nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), "0", TRIGGER)
    init = getattr(module, "init_context", None)
    if init is not None:
        init(context)
    return module.handler, context


def make_server(handler, context):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = 1 << 16  # status line, headers and body leave in one write

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {_codec.canonical_header(k): v for k, v in self.headers.items()}
            path, _, query = self.path.partition("?")
            event = _codec.new_event(body, headers.get("Content-Type", ""), headers, "POST", path,
                                     {}, TRIGGER)
            try:
                status, ctype, extra, out = _codec.encode_output(handler(context, event))
            except Exception as exc:  # Nuclio's wrapper turns handler exceptions into a 500
                status, ctype, extra, out = _codec.error_output(exc)
            self.send_response(status)
            for name, value in _codec.wire_headers(ctype, extra, out).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a load generator closes its connections at the end of a run, sometimes mid-request
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    server = make_server(*load_handler(sys.argv[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
