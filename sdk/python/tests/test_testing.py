"""`run_vectors` replays recorded exchanges against a handler and says where it differs."""

import unittest

from bosun_hooks import CompositeResponse, child
from bosun_hooks.testing import run_vectors

from .vectors import VECTORS


def greeting(request):
    """The hook composite-create was recorded with."""
    greeting = request.parent["spec"]["greeting"]
    return CompositeResponse(status={"greetings": 1}, children=[child("v1", "ConfigMap", f"{request.name}-greeting", data={"greeting": greeting})])


class Replay(unittest.TestCase):
    def test_a_handler_that_answers_as_recorded_passes(self):
        self.assertEqual(run_vectors(greeting, VECTORS / "composite-create"), [])

    def test_one_that_does_not_is_named(self):
        problems = run_vectors(lambda request: {"children": []}, VECTORS)
        self.assertTrue(any(problem.startswith("composite-create:") for problem in problems), problems)
        self.assertFalse(any(problem.startswith("refused-") for problem in problems), "refused exchanges are not replayed")


if __name__ == "__main__":
    unittest.main()
