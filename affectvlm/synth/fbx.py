"""A small reader for binary FBX files (7.x): the node tree, its properties and arrays.

Only what the synthetic-data face models need (a mesh, its blend shapes and the model transforms); no
animation, materials or skinning. Python has no maintained FBX library, so this follows the published
layout of the binary format: a 27-byte header, then nested node records (end offset, property count and
length, name) whose properties are typed scalars, strings or arrays (raw or zlib-deflated). Every offset
and size is checked against the file, arrays are capped before they are inflated, and nesting is bounded,
so a corrupt or hostile file raises :class:`~affectvlm.errors.InputError` naming it.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectvlm.errors import InputError

__all__ = ["FbxNode", "read_fbx", "MAGIC"]

MAGIC = b"Kaydara FBX Binary  \x00"
_SCALARS = {b"Y": "<h", b"C": "<?", b"I": "<i", b"F": "<f", b"D": "<d", b"L": "<q"}
_ARRAYS = {b"f": "<f4", b"d": "<f8", b"l": "<i8", b"i": "<i4", b"b": "<u1", b"c": "<u1"}
_MAX_DEPTH = 64


@dataclass
class FbxNode:
    """One node record: its name, its properties (numbers, strings, bytes or 1-D arrays) and its children."""

    name: str
    props: list[Any] = field(default_factory=list)
    children: list["FbxNode"] = field(default_factory=list)

    def find(self, name: str) -> list["FbxNode"]:
        return [c for c in self.children if c.name == name]

    def first(self, name: str) -> "FbxNode | None":
        for c in self.children:
            if c.name == name:
                return c
        return None


class _Reader:
    def __init__(self, buf: bytes, source: str, max_array_bytes: int):
        self.buf, self.source, self.max_array = buf, source, max_array_bytes
        self.big = False

    def fail(self, problem: str) -> InputError:
        return InputError(self.source, f"not a readable binary FBX file ({problem})")

    def unpack(self, fmt: str, o: int) -> tuple:
        if o < 0 or o + struct.calcsize(fmt) > len(self.buf):
            raise self.fail("truncated")
        return struct.unpack_from(fmt, self.buf, o)

    def prop(self, o: int) -> tuple[Any, int]:
        t = self.buf[o:o + 1]
        o += 1
        if t in _SCALARS:
            fmt = _SCALARS[t]
            return self.unpack(fmt, o)[0], o + struct.calcsize(fmt)
        if t in _ARRAYS:
            n, enc, clen = self.unpack("<III", o)
            o += 12
            dt = np.dtype(_ARRAYS[t])
            if n * dt.itemsize > self.max_array:
                raise self.fail(f"an array of {n} values is over the limit")
            if o + clen > len(self.buf):
                raise self.fail("truncated array")
            raw = self.buf[o:o + clen]
            if enc == 1:
                d = zlib.decompressobj()
                try:
                    raw = d.decompress(raw, n * dt.itemsize + 1)
                except zlib.error:
                    raise self.fail("corrupt compressed array") from None
            elif enc != 0:
                raise self.fail(f"unknown array encoding {enc}")
            if len(raw) != n * dt.itemsize:
                raise self.fail("array size does not match its count")
            return np.frombuffer(raw, dtype=dt).copy(), o + clen
        if t in (b"S", b"R"):
            (n,) = self.unpack("<I", o)
            o += 4
            if o + n > len(self.buf):
                raise self.fail("truncated string")
            data = self.buf[o:o + n]
            return (data.decode("utf-8", "replace") if t == b"S" else bytes(data)), o + n
        raise self.fail(f"unknown property type {t!r}")

    def node(self, o: int, depth: int, limit: int) -> tuple[FbxNode | None, int]:
        if depth > _MAX_DEPTH:
            raise self.fail("nodes nested too deep")
        fmt = "<QQQ" if self.big else "<III"
        end, nprops, _plen = self.unpack(fmt, o)
        o += struct.calcsize(fmt)
        (nlen,) = self.unpack("<B", o)
        o += 1
        if end == 0:
            return None, o + nlen
        if end <= o or end > limit:
            raise self.fail("a node runs past its parent or the file")
        name = self.buf[o:o + nlen].decode("ascii", "replace")
        o += nlen
        props = []
        for _ in range(nprops):
            v, o = self.prop(o)
            props.append(v)
        if o > end:
            raise self.fail("properties run past their node")
        kids = []
        while o < end:
            k, o = self.node(o, depth + 1, end)
            if k is None:
                break
            kids.append(k)
        return FbxNode(name, props, kids), end


def read_fbx(path: str | os.PathLike, *, max_bytes: int = 256 * 1024 * 1024,
             max_array_bytes: int = 256 * 1024 * 1024) -> FbxNode:
    """The node tree of a binary FBX file: a root node whose children are the top-level records
    (``FBXHeaderExtension``, ``GlobalSettings``, ``Objects``, ``Connections``...). ``props`` of the root
    holds the format version. Raises InputError for anything else (ASCII FBX included)."""
    p = Path(path)
    src = str(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(src, f"FBX file of {size} bytes is over the {max_bytes}-byte limit")
        buf = p.read_bytes()
    except OSError as exc:
        raise InputError(src, f"cannot read FBX file: {exc.strerror or exc}") from None
    if not buf.startswith(MAGIC) or len(buf) < 27:
        if buf.lstrip()[:1] == b";" or b"FBXHeaderExtension:" in buf[:4096]:
            raise InputError(src, "ASCII FBX is not supported; export it as binary FBX")
        raise InputError(src, "not a binary FBX file (no 'Kaydara FBX Binary' header)")
    r = _Reader(buf, src, max_array_bytes)
    (version,) = r.unpack("<I", 23)
    r.big = version >= 7500
    o, top = 27, []
    while o < len(buf):  # the top-level records end with a null record; a footer follows it
        k, o = r.node(o, 0, len(buf))
        if k is None:
            break
        top.append(k)
    if not top:
        raise r.fail("no records")
    return FbxNode("", [int(version)], top)
