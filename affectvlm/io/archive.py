"""Safe reading of user ``.zip`` files into memory (nothing is extracted to disk).

    from affectvlm.io.archive import safe_zip_members
    for name, data in safe_zip_members("seq.zip", limits, "seq.zip"):
        ...

Rejected with `InputError`: a corrupt or non-zip file, absolute member paths, ``..`` components
(zip-slip), symlink members, encrypted members, more members than ``limits.max_zip_members``, a declared
unpacked total over ``limits.max_unpacked_bytes``, a member whose compression ratio is over
``limits.max_compression_ratio`` (zip bomb). The limits are enforced again while decompressing, in
chunks, so lying headers do not help. Directories, ``__MACOSX/`` and hidden files are skipped.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
from typing import Callable, Iterable

from affectvlm.errors import InputError
from affectvlm.limits import Limits
from affectvlm.io._common import check_size, get_limits

__all__ = ["safe_zip_members", "SafeZip", "open_zip", "is_zip"]

_CHUNK = 1 << 20


def is_zip(head: bytes) -> bool:
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _skipped(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.endswith("/") or "__MACOSX" in parts or any(p.startswith(".") and p not in (".", "..") for p in parts)


def _check_name(name: str, source: str) -> None:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise InputError(source, f"zip member {name!r} has an absolute path (refused)")
    if ".." in norm.split("/"):
        raise InputError(source, f"zip member {name!r} climbs out of the archive with '..' (zip-slip, refused)")
    if "\0" in norm:
        raise InputError(source, f"zip member {name!r} has a NUL byte in its name")


def open_zip(data_or_path: bytes | str | os.PathLike, limits: Limits | None, source: str) -> zipfile.ZipFile:
    """Open a zip from bytes or a path after the file-size check; corrupt files raise `InputError`."""
    limits = get_limits(limits)
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        check_size(len(data_or_path), limits, source)
        fh: io.BufferedIOBase | str = io.BytesIO(bytes(data_or_path))
    else:
        path = os.fspath(data_or_path)
        try:
            check_size(os.path.getsize(path), limits, source)
        except OSError as e:
            raise InputError(source, f"cannot read: {e.strerror or e}") from None
        fh = path
    declared = _declared_entries(fh)
    if declared is not None and declared > limits.max_zip_members:  # before zipfile reads every entry of it
        raise InputError(source, f"zip has {declared} members, over the limit of {limits.max_zip_members}")
    try:
        return zipfile.ZipFile(fh)
    except zipfile.BadZipFile as e:
        raise InputError(source, f"not a valid zip file ({e})") from None
    except (OSError, EOFError, ValueError) as e:
        raise InputError(source, f"cannot open zip: {e}") from None


def _declared_entries(fh: io.BufferedIOBase | str) -> int | None:
    """The member count a zip's end record declares (zip64 too), read from its last bytes, or the number of entry
    headers in the central directory it names where that is more (zipfile reads them all, whatever the count
    says); None if unreadable (zipfile then says what is wrong)."""
    try:
        f = open(fh, "rb") if isinstance(fh, str) else fh
        try:
            size = f.seek(0, io.SEEK_END)
            start = max(0, size - (1 << 16) - 22)
            f.seek(start)
            tail = f.read()
            at = tail.rfind(b"PK\x05\x06")
            if at < 0 or len(tail) < at + 22:
                return None
            count, cd_size = struct.unpack_from("<HI", tail, at + 10)
            end = start + at  # zipfile reads the directory just before its end record(s)
            if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
                (where,) = struct.unpack_from("<Q", tail, at - 12)  # the zip64 end record
                f.seek(where)
                rec = f.read(56)
                if rec[:4] != b"PK\x06\x06" or len(rec) != 56:
                    return None
                count, cd_size = struct.unpack_from("<QQ", rec, 32)
                end = where
            return max(count, _entry_headers(f, max(0, end - cd_size), end))
        finally:
            if isinstance(fh, str):
                f.close()
            else:
                f.seek(0)
    except (OSError, struct.error, ValueError):
        return None


def _entry_headers(f: io.BufferedIOBase, lo: int, hi: int, chunk: int = 1 << 22) -> int:
    """How many central-directory entry signatures lie in bytes ``lo``..``hi`` of ``f`` (read in chunks)."""
    sig = b"PK\x01\x02"
    n, carry = 0, b""
    f.seek(lo)
    while lo < hi:
        block = f.read(min(chunk, hi - lo))
        if not block:
            break
        lo += len(block)
        data = carry + block
        n += data.count(sig)
        carry = data[-(len(sig) - 1):]  # a signature across the chunks' seam is counted with the next one
    return n


def _checked_infos(zf: zipfile.ZipFile, limits: Limits, source: str) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.max_zip_members:
        raise InputError(source, f"zip has {len(infos)} members, over the limit of {limits.max_zip_members}")
    keep = []
    total = 0
    names: set[str] = set()
    for info in infos:
        _check_name(info.filename, source)
        if info.filename in names:  # one of the two would be read under both names
            raise InputError(source, f"zip holds two members named {info.filename!r}")
        names.add(info.filename)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise InputError(source, f"zip member {info.filename!r} is a symbolic link (refused)")
        if info.is_dir() or _skipped(info.filename):
            continue
        if info.flag_bits & 0x1:
            raise InputError(source, f"zip member {info.filename!r} is encrypted")
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise InputError(source, f"zip would unpack to more than {limits.max_unpacked_bytes / 2**20:.0f} MiB "
                                     "(AFFECTVLM_MAX_UNPACKED_MB)")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1 << 16 and ratio > limits.max_compression_ratio:
            raise InputError(source, f"zip member {info.filename!r} is compressed {ratio:.0f}:1, over the limit "
                                     f"of {limits.max_compression_ratio:.0f}:1 (zip bomb?)")
        keep.append(info)
    return keep


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, source: str, budget: int) -> bytes:
    """Decompress in chunks, stopping as soon as the real size passes what the header or limits allow."""
    if info.file_size > limits.max_file_bytes:
        raise InputError(source, f"zip member {info.filename!r} is {info.file_size / 2**20:.1f} MiB, over the "
                                 f"limit of {limits.max_file_bytes / 2**20:.1f} MiB")
    cap = min(budget, info.file_size)
    out = bytearray()
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > cap:
                    raise InputError(source, f"zip member {info.filename!r} unpacks to more than its header "
                                             "declares or the limits allow (zip bomb?)")
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise InputError(source, f"zip member {info.filename!r} is corrupt ({e})") from None
    except Exception as e:  # zlib.error and friends
        raise InputError(source, f"zip member {info.filename!r} is corrupt ({type(e).__name__}: {e})") from None
    return bytes(out)


class SafeZip:
    """A checked zip whose members are decompressed on demand, one at a time, within one unpacked budget.

        with SafeZip(data_or_path, limits, source) as z:
            for name in z.names: ...
            data = z.read(name)

    Reads are thread-safe. ``close()`` releases the open file; a later ``read`` opens the zip again, so a
    listing need not hold a file handle per zip while its members wait their turn. A member read again (a
    scan rendered twice) is not charged to the budget twice.
    """

    def __init__(self, data_or_path: bytes | str | os.PathLike, limits: Limits | None, source: str):
        self.limits = get_limits(limits)
        self.source = source
        self._src = bytes(data_or_path) if isinstance(data_or_path, (bytearray, memoryview)) else data_or_path
        self._zf: zipfile.ZipFile | None = open_zip(self._src, self.limits, source)
        try:
            self._infos = {i.filename: i for i in _checked_infos(self._zf, self.limits, source)}
        except BaseException:
            self._zf.close()
            raise
        self.names = list(self._infos)
        self._budget = self.limits.max_unpacked_bytes
        self._by_path = {n.replace("\\", "/"): n for n in self.names}  # for find(): '/'-separated paths
        folded: dict[str, list[str]] = {}
        for k, n in self._by_path.items():
            folded.setdefault(k.lower(), []).append(n)
        self._by_lower = {k: ns[0] for k, ns in folded.items() if len(ns) == 1}
        self._charged: set[str] = set()
        self._pending: set[str] = set()
        self._closing = False
        self._lock = threading.Lock()

    def find(self, path: str) -> str | None:
        """The member at ``path`` ('/'-separated), whichever separator the zip's names use (and in another case,
        when only one member matches so); None if absent."""
        key = path.replace("\\", "/")
        return self._by_path.get(key) or self._by_lower.get(key.lower())  # a url written in another case

    def size(self, name: str) -> int:
        """The unpacked size the member's header declares (reads never pass it)."""
        return self._infos[name].file_size

    def read(self, name: str) -> bytes:
        with self._lock:
            if self._zf is None:
                self._zf = open_zip(self._src, self.limits, self.source)
            budget = self._budget + (self.size(name) if name in self._charged else 0)
            data = _read_member(self._zf, self._infos[name], self.limits, self.source, budget)
            if name not in self._charged:
                self._charged.add(name)
                self._budget -= len(data)
            self._pending.discard(name)
            if self._closing and not self._pending:
                self._zf.close()
                self._zf = None
            return data

    def close_after(self, names: Iterable[str]) -> None:
        """Close the file once each of ``names`` has been read (a later read opens it again)."""
        with self._lock:
            self._pending, self._closing = set(names), True

    def close(self) -> None:
        with self._lock:
            if self._zf is not None:
                self._zf.close()
                self._zf = None

    def __enter__(self) -> "SafeZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safe_zip_members(data_or_path: bytes | str | os.PathLike, limits: Limits | None, source: str,
                     select: Callable[[str], bool] | None = None) -> list[tuple[str, bytes]]:
    """Read the members (optionally only those ``select(name)`` accepts) as ``(name, bytes)``, in zip order:
    :class:`SafeZip` read whole."""
    with SafeZip(data_or_path, limits, source) as z:
        return [(n, z.read(n)) for n in z.names if select is None or select(n)]
