"""Unit tests of mcptt-media's SDP handling (no Redis, no MDF needed): `make test` runs them."""

import random
import unittest

import handler

OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:4001\r\na=sendrecv\r\n"
    "a=candidate:1 1 UDP 1 10.0.0.5 4000 typ host\r\n"
    "m=application 4010 udp MCPTT\r\na=fmtp:MCPTT mc_queueing;mc_implicit_request\r\n"
    "m=video 5000 RTP/AVP 96\r\n"
)


class MediaAddress(unittest.TestCase):
    def test_audio_address_and_rtcp(self):
        self.assertEqual(handler.media_address(OFFER), ("10.0.0.5", 4000, 4001))
        no_rtcp = OFFER.replace("a=rtcp:4001\r\n", "")
        self.assertEqual(handler.media_address(no_rtcp), ("10.0.0.5", 4000, 4010),
                         "the floor-control stream's port")
        plain = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\n"
        self.assertEqual(handler.media_address(plain), ("127.0.0.1", 6000, 6001))
        media_level = "v=0\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
        self.assertEqual(handler.media_address(media_level), ("192.0.2.1", 6000, 6001))

    def test_no_audio_or_garbage(self):
        for bad in [None, "", "v=0\r\n", "m=audio x RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n",
                    "m=video 5 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n", "m=audio 70000 RTP/AVP 0\r\nc=IN IP4 h\r\n"]:
            self.assertIsNone(handler.media_address(bad), repr(bad))

    def test_random_text_never_raises(self):
        rng = random.Random(11)
        pieces = ["v=0", "c=IN IP4 1.2.3.4", "c=IN", "m=audio 1 RTP/AVP 0", "m=audio",
                  "m=application 9 udp MCPTT", "a=rtcp:", "a=rtcp:7", "\r\n", "\n", "x", " "]
        for _ in range(5000):
            text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
            handler.media_address(text)


class RelaySdp(unittest.TestCase):
    def test_every_stream_points_at_the_relay(self):
        sdp = handler.relay_sdp(OFFER, "203.0.113.9", 20000, 20001, 42)
        lines = sdp.split("\r\n")
        self.assertIn("c=IN IP4 203.0.113.9", lines)
        self.assertIn("m=audio 20000 RTP/AVP 8 0", lines)
        self.assertIn("a=rtcp:20001", lines)
        self.assertIn("m=application 20001 udp MCPTT", lines)
        self.assertIn("a=fmtp:MCPTT mc_queueing;mc_implicit_request", lines)
        self.assertIn("m=video 0 RTP/AVP 96", lines, "a stream the relay does not carry is refused")
        self.assertFalse(any(l.startswith(("a=candidate", "a=rtcp:4001")) for l in lines))
        self.assertTrue(lines[1].startswith("o=sluice 42 "))
        self.assertEqual(handler.media_address(sdp), ("203.0.113.9", 20000, 20001))

    def test_a_connection_line_is_added_when_missing(self):
        sdp = handler.relay_sdp("v=0\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 1.1.1.1\r\n",
                                "127.0.0.1", 20002, 20003, 1)
        self.assertEqual(handler.media_address(sdp), ("127.0.0.1", 20002, 20003))


if __name__ == "__main__":
    unittest.main()
