"""YAML loading that remembers where every value came from.

PyYAML's composed node tree carries marks; we build plain Python data from it
and keep a map JSON-path -> line, so schema and semantic problems can name
`file:line` as well as `$.services.x.ports[0]`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem
from .fs import UnreadableInput, read_input

PathT = tuple[str | int, ...]
_MAX_DEPTH = 64
# Budgets for untrusted YAML: a release.yaml or a lock of a large product has a few thousand
# values and a few hundred KiB. Aliases are expanded as they are built, so a "billion laughs"
# document of 60 bytes would otherwise expand to gigabytes: every value built counts.
MAX_BYTES = 4 << 20
MAX_VALUES = 50_000
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")


def json_path(path: PathT) -> str:
    """Render ('services', 'a', 'ports', 0) as $.services.a.ports[0]."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


@dataclass(frozen=True)
class Source:
    """Parsed YAML plus the line of every path in it."""

    file: str
    data: Any
    lines: dict[PathT, int]

    def line(self, path: PathT) -> int | None:
        """Line of the longest known prefix of `path` (1-based)."""
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]

    def problem(
        self, path: PathT, message: str, fix: str | None = None, *, severity: str = "error"
    ) -> Problem:
        return Problem(
            file=self.file,
            line=self.line(path),
            path=json_path(path),
            message=message,
            fix=fix,
            severity=severity,
        )


class _TooManyValues(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


# libyaml's parser (PyYAML's C loader: node marks kept for file:line), or PyYAML's own where it was
# built without libyaml; both give the same nodes
_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVED: dict[tuple[str, tuple[bool, bool]], str] = {}  # a plain scalar's tag by its text
_RESOLVED_MAX = 8192


class _Loader(_BASE):  # type: ignore[misc,valid-type]  # CSafeLoader has no stubs
    """The loader with each plain scalar's tag resolved once per text: PyYAML's resolver tries its
    regular expressions on every scalar, and a large release repeats the same few hundred words
    (the tag depends on the text alone: SafeLoader has no path resolvers)."""

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode or len(value) > 128:
            return str(super().resolve(kind, value, implicit))
        key = (value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(_RESOLVED) < _RESOLVED_MAX:
                _RESOLVED[key] = tag
        return tag


LOADER: type[yaml.SafeLoader] = _Loader


class _Builder:
    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.lines: dict[PathT, int] = {}
        self.problems: list[Problem] = []
        self.values = 0
        self.open: set[int] = set()  # the collections being built: one inside itself is a recursive alias

    def build(self, node: yaml.Node, path: PathT, depth: int = 0) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooManyValues(node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self.open:
                self.problems.append(
                    Problem(
                        file=self.file,
                        line=node.start_mark.line + 1,
                        path=json_path(path),
                        message="a recursive alias: this value contains itself",
                        fix="write the value out instead of referring to the value it is part of",
                    )
                )
                return None
            self.open.add(id(node))
            try:
                return self._collection(node, path, depth)
            finally:
                self.open.discard(id(node))
        return self.loader.construct_object(node, deep=True)

    def _collection(self, node: yaml.CollectionNode, path: PathT, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            self.problems.append(
                Problem(
                    file=self.file,
                    line=node.start_mark.line + 1,
                    path=json_path(path),
                    message=f"nesting deeper than {_MAX_DEPTH} levels (or a recursive alias)",
                    fix="flatten the document; release.yaml never needs this depth",
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            self.loader.flatten_mapping(node)
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        Problem(
                            file=self.file,
                            line=key_node.start_mark.line + 1,
                            path=json_path(path),
                            message="a mapping key must be a plain string",
                            fix="write the key as a quoted string",
                        )
                    )
                    continue
                key = str(key_node.value)
                kpath = (*path, key)
                if key in out:
                    self.problems.append(
                        Problem(
                            file=self.file,
                            line=key_node.start_mark.line + 1,
                            path=json_path(kpath),
                            message=f"duplicate key {key!r} (first on line {self.lines.get(kpath)})",
                            fix="remove one of them; YAML would silently keep only the last",
                        )
                    )
                    continue
                self.lines[kpath] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, kpath, depth + 1)
            return out
        return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]


def load_source(path: Path, *, display: str | None = None) -> tuple[Source | None, list[Problem]]:
    """Read and parse a YAML file. Returns (source, problems); source is None when unparseable."""
    name = display or str(path)
    try:
        text = read_input(path, MAX_BYTES).decode("utf-8")
    except UnreadableInput as exc:
        big = exc.what.startswith("holds more")
        fix = "point at the release.yaml (or lock) itself; a release needs a few hundred KiB at most"
        what = f"{exc.what}: a release file is read only up to {MAX_BYTES:,}" if big else exc.what
        return None, [Problem(file=name, line=None, path="$", message=what, fix=fix if big else exc.fix)]
    except FileNotFoundError:
        return None, [
            Problem(
                file=name,
                line=None,
                path="$",
                message="file not found",
                fix="create it with `releaser init DIR`, or point at the directory that holds it",
            )
        ]
    except UnicodeDecodeError as exc:
        return None, [
            Problem(
                file=name,
                line=None,
                path="$",
                message=f"not UTF-8 text ({exc.reason})",
                fix="save the file as UTF-8",
            )
        ]
    except OSError as exc:
        return None, [
            Problem(file=name, line=None, path="$", message=f"cannot read: {exc.strerror}", fix=None)
        ]
    return parse_source(text, name)


def parse_source(text: str, name: str) -> tuple[Source | None, list[Problem]]:
    try:
        yaml.reader.Reader(text)  # control characters, refused up front with the fix below
        loader = LOADER(text)
    except yaml.YAMLError as exc:
        return None, [
            Problem(
                file=name,
                line=None,
                path="$",
                message=f"not YAML text: {exc}",
                fix="remove the control characters; release.yaml is plain UTF-8 text",
            )
        ]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [
                Problem(
                    file=name,
                    line=None,
                    path="$",
                    message="the document is empty",
                    fix="start from `releaser init DIR`",
                )
            ]
        builder = _Builder(name, loader)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = " ".join(x for x in (exc.context, exc.problem) if x)
        return None, [
            Problem(
                file=name,
                line=line,
                path="$",
                message=f"YAML syntax: {msg}",
                fix="fix the YAML at that line (indentation, quoting, a missing ':')",
            )
        ]
    except yaml.YAMLError as exc:
        return None, [
            Problem(
                file=name,
                line=None,
                path="$",
                message=f"YAML: {exc}",
                fix="fix the YAML (quoting, indentation)",
            )
        ]
    except _TooManyValues as exc:
        return None, [
            Problem(
                file=name,
                line=exc.line,
                path="$",
                message=f"the document expands to more than {MAX_VALUES:,} values (aliases: each `*name` "
                "repeats what `&name` holds, and aliases of aliases multiply)",
                fix="write the values out, or use fewer nested aliases; a release needs a few thousand values",
            )
        ]
    except RecursionError:
        return None, [
            Problem(
                file=name,
                line=None,
                path="$",
                message="the document nests too deeply",
                fix="flatten the document",
            )
        ]
    finally:
        loader.dispose()
    return Source(file=name, data=data, lines=builder.lines), builder.problems
