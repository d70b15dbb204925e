"""The git adapter: fetch one ref into a private bare cache, then read one commit's tree.

Why it is built this way:

* **Never a checkout.** Files are read from git's object database by walking the commit's
  tree, so nothing from the repository is ever written to disk as a file, and checkout-time
  machinery (hooks such as post-checkout, clean/smudge filters from ``.gitattributes``,
  Git LFS) has nothing to run on. On top of that every git process runs with hooks pointed at
  ``/dev/null``, LFS filters emptied, the system and global git configuration ignored
  (``GIT_CONFIG_GLOBAL=/dev/null``: a hostile ``~/.gitconfig`` cannot add filters or
  hooks either) and no terminal prompt.
* **Bare cache per URL and credentials.** The first sync clones (``git init --bare`` + fetch),
  later ones fetch only what changed. The cache folder is keyed by the URL *and* a digest of
  the credentials, so two GitSources with different credentials never share objects (a
  source without access cannot read what one with access fetched).
* **Force pushes are normal.** Refs are fetched with ``+`` refspecs into a private namespace
  (``refs/blueprintd/...``), so a rewritten branch simply moves; the new head is then
  validated like any other commit. ``FetchResult.rewritten`` says when the previous head is
  no longer an ancestor, so the sync can report it.
* **Credentials stay out of command lines, URLs and logs.** HTTPS credentials are answered by
  a ``GIT_ASKPASS`` script that reads 0600 files in a private 0700 folder; SSH uses
  ``GIT_SSH_COMMAND`` with the key (0600) and the Secret's ``known_hosts`` and
  ``StrictHostKeyChecking=yes``. The folder is removed after the fetch, and every error
  message is redacted before it leaves this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprintd.api.gitsource import GitRef
from blueprintd.gitsource import content
from blueprintd.gitsource.content import TreeEntry
from blueprintd.gitsource.credentials import Credentials, GitSourceError, GitUrl, parse_url, redact, ssh_command

GIT_TIMEOUT_S = 120.0
MAX_TREE_ENTRIES = 100_000
MAX_LINK_BYTES = 4096

# Config applied to every git process through GIT_CONFIG_COUNT (command-line precedence):
# nothing from the repository or the machine may run code or change what we read.
HARDENING: dict[str, str] = {
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "credential.helper": "",
    "filter.lfs.process": "",
    "filter.lfs.smudge": "",
    "filter.lfs.clean": "",
    "filter.lfs.required": "false",
    "transfer.fsckObjects": "true",
    "fetch.recurseSubmodules": "false",
    "submodule.recurse": "false",
    "protocol.allow": "never",
    "protocol.https.allow": "always",
    "protocol.ssh.allow": "always",
    "http.sslVerify": "true",
    "http.lowSpeedLimit": "1000",
    "http.lowSpeedTime": "60",
    "gc.autoDetach": "false",
    "init.templateDir": "",
}

_REF_NAME = re.compile(
    r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)(?!/)(?!.*/$)(?!.*\.lock$)(?!.*\.$)[^\x00-\x20~^:?*\[\\\x7f]+$"
)

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


@contextlib.contextmanager
def cache_lock(repo_dir: Path) -> Iterator[None]:
    """One fetch per cache folder at a time: threads of this process and other processes
    sharing the folder (several operators on one machine) would otherwise race on ref locks."""
    import fcntl

    with _lock_for(repo_dir):
        fd = os.open(f"{repo_dir}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


@dataclass(frozen=True)
class FetchResult:
    """The commit a ref resolved to, in which cache, and whether history was rewritten."""

    commit: str
    repo_dir: Path
    ref: str  # "branch main", "tag v1", "commit abc…"
    previous: str | None = None  # what the same ref resolved to at the previous fetch
    rewritten: bool = False  # previous is not an ancestor of commit (force push / rewritten history)
    env: dict[str, str] = field(default_factory=dict, repr=False)


def describe_ref(ref: GitRef) -> str:
    if ref.branch is not None:
        return f"branch {ref.branch}"
    if ref.tag is not None:
        return f"tag {ref.tag}"
    return f"commit {ref.commit}"


def check_ref_name(kind: str, name: str) -> None:
    """Branch and tag names as git accepts them, and never something git could read as an option."""
    if not _REF_NAME.match(name):
        raise GitSourceError(f"{kind} name {name!r} is not a valid git ref name")


def cache_key(url: str, creds: Credentials) -> str:
    """Folder name for a URL + credentials pair (credentials enter only as a digest)."""
    material = "\0".join(
        v or "" for v in (creds.username, creds.password, creds.identity, creds.known_hosts, creds.ca_cert)
    )
    digest = hashlib.sha256(f"{url}\0{hashlib.sha256(material.encode()).hexdigest()}".encode()).hexdigest()
    return digest[:32]


def base_env(
    repo_dir: Path,
    gitu: GitUrl,
    askpass: Path | None = None,
    ssh: str | None = None,
    ca_file: Path | None = None,
) -> dict[str, str]:
    """The environment of every git process: isolated from the machine's configuration.

    GitPython starts from ``os.environ``; variables that could redirect git elsewhere are
    set explicitly to safe values rather than inherited.
    """
    config = dict(HARDENING)
    if gitu.transport == "file":
        config["protocol.file.allow"] = "always"
    if ca_file is not None:
        config["http.sslCAInfo"] = str(ca_file)
    env = {
        "GIT_DIR": str(repo_dir),
        "GIT_OBJECT_DIRECTORY": str(repo_dir / "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_PARAMETERS": "",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": str(askpass) if askpass else "",
        "SSH_ASKPASS": "",
        "GIT_SSH_COMMAND": ssh or ssh_command(None, Path("/dev/null")),
        "GIT_SSH_VARIANT": "ssh",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_ALLOW_PROTOCOL": "file" if gitu.transport == "file" else "https:ssh",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    if ca_file is not None:
        env["GIT_SSL_CAINFO"] = str(ca_file)  # the environment wins over config in git
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


# Variables git honours by mere presence (any value, even empty) that would weaken a fetch or
# write credentials to a log. GitPython can only add to the inherited environment, so git is
# started through ``env -u`` to remove them.
UNSET = (
    "GIT_SSL_NO_VERIFY",
    "GIT_SSL_CERT",
    "GIT_SSL_KEY",
    "GIT_SSL_CERT_PASSWORD_PROTECTED",
    "GIT_PROXY_COMMAND",
    "GIT_SSH",
    "GIT_CURL_VERBOSE",
    "GIT_TRACE",
    "GIT_TRACE_CURL",
    "GIT_TRACE_CURL_NO_DATA",
    "GIT_TRACE_PACKET",
    "GIT_TRACE_PACK_ACCESS",
    "GIT_TRACE_SETUP",
    "GIT_TRACE_SHALLOW",
    "GIT_TRACE2",
    "GIT_TRACE2_EVENT",
    "GIT_TRACE2_PERF",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_QUARANTINE_PATH",
)


def git_argv(*args: str) -> list[str]:
    """``git args…`` started with the variables in ``UNSET`` removed from its environment."""
    unset = [a for name in UNSET for a in ("-u", name)]
    return ["env", *unset, "git", *args]


_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from files next to this script (never from argv or env).
case "$1" in
  Username*) cat "$(dirname "$0")/username" ;;
  *) cat "$(dirname "$0")/password" ;;
esac
"""


def _write_private(path: Path, data: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data if data.endswith("\n") or path.name in ("username", "password") else data + "\n")
    os.chmod(path, mode)


@contextlib.contextmanager
def credential_files(
    workdir: Path, gitu: GitUrl, creds: Credentials
) -> Iterator[tuple[Path | None, str | None, Path | None]]:
    """(askpass script, ssh command, CA file) in a private 0700 folder removed afterwards."""
    if creds.empty:
        yield None, None, None
        return
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix="auth-", dir=workdir))
    try:
        os.chmod(tmp, 0o700)
        askpass: Path | None = None
        ssh: str | None = None
        ca: Path | None = None
        if gitu.transport == "https":
            if creds.password:
                _write_private(tmp / "username", creds.username or "git")
                _write_private(tmp / "password", creds.password)
                askpass = tmp / "askpass.sh"
                _write_private(askpass, _ASKPASS, 0o700)
            if creds.ca_cert:
                ca = tmp / "ca.crt"
                _write_private(ca, creds.ca_cert)
        elif gitu.transport == "ssh":
            known = tmp / "known_hosts"
            _write_private(known, creds.known_hosts or "")
            key: Path | None = None
            if creds.identity:
                key = tmp / "identity"
                _write_private(key, creds.identity)
            ssh = ssh_command(key, known)
        yield askpass, ssh, ca
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class GitFetcher:
    """Fetches GitSource refs into ``cache_root`` (one bare repository per URL + credentials)."""

    def __init__(self, cache_root: Path, *, allow_file_urls: bool = False, timeout: float = GIT_TIMEOUT_S) -> None:
        self.cache_root = cache_root
        self.allow_file_urls = allow_file_urls
        self.timeout = timeout

    def fetch(self, url: str, ref: GitRef, creds: Credentials = Credentials()) -> FetchResult:
        """Fetch ``ref`` and resolve it to a commit (blocking: run it in a thread)."""
        import git

        gitu = parse_url(url, self.allow_file_urls)
        creds.check_for(gitu)
        if ref.branch is not None:
            check_ref_name("branch", ref.branch)
        if ref.tag is not None:
            check_ref_name("tag", ref.tag)
        self.cache_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        repo_dir = self.cache_root / cache_key(url, creds)
        secrets = creds.secrets()
        what = describe_ref(ref)
        with cache_lock(repo_dir), credential_files(self.cache_root / ".auth", gitu, creds) as (askpass, ssh, ca):
            env = base_env(repo_dir, gitu, askpass, ssh, ca)
            try:
                repo = self._open_or_init(repo_dir, url, env)
            except git.GitCommandError as exc:
                raise GitSourceError(
                    f"preparing the cache for {redact(url, secrets)}: {_stderr(exc, secrets)}"
                ) from None
            try:
                local, refspecs = _refspecs(ref)
                previous = _rev(repo, local, env)
                try:
                    self._fetch(repo, refspecs, env)
                except git.GitCommandError as exc:
                    if ref.commit is None:
                        raise
                    # Servers that refuse fetching an unadvertised commit: fetch every branch and
                    # tag, then look for the commit among them.
                    self._fetch(
                        repo,
                        ["+refs/heads/*:refs/blueprintd/all/heads/*", "+refs/tags/*:refs/blueprintd/all/tags/*"],
                        env,
                    )
                    if _rev(repo, ref.commit, env) is None:
                        raise exc from None
                    repo.git.update_ref(local, ref.commit, env=env)
                commit = _rev(repo, local, env)
                if commit is None:
                    raise GitSourceError(f"{what} of {redact(url, secrets)} does not resolve to a commit")
                if ref.commit is not None and commit != ref.commit:
                    raise GitSourceError(f"{what} resolved to {commit}")
                rewritten = (
                    previous is not None and previous != commit and not _is_ancestor(repo, previous, commit, env)
                )
                return FetchResult(commit, repo_dir, what, previous, rewritten, env)
            except git.GitCommandError as exc:
                raise GitSourceError(_fetch_error(exc, url, what, secrets)) from None
            finally:
                repo.close()

    def _open_or_init(self, repo_dir: Path, url: str, env: dict[str, str]) -> Any:
        import git

        if not (repo_dir / "HEAD").is_file():
            if repo_dir.exists():
                shutil.rmtree(repo_dir)  # a half-created cache from an interrupted first clone
            repo_dir.mkdir(mode=0o700)
            git.Git(str(repo_dir)).execute(["git", "init", "--quiet", "--bare", "--template=", str(repo_dir)], env=env)
        repo = git.Repo(str(repo_dir))
        repo.git.update_environment(**env)
        with repo.config_writer() as cw:
            # Persisted too, so a human inspecting the cache with plain git is just as safe.
            cw.set_value("core", "hooksPath", "/dev/null")
            cw.set_value("core", "fsmonitor", "false")
            cw.set_value('remote "origin"', "url", url)
        return repo

    def _fetch(self, repo: Any, refspecs: list[str], env: dict[str, str]) -> None:
        argv = git_argv(
            "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head", "origin", *refspecs
        )
        repo.git.execute(argv, env=env, kill_after_timeout=self.timeout)

    @contextlib.contextmanager
    def open(self, result: FetchResult) -> Iterator[Snapshot]:
        """The fetched commit's tree, for reading (blocking: use it in a thread)."""
        snap = Snapshot(result.repo_dir, result.commit, result.env)
        try:
            yield snap
        finally:
            snap.close()


def _refspecs(ref: GitRef) -> tuple[str, list[str]]:
    """(local ref to resolve, refspecs to fetch); '+' so force pushes move the local ref."""
    if ref.branch is not None:
        local = f"refs/blueprintd/heads/{ref.branch}"
        return local, [f"+refs/heads/{ref.branch}:{local}"]
    if ref.tag is not None:
        local = f"refs/blueprintd/tags/{ref.tag}"
        return local, [f"+refs/tags/{ref.tag}:{local}"]
    assert ref.commit is not None
    local = f"refs/blueprintd/pins/{ref.commit}"
    return local, [f"+{ref.commit}:{local}"]


def _rev(repo: Any, name: str, env: dict[str, str]) -> str | None:
    import git

    try:
        out: str = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}", env=env)
    except git.GitCommandError:
        return None
    return out.strip() or None


def _is_ancestor(repo: Any, old: str, new: str, env: dict[str, str]) -> bool:
    import git

    try:
        repo.git.merge_base("--is-ancestor", old, new, env=env)
    except git.GitCommandError:
        return False
    return True


def _stderr(exc: Any, secrets: list[str]) -> str:
    text = str(getattr(exc, "stderr", "") or "").strip().removeprefix("stderr:").strip().strip("'").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return redact(" ".join(lines[-3:]) or f"git exited with status {getattr(exc, 'status', '?')}", secrets)


def _fetch_error(exc: Any, url: str, what: str, secrets: list[str]) -> str:
    detail = _stderr(exc, secrets)
    where = redact(url, secrets)
    if "couldn't find remote ref" in detail or "not our ref" in detail or "no such remote ref" in detail:
        return f"{what} not found in {where}"
    if "Authentication failed" in detail or "could not read Username" in detail or "401" in detail:
        return f"authentication to {where} failed (check the Secret named by secretRef): {detail}"
    if "Host key verification failed" in detail:
        return f"host key of {where} is not in known_hosts (or changed): {detail}"
    return f"fetching {what} from {where} failed: {detail}"


class Snapshot:
    """One commit's tree, read from the object database (no checkout, no working tree)."""

    def __init__(self, repo_dir: Path, commit: str, env: dict[str, str]) -> None:
        import git

        self.repo = git.Repo(str(repo_dir))
        self.repo.git.update_environment(**env)
        self.commit = commit
        self.tree = self.repo.commit(commit).tree

    def close(self) -> None:
        self.repo.close()

    def _lookup(self, path: str) -> Any | None:
        if not path:
            return self.tree
        try:
            return self.tree / path
        except KeyError:
            return None

    def link_at(self, path: str) -> str | None:
        """The target text of the symlink at ``path``, or None when it is not a symlink."""
        obj = self._lookup(path)
        if obj is None or getattr(obj, "type", "") != "blob" or obj.mode != content.MODE_SYMLINK:
            return None
        return self._link_text(obj)

    def _link_text(self, obj: Any) -> str:
        # A link's blob is its target path; one longer than any real path is refused as
        # escaping ("/") rather than read.
        if int(obj.size) > MAX_LINK_BYTES:
            return "/"
        return self._read_bytes(obj.binsha).decode("utf-8", errors="replace")

    def entries(self, path: str, max_entries: int = MAX_TREE_ENTRIES) -> list[TreeEntry]:
        """Every blob, symlink and submodule at or under the walk root of ``path``."""
        root = content.walk_root(path)
        node = self._lookup(root)
        if node is None:
            if content.is_glob(path):
                return []
            raise GitSourceError(f"path {path!r} does not exist at commit {self.commit}")
        items = [node] if node.type != "tree" else node.traverse()
        out: list[TreeEntry] = []
        for obj in items:
            if obj.type == "tree":
                continue
            if len(out) >= max_entries:
                raise GitSourceError(f"more than {max_entries} files under {path!r}; narrow spec.path")
            mode = int(obj.mode)
            if obj.type == "submodule":
                out.append(TreeEntry(obj.path, content.MODE_SUBMODULE))
                continue
            size = int(obj.size)
            link = None
            if mode == content.MODE_SYMLINK:
                link = self._link_text(obj)
            out.append(TreeEntry(obj.path, mode, size, obj.hexsha, link))
        return out

    def read(self, entry: TreeEntry) -> bytes:
        return self._read_bytes(bytes.fromhex(entry.oid))

    def _read_bytes(self, binsha: bytes) -> bytes:
        data: bytes = self.repo.odb.stream(binsha).read()
        return data


def is_private(path: Path) -> bool:
    """True when only the owner can access ``path`` (used by tests of the credential files)."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
