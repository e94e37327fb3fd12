"""Admission and conversion hooks: the SDK reads every request of the shared admission vectors
(protocol/admission/) and, served through HookServer's @validate, @mutate and @convert, answers
each vector's response byte for byte."""

import json
import unittest
import urllib.request
from pathlib import Path

from bosun_hooks import (
    AdmissionRequest,
    AdmissionResponse,
    ConversionRequest,
    ConversionResponse,
    HookServer,
    ProtocolError,
    parse_admission_request,
    parse_conversion_request,
)

ADMISSION = Path(__file__).resolve().parents[3] / "protocol" / "admission"


def vectors():
    for directory in sorted(ADMISSION.iterdir()):
        read = lambda name: json.loads((directory / name).read_text())
        yield directory.name, read("review.json")["hook"], read("request.json"), read("response.json")


def as_response(hook, answer):
    """The vector's answer, built with the SDK's types."""
    if hook == "convert":
        return ConversionResponse(objects=answer.get("objects"), message=answer.get("message"))
    return AdmissionResponse(
        allowed=answer.get("allowed", True),
        message=answer.get("message"),
        warnings=answer.get("warnings", []),
        object=answer.get("object"),
        patch=answer.get("patch"),
    )


class Admission(unittest.TestCase):
    def test_every_vector_parses_and_answers_through_the_server(self):
        hooks = HookServer()
        answers = {}
        for path in ("validate", "mutate", "convert"):
            getattr(hooks, path)(lambda request, path=path: answers[path](request))
        running = hooks.start()
        try:
            seen = 0
            for name, hook, request, answer in vectors():
                with self.subTest(name):
                    parsed = (parse_conversion_request if hook == "convert" else parse_admission_request)(request)
                    if hook == "convert":
                        self.assertIsInstance(parsed, ConversionRequest)
                        self.assertEqual(parsed.objects, request["objects"])
                    else:
                        self.assertIsInstance(parsed, AdmissionRequest)
                        self.assertEqual(parsed.object, request["object"])
                        self.assertEqual(parsed.user_info["username"], "alice")
                    answers[hook] = lambda got, answer=answer, hook=hook: as_response(hook, answer)
                    body = json.dumps(request).encode()
                    sent = urllib.request.Request(f"{running.url}/{hook}", data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(sent) as response:
                        got = json.loads(response.read())
                    expected = dict(answer)
                    if hook != "convert":
                        expected.setdefault("allowed", True)
                    self.assertEqual(got, expected)
                    seen += 1
            self.assertGreaterEqual(seen, 6)
        finally:
            running.stop()

    def test_deny_and_allow_helpers(self):
        self.assertEqual(AdmissionResponse.deny("no", "careful").to_json(), {"allowed": False, "message": "no", "warnings": ["careful"]})
        self.assertEqual(AdmissionResponse.allow().to_json(), {"allowed": True})

    def test_malformed_requests_are_refused(self):
        with self.assertRaises(ProtocolError):
            parse_admission_request({"object": {}})
        with self.assertRaises(ProtocolError):
            parse_conversion_request({"objects": []})


if __name__ == "__main__":
    unittest.main()
