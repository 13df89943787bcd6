"""Threads: pools that let Ctrl-C through, and a hash taken beside a stream.

`concurrent.futures.ThreadPoolExecutor` used as a context manager waits for every worker on
the way out, including when the main thread is interrupted; a worker blocked on a registry
that stopped answering then holds Ctrl-C for the request timeout times the retries. `pool()`
waits as usual after success or an ordinary error (so the first upload error is reported
after every upload has stopped), but on KeyboardInterrupt it cancels what has not started and
returns at once; the CLI then exits without waiting for the threads (cli._emit).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max(1, workers))
    try:
        yield executor
    except KeyboardInterrupt:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        executor.shutdown(wait=True)
        raise
    executor.shutdown(wait=True)


class HashBeside:
    """A sha256 whose update() returns at once: the hashing runs on a thread of its own
    (hashlib lets go of the GIL), at most `depth` chunks behind, so a stream can be checked
    while the caller is already passing its bytes on. The chunks must be `bytes` (immutable).
    hexdigest() waits for the last chunk; close() stops the thread (hexdigest() calls it)."""

    def __init__(self, depth: int = 4) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()
