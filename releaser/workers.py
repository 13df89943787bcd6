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
from collections.abc import Callable, Iterator
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


class Behind:
    """Calls `fn(chunk)` for every chunk put(), in order, on a thread of its own, at most
    `depth` chunks behind the caller: work that lets go of the GIL (hashlib, file writes)
    then overlaps with what the caller does next. Chunks must be `bytes` (immutable). The
    first exception `fn` raises is kept and the rest of the chunks are dropped (put() never
    blocks on a dead consumer); put() raises it, and so does close() unless `quiet`."""

    def __init__(self, fn: Callable[[bytes], object], *, depth: int, name: str) -> None:
        self._fn = fn
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._fn(data)
                except BaseException as exc:  # raised again in the caller's thread
                    self.error = exc

    def put(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(data)

    def close(self, *, quiet: bool = False) -> None:
        """Wait until every chunk has been handled; raise what `fn` raised (unless `quiet`)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None and not quiet:
            raise self.error


class HashBeside:
    """A sha256 whose update() returns at once: the hashing runs Behind the caller (at most
    `depth` chunks back), so a stream can be checked while its bytes are already passed on.
    hexdigest() waits for the last chunk; close() stops the thread (hexdigest() calls it).
    `inline` (a stream of one small chunk, where a thread would cost more than the hash) hashes
    in the caller's thread instead."""

    def __init__(self, depth: int = 4, *, inline: bool = False) -> None:
        self._hash = hashlib.sha256()
        self._behind = None if inline else Behind(self._hash.update, depth=depth, name="hash")

    def update(self, data: bytes) -> None:
        if self._behind is None:
            self._hash.update(data)
        else:
            self._behind.put(data)

    def close(self) -> None:
        if self._behind is not None:
            self._behind.close()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()
