"""Child helpers: names safe for any kind, the usual labels, objects in the expected shape."""

import unittest

from bosun_hooks import child, labels_for, owner_safe_name

PARENT = {"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "Web_Front", "namespace": "a"}}


class Names(unittest.TestCase):
    def test_a_child_name_is_the_parents_with_a_suffix_as_a_dns_label(self):
        self.assertEqual(owner_safe_name(PARENT, "config"), "web-front-config")
        self.assertEqual(owner_safe_name(PARENT), "web-front")

    def test_a_long_name_is_shortened_with_a_hash_that_tells_parents_apart(self):
        one = owner_safe_name({"metadata": {"name": "a" * 60}}, "config")
        other = owner_safe_name({"metadata": {"name": "a" * 61}}, "config")
        self.assertLessEqual(len(one), 63)
        self.assertNotEqual(one, other)
        self.assertRegex(one, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Objects(unittest.TestCase):
    def test_child_and_labels(self):
        labels = labels_for(PARENT, {"tier": "web"})
        self.assertEqual(labels["app.kubernetes.io/instance"], "Web_Front")
        self.assertEqual(labels["tier"], "web")
        made = child("v1", "ConfigMap", "web-front-config", labels=labels, data={"a": "b"})
        self.assertEqual(made["metadata"], {"name": "web-front-config", "labels": labels})
        self.assertEqual(made["data"], {"a": "b"})
        self.assertNotIn("namespace", made["metadata"], "the engine puts children in the parent's namespace")


if __name__ == "__main__":
    unittest.main()
