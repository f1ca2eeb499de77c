"""Decompressing untrusted streams: one sniffer, one reader, one set of limits.

Image layers (`oci:`, `oci-archive:`, `docker-archive:`) and root tarballs (`tar:`) come
through here alike.  Every read is bounded: the decompressed output is counted against a
limit (all of an import together, and a ratio to the compressed size that catches bombs), no
single read asks for more than CHUNK bytes, and decoders that could take a lot of memory are
capped (xz's dictionary, zstd's window).  A stream is read to its end, so a truncated or
corrupt one fails instead of importing part of a tree: gzip, bzip2 and xz check their own end
and CRC; zstd frames are checked to be complete here.  Every failure is one Error line.
"""

import bz2
import hashlib
import io
import lzma
import zlib
from typing import Any, cast

from ..errors import Error, InvalidInput
from .readahead import Readable

CHUNK = 1 << 20
MAX_TOTAL_BYTES = 64 << 30          # uncompressed bytes of one import (all its layers)
BOMB_RATIO = 100                    # uncompressed:compressed, enforced past BOMB_MIN_BYTES
BOMB_MIN_BYTES = 256 << 20
XZ_MEMLIMIT = 256 << 20             # xz -9 needs 65 MiB; a crafted header may ask for 4 GiB
ZSTD_MAX_WINDOW = 1 << 27           # zstd's own default limit, said out loud
ZSTD_FEED = 1 << 10                 # one zstd block of 4 bytes may become 128 KiB
GZIP_FEED = 256 << 10               # compressed bytes given to zlib at a time (output is capped)

MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
         b"\x28\xb5\x2f\xfd": "zstd"}


def sniff(head: bytes) -> str | None:
    """The compression a stream starts with ("gzip", "bzip2", "xz", "zstd"), or None."""
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def expansion_limit(compressed: int, budget: int, what: str) -> tuple[int, str]:
    """How many uncompressed bytes a stream of compressed bytes may give, and the message
    when it gives more: what is left of the import's budget, or BOMB_RATIO times its size."""
    bomb = max(BOMB_MIN_BYTES, BOMB_RATIO * compressed)
    if budget <= bomb:
        return budget, f"{what} expands beyond the limit of {MAX_TOTAL_BYTES} bytes"
    return bomb, (f"{what} expands more than {BOMB_RATIO} times its {compressed} compressed "
                  "bytes: a decompression bomb")


def decoder(raw: Readable, kind: str | None) -> Readable:
    """A reader of raw's decompressed bytes; kind as sniff() names them, None for none."""
    if kind == "gzip":
        return _Frames(raw, _GzipMember, "gzip", feed=GZIP_FEED)
    if kind == "bzip2":
        return bz2.BZ2File(cast(Any, raw))
    if kind == "xz":
        return _Frames(raw, lambda: lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT), "xz")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise Error("the zstandard module is missing, needed for zstd-compressed data",
                        hint="apt-get install python3-zstandard") from None
        make = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj
        return _Frames(raw, make, "zstd", feed=ZSTD_FEED)
    if kind is None:
        return raw
    raise InvalidInput(f"unknown compression {kind!r}")


class _GzipMember:
    """One gzip member through zlib (header, CRC32 and length checked by zlib itself), with
    lzma's decoder interface: decompress(data, max_length), needs_input, eof, unused_data.

    gzip.GzipFile does the same in Python, 8 KiB at a time, with a second pass for the CRC;
    this gives zlib large pieces and keeps the checking in C."""

    def __init__(self):
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self.z.eof

    @property
    def unused_data(self) -> bytes:
        return self.z.unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self.z.decompress(self.z.unconsumed_tail + data, max_length)
        except zlib.error as e:  # say what gzip tools say for the two trailer checks
            text = str(e)
            if "incorrect data check" in text:
                raise OSError("CRC check failed") from None
            if "incorrect length check" in text:
                raise OSError("length check failed") from None
            raise
        # output cut at max_length: zlib may hold more, to be asked for without new input
        self.needs_input = not self.z.unconsumed_tail and len(out) < max_length
        return out


class _Frames(io.RawIOBase):
    """Concatenated gzip members, xz streams or zstd frames, each checked to end where it says
    it does.

    The standard library's LZMAFile cannot cap the decoder's memory, zstandard's
    stream_reader returns a truncated frame's bytes without a word, and GzipFile is slow;
    this reads all three through decompressobj-style decoders.  Output stays bounded: the gzip
    and xz decoders take a max_length; zstd's does not, so it is fed ZSTD_FEED bytes at a
    time.  Zero padding may come between and after frames, as all three formats allow;
    anything else must be another frame.
    """

    def __init__(self, raw: Readable, make, name: str, feed: int = 64 << 10):
        self.raw, self.make, self.name, self.feed = raw, make, name, feed
        self.bounded = name != "zstd"  # its decompress() takes max_length
        self.dec: Any = None         # None: between frames
        self.pending = b""           # input read but not given to a decoder yet
        self.out, self.pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def read(self, n: int | None = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        while self.pos >= len(self.out):
            more = self._more(n)
            if more is None:
                return b""
            self.out, self.pos = more, 0
        data = self.out[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def _more(self, n: int) -> bytes | None:
        """Some more output (maybe empty); None at the clean end of the input."""
        if self.dec is None:
            data = self.pending.lstrip(b"\0")
            while not data:
                data = self.raw.read(self.feed)
                if not data:
                    return None
                data = data.lstrip(b"\0")
            self.pending, self.dec = b"", self.make()
            return self._feed(data, n)
        if self.dec.eof:
            self.pending, self.dec = self.dec.unused_data, None
            return b""
        if self.bounded and not self.dec.needs_input:
            return self.dec.decompress(b"", n)
        data = self.raw.read(self.feed)
        if not data:
            raise EOFError(f"{self.name} data ends before the end of its frame")
        return self._feed(data, n)

    def _feed(self, data: bytes, n: int) -> bytes:
        return self.dec.decompress(data, n) if self.bounded else self.dec.decompress(data)


class Stream(io.RawIOBase):
    """The decompressed bytes of an untrusted stream: counted against a limit, hashed on the
    way if asked, every decoder failure turned into one Error line.

    drain() reads to the end, which is where the decoders check CRCs and stream ends: call it
    once the consumer (tar) has seen all it wants, or a truncated stream goes unnoticed.
    """

    def __init__(self, raw: Readable, kind: str | None, limit: int, why: str,
                 what: str = "layer", hash_name: str | None = None):
        self.source = decoder(raw, kind)
        self.limit, self.why, self.what = limit, why, what
        self.hash = hashlib.new(hash_name) if hash_name else None
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else min(n, 16 * CHUNK)
        try:
            data = self.source.read(n)
        except Error:
            raise
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            raise InvalidInput(f"{self.what} is corrupt: {e}") from None
        except Exception as e:  # zstandard.ZstdError has no common base to name here
            if type(e).__name__ == "ZstdError":
                raise InvalidInput(f"{self.what} is corrupt: {e}") from None
            raise
        self.count += len(data)
        if self.count > self.limit:
            raise InvalidInput(self.why, hint="it was not unpacked")
        if self.hash is not None:
            self.hash.update(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def drain(self):
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self.hash.hexdigest() if self.hash is not None else ""
