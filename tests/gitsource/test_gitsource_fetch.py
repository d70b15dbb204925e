"""The git adapter against real repositories: refs, pins, force pushes, hooks that must not run,
and credentials over a real HTTPS git server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitsource_helpers import GitHttpsServer, SourceRepo, blueprint_yaml

from blueprintd.api.gitsource import GitRef
from blueprintd.gitsource import content
from blueprintd.gitsource.credentials import Credentials, GitSourceError
from blueprintd.gitsource.fetch import FetchResult, GitFetcher, is_private


@pytest.fixture
def repo(tmp_path: Path) -> SourceRepo:
    return SourceRepo(tmp_path / "src")


@pytest.fixture
def fetcher(tmp_path: Path) -> GitFetcher:
    return GitFetcher(tmp_path / "cache", allow_file_urls=True)


def read(fetcher: GitFetcher, result: FetchResult, path: str = "bp") -> content.Evaluation:
    with fetcher.open(result) as snap:
        return content.evaluate(snap.entries(path), path, snap.read, snap.link_at, namespace="ns")


def versions(ev: content.Evaluation) -> dict[str, str]:
    return {b.name: b.blueprint.spec.version for b in ev.blueprints}


def test_branch_is_fetched_and_followed(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    first = fetcher.fetch(repo.url, GitRef(branch="main"))
    assert (first.commit, first.previous, first.rewritten) == (c1, None, False)
    assert versions(read(fetcher, first)) == {"a": "1.0.0"}

    repo.write("bp/a.yaml", blueprint_yaml("a", "1.1.0", "ops"))
    c2 = repo.commit("v1.1")
    second = fetcher.fetch(repo.url, GitRef(branch="main"))
    assert (second.commit, second.previous, second.rewritten) == (c2, c1, False)
    assert versions(read(fetcher, second)) == {"a": "1.1.0"}
    # one cache folder per URL (+ credentials), reused: a fetch, not a second clone
    assert second.repo_dir == first.repo_dir
    assert [p.name for p in fetcher.cache_root.iterdir() if p.is_dir() and p.name != ".auth"] == [first.repo_dir.name]
    # bare, never checked out
    assert (first.repo_dir / "HEAD").is_file() and not (first.repo_dir / "bp").exists()


def test_tag_including_an_annotated_and_a_moved_tag(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    repo.tag("release-1")
    repo.write("bp/a.yaml", blueprint_yaml("a", "2.0.0", "ops"))
    c2 = repo.commit("v2")
    got = fetcher.fetch(repo.url, GitRef(tag="release-1"))
    assert got.commit == c1  # peeled from the annotated tag object to its commit
    assert versions(read(fetcher, got)) == {"a": "1.0.0"}
    repo.tag("release-1", force=True)  # tags can be moved too; '+' refspecs follow
    assert fetcher.fetch(repo.url, GitRef(tag="release-1")).commit == c2


def test_commit_pin(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    repo.write("bp/a.yaml", blueprint_yaml("a", "2.0.0", "ops"))
    repo.commit("v2")
    got = fetcher.fetch(repo.url, GitRef(commit=c1))
    assert got.commit == c1 and versions(read(fetcher, got)) == {"a": "1.0.0"}
    with pytest.raises(GitSourceError, match=r"not found|fetching commit"):
        fetcher.fetch(repo.url, GitRef(commit="0" * 40))


def test_missing_branch_and_missing_path(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    repo.commit("v1")
    with pytest.raises(GitSourceError, match="branch nope not found"):
        fetcher.fetch(repo.url, GitRef(branch="nope"))
    got = fetcher.fetch(repo.url, GitRef(branch="main"))
    with fetcher.open(got) as snap, pytest.raises(GitSourceError, match="does not exist at commit"):
        snap.entries("blueprints")


def test_force_push_of_an_unrelated_history_is_followed_and_validated(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    c1 = repo.commit("v1")
    assert fetcher.fetch(repo.url, GitRef(branch="main")).commit == c1

    c2 = repo.orphan({"bp/b.yaml": blueprint_yaml("b", "3.0.0", "ops")})
    got = fetcher.fetch(repo.url, GitRef(branch="main"))
    assert (got.commit, got.previous, got.rewritten) == (c2, c1, True)
    assert versions(read(fetcher, got)) == {"b": "3.0.0"}

    # a rewritten head is validated like any other: an invalid one is refused
    c3 = repo.orphan({"bp/b.yaml": "kind: [broken\n"})
    bad = fetcher.fetch(repo.url, GitRef(branch="main"))
    assert bad.commit == c3 and bad.rewritten
    ev = read(fetcher, bad)
    assert ev.blueprints == [] and ev.issues[0].source == "bp/b.yaml"


def test_real_symlinks_from_a_repository(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    repo.write("shared/b.yaml", blueprint_yaml("b", "1.0.0", "ops"))
    repo.symlink("bp/b.yaml", "../shared/b.yaml")
    repo.commit("in-repo link")
    ok = read(fetcher, fetcher.fetch(repo.url, GitRef(branch="main")))
    assert versions(ok) == {"a": "1.0.0"} and ok.skipped == ["bp/b.yaml"]

    repo.symlink("bp/passwd.yaml", "../../../../../../etc/passwd")
    repo.commit("escaping link")
    bad = read(fetcher, fetcher.fetch(repo.url, GitRef(branch="main")))
    assert bad.blueprints == []
    assert bad.issues[0].source == "bp/passwd.yaml" and "outside the repository" in bad.issues[0].message


def test_oversized_blob_is_refused(repo: SourceRepo, fetcher: GitFetcher) -> None:
    repo.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    repo.write("bp/huge.yaml", b"# " + b"x" * (1024 * 1024 + 10) + b"\n")
    repo.commit("huge")
    got = fetcher.fetch(repo.url, GitRef(branch="main"))
    with fetcher.open(got) as snap:
        reads: list[str] = []

        def counting_read(entry: content.TreeEntry) -> bytes:
            reads.append(entry.path)
            return snap.read(entry)

        ev = content.evaluate(snap.entries("bp"), "bp", counting_read, snap.link_at)
    assert ev.blueprints == [] and ev.issues[0].source == "bp/huge.yaml"
    assert "bp/huge.yaml" not in reads


def test_hooks_and_filters_never_run(
    repo: SourceRepo, fetcher: GitFetcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile repository *and* a hostile git configuration on the operator's machine: a
    post-checkout and a reference-transaction hook, clean/smudge filters named by the
    repository's .gitattributes, an LFS filter. A plain clone runs them (the control); the
    fetcher runs none of them and reads the committed bytes."""
    markers = tmp_path / "markers"
    markers.mkdir()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("post-checkout", "reference-transaction", "post-merge", "pre-auto-gc"):
        script = hooks / hook
        script.write_text(f"#!/bin/sh\ntouch {markers}/hook-{hook}\n")
        script.chmod(0o755)
    text = blueprint_yaml("a", "1.0.0", "ops")
    repo.write(".gitattributes", "*.yaml filter=evil\n*.yml filter=lfs diff=lfs merge=lfs\n")
    repo.write(".githooks/post-checkout", f"#!/bin/sh\ntouch {markers}/repo-hook\n")
    repo.write("bp/a.yaml", text)
    repo.commit("with attributes")  # committed before the hostile config exists: bytes as written

    filters = {
        "smudge": "sed s/1.0.0/6.6.6/",  # what a checkout would write instead of the committed bytes
        "clean": "cat",
        "lfs": "cat",
    }
    for name, body in filters.items():
        script = tmp_path / f"{name}.sh"
        script.write_text(f"#!/bin/sh\ntouch {markers}/{name}\n{body}\n")
        script.chmod(0o755)
    gitconfig = tmp_path / "hostile.gitconfig"
    gitconfig.write_text(
        f"[core]\n\thooksPath = {hooks}\n"
        f'[filter "evil"]\n\tsmudge = {tmp_path}/smudge.sh\n\tclean = {tmp_path}/clean.sh\n\trequired = true\n'
        f'[filter "lfs"]\n\tsmudge = {tmp_path}/lfs.sh\n\tprocess = {tmp_path}/lfs.sh\n'
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("HOME", str(tmp_path))

    got = fetcher.fetch(repo.url, GitRef(branch="main"))
    again = fetcher.fetch(repo.url, GitRef(branch="main"))  # the second fetch updates refs too
    with fetcher.open(again) as snap:
        entry = next(e for e in snap.entries("bp") if e.path == "bp/a.yaml")
        assert snap.read(entry).decode() == text  # not smudged
    assert versions(read(fetcher, got)) == {"a": "1.0.0"}
    assert sorted(p.name for p in markers.iterdir()) == []

    # The control: the same configuration does run hooks and filters on an ordinary clone,
    # so the empty marker folder above is meaningful.
    subprocess.run(["git", "clone", "-q", repo.url, str(tmp_path / "control")], check=True, capture_output=True)
    ran = sorted(p.name for p in markers.iterdir())
    assert "smudge" in ran and "hook-post-checkout" in ran, ran
    assert "6.6.6" in (tmp_path / "control" / "bp" / "a.yaml").read_text()


def test_file_urls_need_explicit_permission(repo: SourceRepo, tmp_path: Path) -> None:
    repo.commit("empty")
    with pytest.raises(GitSourceError, match="file:// repositories are refused"):
        GitFetcher(tmp_path / "c").fetch(repo.url, GitRef(branch="main"))


# --- credentials over real HTTPS --------------------------------------------------------------

TOKEN = "ghp_s3cr3tT0kenValue0123456789"


@pytest.fixture
def https_repo(tmp_path: Path) -> Iterator[tuple[GitHttpsServer, SourceRepo]]:
    src = SourceRepo(tmp_path / "srv")
    src.write("bp/a.yaml", blueprint_yaml("a", "1.0.0", "ops"))
    src.commit("v1")
    server = GitHttpsServer(tmp_path / "srv", "platform-bot", TOKEN, tmp_path / "tls")
    try:
        yield server, src
    finally:
        server.stop()


def test_https_token_via_askpass_and_private_ca(https_repo: tuple[GitHttpsServer, SourceRepo], tmp_path: Path) -> None:
    server, src = https_repo
    fetcher = GitFetcher(tmp_path / "cache")
    creds = Credentials(username="platform-bot", password=TOKEN, ca_cert=server.ca_pem)
    got = fetcher.fetch(server.url("remote.git"), GitRef(branch="main"), creds)
    assert got.commit == src.head
    assert versions(read(fetcher, got)) == {"a": "1.0.0"}
    assert any(a.startswith("Basic ") for a in server.seen_auth)  # the token reached the server
    # the credential files lived in a private folder that is gone after the fetch
    auth_root = tmp_path / "cache" / ".auth"
    assert is_private(tmp_path / "cache") and list(auth_root.iterdir()) == []
    # ...and never reached the cache's config or the URL
    config = (got.repo_dir / "config").read_text()
    assert TOKEN not in config and "platform-bot" not in config


def test_wrong_token_fails_without_leaking_it(https_repo: tuple[GitHttpsServer, SourceRepo], tmp_path: Path) -> None:
    server, _ = https_repo
    wrong = "ghp_wrongTokenDoNotLeak987654321"
    fetcher = GitFetcher(tmp_path / "cache")
    with pytest.raises(GitSourceError) as info:
        fetcher.fetch(
            server.url("remote.git"), GitRef(branch="main"), Credentials("platform-bot", wrong, ca_cert=server.ca_pem)
        )
    message = str(info.value)
    assert "authentication" in message
    assert wrong not in message and "platform-bot" not in message


def test_untrusted_certificate_is_refused(https_repo: tuple[GitHttpsServer, SourceRepo], tmp_path: Path) -> None:
    server, _ = https_repo
    with pytest.raises(GitSourceError, match=r"certificate|SSL"):
        GitFetcher(tmp_path / "cache").fetch(
            server.url("remote.git"), GitRef(branch="main"), Credentials("platform-bot", TOKEN)
        )


def test_cache_is_keyed_by_credentials(https_repo: tuple[GitHttpsServer, SourceRepo], tmp_path: Path) -> None:
    """A source without valid credentials must not read objects another source fetched."""
    server, src = https_repo
    fetcher = GitFetcher(tmp_path / "cache")
    good = Credentials("platform-bot", TOKEN, ca_cert=server.ca_pem)
    fetcher.fetch(server.url("remote.git"), GitRef(branch="main"), good)
    with pytest.raises(GitSourceError):
        fetcher.fetch(
            server.url("remote.git"), GitRef(commit=src.head), Credentials("x", "guess", ca_cert=server.ca_pem)
        )
