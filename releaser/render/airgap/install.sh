#!/bin/sh
# install.sh: releaser @VERSION@ from this bundle's wheels, with no network.
# Covered by the bundle's checksums.txt and its signature: check them first (INSTALL.md, step 1).
#
#   sh installer/install.sh [--venv DIR] [--python PYTHON]
#
# Needs CPython @PYTHONS@ (any of them) with venv, on Linux @MACHINES@.
# Makes a venv (default ./releaser-venv) and installs releaser and its dependencies from
# installer/wheels/ with `pip --no-index --require-hashes`: every wheel is checked against the
# hash in installer/requirements.txt, and pip never asks a package index for anything.
# Exit codes: 0 installed, 2 usage, 5 no suitable Python (or venv, or pip) on this host.
set -eu

pythons='@PYTHONS@'  # the CPython versions installer/wheels/ has wheels for
machines='@MACHINES@'
venv=./releaser-venv
python=''
while [ $# -gt 0 ]; do
	case $1 in
	--venv) [ $# -ge 2 ] || { echo "error: --venv needs a directory" >&2; exit 2; }; venv=$2; shift 2 ;;
	--python) [ $# -ge 2 ] || { echo "error: --python needs a program" >&2; exit 2; }; python=$2; shift 2 ;;
	-h | --help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "error: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done

here=$(cd "$(dirname "$0")" && pwd)
machine=$(uname -m)
case " $machines " in
*" $machine "*) ;;
*) echo "error: this installer has wheels for Linux @MACHINES@, not $machine; install releaser from PyPI on a connected host" >&2; exit 5 ;;
esac

# the first Python whose version has wheels here: --python, else python3, else python3.X
supported() { # PROGRAM -> prints its X.Y when it is one of @PYTHONS@
	v=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || return 1
	case " $pythons " in *" $v "*) echo "$v" ;; *) return 1 ;; esac
}
if [ -n "$python" ]; then
	version=$(supported "$python") ||
		{ echo "error: $python is not CPython @PYTHONS@ (the versions this installer has wheels for)" >&2; exit 5; }
else
	for candidate in python3 $(for v in $pythons; do printf 'python%s ' "$v"; done); do
		if command -v "$candidate" >/dev/null 2>&1 && version=$(supported "$candidate"); then
			python=$candidate
			break
		fi
	done
	[ -n "$python" ] || {
		echo "error: no CPython @PYTHONS@ found (python3 is $(python3 --version 2>&1 || echo missing))" >&2
		echo "  fix: RHEL 9: dnf install python3.11; Ubuntu 22.04: apt install python3.11-venv; or --python PATH" >&2
		exit 5
	}
fi

echo "installing releaser @VERSION@ with $python ($version, $machine) into $venv"
"$python" -m venv "$venv" ||
	{ echo "error: $python -m venv failed; fix: install its venv module (Debian/Ubuntu: apt install python$version-venv)" >&2; exit 5; }
# --isolated: no pip.conf and no PIP_* variable of this host may add an index or other wheels
"$venv/bin/python" -m pip --isolated --disable-pip-version-check install \
	--quiet --no-index --find-links "$here/wheels" --require-hashes --only-binary=:all: \
	-r "$here/requirements.txt" ||
	{ echo "error: pip could not install from $here/wheels (see above); nothing was downloaded" >&2; exit 5; }
"$venv/bin/releaser" --version
echo "ok: releaser installed: $(cd "$venv" && pwd)/bin/releaser"
