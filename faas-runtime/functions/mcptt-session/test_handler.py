"""Unit tests of mcptt-session's SIP and body helpers (no Redis, no protobuf needed)."""

import random
import unittest

import handler

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
INFO = ('<?xml version="1.0"?><mcpttinfo><mcptt-Params><session-type>prearranged'
        '</session-type></mcptt-Params></mcpttinfo>')


class Headers(unittest.TestCase):
    def test_uri_and_tag(self):
        self.assertEqual(handler.uri_of('"Bob" <sip:bob@x;transport=udp>;tag=9'), "sip:bob@x;transport=udp")
        self.assertEqual(handler.uri_of("sip:bob@x;tag=9"), "sip:bob@x")
        self.assertEqual(handler.tag_of('"Bob" <sip:bob@x;transport=udp>;tag=9'), "9")
        self.assertEqual(handler.tag_of("<sip:bob@x>"), None)
        self.assertEqual(handler.tag_of("sip:bob@x;TAG=abc"), "abc")
        self.assertIsNone(handler.uri_of(None))

    def test_aor_and_group(self):
        self.assertEqual(handler.aor("sip:Alice@Example.ORG:5060;transport=tcp"), "sip:Alice@example.org:5060")
        self.assertIsNone(handler.aor("tel:+1"))
        self.assertIsNone(handler.aor("sip:example.org"))
        self.assertEqual(handler.group_id("sip:team-1@example.org"), "team-1")
        self.assertIsNone(handler.group_id("sip:example.org"))


class Bodies(unittest.TestCase):
    def test_plain_sdp(self):
        self.assertEqual(handler.sdp_of("application/sdp", SDP.encode()), SDP)
        self.assertIsNone(handler.sdp_of("text/plain", b"hi"))
        self.assertIsNone(handler.sdp_of("application/sdp", b""))

    def test_multipart_with_mcptt_info(self):
        body = ("--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP +
                "--b1\r\nContent-Type: " + handler.MCPTT_INFO + "\r\n\r\n" + INFO + "\r\n--b1--\r\n")
        got = handler.sdp_of('multipart/mixed; boundary="b1"', body.encode())
        self.assertEqual(got.strip(), SDP.strip())
        self.assertIsNone(handler.sdp_of("multipart/mixed", body.encode()), "no boundary")
        only_info = "--b1\r\nContent-Type: " + handler.MCPTT_INFO + "\r\n\r\n" + INFO + "\r\n--b1--\r\n"
        self.assertIsNone(handler.sdp_of("multipart/mixed;boundary=b1", only_info.encode()))

    def test_random_bodies_never_raise(self):
        rng = random.Random(3)
        pieces = ["--b", "\r\n", "\n", "Content-Type: application/sdp", "v=0", ":", "--", "x"]
        for _ in range(5000):
            body = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 15)))
            handler.sdp_of("multipart/mixed; boundary=b", body.encode())
            handler.uri_of(body)
            handler.tag_of(body)
            handler.aor(body)


if __name__ == "__main__":
    unittest.main()
