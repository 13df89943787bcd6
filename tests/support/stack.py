"""Helpers for tests that watch a running stack: polling, and what the collector stand-in received."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests


def wait_for(cond: Any, timeout: float = 30, what: str = "", poll: float = 0.5) -> Any:
    """Call `cond` until it returns something true (and return that), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def received(port: int) -> list[str]:
    """The lines the collector stand-in stored, served at /received on its published HTTP port."""
    try:
        r = requests.get(f"http://127.0.0.1:{port}/received", timeout=3)
    except requests.RequestException:
        return []
    return r.text.splitlines() if r.status_code == 200 else []


def seqs(lines: list[str]) -> list[int]:
    """The speaker stand-in's sequence numbers in received lines."""
    return [int(line.rsplit(" ", 1)[1]) for line in lines if " seq " in line]
