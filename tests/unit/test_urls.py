"""One parser for the http(s) addresses the agent and the CLI take."""

from __future__ import annotations

import pytest

from aperture.errors import UsageError
from aperture.urls import parse_http_address


def test_addresses_give_the_target_grpc_dials() -> None:
    plain = parse_http_address("http://agg", "--endpoint", 50051)
    assert (plain.target, plain.tls) == ("agg:50051", False)
    v6 = parse_http_address(" https://[::1]:9443/ ", "--api", 9090)
    assert (v6.target, v6.tls) == ("[::1]:9443", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://[::1", "--api 'http://[::1' is not a valid URL (Invalid IPv6 URL)"),
        ("grpc://agg:1", "--api 'grpc://agg:1' is not an http:// or https:// URL"),
        ("agg:9090", "--api 'agg:9090' is not an http:// or https:// URL"),
        ("http://agg:99999", "--api 'http://agg:99999' has an invalid port"),
        ("http://:9090", "--api 'http://:9090' names no host"),
    ],
)
def test_a_bad_address_is_one_sentence_naming_the_flag(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_http_address(text, "--api", 9090)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert message.endswith(".") and "\n" not in message
