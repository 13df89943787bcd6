"""Thread pools that let Ctrl-C through.

`concurrent.futures.ThreadPoolExecutor` used as a context manager waits for every worker on
the way out, including when the main thread is interrupted; a worker blocked on a registry
that stopped answering then holds Ctrl-C for the request timeout times the retries. `pool()`
waits as usual after success or an ordinary error (so the first upload error is reported
after every upload has stopped), but on KeyboardInterrupt it cancels what has not started and
returns at once; the CLI then exits without waiting for the threads (cli._emit).
"""

from __future__ import annotations

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
