"""The `releaser` command line: bind options -> call releaser.commands -> print text or --json.

| module | what |
|---|---|
| main.py | the root command, --version/-v, --debug, `completion`, the sub-command groups |
| base.py | the one error boundary, output format, option conventions, default sub-commands |
| release.py | init, validate, lock, render, check, keygen, bundle, doctor |
| airgap.py | airgap verify / inspect / load |
| quickstart.py | quickstart up / status / logs / down / backup / restore / reset |
| options.py | options shared by several commands |
| display.py | progress and readiness displays (stderr, terminals only) |
"""

from .main import app, main

__all__ = ["app", "main"]
