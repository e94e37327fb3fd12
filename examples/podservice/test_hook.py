"""The PodService hook answers the exchanges recorded with `bosun hook test --save
vectors/<name>` as it answered then: `python3 -m unittest discover -s examples/podservice`."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hook  # noqa: E402 (puts the SDK on the path when run from a checkout)
from bosun_hooks.testing import run_vectors  # noqa: E402


class Recorded(unittest.TestCase):
    def test_the_hook_answers_as_recorded(self):
        self.assertEqual(run_vectors(hook.sync, Path(__file__).parent / "vectors"), [])


if __name__ == "__main__":
    unittest.main()
