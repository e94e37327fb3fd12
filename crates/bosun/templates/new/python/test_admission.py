"""The admission hooks, called as bosun calls them: `python3 -m unittest`."""

import unittest

from bosun_hooks import parse_admission_request

import hook


def request(spec):
    return parse_admission_request({"operation": "CREATE", "object": {"apiVersion": "__GROUP__/__VERSION__", "kind": "__KIND__", "metadata": {"name": "sample"}, "spec": spec}})


class Admission(unittest.TestCase):
    def test_an_empty_message_is_refused(self):
        answer = hook.validate(request({"message": ""}))
        self.assertFalse(answer.allowed)
        self.assertIn("spec.message is empty", answer.message)

    def test_a_message_is_allowed_as_it_is(self):
        self.assertTrue(hook.validate(request({"message": "hi"})).allowed)
        self.assertIsNone(hook.mutate(request({"message": "hi"})).object)

    def test_a_missing_message_is_defaulted(self):
        answer = hook.mutate(request({}))
        self.assertEqual(answer.object["spec"]["message"], hook.DEFAULT_MESSAGE)
        self.assertTrue(hook.validate(request(answer.object["spec"])).allowed)


if __name__ == "__main__":
    unittest.main()
