"""Untrusted git content → validated Blueprints, or every reason none of them is applied.

Pure: the git adapter (``fetch.py``) hands in the tree entries of one commit and a function
that reads a blob; nothing here touches a disk, a network or a cluster, so every rule is
tested with plain data.

A repository is untrusted input. The rules, in the order they are applied:

* only entries under the configured ``path`` are considered (a folder, a single file, or a
  glob); ``path`` itself may not be absolute or contain ``..``;
* symbolic links (git mode 120000) are never followed. A link whose target resolves —
  lexically, through other links of the same tree — outside the repository refuses the whole
  commit; a link that stays inside the repository is skipped and reported, exactly as
  ``blueprintd validate`` skips links in a checkout, so the pre-merge check and the operator
  read the same files;
* submodules (mode 160000) are skipped: their content is another repository that was never
  fetched or reviewed;
* only ``*.yaml`` / ``*.yml`` files are read; any other file is ignored;
* each file is at most ``max_file_bytes`` (default 1 MiB), all files together at most
  ``max_total_bytes`` (default 16 MiB), at most ``max_files`` files; sizes are checked from
  the tree *before* a blob is read, so an oversized blob is never loaded;
* every file is parsed and validated with ``blueprintd.api.load`` (the same code as
  ``blueprintd validate`` and the operator), and every document must be a Blueprint.

All problems of a commit are collected; if there is one, the result has no Blueprints at all:
a commit is applied completely or not at all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from blueprintd.api.blueprint import Blueprint
from blueprintd.api.issues import InvalidInput, Issue
from blueprintd.api.load import load_documents
from blueprintd.api.yamlsrc import YAML_SUFFIXES, Document, parse_yaml

MIB = 1024 * 1024

MODE_TREE = 0o040000
MODE_FILE = 0o100644
MODE_EXECUTABLE = 0o100755
MODE_SYMLINK = 0o120000
MODE_SUBMODULE = 0o160000

MAX_LINK_HOPS = 40  # like the kernel's limit: longer chains are treated as loops
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one sync reads from a repository."""

    max_file_bytes: int = 1 * MIB
    max_total_bytes: int = 16 * MIB
    max_files: int = 1000


@dataclass(frozen=True)
class TreeEntry:
    """One non-tree entry of a commit's tree (a blob, a symlink or a submodule)."""

    path: str  # repository-relative, '/'-separated
    mode: int
    size: int = 0
    oid: str = ""
    link_target: str | None = None  # the link's text, for mode 120000


@dataclass(frozen=True)
class GitBlueprint:
    """A validated Blueprint and where it came from in the repository."""

    blueprint: Blueprint
    file: str
    line: int | None
    spec: dict[str, Any]  # the spec exactly as written (set fields only), JSON types
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def name(self) -> str:
        return self.blueprint.name


@dataclass
class Evaluation:
    """What a commit holds: Blueprints, or the issues that refuse it (never both)."""

    blueprints: list[GitBlueprint] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in-repo symlinks and submodules, not read

    @property
    def ok(self) -> bool:
        return not self.issues


class PathError(ValueError):
    """The configured path is absolute or leaves the repository."""


def normalize_path(path: str) -> str:
    """``./blueprints/`` → ``blueprints``; ``.`` or empty → ``""`` (the whole repository).

    Absolute paths and ``..`` segments are refused: the path may only narrow the repository.
    """
    if path.startswith("/") or "\\" in path:
        raise PathError(f"path {path!r} must be relative to the repository root (with '/' separators)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(f"path {path!r} must not contain '..'")
    return "/".join(parts)


def is_glob(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in path)


def walk_root(path: str) -> str:
    """The deepest folder that contains every match of ``path`` (where the tree walk starts)."""
    root = normalize_path(path)
    if not is_glob(root):
        return root
    static: list[str] = []
    for part in root.split("/"):
        if is_glob(part):
            break
        static.append(part)
    return "/".join(static)


def _glob_match(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Segment-wise glob: ``*``/``?``/``[..]`` within one segment, ``**`` across any number."""
    if not pattern:
        return not parts
    head = pattern[0]
    if head == "**":
        return any(_glob_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _glob_match(pattern[1:], parts[1:])


def in_scope(entry_path: str, path: str) -> bool:
    """Whether ``entry_path`` is covered by the configured ``path`` (folder, file or glob)."""
    root = normalize_path(path)
    if is_glob(root):
        return _glob_match(root.split("/"), entry_path.split("/"))
    return not root or entry_path == root or entry_path.startswith(root + "/")


@dataclass(frozen=True)
class LinkResolution:
    """Where a symlink leads: a repository path, or outside (``escapes``), or nowhere (a loop)."""

    target: str | None
    escapes: bool = False
    loop: bool = False


def resolve_link(
    link_path: str, target: str, link_at: Callable[[str], str | None], max_hops: int = MAX_LINK_HOPS
) -> LinkResolution:
    """Resolve a symlink inside the tree, component by component, following intermediate links.

    ``link_at(path)`` returns the text of the symlink at ``path`` in the same tree, or None
    when ``path`` is not a symlink. Absolute targets and any ``..`` above the repository root
    escape. Resolution is physical (a ``..`` after a linked folder climbs from the link's
    target, like the kernel does), so a chain of innocent-looking links cannot smuggle a path
    out of the repository.
    """
    done: list[str] = link_path.split("/")[:-1]
    if target.startswith("/"):
        return LinkResolution(None, escapes=True)
    todo = list(reversed(target.split("/")))
    hops = 0
    while todo:
        seg = todo.pop()
        if seg in ("", "."):
            continue
        if seg == "..":
            if not done:
                return LinkResolution(None, escapes=True)
            done.pop()
            continue
        candidate = "/".join([*done, seg])
        next_target = link_at(candidate)
        if next_target is None:
            done.append(seg)
            continue
        hops += 1
        if hops > max_hops:
            return LinkResolution(None, loop=True)
        if next_target.startswith("/"):
            return LinkResolution(None, escapes=True)
        todo.extend(reversed(next_target.split("/")))
    return LinkResolution("/".join(done))


@dataclass
class Selection:
    """The files a sync reads, and the problems found before reading anything."""

    files: list[TreeEntry] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    over_budget: bool = False  # total size or file count exceeded: read nothing


def select_files(
    entries: Iterable[TreeEntry], path: str, link_at: Callable[[str], str | None], limits: Limits = Limits()
) -> Selection:
    """Apply the path, symlink, type and size rules to a commit's entries (no blob is read)."""
    sel = Selection()
    total = 0
    for entry in sorted(entries, key=lambda e: e.path):
        if not in_scope(entry.path, path):
            continue
        if entry.mode == MODE_SYMLINK:
            target = entry.link_target or ""
            res = resolve_link(entry.path, target, link_at)
            if res.escapes:
                sel.issues.append(
                    Issue(
                        f"symbolic link to {target!r} points outside the repository; refusing the commit",
                        source=entry.path,
                    )
                )
            elif res.loop:
                sel.issues.append(Issue(f"symbolic link loop through {target!r}", source=entry.path))
            else:
                sel.skipped.append(entry.path)  # in-repo link: never followed (see module docstring)
            continue
        if entry.mode == MODE_SUBMODULE:
            sel.skipped.append(entry.path)
            continue
        if entry.mode not in (MODE_FILE, MODE_EXECUTABLE):
            continue
        if not entry.path.endswith(YAML_SUFFIXES):
            continue
        if entry.size > limits.max_file_bytes:
            sel.issues.append(
                Issue(
                    f"file is {entry.size} bytes, more than the limit of {limits.max_file_bytes} bytes",
                    source=entry.path,
                )
            )
            continue
        total += entry.size
        sel.files.append(entry)
    if len(sel.files) > limits.max_files:
        sel.issues.append(
            Issue(f"{len(sel.files)} YAML files under {path!r}, more than the limit of {limits.max_files}")
        )
        sel.over_budget = True
    if total > limits.max_total_bytes:
        sel.issues.append(
            Issue(
                f"YAML files under {path!r} total {total} bytes, more than the limit of "
                f"{limits.max_total_bytes} bytes per sync"
            )
        )
        sel.over_budget = True
    return sel


def _spec_as_written(doc: Document, blueprint: Blueprint) -> dict[str, Any]:
    """The spec with only the fields the file sets, in JSON types.

    Applying exactly this (not a re-serialisation with defaults filled in) keeps the stored
    object as users wrote it, and identical file content always yields an identical spec —
    so a revert in git produces the same content hash and reuses the existing revision.
    """
    data: dict[str, Any] = blueprint.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return data


def validate_files(files: Sequence[tuple[str, bytes]], namespace: str | None = None) -> list[GitBlueprint]:
    """Parse and validate every file with ``blueprintd.api.load``; raises ``InvalidInput``.

    All files are parsed before anything is decided so that every problem is reported at
    once. Every document must be a Blueprint; ``metadata.namespace``, when set, must be the
    namespace the GitSource syncs into.
    """
    docs: list[Document] = []
    issues: list[Issue] = []
    for path, data in files:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            issues.append(Issue("file is not UTF-8 text", source=path))
            continue
        try:
            docs.extend(parse_yaml(text, path))
        except InvalidInput as exc:
            issues.extend(exc.issues)
    loaded = []
    try:
        loaded = load_documents(docs, Blueprint)
    except InvalidInput as exc:
        issues.extend(exc.issues)
    out: list[GitBlueprint] = []
    for item in loaded:
        bp = item.obj
        assert isinstance(bp, Blueprint)
        doc = item.document
        if namespace is not None and bp.metadata.namespace not in (None, "", namespace):
            issues.append(
                doc.issue(
                    f"metadata.namespace {bp.metadata.namespace!r}: this GitSource syncs into namespace "
                    f"{namespace!r}; remove the field or set it to {namespace!r}",
                    ("metadata", "namespace"),
                )
            )
            continue
        out.append(
            GitBlueprint(
                blueprint=bp,
                file=doc.source,
                line=doc.start_line,
                spec=_spec_as_written(doc, bp),
                labels=dict(bp.metadata.labels),
                annotations=dict(bp.metadata.annotations),
            )
        )
    if issues:
        raise InvalidInput(sorted(issues, key=lambda i: (i.source, i.line or 0)))
    return out


def evaluate(
    entries: Iterable[TreeEntry],
    path: str,
    read: Callable[[TreeEntry], bytes],
    link_at: Callable[[str], str | None],
    limits: Limits = Limits(),
    namespace: str | None = None,
) -> Evaluation:
    """Select, read and validate the Blueprints of one commit: all of them, or none."""
    try:
        normalize_path(path)
    except PathError as exc:
        return Evaluation(issues=[Issue(str(exc))])
    sel = select_files(entries, path, link_at, limits)
    result = Evaluation(skipped=sel.skipped)
    issues = list(sel.issues)
    if not sel.over_budget:
        files: list[tuple[str, bytes]] = []
        for entry in sel.files:
            data = read(entry)
            if len(data) > limits.max_file_bytes:  # the tree lied about the size: trust the bytes
                issues.append(Issue(f"file is larger than {limits.max_file_bytes} bytes", source=entry.path))
                continue
            files.append((entry.path, data))
        try:
            result.blueprints = validate_files(files, namespace)
        except InvalidInput as exc:
            issues.extend(exc.issues)
    if issues:
        result.blueprints = []
        result.issues = sorted(issues, key=lambda i: (i.source, i.line or 0))
    return result
