"""The SMTP relay as digestd will use it: connect, EHLO, STARTTLS or TLS, AUTH, and the
extensions that make bulk sending efficient (PIPELINING) and safe (SIZE). Nothing is sent."""

from __future__ import annotations

import contextlib
import ipaddress
import ssl

import aiosmtplib

from digestd.core.config import Settings
from digestd.doctor.result import Check, fail, ok, warn

PROBE_TIMEOUT_SECONDS = 10.0
SMALL_SIZE_LIMIT = 1024 * 1024  # a digest with images inlined can approach this


def is_local(host: str) -> bool:
    """Loopback: traffic never leaves the machine, so plain text is acceptable."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]


async def check_smtp(settings: Settings, tls_context: ssl.SSLContext | None = None) -> list[Check]:
    """One probe connection, one line per step; stops at the first step that fails."""
    s = settings
    where = f"{s.smtp_host}:{s.smtp_port}"
    client = aiosmtplib.SMTP(
        hostname=s.smtp_host,
        port=s.smtp_port,
        use_tls=s.smtp_tls == "tls",
        start_tls=False,  # decided below, step by step
        tls_context=tls_context if s.smtp_tls != "none" else None,
        timeout=min(s.smtp_timeout, PROBE_TIMEOUT_SECONDS),
    )
    checks: list[Check] = []
    try:
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            fix = "check DIGESTD_SMTP_HOST and DIGESTD_SMTP_PORT, and that the relay runs"
            if s.smtp_tls == "tls":
                fix += " (DIGESTD_SMTP_TLS=tls expects implicit TLS, usually port 465)"
            return [fail("smtp connect", f"cannot connect to {where}: {_reason(exc)}", fix)]
        checks.append(ok("smtp connect", f"{where} answered"))
        try:
            await client.ehlo()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            checks.append(
                fail("smtp ehlo", f"EHLO refused: {_reason(exc)}", "is this an SMTP server?")
            )
            return checks
        checks.append(ok("smtp ehlo", "extended SMTP"))

        if s.smtp_tls == "starttls":
            if not client.supports_extension("starttls"):
                checks.append(
                    fail(
                        "smtp tls",
                        "DIGESTD_SMTP_TLS=starttls but the server does not offer STARTTLS",
                        "use the relay's submission port (587), or DIGESTD_SMTP_TLS=tls on 465",
                    )
                )
                return checks
            try:
                await client.starttls(tls_context=tls_context)
                await client.ehlo()
            except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
                checks.append(
                    fail(
                        "smtp tls",
                        f"STARTTLS failed: {_reason(exc)}",
                        "the relay's certificate must be valid for DIGESTD_SMTP_HOST",
                    )
                )
                return checks
            checks.append(ok("smtp tls", "STARTTLS, certificate verified"))
        elif s.smtp_tls == "tls":
            checks.append(ok("smtp tls", "implicit TLS, certificate verified"))
        elif is_local(s.smtp_host):
            checks.append(ok("smtp tls", "none, to a relay on this machine"))
        else:
            checks.append(
                warn(
                    "smtp tls",
                    f"no TLS to {s.smtp_host}: mail and password cross the network in clear",
                    "set DIGESTD_SMTP_TLS=starttls (port 587) or tls (port 465)",
                )
            )

        if s.smtp_username:
            if not client.supports_extension("auth"):
                checks.append(
                    fail(
                        "smtp auth",
                        "a login is configured but the server offers no AUTH here",
                        "many relays offer AUTH only after STARTTLS: set DIGESTD_SMTP_TLS",
                    )
                )
                return checks
            try:
                await client.login(s.smtp_username, s.smtp_password or "")
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                checks.append(
                    fail(
                        "smtp auth",
                        f"login as {s.smtp_username} refused: {_reason(exc)}",
                        "check DIGESTD_SMTP_USERNAME and DIGESTD_SMTP_PASSWORD",
                    )
                )
                return checks
            checks.append(ok("smtp auth", f"logged in as {s.smtp_username}"))
        else:
            offered = " (the server offers AUTH)" if client.supports_extension("auth") else ""
            checks.append(ok("smtp auth", f"no login configured{offered}"))

        if client.supports_extension("pipelining"):
            checks.append(ok("smtp pipelining", "offered"))
        else:
            checks.append(
                warn(
                    "smtp pipelining",
                    "not offered: every message costs extra round trips",
                    "use a relay that offers PIPELINING (most do) for large lists",
                )
            )
        checks.append(_size(client.esmtp_extensions.get("size")))
        checks.append(_smtputf8(client.supports_extension("smtputf8"), s.smtp_smtputf8))
    finally:
        with contextlib.suppress(Exception):
            await client.quit()
        client.close()
    return checks


def _smtputf8(offered: bool, setting: bool) -> Check:
    """Whether the relay takes non-ASCII addresses, next to what sign-ups assume
    (DIGESTD_SMTP_SMTPUTF8: only then are such addresses accepted)."""
    if offered and setting:
        return ok("smtp smtputf8", "offered; addresses with non-ASCII local parts are accepted")
    if offered:
        return ok(
            "smtp smtputf8",
            "offered, not used: set DIGESTD_SMTP_SMTPUTF8=true to accept addresses like josé@…",
        )
    if setting:
        return warn(
            "smtp smtputf8",
            "not offered, but DIGESTD_SMTP_SMTPUTF8=true: mail to non-ASCII addresses will fail",
            "set DIGESTD_SMTP_SMTPUTF8=false, or use a relay that offers SMTPUTF8",
        )
    return ok("smtp smtputf8", "not offered; sign-ups with non-ASCII local parts are refused")


def _size(announced: str | None) -> Check:
    if announced is None:
        return warn(
            "smtp size",
            "no SIZE announced: an oversized digest is refused only after upload",
            "use a relay that announces SIZE",
        )
    try:
        limit = int(announced.split()[0]) if announced.strip() else 0
    except ValueError:
        return warn("smtp size", f"unreadable SIZE {announced!r}", "check the relay's settings")
    if limit == 0:
        return ok("smtp size", "offered, no limit")
    if limit < SMALL_SIZE_LIMIT:
        return warn(
            "smtp size",
            f"messages up to {limit} bytes only",
            "raise the relay's message size limit to at least 1 MiB",
        )
    return ok("smtp size", f"messages up to {limit / 1024 / 1024:.1f} MiB")
