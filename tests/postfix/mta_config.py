"""The configuration files of the private Postfix + Dovecot instance (see ``mta``).

Pure text rendering: ``Layout`` says where everything lives, ``Endpoint`` describes
one smtpd listener, and ``main_cf``/``master_cf``/``dovecot_conf`` render the files.
Nothing can leave the machine: the only delivery transport is a pipe(8) service
that stores each message under ``Layout.mail_dir``; local and virtual delivery are
``error:``, and no smtp/lmtp client service exists in master.cf at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "BUSY_PREFIX",
    "CLIENT_HOSTNAME",
    "DEFAULT_ENDPOINTS",
    "HOST",
    "MTA_HOSTNAME",
    "TEST_TOKENS",
    "TEST_USERS",
    "UNKNOWN_PREFIX",
    "Endpoint",
    "Layout",
    "deliver_sh",
    "dovecot_conf",
    "main_cf",
    "master_cf",
    "passwd_file",
    "recipient_access",
]

HOST = "127.0.0.1"
MTA_HOSTNAME = "mta.smtpkit.test"
CLIENT_HOSTNAME = "client.smtpkit.test"

TEST_USERS: Mapping[str, str] = {
    "alice@example.com": "correct horse battery staple",
    # Non-ASCII user name and password, sent as UTF-8 (RFC 4616 §2, RFC 4954 §4).
    "用户@example.com": "пароль-密码-🔑",
}
# XOAUTH2/OAUTHBEARER: Dovecot verifies the bearer token like a password.
TEST_TOKENS: Mapping[str, str] = {"oauth@example.com": "ya29.test-token-0123456789"}

# Recipients whose local part starts with these get a fixed reply from
# check_recipient_access, on every endpoint.
BUSY_PREFIX = "busy"  # 450 4.2.1 mailbox busy
UNKNOWN_PREFIX = "nouser"  # 550 5.1.1 no such user

TLSModeName = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class Layout:
    """Where one instance keeps its files, all under ``root``."""

    root: Path

    @property
    def config_dir(self) -> Path:
        """Postfix's config_directory (root-owned files only, as postfix-script checks)."""
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        """Postfix's queue_directory; the daemons run with it as working directory."""
        return self.root / "queue"

    @property
    def mail_dir(self) -> Path:
        """Delivered mail: ``tmp/`` while being written, then ``new/``."""
        return self.root / "mail"

    @property
    def postfix_log(self) -> Path:
        """Postfix's maillog_file."""
        return self.root / "postfix.log"

    @property
    def dovecot_dir(self) -> Path:
        """Dovecot's base_dir, with the auth socket Postfix talks to."""
        return self.root / "dovecot"

    @property
    def dovecot_log(self) -> Path:
        """Dovecot's log_path."""
        return self.root / "dovecot.log"

    @property
    def auth_socket(self) -> Path:
        """Dovecot's SASL socket for Postfix."""
        return self.dovecot_dir / "auth-postfix"


@dataclass(frozen=True)
class Endpoint:
    """One smtpd listener in master.cf.

    Attributes:
        name: Key in ``PostfixInstance.ports``.
        tls: How clients must connect: ``"none"`` (no TLS offered), ``"starttls"``
            (STARTTLS required before MAIL and AUTH) or ``"implicit"`` (TLS from the
            first byte, ``smtpd_tls_wrappermode``).
        auth: Offer SASL AUTH and require it for relaying (mynetworks no longer
            counts).
        options: Extra ``-o name=value`` overrides for this smtpd.
    """

    name: str
    tls: TLSModeName = "none"
    auth: bool = False
    options: Mapping[str, str] = field(default_factory=dict)

    def smtpd_options(self) -> dict[str, str]:
        """The ``-o`` overrides that make this endpoint what it says it is."""
        opts: dict[str, str] = {"syslog_name": f"postfix/{self.name}"}
        if self.tls == "none":
            opts["smtpd_tls_security_level"] = "none"
        elif self.tls == "starttls":
            opts["smtpd_tls_security_level"] = "encrypt"
            opts["smtpd_tls_auth_only"] = "yes"
        else:
            opts["smtpd_tls_wrappermode"] = "yes"
            opts["smtpd_tls_security_level"] = "encrypt"
        if self.auth:
            opts["smtpd_sasl_auth_enable"] = "yes"
            opts["smtpd_relay_restrictions"] = (
                "permit_sasl_authenticated,reject_unauth_destination"
            )
            opts["mynetworks"] = ""  # only authenticated clients may relay
        else:
            opts["smtpd_sasl_auth_enable"] = "no"
        opts.update(self.options)
        return opts


_PIPELINING_GUARD = "reject_unauth_pipelining"
DEFAULT_ENDPOINTS: tuple[Endpoint, ...] = (
    # Any bare LF is refused with 550 (the default exempts mynetworks: clear that).
    Endpoint(
        "plain",
        options={
            "smtpd_forbid_bare_newline": "reject",
            "smtpd_forbid_bare_newline_exclusions": "",
        },
    ),
    Endpoint("submission", tls="starttls", auth=True),
    Endpoint("smtps", tls="implicit", auth=True),
    # Also refuses, in every restriction list, clients that send ahead.
    Endpoint(
        "pipelining",
        options={
            "smtpd_client_restrictions": _PIPELINING_GUARD,
            "smtpd_helo_restrictions": _PIPELINING_GUARD,
            "smtpd_sender_restrictions": _PIPELINING_GUARD,
            "smtpd_data_restrictions": _PIPELINING_GUARD,
            "smtpd_end_of_data_restrictions": _PIPELINING_GUARD,
        },
    ),
    # smtpd enforces its own message_size_limit during DATA, SIZE advertised or not.
    Endpoint("small", options={"message_size_limit": "20000"}),
    Endpoint(
        "small_nosize",
        options={
            "message_size_limit": "20000",
            "smtpd_discard_ehlo_keywords": "size",
        },
    ),
    Endpoint("limits", options={"smtpd_recipient_limit": "3"}),
    Endpoint("ascii", options={"smtputf8_enable": "no"}),
    Endpoint(
        "ratelimit",
        options={
            # Per anvil_rate_time_unit (1 s); MAIL beyond it gets 450 4.7.1.
            "smtpd_client_message_rate_limit": "2",
            # mynetworks is exempt by default; 127.0.0.1 must be counted here.
            "smtpd_client_event_limit_exceptions": "",
        },
    ),
    # anvil(8) allows 2 simultaneous sessions from one client; the third gets
    # "421 4.7.0 <host> Error: too many connections from <addr>" as its greeting.
    Endpoint(
        "anvil",
        options={
            "smtpd_client_connection_count_limit": "2",
            "smtpd_client_event_limit_exceptions": "",
        },
    ),
)


def main_cf(layout: Layout) -> dict[str, str]:
    """The main.cf settings."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(layout.queue_dir),
        "data_directory": str(layout.root / "data"),
        "maillog_file": str(layout.postfix_log),
        # The default allows only /var and /dev/stdout.
        "maillog_file_prefixes": str(layout.root),
        "myhostname": MTA_HOSTNAME,
        "mydomain": "smtpkit.test",
        "myorigin": "$myhostname",
        "mydestination": "",
        "relay_domains": "",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relayhost": "",
        "smtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        # Nothing leaves the machine: one pipe(8) transport for everything.
        "default_transport": "deliver",
        "relay_transport": "deliver",
        "local_transport": "error:local delivery is disabled in tests",
        "virtual_transport": "error:virtual delivery is disabled in tests",
        "transport_maps": "",
        "deliver_destination_recipient_limit": "1",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "notify_classes": "",
        "biff": "no",
        # Store the message as the client sent it.
        "always_add_missing_headers": "no",
        "disable_mime_output_conversion": "yes",
        "local_header_rewrite_clients": "",
        "smtputf8_enable": "yes",
        # Fast and forgiving for tests: no tarpits, many errors per session.
        "in_flow_delay": "0",
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "1000",
        "smtpd_junk_command_limit": "1000",
        # Hang up on clients that send ahead where RFC 2920 forbids it (EHLO
        # before the greeting, data before 354, anything after STARTTLS...).
        "smtpd_forbid_unauth_pipelining": "yes",
        "anvil_rate_time_unit": "1s",
        "smtpd_tls_chain_files": str(layout.config_dir / "server.pem"),
        "smtpd_tls_security_level": "may",
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_session_cache_database": "",
        "smtpd_tls_loglevel": "1",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": str(layout.auth_socket),
        "smtpd_sasl_auth_enable": "no",
        "smtpd_relay_restrictions": (
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        ),
        "smtpd_recipient_restrictions": (
            f"check_recipient_access regexp:{layout.config_dir}/recipient_access"
        ),
    }


def _master_option(name: str, value: str) -> str:
    # master.cf(5): values with spaces need the "{ name = value }" form.
    return f"-o {{ {name} = {value} }}" if " " in value else f"-o {name}={value}"


def master_cf(
    layout: Layout, endpoints: Mapping[str, Endpoint], ports: Mapping[str, int]
) -> str:
    """The master.cf text: one smtpd per endpoint plus the internal services."""
    lines = []
    for name, endpoint in endpoints.items():
        opts = " ".join(
            _master_option(k, v) for k, v in endpoint.smtpd_options().items()
        )
        lines.append(f"{HOST}:{ports[name]} inet n - n - - smtpd {opts}")
    deliver = f"/bin/sh {layout.config_dir}/deliver.sh"
    lines += [
        "cleanup   unix  n - n - 0 cleanup",
        "qmgr      unix  n - n 300 1 qmgr",
        "tlsmgr    unix  - - n 1000? 1 tlsmgr",
        "rewrite   unix  - - n - - trivial-rewrite",
        "bounce    unix  - - n - 0 bounce",
        "defer     unix  - - n - 0 bounce",
        "trace     unix  - - n - 0 bounce",
        "verify    unix  - - n - 1 verify",
        "flush     unix  n - n 1000? 0 flush",
        "proxymap  unix  - - n - - proxymap",
        "anvil     unix  - - n - 1 anvil",
        "scache    unix  - - n - 1 scache",
        "error     unix  - - n - - error",
        "retry     unix  - - n - - error",
        "discard   unix  - - n - - discard",
        "postlog   unix-dgram n - n - 1 postlogd",
        "deliver   unix  - n n - 20 pipe user=nobody null_sender=",
        f"  argv={deliver} ${{sender}} ${{recipient}}",
    ]
    return "\n".join(lines) + "\n"


def deliver_sh(layout: Layout) -> str:
    """The pipe(8) command: store the message, then its envelope (tmp -> new)."""
    mail = layout.mail_dir
    return f"""\
#!/bin/sh
# Called by pipe(8) as nobody: $1 = envelope sender, $2 = recipient; message on stdin.
set -eu
umask 022
name="$(date +%s%N).$$"
cat > "{mail}/tmp/$name.eml"
printf '%s\\n%s\\n' "$1" "$2" > "{mail}/tmp/$name.env"
mv "{mail}/tmp/$name.env" "{mail}/new/$name.env"
mv "{mail}/tmp/$name.eml" "{mail}/new/$name.eml"
"""


def recipient_access() -> str:
    """The check_recipient_access regexp map."""
    return (
        f"/^{BUSY_PREFIX}[^@]*@/    450 4.2.1 mailbox busy\n"
        f"/^{UNKNOWN_PREFIX}[^@]*@/  550 5.1.1 no such user\n"
    )


def passwd_file(users: Mapping[str, str]) -> str:
    """Dovecot passwd-file lines with plain-text passwords (needed for CRAM-MD5)."""
    for user, secret in users.items():
        if any(ch in user + secret for ch in ":\r\n"):
            msg = f"passwd-file cannot hold {user!r} and its secret"
            raise ValueError(msg)
    return "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items())


def dovecot_conf(layout: Layout) -> str:
    """dovecot.conf: SASL only (no IMAP/POP3), passwd-file users, no delays."""
    root = layout.root
    return f"""\
instance_name = {root.name}
base_dir = {layout.dovecot_dir}
state_dir = {root}/dovecot-state
log_path = {layout.dovecot_log}
protocols = none
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 xoauth2 oauthbearer
# Failures are still answered in batches every 0.5 s (Dovecot 2.3).
auth_failure_delay = 0
auth_cache_size = 0
# Allow UTF-8 user names; the default list is ASCII letters, digits and .-_@.
auth_username_chars =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {layout.auth_socket.name} {{
    mode = 0666
  }}
}}
# Without this socket Dovecot applies no per-IP penalty after failed logins.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
