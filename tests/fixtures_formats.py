"""Writers of test files in every supported format (usable by any test or benchmark).

    from fixtures_formats import write_format, scanner_vrml_text, polygon_grid, write_zip
    path = write_format(tmp_path / "face.ply", mesh, binary=True)

OBJ/PLY/STL/OFF/GLB go through trimesh's exporters; VRML is written exactly in the Tricorder scanner
layout (BU-3DFE/BU-4DFE), with options for both index-row styles, polygons of any size, comments and
Viewpoints; BNT uses `affectvlm.io.bnt.write_bnt`.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from affectvlm.mesh import Mesh


def to_trimesh(mesh: Mesh, *, textured: bool = True):
    """A trimesh copy; textured meshes get one vertex per face corner (trimesh stores UVs per vertex)."""
    import trimesh
    from PIL import Image

    if textured and mesh.face_uv is not None and mesh.texture is not None:
        v = mesh.vertices[mesh.faces].reshape(-1, 3)
        f = np.arange(len(v)).reshape(-1, 3)
        uv = mesh.face_uv.reshape(-1, 2)
        visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(mesh.texture))
        return trimesh.Trimesh(v, f, visual=visual, process=False)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if mesh.vertex_colors is not None:
        tm.visual.vertex_colors = np.concatenate([mesh.vertex_colors, np.full((len(mesh.vertex_colors), 1), 255,
                                                                               np.uint8)], 1)
    return tm


def write_format(path: str | Path, mesh: Mesh, *, binary: bool = True, textured: bool = True) -> Path:
    """Write ``mesh`` in the format of ``path``'s extension (.obj .ply .stl .off .glb .wrl .bnt-not-here)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".wrl", ".vrml"):
        from affectvlm.io.vrml import write_vrml

        return write_vrml(path, mesh if textured else Mesh(mesh.vertices, mesh.faces, source=mesh.source))
    tm = to_trimesh(mesh, textured=textured and ext in (".obj", ".glb"))
    if ext == ".obj":
        from trimesh.exchange.obj import export_obj

        text, files = export_obj(tm, include_texture=textured, return_texture=True, mtl_name=path.stem + ".mtl")
        path.write_text(text)
        for name, data in files.items():
            (path.parent / name).write_bytes(data)
    elif ext == ".ply":
        path.write_bytes(tm.export(file_type="ply", encoding="binary" if binary else "ascii"))
    elif ext == ".stl":
        data = tm.export(file_type="stl" if binary else "stl_ascii")
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    elif ext == ".off":
        data = tm.export(file_type="off")
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    elif ext == ".glb":
        path.write_bytes(tm.export(file_type="glb"))
    else:
        raise ValueError(f"no writer for {ext}")
    return path


def polygon_grid(nx: int = 6, ny: int = 5, *, pentagons: bool = True, seed: int = 0):
    """A bumpy grid of quads (plus a pentagon strip) as (vertices, polygons, per-corner uv index lists)."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
    z = 0.3 * np.sin(xs) * np.cos(ys) + rng.normal(0, 0.01, xs.shape)
    verts = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1) * 10.0 + [100.0, -50.0, 900.0]
    idx = np.arange(nx * ny).reshape(ny, nx)
    polys = []
    for r in range(ny - 1):
        for c in range(nx - 1):
            polys.append([idx[r, c], idx[r, c + 1], idx[r + 1, c + 1], idx[r + 1, c]])
    if pentagons:  # a pentagon fan over an extra top row with a midpoint
        top = len(verts)
        verts = np.vstack([verts, [[100.0 + 5, -50.0 - 10, 900.0]]])
        polys.append([idx[0, 1], idx[0, 0], top, idx[0, 3], idx[0, 2]])
    return verts, polys


def scanner_vrml_text(verts: np.ndarray, polys: list[list[int]], *, uv: np.ndarray | None = None,
                      uv_polys: list[list[int]] | None = None, texture: str | None = "face.bmp",
                      index_commas: bool = False, comments: bool = True, viewpoints: bool = True,
                      last_terminator: bool = True) -> str:
    """VRML 2.0 text in the exact BU-3DFE Tricorder layout (see docs data-formats.md)."""
    sep = ", " if index_commas else " "
    out = ["#VRML V2.0 utf8\n#Tricorder Technology plc - 2000\n\n"]
    if comments:
        out.append("# exported by the scanner; coordinates in millimetres\n")
    out.append("DEF Tricorder_object Transform {\n  children [\n    Shape {\n")
    if texture:
        out.append(f'      appearance Appearance {{\n        texture ImageTexture {{\n          url "{texture}"\n'
                   "          repeatS FALSE\n          repeatT FALSE\n        }\n      }\n")
    out.append("      geometry IndexedFaceSet {\n        ccw TRUE\n        solid FALSE\n        convex TRUE\n"
               "        creaseAngle 1.57\n        coord Coordinate {\n          point [\n")
    out.append(",\n".join("            %.6f %.6f %.6f" % tuple(v) for v in verts))
    out.append("\n          ]\n        }\n        coordIndex [\n")
    rows = [sep.join(str(int(i)) for i in p) + sep + "-1" for p in polys]
    out.append(",\n".join("          " + r for r in rows))
    if not last_terminator:
        out[-1] = out[-1][: -len(sep + "-1")]
    out.append(",\n        ]\n" if last_terminator else "\n        ]\n")
    if uv is not None:
        if comments:
            out.append("        # texture coordinates follow\n")
        out.append("        texCoord TextureCoordinate {\n          point [\n")
        out.append(",\n".join("            %.6f %.6f" % tuple(t) for t in uv))
        out.append("\n          ]\n        }\n")
        if uv_polys is not None:
            out.append("        texCoordIndex [\n")
            out.append(",\n".join("          " + sep.join(str(int(i)) for i in p) + sep + "-1" for p in uv_polys))
            out.append(",\n        ]\n")
    out.append("      }\n    }\n  ]\n}\n")
    if viewpoints:
        for name, pos in (("Front", "0 0 600"), ("Left", "-600 0 0"), ("Right", "600 0 0")):
            out.append(f"DEF Tricorder_Camera_{name} Viewpoint {{\n  position {pos}\n  orientation 0 1 0 0\n"
                       f'  fieldOfView 0.785398\n  description "{name}"\n}}\n')
    return "".join(out)


def bmp_texture(path: str | Path, size: int = 32) -> np.ndarray:
    """Write a side-by-side two-view style BMP texture and return its RGB array."""
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0 : 2 * size]
    img = np.stack([(xx * 255 // (2 * size)), (yy * 255 // size), np.full_like(xx, 60)], -1).astype(np.uint8)
    Image.fromarray(img).save(path, format="BMP")
    return img


def bnt_face_grid(nrows: int = 40, ncols: int = 30):
    """An (nrows, ncols, 3) face-like range grid with an elliptical foreground mask."""
    ys, xs = np.meshgrid(np.linspace(60, -60, nrows), np.linspace(-45, 45, ncols), indexing="ij")
    r2 = (xs / 45) ** 2 + (ys / 60) ** 2
    inside = r2 < 0.95
    z = 40 * np.sqrt(np.clip(1 - r2, 0, None)) - 1500
    return np.stack([xs, ys, z], -1), ~inside


def write_zip(path: str | Path | None, members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """Write a zip of ``members`` (name -> bytes); returns the zip bytes (also saved when ``path``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def zip_bomb(n_bytes: int = 50 * 2**20) -> bytes:
    """A small zip whose single member inflates to ``n_bytes`` of zeros (ratio ~1000:1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("000.obj", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(n_bytes // len(chunk)):
                fh.write(chunk)
    return buf.getvalue()
