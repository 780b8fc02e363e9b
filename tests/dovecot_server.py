"""A throwaway Dovecot IMAP server for tests: 127.0.0.1, a free port, a temporary Maildir.

Dovecot from Debian's packages (``dovecot-imapd``; ``.ci/run`` installs it). The
server runs from a configuration of its own in a temporary directory (its own
base_dir, state, log and instance name), so it never touches a system Dovecot;
one plain-text login, no TLS (loopback only). Tests skip with a clear reason
where the binary is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "bounces"
PASSWORD = "imap-pass-0123456789"


@dataclass(frozen=True)
class Dovecot:
    port: int
    root: Path

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{folder}?tls=none"


def _binary() -> str:
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if found is None:
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dovecot(tmp: Path) -> Iterator[Dovecot]:
    binary = _binary()
    # not under pytest's tmp_path: that is 0700, and as root Dovecot's own users must
    # reach the configuration and the mail (``tmp`` is kept for the signature's sake)
    root = Path(tempfile.mkdtemp(prefix="stamp-dovecot-"))
    root.chmod(0o755)
    (root / "run").mkdir(parents=True)
    mail = root / "mail"
    mail.mkdir()
    # Dovecot refuses to serve mail as root: as root, the mail belongs to its own user
    uid, gid = os.getuid(), os.getgid()
    login_user = internal_user = pwd.getpwuid(uid).pw_name
    if uid == 0:
        try:
            entry = pwd.getpwnam("dovecot")
            login = pwd.getpwnam("dovenull")
        except KeyError:
            pytest.skip("dovecot is installed without its dovecot/dovenull users")
        uid, gid = entry.pw_uid, entry.pw_gid
        os.chown(mail, uid, gid)
        login_user, internal_user = login.pw_name, entry.pw_name
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::\n")
    port = _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/run/state
instance_name = stamp-test-{port}
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    err = (root / "stderr.txt").open("wb")
    # -F: in the foreground, as our child, so the test stops exactly the process it started
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=err, stderr=err
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                text = (root / "stderr.txt").read_text(errors="replace").strip()
                pytest.skip(f"dovecot did not start here: {text[:300]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"dovecot did not listen on port {port}")
                time.sleep(0.05)
        yield Dovecot(port, root)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        err.close()
        shutil.rmtree(root, ignore_errors=True)
