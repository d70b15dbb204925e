"""The untrusted-content rules on plain data: what a commit may contain before anything is applied."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gitsource_helpers import blueprint_yaml

from blueprintd.gitsource import content
from blueprintd.gitsource.content import (
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SUBMODULE,
    MODE_SYMLINK,
    Limits,
    PathError,
    TreeEntry,
    evaluate,
    in_scope,
    normalize_path,
    resolve_link,
    walk_root,
)


class Tree:
    """An in-memory commit tree: files and symlinks, as the git adapter would list them."""

    def __init__(self, files: dict[str, str | bytes], links: dict[str, str] | None = None) -> None:
        self.files = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
        self.links = links or {}
        self.reads: list[str] = []

    def entries(self) -> list[TreeEntry]:
        out = [TreeEntry(p, MODE_FILE, len(d), p) for p, d in self.files.items()]
        out += [TreeEntry(p, MODE_SYMLINK, len(t), "", t) for p, t in self.links.items()]
        return out

    def read(self, entry: TreeEntry) -> bytes:
        self.reads.append(entry.path)
        return self.files[entry.path]

    def link_at(self, path: str) -> str | None:
        return self.links.get(path)

    def evaluate(self, path: str = ".", limits: Limits = Limits(), namespace: str | None = "ns") -> content.Evaluation:
        return evaluate(self.entries(), path, self.read, self.link_at, limits, namespace)


def bp(name: str, version: str = "1.0.0") -> str:
    return blueprint_yaml(name, version, "ops")


# --- path confinement -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"), [(".", ""), ("", ""), ("./blueprints/", "blueprints"), ("a//b/./c", "a/b/c")]
)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize("bad", ["/etc", "../other", "a/../../b", "a/..", "a\\b"])
def test_paths_leaving_the_repository_are_refused(bad: str) -> None:
    with pytest.raises(PathError):
        normalize_path(bad)
    result = Tree({"a.yaml": bp("a")}).evaluate(bad)
    assert not result.ok and result.blueprints == []


def test_only_files_under_the_configured_folder_are_read() -> None:
    tree = Tree(
        {
            "blueprints/a.yaml": bp("a"),
            "blueprints/nested/b.yml": bp("b"),
            "blueprints-old/c.yaml": bp("c"),  # a sibling whose name merely starts the same
            "other/d.yaml": "not: [valid",  # outside the path: never read, so never an error
            "blueprints/README.md": "# docs",
            "blueprints/values.json": "{}",
        }
    )
    result = tree.evaluate("blueprints")
    assert result.ok, result.issues
    assert sorted(b.name for b in result.blueprints) == ["a", "b"]
    assert sorted(tree.reads) == ["blueprints/a.yaml", "blueprints/nested/b.yml"]


def test_single_file_and_globs() -> None:
    tree = Tree({"teams/a/blueprint.yaml": bp("a"), "teams/b/blueprint.yaml": bp("b"), "teams/b/x.yaml": bp("x")})
    assert [b.name for b in tree.evaluate("teams/a/blueprint.yaml").blueprints] == ["a"]
    assert sorted(b.name for b in tree.evaluate("teams/*/blueprint.yaml").blueprints) == ["a", "b"]
    assert sorted(b.name for b in tree.evaluate("**/x.yaml").blueprints) == ["x"]
    assert walk_root("teams/*/blueprint.yaml") == "teams"
    assert walk_root("./teams/a/") == "teams/a"
    assert in_scope("teams/a/blueprint.yaml", "teams/**")
    assert not in_scope("teamsx/a.yaml", "teams")


# --- symlinks -----------------------------------------------------------------------------


def follow(links: dict[str, str]) -> Callable[[str], str | None]:
    return links.get


@pytest.mark.parametrize(
    ("link", "target", "links", "expected"),
    [
        ("bp/a.yaml", "b.yaml", {}, "bp/b.yaml"),
        ("bp/a.yaml", "../shared/a.yaml", {}, "shared/a.yaml"),
        ("bp/a.yaml", "./x/../b.yaml", {}, "bp/b.yaml"),
        # through another in-repo link: bp/d -> ../shared, then d/a.yaml
        ("bp/a.yaml", "d/a.yaml", {"bp/d": "../shared"}, "shared/a.yaml"),
    ],
)
def test_links_inside_the_repository_resolve(link: str, target: str, links: dict[str, str], expected: str) -> None:
    res = resolve_link(link, target, follow(links))
    assert (res.target, res.escapes, res.loop) == (expected, False, False)


@pytest.mark.parametrize(
    ("link", "target", "links"),
    [
        ("a.yaml", "/etc/passwd", {}),
        ("a.yaml", "../outside.yaml", {}),
        ("bp/a.yaml", "../../etc/passwd", {}),
        ("bp/deep/a.yaml", "../../../x", {}),
        # lexically inside, physically outside: bp/up -> ../.. is the repo's parent
        ("bp/a.yaml", "up/etc/passwd", {"bp/up": "../.."}),
        # '..' after a linked folder climbs from the link's target, like the kernel does
        ("a.yaml", "sub/../../x", {"sub": "d1/d2/../.."}),
        ("a.yaml", "abs/x", {"abs": "/"}),
    ],
)
def test_links_leaving_the_repository_escape(link: str, target: str, links: dict[str, str]) -> None:
    assert resolve_link(link, target, follow(links)).escapes


def test_link_loops_are_detected() -> None:
    res = resolve_link("a.yaml", "b", follow({"b": "c", "c": "b"}))
    assert res.loop and res.target is None


def test_escaping_symlink_refuses_the_whole_commit() -> None:
    tree = Tree({"bp/a.yaml": bp("a")}, links={"bp/passwd.yaml": "../../../../etc/passwd"})
    result = tree.evaluate("bp")
    assert result.blueprints == []
    (issue,) = result.issues
    assert issue.source == "bp/passwd.yaml"
    assert "points outside the repository" in issue.message
    assert tree.reads == ["bp/a.yaml"]  # nothing is ever read through a link


def test_escaping_symlink_without_yaml_suffix_is_refused_too() -> None:
    # A linked *folder* pointing outside would be traversed by a naive checkout-based tool.
    result = Tree({"bp/a.yaml": bp("a")}, links={"bp/etc": "/etc"}).evaluate("bp")
    assert not result.ok and "outside the repository" in result.issues[0].message


def test_in_repo_symlinks_are_skipped_not_followed() -> None:
    tree = Tree({"bp/a.yaml": bp("a"), "shared/b.yaml": bp("b")}, links={"bp/b.yaml": "../shared/b.yaml"})
    result = tree.evaluate("bp")
    assert result.ok
    assert [b.name for b in result.blueprints] == ["a"]
    assert result.skipped == ["bp/b.yaml"]
    assert "shared/b.yaml" not in tree.reads


def test_submodules_are_skipped() -> None:
    entries = [TreeEntry("bp/a.yaml", MODE_FILE, 10, "a"), TreeEntry("bp/vendor", MODE_SUBMODULE)]
    result = evaluate(entries, "bp", lambda e: bp("a").encode(), lambda p: None)
    assert result.ok and result.skipped == ["bp/vendor"]


def test_executable_yaml_is_read_like_any_file() -> None:
    entries = [TreeEntry("a.yaml", MODE_EXECUTABLE, 10, "a")]
    result = evaluate(entries, ".", lambda e: bp("a").encode(), lambda p: None)
    assert [b.name for b in result.blueprints] == ["a"]


# --- size limits -------------------------------------------------------------------------


def test_oversized_file_is_refused_without_being_read() -> None:
    big = "# padding\n" * 20_000  # ~200 KB
    tree = Tree({"a.yaml": bp("a"), "big.yaml": bp("big") + big})
    result = tree.evaluate(limits=Limits(max_file_bytes=100_000))
    assert result.blueprints == []
    (issue,) = result.issues
    assert issue.source == "big.yaml" and "more than the limit of 100000 bytes" in issue.message
    assert "big.yaml" not in tree.reads


def test_total_size_limit_reads_nothing() -> None:
    tree = Tree({f"bp{i}.yaml": bp(f"bp{i}") for i in range(10)})
    size = len(bp("bp0").encode())
    result = tree.evaluate(limits=Limits(max_total_bytes=size * 5))
    assert result.blueprints == [] and tree.reads == []
    assert "per sync" in result.issues[0].message


def test_file_count_limit() -> None:
    tree = Tree({f"bp{i}.yaml": bp(f"bp{i}") for i in range(5)})
    result = tree.evaluate(limits=Limits(max_files=3))
    assert not result.ok and "more than the limit of 3" in result.issues[0].message


def test_bytes_larger_than_the_tree_said_are_refused() -> None:
    entries = [TreeEntry("a.yaml", MODE_FILE, 10, "a")]
    result = evaluate(entries, ".", lambda e: b"x" * 200, lambda p: None, Limits(max_file_bytes=100))
    assert not result.ok


def test_default_limits() -> None:
    assert Limits().max_file_bytes == 1024 * 1024 and Limits().max_total_bytes == 16 * 1024 * 1024


# --- validation and atomicity --------------------------------------------------------------


def test_invalid_yaml_names_file_and_line() -> None:
    broken = "apiVersion: blueprintd.io/v1alpha1\nkind: Blueprint\nmetadata: {name: b}\nspec: [oops\n"
    result = Tree({"bp/a.yaml": bp("a"), "bp/b.yaml": broken}).evaluate("bp")
    assert result.blueprints == []  # a.yaml is valid, but the commit is refused as a whole
    (issue,) = result.issues
    assert (issue.source, issue.line) == ("bp/b.yaml", 5)
    assert "malformed YAML" in issue.message


def test_schema_errors_name_file_line_and_field() -> None:
    text = bp("a").replace("  version: 1.0.0\n", "  version: 1.0.0\n  replicas: 3\n")
    result = Tree({"a.yaml": text}).evaluate()
    (issue,) = result.issues
    assert (issue.source, issue.line, issue.field) == ("a.yaml", 9, "spec.replicas")
    assert issue.message == "unknown field 'replicas'"


def test_every_problem_of_every_file_is_reported() -> None:
    tree = Tree(
        {
            "a.yaml": bp("a").replace("version: 1.0.0", "version: one"),
            "b.yaml": bp("b").replace("name: config", "name: Not_A_Label"),
            "c.yaml": "\xff".encode("latin-1"),
        }
    )
    result = tree.evaluate()
    assert [i.source for i in result.issues] == ["a.yaml", "b.yaml", "c.yaml"]
    assert "not UTF-8" in result.issues[2].message


def test_only_blueprints_are_accepted() -> None:
    mc = "apiVersion: blueprintd.io/v1alpha1\nkind: MemberCluster\nmetadata: {name: x}\nspec: {}\n"
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    result = Tree({"a.yaml": bp("a"), "mc.yaml": mc, "cm.yaml": cm}).evaluate()
    assert not result.ok
    assert {i.source for i in result.issues} == {"mc.yaml", "cm.yaml"}


def test_duplicate_names_across_files() -> None:
    result = Tree({"a.yaml": bp("same"), "b.yaml": bp("same", "2.0.0")}).evaluate()
    assert "defined twice" in result.issues[0].message


def test_namespace_must_match_the_sync_namespace() -> None:
    text = bp("a").replace("  name: a\n", "  name: a\n  namespace: elsewhere\n")
    result = Tree({"a.yaml": text}).evaluate(namespace="ns")
    (issue,) = result.issues
    assert issue.line == 5 and "syncs into namespace 'ns'" in issue.message
    assert Tree({"a.yaml": text.replace("elsewhere", "ns")}).evaluate(namespace="ns").ok


def test_multi_document_files_and_provenance() -> None:
    result = Tree({"all.yaml": bp("a") + "---\n" + bp("b")}).evaluate()
    a, b = result.blueprints
    assert (a.file, a.line, b.file, b.line) == ("all.yaml", 1, "all.yaml", 21)
    assert a.labels == {"team": "platform"}


def test_spec_is_exactly_what_the_file_sets() -> None:
    # Defaults are not filled in: the stored object stays as written and identical files
    # always give identical specs (so identical content hashes).
    (only,) = Tree({"a.yaml": bp("a")}).evaluate().blueprints
    assert set(only.spec) == {"version", "description", "addons"}
    assert only.spec["addons"][0] == {
        "name": "config",
        "namespace": "ops",
        "manifests": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "gitops-version"},
                "data": {"version": "1.0.0"},
            }
        ],
    }
    again = Tree({"a.yaml": bp("a")}).evaluate().blueprints[0]
    assert again.spec == only.spec and again.blueprint.content_hash() == only.blueprint.content_hash()


def test_empty_folder_is_a_valid_empty_commit() -> None:
    result = Tree({"docs/readme.md": "hi"}).evaluate()
    assert result.ok and result.blueprints == []
