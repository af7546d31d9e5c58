"""Dataset readers on tiny fake trees in the real layouts, and subject-independent splits."""
import re
import struct
from dataclasses import replace

import pytest

from affectvlm.datasets import (declared_class, expand_frames, filter_samples, kfold_split, load_dataset, manifest_split,
                                subject_folds, summarise)
from affectvlm.errors import ConfigError, InputError

EXPR = ["AN", "DI", "FE", "HA", "SA", "SU"]


def make_bu3dfe(root, subjects=("F0001", "M0002", "F0003")):
    for s in subjects:
        d = root / s
        d.mkdir(parents=True)
        (d / f"{s}_NE00WH_F3D.wrl").write_text("#VRML V2.0 utf8\n")
        for e in EXPR:
            for i in range(1, 5):
                (d / f"{s}_{e}0{i}BL_F3D.wrl").write_text("#VRML V2.0 utf8\n")
                (d / f"{s}_{e}0{i}BL_RAW.wrl").write_text("#VRML V2.0 utf8\n")
                (d / f"{s}_{e}0{i}BL_F3D.bmp").write_bytes(b"BM")
    return root


def test_bu3dfe(tmp_path):
    ds = load_dataset(make_bu3dfe(tmp_path), "bu3dfe")
    assert len(ds) == 3 * 25  # _F3D only, neutral included
    assert ds.classes == ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
    s = next(x for x in ds.samples if x.path.endswith("M0002_FE03BL_F3D.wrl"))
    assert (s.label, s.subject, s.intensity, s.sex, s.ethnicity) == ("fear", "M0002", 3, "male", "black")
    neu = [x for x in ds.samples if x.label == "neutral"]
    assert len(neu) == 3 and all(x.intensity == 0 for x in neu)
    kept = filter_samples(ds.samples, intensities=[3, 4])
    assert len(kept) == 3 * 12 and {x.intensity for x in kept} == {3, 4}


def test_bu3dfe_names_in_other_mesh_formats(tmp_path):
    """A converted tree (PLY, OBJ under BU-3DFE's names) reads as the VRML one; beside a VRML scan, the VRML wins."""
    make_bu3dfe(tmp_path)
    for i, p in enumerate(sorted(tmp_path.rglob("*_F3D.wrl"))):
        p.rename(p.with_suffix(".ply" if i % 2 else ".obj"))
    (tmp_path / "F0001" / "F0001_HA04BL_F3D.stl").write_bytes(b"solid x\n")  # a second conversion: one sample
    (tmp_path / "M0002" / "M0002_SU01BL_F3D.wrl").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "F0003" / "F0003_AN02BL_F3D.bnd").write_text("1 2 3\n")  # landmarks are not scans
    ds = load_dataset(tmp_path, "bu3dfe")
    paths = [s.path for s in ds.samples]
    assert len(ds) == 3 * 25 and not any(p.endswith((".bmp", ".bnd")) or "_RAW" in p for p in paths)
    assert sum(p.endswith("M0002_SU01BL_F3D.wrl") for p in paths) == 1
    assert not any("M0002_SU01BL_F3D.ply" in p or "M0002_SU01BL_F3D.obj" in p for p in paths)
    assert sum("F0001_HA04BL_F3D" in p for p in paths) == 1
    s = next(x for x in ds.samples if "M0002_FE03BL_F3D" in x.path)
    assert (s.label, s.subject, s.intensity) == ("fear", "M0002", 3)


@pytest.mark.parametrize("layout", ["bu3dfe", "bu4dfe", "folders"])
def test_a_scan_that_is_a_link_leading_nowhere_is_named_not_dropped(tmp_path, layout):
    """A loop or a dangling link under a scan's name used to vanish from the set without a word."""
    if layout == "bu3dfe":
        make_bu3dfe(tmp_path)
        bad = tmp_path / "F0001" / "F0001_HA04BL_F3D.wrl"
    else:
        bad = tmp_path / ("F001/Happy" if layout == "bu4dfe" else "happy") / "003.wrl"
        bad.parent.mkdir(parents=True)
        (bad.parent / "000.wrl").write_text("#VRML V2.0 utf8\n")
    bad.unlink(missing_ok=True)
    bad.symlink_to(bad.name)  # itself: a loop
    with pytest.raises(InputError, match=f"^{re.escape(str(bad))}: a link that leads nowhere"):
        load_dataset(tmp_path, layout)
    bad.unlink()
    bad.symlink_to("gone.wrl")  # dangling
    with pytest.raises(InputError, match="a link that leads nowhere"):
        load_dataset(tmp_path, layout)
    bad.unlink()
    (bad.parent / "README.txt").symlink_to("gone.txt")  # not named as a scan: not the set's business
    assert len(load_dataset(tmp_path, layout)) >= 1


def test_bu4dfe_keeps_males_skips_tools(tmp_path):
    for subj in ("F001", "M002"):
        for e in ("Angry", "Happy"):
            d = tmp_path / subj / e
            d.mkdir(parents=True)
            for i in (2, 0, 10, 1):
                (d / f"{i:03d}.wrl").write_text("#VRML V2.0 utf8\n")
            (d / "000.bmp").write_bytes(b"BM")
    (tmp_path / "BU_WrlViewer_V2").mkdir()
    (tmp_path / "BU_WrlViewer_V2" / "viewer.wrl").write_text("x")
    ds = load_dataset(tmp_path, "bu4dfe")
    assert {s.subject for s in ds.samples} == {"F001", "M002"}
    assert ds.classes == ["happiness", "anger"]
    s = ds.samples[0]
    assert s.frame_ids == (0, 1, 2, 10) and s.frame_paths[-1].endswith("010.wrl")
    frames = expand_frames(ds.samples, n_frames=2, window=(0.0, 1.0))
    assert len(frames) == 8 and frames[0].path.endswith("000.wrl") and frames[1].path.endswith("010.wrl")
    # one frame is the middle one, not the window's start (a neutral onset in a short sequence)
    seq = replace(s, frame_ids=tuple(range(12)), frame_paths=tuple(f"{i:03d}.wrl" for i in range(12)))
    assert [f.path for f in expand_frames([seq], n_frames=1)] == ["006.wrl"]
    assert [f.path for f in expand_frames([seq], n_frames=1, window=(0.0, 1.0))] == ["006.wrl"]
    assert [f.path for f in expand_frames([replace(seq, frame_ids=(0, 1, 2), frame_paths=("a", "b", "c"))],
                                          n_frames=1)] == ["b"]


def test_bp4d_task_mapping_and_header_sniffing(tmp_path):
    for subj in ("F001", "M003"):
        for t in ("T1", "T4", "T8"):
            d = tmp_path / subj / t
            d.mkdir(parents=True)
            (d / "0001.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
            (d / "0002.wrl").write_text("#VRML V2.0 utf8\n")
            (d / "0003.dat").write_text("#VRML V2.0 utf8\n")  # unknown extension: skipped
            (d / "0004.txt").write_text("AU labels")
    ds = load_dataset(tmp_path, "bp4d")
    assert {s.label for s in ds.samples} == {"happiness", "embarrassment", "disgust"}
    assert ds.classes == ["happiness", "disgust", "embarrassment"]
    assert all(s.frame_ids == (1, 2) for s in ds.samples)
    assert len(load_dataset(tmp_path, "bp4d", tasks=["T1"]).samples) == 2


def _bnt(path):
    name = b"x.png"
    path.write_bytes(struct.pack("<HHdH", 1, 1, -1e9, len(name)) + name + struct.pack("<I", 5) + b"\0" * 40)


def test_bosphorus(tmp_path):
    for s in ("bs000", "bs001"):
        d = tmp_path / s
        d.mkdir()
        for n in ("E_ANGER_0", "E_HAPPY_0", "N_N_0", "N_N_1", "LFAU_9_0", "YR_R10_0", "O_GLASSES_0"):
            _bnt(d / f"{s}_{n}.bnt")
    ds = load_dataset(tmp_path, "bosphorus")
    assert sorted({s.label for s in ds.samples}) == ["anger", "happiness", "neutral"]
    assert len(ds) == 8 and len(ds.skipped) == 6
    assert len(load_dataset(tmp_path, "bosphorus", include_variants=True)) == 14


def test_folders_and_manifest(tmp_path):
    for c in ("Happy", "sad"):
        (tmp_path / "f" / c).mkdir(parents=True)
        for subj in ("s1", "s2"):
            (tmp_path / "f" / c / f"{subj}_{c}.obj").write_text("v 0 0 0\n")
    ds = load_dataset(tmp_path / "f", "folders")
    assert ds.classes == ["happiness", "sadness"] and {s.subject for s in ds.samples} == {"s1", "s2"}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "m" / "manifest.csv").write_text(
        "path,label,subject,intensity,sex,age,split\n"
        "a.obj,Angry,p1,3,F,31,train\na.obj,HA,p2,,male,,test\n")
    ds = load_dataset(tmp_path / "m", "manifest")
    assert [s.label for s in ds.samples] == ["anger", "happiness"]
    assert ds.samples[0].age == 31.0 and ds.samples[0].intensity == 3 and ds.samples[1].intensity is None
    assert ds.samples[0].sex == "female" and ds.samples[1].sex == "male"
    tr, va, te = manifest_split(ds.samples)
    assert [s.subject for s in tr] == ["p1"] and va == [] and [s.subject for s in te] == ["p2"]
    (tmp_path / "m" / "manifest.csv").write_text("path,label\na.obj,Angry\n")
    with pytest.raises(InputError, match="subject"):
        load_dataset(tmp_path / "m", "manifest")
    (tmp_path / "m" / "manifest.csv").write_text("path,label,subject,split\na.obj,HA,p1,train\na.obj,HA,p1,test\n")
    with pytest.raises(ConfigError, match="both"):
        manifest_split(load_dataset(tmp_path / "m", "manifest").samples)


@pytest.mark.parametrize("content, says", [
    (b"path,label,subject\nmissing.obj,HA,p1\n", "line 2: missing.obj: file not found"),
    (b"path,label,subject,intensity\na.obj,HA,p1,inf\n", "line 2: intensity and age must be finite"),
    (b"path,label,subject,intensity\na.obj,HA,p1,nan\n", "line 2: intensity and age must be finite"),
    # Python 3.11's csv reads a NUL into the field; 3.10's refuses the row
    (b"path,label,subject\nx\0y,HA,p1\n", "line 2: the path holds a NUL character|line contains NUL"),
    (b"path,label,subject\n" + b"a" * 5000 + b".obj,HA,p1\n", "line 2: " + "a" * 200 + "...: File name too long"),
    (b"path,label,subject\na.obj,HA," + b"x" * 140_000 + b"\n", "not a readable CSV row"),
    (bytes(range(128, 256)) * 8, "not UTF-8 text"),
])
def test_a_bad_manifest_row_is_one_error_naming_the_csv_and_line(tmp_path, content, says):
    (tmp_path / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "manifest.csv").write_bytes(content)
    with pytest.raises(InputError, match="|".join(map(re.escape, says.split("|")))) as e:
        load_dataset(tmp_path / "manifest.csv", "manifest")
    assert str(e.value).startswith(str(tmp_path / "manifest.csv"))


def test_a_manifest_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Spreadsheets' "CSV UTF-8" starts the file with a BOM, which would otherwise stick to the first column's name."""
    (tmp_path / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "manifest.csv").write_bytes("\ufeffpath,label,subject\na.obj,HA,p1\n".encode())
    assert [s.subject for s in load_dataset(tmp_path / "manifest.csv", "manifest").samples] == ["p1"]


def test_bad_layout_and_root(tmp_path):
    with pytest.raises(ConfigError):
        load_dataset(tmp_path, "nope")
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing", "bu3dfe")
    with pytest.raises(InputError, match="no samples"):
        load_dataset(tmp_path, "bu3dfe")


def test_kfold_subject_independent_and_deterministic(tmp_path):
    subs = [f"{'F' if i % 2 else 'M'}{i:04d}" for i in range(23)]
    ds = load_dataset(make_bu3dfe(tmp_path, subs), "bu3dfe")
    seen_test = set()
    for fold in range(10):
        tr, te = kfold_split(ds.samples, 10, fold, seed=1)
        assert not ({s.subject for s in tr} & {s.subject for s in te})  # no subject in both
        assert len(tr) + len(te) == len(ds)
        seen_test |= {s.subject for s in te}
    assert seen_test == set(subs)  # every subject is tested exactly in one fold
    assert subject_folds(subs, 10, 1) == subject_folds(list(reversed(subs)), 10, 1)
    assert subject_folds(subs, 10, 1) != subject_folds(subs, 10, 2)
    with pytest.raises(ConfigError):
        kfold_split(ds.samples, 10, 10)
    with pytest.raises(ConfigError):
        subject_folds(["a", "b"], 10)


def test_summarise(tmp_path):
    ds = load_dataset(make_bu3dfe(tmp_path, ["F0001"]), "bu3dfe")
    s = summarise(ds.samples)
    assert s["n_samples"] == 25 and s["n_subjects"] == 1 and s["per_class"]["anger"] == 4
    assert s["per_intensity"]["0"] == 1 and any("subject-independent" in w for w in s["warnings"])


def test_manifest_family_and_face_model_columns_give_per_group_accuracy(tmp_path):
    """A corpus manifest's family and face_model columns reach the samples, and eval reports accuracy per value."""
    from affectvlm.train.evaluate import per_group

    (tmp_path / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "manifest.csv").write_text(
        "path,label,subject,intensity,family,face_model\n"
        "a.obj,HA,p1,4,recipes,ict-facekit\na.obj,SA,p1,3,emfacs,ict-facekit\n"
        "a.obj,HA,p2,4,recipes,rocketbox-x\na.obj,SA,p2,,,\n")
    s = load_dataset(tmp_path, "manifest").samples
    assert [x.family for x in s] == ["recipes", "emfacs", "recipes", None]
    assert [x.face_model for x in s] == ["ict-facekit", "ict-facekit", "rocketbox-x", None]
    y_true, y_pred = [0, 1, 0, 1], [0, 1, 1, 0]
    assert per_group(s, y_true, y_pred, "face_model") == {"ict-facekit": {"n": 2, "accuracy": 1.0},
                                                         "rocketbox-x": {"n": 1, "accuracy": 0.0}}
    assert per_group(s, y_true, y_pred, "family") == {"emfacs": {"n": 1, "accuracy": 1.0},
                                                     "recipes": {"n": 2, "accuracy": 0.5}}
    assert list(per_group(s, y_true, y_pred, "intensity")) == ["3", "4"]


def test_auto_tells_each_layout_from_its_names(tmp_path):
    from affectvlm.datasets import detect_layout

    def tree(name, files):
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    vrml, obj = "#VRML V2.0 utf8\n", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    bu3 = make_bu3dfe(tmp_path / "bu3")
    (bu3 / "manifest.csv").write_text("path,label,subject\nx,HA,p\n")  # our synth trees carry one: names win
    cases = {
        "bu3dfe": bu3,
        "bu4dfe": tree("bu4", {"F001/Happy/000.wrl": vrml, "M002/Angry/000.wrl": vrml,
                               "BU_WrlViewer_V2/viewer.wrl": "x"}),
        "bp4d": tree("bp4", {"F001/T1/0001.obj": obj, "M003/T8/0001.obj": obj}),
        "folders": tree("fold", {"Happy/s1_a.obj": obj, "sad/s2_b.obj": obj}),
        "manifest": tree("man", {"a.obj": obj, "manifest.csv": "path,label,subject\na.obj,HA,p1\n"}),
    }
    bos = tmp_path / "bos" / "bs000"
    bos.mkdir(parents=True)
    _bnt(bos / "bs000_E_HAPPY_0.bnt")
    cases["bosphorus"] = tmp_path / "bos"
    for layout, root in cases.items():
        assert detect_layout(root) == layout, root
        assert load_dataset(root, "auto").layout == layout
    assert detect_layout(cases["manifest"] / "manifest.csv") == "manifest"
    other = tree("other", {"x/y.obj": obj, "notes.txt": "x"})
    with pytest.raises(InputError, match="--layout") as e:
        detect_layout(other)
    assert str(other) in str(e.value)
    with pytest.raises(InputError, match="folder or a manifest CSV"):
        detect_layout(other / "notes.txt")
    # a parent of a dataset (one level too high): the error names the folder to pass
    parent = tmp_path / "downloads"
    parent.mkdir()
    (parent / "BU-3DFE").symlink_to(bu3, target_is_directory=True)
    with pytest.raises(InputError, match=r"holds a bu3dfe tree: pass --data .*BU-3DFE") as e:
        load_dataset(parent, "auto")
    assert str(parent) in str(e.value)
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing", "auto")


def test_declared_class_agrees_with_each_readers_labels(tmp_path):
    make_bu3dfe(tmp_path / "bu3")
    for subj in ("F001", "M002"):
        for e in ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"):
            (tmp_path / "bu4" / subj / e).mkdir(parents=True)
            (tmp_path / "bu4" / subj / e / "000.wrl").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "bos" / "bs000").mkdir(parents=True)
    for n in ("E_ANGER_0", "E_HAPPY_0", "E_SADNESS_0", "N_N_0"):
        _bnt(tmp_path / "bos" / "bs000" / f"bs000_{n}.bnt")
    for cls in ("happy", "Sad", "fear", "neutral"):
        (tmp_path / "fold" / cls).mkdir(parents=True)
        (tmp_path / "fold" / cls / f"s1_{cls}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    for root, layout in (("bu3", "bu3dfe"), ("bu4", "bu4dfe"), ("bos", "bosphorus"), ("fold", "folders")):
        samples = load_dataset(tmp_path / root, layout).samples
        assert len({s.label for s in samples}) >= 4
        assert [declared_class(s.path) for s in samples] == [s.label for s in samples]
    assert declared_class("set.zip:F001/Happy") == "happiness"
    assert declared_class("/d/F001.zip:Happy") == "happiness"  # a subject zipped on its own
    assert declared_class("/d/F001.ZIP:Happy") == "happiness" and declared_class("SET.Zip:F001/Sad") == "sadness"
    assert declared_class("C:\\data\\M0003_SU04AE_F3D.wrl") == "surprise"
    # names that say nothing of the expression, or not one of ours
    for name in ("scans/0.obj", "F001/Pain", "bs000/bs000_LFAU_9_0.bnt", "bs000_O_GLASSES_0.bnt", "Happy", "",
                 "T1/0001.obj", "F0001_XX03WH_F3D.wrl", "cache/fe/1a2b.npz", "pain/s1.obj"):
        assert declared_class(name) is None, name


def test_macos_litter_hidden_files_and_upper_case_extensions_in_the_layouts(tmp_path):
    """A tree copied from a Mac has a '._000.wrl' beside every frame and a __MACOSX folder: BU-4DFE read them as
    frames, the folders layout as a class 'macosx'; Bosphorus's upper-case .BNT files went missing."""
    d = tmp_path / "4d" / "F001" / "Happy"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i:03d}.wrl").write_text("#VRML V2.0 utf8\n")
        (d / f"._{i:03d}.wrl").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    s = load_dataset(tmp_path / "4d", "bu4dfe").samples[0]
    assert s.frame_ids == (0, 1, 2) and not any("/._" in p for p in s.frame_paths)
    (d / "001.obj").write_text("v 0 0 0\n")  # a converted copy beside the original: which is frame 1?
    with pytest.raises(InputError, match="two files for frame 1"):
        load_dataset(tmp_path / "4d", "bu4dfe")
    for sub in ("happy", "__MACOSX/happy", "happy/.thumbs"):
        (tmp_path / "f" / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "f" / "happy" / "s01_a.obj").write_text("v 0 0 0\n")
    for junk in ("happy/._s01_a.obj", "__MACOSX/happy/._s01_a.obj", "happy/.thumbs/s09_x.obj"):
        (tmp_path / "f" / junk).write_text("x")
    ds = load_dataset(tmp_path / "f", "folders")
    assert ds.classes == ["happiness"] and [x.path for x in ds.samples] == [str(tmp_path / "f/happy/s01_a.obj")]
    b = tmp_path / "bos" / "bs000"
    b.mkdir(parents=True)
    _bnt(b / "bs000_E_ANGER_0.BNT")
    _bnt(b / "bs000_N_N_0.bnt")
    _bnt(b / "._bs000_N_N_0.bnt")
    assert sorted(x.label for x in load_dataset(tmp_path / "bos", "bosphorus").samples) == ["anger", "neutral"]


def test_bp4d_frames_that_start_with_a_blank_line_are_frames(tmp_path):
    """The frame sniffer wanted '#VRML' as the very first bytes; the mesh reader reads such files."""
    d = tmp_path / "F001" / "T1"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i:04d}.wrl").write_text("\n\n#VRML V2.0 utf8\n")
    s = load_dataset(tmp_path, "bp4d").samples
    assert len(s) == 1 and s[0].frame_ids == (0, 1, 2)


def test_one_bu4dfe_subject_given_as_the_dataset_is_refused_not_split_by_frame(tmp_path):
    """F001/ alone was read by the folders layout, its frame numbers taken for subjects: frames of one sequence
    landed in train and test."""
    for emo in ("Happy", "Sad"):
        for i in range(3):
            (tmp_path / "F001" / emo).mkdir(parents=True, exist_ok=True)
            (tmp_path / "F001" / emo / f"{i:03d}.wrl").write_text("#VRML V2.0 utf8\n")
    for layout in ("auto", "folders", "bu4dfe"):
        with pytest.raises(InputError, match="this is one 4D subject"):
            load_dataset(tmp_path / "F001", layout)
    assert len(load_dataset(tmp_path, "auto").samples) == 2


def test_a_bu4dfe_tree_says_what_it_leaves_out(tmp_path):
    """A zipped subject and an expression folder without frames were left out without a word."""
    import zipfile

    for subj, emos in (("F001", ("Happy", "Sad")), ("F002", ("Happy", "Fear"))):
        for emo in emos:
            (tmp_path / subj / emo).mkdir(parents=True)
            if (subj, emo) != ("F002", "Fear"):
                (tmp_path / subj / emo / "000.wrl").write_text("#VRML V2.0 utf8\n")
    with zipfile.ZipFile(tmp_path / "M001.zip", "w") as z:
        z.writestr("Happy/000.wrl", "#VRML V2.0 utf8\n")
    ds = load_dataset(tmp_path, "bu4dfe")
    assert len(ds.samples) == 3
    assert any(n.startswith("M001.zip: zips are not read here") for n in ds.notes), ds.notes
    assert any(n.startswith("F002/Fear: no frames") for n in ds.notes), ds.notes


def test_zips_and_number_named_files_are_said(tmp_path):
    """A tree of zipped subjects only said 'cannot tell the dataset's layout'; a zip beside its own unzipped folder was
    said to be left out; files named by numbers alone in the folders layout became subjects without a word; a
    manifest row naming an empty folder ended in a traceback."""
    import zipfile

    (tmp_path / "z").mkdir()
    with zipfile.ZipFile(tmp_path / "z" / "F001.zip", "w") as z:
        z.writestr("Happy/000.wrl", "#VRML V2.0 utf8\n")
    with pytest.raises(InputError, match=r"zips are not read as datasets \(F001.zip\): unzip them"):
        load_dataset(tmp_path / "z", "auto")
    for emo in ("Happy", "Sad"):
        (tmp_path / "z" / "F001" / emo).mkdir(parents=True)
        (tmp_path / "z" / "F001" / emo / "000.wrl").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "z" / "F001" / "__MACOSX").mkdir()
    assert load_dataset(tmp_path / "z", "bu4dfe").notes == []  # the folder beside the zip is read
    for emo in ("happy", "sad"):
        (tmp_path / "f" / "F001_unzipped" / emo).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "f" / "F001_unzipped" / emo / f"{i:03d}.wrl").write_text("#VRML V2.0 utf8\n")
    ds = load_dataset(tmp_path / "f" / "F001_unzipped", "folders")
    assert len(ds.notes) == 1 and "every file is named by a number alone" in ds.notes[0]
    (tmp_path / "m" / "empty").mkdir(parents=True)
    (tmp_path / "m" / "manifest.csv").write_text("path,label,subject\nempty,happiness,S1\n")
    with pytest.raises(InputError, match="line 2: empty: a sequence folder without frames"):
        load_dataset(tmp_path / "m", "manifest")


def test_the_training_page_shows_what_the_data_leaves_out(tmp_path):
    from affectvlm.app.trainform import summarise_dataset

    for subj in ("F001", "F002"):
        for emo in ("Happy", "Sad"):
            (tmp_path / subj / emo).mkdir(parents=True)
            (tmp_path / subj / emo / "000.wrl").write_text("#VRML V2.0 utf8\n")
    (tmp_path / "M001.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    assert any(w.startswith("M001.zip: zips are not read here") for w in summarise_dataset(str(tmp_path), "bu4dfe")[
        "warnings"])
