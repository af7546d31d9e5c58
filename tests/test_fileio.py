import pytest

from affectvlm.fileio import atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "out.csv"
    atomic_write_text(p, "a,b\r\n1,2\n")
    assert p.read_bytes() == b"a,b\r\n1,2\n"  # written as-is, no newline translation
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
    assert [f.name for f in tmp_path.iterdir()] == ["out.csv"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "keep.json"
    atomic_write_text(p, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["keep.json"]
