"""Reading real bounces: flufl.bounce's sample set and a third of Sisimai's, against their labels.

Each file is read as `digestd inbound` reads it (parse + classify, no database). Where our
reading differs from the label, the file is listed below with the reason we think ours is
right, or at least safe; the test then checks our reading stays what we say it is, so a
change in either direction is noticed.

Severity: Sisimai's softbounce 0 is `hard` (the address itself is bad); its reasons
blocked, spamdetected, policyviolation, securityerror, rejected, norelaying and
virusdetected are `sender` (about us, never held against a subscriber); the rest `soft`.
A delayed (not yet failed) recipient is compared as soft.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digestd.inbound.classify import Reading, classify
from digestd.inbound.parse import parse

BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
SISIMAI = json.loads((BOUNCES / "sisimai" / "expected.json").read_text())
FLUFL = json.loads((BOUNCES / "flufl-bounce" / "expected.json").read_text())
SENDER_REASONS = {
    "blocked",
    "spamdetected",
    "policyviolation",
    "securityerror",
    "rejected",
    "norelaying",
    "virusdetected",
}

# ---- where we read a Sisimai sample differently, and why --------------------------------

NO_MODULE = (
    "Sisimai 4.25 has no module for this MTA and finds nothing, but it is a bounce: the text "
    "names the failed address and the reason (for DragonFly's samples the local part even "
    "names Sisimai's own reason)"
)
NOT_A_RECIPIENT_FAILURE = (
    "not about a recipient of ours: a mailing list's answer to a post (fml: 'you are not a "
    "member', Apache James: a reply to the list); a digest sender must not count it"
)
USER_UNKNOWN = (
    "Sisimai says 'filtered' (soft), but the server's own words say the mailbox does not exist "
    "('User unknown', 'No such user', 'Recipient Not Found', 'does not exist', 'doesn't have "
    "a … account'); a mailbox that does not exist is a hard bounce"
)
STATUS_SAYS_MAILBOX = (
    "the enhanced status code 5.1.1 says the mailbox is bad; Sisimai weighs other words "
    "(procmail's error, 'recipient preferences', a stray 'mailbox full'); we follow the code"
)
HOST_UNKNOWN = "the server says 'Host unknown' for the recipient's domain: hard, not a block"
NO_REASON_WORDS = (
    "Sisimai knows this MTA's phrasing; our generic reading finds no reason in the words and "
    "counts it soft, the conservative side: soft bounces bounce only after several days"
)
BOTH_NOT_THE_ADDRESS = (
    "Sisimai's reason and ours differ only between 'soft' and 'sender': either way the "
    "address is not held to be bad and the subscriber is not dropped"
)

KIND_DIFFERS: dict[str, tuple[str, str]] = {
    **{f"lhost-dragonfly-{n:02d}.eml": ("bounce", NO_MODULE) for n in range(1, 29, 3)},
    "lhost-mimecast-01.eml": ("bounce", NO_MODULE),
    "rb-issue-368-bug.eml": ("bounce", NO_MODULE + " (Sisimai's own bug report #368)"),
    "lhost-fml-02.eml": ("none", NOT_A_RECIPIENT_FAILURE),
    "lhost-apachejames-01.eml": ("none", NOT_A_RECIPIENT_FAILURE),
}
SEVERITY_DIFFERS: dict[str, tuple[str, str]] = {
    **{
        name: ("hard", USER_UNKNOWN)
        for name in (
            "lhost-exchange2003-04.eml",
            "lhost-mailfoundry-01.eml",
            "lhost-mailru-07.eml",
            "lhost-mfilter-01.eml",
            "lhost-office365-04.eml",
            "lhost-postfix-07.eml",
            "lhost-receivingses-01.eml",
            "lhost-sendmail-19.eml",
            "lhost-sendmail-41.eml",
            "lhost-sendmail-50.eml",
            "lhost-surfcontrol-01.eml",
            "lhost-x1-01.eml",
            "lhost-x2-01.eml",
            "rfc3464-35.eml mikeneko@neko.example.or.jp",
            "rfc3464-42.eml",
            "rhost-kddi-01.eml",
            "rhost-nttdocomo-01.eml",
        )
    },
    **{
        name: ("hard", STATUS_SAYS_MAILBOX)
        for name in ("lhost-postfix-01.eml", "rfc3464-01.eml", "rhost-facebook-03.eml")
    },
    "lhost-v5sendmail-07.eml kijitora@example.org": ("hard", HOST_UNKNOWN),
    **{
        name: ("soft", NO_REASON_WORDS)
        for name in (
            "lhost-imailserver-01.eml",
            "lhost-mailmarshal-02.eml",
            "lhost-verizon-01.eml",
            "rfc3464-06.eml",
        )
    },
    **{
        name: ("soft", BOTH_NOT_THE_ADDRESS)
        for name in (
            "lhost-exim-45.eml",
            "lhost-ezweb-08.eml",
            "lhost-googlegroups-01.eml",
            "lhost-googlegroups-04.eml",
            "lhost-googlegroups-07.eml",
            "lhost-googlegroups-10.eml",
            "lhost-googlegroups-13.eml",
            "lhost-opensmtpd-13.eml",
            "lhost-postfix-39.eml",
            "lhost-sendmail-10.eml",
            "lhost-sendmail-16.eml",
            "lhost-sendmail-56.eml",
            "rfc3464-35.eml kijitora@nyaan.example.com",
            "rhost-franceptt-04.eml",
            "rhost-franceptt-07.eml",
        )
    },
    **{
        name: ("sender", BOTH_NOT_THE_ADDRESS)
        for name in ("lhost-postfix-78.eml", "rhost-spectrum-01.eml", "rhost-tencent-01.eml")
    },
}
RECIPIENT_DIFFERS = {
    # Sisimai reports the Final-Recipient rewritten by the receiving side; we report the
    # recipient our message was addressed to (what finds the subscriber).
    "lhost-office365-04.eml": "otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp",
    # The DSN names a local mailbox path, not an address; Sisimai reconstructs one.
    "lhost-exim-60.eml": None,
}


def read(path: Path) -> Reading:
    return classify(parse(path.read_bytes(), 10 * 1024 * 1024), mail_from=None, person_mail=False)


def sisimai_kind(rows: list[dict]) -> str:
    if not rows:
        return "none"
    return {"feedback": "complaint", "vacation": "auto_reply"}.get(rows[0]["reason"], "bounce")


def sisimai_severity(row: dict) -> str:
    if row["softbounce"] == 0:
        return "hard"
    return "sender" if row["reason"] in SENDER_REASONS else "soft"


def our_kind(reading: Reading) -> str:
    return reading.kind if reading.kind in ("bounce", "complaint", "auto_reply") else "none"


@pytest.mark.parametrize("name", sorted(SISIMAI))
def test_sisimai_sample(name: str) -> None:
    reading = read(BOUNCES / "sisimai" / name)
    rows = SISIMAI[name]
    want_kind = KIND_DIFFERS.get(name, (sisimai_kind(rows), ""))[0]
    assert our_kind(reading) == want_kind, KIND_DIFFERS.get(name, ("", "Sisimai's label"))[1]
    if want_kind != "bounce" or name in KIND_DIFFERS:
        if want_kind == "complaint":
            found = {r.address.lower() for r in reading.recipients}
            assert {row["recipient"].lower() for row in rows} & found or not found
        return
    ours = {}
    for r in reading.recipients:
        severity = "soft" if r.action == "delayed" else r.failure.severity
        ours[r.address.lower()] = ours[r.final.lower()] = severity
    for row in rows:
        address = row["recipient"].lower()
        if name in RECIPIENT_DIFFERS:
            address = (RECIPIENT_DIFFERS[name] or "").lower()
            if not address:
                continue
        assert address in ours, f"{row['recipient']} not found in {sorted(ours)}"
        key = f"{name} {row['recipient']}"
        want, why = SEVERITY_DIFFERS.get(key) or SEVERITY_DIFFERS.get(
            name, (sisimai_severity(row), f"Sisimai: {row['reason']}")
        )
        assert ours[address] == want, why


# ---- flufl.bounce's own sample set --------------------------------------------------------

FLUFL_DIFFERS = {
    # flufl.bounce was written for mailing lists, where the returned message's To is the
    # list, so its tests expect no address here. digestd mails each subscriber alone: the
    # returned copy's To IS the failed recipient, and the VERP token or Message-ID (checked
    # first) confirm it.
    "dumbass_01.txt": ["python-list@python.org"],
    "simple_43.txt": ["test-a@listserv.our-domain.de"],
}


@pytest.mark.parametrize("name", sorted(FLUFL))
def test_flufl_sample(name: str) -> None:
    reading = read(BOUNCES / "flufl-bounce" / name)
    expected = FLUFL[name]
    want = {a.lower() for a in FLUFL_DIFFERS.get(name, expected["addresses"])}
    action = "delayed" if expected["temporary"] else "failed"
    got = {
        r.address.lower()
        for r in reading.recipients
        if reading.kind == "bounce" and r.action == action
    }
    assert got == want
    if want:
        assert reading.kind == "bounce"
        assert not any(r.failure.hard for r in reading.recipients if r.action == "delayed")
