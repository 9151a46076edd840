"""Signed links made in one go for several purposes are the same links, and stay bound to
their purpose and subscriber."""

from __future__ import annotations

import pytest
import time_machine

from digestd.tokens import TokenError, link, links, read_token

SECRET = "s3cret-key-for-tests"
BASE = "https://digest.example.org/"


@time_machine.travel("2026-11-26 08:00:00+00:00", tick=False)
def test_links_equal_one_link_per_purpose() -> None:
    got = links(BASE, SECRET, ("unsubscribe", "preferences"), 42, 3)
    assert got == [
        link(BASE, SECRET, "unsubscribe", 42, 3),
        link(BASE, SECRET, "preferences", 42, 3),
    ]
    assert got[0].startswith("https://digest.example.org/unsubscribe/")


def test_each_token_reads_back_only_for_its_purpose() -> None:
    unsub, prefs = links(BASE, SECRET, ("unsubscribe", "preferences"), 7, 2)
    u_token, p_token = unsub.rsplit("/", 1)[1], prefs.rsplit("/", 1)[1]
    claims = read_token(SECRET, "unsubscribe", u_token)
    assert (claims.subscriber_id, claims.token_version) == (7, 2)
    assert read_token(SECRET, "preferences", p_token).subscriber_id == 7
    for purpose, token in (("preferences", u_token), ("unsubscribe", p_token)):
        with pytest.raises(TokenError):
            read_token(SECRET, purpose, token)
    with pytest.raises(TokenError):
        read_token("another-secret", "unsubscribe", u_token)
