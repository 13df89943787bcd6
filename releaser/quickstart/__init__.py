"""The Compose quickstart: engine detection, preflight (doctor), and (next) secrets, up, readiness."""
