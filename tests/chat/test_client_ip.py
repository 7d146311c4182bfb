"""lib.chat.client_ip: the socket's address, or X-Forwarded-For only behind a trusted proxy."""
from __future__ import annotations

import pytest

from lib.chat.client_ip import client_ip
from lib.core.errors import InvalidSetting

TRUSTED = "10.0.0.0/8, 2001:db8::/32"


@pytest.mark.parametrize("peer, xff, trusted, want", [
    ("203.0.113.5", None, None, "203.0.113.5"),
    ("203.0.113.5", "198.51.100.1", None, "203.0.113.5"),            # no trusted proxies: header ignored
    ("203.0.113.5", "198.51.100.1", TRUSTED, "203.0.113.5"),         # peer not trusted: header ignored
    ("10.0.0.2", "198.51.100.1", TRUSTED, "198.51.100.1"),
    ("10.0.0.2", "1.2.3.4, 198.51.100.1", TRUSTED, "198.51.100.1"),  # the leftmost is the client's own claim
    ("10.0.0.2", "198.51.100.1, 10.0.0.3", TRUSTED, "198.51.100.1"),  # a chain of trusted proxies
    ("10.0.0.2", "10.0.0.4, 10.0.0.3", TRUSTED, "10.0.0.4"),
    ("10.0.0.2", "garbage, 198.51.100.1", TRUSTED, "198.51.100.1"),
    ("10.0.0.2", "198.51.100.1, garbage", TRUSTED, "10.0.0.2"),      # a bad hop: trust stops there
    ("10.0.0.2", None, TRUSTED, "10.0.0.2"),
    ("::ffff:203.0.113.5", None, None, "203.0.113.5"),
    ("2001:db8::1", "[2001:db9::7]:443", TRUSTED, "2001:db9::7"),
    ("198.51.100.1:5555", None, None, "198.51.100.1"),
    (None, "198.51.100.1", TRUSTED, None),
    ("not an ip", None, None, None),
])
def test_client_ip(peer, xff, trusted, want):
    assert client_ip(peer, xff, trusted) == want


def test_a_bad_trusted_setting_is_a_configuration_error():
    with pytest.raises(InvalidSetting) as caught:
        client_ip("10.0.0.1", None, "10.0.0.0/8, not-a-cidr")
    assert (caught.value.status, caught.value.setting) == (503, "TRUSTED_PROXY_CIDRS")
