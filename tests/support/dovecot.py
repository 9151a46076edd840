"""A real Dovecot IMAP server (Debian's dovecot-imapd) for tests, on loopback random ports.

It runs in the foreground (`dovecot -F`) with a configuration of its own in a temporary
directory: a passwd-file of users (each test takes a fresh one, so mailboxes never mix),
Maildirs under that directory, plain IMAP with STARTTLS and implicit-TLS IMAPS, both with a
certificate made for 127.0.0.1. Start it once per test session; `stop()` ends it.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.smtp import free_port
from tests.support.tls import SelfSignedCert, self_signed_cert

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USERS = 100  # one per test that needs a mailbox, for the whole run


class DovecotUnavailable(RuntimeError):
    """dovecot is not installed or would not start; the message says why."""


@dataclass(frozen=True)
class ImapUser:
    name: str
    password: str
    server: DovecotServer

    def url(self, mailbox: str = "INBOX", tls: str = "none") -> str:
        """DIGESTD_INBOUND_IMAP for this user: tls is none, starttls or tls (imaps)."""
        if tls == "tls":
            return (
                f"imaps://{self.name}:{self.password}@127.0.0.1:{self.server.imaps_port}/{mailbox}"
            )
        query = "?tls=none" if tls == "none" else ""
        return (
            f"imap://{self.name}:{self.password}@127.0.0.1:{self.server.imap_port}/{mailbox}{query}"
        )

    def connect(self) -> imaplib.IMAP4:
        """A logged-in plain IMAP connection (to put mail in and look at what is left)."""
        conn = imaplib.IMAP4("127.0.0.1", self.server.imap_port, timeout=10)
        conn.login(self.name, self.password)
        return conn

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        conn = self.connect()
        try:
            typ, data = conn.append(mailbox, None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def messages(self, mailbox: str = "INBOX") -> list[bytes]:
        """Every message in `mailbox`, in order (read without marking them seen); [] if the
        mailbox does not exist."""
        conn = self.connect()
        try:
            typ, _ = conn.select(f'"{mailbox}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            out = []
            for uid in data[0].split():
                typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                out.extend(p[1] for p in parts if isinstance(p, tuple))
            return out
        finally:
            conn.logout()

    def flags(self, mailbox: str = "INBOX") -> list[bytes]:
        conn = self.connect()
        try:
            conn.select(f'"{mailbox}"', readonly=True)
            _, data = conn.fetch("1:*", "(FLAGS)")
            return [d for d in data if isinstance(d, bytes)]
        finally:
            conn.logout()


class DovecotServer:
    """dovecot -F with a temporary configuration; `new_user()` for a fresh mailbox."""

    def __init__(self) -> None:
        if not Path(DOVECOT).exists():
            raise DovecotUnavailable(
                "dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)"
            )
        # Dovecot's own processes (running as other users) must reach these files, so the
        # directory is world-searchable; the passwd-file holds throwaway test passwords.
        self.root = Path(tempfile.mkdtemp(prefix="digestd-dovecot-"))
        self.root.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.cert: SelfSignedCert = self_signed_cert(self.root / "tls")
        for p in (self.cert.cert.parent, self.cert.cert, self.cert.key):
            p.chmod(0o755 if p.is_dir() else 0o644)
        # Users are made up front: Dovecot notices a changed passwd-file only by its mtime,
        # at one-second granularity, so users added during the run could go unseen.
        self._users = [
            (f"u{i:03d}{secrets.token_hex(3)}", secrets.token_urlsafe(12)) for i in range(USERS)
        ]
        self.passwd = self.root / "passwd"
        self.passwd.write_text("".join(f"{name}:{pw}::::\n" for name, pw in self._users))
        self.passwd.chmod(0o644)
        self.log = self.root / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            # Dovecot never gives mail access to root: mailboxes belong to `nobody`.
            mail_user = pwd.getpwnam("nobody")
            service_users = ""
        else:
            mail_user = pwd.getpwuid(os.getuid())
            service_users = (
                f"default_internal_user = {mail_user.pw_name}\n"
                f"default_login_user = {mail_user.pw_name}\n"
            )
        self.uid, self.gid = mail_user.pw_uid, mail_user.pw_gid
        self.home = self.root / "home"
        self.home.mkdir(mode=0o755)
        os.chown(self.home, self.uid, self.gid)
        dh = Path("/usr/share/dovecot/dh.pem")
        (self.root / "dovecot.conf").write_text(
            f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
instance_name = digestd-test-{self.imap_port}
{service_users}
ssl = yes
ssl_cert = <{self.cert.cert}
ssl_key = <{self.cert.key}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password is answered at once (the default waits 2 s).
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = {min(self.uid, 100)}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd}
  default_fields = uid={self.uid} gid={self.gid} home={self.home}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: after a wrong password (a test of that refusal) Dovecot would make
  # the next logins from 127.0.0.1, other tests', wait 4 s and more.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
}}
"""
        )

    def start(self, timeout: float = 20) -> DovecotServer:
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Ready when both listeners accept; the bounded loop waits on that real event.
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode()
                raise DovecotUnavailable(f"dovecot exited: {err.strip()} {self.log_text()}")
            if _accepts(self.imap_port) and _accepts(self.imaps_port):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotUnavailable(f"dovecot did not listen within {timeout}s")
            time.sleep(0.02)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def new_user(self) -> ImapUser:
        """A user no test has used yet: an empty Maildir of its own."""
        if not self._users:
            raise RuntimeError(f"all {USERS} test IMAP users are taken: raise USERS")
        name, password = self._users.pop(0)
        return ImapUser(name, password, self)

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts this server's certificate (and nothing else)."""
        return self.cert.client_context()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
