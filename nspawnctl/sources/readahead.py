"""Read a stream ahead in a second thread, so two cores work on an unpack.

Unpacking is two jobs: reading, hashing and decompressing a layer (zlib, lzma, bz2, zstandard
and hashlib all let go of the GIL while they work), and turning its tar entries into files
(mostly system calls, which let go of it too).  In one thread they take turns; here the
source is read in a worker thread into a bounded queue of chunks, and the unpacker reads from
that queue.  Memory stays bounded: at most DEPTH chunks of at most CHUNK bytes wait.

The stream's own checks (limits, hashes, decoder errors) run in the worker as before; an
exception there is handed over in its place in the stream and raised by the reader's next
read, so the unpacker meets it exactly where a single thread would have.  Closing (also on an
error or Ctrl-C in the unpacker) stops the worker and waits for it: nothing reads the source
once close() has returned.
"""

import queue
import threading

from .unpack import Readable

CHUNK = 1 << 20
DEPTH = 8


class ReadAhead:
    """A Readable over source, filled by a worker thread; use it as a context manager."""

    def __init__(self, source: Readable, chunk: int = CHUNK, depth: int = DEPTH):
        self.source, self.chunk = source, chunk
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self.stopping = threading.Event()
        self.buf, self.pos = b"", 0
        self.done = False   # the end was taken from the queue
        self.error: BaseException | None = None  # raised again by every later read
        self.thread = threading.Thread(target=self._fill, name="nspawnctl-readahead",
                                       daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        item: bytes | BaseException
        while not self.stopping.is_set():
            try:
                item = self.source.read(self.chunk)
            except BaseException as e:  # handed to the reader, raised in its thread
                item = e
            self.queue.put(item)
            if not isinstance(item, bytes) or not item:
                return

    def read(self, n: int = -1, /) -> bytes:
        n = self.chunk if n is None or n < 0 else n
        while self.pos >= len(self.buf):
            if self.error is not None:
                raise self.error
            if self.done:
                return b""
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.error = item
                raise item
            if not item:
                self.done = True
                return b""
            self.buf, self.pos = item, 0
        if self.pos == 0 and n >= len(self.buf):
            data = self.buf
        else:
            data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, where the stream's last checks are made."""
        while self.read(self.chunk):
            pass

    def close(self) -> None:
        """Stop the worker and wait for it; whatever it still held is dropped."""
        self.stopping.set()
        while self.thread.is_alive():
            try:  # make room: a worker blocked putting a chunk sees stopping next
                while True:
                    self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(0.05)
        self.done = True

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
