"""Work ahead in a second thread, so two cores work on an unpack.

Unpacking is two jobs: reading, hashing, decompressing and parsing a layer (zlib, lzma, bz2,
zstandard and hashlib let go of the GIL while they work), and turning its tar entries into
files (mostly system calls, which let go of it too).  In one thread they take turns.  Here
a worker thread makes the items (chunks of a stream, tar entries) and puts them in a bounded
queue, and the unpacker takes them from it: memory stays bounded (at most depth items wait,
each of a bounded size), and the two jobs overlap.

An exception in the worker is handed over in its place among the items and raised by the
consumer's next get(), so the unpacker meets it exactly where a single thread would have,
and again by every get() after.  Closing (also on an error or Ctrl-C in the consumer) stops
the worker and waits for it: nothing the worker reads is touched once close() has returned.
"""

import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol

CHUNK = 1 << 20
DEPTH = 8
_END = object()


class Readable(Protocol):
    """What the unpacker reads from: any object with read(n) -> bytes."""

    def read(self, n: int = -1, /) -> bytes: ...


class Ahead:
    """The items of an iterator, made in a worker thread; use it as a context manager.

    Items go through the queue in batches of up to batch items or batch_bytes bytes (bytes
    items count their length, others 512), since a trip through the queue costs more than
    a small item: depth batches wait at most.
    """

    def __init__(self, items: Iterator, depth: int = DEPTH, batch: int = 1,
                 batch_bytes: int = CHUNK):
        self.items, self.batch, self.batch_bytes = items, batch, batch_bytes
        self.queue: queue.Queue[list] = queue.Queue(depth)
        self.taken: list = []
        self.next = 0   # in taken
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.ended = False
        self.thread = threading.Thread(target=self._fill, name="nspawnctl-readahead",
                                       daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        batch: list = []
        size = 0
        try:
            for item in self.items:
                batch.append(item)
                size += len(item) if isinstance(item, bytes) else 512
                if len(batch) >= self.batch or size >= self.batch_bytes:
                    self.queue.put(batch)
                    batch, size = [], 0
                    if self.stopping.is_set():
                        return
            batch.append(_END)
        except BaseException as e:  # handed to the consumer, raised in its thread
            batch.append(e)
        finally:
            if not self.stopping.is_set():
                self.queue.put(batch)
            close = getattr(self.items, "close", None)
            if close is not None:
                close()  # a generator left half way ends here, in its own thread

    def get(self, default: Any = None) -> Any:
        """The next item, or default after the last one."""
        if self.error is not None:
            raise self.error
        if self.ended:
            return default
        if self.next >= len(self.taken):
            self.taken, self.next = self.queue.get(), 0
        item = self.taken[self.next]
        self.taken[self.next] = None  # let it go once used
        self.next += 1
        if item is _END:
            self.ended = True
            return default
        if isinstance(item, BaseException):
            self.error = item
            raise item
        return item

    def close(self) -> None:
        """Stop the worker and wait for it; whatever it still held is dropped."""
        self.stopping.set()
        while self.thread.is_alive():
            try:  # make room: a worker blocked putting an item sees stopping next
                while True:
                    self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(0.05)
        self.ended = True
        self.taken, self.next = [], 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(source: Readable, chunk: int) -> Iterator[bytes]:
    while data := source.read(chunk):
        yield data


class ReadAhead(Ahead):
    """A Readable over source, read ahead by a worker thread in chunks of chunk bytes."""

    def __init__(self, source: Readable, chunk: int = CHUNK, depth: int = DEPTH):
        super().__init__(_chunks(source, chunk), depth)
        self.chunk = chunk
        self.buf, self.pos = b"", 0

    def read(self, n: int = -1, /) -> bytes:
        n = self.chunk if n is None or n < 0 else n
        while self.pos >= len(self.buf):
            self.buf, self.pos = self.get(b""), 0
            if not self.buf:
                return b""
        if self.pos == 0 and n >= len(self.buf):
            data = self.buf
        else:
            data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def close(self) -> None:
        """As Ahead.close, and the part of a chunk not yet read goes too: a read after
        close() is the end, never bytes of a stream the caller gave up on."""
        super().close()
        self.buf, self.pos = b"", 0

    def drain(self) -> None:
        """Read to the end, where the stream's last checks are made."""
        while self.read(self.chunk):
            pass
