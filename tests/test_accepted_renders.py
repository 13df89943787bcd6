"""What `validate` accepts, every consumer accepts: releases generated in the shape of the schema,
with the values users write that break documents (`$`, `{}`, `: `, ` #`, quotes, newlines, non-ASCII,
YAML indicators, URL-path punctuation, quantity and ID edge cases). For each one that validates,
the rendered Compose file passes `docker compose config`, the chart `helm template` on Helm 3 and
Helm 4, every manifest is strictly valid for the newest Kubernetes, and the two outputs say the
same of each service (tests/support/agreement.py). A failing example is printed shrunk; keep it
as an `@example` of the test.

Bounded in `make test` (tests/support/fuzz.py CASES "accepted releases"); `make fuzz` runs 20x.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from releaser.errors import ValidationError
from releaser.pipeline import load_plan, render_files
from releaser.release import load_release

from .support import fuzz
from .support.agreement import check_outputs
from .test_fuzz import _synthetic_lock

TRICKY = [
    "$5", "$$", "${HOME}", "${X:-y}", "a: b", "x #y", "# c", "'q'", '"dq"', "{x}", "[a]", "line\nbreak",
    "tab\there", "é ü 日本", "100%", "--flag=1", "@at", "*star", "&anchor", "!tag", "|", ">", "-", "~", "null",
    "true", "0x10", "1e3", "010", "", " lead", "trail ", "\\back", "a,b", "?q", "`tick`",
]  # fmt: skip
text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), max_size=12),
)
names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
url_paths = st.from_regex(r"/[-a-zA-Z0-9._~!&'()*+,;=:@%/]{0,16}", fullmatch=True)
file_names = st.from_regex(r"[a-zA-Z0-9][-._a-zA-Z0-9]{0,10}", fullmatch=True)
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True)


@st.composite
def services(draw: st.DrawFn, name: str, earlier: list[str]) -> dict[str, Any]:
    numbers = draw(st.lists(st.integers(1024, 65535), min_size=1, max_size=3, unique=True))
    port_names = draw(st.lists(names, min_size=len(numbers), max_size=len(numbers), unique=True))
    ports = [
        {"name": n, "port": p, **({"exposure": "public"} if draw(st.booleans()) else {})}
        for n, p in zip(port_names, numbers, strict=True)
    ]
    svc: dict[str, Any] = {"image": "app", "ports": ports}
    if draw(st.booleans()):
        svc["args"] = draw(st.lists(text, max_size=4))
    if draw(st.booleans()):
        svc["command"] = draw(st.lists(text, min_size=1, max_size=2))
    if draw(st.booleans()):
        svc["env"] = draw(st.dictionaries(env_names, text, max_size=4))
    kind = draw(st.sampled_from(["http", "tcp", None]))
    if kind == "http":
        svc["health"] = {"http": {"path": draw(url_paths), "port": port_names[0]}}
    elif kind == "tcp":
        svc["health"] = {"tcp": {"port": port_names[0]}}
    if draw(st.booleans()):
        uid, gid = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
        svc["user"] = f"{uid}:{gid}"
    if draw(st.booleans()):
        svc["resources"] = {
            "requests": {"cpu": draw(st.sampled_from(["1m", "100m", "0.5", "1", "2.25"])),
                         "memory": draw(st.sampled_from(["1Mi", "64Mi", "1Gi", "512M", "1000k"]))},
        }  # fmt: skip
    if draw(st.booleans()):
        svc["configs"] = [
            {"path": f"/etc/{name}/{draw(file_names)}", "content": draw(text)}
            for _ in range(draw(st.integers(1, 2)))
        ]
        paths = [c["path"] for c in svc["configs"]]
        if len(set(paths)) != len(paths):
            svc["configs"] = svc["configs"][:1]
    if draw(st.booleans()):
        svc["volumes"] = [{"name": "data", "mountPath": draw(st.from_regex(r"/[a-z][-a-z0-9_./]{0,12}", fullmatch=True)),
                           "size": draw(st.sampled_from(["1Gi", "64Mi", "10G"]))}]  # fmt: skip
    if draw(st.booleans()):
        svc["secrets"] = [{"name": draw(names), "generate": {"length": draw(st.integers(16, 64))}}]
    if draw(st.booleans()):
        svc["scratch"] = [
            {"path": draw(st.from_regex(r"/[a-z][-a-z0-9_.]{0,10}", fullmatch=True)), "size": "16Mi"}
        ]
    if draw(st.booleans()):
        svc["metrics"] = {"port": port_names[-1], "path": draw(url_paths)}
    if draw(st.booleans()):
        svc["expose"] = {"host": f"{name}.example.com", "port": port_names[0], "path": draw(url_paths)}
    if earlier and draw(st.booleans()):
        svc["dependsOn"] = draw(st.lists(st.sampled_from(earlier), min_size=1, unique=True))
    if draw(st.booleans()):
        svc["description"] = draw(text)
    return svc


@st.composite
def releases(draw: st.DrawFn) -> dict[str, Any]:
    service_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    out: dict[str, Any] = {}
    for i, name in enumerate(service_names):
        out[name] = draw(services(name, service_names[:i]))
    if draw(st.booleans()):  # a job the first service waits for (a Job of the release, a waiter)
        job = "job" + draw(st.from_regex(r"[0-9]{0,3}", fullmatch=True))
        if job not in out:
            out[job] = {"image": "app", "job": {}, "args": draw(st.lists(text, max_size=3)),
                        "env": draw(st.dictionaries(env_names, text, max_size=2))}  # fmt: skip
            first = out[service_names[0]]
            first["dependsOn"] = [*first.get("dependsOn", []), job]
    return {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {
            "name": draw(names),
            "version": f"{draw(st.integers(0, 2**64 - 1))}.{draw(st.integers(0, 99))}.{draw(st.integers(0, 9))}",
            "description": draw(text),
        },
        "images": {
            "app": {"ref": "registry.example.org/app/app:1"},
            "probe": {"ref": "registry.example.org/app/releaser-probe:1"},
        },
        **({"probe": {"image": "probe"}} if draw(st.booleans()) else {}),
        "services": out,
    }


def _release(services: dict[str, Any], version: str = "0.0.0", description: str = "") -> dict[str, Any]:
    """A release document around `services`, all of them on the image `app`."""
    return {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {
            "name": "a",
            "version": version,
            **({"description": description} if description else {}),
        },
        "images": {"app": {"ref": "registry.example.org/app/app:1"}},
        "services": services,
    }


@fuzz.cases("accepted releases")
@given(doc=releases())
@example(
    doc=_release(
        {
            "web": {
                "image": "app",
                "ports": [{"name": "http", "port": 8080, "exposure": "public"}],
                "args": ["--greeting=a: b # c", "${HOME}", "$$", "line\nbreak"],
                "env": {"MOTD": "'q' \"dq\" {x} [a] é"},
                "health": {"http": {"path": "/a:b@c;d=e&f", "port": "http"}},
                "configs": [{"path": "/etc/web/a.b-c_d", "content": "key: ${NOT} # kept"}],
            }
        },
        version="1.0.0",
        description="price: $5 # {x}",
    )
)
@example(  # found by this test (long run): an env variable named N became `false` in Helm (YAML 1.1)
    doc=_release(
        {
            "a": {
                "image": "app",
                "ports": [{"name": "a", "port": 1024}],
                "env": {"N": "$5", "Y": "y", "ON": "Off"},
                "health": {"http": {"path": "/", "port": "a"}},
            }
        },
        description="$5",
    )
)
@example(  # found by this test: Compose (YAML 1.2) read `1e3` as a number and the chart wrote `subPath: 0`
    doc=_release(
        {
            "a": {
                "image": "app",
                "ports": [{"name": "a", "port": 1024}],
                "command": ["1e3"],
                "args": ["0o17", "Null", ".5", "+.inf"],
                "env": {"X": "0x1F"},
                "configs": [
                    {"path": "/etc/a/0", "content": "1e3"},
                    {"path": "/etc/a/1e3", "content": "true"},
                ],
            }
        }
    )
)
def test_what_validate_accepts_every_consumer_accepts(
    doc: dict[str, Any], compose_cmd: list[str], compose_env: dict[str, str], helm3: str, helm4: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "release.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        if not _synthetic_lock(d):
            fuzz.record("accepted releases", "refused by validate")
            return
        load_release(d)  # valid: what follows must hold
        plan, _ = load_plan(d)
        for sub, files in render_files(plan).items():
            for rel, content in files.items():
                (d / "out" / sub / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / "out" / sub / rel).write_bytes(content)
        check_outputs(d / "out", compose_cmd, compose_env, [helm3, helm4])
        fuzz.record("accepted releases", "accepted and checked by every consumer")


def test_a_name_yaml_reads_as_a_boolean_or_null_is_refused_by_name(tmp_path: Path) -> None:
    """`on`, `yes`, `null`... as a service or port name: Helm's and Kubernetes' YAML 1.1 parsers
    would read a boolean or null where a name must be; validate says so, naming the place."""
    for services, where in (
        ({"on": {"image": "app"}}, "$.services"),
        ({"web": {"image": "app", "ports": [{"name": "yes", "port": 80}]}}, "$.services.web.ports[0].name"),
    ):
        (tmp_path / "release.yaml").write_text(yaml.safe_dump(_release(services, version="1.0.0")))
        try:
            load_release(tmp_path)
        except ValidationError as exc:
            (problem,) = [p for p in exc.problems if "YAML 1.1" in p.message]
            assert problem.path == where and "cannot be a name" in problem.message, problem
            assert problem.fix == "choose another name"
        else:
            raise AssertionError(f"{services} validated")
