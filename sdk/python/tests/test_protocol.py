"""The SDK reads every request of the shared protocol vectors and writes their responses
byte for byte; it refuses what the engine refuses."""

import unittest

from bosun_hooks import (
    CompositeRequest,
    CompositeResponse,
    DecoratorRequest,
    DecoratorResponse,
    Event,
    ProtocolError,
    RelatedRule,
    CustomizeResponse,
    check_response,
    parse_customize_request,
    parse_request,
    response_json,
)
from bosun_hooks.testing import vectors

from .vectors import VECTORS


class Requests(unittest.TestCase):
    def test_every_vector_request_parses_into_its_type(self):
        seen = 0
        for vector in vectors(VECTORS):
            with self.subTest(vector.name):
                request = parse_request(vector.request)
                seen += 1
                if "object" in vector.request:
                    self.assertIsInstance(request, DecoratorRequest)
                    self.assertEqual(request.object, vector.request["object"])
                    self.assertEqual(request.attachments.to_json(), vector.request["attachments"])
                else:
                    self.assertIsInstance(request, CompositeRequest)
                    self.assertEqual(request.parent, vector.request["parent"])
                    self.assertEqual(request.children.to_json(), vector.request["children"])
                self.assertEqual(request.name, "one")
                self.assertEqual(request.namespace, "vectors")
                self.assertEqual(request.finalizing, vector.request["finalizing"])
        self.assertGreaterEqual(seen, 10)

    def test_children_are_found_by_name_with_either_key_form(self):
        for name in ("composite-update", "composite-v2-keys"):
            with self.subTest(name):
                request = next(vector for vector in vectors(VECTORS / name))
                parsed = parse_request(request.request)
                child = parsed.children.get_object("ConfigMap", "v1", "one-greeting")
                self.assertIsNotNone(child)
                self.assertEqual(child["metadata"]["name"], "one-greeting")
                self.assertIsNone(parsed.children.get_object("ConfigMap", "v1", "missing"))
                self.assertEqual(len(parsed.children.objects()), 1)

    def test_related_objects_and_customize_requests(self):
        vector = next(vectors(VECTORS / "composite-related"))
        request = parse_request(vector.request)
        self.assertEqual(request.related.get_object("ConfigMap", "v1", "settings")["data"], {"colour": "blue"})
        customize = parse_customize_request(vector.customize_request)
        self.assertEqual(customize.parent["metadata"]["name"], "one")

    def test_what_is_not_a_request_is_refused(self):
        for body in (b"not json", b"[]", b"{}", b'{"controller": {}}'):
            with self.subTest(body):
                with self.assertRaises(ProtocolError):
                    parse_request(body)


class Responses(unittest.TestCase):
    def test_every_accepted_vector_response_is_written_as_recorded(self):
        for vector in vectors(VECTORS):
            if vector.refused:
                continue
            with self.subTest(vector.name):
                recorded = vector.response
                events = [Event(**event) for event in recorded.get("events", [])]
                if "attachments" in recorded:
                    typed = DecoratorResponse(
                        labels=recorded.get("labels"),
                        annotations=recorded.get("annotations"),
                        status=recorded.get("status"),
                        attachments=recorded["attachments"],
                        resync_after_seconds=recorded.get("resyncAfterSeconds"),
                        finalized=recorded.get("finalized"),
                        events=events,
                    )
                else:
                    typed = CompositeResponse(
                        status=recorded.get("status"),
                        children=recorded["children"],
                        resync_after_seconds=recorded.get("resyncAfterSeconds"),
                        finalized=recorded.get("finalized"),
                        events=events,
                    )
                self.assertEqual(response_json(typed), recorded)
                if vector.customize_response is not None:
                    rules = [
                        RelatedRule(rule["apiVersion"], rule["resource"], rule.get("labelSelector"), rule.get("names"), rule.get("namespace"))
                        for rule in vector.customize_response["relatedResources"]
                    ]
                    self.assertEqual(CustomizeResponse(rules).to_json(), vector.customize_response)

    def test_the_engines_refusals_are_found_before_answering(self):
        for vector in vectors(VECTORS):
            with self.subTest(vector.name):
                problems = check_response(parse_request(vector.request), vector.response)
                if vector.refused:
                    self.assertTrue(problems, f"the engine refused it: {vector.expect['message']}")
                else:
                    self.assertEqual(problems, [])

    def test_events_and_optional_fields(self):
        response = CompositeResponse(children=[], events=[Event("Greeted", "said hello"), Event("Slow", "late", type="Warning")])
        self.assertEqual(
            response.to_json(),
            {
                "children": [],
                "events": [
                    {"type": "Normal", "reason": "Greeted", "message": "said hello"},
                    {"type": "Warning", "reason": "Slow", "message": "late"},
                ],
            },
        )
        self.assertEqual(DecoratorResponse(labels={"gone": None}).to_json(), {"attachments": [], "labels": {"gone": None}})


if __name__ == "__main__":
    unittest.main()
