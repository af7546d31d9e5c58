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


def test_inside_resolves_links_and_dot_dot_and_is_not_fooled_by_a_shared_prefix(tmp_path):
    from affectvlm.fileio import inside

    root, sibling = tmp_path / "data", tmp_path / "data2"
    (root / "a").mkdir(parents=True)
    sibling.mkdir()
    (root / "out").symlink_to(sibling)
    assert inside(root / "a" / "x.obj", [root]) and inside(root, [root])
    assert not inside(sibling / "x.obj", [root])  # "data2" starts with "data" but is not under it
    assert not inside(root / "out" / "x.obj", [root])  # a link that leaves the root
    assert not inside(root / ".." / "data2", [root])
    assert inside(root / "out" / "x.obj", [tmp_path / "nothere", sibling])
