"""The addresses digestd receives at: signed, short, lowercase-proof, useless once tampered."""

from __future__ import annotations

import pytest

from digestd.core.config import ConfigError, Settings, load_settings
from digestd.inbound.addresses import (
    is_ours,
    read_address,
    request_address,
    unsubscribe_address,
    verify_delivery,
    verify_subscriber,
    verp_address,
)

KEY = "test-secret-key-0123456789"
SETTINGS = Settings(bounce_address="bounces@bounce.example.org")


def test_verp_address_names_its_delivery_and_only_ours_verify() -> None:
    address = verp_address(SETTINGS, KEY, 987654321)
    local, domain = address.split("@")
    assert domain == "bounce.example.org" and local.startswith("bounces+")
    assert len(local) <= 64 and address == address.lower()
    ours = read_address(SETTINGS, address)
    assert ours is not None and ours.role == "verp" and ours.ident == 987654321
    assert verify_delivery(KEY, ours)
    assert not verify_delivery("another-secret-key-000000", ours)


def test_an_mta_that_changes_case_changes_nothing() -> None:
    address = verp_address(SETTINGS, KEY, 42).upper()
    ours = read_address(SETTINGS, address)
    assert ours is not None and verify_delivery(KEY, ours)


@pytest.mark.parametrize("position", [9, 12, -20])
def test_a_tampered_token_does_not_verify(position: int) -> None:
    address = verp_address(SETTINGS, KEY, 42)
    local = address.split("@")[0]
    i = position % len(local)
    swapped = "3" if local[i] != "3" else "4"
    tampered = local[:i] + swapped + local[i + 1 :] + "@bounce.example.org"
    ours = read_address(SETTINGS, tampered)
    assert ours is not None  # still our domain: accepted, recorded, and ignored
    assert not verify_delivery(KEY, ours)


def test_another_delivery_id_under_the_same_signature_does_not_verify() -> None:
    address = verp_address(SETTINGS, KEY, 42)
    other = address.replace("+d16-", "+d17-")
    assert other != address
    ours = read_address(SETTINGS, other)
    assert ours is not None and not verify_delivery(KEY, ours)


def test_unsubscribe_address_is_revoked_with_the_subscribers_links() -> None:
    address = unsubscribe_address(SETTINGS, KEY, 7, link_key="k7abcdefghij")
    ours = read_address(SETTINGS, address)
    assert ours is not None and ours.role == "unsubscribe" and ours.ident == 7
    assert len(address.partition("@")[0]) <= 64
    assert verify_subscriber(KEY, ours, "k7abcdefghij")
    assert not verify_subscriber(KEY, ours, "a-new-key-00")  # links withdrawn
    # An address made before link keys signed the token version: honoured while current.
    legacy = read_address(SETTINGS, unsubscribe_address(SETTINGS, KEY, 7, 1))  # type: ignore[arg-type]
    assert legacy is not None and verify_subscriber(KEY, legacy, "k7abcdefghij", 1)
    assert not verify_subscriber(KEY, legacy, "k7abcdefghij", 2)
    # A subscriber token is not a delivery token, even for the same number.
    assert not verify_delivery(KEY, ours)


def test_is_ours_accepts_our_domain_and_nothing_else() -> None:
    assert is_ours(SETTINGS, "bounces@bounce.example.org")
    assert is_ours(SETTINGS, "<Bounces@BOUNCE.example.org>")
    assert is_ours(SETTINGS, request_address(SETTINGS))
    assert is_ours(SETTINGS, "bounces+garbage@bounce.example.org")  # recorded, not honoured
    assert not is_ours(SETTINGS, "postmaster@bounce.example.org")
    assert not is_ours(SETTINGS, "bounces@example.org")
    assert not is_ours(SETTINGS, "victim@elsewhere.example")
    assert not is_ours(SETTINGS, "bounces@bounce.example.org.evil.example")
    assert not is_ours(Settings(), "bounces@bounce.example.org")  # unset: nothing is ours


def test_bounce_address_setting_is_checked() -> None:
    settings = load_settings({"DIGESTD_BOUNCE_ADDRESS": "Bounces@Bounce.Example.org"}, None)
    assert settings.bounce_address == "bounces@bounce.example.org"
    for bad in (
        "not an address",
        "Bounces <b@example.org>",
        "a+b@example.org",
        "x" * 40 + "@e.org",
    ):
        with pytest.raises(ConfigError, match="DIGESTD_BOUNCE_ADDRESS"):
            load_settings({"DIGESTD_BOUNCE_ADDRESS": bad}, None)
