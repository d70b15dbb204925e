"""Read YAML files and remember the line of every node, so errors can name file and line.

PyYAML's composer produces nodes with positions; we construct the Python data from those
nodes (safe types only) and keep a map from field path to line. Blueprint content may come
from an untrusted git repository, so reading is bounded: a size limit per file, duplicate
keys are an error (PyYAML would silently keep the last one), and alias expansion is
counted so that a "billion laughs" document is refused instead of exhausting memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from blueprintd.api.issues import InvalidInput, Issue, Path, PathElem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000
YAML_SUFFIXES = (".yaml", ".yml")
# libyaml's parser when available (about 8x faster, same nodes and marks); safe types only.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """One YAML document: its data, where it came from, and the line of each field path."""

    data: Any
    source: str = ""
    index: int = 0
    start_line: int | None = None
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[PathElem]) -> int | None:
        """Line of ``path``, or of its closest ancestor that exists in the document.

        ``None`` for documents that did not come from YAML text (objects read from an API server).
        """
        key = tuple(str(p) if not isinstance(p, int) else p for p in path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.start_line

    def issue(self, message: str, path: Path = (), allowed: str = "") -> Issue:
        return Issue(message, path, allowed, self.source, self.line_of(path))


def _count(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes after alias expansion (memoised per node, so counting itself stays cheap)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # recursion guard for self-referencing aliases
    total = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _count(k, memo) + _count(v, memo)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _count(item, memo)
    memo[id(node)] = total
    return total


def _index_lines(
    node: yaml.Node, path: Path, lines: dict[Path, int], problems: list[tuple[str, Path, int]], seen: set[int]
) -> None:
    if id(node) in seen:  # an alias: its lines are those of the anchor
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
            child = (*path, key)
            if key in keys and key != "<<":
                problems.append((f"duplicate key {key!r}", child, key_node.start_mark.line + 1))
            keys.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _index_lines(value_node, child, lines, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index_lines(item, (*path, i), lines, problems, seen)


def parse_yaml(text: str, source: str = "<input>") -> list[Document]:
    """All documents of a YAML stream (empty documents skipped); raises ``InvalidInput``."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise InvalidInput([Issue(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", source=source)])
    loader = _LOADER(text)
    docs: list[Document] = []
    issues: list[Issue] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if _count(node, {}) > MAX_EXPANDED_NODES:
                issues.append(
                    Issue(
                        f"document expands to more than {MAX_EXPANDED_NODES} nodes (YAML aliases); refusing it",
                        source=source,
                        line=node.start_mark.line + 1,
                    )
                )
                index += 1
                continue
            lines: dict[Path, int] = {}
            problems: list[tuple[str, Path, int]] = []
            _index_lines(node, (), lines, problems, set())
            for message, path, line in problems:
                issues.append(Issue(message, path, source=source, line=line))
            data = loader.construct_document(node)
            if data is not None:
                docs.append(Document(data, source, index, node.start_mark.line + 1, lines))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        at = mark.line + 1 if mark is not None else None
        issues.append(Issue(f"malformed YAML: {what}", source=source, line=at))
    except yaml.YAMLError as exc:
        issues.append(Issue(f"malformed YAML: {exc}", source=source))
    except RecursionError:
        issues.append(Issue("document is nested too deeply", source=source))
    finally:
        loader.dispose()
    if issues:
        raise InvalidInput(issues)
    return docs


def yaml_files(paths: Iterable[str | FsPath]) -> Iterator[FsPath]:
    """The given files, and the ``*.yaml``/``*.yml`` files under given folders (sorted, recursive).

    Symbolic links inside folders are not followed: content must live where it is found.
    """
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.suffix in YAML_SUFFIXES and child.is_file() and not child.is_symlink():
                    yield child
        else:
            yield path


def read_documents(paths: Iterable[str | FsPath]) -> list[Document]:
    """Parse every YAML document in ``paths``; problems in all files are reported together."""
    docs: list[Document] = []
    issues: list[Issue] = []
    for path in yaml_files(paths):
        source = str(path)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                issues.append(Issue(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", source=source))
                continue
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            issues.append(Issue("no such file or folder", source=source))
            continue
        except UnicodeDecodeError:
            issues.append(Issue("file is not UTF-8 text", source=source))
            continue
        except OSError as exc:
            issues.append(Issue(f"cannot read: {exc.strerror or exc}", source=source))
            continue
        try:
            docs.extend(parse_yaml(text, source))
        except InvalidInput as exc:
            issues.extend(exc.issues)
    if issues:
        raise InvalidInput(issues)
    return docs
