"""Signed links made in one go for several purposes are the same links, and stay bound to
their purpose and subscriber."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from digestd.core.tokens import (
    TokenError,
    link,
    links,
    read_token,
    view_url,
    vote_mac,
    vote_macs,
)

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


def test_view_links_expire_after_90_days_and_carry_the_period() -> None:
    with time_machine.travel("2026-11-26 08:00:00+00:00", tick=False):
        view = links(BASE, SECRET, ("unsubscribe", "preferences", "view"), 9, 1)[2]
    url = view_url(view, "2026-W48")
    assert url.startswith("https://digest.example.org/view/") and url.endswith("/2026-W48")
    token = view.rsplit("/", 1)[1]
    now = datetime(2026, 11, 26, 8, tzinfo=UTC).timestamp()
    assert read_token(SECRET, "view", token, now_ts=now + 89 * 86400).subscriber_id == 9
    with pytest.raises(TokenError, match="expired"):
        read_token(SECRET, "view", token, now_ts=now + 91 * 86400)
    with pytest.raises(TokenError):
        read_token(SECRET, "preferences", token, now_ts=now)


@time_machine.travel("2026-11-26 08:00:00+00:00", tick=False)
def test_links_are_itsdangerous_default_tokens_so_links_already_mailed_keep_working() -> None:
    """The signer's digest method is set for speed; the tokens must stay byte-for-byte
    those of itsdangerous' defaults, or every link in digests already sent would break."""
    plain = URLSafeTimedSerializer(SECRET, salt="digestd.unsubscribe").dumps([42, 3])
    assert links(BASE, SECRET, ("unsubscribe",), 42, 3) == [f"{BASE}unsubscribe/{plain}"]
    assert read_token(SECRET, "unsubscribe", plain).subscriber_id == 42


def test_a_compressed_token_from_itsdangerous_defaults_still_reads() -> None:
    """Payloads are no longer compressed when dumped; one that itsdangerous compressed
    (a payload of repeated digits) must still verify."""
    plain = URLSafeTimedSerializer(SECRET, salt="digestd.unsubscribe").dumps([1111111111, 1111])
    assert plain.startswith(".")  # the compressed form
    claims = read_token(SECRET, "unsubscribe", plain)
    assert (claims.subscriber_id, claims.token_version) == (1111111111, 1111)


# Made by the code before links were signed from a prepared HMAC (main at 1a1a5f4), at
# 2026-12-06 22:00 UTC: links already mailed must read, and the same input still gives them.
ISSUED_KEY = "k3Y-link_key-0123456789AB"
ISSUED = {
    "unsubscribe": "WzQyNDIsImszWS1saW5rX2tleS0wMTIzNDU2Nzg5QUIiXQ.axXa4A."
    "N9t8VGNyW1sIJsWRDvIYuAyQCxk",
    "preferences": "WzQyNDIsImszWS1saW5rX2tleS0wMTIzNDU2Nzg5QUIiXQ.axXa4A."
    "r2y2-lVXfYms3k4AZg2k5R0bymc",
    "view": "WzQyNDIsImszWS1saW5rX2tleS0wMTIzNDU2Nzg5QUIiXQ.axXa4A.0KMOfPz90lc69cB7wnjb-0Rc5tU",
    "vote": "WzQyNDIsImszWS1saW5rX2tleS0wMTIzNDU2Nzg5QUIiXQ.axXa4A.i4Tt7jombDwTOHsvOcteWd-JSko",
}
ISSUED_VOTE_MACS = ["645f7f7a8cd64a85", "a1f07e3afc0d0e30", "05f75ffd88aa4008", "0c1af4c01ff06c44"]


@time_machine.travel("2026-12-06 22:00:00+00:00", tick=False)
def test_a_digests_links_are_byte_for_byte_the_tokens_already_issued() -> None:
    got = links(BASE, SECRET, tuple(ISSUED), 4242, ISSUED_KEY)
    assert got == [f"{BASE}{purpose}/{token}" for purpose, token in ISSUED.items()]
    for purpose, token in ISSUED.items():
        plain = URLSafeTimedSerializer(SECRET, salt=f"digestd.{purpose}").dumps([4242, ISSUED_KEY])
        assert plain == token  # itsdangerous' defaults give the same
        claims = read_token(SECRET, purpose, token)
        assert (claims.subscriber_id, claims.link_key) == (4242, ISSUED_KEY)
    assert vote_macs(SECRET, ISSUED["vote"], (17, 5)) == ISSUED_VOTE_MACS


def test_links_of_one_message_equal_make_token_for_any_subscriber() -> None:
    purposes = ("unsubscribe", "preferences", "view", "vote")
    for second in (0, 1, 255, 1_800_000_000):
        for sub_id, key in ((1, "a"), (987654321, "Zz_-09" * 5), (7, "é")):
            with time_machine.travel(second, tick=False):
                got = links(BASE, SECRET, purposes, sub_id, key)
                want = [link(BASE, SECRET, p, sub_id, key) for p in purposes]
            assert got == want


def test_vote_macs_equal_one_vote_mac_per_paper_and_direction() -> None:
    token = ISSUED["vote"]
    ids = (1, 17, 5, 123456789)
    want = [vote_mac(SECRET, token, e, d) for e in ids for d in ("up", "down")]
    assert vote_macs(SECRET, token, ids) == want
    assert vote_macs("another-secret", token, ids) != want
