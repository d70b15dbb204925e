"""Repository URLs, credentials from a Secret, and redaction. Pure.

The operator holds credentials to every repository it syncs, and a GitSource's URL is chosen
by whoever may create one. So:

* only authenticated, encrypted transports are accepted: ``https://``, ``ssh://`` and the
  scp-like ``user@host:path``. Plain ``http://`` and ``git://`` would let anyone on the path
  inject Blueprints; ``file://`` would let a GitSource read other repositories on the
  operator's disk (including other tenants' cached private repositories) and is accepted
  only when the operator explicitly allows it (local development and tests);
* credentials never appear in the URL (the API also refuses that), in a command line, in
  logs, in events or in status: they reach git through files in a private temporary folder
  (see ``fetch.py``), and every message that leaves the adapter goes through ``redact``;
* SSH always verifies the server's host key against the ``known_hosts`` from the Secret.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from blueprintd.errors import BlueprintdError

Transport = Literal["https", "ssh", "file"]

# Secret keys. ``ssh-privatekey`` is the key of Secrets of type kubernetes.io/ssh-auth,
# ``username``/``password`` those of kubernetes.io/basic-auth.
KEY_USERNAME = "username"
KEY_PASSWORD = "password"
KEY_IDENTITY = "identity"
KEY_IDENTITY_ALT = "ssh-privatekey"
KEY_KNOWN_HOSTS = "known_hosts"
KEY_CA = "ca.crt"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")
_AUTHORITY = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+):(?P<path>[^/\\].*)$")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*)(\S+\s+)?\S+")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
REDACTED = "***"


class GitSourceError(BlueprintdError):
    """A GitSource cannot be fetched as configured; the message is safe to show (redacted)."""


@dataclass(frozen=True)
class GitUrl:
    """A repository URL that passed the transport rules."""

    url: str
    transport: Transport
    host: str


def parse_url(url: str, allow_file: bool = False) -> GitUrl:
    """Accept https, ssh and (when allowed) file URLs; refuse everything else with the reason."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise GitSourceError("repository URL is empty or contains whitespace or control characters")
    if url.startswith("-"):
        raise GitSourceError("repository URL must not start with '-'")
    m = _SCHEME.match(url)
    if m is None:
        scp = _SCP_LIKE.match(url)
        if scp is None:
            raise GitSourceError(
                f"repository URL {redact(url)!r} is not https://, ssh:// or user@host:path"
                + ("" if not allow_file else " or file://")
            )
        host = scp.group("host")
        if host.startswith("-"):
            raise GitSourceError("repository host must not start with '-'")
        return GitUrl(url, "ssh", host)
    scheme = m.group("scheme").lower()
    rest = m.group("rest")
    if scheme == "file":
        if not allow_file:
            raise GitSourceError(
                "file:// repositories are refused: they would read the operator's own disk "
                "(allowed only with BLUEPRINTD_GIT_ALLOW_FILE_URLS=1, for local development)"
            )
        if not rest.startswith("/"):
            raise GitSourceError("file:// URLs need an absolute path (file:///path/to/repo)")
        return GitUrl(url, "file", "")
    if scheme in ("http", "git"):
        raise GitSourceError(
            f"{scheme}:// is not encrypted or authenticated, so anyone on the network path could inject "
            "Blueprints: use https:// or ssh://"
        )
    if scheme not in ("https", "ssh"):
        raise GitSourceError(f"repository URL scheme {scheme!r} is not supported: use https:// or ssh://")
    authority, _, path = rest.partition("/")
    am = _AUTHORITY.match(authority)
    if am is None or not path:
        raise GitSourceError(f"repository URL {redact(url)!r} is not of the form {scheme}://host/path")
    host = am.group("host")
    if host.startswith("-"):
        raise GitSourceError("repository host must not start with '-'")
    return GitUrl(url, "https" if scheme == "https" else "ssh", host)


@dataclass(frozen=True)
class Credentials:
    """What a GitSource's Secret provides (every field optional)."""

    username: str | None = None
    password: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    ca_cert: str | None = None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> Credentials:
        """From decoded Secret data (``username``, ``password``, ``identity``, ``known_hosts``, ``ca.crt``)."""

        def get(*keys: str) -> str | None:
            for key in keys:
                value = data.get(key)
                if value:
                    return value
            return None

        return cls(
            username=get(KEY_USERNAME),
            password=get(KEY_PASSWORD),
            identity=get(KEY_IDENTITY, KEY_IDENTITY_ALT),
            known_hosts=get(KEY_KNOWN_HOSTS),
            ca_cert=get(KEY_CA),
        )

    @property
    def empty(self) -> bool:
        return not any((self.username, self.password, self.identity, self.known_hosts, self.ca_cert))

    def secrets(self) -> list[str]:
        """Values that must never appear in a message (the username too: tokens often go there)."""
        out = [v for v in (self.password, self.username, self.identity) if v and len(v) >= 3]
        # A PEM key may be echoed line by line; redact each long line as well.
        if self.identity:
            out += [line.strip() for line in self.identity.splitlines() if len(line.strip()) >= 16]
        return out

    def check_for(self, url: GitUrl) -> None:
        """Refuse combinations that cannot work or would send secrets the wrong way."""
        if url.transport == "ssh":
            if not self.known_hosts:
                raise GitSourceError(
                    "ssh repositories need the server's host key: add known_hosts to the Secret "
                    "named by secretRef (host keys are always verified)"
                )
            if self.password:
                raise GitSourceError("password authentication is not used over ssh: put an identity in the Secret")
        elif url.transport == "https":
            if self.identity or self.known_hosts:
                raise GitSourceError("identity and known_hosts are for ssh:// URLs; this URL is https://")
            if self.username and not self.password:
                raise GitSourceError("the Secret has a username but no password (token)")
        elif not self.empty:
            raise GitSourceError("file:// repositories take no credentials")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets, URL userinfo, Authorization headers or private keys."""
    out = _PEM.sub(REDACTED, text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", out)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{REDACTED}", out)


def ssh_command(identity: Path | None, known_hosts: Path) -> str:
    """``GIT_SSH_COMMAND``: only the given key, only the given host keys, never interactive.

    ``-F /dev/null`` ignores any ssh_config (no ProxyCommand, no other identities), the agent
    is not consulted, and an unknown or changed host key fails the connection.
    """
    args = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentityAgent=none",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "ConnectTimeout=30",
    ]
    if identity is not None:
        args += ["-o", "IdentitiesOnly=yes", "-i", str(identity)]
    return " ".join(shlex.quote(a) for a in args)
