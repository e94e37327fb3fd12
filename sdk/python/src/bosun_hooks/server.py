"""A hook server that speaks the protocol correctly: HTTP/1.1 with Content-Length on every
answer, a thread per connection, JSON errors (400 for a bad request, 500 when a handler fails),
`GET /healthz`, and a graceful stop on SIGTERM or Ctrl-C that lets calls in flight finish."""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Callable, Dict, Optional, TextIO

from .admission import parse_admission_request, parse_conversion_request
from .protocol import ProtocolError, parse_customize_request, parse_request, response_json

Handler = Callable[[Any], Any]


class HookServer:
    """Register one function per hook with the decorators, then `serve()`:

        hooks = HookServer()

        @hooks.sync
        def sync(request: CompositeRequest) -> CompositeResponse: ...

    `sync` and `finalize` handlers get a CompositeRequest (or a DecoratorRequest for a
    DecoratorController), `customize` handlers a CustomizeRequest; each returns a response type
    or a dict. Paths: `/sync`, `/finalize`, `/customize` (or any, with `route`)."""

    def __init__(self) -> None:
        self._routes: Dict[str, Callable[[bytes], Any]] = {}

    def route(self, path: str, parse: Callable[[bytes], Any] = parse_request) -> Callable[[Handler], Handler]:
        """Serves `handler` at `path`, its request parsed by `parse`."""

        def register(handler: Handler) -> Handler:
            self._routes[path] = lambda body: handler(parse(body))
            return handler

        return register

    def sync(self, handler: Handler) -> Handler:
        """The sync hook, at `/sync`."""
        return self.route("/sync")(handler)

    def finalize(self, handler: Handler) -> Handler:
        """The finalize hook, at `/finalize`."""
        return self.route("/finalize")(handler)

    def customize(self, handler: Handler) -> Handler:
        """The customize hook, at `/customize`."""
        return self.route("/customize", parse_customize_request)(handler)

    def validate(self, handler: Handler) -> Handler:
        """An AdmissionController's validate hook, at `/validate`: gets an AdmissionRequest,
        returns an AdmissionResponse (or a dict)."""
        return self.route("/validate", parse_admission_request)(handler)

    def mutate(self, handler: Handler) -> Handler:
        """An AdmissionController's mutate hook, at `/mutate`: gets an AdmissionRequest,
        returns an AdmissionResponse with the object as it should be stored (or a dict)."""
        return self.route("/mutate", parse_admission_request)(handler)

    def convert(self, handler: Handler) -> Handler:
        """An AdmissionController's convert hook, at `/convert`: gets a ConversionRequest,
        returns a ConversionResponse (or a dict)."""
        return self.route("/convert", parse_conversion_request)(handler)

    def run_once(self, path: str = "/sync", stdin: Optional[BinaryIO] = None, stdout: Optional[TextIO] = None) -> int:
        """Answers one call as an exec hook (docs/engine.md, "A hook without a server"): the
        request read from standard input, handled by the hook at `path`, the response written
        to standard output. Returns the exit status: 0, or 1 (with why on standard error) when
        the request is not one or the handler fails — bosun then changes nothing."""
        route = self._routes.get(path)
        if route is None:
            print(f"no hook at {path}; there are {', '.join(sorted(self._routes))}", file=sys.stderr)
            return 1
        body = (stdin or sys.stdin.buffer).read()
        try:
            response = response_json(route(body))
        except Exception as error:  # the exit status says it; bosun quotes standard error
            print(f"hook {path} failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return 1
        out = stdout or sys.stdout
        json.dump(response, out)
        out.flush()
        return 0

    def start(self, port: int = 0, address: str = "127.0.0.1") -> "RunningServer":
        """Serves in a background thread; returns at once (port 0: a free one)."""
        server = _Server((address, port), _handler_class(self._routes))
        thread = threading.Thread(target=server.serve_forever, name="bosun-hooks", daemon=True)
        thread.start()
        return RunningServer(server, thread)

    def serve(self, port: int = 8080, address: str = "127.0.0.1") -> None:
        """Serves until SIGTERM or Ctrl-C, then stops taking calls and returns once those in
        flight have been answered."""
        running = self.start(port, address)
        print(f"hooks listening on {running.url} ({', '.join(sorted(self._routes))})", flush=True)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(3600):
            pass
        running.stop()


class RunningServer:
    """A server started with `HookServer.start`."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """`http://address:port`, without a path."""
        return f"http://{self._server.server_address[0]}:{self.port}"

    def stop(self) -> None:
        """Stops taking calls and waits for those in flight."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    # Calls in flight finish before server_close returns.
    daemon_threads = False
    block_on_close = True


def _handler_class(routes: Dict[str, Callable[[bytes], Any]]) -> type:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            route = routes.get(self.path.split("?", 1)[0])
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if route is None:
                return self._reply(404, {"error": f"no hook at {self.path}"})
            try:
                response = response_json(route(body))
            except ProtocolError as error:
                return self._reply(400, {"error": str(error)})
            except Exception as error:  # a failing handler is the hook's answer, not the server's end
                print(f"hook {self.path} failed: {error!r}", file=sys.stderr, flush=True)
                return self._reply(500, {"error": f"{type(error).__name__}: {error}"})
            self._reply(200, response)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                return self._reply(200, {"status": "ok"})
            self._reply(404, {"error": f"nothing at {self.path}"})

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # a line per call is noise; the engine's metrics count the calls

    return _Handler
