"""The one way releaser writes YAML that other tools read (compose.yaml, the chart's values.yaml,
values-airgap.yaml, compose.airgap.yaml): PyYAML's safe dumper in block style, keys in the order
given, every string that a YAML 1.2 parser (Compose's) or Helm's YAML 1.1 one would read as a
number, boolean or null written quoted. PyYAML writes `1e3`, `0o17`, `.5E2`, `+.inf`, `Null`, `y` or
`N` plain, which those parsers read as something else."""

from __future__ import annotations

import re
from typing import Any, cast

import yaml

_NOT_A_STRING = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(inf|Inf|INF)"
    r"|\.(nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE|"
    r"|y|Y|n|N|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF"  # YAML 1.1 booleans (Helm's parser)
)


# libyaml's emitter (the same output as PyYAML's own, which stands in where PyYAML was built without it)
_BASE: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BASE):  # type: ignore[valid-type,misc]  # a base chosen at import
    def represent_str(self, data: str) -> yaml.ScalarNode:
        if _NOT_A_STRING.fullmatch(data):
            return cast(yaml.ScalarNode, self.represent_scalar("tag:yaml.org,2002:str", data, style="'"))
        return cast(yaml.ScalarNode, super().represent_str(data))


_Dumper.add_representer(str, _Dumper.represent_str)


def _pyyaml(doc: Any) -> str:
    return yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True
    )


def dump(doc: Any) -> str:
    """`doc` as YAML: block style, keys in their order, long lines kept whole, UTF-8 as is.

    The bytes are PyYAML's (the dumper above), written directly: PyYAML represents each value as a
    node, resolves and analyses each scalar, then emits, at ~10 us a value (a chart of 300 services
    holds ~100,000). Here each distinct scalar is styled once, by PyYAML itself unless it is a plain
    word, and the block structure is written as PyYAML writes it. Anything outside that
    (a multi-line or long string where its indentation matters, a float key, another type) is left
    to PyYAML whole. tests/test_yamlout.py holds the two to the same bytes."""
    if type(doc) not in (dict, list):
        return _pyyaml(doc)
    try:
        return _Direct().document(doc)
    except _Unsupported:
        return _pyyaml(doc)


class _Unsupported(Exception):
    """A value the direct writer leaves to PyYAML."""


# A word PyYAML writes plain in block context when its resolver reads it back as a string: no
# indicator first, no ": " or " #", no leading or trailing space, nothing to escape.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_/$(][A-Za-z0-9_./@+=$()%,-]*(?:(?::| )[A-Za-z0-9_./@+=$()%,-]+)*")
_BREAKS = re.compile("[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break
_LONG = 200  # longer strings are styled by PyYAML in place (its line width is measured from the column)
_STR_TAG = "tag:yaml.org,2002:str"


class _Direct:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.styled: dict[str, str] = {}
        self.resolver = _Dumper(None)  # only its resolve(): which tag a plain scalar reads back as

    def document(self, doc: dict[str, Any] | list[Any]) -> str:
        if not doc:
            return "{}\n" if isinstance(doc, dict) else "[]\n"
        if isinstance(doc, dict):
            self.mapping(doc, 0, first_prefix="")
        else:
            self.sequence(doc, 0, first_prefix="")
        return "".join(self.out)

    def scalar(self, value: Any, *, key: bool = False) -> str:
        t = type(value)
        if t is str:
            styled = self.styled.get(value)
            if styled is None:
                styled = self.styled[value] = self._style(value)
            if key and (len(value) > 100 or _BREAKS.search(value)):
                raise _Unsupported  # PyYAML may write it as a complex key (`? `)
            return styled
        if t is bool:
            return "true" if value else "false"
        if t is int:
            return str(value)
        if value is None:
            return "null"
        if t is float and not key:
            return _pyyaml(value).removesuffix("\n...\n").removesuffix("\n")
        raise _Unsupported

    def _style(self, text: str) -> str:
        if len(text) > _LONG or _BREAKS.search(text):
            raise _Unsupported
        if (
            _PLAIN_WORD.fullmatch(text)
            and not _NOT_A_STRING.fullmatch(text)
            and self.resolver.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
        ):
            return text
        styled = _pyyaml(text)  # one line: the same in any block position
        return styled.removesuffix("\n...\n").removesuffix("\n")

    def mapping(self, doc: dict[Any, Any], indent: int, first_prefix: str) -> None:
        """Block mapping at column `indent`; its first line starts with `first_prefix` (a list's
        dash), the others with spaces."""
        pad = " " * indent
        prefix = first_prefix
        out = self.out
        for k, v in doc.items():
            head = f"{prefix}{self.scalar(k, key=True)}:"
            prefix = pad
            if type(v) is dict:
                if v:
                    out.append(head + "\n")
                    self.mapping(v, indent + 2, " " * (indent + 2))
                else:
                    out.append(head + " {}\n")
            elif type(v) is list:
                if v:
                    out.append(head + "\n")
                    self.sequence(v, indent, pad)  # PyYAML does not indent a mapping's sequence
                else:
                    out.append(head + " []\n")
            elif type(v) is str and (len(v) > _LONG or _BREAKS.search(v)):
                out.append(f"{head} {self._in_place(k, v, indent)}\n")
            else:
                out.append(f"{head} {self.scalar(v)}\n")

    def _in_place(self, key: str, value: str, indent: int) -> str:
        """A long or multi-line value as PyYAML writes it under `key` at column `indent`: its line
        breaks and continuation lines depend on that column, so PyYAML writes it there."""
        doc: dict[str, Any] = {key: value}
        for _ in range(indent // 2):
            doc = {"a": doc}
        lines = _pyyaml(doc).splitlines(keepends=True)[indent // 2 :]
        skip = indent + len(self.scalar(key, key=True)) + 2  # "<indent><key>: "
        return "".join([lines[0][skip:], *lines[1:]]).removesuffix("\n")

    def sequence(self, items: list[Any], indent: int, first_prefix: str) -> None:
        pad = " " * indent
        prefix = first_prefix
        out = self.out
        for v in items:
            dash = prefix + "- "
            prefix = pad
            if type(v) is dict:
                if v:
                    self.mapping(v, indent + 2, dash)
                else:
                    out.append(dash + "{}\n")
            elif type(v) is list:
                if v:
                    self.sequence(v, indent + 2, dash)
                else:
                    out.append(dash + "[]\n")
            else:
                out.append(f"{dash}{self.scalar(v)}\n")


__all__ = ["dump"]
