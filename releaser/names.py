"""File names of a release directory (one definition for every stage; imports nothing)."""

RELEASE_FILE = "release.yaml"
LOCK_FILE = "release.lock.yaml"
