"""The quickstart's stages: host checks and the engine (doctor), secrets, the compose command and
readiness (stack), the stack's own registry, and the stack's life after `up` (lifecycle). The
`quickstart` command composes them (releaser/commands/quickstart.py)."""
