"""What ``predict`` reads: paths, folders, zips, uploads and meshes expanded into a flat, ordered list of items.

What is a sequence: a folder or zip whose mesh files differ only by their numbers (``000.wrl``, ``001.wrl`` ...
or ``frame_0001.obj`` ...). A folder of differently named scans (a BU-3DFE subject folder) is a batch of scans;
sub-folders are visited (so a BU-4DFE subject folder gives one sequence per expression). Folder walks visit
each real file once (symlink loops end); an unreadable sub-folder is one error item.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

from affectvlm.errors import AffectVLMError, ConfigError, InputError
from affectvlm.io import MESH_EXTENSIONS
from affectvlm.io.sequence import is_mesh_file, is_mesh_name, looks_like_sequence, member_groups
from affectvlm.limits import Limits
from affectvlm.mesh import Mesh, MeshSequence

# a path (file, folder, zip), (shown name, bytes), (shown name, path) e.g. an upload saved to a temp file,
# (shown name, reader) a scan file's bytes read when its turn comes (a zip member), or a mesh
Input = Union[str, os.PathLike, Mesh, MeshSequence, tuple[str, bytes], tuple[str, os.PathLike],
              tuple[str, Callable[[], bytes]]]
NOT_A_ZIP = "not a valid zip file (no zip header)"


@dataclass(frozen=True)
class Item:
    """One input ``predict`` scores: a scan, a sequence (``load`` reads it when it is its turn) or an input that
    could not be opened (``error``). ``again``: ``load`` may be called more than once (False for a caller's
    ``(name, reader)``, which is read once)."""

    source: str
    kind: str  # "scan" | "sequence" | "error"
    load: Callable[[], Mesh | MeshSequence] | None = None
    error: str = ""
    again: bool = True


@dataclass(frozen=True)
class Reread:
    """The reader of a ``(name, reader)`` input that may be called more than once (a zip member), so ``predict`` may
    read it for the set's face frame before its turn; a plain callable is read once, at its turn."""

    read: Callable[[], bytes]

    def __call__(self) -> bytes:
        return self.read()


def error_text(exc: BaseException, source: str = "") -> str:
    """The row's error: the problem (the row names the file), led by the member or frame file when the
    error is about a file inside ``source`` (a sequence's frame, a folder's file)."""
    if isinstance(exc, InputError):
        inner = exc.source[len(source):].lstrip("/\\:") if source and exc.source.startswith(source) else ""
        return f"{inner}: {exc.problem}" if inner else exc.problem
    if isinstance(exc, AffectVLMError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def expand(inputs: Input | Sequence[Input], *, limits: Limits, frames: int | None, every: int,
           texture: bool = True) -> list[Item]:
    """The inputs as a flat list of items, in a fixed order: each path, folder (depth-first, names sorted) and
    zip (member order) as it comes; nothing is read but folder listings and zip directories. ``texture=False``:
    scans are read without their texture images."""
    from affectvlm.io import load_mesh, load_sequence
    from affectvlm.io.formats import load_mesh_bytes
    from affectvlm.io.sequence import zip_resolver
    from affectvlm.io.archive import is_zip

    def seq_loader(src: Path | bytes, name: str | None = None, folder: str | None = None
                   ) -> Callable[[], MeshSequence]:
        return lambda: load_sequence(src, name, every=every, n_frames=frames, limits=limits, member_dir=folder)

    def from_zip(data: Path | bytes, source: str) -> list[Item]:
        """As a folder is read: each member folder whose meshes are frames is a sequence (a zip of a BU-4DFE
        subject gives one per expression), the other meshes are scans."""
        from affectvlm.io.archive import SafeZip

        z = SafeZip(data, limits, source)
        z.close()  # opened again when a scan's turn comes: no open file per zip of a folder meanwhile
        names = [n for n in z.names if is_mesh_name(n)]
        if not names:
            raise InputError(source, f"the zip holds no mesh file ({', '.join(MESH_EXTENSIONS)})")
        groups = member_groups(names)
        if len(groups) == 1 and groups[0][2]:
            return [Item(source, "sequence", seq_loader(data, source))]
        z.close_after(n for _, ns, frames in groups if not frames for n in ns)
        out: list[Item] = []
        for d, ns, frames in groups:
            if frames:  # frames at the zip's top are named after the zip alone
                shown = f"{source}:{d}" if d else source
                out.append(Item(shown, "sequence", seq_loader(data, shown, d)))
                continue
            out += [Item(f"{source}:{n}", "scan", lambda n=n, s=f"{source}:{n}":  # decompressed at its turn
                         load_mesh_bytes(z.read(n), n, source=s, limits=limits, texture=texture,
                                         resolve=zip_resolver(z, n))) for n in ns]
        return out

    def from_dir(top: Path, shown_top: str) -> list[Item]:
        """Walk a folder depth-first in name order, each real folder and file once (symlink loops end)."""
        out: list[Item] = []
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[Path, str]] = [(top, shown_top)]
        n_entries = 0
        while stack:
            d, shown = stack.pop()
            try:
                st = d.stat()
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue  # a symlink back into the walk, or a second link to a visited folder
                seen.add(key)
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                out.append(Item(shown, "error", error=f"cannot list folder: {e.strerror or e}"))
                continue
            n_entries += len(entries)
            if n_entries > limits.max_folder_files:
                out.append(Item(shown_top, "error", error=f"the folder walk passed {limits.max_folder_files} "
                                 "entries and stopped there (AFFECTVLM_MAX_FOLDER_FILES)"))
                break
            files: list[tuple[str, Path]] = []
            zips: list[tuple[str, Path]] = []
            dirs: list[tuple[str, Path]] = []
            for e in entries:
                try:
                    if e.is_dir():
                        if not e.name.startswith((".", "__MACOSX")):
                            dirs.append((e.name, Path(e.path)))
                    elif e.is_file() and (is_mesh_file(e.path) or _is_zip_name(e.name)):
                        fst = e.stat()
                        fkey = (fst.st_dev, fst.st_ino)
                        if fkey not in seen:
                            seen.add(fkey)
                            (zips if _is_zip_name(e.name) else files).append((e.name, Path(e.path)))
                    elif e.is_symlink() and (is_mesh_name(e.name) or _is_zip_name(e.name)):
                        os.stat(e.path)  # a scan's name on a link that leads nowhere: its row says why
                except OSError as err:
                    if e.is_symlink() and (is_mesh_name(e.name) or _is_zip_name(e.name)):
                        name = e.path if shown == str(d) else os.path.join(shown, e.name)
                        out.append(Item(name, "error", error=f"cannot read: {err.strerror or err} (a link that "
                                                              "leads nowhere)"))
                    continue  # otherwise an entry that vanished
            if looks_like_sequence([n for n, _ in files]):
                out.append(Item(shown, "sequence", seq_loader(d, shown)))
                continue  # a sequence folder is one input; its sub-folders are not searched
            for n, f in files:
                name = str(f) if shown == str(d) else os.path.join(shown, n)
                out.append(Item(name, "scan", lambda f=f, name=name: load_mesh(f, name, limits=limits, texture=texture)))
            for n, f in zips:  # a folder of zipped recordings: each read as a zip given alone is
                name = str(f) if shown == str(d) else os.path.join(shown, n)
                try:
                    out += from_path(f, name)
                except Exception as e:  # a broken zip is its row
                    out.append(Item(name, "error", error=error_text(e)))
            stack += [(sub, os.path.join(shown, n)) for n, sub in reversed(dirs)]
        if not out:
            return [Item(shown_top, "error", error=f"folder holds no mesh file ({', '.join(MESH_EXTENSIONS)})")]
        return out

    def from_path(p: Path, shown: str) -> list[Item]:
        if p.is_dir():
            return from_dir(p, shown)
        try:
            if not stat.S_ISREG(p.stat().st_mode):  # a FIFO or device named like a scan: open() would wait forever
                return [Item(shown, "error", error="not a regular file (a pipe, socket or device)")]
            with open(p, "rb") as fh:
                head = fh.read(4)
        except FileNotFoundError:
            return [Item(shown, "error", error="file not found")]
        except OSError as e:  # a link loop, no permission, a special file
            return [Item(shown, "error", error=f"cannot read: {e.strerror or e}")]
        if is_zip(head):
            return from_zip(p, shown)
        if p.suffix.lower() == ".zip":
            return [Item(shown, "error", error=NOT_A_ZIP)]
        return [Item(shown, "scan", lambda: load_mesh(p, shown, limits=limits, texture=texture))]

    if isinstance(inputs, (bytes, bytearray, memoryview)):  # iterated, each byte would be an input of its own
        raise ConfigError("a file's bytes need a name for its format: pass (name, bytes), e.g. ('scan.obj', data)")
    if isinstance(inputs, (str, os.PathLike, Mesh, MeshSequence)) or (
            isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], str)
            and (isinstance(inputs[1], (bytes, bytearray, memoryview, os.PathLike)) or callable(inputs[1]))):
        inputs = [inputs]  # one input; a tuple of two path strings stays two inputs
    items: list[Item] = []
    for x in inputs:
        try:
            if isinstance(x, Mesh):
                items.append(Item(x.source, "scan", lambda x=x: x))
            elif isinstance(x, MeshSequence):
                items.append(Item(x.source, "sequence", lambda x=x: x))
            elif isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], (bytes, bytearray, memoryview)):
                name, data = str(x[0]), bytes(x[1])
                if is_zip(data[:4]):
                    items += from_zip(data, name)
                elif name.lower().endswith(".zip"):
                    items.append(Item(name, "error", error=NOT_A_ZIP))
                else:
                    items.append(Item(name, "scan", lambda d=data, n=name: load_mesh(d, n, limits=limits, texture=texture)))
            elif isinstance(x, (str, os.PathLike)):
                items += from_path(Path(x).expanduser(), os.fspath(x))
            elif isinstance(x, (tuple, list)) and len(x) == 2 and callable(x[1]):  # a scan read at its turn
                items.append(Item(str(x[0]), "scan", lambda r=x[1], n=str(x[0]):
                                  load_mesh(bytes(r()), n, limits=limits, texture=texture),
                                  again=isinstance(x[1], Reread)))
            elif isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], (str, os.PathLike)):
                items += from_path(Path(x[1]), str(x[0]))  # (shown name, path): e.g. an upload saved to a temp file
            else:
                items.append(Item(repr(x)[:80], "error", error=f"cannot read a {type(x).__name__} "
                                   "(give a path, (name, bytes), (name, reader), a Mesh or a MeshSequence)"))
        except Exception as e:  # a broken zip or folder is that input's row, not a crash
            items.append(Item(_display(x), "error", error=error_text(e)))
    return items


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip") and not name.startswith(".")


def _display(x: object) -> str:
    if isinstance(x, (Mesh, MeshSequence)):
        return x.source
    if isinstance(x, (tuple, list)) and x:
        return str(x[0])
    return os.fspath(x) if isinstance(x, (str, os.PathLike)) else repr(x)[:80]
