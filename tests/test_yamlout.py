"""releaser.yamlout.dump writes the bytes PyYAML's dumper writes, directly: held to the same output
on arbitrary documents (hypothesis) and on every document the examples render, and shown to take
its direct path on those (no whole-document fall-back to PyYAML)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from releaser import yamlout
from releaser.pipeline import load_plan
from releaser.render.helm_values import chart_values

from .conftest import RELEASES

# characters that change how YAML writes a string: indicators, quotes, spaces, breaks, escapes,
# non-ASCII, and the words of YAML 1.1 and 1.2 that read back as something else
_CHARS = (
    string.ascii_letters + string.digits + " :#-?,[]{}&*!|>'\"%@`=.+_/$()\\\t\n\r\x00\x85\u00e9\u2028\ufeff"
)
_WORDS = st.sampled_from(
    ["y", "N", "yes", "off", "null", "~", "", "1e3", "0o17", "0x1f", "1_000", "190:20:30", "2001-12-14",
     ".inf", "-.5", "=", "<<", "- x", "a: b", "a #b", "#", "'", '"', " x", "x ", "a  b", "10.77.0.10:1790",
     "registry.local:5000/app@sha256:" + "0" * 64, "http://x:1/y?z=1", "$(VAR)", "@x", "`x`", "%x"]
)  # fmt: skip
_TEXT = st.one_of(_WORDS, st.text(_CHARS, max_size=12), st.text(_CHARS, min_size=150, max_size=400))
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False), _TEXT
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_TEXT, st.integers(), st.none(), st.booleans()), inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(doc=st.one_of(st.dictionaries(_TEXT, _DOCS, max_size=5), st.lists(_DOCS, max_size=5)))
def test_the_direct_writer_writes_what_pyyaml_writes(doc: dict[str, Any] | list[Any]) -> None:
    assert yamlout.dump(doc) == yamlout._pyyaml(doc)


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_the_examples_values_are_written_directly_and_the_same(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, _ = load_plan(RELEASES[name])
    doc = chart_values(plan)
    expected = yamlout._pyyaml(doc)
    whole: list[object] = []
    real = yamlout._pyyaml

    def spy(d: Any) -> str:
        if d is doc:
            whole.append(d)
        return real(d)

    monkeypatch.setattr(yamlout, "_pyyaml", spy)
    assert yamlout.dump(doc) == expected
    assert not whole, "fell back to PyYAML for the whole document"
