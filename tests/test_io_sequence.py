"""Sequences from folders, zips (path and bytes) and file lists; safe zip reading against hostile archives."""
from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
import pytest
from fixtures_formats import write_format, write_zip, zip_bomb
from meshgen import face_like_mesh

from affectvlm.errors import ConfigError, InputError
from affectvlm.io import frame_number, is_sequence, load_sequence
from affectvlm.io.archive import safe_zip_members
from affectvlm.io.sequence import sample_indices
from affectvlm.io.vrml import write_vrml
from affectvlm.limits import Limits


@pytest.fixture(scope="module")
def frames():
    """Five distinct small frames (the smile grows), textured."""
    return [face_like_mesh(10, smile=i / 4, seed=i) for i in range(5)]


def _ply_bytes(tmp_path, mesh, name="x.ply") -> bytes:
    return write_format(tmp_path / name, mesh, textured=False).read_bytes()


def test_frame_number():
    assert frame_number("000.wrl") == 0
    assert frame_number("frame_12.obj") == 12
    assert frame_number("F001_Happy_0045.ply") == 45
    assert frame_number("a/b7/x.obj") is None


def test_sample_indices():
    assert sample_indices(10, every=3) == [0, 3, 6, 9]
    assert sample_indices(10, n_frames=4) == [0, 3, 6, 9]
    assert sample_indices(101, n_frames=3) == [0, 50, 100]
    assert sample_indices(3, n_frames=10) == [0, 1, 2]
    assert sample_indices(10, every=2, n_frames=3) == [0, 4, 8]
    with pytest.raises(ConfigError):
        sample_indices(5, every=0)
    with pytest.raises(ConfigError):
        sample_indices(5, n_frames=0)


def test_folder_bu4dfe_layout_numeric_order_and_textures(tmp_path, frames):
    seq_dir = tmp_path / "F001" / "Angry"
    seq_dir.mkdir(parents=True)
    order = [0, 1, 2, 10, 100]  # 100 sorts before 2 as text
    for num, m in zip(order, frames):
        write_vrml(seq_dir / f"{num:03d}.wrl", m)  # writes NNN.bmp beside it
    (seq_dir / "000.bnd").write_text("1\t0\t0\t0\n")
    (seq_dir / ".DS_Store").write_bytes(b"junk")
    seq = load_sequence(seq_dir)
    assert seq.frame_ids == order
    assert all(f.has_texture for f in seq.frames)
    for f, m in zip(seq.frames, frames):
        np.testing.assert_allclose(f.vertices, m.vertices, atol=1e-3)
    assert seq.source == str(seq_dir) and seq.frames[3].source.endswith("010.wrl")
    assert is_sequence(seq_dir)


def test_sampling_reads_only_kept_frames(tmp_path, frames, monkeypatch):
    for i, m in enumerate(frames):
        (tmp_path / f"frame_{i}.ply").write_bytes(_ply_bytes(tmp_path, m, "tmp.ply"))
    (tmp_path / "tmp.ply").unlink()
    import affectvlm.io.sequence as sequence

    loaded = []
    real = sequence.load_mesh
    monkeypatch.setattr(sequence, "load_mesh", lambda p, **kw: loaded.append(p.name) or real(p, **kw))
    seq = load_sequence(tmp_path, n_frames=3)
    assert seq.frame_ids == [0, 2, 4] and loaded == ["frame_0.ply", "frame_2.ply", "frame_4.ply"]
    assert load_sequence(tmp_path, every=2).frame_ids == [0, 2, 4]
    assert seq.meta["n_available"] == 5


def test_zip_path_and_bytes_with_textures(tmp_path, frames):
    members = {}
    for i, m in enumerate(frames):
        p = write_vrml(tmp_path / "w" / f"{i:03d}.wrl", m)
        members[f"M002/Happy/{p.name}"] = p.read_bytes()
        members[f"M002/Happy/{p.stem}.bmp"] = p.with_suffix(".bmp").read_bytes()
    members["__MACOSX/M002/Happy/._000.wrl"] = b"junk"
    members["M002/Happy/readme.txt"] = b"hello"
    data = write_zip(tmp_path / "seq.zip", members)
    seq = load_sequence(tmp_path / "seq.zip", every=2)
    assert seq.frame_ids == [0, 2, 4] and all(f.has_texture for f in seq.frames)
    assert seq.frames[0].source == f"{tmp_path / 'seq.zip'}:M002/Happy/000.wrl"
    seq2 = load_sequence(data, "upload.zip")
    assert seq2.frame_ids == [0, 1, 2, 3, 4] and seq2.source == "upload.zip"
    assert is_sequence(data) and is_sequence(tmp_path / "seq.zip")
    one = write_zip(None, {"000.wrl": members["M002/Happy/000.wrl"]})
    assert not is_sequence(one)


def test_file_list(tmp_path, frames):
    paths = []
    for i, m in zip([12, 3, 7], frames):
        paths.append(tmp_path / f"F001_Happy_{i:04d}.ply")
        paths[-1].write_bytes(_ply_bytes(tmp_path, m))
    paths.append(tmp_path / "tex.bmp")
    seq = load_sequence(paths)
    assert seq.frame_ids == [3, 7, 12]


def test_sequence_errors(tmp_path, frames):
    with pytest.raises(InputError, match="no frames"):
        load_sequence(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no frames"):
        load_sequence(tmp_path)
    with pytest.raises(InputError, match="no mesh files"):
        load_sequence(write_zip(None, {"a.txt": b"x"}), "z.zip")
    with pytest.raises(InputError, match="must be a .zip"):
        load_sequence(b"hello", "x.bin")
    with pytest.raises(InputError, match="no such"):
        load_sequence(tmp_path / "missing")
    ply = _ply_bytes(tmp_path, frames[0])
    with pytest.raises(InputError, match="two files for frame 1"):
        load_sequence(write_zip(None, {"1.ply": ply, "001.ply": ply}), "dup.zip")
    with pytest.raises(InputError, match="over the limit"):
        load_sequence(write_zip(None, {f"{i}.ply": ply for i in range(4)}), "many.zip", limits=Limits(max_frames=3))
    with pytest.raises(InputError, match="many.zip:0.ply: file is empty"):  # no frame to score: the first reason
        load_sequence(write_zip(None, {"0.ply": b"", "1.ply": b""}), "many.zip")


def test_one_unreadable_frame_is_that_frames_error_and_the_others_are_scored(tmp_path):
    """A truncated frame used to throw the whole sequence away, while a frame too small to be a face was only
    its own error row."""
    from affectvlm.io._common import check_face
    from affectvlm.predict import predict

    for i in range(5):  # larger than the fixture's frames: faces predict scores
        write_vrml(tmp_path / "seq" / f"{i:03d}.wrl", face_like_mesh(16, smile=i / 4, seed=i, textured=False))
    whole = (tmp_path / "seq" / "002.wrl").read_bytes()
    (tmp_path / "seq" / "002.wrl").write_bytes(whole[: len(whole) // 2])
    members = {p.name: p.read_bytes() for p in sorted((tmp_path / "seq").glob("*.wrl"))}
    for src, name in ((tmp_path / "seq", "seq"), (write_zip(None, members), "seq.zip")):
        seq = load_sequence(src, name)
        assert seq.frame_ids == [0, 1, 2, 3, 4] and seq.meta["n_unreadable"] == 1
        with pytest.raises(InputError, match=r"002\.wrl: .*truncated"):
            check_face(seq.frames[2])
        rows = predict([seq], "AffectVLM-Test")
        assert [bool(r["error"]) for r in rows] == [False, False, True, False, False, False], rows[2]["error"]
        assert "truncated" in rows[2]["error"] and rows[-1]["frame"] == "sequence"
        assert rows[2]["error"].startswith("frame 2: 002.wrl: ")  # the frame's file named, not only its number


def test_zip_slip_absolute_and_symlink_refused():
    with pytest.raises(InputError, match="zip-slip"):
        safe_zip_members(write_zip(None, {"../../etc/evil.obj": b"v 0 0 0"}), None, "slip.zip")
    with pytest.raises(InputError, match="zip-slip"):
        load_sequence(write_zip(None, {"ok/000.obj": b"v", "ok/../../x.obj": b"v"}), "slip.zip")
    with pytest.raises(InputError, match="absolute"):
        safe_zip_members(write_zip(None, {"/tmp/abs.obj": b"v 0 0 0"}), None, "abs.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.obj")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        safe_zip_members(buf.getvalue(), None, "link.zip")


def test_zip_member_count_and_unpacked_size_limits():
    many = write_zip(None, {f"{i}.obj": b"v" for i in range(20)})
    with pytest.raises(InputError, match="20 members"):
        safe_zip_members(many, Limits(max_zip_members=10), "many.zip")
    big = write_zip(None, {"a.obj": b"v 1 2 3\n" * 5000, "b.obj": b"v 1 2 3\n" * 5000}, compression=zipfile.ZIP_STORED)
    with pytest.raises(InputError, match="unpack to more than"):
        safe_zip_members(big, Limits(max_unpacked_bytes=50_000), "big.zip")


def test_real_zip_bomb_is_refused():
    bomb = zip_bomb(50 * 2**20)
    assert len(bomb) < 100_000
    with pytest.raises(InputError, match="zip bomb"):
        load_sequence(bomb, "bomb.zip")


def test_lying_header_caught_while_decompressing():
    """Declared sizes patched down to look harmless (ratio 1:1): decompression itself must stop it."""
    real = 4 * 2**20
    data = write_zip(None, {"000.obj": b"\0" * real})
    csize = zipfile.ZipFile(io.BytesIO(data)).infolist()[0].compress_size
    old, new = np.uint32(real).tobytes(), np.uint32(csize).tobytes()
    assert data.count(old) == 2  # local header and central directory
    liar = data.replace(old, new)
    assert zipfile.ZipFile(io.BytesIO(liar)).infolist()[0].file_size == csize
    with pytest.raises(InputError, match="more than its header|corrupt") as err:
        safe_zip_members(liar, None, "liar.zip")
    assert "liar.zip" in str(err.value)


def test_corrupt_zip():
    with pytest.raises(InputError, match="not a valid zip"):
        load_sequence(b"PK\x03\x04" + b"\0" * 100, "bad.zip")
    good = bytearray(write_zip(None, {"0.obj": b"v 0 0 0\n" * 1000, "1.obj": b"v 0 0 0\n" * 1000}))
    good[60:200] = b"\xff" * 140  # damage the compressed data of the first member
    with pytest.raises(InputError, match="corrupt|not a valid zip"):
        load_sequence(bytes(good), "bad.zip")


def test_dataset_named_static_scans_are_scans_even_when_their_names_differ_only_by_digits(tmp_path):
    """A subject's four intensities of one expression (BU-3DFE), or several subjects' scans of one emotion
    (Bosphorus), were read as a 'sequence' and failed ('two files for frame 3', from _F3D) or, worse, scored as one."""
    from affectvlm.inputs import expand

    from affectvlm.io.sequence import looks_like_sequence

    assert not looks_like_sequence([f"F0001_HA0{i}WH_F3D.wrl" for i in range(1, 5)])
    assert not looks_like_sequence([f"bs00{i}_E_ANGER_0.bnt" for i in range(3)])
    assert not looks_like_sequence([f"bs000_N_N_{i}.bnt" for i in range(3)])
    assert looks_like_sequence(["000.wrl", "001.wrl"]) and looks_like_sequence(["F001_000.wrl", "F001_001.wrl"])
    face = face_like_mesh(10, textured=False)
    d = tmp_path / "happy_F0001"
    d.mkdir()
    for i in range(1, 5):
        write_vrml(d / f"F0001_HA0{i}WH_F3D.wrl", face)
    items = expand([str(d)], limits=Limits(), frames=None, every=1)
    assert [it.kind for it in items] == ["scan"] * 4


def test_a_zips_scans_and_frames_keep_their_textures_whatever_separator_the_zip_uses(tmp_path):
    """Scans in a zip were read without the texture beside them; a zip written with '\\' lost frames' textures."""
    from affectvlm.inputs import expand

    face = face_like_mesh(10)
    write_vrml(tmp_path / "F0001_HA04WH_F3D.wrl", face)
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert any(n.lower().endswith((".bmp", ".png", ".jpg")) for n in written)  # the texture beside the scan
    for sep in ("/", "\\"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in written.items():
                zf.writestr(f"F0001{sep}{name}", data)  # a scan
                for i in range(2):  # and a two-frame sequence, the texture its url names beside the frames
                    frame = name.replace("F0001_HA04WH_F3D", f"{i:03d}") if name.endswith(".wrl") else name
                    if i == 0 or name.endswith(".wrl"):
                        zf.writestr(f"F001{sep}Happy{sep}{frame}", data)
        got = {it.source: it.load() for it in expand([("set.zip", buf.getvalue())], limits=Limits(), frames=None,
                                                    every=1)}
        scan = next(m for k, m in got.items() if k.endswith("F3D.wrl"))
        seq = next(m for k, m in got.items() if k.endswith("Happy"))
        assert scan.texture is not None and scan.face_uv is not None, sep
        assert all(f.texture is not None for f in seq.frames), sep


def test_a_texture_named_in_another_case_than_its_file_is_found(tmp_path):
    """Data copied from Windows: the VRML's url says 'F0001_HA04WH_F3D.bmp', the file is '...F3D.BMP'."""
    from affectvlm.io import load_mesh

    write_vrml(tmp_path / "F0001_HA04WH_F3D.wrl", face_like_mesh(10))
    tex = next(p for p in tmp_path.iterdir() if p.suffix != ".wrl")
    tex.rename(tmp_path / (tex.stem + tex.suffix.upper()))
    assert load_mesh(tmp_path / "F0001_HA04WH_F3D.wrl").texture is not None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in tmp_path.iterdir():
            zf.writestr(f"F001/Happy/{p.name.replace('F0001_HA04WH_F3D.wrl', '000.wrl')}", p.read_bytes())
        zf.writestr("F001/Happy/001.wrl", (tmp_path / "F0001_HA04WH_F3D.wrl").read_bytes())
    seq = load_sequence(buf.getvalue(), "seq.zip")
    assert all(f.texture is not None for f in seq.frames)


def test_a_zip_declaring_too_many_members_is_refused_before_its_directory_is_read(monkeypatch):
    """zipfile builds an entry object per member before the member limit could be checked: a 50 MB zip of a million
    empty entries cost 6 s and 420 MB first. The end record's count (zip64's too) is checked before."""
    import affectvlm.io.archive as archive

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(66_000):  # past 65535: zipfile writes zip64 end records
            zf.writestr(f"{i}", b"")
    data = buf.getvalue()
    assert archive._declared_entries(io.BytesIO(data)) == 66_000
    monkeypatch.setattr(archive.zipfile, "ZipFile", lambda *a, **k: pytest.fail("the directory was read"))
    with pytest.raises(InputError, match="66000 members, over the limit of 10000"):
        archive.SafeZip(data, Limits(max_zip_members=10_000), "many.zip")


def test_a_zip_whose_end_record_understates_its_members_is_refused_before_its_directory_is_read(monkeypatch):
    """zipfile reads every entry of the central directory whatever count the end record gives: a zip that declares
    one member but holds thousands is refused by the entries its directory holds, before zipfile reads them."""
    import struct

    import affectvlm.io.archive as archive

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3000):
            zf.writestr(f"{i}", b"")
    data = bytearray(buf.getvalue())
    at = bytes(data).rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, 1, 1)  # "one member on this disk, one in all"
    data = bytes(data)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 3000  # zipfile itself believes the directory
    assert archive._declared_entries(io.BytesIO(data)) == 3000
    assert archive._entry_headers(io.BytesIO(data), 0, len(data), chunk=7) == 3000  # each once across seams
    monkeypatch.setattr(archive.zipfile, "ZipFile", lambda *a, **k: pytest.fail("the directory was read"))
    with pytest.raises(InputError, match="3000 members, over the limit of 1000"):
        archive.SafeZip(data, Limits(max_zip_members=1000), "liar.zip")


def test_a_zip_with_frames_at_its_top_and_scans_in_a_folder_names_the_sequence_after_the_zip():
    from affectvlm.inputs import expand
    from affectvlm.limits import default_limits

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("000.obj", "001.obj", "002.obj", "Other/a.obj", "Other/b.ply"):
            zf.writestr(name, "v 0 0 0\n")
    items = expand(("F001.zip", buf.getvalue()), limits=default_limits(), frames=None, every=1)
    assert [(it.source, it.kind) for it in items] == [("F001.zip", "sequence"), ("F001.zip:Other/a.obj", "scan"),
                                                      ("F001.zip:Other/b.ply", "scan")]


def test_frames_named_by_their_number_alone_are_a_sequence(tmp_path):
    """BP4D's frames may have no extension (read by their content); a folder of them held 'no mesh files'."""
    import trimesh

    from affectvlm.inputs import expand

    task = tmp_path / "F001" / "T1"
    task.mkdir(parents=True)
    members = {}
    for i in range(3):
        m = face_like_mesh(16, smile=i / 2, seed=i, textured=False)
        members[f"{i:04d}"] = trimesh.exchange.obj.export_obj(trimesh.Trimesh(m.vertices, m.faces, process=False)).encode()
        (task / f"{i:04d}").write_bytes(members[f"{i:04d}"])
    (task / "README").write_text("not a frame\n")  # a name without digits is not taken for one
    seq = load_sequence(task, "T1")
    assert seq.frame_ids == [0, 1, 2] and len(seq.frames[2].vertices) == len(m.vertices) > 100
    (tmp_path / "F002").mkdir()  # a file named by a number that is no mesh is not taken for a frame
    for i in range(2):
        (tmp_path / "F002" / f"{i + 1:04d}.obj").write_bytes(members[f"{i:04d}"])
    (tmp_path / "F002" / "3").write_text("notes\n")
    assert load_sequence(tmp_path / "F002").frame_ids == [1, 2]
    from affectvlm.limits import Limits

    items = expand([tmp_path / "F001"], limits=Limits(), frames=None, every=1)
    assert [(it.source, it.kind) for it in items] == [(str(task), "sequence")]


def test_a_subject_folder_given_as_one_sequence_points_to_its_sub_folders(tmp_path):
    for emo in ("Angry", "Happy"):
        (tmp_path / "F001" / emo).mkdir(parents=True)
        for i in range(2):
            write_format(tmp_path / "F001" / emo / f"{i:03d}.ply", face_like_mesh(12, seed=i))
    with pytest.raises(InputError, match=r"its sub-folders \(Angry, Happy\) may each be one"):
        load_sequence(tmp_path / "F001")

