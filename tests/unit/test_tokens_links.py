"""Signed links made in one go for several purposes are the same links, and stay bound to
their purpose and subscriber."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from digestd.core.tokens import TokenError, link, links, read_token, view_url

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
