"""Reading what users bring: single scans (`load_mesh`) and 4D sequences (`load_sequence`).

    from affectvlm.io import load_mesh, load_sequence, is_sequence, SUPPORTED_EXTENSIONS
    mesh = load_mesh("F0001_AN01WH_F3D.wrl")
    seq = load_sequence("F001/Angry", n_frames=16)     # folder, .zip (path or bytes) or list of files

Writers for tests and synthetic data: `affectvlm.io.vrml.write_vrml`, `affectvlm.io.bnt.write_bnt`.
Every bad input raises `affectvlm.errors.InputError` naming the file and the problem.
"""
from affectvlm.io.formats import MESH_EXTENSIONS, SUPPORTED_EXTENSIONS, TEXTURE_EXTENSIONS, load_mesh
from affectvlm.io.sequence import frame_number, is_sequence, load_sequence

__all__ = ["load_mesh", "load_sequence", "is_sequence", "frame_number", "SUPPORTED_EXTENSIONS",
           "MESH_EXTENSIONS", "TEXTURE_EXTENSIONS"]
