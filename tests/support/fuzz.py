"""What the fuzz suite (tests/test_fuzz.py) shares: how many cases each target runs, a guard that
turns a hang into a failure, the counts printed at the end of the run, and the mutations.

`RELEASER_FUZZ=long` (`make fuzz`) runs many more cases with a fresh random seed each run; the
default (CI) is a fixed number of cases, derandomized: the same cases every run. `make test-quick`
(RELEASER_TEST_QUICK=1) runs the first quarter of the CI cases, for the edit loop.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = os.environ.get("RELEASER_FUZZ") == "long"
QUICK = not LONG and os.environ.get("RELEASER_TEST_QUICK") == "1"
PROFILE = "long" if LONG else "quick" if QUICK else "ci"
CASE_SECONDS = 30  # a case that runs longer is a hang (every case is meant to take well under a second)

# target -> cases per run (CI, and `make fuzz`)
CASES = {
    "release.yaml (structure)": (150, 3000),
    "release.yaml (bytes)": (150, 3000),
    "release.lock.yaml (structure)": (80, 2000),
    "bundle (members)": (60, 1500),
    "bundle (bytes)": (40, 1000),
    "registry answers": (60, 1500),
    "accepted releases": (15, 300),  # each through compose config, Helm 3 + 4, kubernetes-validate
}
SAMPLE = (3, 25)  # validating documents whose outputs also go through docker compose config + helm template

COUNTS: Counter[tuple[str, str]] = Counter()
STARTED: set[str] = set()


def case_count(target: str) -> int:
    """How many cases `target` runs in this profile."""
    ci, long = CASES[target]
    return long if LONG else max(5, ci // 4) if QUICK else ci


def cases(target: str) -> settings:
    return settings(
        max_examples=case_count(target),
        deadline=None,
        derandomize=not LONG,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def sample_size() -> int:
    return SAMPLE[LONG]


def record(target: str, outcome: str) -> None:
    COUNTS[(target, outcome)] += 1


def summary() -> list[str]:
    targets = sorted({t for t, _ in COUNTS})
    lines = []
    for t in targets:
        outcomes = {o: n for (tt, o), n in COUNTS.items() if tt == t}
        detail = ", ".join(f"{o}: {n}" for o, n in sorted(outcomes.items()))
        lines.append(f"{t}: {sum(outcomes.values())} cases ({detail})")
    return lines


@contextlib.contextmanager
def no_hang(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Fail the case (TimeoutError) when it runs longer than `seconds`."""

    def fire(*_: object) -> None:
        raise TimeoutError(f"a fuzz case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ mutations

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        ["", "0", "-1", "1e999", "sha256:", "sha256:" + "a" * 64, "../x", "/etc/passwd", "\x00", "é"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def strings(doc: Any) -> list[str]:
    """Every string in `doc`, keys included (what a plausible edit picks from)."""
    out: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out += [k for k in node if isinstance(k, str)]
            stack += node.values()
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str):
            out.append(node)
    return sorted(set(out)) or [""]


def mutate(
    draw: st.DrawFn,
    doc: Any,
    rounds: int = 4,
    *,
    values: st.SearchStrategy[Any] = values,
    gentle: bool = True,
) -> Any:
    """Set, delete or add (with `values`) at random paths of a copy of `doc` (a JSON/YAML
    document); with `gentle`, also plausible edits of the same type, as a user makes them."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, rounds))):
        candidates = [p for p in paths(doc) if p]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(
            st.sampled_from(
                ["gentle", "gentle", "set", "delete", "add"] if gentle else ["set", "delete", "add"]
            )
        )
        current = parent[path[-1]]
        if action == "gentle":  # a plausible edit: a value of the same type, as a user makes them
            if isinstance(current, bool):
                parent[path[-1]] = not current
            elif isinstance(current, int):
                parent[path[-1]] = draw(st.integers(0, 70000))
            elif isinstance(current, str):
                parent[path[-1]] = draw(st.sampled_from(strings(doc)))
            elif isinstance(current, list) and current:
                parent[path[-1]] = draw(
                    st.sampled_from([current[:-1], [*current, current[0]], current[::-1]])
                )
        elif action == "set":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


@st.composite
def byte_edits(draw: st.DrawFn, data: bytes, limit: int | None = None) -> bytes:
    """`data` with a few bytes flipped, inserted, deleted, duplicated or cut off (within the first
    `limit` bytes when given: where the structure is)."""
    out = bytearray(data)
    span = min(len(out), limit or len(out))
    for _ in range(draw(st.integers(1, 6))):
        if not out:
            break
        at = draw(st.integers(0, max(0, min(span, len(out)) - 1)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "cut"]))
        if op == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif op == "duplicate":
            out[at:at] = out[at : at + draw(st.integers(1, 256))]
        else:
            del out[at:]
    return bytes(out)
