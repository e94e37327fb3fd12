"""Replays the exchanges recorded with `bosun hook test controller.yaml sample.yaml --save
vectors/sample`: `python3 -m unittest`."""

import unittest
from pathlib import Path

from bosun_hooks.testing import run_vectors

import hook

VECTORS = Path(__file__).parent / "vectors"


class Recorded(unittest.TestCase):
    @unittest.skipUnless(VECTORS.exists(), "nothing recorded yet: bosun hook test controller.yaml sample.yaml --save vectors/sample")
    def test_the_hook_answers_as_recorded(self):
        self.assertEqual(run_vectors(hook.sync, VECTORS), [])


if __name__ == "__main__":
    unittest.main()
