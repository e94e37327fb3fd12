"""The server as the engine meets it: HTTP/1.1 with Content-Length, several calls on one
connection, JSON errors, a health path, and a stop that lets a call in flight finish."""

import http.client
import json
import threading
import time
import unittest

from bosun_hooks import CompositeResponse, HookServer, child
from bosun_hooks.testing import vectors

from .vectors import VECTORS


def post(connection, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.getheader("Content-Length"), json.loads(response.read())


class Server(unittest.TestCase):
    def setUp(self):
        hooks = HookServer()
        self.entered = threading.Event()
        self.release = threading.Event()

        @hooks.sync
        def sync(request):
            if request.parent.get("spec", {}).get("slow"):
                self.entered.set()
                self.release.wait(10)
            if request.parent.get("spec", {}).get("fail"):
                raise RuntimeError("the handler failed")
            return CompositeResponse(status={"seen": request.name}, children=[child("v1", "ConfigMap", f"{request.name}-c", data={})])

        @hooks.customize
        def customize(request):
            return {"relatedResources": []}

        self.running = hooks.start()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.running.port, timeout=10)
        self.request = next(vectors(VECTORS / "composite-create")).request

    def tearDown(self):
        self.connection.close()
        self.release.set()
        self.running.stop()

    def test_calls_on_one_connection_are_answered_with_content_length(self):
        for _ in range(2):
            status, length, body = post(self.connection, "/sync", self.request)
            self.assertEqual(status, 200)
            self.assertEqual(int(length), len(json.dumps(body).encode()))
            self.assertEqual(body["status"], {"seen": "one"})
            self.assertEqual(body["children"][0]["metadata"]["name"], "one-c")
        status, _, body = post(self.connection, "/customize", {"controller": {}, "parent": self.request["parent"]})
        self.assertEqual((status, body), (200, {"relatedResources": []}))

    def test_errors_are_json_with_a_status(self):
        self.assertEqual(post(self.connection, "/sync", b"not json")[0], 400)
        self.assertEqual(post(self.connection, "/elsewhere", self.request)[0], 404)
        failing = json.loads(json.dumps(self.request))
        failing["parent"]["spec"]["fail"] = True
        status, _, body = post(self.connection, "/sync", failing)
        self.assertEqual(status, 500)
        self.assertIn("the handler failed", body["error"])
        self.connection.request("GET", "/healthz")
        response = self.connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())), (200, {"status": "ok"}))

    def test_a_stop_lets_the_call_in_flight_finish(self):
        slow = json.loads(json.dumps(self.request))
        slow["parent"]["spec"]["slow"] = True
        answered = {}

        def call():
            connection = http.client.HTTPConnection("127.0.0.1", self.running.port, timeout=10)
            answered["status"] = post(connection, "/sync", slow)[0]
            connection.close()

        caller = threading.Thread(target=call)
        caller.start()
        self.assertTrue(self.entered.wait(10))
        stopper = threading.Thread(target=self.running.stop)
        stopper.start()
        time.sleep(0.2)
        self.assertNotIn("status", answered, "still in flight")
        self.release.set()
        caller.join(10)
        stopper.join(10)
        self.assertEqual(answered.get("status"), 200)
        self.running = _Stopped()


class _Stopped:
    def stop(self):
        pass


if __name__ == "__main__":
    unittest.main()


class RunOnce(unittest.TestCase):
    """`run_once`: the hook as an exec hook, one call on standard input and output."""

    def hooks(self):
        hooks = HookServer()

        @hooks.sync
        def sync(request):
            if request.parent.get("spec", {}).get("fail"):
                raise RuntimeError("the handler failed")
            return CompositeResponse(status={"seen": request.name}, children=[])

        return hooks

    def test_one_call_from_stdin_to_stdout(self):
        import io

        request = next(vectors(VECTORS / "composite-create")).request
        out = io.StringIO()
        status = self.hooks().run_once("/sync", io.BytesIO(json.dumps(request).encode()), out)
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out.getvalue()), {"status": {"seen": request["parent"]["metadata"]["name"]}, "children": []})

    def test_a_failure_is_an_exit_status_and_no_answer(self):
        import io

        request = next(vectors(VECTORS / "composite-create")).request
        request["parent"]["spec"] = {"fail": True}
        out = io.StringIO()
        self.assertEqual(self.hooks().run_once("/sync", io.BytesIO(json.dumps(request).encode()), out), 1)
        self.assertEqual(self.hooks().run_once("/sync", io.BytesIO(b"not json"), out), 1)
        self.assertEqual(self.hooks().run_once("/finalize", io.BytesIO(b"{}"), out), 1)
        self.assertEqual(out.getvalue(), "")

    def test_as_a_program(self):
        import subprocess
        import sys
        from pathlib import Path

        request = next(vectors(VECTORS / "composite-create")).request
        script = (
            "import sys\n"
            "from bosun_hooks import HookServer\n"
            "hooks = HookServer()\n"
            "hooks.sync(lambda request: {'status': {'seen': request.name}, 'children': []})\n"
            "sys.exit(hooks.run_once('/sync'))\n"
        )
        source = str(Path(__file__).resolve().parents[1] / "src")
        done = subprocess.run(
            [sys.executable, "-c", script], input=json.dumps(request).encode(), capture_output=True, env={"PYTHONPATH": source}, timeout=30
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["status"]["seen"], request["parent"]["metadata"]["name"])
