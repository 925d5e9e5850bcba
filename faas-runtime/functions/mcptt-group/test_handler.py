"""Unit tests of mcptt-group's input checks (no Redis needed): `make test` runs them."""

import random
import unittest

import handler


class CanonicalUri(unittest.TestCase):
    def test_the_registrars_aor_form(self):
        cases = {
            "sip:alice@example.org": "sip:alice@example.org",
            "SIP:alice@Example.ORG": "sip:alice@example.org",
            "<sip:alice@example.org;transport=tcp>": "sip:alice@example.org",
            "sip:alice:secret@example.org:5070?subject=x": "sip:alice@example.org:5070",
            "sips:bob%20b@[::1]:5061": "sips:bob b@[::1]:5061",
        }
        for text, want in cases.items():
            self.assertEqual(handler.canonical_uri(text), want, text)

    def test_what_is_not_a_sip_uri(self):
        for bad in ["alice@example.org", "tel:+123", "sip:example.org", "sip:@example.org",
                    "sip:a@", "sip:a@h:0", "sip:a@h:99999", "sip:a@h:x", "sip:a b@h",
                    "sip:a@bad_host", "", None, 42, "sip:a@" + "h" * 600]:
            self.assertIsNone(handler.canonical_uri(bad), repr(bad))

    def test_random_text_never_raises(self):
        rng = random.Random(7)
        alphabet = "sip:@[]<>;?%=.:-_ aZ09\r\n\x00é"
        for _ in range(20000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            result = handler.canonical_uri(text)
            self.assertTrue(result is None or result.startswith(("sip:", "sips:")))


class Members(unittest.TestCase):
    def field(self, body):
        with self.assertRaises(handler.BadInput) as e:
            handler.check_members(body)
        return e.exception.field

    def test_bad_input_names_the_field(self):
        self.assertEqual(self.field({"members": ["sip:a@x", "nope"]}), "members[1]")
        self.assertEqual(self.field({"members": ["sip:a@x", "sip:a@X"]}), "members[1]")
        self.assertEqual(self.field({"members": []}), "members")
        self.assertEqual(self.field({"members": "sip:a@x"}), "members")
        self.assertEqual(self.field({"members": ["sip:a@x"], "extra": 1}), "extra")
        self.assertEqual(self.field(["sip:a@x"]), "body")

    def test_members_come_back_canonical_in_order(self):
        self.assertEqual(handler.check_members({"members": ["sip:B@X", "sip:a@x"]}),
                         ["sip:B@x", "sip:a@x"])

    def test_group_ids(self):
        self.assertEqual(handler.check_group_id("team-1"), "team-1")
        for bad in ["", "bad id", "-x", "a" * 65, "a/b"]:
            with self.assertRaises(handler.BadInput):
                handler.check_group_id(bad)


if __name__ == "__main__":
    unittest.main()
