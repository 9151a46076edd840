"""IDN domains become A-labels on the way out; non-ASCII local parts stay as they are."""

from __future__ import annotations

import pytest

from digestd.core.config import ConfigError, load_settings
from digestd.mail.idn import ascii_domain, ascii_mailbox, needs_smtputf8
from digestd.mail.mime import compose


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ada@bücher.example", "ada@xn--bcher-kva.example"),
        ("ada@BÜCHER.example", "ada@xn--bcher-kva.example"),  # UTS #46 maps case
        ("ada@example.org", "ada@example.org"),
        ("jöran@bücher.example", "jöran@xn--bcher-kva.example"),
        ("no-at-sign", "no-at-sign"),
        ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
    ],
)
def test_ascii_domain(address: str, expected: str) -> None:
    assert ascii_domain(address) == expected


def test_only_a_non_ascii_local_part_needs_smtputf8() -> None:
    assert not needs_smtputf8("ada@bücher.example")
    assert needs_smtputf8("jöran@example.org")


def test_header_values_keep_their_name() -> None:
    assert ascii_mailbox("Papiere <digest@bücher.example>") == (
        "Papiere <digest@xn--bcher-kva.example>"
    )
    assert ascii_mailbox("digest@example.org") == "digest@example.org"


def test_compose_writes_idn_domains_as_a_labels() -> None:
    msg = compose(sender="Ü <d@bücher.example>", to="ada@bücher.example", subject="s", text="t")
    assert msg["To"].addresses[0].addr_spec == "ada@xn--bcher-kva.example"
    assert msg["From"].addresses[0].addr_spec == "d@xn--bcher-kva.example"
    assert msg.as_bytes().isascii()


def test_from_and_bounce_addresses_are_stored_with_a_labels() -> None:
    settings = load_settings(
        {
            "DIGESTD_FROM": "Papiere <digest@bücher.example>",
            "DIGESTD_BOUNCE_ADDRESS": "bounces@bücher.example",
        },
        env_file=None,
    )
    assert settings.from_address == "Papiere <digest@xn--bcher-kva.example>"
    assert settings.bounce_address == "bounces@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DIGESTD_FROM", "Jöran <jöran@example.org>"), ("DIGESTD_BOUNCE_ADDRESS", "bö@example.org")],
)
def test_our_own_addresses_need_an_ascii_local_part(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} needs an ASCII local part"):
        load_settings({variable: value}, env_file=None)
