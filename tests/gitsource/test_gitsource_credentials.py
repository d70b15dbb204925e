"""URL rules, credential checks, redaction and the SSH command (pure)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from blueprintd.api.gitsource import GitSourceSpec
from blueprintd.gitsource.credentials import Credentials, GitSourceError, parse_url, redact, ssh_command
from blueprintd.gitsource.fetch import base_env, cache_key, check_ref_name, git_argv


@pytest.mark.parametrize(
    ("url", "transport", "host"),
    [
        ("https://github.com/org/repo.git", "https", "github.com"),
        ("https://git.example.com:8443/org/repo", "https", "git.example.com"),
        ("ssh://git@github.com/org/repo.git", "ssh", "github.com"),
        ("ssh://git@[2001:db8::1]:22/repo", "ssh", "[2001:db8::1]"),
        ("git@github.com:org/repo.git", "ssh", "github.com"),
    ],
)
def test_accepted_urls(url: str, transport: str, host: str) -> None:
    got = parse_url(url)
    assert (got.transport, got.host) == (transport, host)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://git.example.com/repo.git", "not encrypted"),
        ("git://git.example.com/repo.git", "not encrypted"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ftp://example.com/repo", "not supported"),
        ("file:///srv/repo.git", "file:// repositories are refused"),
        ("-uhttps://x/y", "must not start with '-'"),
        ("ssh://-oProxyCommand=touch/x", "not of the form|must not start"),
        ("https://github.com", "not of the form"),
        ("/local/path", "is not https://"),
        ("https://host/repo\n", "whitespace"),
    ],
)
def test_refused_urls(url: str, why: str) -> None:
    with pytest.raises(GitSourceError, match=why):
        parse_url(url)


def test_file_urls_only_when_allowed() -> None:
    assert parse_url("file:///srv/repo.git", allow_file=True).transport == "file"
    with pytest.raises(GitSourceError, match="absolute path"):
        parse_url("file://relative", allow_file=True)


def test_the_api_refuses_passwords_in_urls_and_escaping_paths() -> None:
    base = {"url": "https://github.com/org/repo.git", "ref": {"branch": "main"}}
    GitSourceSpec.model_validate(base)
    GitSourceSpec.model_validate({**base, "url": "ssh://git@github.com/org/repo.git"})  # a user alone is fine
    with pytest.raises(ValueError, match="credentials in the URL"):
        GitSourceSpec.model_validate({**base, "url": "https://bot:ghp_token@github.com/org/repo.git"})
    for bad in ("../x", "/etc", "a/../../b"):
        with pytest.raises(ValueError, match="must not contain"):
            GitSourceSpec.model_validate({**base, "path": bad})


def test_credentials_from_secret_data() -> None:
    creds = Credentials.from_secret_data({"username": "bot", "password": "tok", "ca.crt": "PEM"})
    assert (creds.username, creds.password, creds.ca_cert, creds.identity) == ("bot", "tok", "PEM", None)
    ssh = Credentials.from_secret_data({"ssh-privatekey": "KEY", "known_hosts": "github.com ssh-ed25519 AAAA"})
    assert ssh.identity == "KEY" and ssh.known_hosts


def test_credential_combinations() -> None:
    https, ssh = parse_url("https://h/r"), parse_url("ssh://git@h/r")
    Credentials(username="u", password="p").check_for(https)
    Credentials(password="p").check_for(https)  # token only: username defaults to "git"
    Credentials(identity="k", known_hosts="h ssh-ed25519 A").check_for(ssh)
    with pytest.raises(GitSourceError, match="known_hosts"):
        Credentials(identity="k").check_for(ssh)
    with pytest.raises(GitSourceError, match="known_hosts"):
        Credentials().check_for(ssh)  # host keys are always verified
    with pytest.raises(GitSourceError, match="for ssh"):
        Credentials(identity="k", known_hosts="x").check_for(https)
    with pytest.raises(GitSourceError, match="no password"):
        Credentials(username="u").check_for(https)
    with pytest.raises(GitSourceError, match="not used over ssh"):
        Credentials(password="p", known_hosts="x").check_for(ssh)


def test_redaction() -> None:
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    creds = Credentials(username="platform-bot", password="ghp_abcdef123456", identity=key)
    text = (
        "fatal: could not read from https://platform-bot:ghp_abcdef123456@github.com/x.git; "
        "Authorization: Basic cGxhdGZvcm0tYm90OmdocA==; token ghp_abcdef123456 again; " + key
    )
    out = redact(text, creds.secrets())
    for secret in (
        "ghp_abcdef123456",
        "platform-bot",
        "cGxhdGZvcm0tYm90OmdocA==",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    ):
        assert secret not in out
    assert "https://***@github.com/x.git" in out
    assert "Authorization: ***" in out


def test_ssh_command_verifies_host_keys_and_uses_only_the_given_key(tmp_path: Path) -> None:
    cmd = shlex.split(ssh_command(tmp_path / "id key", tmp_path / "known_hosts"))
    assert cmd[:3] == ["ssh", "-F", "/dev/null"]
    opts = {cmd[i + 1] for i, a in enumerate(cmd) if a == "-o"}
    assert "StrictHostKeyChecking=yes" in opts
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in opts
    assert {"BatchMode=yes", "IdentitiesOnly=yes", "IdentityAgent=none", "GlobalKnownHostsFile=/dev/null"} <= opts
    assert cmd[cmd.index("-i") + 1] == str(tmp_path / "id key")  # quoted, survives spaces


def test_git_environment_is_isolated(tmp_path: Path) -> None:
    env = base_env(tmp_path, parse_url("https://h/r"))
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert config["core.hooksPath"] == "/dev/null"
    assert config["filter.lfs.smudge"] == "" and config["filter.lfs.process"] == ""
    assert config["transfer.fsckObjects"] == "true" and config["protocol.allow"] == "never"
    assert "GIT_SSL_NO_VERIFY" not in env  # git honours it by presence: removed, never set
    argv = git_argv("fetch")
    assert argv[0] == "env" and argv[argv.index("GIT_SSL_NO_VERIFY") - 1] == "-u" and argv[-2:] == ["git", "fetch"]


def test_cache_key_depends_on_url_and_credentials() -> None:
    url = "https://h/r"
    assert cache_key(url, Credentials()) == cache_key(url, Credentials())
    assert cache_key(url, Credentials(password="a")) != cache_key(url, Credentials(password="b"))
    assert cache_key(url, Credentials()) != cache_key("https://h/other", Credentials())
    assert "zz-secret" not in cache_key(url, Credentials(password="zz-secret"))


@pytest.mark.parametrize("bad", ["-upload-pack=x", "a..b", "a b", "a:b", "a~1", "x.lock", "a/", "@{u}", "a\\b"])
def test_bad_ref_names(bad: str) -> None:
    with pytest.raises(GitSourceError):
        check_ref_name("branch", bad)


def test_good_ref_names() -> None:
    for good in ("main", "release/1.2", "feature-x_y", "v1.0.0"):
        check_ref_name("branch", good)
