"""The rendered chart under a policy scanner (checkov's Kubernetes checks, installed by setup).

Every finding must be one we accept on purpose, listed with its reason in
docs/security.md; pods that are not hostNetwork have none beyond what their
release.yaml chose. The table below and the document must agree.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, TOOLS, missing_component
from .support.chartsite import site
from .test_chart import write_chart

CHECKOV = TOOLS / "checkov" / "bin" / "checkov"

# (release, resource) -> accepted check ids, with the reason in docs/security.md
TCPAO_POD = {
    "CKV_K8S_8",
    "CKV_K8S_9",
    "CKV_K8S_19",
}  # hostNetwork, and probes a TCP-AO listener cannot answer
NO_RESOURCES = {"CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13"}
ACCEPTED = {
    ("bmp-tcpao", "Deployment.prod.collector"): TCPAO_POD,
    ("bmp-tcpao", "Deployment.prod.speaker"): TCPAO_POD,
    ("bmp-tcpao", "Pod.prod.rel-test"): {"CKV_K8S_8", "CKV_K8S_9"},  # the helm test pod runs once
    ("kitchen-sink", "DaemonSet.prod.agent"): {"CKV_K8S_19"},
    ("kitchen-sink", "Deployment.prod.api"): {"CKV_K8S_25"} | NO_RESOURCES,
    ("kitchen-sink", "Deployment.prod.db"): {"CKV_K8S_40"} | NO_RESOURCES,
}


@pytest.mark.helm
@pytest.mark.parametrize("name", ["bmp-tcpao", "kitchen-sink"])
def test_checkov_findings_are_exactly_the_accepted_ones(name: str, helm3: str, tmp_path: Path) -> None:
    if not CHECKOV.exists():
        missing_component("checkov (.tools/checkov)")
    chart = write_chart(name, tmp_path)
    manifests = tmp_path / "manifests.yaml"
    proc = subprocess.run(
        [helm3, "template", "rel", str(chart), "--namespace", "prod", *site(chart)],
        capture_output=True,
        text=True,
        check=True,
    )
    manifests.write_text(proc.stdout)
    scan = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(manifests),
            "--framework",
            "kubernetes",
            "--compact",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    reports = json.loads(scan.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found: dict[str, set[str]] = {}
    passed = 0
    for report in reports:
        passed += report["summary"]["passed"]
        for f in report["results"]["failed_checks"]:
            found.setdefault(f["resource"], set()).add(f["check_id"])
    expected = {res: ids for (rel, res), ids in ACCEPTED.items() if rel == name}
    assert found == expected
    assert passed > 200


def test_every_accepted_check_is_justified_in_the_docs() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    for ids in ACCEPTED.values():
        for check in ids:
            assert f"`{check}`" in doc, f"{check} is accepted but not explained in docs/security.md"
