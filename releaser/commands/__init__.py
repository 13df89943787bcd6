"""Commands as a library: one module per command (or command group), each returning a typed
result and never printing. The CLI (releaser/cli/) binds options to these functions and prints
their results as text or as the --json envelope; every result has `to_json()`, whose keys are
pinned by tests and listed in docs/cli.md.

| module | commands |
|---|---|
| init.py | init |
| validate.py | validate |
| lock.py | lock |
| render.py | render |
| check.py | check |
| keys.py | keygen |
| bundle.py | bundle |
| airgap.py | airgap verify / inspect (the file alone) |
| load.py | airgap load (the short form: airgap BUNDLE --to R) |
| split.py | bundle split / join |
| merge.py | bundle merge (a delta and its base -> the full bundle) |
| audit.py | airgap audit |
| inventory.py | airgap inventory |
| diff.py | diff |
| probe.py | probe (the readiness checks, as the containers run them) |
| doctor.py | doctor |
| quickstart.py | quickstart up / status / logs / down / backup / restore / reset / upgrade / rollback / history |

No command imports another (import-linter's `commands` contract), except quickstart.py, which loads a
bundle into its own registry through load.py.
"""
