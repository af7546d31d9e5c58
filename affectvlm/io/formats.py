"""`load_mesh`: one face scan from a path or from uploaded bytes, in any supported format.

    from affectvlm.io import load_mesh
    mesh = load_mesh("F0001_AN01WH_F3D.wrl")                  # texture F0001_AN01WH_F3D.bmp beside it loads too
    mesh = load_mesh(upload_bytes, "scan.glb")                 # bytes: the name gives the format
    mesh = load_mesh(path, limits=Limits(max_file_bytes=50 * 2**20), texture=False)

Formats: ``.obj .ply .stl .off .glb .gltf`` through trimesh (scenes merged, polygons triangulated, UVs,
texture images, vertex colours), ``.wrl/.vrml`` through `affectvlm.io.vrml`, ``.bnt`` through
`affectvlm.io.bnt`. The content is sniffed as well: an image, zip or other non-mesh file under a mesh
name is refused, and a mesh whose content is another mesh format than its name says is read by content.
Every problem is an `InputError` naming the file; headers that claim counts over the limits or more
data than the file holds are refused before anything large is allocated.
"""
from __future__ import annotations

import io
import logging
import os
import re
import stat
import struct
import warnings as py_warnings  # 'warnings' names the mesh's notes below
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from affectvlm.errors import InputError
from affectvlm.limits import Limits
from affectvlm.mesh import Mesh
from affectvlm.io._common import check_counts, check_size, finish_mesh, get_limits
from affectvlm.io.archive import is_zip

__all__ = ["load_mesh", "load_mesh_bytes", "SUPPORTED_EXTENSIONS", "MESH_EXTENSIONS", "TEXTURE_EXTENSIONS",
           "decode_texture", "image_size", "sniff"]

MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf", ".wrl", ".vrml", ".bnt")
SUPPORTED_EXTENSIONS = MESH_EXTENSIONS
TEXTURE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp")
_TRIMESH_TYPES = {".obj": "obj", ".ply": "ply", ".stl": "stl", ".off": "off", ".glb": "glb", ".gltf": "gltf"}
_IMAGE_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"BM": "a BMP image",
                b"GIF8": "a GIF image", b"%PDF": "a PDF document", b"II*\x00": "a TIFF image",
                b"MM\x00*": "a TIFF image", b"\x1f\x8b": "gzip-compressed data", b"7z\xbc\xaf": "a 7-zip archive",
                b"Rar!": "a RAR archive"}
_KIND_EXT = {"vrml": ".wrl", "glb": ".glb", "ply": ".ply", "off": ".off", "gltf": ".gltf"}

Resolve = Callable[[str], "bytes | None"]
log = logging.getLogger(__name__)


def sniff(head: bytes) -> str | None:
    """Format from the first bytes: a mesh kind (``vrml glb ply off gltf``), ``not:<what>`` for a known
    non-mesh file, or None when the header proves nothing (OBJ, STL, BNT have no reliable magic)."""
    h = head.lstrip(b"\xef\xbb\xbf")
    hs = h.lstrip()
    if hs.startswith((b"#VRML", b"#X3D")):
        return "vrml"
    if h[:4] == b"glTF":
        return "glb"
    if is_zip(h):
        return "not:a zip archive (use load_sequence for a zip of frames)"
    if h.startswith(b"BM") and len(h) >= 14 and struct.unpack_from("<I", h, 2)[0] > 14 and h[6:10] == b"\0\0\0\0":
        return "not:a BMP image"
    for magic, what in _IMAGE_MAGIC.items():
        if magic != b"BM" and h.startswith(magic):
            return "not:" + what
    if h[:12].startswith(b"RIFF") and h[8:12] == b"WEBP":
        return "not:a WebP image"
    if re.match(rb"ply\r?\n", h):
        return "ply"
    if re.match(rb"[A-Z]*OFF\b", hs[:8]) and hs[:8].split()[0] in (b"OFF", b"COFF", b"NOFF", b"CNOFF", b"STOFF", b"4OFF"):
        return "off"
    if hs.startswith(b"{") and b'"asset"' in h[:65536]:
        return "gltf"
    return None


def _looks_like_obj(head: bytes) -> bool:
    """Whether text starts as an OBJ file does: its first statements (comments aside) are OBJ keywords."""
    seen = 0
    for line in head.splitlines()[:200]:
        t = line.strip()
        if not t or t.startswith(b"#"):
            continue
        if not re.match(rb"(v|vt|vn|f|o|g|s|l|usemtl|mtllib)\s", t):
            return False
        seen += 1
        if seen >= 3:
            return True
    return seen > 0


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) an image header claims (PNG, JPEG, BMP, GIF read directly; others through PIL), or None."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            (seg,) = struct.unpack(">H", head[i + 2:i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return w, h
            i += 2 + seg
        return None
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:4] == b"GIF8" and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head)) as im:
                return im.size
    except Exception:
        return None


def _texture_too_big(size: tuple[int, int] | None, limits: Limits) -> str | None:
    if size is None or size[0] * size[1] <= limits.max_texture_pixels:
        return None
    return (f"{size[0]}x{size[1]} px, over the limit of {limits.max_texture_pixels} px "
            "(AFFECTVLM_MAX_TEXTURE_MPX): loaded without texture")


def decode_texture(data: bytes, source: str, limits: Limits | None = None) -> np.ndarray:
    """Decode image bytes (BMP/PNG/JPEG/...) to an (H, W, 3) uint8 RGB array; `InputError` if unreadable
    or over ``limits.max_texture_pixels`` (checked on the header, before decoding)."""
    import warnings

    from PIL import Image

    too_big = _texture_too_big(image_size(data[:1 << 16]), get_limits(limits))
    if too_big:
        raise InputError(source, "the image is " + too_big)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                too_big = _texture_too_big(im.size, get_limits(limits))
                if too_big:
                    raise InputError(source, "the image is " + too_big)
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except InputError:
        raise
    except Exception as e:  # PIL raises many types, DecompressionBombError included
        raise InputError(source, f"cannot read texture image ({type(e).__name__}: {e})") from None


def _gltf_images(data: bytes, file_type: str, resolve: Resolve | None) -> list[tuple[str, bytes]]:
    """(name, first bytes) of each image a GLB/glTF file declares (for checking claimed sizes)."""
    import base64
    import json

    try:
        if file_type == "glb":
            (n_json,) = struct.unpack_from("<I", data, 12)
            header = json.loads(data[20:20 + n_json])
            bin_at = 20 + n_json + (-n_json % 4)
            binary = data[bin_at + 8:] if len(data) >= bin_at + 8 else b""
        else:
            header, binary = json.loads(data), b""
            uri = str((header.get("buffers") or [{}])[0].get("uri", ""))
            if uri.startswith("data:"):
                binary = base64.b64decode(uri.split(",", 1)[-1])
            elif uri and resolve is not None:
                binary = resolve(uri) or b""
        out = []
        for i, img in enumerate(header.get("images") or []):
            name = str(img.get("name") or img.get("uri", "")[:40] or f"image {i}")
            if "bufferView" in img:
                view = header["bufferViews"][img["bufferView"]]
                start = int(view.get("byteOffset", 0))
                out.append((name, binary[start:start + min(int(view.get("byteLength", 0)), 1 << 16)]))
            elif str(img.get("uri", "")).startswith("data:"):
                b64 = img["uri"].split(",", 1)[-1][:87384]
                out.append((name, base64.b64decode(b64[: len(b64) // 4 * 4])))
            elif img.get("uri") and resolve is not None:
                blob = resolve(img["uri"])
                if blob is not None:
                    out.append((name, blob[:1 << 16]))
        return out
    except Exception:  # a malformed header: trimesh reports it, or there is simply no texture
        return []


def companion_name(name: str) -> str:
    """A companion file's name as asked for, without an MTL map's options (``-s 1 1 1 -o 0 0 0 skin.png``)."""
    return name.split()[-1] if name.startswith("-") and len(name.split()) > 1 else name


def companion_paths(name: str) -> tuple[PurePosixPath | None, str]:
    """Where to look for a companion file a mesh names, relative to the mesh's folder: its path when that is a sub-path
    that stays inside (``textures/skin.png``; None for a bare name, an absolute name, a drive, ``..``), and its base
    name, looked for beside the mesh (a url pointing elsewhere is reduced to that; "" when there is none)."""
    p = PurePosixPath(companion_name(name).replace("\\", "/"))
    inside = not (p.is_absolute() or not p.parts or ":" in p.parts[0] or any(x in ("", ".", "..") for x in p.parts))
    return (p if inside and len(p.parts) > 1 else None), ("" if p.name in ("", ".", "..") else p.name)


def _dir_resolver(folder: Path, limits: Limits) -> Resolve:
    """Files in the mesh's folder: a relative url inside it (``textures/skin.png``), else its base name beside the
    mesh (a url pointing elsewhere is reduced to that). Names are confined to the folder; links in it are followed,
    as the mesh's own are (a dataset of file links: ``cp -rs``, git-annex, DataLad)."""

    def read(p: Path) -> bytes | None:
        try:
            if p.is_file() and p.stat().st_size <= limits.max_file_bytes:
                return p.read_bytes()
        except OSError:
            pass
        return None

    def resolve(name: str) -> bytes | None:
        sub, base = companion_paths(name)
        if sub is not None and (data := read(folder.joinpath(*sub.parts))) is not None:
            return data
        if not base:
            return None
        p = folder / base
        if not p.is_file():  # a url written on Windows may differ in case from the file ('A.BMP', 'a.bmp')
            try:
                same = [e.path for e in os.scandir(folder) if e.name.lower() == base.lower() and e.is_file()]
            except OSError:
                return None
            if len(same) != 1:
                return None
            p = Path(same[0])
        return read(p)

    return resolve


def _load_texture(mesh: Mesh, resolve: Resolve | None, want: bool, limits: Limits) -> Mesh:
    name = mesh.meta.get("texture_file")
    if not want or not name or mesh.face_uv is None or mesh.texture is not None or resolve is None:
        return mesh
    data = resolve(name)
    if data is None:
        mesh.meta.setdefault("warnings", []).append(f"texture {name!r} not found beside the file")
        return mesh
    try:
        mesh.texture = decode_texture(data, f"texture {name}", limits)
    except InputError as e:
        mesh.meta.setdefault("warnings", []).append(str(e))
    return mesh


# --------------------------------------------------------------------------- header pre-checks
def _precheck_ply(data: bytes, source: str, limits: Limits) -> None:
    end = data.find(b"end_header")
    if end < 0 or end > 65536:
        raise InputError(source, "corrupt PLY: no 'end_header' line")
    header = data[:end].decode("latin-1").splitlines()
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format")), "")
    sizes = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
             "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
    counts: dict[str, int] = {}
    min_bytes = 0
    current = None
    for ln in header:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element" and len(parts) >= 3:
            try:
                current = parts[1]
                counts[current] = int(parts[2])
            except ValueError:
                raise InputError(source, f"corrupt PLY header line: {ln!r}") from None
        elif parts[0] == "property" and current is not None and len(parts) >= 3:
            n = counts[current]
            if parts[1] == "list" and len(parts) >= 5:
                min_bytes += n * sizes.get(parts[2], 1)
            else:
                min_bytes += n * sizes.get(parts[1], 1)
    n_v, n_f = counts.get("vertex", 0), counts.get("face", 0)
    if n_v < 0 or n_f < 0:
        raise InputError(source, "corrupt PLY header: negative element count")
    check_counts(n_v, n_f, limits, source)
    body = len(data) - end - len("end_header")
    if fmt.startswith("binary") and min_bytes > body:
        raise InputError(source, f"truncated PLY: the header promises {n_v} vertices and {n_f} faces "
                                 f"(at least {min_bytes} bytes) but only {body} bytes follow")
    if fmt == "ascii" and data.count(b"\n", end) < n_v + n_f:
        raise InputError(source, f"truncated PLY: the header promises {n_v} vertices and {n_f} faces "
                                 "but there are fewer lines")


def _precheck_off(data: bytes, source: str, limits: Limits) -> None:
    toks = re.sub(rb"#[^\n]*", b"", data[:4096]).split()
    try:
        i = 1 if toks and not toks[0][:1].isdigit() else 0
        n_v, n_f = int(toks[i]), int(toks[i + 1])
    except (IndexError, ValueError):
        raise InputError(source, "corrupt OFF header: expected 'OFF' and vertex/face counts") from None
    if n_v < 0 or n_f < 0:
        raise InputError(source, "corrupt OFF header: negative counts")
    check_counts(n_v, n_f, limits, source)
    if data.count(b"\n") + 1 < n_v + n_f:
        raise InputError(source, f"truncated OFF: the header promises {n_v} vertices and {n_f} faces "
                                 "but there are fewer lines")


def _precheck_stl(data: bytes, source: str, limits: Limits) -> None:
    n = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else 0  # a binary STL's triangle count
    if len(data) >= 84 and 84 + 50 * n == len(data):
        check_counts(0, n, limits, source)  # binary, whatever its header says
        return
    if data.lstrip()[:5].lower() == b"solid" and b"facet" in data[:4096].lower():  # ASCII, in either case
        if b"endsolid" not in data[-4096:].lower():
            raise InputError(source, "truncated ASCII STL: no closing 'endsolid'")
        return
    if data.lstrip()[:5].lower() == b"solid" and len(data) < 84:
        raise InputError(source, "ASCII STL without facets: no faces")
    if len(data) < 84:
        raise InputError(source, f"too short for an STL file ({len(data)} bytes)")
    if n > limits.max_faces and 84 + 50 * n > 2 * len(data):  # garbage read as a count: not a binary STL at all
        raise InputError(source, f"not an STL file: read as binary STL its header declares {n} triangles, "
                                 f"{84 + 50 * n} bytes, in a file of {len(data)}")
    check_counts(0, n, limits, source)
    if 84 + 50 * n > len(data):
        raise InputError(source, f"truncated or corrupt binary STL: the header promises {n} triangles "
                                 f"({84 + 50 * n} bytes) but the file has {len(data)} bytes")


def _precheck_text(data: bytes, source: str, what: str) -> None:
    if b"\0" in data[:65536]:
        raise InputError(source, f"binary data, not a text {what} file")


# --------------------------------------------------------------------------- trimesh formats
def _trimesh_resolver(resolve: Resolve | None, fetched: list[tuple[str, bytes]] | None = None,
                      missed: list[str] | None = None):
    """A trimesh resolver over ``resolve``; the name and first bytes of each file served go to ``fetched``, the name
    of each one asked for and not found to ``missed``."""
    import trimesh

    class _Res(trimesh.resolvers.Resolver):
        def __init__(self) -> None:
            pass

        def get(self, name: str) -> bytes:
            data = resolve(name) if resolve is not None else None
            if data is None:
                if missed is not None:
                    missed.append(name)
                raise FileNotFoundError(name)
            if fetched is not None:
                fetched.append((name, data[:1 << 16]))
            return data

        def namespaced(self, namespace: str):
            return self

        def keys(self):  # pragma: no cover - only some loaders list files
            return iter(())

        def write(self, name, data):  # pragma: no cover
            raise NotImplementedError

    return _Res()


def _image_array(img) -> np.ndarray | None:
    if img is None:
        return None
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except Exception:
        return None


_OBJ_ZERO_INDEX = re.compile(rb"(?m)^[ \t]*f(?:[ \t]+\S+)*?[ \t]+0(?:/\S*)?(?=[ \t\r\n]|$)")


_OBJ_FIELDS = {b"v": 3, b"vn": 3, b"vt": 1, b"f": 3}  # the fewest values a whole record of each kind has
_OBJ_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)", re.I)
_OBJ_REF = re.compile(rb"[-+]?\d+(?:/[-+]?\d*){0,2}")


def _obj_cut_short(data: bytes) -> str:
    """Why the OBJ text ``data`` ends inside a record (a file cut short), or "": a last line, not ended by a line
    end, whose vertex, normal, texture or face record lacks values or ends in a cut value (``1.5e``; a face corner
    shaped unlike the line's first, ``1/1/1 ... 3/3/``). A file cut at a line's end reads as a shorter whole file."""
    if not data or data.endswith((b"\n", b"\r")):
        return ""
    start = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
    fields = data[start:].split(b"#", 1)[0].split()
    if not fields or fields[0] not in _OBJ_FIELDS:
        return ""
    kind, values = fields[0], fields[1:]
    if kind == b"f":
        shape = [re.sub(rb"[-+]?\d+", b"0", v) for v in values]  # "0/0/0", "0//0", "0/0/" ...
        whole = bool(values) and all(_OBJ_REF.fullmatch(v) for v in values) and shape[-1] == shape[0]
    else:
        whole = bool(values) and _OBJ_NUMBER.fullmatch(values[-1]) is not None
    if whole and len(values) >= _OBJ_FIELDS[kind]:
        return ""
    line = max(data.count(b"\n", 0, start), data.count(b"\r", 0, start)) + 1
    return f"line {line}: the file ends inside a '{kind.decode()}' record (cut short?)"


_OBJ_CORNER = re.compile(rb"(-?\d+)/(-?\d+)")
_OBJ_NEGATIVE = re.compile(rb"(?m)^[ \t]*f[ \t][^\n]*?(?<![\d.eE])-\d")


def _obj_absolute(data: bytes) -> bytes:
    """OBJ text with its relative (negative) face indices made absolute, counted where each face line stands: trimesh
    counts them from the end of the file, so faces written between vertex blocks took the last block's vertices."""
    counts = {b"v": 0, b"vt": 0, b"vn": 0}
    out = []
    for line in data.split(b"\n"):
        head = line.split(None, 1)[0] if line.strip() else b""
        if head in counts:
            counts[head] += 1
        elif head == b"f" and b"-" in line:
            corners = []
            for token in line.split()[1:]:
                refs = token.split(b"/")
                for k, kind in enumerate((b"v", b"vt", b"vn")[:len(refs)]):
                    if refs[k].startswith(b"-") and refs[k][1:].isdigit():
                        at = counts[kind] + 1 + int(refs[k])
                        if at < 1:
                            raise ValueError(f"face index {refs[k].decode()} refers before the first "
                                             f"{'vertex' if kind == b'v' else kind.decode() + ' line'}")
                        refs[k] = str(at).encode()
                corners.append(b"/".join(refs))
            line = b"f " + b" ".join(corners)
        out.append(line)
    return b"\n".join(out)


def _obj_uv_split(data: bytes) -> bool:
    """Whether an OBJ's faces index their texture coordinates apart from their vertices (``f 1/4 ...``: seams, per-face
    UVs), where one coordinate per vertex cannot hold them; judged on its first 4 MB of face lines."""
    start = m.start() if (m := re.search(rb"(?m)^[ \t]*f[ \t]", data)) else len(data)
    return any(a != b for a, b in _OBJ_CORNER.findall(data, start, start + (1 << 22)))


def _same_faces(a: Any, b: Any) -> bool:
    """Whether two readings of one file hold the same faces in the same order (corner positions alike)."""
    fa, fb = np.asarray(a.faces), np.asarray(b.faces)
    return fa.shape == fb.shape and np.allclose(np.asarray(a.vertices)[fa], np.asarray(b.vertices)[fb], atol=1e-6)


def _read_trimesh(data: bytes, ext: str, source: str, limits: Limits, resolve: Resolve | None, texture: bool) -> Mesh:
    import trimesh

    file_type = _TRIMESH_TYPES[ext]
    if file_type == "ply":
        _precheck_ply(data, source, limits)
    elif file_type == "off":
        _precheck_text(data, source, "OFF")
        _precheck_off(data, source, limits)
    elif file_type == "stl":
        _precheck_stl(data, source, limits)
    elif file_type == "obj":
        _precheck_text(data, source, "OBJ")
        if b"\t" in data:  # whitespace in OBJ; trimesh drops a 'v\t0 0 0' line whole (then "no faces")
            data = data.replace(b"\t", b" ")
        if re.search(rb"(?m)^ +\S", data):  # and an indented line
            data = re.sub(rb"(?m)^ +", b"", data)
        if _OBJ_NEGATIVE.search(data):
            try:
                data = _obj_absolute(data)
            except ValueError as e:
                raise InputError(source, str(e)) from None
        if m := _OBJ_ZERO_INDEX.search(data):  # trimesh reads it as another vertex: every face silently wrong
            line = data.count(b"\n", 0, m.start()) + 1
            raise InputError(source, f"line {line}: OBJ vertex indices start at 1, not 0 (written 0-based?)")
        if cut := _obj_cut_short(data):
            raise InputError(source, cut)
        if not re.search(rb"^\s*f\s", data, re.M):
            raise InputError(source, "the OBJ file has no face ('f') lines: no faces" if
                             re.search(rb"^\s*v\s", data, re.M) else "not an OBJ file (no 'v'/'f' lines)")
    elif file_type == "glb" and data[:4] != b"glTF":
        raise InputError(source, "not a binary glTF file (missing 'glTF' magic)")
    elif file_type == "gltf" and not data.lstrip().startswith(b"{"):
        raise InputError(source, "not a glTF JSON file")
    kwargs = {"process": False}
    fetched: list[tuple[str, bytes]] = []
    missed: list[str] = []
    if file_type == "obj":
        kwargs.update(maintain_order=True, skip_materials=not texture)
    def load(served: list, **over: Any):
        with py_warnings.catch_warnings():  # numpy's "All-NaN slice" from trimesh's OBJ reader, on stderr
            py_warnings.simplefilter("ignore", RuntimeWarning)
            return trimesh.load(io.BytesIO(data), file_type=file_type,
                                resolver=_trimesh_resolver(resolve, served, missed if served is fetched else None),
                                force="mesh", **{**kwargs, **over})

    try:
        loaded = load(fetched)
    except InputError:
        raise
    except MemoryError:
        raise InputError(source, "file is too large to load into memory") from None
    except Exception as e:
        if missed and file_type == "gltf":  # its buffers live in files of their own
            raise InputError(source, f"cannot read as GLTF: {missed[0]!r}, a file it names, is not beside it") from None
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(source, f"cannot read as {file_type.upper()}: corrupt or truncated ({msg})") from None
    if isinstance(loaded, (list, tuple)):
        loaded = trimesh.util.concatenate([g for g in loaded if isinstance(g, trimesh.Trimesh)]) if loaded else None
    if not isinstance(loaded, trimesh.Trimesh):
        raise InputError(source, "the file holds no faces (a point cloud or an empty scene)")
    corner_uv: np.ndarray | None = None  # each face corner's own (u, v), where the per-vertex ones cannot hold them
    drop_uv = False
    if file_type == "obj" and re.search(rb"(?m)^vt\s", data):
        split = _obj_uv_split(data)
        if getattr(loaded.visual, "uv", None) is None or (split and texture):
            # trimesh keeping the file's order drops the texture coordinates of polygon (quad) faces, and gives each
            # vertex one of its corners' coordinates where faces index them apart (seams): read it again unordered
            try:
                again = load([], maintain_order=False)
            except Exception:
                again = None
            if isinstance(again, trimesh.Trimesh) and getattr(again.visual, "uv", None) is not None:
                if _same_faces(loaded, again):  # the file's vertex order, each corner's own coordinates
                    corner_uv = np.asarray(again.visual.uv, np.float64)[np.asarray(again.faces)]
                else:
                    loaded = again
        else:
            drop_uv = split  # no texture asked for: no coordinates rather than wrong ones
    verts = np.asarray(loaded.vertices)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    face_uv = tex = colors = None
    meta: dict = {"format": file_type}
    warnings: list[str] = []
    visual = loaded.visual
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        uv = getattr(visual, "uv", None)
        if uv is not None and len(uv) == len(verts) and len(faces):
            face_uv = np.asarray(uv, np.float64)[faces]
        mat = getattr(visual, "material", None)
        if texture and mat is not None:
            img = getattr(mat, "image", None) or getattr(mat, "baseColorTexture", None)
            too_big = _texture_too_big(getattr(img, "size", None), limits)
            if too_big:  # decide by the limits on the header's size, before decoding
                warnings.append("texture image is " + too_big)
                img = None
            tex = _image_array(img)
            if img is not None and tex is None:
                warnings.append("texture image cannot be decoded (corrupt or truncated): loaded without texture")
            # trimesh invents a 2x2 grey image for UVs without a material: that is no texture
            if tex is not None and tex.shape[0] * tex.shape[1] <= 16 and (tex == tex.reshape(-1, 3)[0]).all():
                tex = None
    elif kind == "vertex":
        vc = np.asarray(visual.vertex_colors)
        if vc.ndim == 2 and len(vc) == len(verts):
            colors = vc[:, :3]
    if corner_uv is not None or drop_uv:  # also where the ordered reading found no material (kind is not texture)
        face_uv = corner_uv
    if texture and tex is None and face_uv is not None and not warnings:  # say why the texture is missing
        images = _gltf_images(data, file_type, None) if file_type in ("glb", "gltf") else []
        images += [(n, h) for n, h in fetched  # companion files: an OBJ's map_Kd, a glTF's image uri
                   if Path(n).suffix.lower() in TEXTURE_EXTENSIONS or image_size(h) is not None]
        if not images and missed:
            warnings.append(f"{missed[0]!r} not found beside the file: loaded without texture")
        for name, head in images:
            size = image_size(head)
            too_big = _texture_too_big(size, limits)
            shown = f"texture {name!r}" + (f" ({size[0]}x{size[1]} px)" if size and not too_big else "")
            warnings.append(f"{shown} is {too_big}" if too_big else f"{shown} cannot be decoded: loaded without texture")
    if warnings:
        meta["warnings"] = warnings
    if faces.size and faces.shape[1:] != (3,):
        raise InputError(source, "faces are not triangles after loading")
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise InputError(source, f"face index out of range: indices span {int(faces.min())}..{int(faces.max())} "
                                 f"but there are {len(verts)} vertices")
    meta = {k: v for k, v in meta.items() if v is not None}
    return finish_mesh(verts, faces, source, limits, face_uv=face_uv, texture=tex, vertex_colors=colors, meta=meta)


def _gunzip(data: bytes, source: str, limits: Limits) -> bytes:
    """A gzip-compressed file's bytes, decompressed no further than the file-size limit (gzip bombs)."""
    import zlib

    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limits.max_file_bytes + 1)
    except zlib.error as e:
        raise InputError(source, f"corrupt gzip-compressed file ({e})") from None
    if len(out) > limits.max_file_bytes or d.unconsumed_tail:
        raise InputError(source, f"unpacks to more than the {limits.max_file_bytes / 2**20:.0f} MiB file limit")
    if not d.eof:
        raise InputError(source, "gzip-compressed file is cut short")
    return out


# --------------------------------------------------------------------------- entry points
def load_mesh_bytes(data: bytes, name: str, *, source: str | None = None, limits: Limits | None = None,
                    texture: bool = True, resolve: Resolve | None = None) -> Mesh:
    """Read mesh bytes whose format is given by ``name``'s extension (sniffed as a fallback).

    ``resolve(file_name) -> bytes | None`` supplies companion files (textures, OBJ ``.mtl``).
    """
    from affectvlm.io.bnt import read_bnt
    from affectvlm.io.vrml import read_vrml

    limits = get_limits(limits)
    source = source or name
    check_size(len(data), limits, source)
    if not data.strip():
        raise InputError(source, "file is empty (only whitespace)")
    ext = Path(name).suffix.lower() if name else ""
    if ext == ".wrz" or (name or "").lower().endswith((".wrl.gz", ".vrml.gz")):  # gzip-compressed VRML's names
        ext = ".wrl"
    if data[:2] == b"\x1f\x8b" and ext in (".wrl", ".vrml"):  # VRML97 allows gzip-compressed files
        data = _gunzip(data, source, limits)
    if data.startswith(b"\xef\xbb\xbf") and ext != ".bnt":  # a UTF-8 byte-order mark (Windows editors) is not text
        data = data[3:]
    kind = sniff(data[:65536])
    if kind is not None and kind.startswith("not:"):
        raise InputError(source, f"this is {kind[4:]}, not a 3D mesh" +
                         (f" (despite the {ext} extension)" if ext in MESH_EXTENSIONS else
                          " (a scan's texture? give the mesh file)" if ext in TEXTURE_EXTENSIONS else ""))
    if ext not in MESH_EXTENSIONS:
        if kind is None and _looks_like_obj(data[:65536]):
            kind, ext = "obj", ".obj"  # OBJ text under another name (BP4D's frames may have no extension)
        elif kind is None:
            shown = ext or "no extension"
            raise InputError(source, f"unsupported file type ({shown}); supported: {' '.join(MESH_EXTENSIONS)}")
        else:
            ext = _KIND_EXT[kind]
    elif kind is not None and _KIND_EXT.get(kind) != ext and not (kind == "vrml" and ext == ".vrml") \
            and not (kind == "gltf" and ext == ".glb"):
        log.info("%s: content is %s, not %s; reading by content", source, kind, ext)
        ext = _KIND_EXT[kind]
    if ext in (".wrl", ".vrml") and kind is None and _looks_like_obj(data[:65536]):
        log.info("%s: content is OBJ text, not %s; reading by content", source, ext)  # as a .obj holding VRML is
        ext = ".obj"
    if ext in (".wrl", ".vrml"):
        mesh = read_vrml(data, source, limits=limits)
    elif ext == ".bnt":
        mesh = read_bnt(data, source, limits=limits)
    else:
        return _read_trimesh(data, ext, source, limits, resolve, texture)
    return _load_texture(mesh, resolve, texture, limits)


def load_mesh(src: str | os.PathLike | bytes, name: str | None = None, *, limits: Limits | None = None,
              texture: bool = True) -> Mesh:
    """Load one scan from a path, or from ``bytes`` plus a file ``name`` (uploads).

    For bytes there is no directory, so companion textures are absent unless embedded (GLB).
    """
    limits = get_limits(limits)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        return load_mesh_bytes(data, name or "", source=name or "<upload>", limits=limits, texture=texture)
    if not isinstance(src, (str, os.PathLike)):
        raise InputError(str(name or src), f"expected a path or bytes, got {type(src).__name__}")
    path = Path(src)
    source = str(name or path)
    try:
        st = path.stat()
    except OSError as e:
        raise InputError(source, f"cannot read: {e.strerror or e}") from None
    if path.is_dir():
        raise InputError(source, "is a folder (use load_sequence for a folder of frames)")
    if not stat.S_ISREG(st.st_mode):  # reading a FIFO or a device would wait forever or never end
        raise InputError(source, "not a regular file (a pipe, socket or device)")
    check_size(st.st_size, limits, source)  # before reading anything
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(source, f"cannot read: {e.strerror or e}") from None
    return load_mesh_bytes(data, path.name, source=source, limits=limits, texture=texture,
                           resolve=_dir_resolver(path.parent, limits))
