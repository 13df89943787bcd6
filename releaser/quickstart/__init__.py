"""The quickstart's stages: host checks and the engine (doctor), the stack's record (state), what
holds before `up` (preflight), its files (files), secrets, the compose command and readiness (stack),
the stack's own registry, backup and restore (backup), revisions, and the stack's life after `up`
(lifecycle). The `quickstart` command composes them (releaser/commands/quickstart.py)."""
