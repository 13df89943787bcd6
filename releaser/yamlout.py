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


def dump(doc: Any) -> str:
    """`doc` as YAML: block style, keys in their order, long lines kept whole, UTF-8 as is."""
    return yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True
    )


__all__ = ["dump"]
