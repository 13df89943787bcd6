#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine: a venv with the pinned
# Python dependencies (hash-checked), the project installed editable, and the
# external programs the tests use (Helm 3.19, Helm 4, Docker Compose v2).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real components: an OCI registry (distribution
# 2.8), skopeo as an independent OCI client, busybox for test images, htpasswd, and Docker
# 20.10 (dockerd + containerd + runc) for the quickstart; tests and the demo start their own
# engine on a private socket (tests/support/engine.py), never the system service; podman 4.3
# as the second engine, configured per test through CONTAINERS_* variables (tests/support/podman.py),
# with catatonit, the init podman's --init runs (a service with `init: true`; Debian's podman only
# recommends it), and what rootless podman needs (tests/test_podman_rootless.py, as a user the test
# creates): uidmap (newuidmap/newgidmap) and slirp4netns, also only recommended by podman; python3-venv
# for that user's releaser (the system Python, which an unprivileged user can run).
# pass + golang-docker-credential-helpers: docker-credential-pass, a real Docker credential helper
# (over a throwaway gpg key and password store) for the registry-credentials tests.
# The Kubernetes end-to-end cluster (tests/support/cluster.py) is built from Go modules; beside
# Go it needs gcc + libseccomp-dev + pkg-config (runc with seccomp, the static pause binary),
# nftables (kube-proxy's nftables mode), iptables + ipset (the NetworkPolicy enforcer) and curl.
# The TCP-AO guest (tests/test_tcpao_kernel.py): a kernel built from Debian trixie's source
# (scripts/build_ao_kernel.py: make, gcc, bc, flex, bison, libelf-dev), booted by qemu-system-x86
# under software emulation with a busybox initramfs that cpio packs.
# The Quadlet host (tests/test_quadlet.py): a Debian trixie root (podman 5.4, systemd 257) that
# debootstrap makes (scripts/build_quadlet_host.py), booted with systemd as PID 1 in a container.
DEBS=(docker-registry skopeo busybox-static apache2-utils zstd openssl shellcheck docker.io podman catatonit uidmap slirp4netns python3-venv pass golang-docker-credential-helpers
  gcc libc6-dev libseccomp-dev pkg-config nftables iptables ipset curl
  make bc flex bison libelf-dev qemu-system-x86 cpio debootstrap)
# RELEASER_SETUP_SKIP="docker.io podman": leave those out, e.g. on a CI runner whose own Docker
# (docker-ce) would conflict with Debian's docker.io; the tests that need them then say so.
missing=()
for p in "${DEBS[@]}"; do
  case " ${RELEASER_SETUP_SKIP:-} " in *" $p "*) continue ;; esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: needs Debian packages ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  # Never start the packaged registry service: tests run their own on loopback.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.deps-$(sha256sum requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -f .venv/.deps-*
  touch "$stamp"
fi
.venv/bin/python scripts/install_tools.py
# releaser's probe image (probe/, Go): built into the package (releaser/probe/image/), reproducibly;
# rebuilt only when its source or the Go version changes.
.venv/bin/python scripts/build_probe.py
# cosign 2 and 3, syft and the oras CLI, built from their modules (pinned, cached outside the repository):
# the tests sign images with cosign in both formats, check the trust policy's verdicts against
# cosign's own, make SBOMs with syft (bundle --sbom), and list the referrers a load wrote with oras.
.venv/bin/python scripts/build_go_tools.py
# the TCP-AO guest's kernel: trixie's linux-source-6.12 (pinned by version and sha256) with
# CONFIG_TCP_AO, cached outside the repository by version and config (a few minutes cold).
.venv/bin/python scripts/build_ao_kernel.py
# the Quadlet host: Debian trixie's podman 5.4 and systemd 257 (pinned versions) in a root file system
# that debootstrap makes, cached outside the repository as a tar file (about 75 s cold).
.venv/bin/python scripts/build_quadlet_host.py

# checkov (the chart's policy scanner in the tests) pins packaging<24, which pytest 9 cannot
# share: it gets a venv of its own, hash-pinned like everything else.
cstamp=.tools/checkov/.deps-$(sha256sum requirements/checkov.lock | cut -c1-16)
if [ ! -f "$cstamp" ]; then
  rm -rf .tools/checkov
  "$PY" -m venv .tools/checkov
  .tools/checkov/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements/checkov.lock
  touch "$cstamp"
fi
