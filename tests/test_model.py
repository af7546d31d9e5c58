"""AffectVLM model: zero-shot scoring, fusion, checkpoints and model specs (offline, tiny random-init model)."""
import json
import os
import time

import pytest
import torch

from affectvlm.errors import ConfigError, InputError, ModelError
from affectvlm.model import AffectVLM, load_model, parse_spec, save_checkpoint
from affectvlm.model import specs as S
from affectvlm.prompts import DEFAULT_CLASSES

ARCH = "AffectVLM-Test"


@pytest.fixture(scope="module")
def model() -> AffectVLM:
    return load_model(ARCH, cache=False)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 3, 224, 224, generator=g)


def test_zero_shot_probabilities(model, images):
    p = model.predict_proba(images)
    assert p.shape == (2, len(DEFAULT_CLASSES))
    assert torch.allclose(p.sum(1), torch.ones(2), atol=1e-5) and (p > 0).all()
    assert model.classes == DEFAULT_CLASSES
    assert model.provenance["trained"] is False and model.spec == ARCH
    z = model.encode_views(images)
    assert z.shape == (2, 3, model.embed_dim)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    # renderer output of another size is resized inside
    small = torch.nn.functional.interpolate(images.flatten(0, 1), size=112).view(2, 3, 3, 112, 112)
    assert model.predict_proba(small).shape == (2, 7)
    with pytest.raises(InputError, match="shape"):
        model.encode_views(torch.rand(2, 3, 1, 224, 224))


def test_mean_fusion_is_the_normalised_mean_and_view_order_free(model, images):
    z = model.encode_views(images)
    fused = model.fuse(z)
    ref = torch.nn.functional.normalize(z.mean(1), dim=-1)
    assert torch.allclose(fused, ref, atol=1e-6)
    perm = model.predict_proba(images[:, [2, 0, 1]])
    assert torch.allclose(perm, model.predict_proba(images), atol=1e-5)
    model.mirror = False
    try:
        logits = model(images)
    finally:
        model.mirror = True
    cos = fused @ model.classifier.T
    assert torch.allclose(logits, model.clip.logit_scale.exp() * cos, atol=1e-4)


def test_eval_mode_averages_a_scan_with_its_mirror_image(model, images):
    from affectvlm.render import View
    from affectvlm.render.mirror import mirror_images

    views = model.render.views
    assert [v.yaw for v in views] == [0, -30, 30]
    flipped = mirror_images(images, views)
    assert torch.equal(flipped[:, 1], images[:, 2].flip(-1)) and torch.equal(flipped[:, 0], images[:, 0].flip(-1))
    assert torch.equal(mirror_images(flipped, views), images)
    fused, z = model.embed(images)
    want = torch.nn.functional.normalize(model.fuse(z) + model.fuse(model.encode_views(flipped)), dim=-1)
    assert torch.allclose(fused, want, atol=1e-6) and not torch.allclose(fused, model.fuse(z), atol=1e-3)
    # the scan and its mirror image get the same scores
    assert torch.allclose(model.predict_proba(flipped), model.predict_proba(images), atol=1e-5)
    # a view set without a mirror, or training mode: the plain fusion
    lone = (View(0), View(30), View(45))
    assert mirror_images(images, lone) is None
    assert torch.allclose(model.embed(images, lone)[0], model.fuse(z), atol=1e-6)
    model.train()
    try:
        assert torch.allclose(model.embed(images)[0], model.fuse(z), atol=1e-6)
    finally:
        model.eval()
    # normal maps: the mirrored face's normals point the other way in x (background stays 0)
    nm = torch.zeros(1, 3, 3, 4, 4)
    nm[..., 0, :, :2], nm[..., 2, :, :2] = 0.8, 0.9
    out = mirror_images(nm, views, "normal")
    assert torch.allclose(out[..., 0, :, 2:], torch.full((1, 3, 4, 2), 0.2)) and (out[..., 0, :, :2] == 0).all()


def test_classes_can_be_changed(images):
    m = load_model(ARCH, cache=False)
    before = m.classifier.clone()
    m.set_classes(["pain", "happy", "calm"])
    assert m.classes == ("pain", "happy", "calm")
    assert m.predict_proba(images).shape == (2, 3)
    assert m.classifier.shape[0] == 3 and not torch.equal(m.classifier[1], before[0])
    # "happy" borrows happiness' synonyms, so it matches the default happiness embedding
    assert torch.allclose(m.classifier[1], before[1], atol=1e-6)
    with pytest.raises(ConfigError):
        m.set_classes(["only-one"])
    m2 = load_model(ARCH, cache=False, classes="a,b", prompts=["a 3D scan of a {} face"])
    assert m2.classes == ("a", "b") and m2.prompts.noun_templates == ()


def test_attention_fusion_starts_as_mean_and_gets_gradients(images):
    m = load_model(ARCH, fusion="attention", cache=False)
    assert m.attention is not None
    z = m.encode_views(images)
    assert torch.allclose(m.fuse(z), torch.nn.functional.normalize(z.mean(1), dim=-1), atol=1e-6)
    m.train()
    loss = torch.nn.functional.cross_entropy(m(images), torch.tensor([1, 4]))
    loss.backward()
    grads = [p.grad for p in m.attention.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert m.clip.visual.conv1.weight.grad is not None and m.clip.visual.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="fusion"):
        load_model(ARCH, fusion="max", cache=False)


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_round_trip_is_bit_identical(tmp_path, images):
    import open_clip

    m = load_model(ARCH, fusion="attention", cache=False, classes=["x", "y", "z"])
    with torch.no_grad():  # make the attention non-trivial so its file matters
        for p in m.attention.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        m.clip.logit_scale.fill_(2.0)
    folder = save_checkpoint(m, tmp_path / "ck", extra={"epoch": 3, "val_accuracy": 0.5})
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["affectvlm.json", "fusion.safetensors", "open_clip_config.json", "open_clip_model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    meta = json.loads((folder / "affectvlm.json").read_text())
    assert meta["classes"] == ["x", "y", "z"] and meta["fusion"] == "attention"
    assert meta["provenance"]["extra"]["epoch"] == 3 and meta["provenance"]["trained"] is True
    back = load_model(str(folder), cache=False)
    assert _states_equal(back, m) and back.classes == m.classes and back.fusion == "attention"
    assert torch.equal(back.predict_proba(images), m.predict_proba(images))
    assert back.render.to_dict() == m.render.to_dict() and back.prompts == m.prompts
    # plain open_clip loads the folder too
    oc, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(folder))
    assert _states_equal(oc, m.clip)
    # saving again over it replaces the folder atomically
    m.set_classes(["x", "y"])
    save_checkpoint(m, folder)
    assert load_model(str(folder), cache=False).classes == ("x", "y")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fp16_checkpoint_is_smaller_and_close(tmp_path, model, images):
    f32 = save_checkpoint(model, tmp_path / "a")
    f16 = save_checkpoint(model, tmp_path / "b", dtype="fp16")
    s32 = (f32 / "open_clip_model.safetensors").stat().st_size
    s16 = (f16 / "open_clip_model.safetensors").stat().st_size
    assert s16 < 0.6 * s32
    back = load_model(str(f16), cache=False)
    assert torch.allclose(back.predict_proba(images), model.predict_proba(images), atol=2e-3)


def test_weight_file_specs(tmp_path, model, images):
    from safetensors.torch import save_file

    w = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(w))
    m = load_model(f"{ARCH}@{w}", cache=False)
    assert _states_equal(m.clip, model.clip)
    # a weights file with open_clip_config.json beside it (but no affectvlm.json)
    folder = save_checkpoint(model, tmp_path / "ck")
    (folder / "affectvlm.json").unlink()
    assert parse_spec(str(folder / "open_clip_model.safetensors")).kind == "file"
    assert parse_spec(str(folder)).kind == "local-dir"
    assert parse_spec("local-dir:" + str(folder)).kind == "local-dir"
    for spec in (str(folder / "open_clip_model.safetensors"), "local-dir:" + str(folder)):
        assert _states_equal(load_model(spec, cache=False).clip, model.clip)
    # the config without weights open_clip reads: one error, not a random model that says it is trained
    (folder / "open_clip_model.safetensors").rename(folder / "weights.pt")
    for spec in (str(folder), "local-dir:" + str(folder)):
        with pytest.raises(ModelError, match=r"no weights file beside open_clip_config.json .*weights.pt: pass it as"):
            load_model(spec, cache=False)


def test_pickled_weights_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.bin"
    torch.save({"x": Evil()}, p)
    with pytest.raises(ModelError, match="unpickling|refused|cannot load"):
        load_model(f"{ARCH}@{p}", cache=False)


@pytest.mark.parametrize("spec,match", [
    ("NoSuchNet", "unknown model spec"),
    ("ViT-B-32:nope", "unknown pretrained tag"),
    ("NoSuchNet:openai", "unknown architecture"),
    ("/no/such/file.safetensors", "not found"),
    (f"{ARCH}@/no/such/w.safetensors", "not found"),
    ("NoSuchNet@/no/such/w.safetensors", "unknown architecture 'NoSuchNet' before '@'"),
    ("ViT-B-3@w.safetensors", "Did you mean ViT-B-32"),
    ("local-dir:/no/such/dir", "not found"),
    ("hf-hub:", "hf-hub:org/repo"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ModelError, match=match):
        load_model(spec)


def test_bad_files_and_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="neither"):
        load_model(str(tmp_path / "empty"))
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(b"not really")
    with pytest.raises(ModelError, match="NAME@"):
        load_model(str(lone))
    with pytest.raises(ModelError, match="cannot load|weights"):
        load_model(f"{ARCH}@{lone}")
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(ModelError, match="not a model file"):
        load_model(str(txt))
    bad = tmp_path / "badck"
    bad.mkdir()
    (bad / "affectvlm.json").write_text("{")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(str(bad))


def test_default_model_missing_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("AFFECTVLM_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(S, "default_model_candidates", lambda: [tmp_path / "weights" / "affectvlm-default"])
    with pytest.raises(ModelError, match="default model is not installed") as e:
        load_model(None)
    assert "AFFECTVLM_DEFAULT_MODEL" in str(e.value) and "--model" in str(e.value)
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", ARCH)
    assert load_model("default").arch == ARCH
    monkeypatch.setenv("AFFECTVLM_DEFAULT_MODEL", str(tmp_path / "gone"))
    with pytest.raises(ModelError, match="AFFECTVLM_DEFAULT_MODEL"):
        load_model(None)


def test_default_model_folder_is_found(monkeypatch, tmp_path, model):
    monkeypatch.delenv("AFFECTVLM_DEFAULT_MODEL", raising=False)
    target = tmp_path / "weights" / "affectvlm-default"
    save_checkpoint(model, target)
    monkeypatch.setattr(S, "default_model_candidates", lambda: [target])
    m = load_model(None, cache=False)
    assert m.spec == "default" and _states_equal(m.clip, model.clip)


def test_offline_pretrained_fails_fast_with_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AFFECTVLM_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as e:
        load_model("ViT-B-32:openai", cache=False)
    assert time.perf_counter() - t0 < 30
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "by hand" in msg and "ViT-B-32@" in msg and "local-dir:" in msg
    assert "\n" not in msg


def test_cache_and_deterministic_random_init(images):
    a = load_model(ARCH)
    assert load_model(ARCH) is a
    assert load_model(ARCH, classes=["p", "q"]) is not a
    b = load_model(ARCH, cache=False)
    assert b is not a and _states_equal(a, b)  # random init is seeded: the same model every time


def test_device_errors():
    with pytest.raises(ConfigError, match="device"):
        load_model(ARCH, device="gpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            load_model(ARCH, device="cuda")


def test_tiny_config_size():
    import open_clip

    S.register_configs()
    cfg = open_clip.get_model_config("AffectVLM-Tiny")
    m = open_clip.create_model("AffectVLM-Tiny")
    n = sum(p.numel() for p in m.parameters())
    assert cfg["embed_dim"] > 0 and n * 4 <= 25e6  # fits in 25 MB even as float32


def test_training_run_folder_resolves_to_its_best_checkpoint(tmp_path, model):
    run = tmp_path / "run"
    save_checkpoint(model, run / "best", extra={"epoch": 1})
    spec = parse_spec(str(run))
    assert spec.kind == "checkpoint" and spec.path == str((run / "best").resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="training run"):
        parse_spec(str(tmp_path / "empty"))


def test_checkpoint_files_are_readable_by_others(tmp_path, model):
    folder = save_checkpoint(model, tmp_path / "ck")
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o044 == 0o044, f


def test_describe_provenance_says_trained_or_untrained(tmp_path, model):
    from affectvlm.model import describe_provenance

    assert "untrained" in describe_provenance(load_model("AffectVLM-Test").provenance)
    folder = save_checkpoint(model, tmp_path / "ck", extra={"epoch": 3, "val_accuracy": 0.5,
                                                           "data_note": "SYNTHETIC faces"})
    text = describe_provenance(load_model(str(folder), cache=False).provenance)
    assert "fine-tuned from" in text and "SYNTHETIC faces" in text and "0.500" in text
    assert "untrained" not in text


# ------------------------------------------------------------------------------------------------ caches

@pytest.fixture(scope="module")
def trained() -> AffectVLM:
    """AffectVLM-Test with weights no random init gives (so a load that skips the weights is caught)."""
    m = load_model(ARCH, cache=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.clip.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    m.refresh_classifier()
    return m


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in use by this process (offline, as conftest sets)."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("AFFECTVLM_CACHE", raising=False)
    return cache


def test_hf_hub_spec_loads_from_the_hugging_face_cache_offline(hub_cache, trained, images):
    from hubcache import add_hub_repo

    add_hub_repo(hub_cache, "org/tiny", trained)
    m = load_model("hf-hub:org/tiny", cache=False)
    assert _states_equal(m.clip, trained.clip) and m.provenance["trained"]
    assert torch.allclose(m.predict_proba(images), trained.predict_proba(images), atol=1e-5)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE") as e:
        load_model("hf-hub:org/absent", cache=False)
    assert "\n" not in str(e.value) and "affectvlm download hf-hub:org/absent" in str(e.value)
    add_hub_repo(hub_cache, "org/noweights", trained, weights=False)  # never a silent random init
    with pytest.raises(ModelError, match="cannot download"):
        load_model("hf-hub:org/noweights", cache=False)


def test_pretrained_tag_loads_through_open_clips_cache(hub_cache, trained, monkeypatch, images):
    """A pretrained tag hosted on the Hub (as nearly all of open_clip's are) is read from the HF cache."""
    import open_clip.pretrained as op

    from hubcache import add_hub_repo

    monkeypatch.setitem(op._PRETRAINED, ARCH, {"fake": op._pcfg(hf_hub="org/tiny-tag/")})
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        load_model(f"{ARCH}:fake", cache=False)
    add_hub_repo(hub_cache, "org/tiny-tag", trained)
    m = load_model(f"{ARCH}:fake", cache=False)
    assert _states_equal(m.clip, trained.clip)


def test_affectvlm_cache_is_only_an_explicit_override(hub_cache, tmp_path, trained, monkeypatch):
    from hubcache import add_hub_repo

    add_hub_repo(hub_cache, "org/tiny", trained)
    own = tmp_path / "own"
    monkeypatch.setenv("AFFECTVLM_CACHE", str(own))
    with pytest.raises(ModelError, match="AFFECTVLM_CACHE"):  # the override is used, not the HF cache
        load_model("hf-hub:org/tiny", cache=False)
    add_hub_repo(own, "org/tiny", trained)
    assert _states_equal(load_model("hf-hub:org/tiny", cache=False).clip, trained.clip)


# ------------------------------------------------------------------------------------------------ devices

def test_resolve_device_auto_picks_cuda_when_present(monkeypatch):
    from affectvlm.model import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1) == resolve_device("CUDA:1", local_rank=0)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device 2"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MPS"):
        resolve_device("mps")
    for bad in ("gpu-ish", "meta"):
        with pytest.raises(ConfigError, match="device"):
            resolve_device(bad)


def test_load_model_device_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_model(ARCH, device="auto").device == torch.device("cpu")
    assert load_model(ARCH) is load_model(ARCH, device="cpu")  # "auto" resolves before the cache key


def test_url_only_pretrained_tag_uses_open_clips_own_cache(hub_cache, trained, monkeypatch, tmp_path):
    """A tag open_clip fetches from a plain URL is read from open_clip's cache (~/.cache/clip)."""
    import open_clip.pretrained as op
    from safetensors.torch import save_file

    from affectvlm.model import caches, catalog

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(op._PRETRAINED, ARCH, {"web": op._pcfg(url="https://example.org/w/tiny-web.safetensors")})
    spec = parse_spec(f"{ARCH}:web")
    assert not catalog.is_available(spec)
    target = tmp_path / "home" / ".cache" / "clip" / "tiny-web.safetensors"
    assert caches.url_cache_dir() == target.parent
    target.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in trained.clip.state_dict().items()}, str(target))
    assert catalog.is_available(spec)
    assert _states_equal(load_model(f"{ARCH}:web", cache=False).clip, trained.clip)


def test_untrained_models_built_in_parallel_are_the_same_model():
    """The seeded build used the process's generator unguarded: four threads got four different 'same' models."""
    import threading

    serial = load_model(ARCH, cache=False)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(load_model(ARCH, cache=False))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(got) == 4 and all(_states_equal(m.clip, serial.clip) for m in got)


def test_a_checkpoint_replaced_while_it_is_read_is_never_loaded_half_old_half_new(tmp_path):
    """A trainer re-saves best/ while the app loads it: the classes of one save with the weights of the other were
    loaded (about one load in ten here). Now a load sees one save whole, or says the folder kept changing."""
    import hashlib
    import threading
    import time

    a = load_model(ARCH, cache=False)
    b = load_model(ARCH, classes=["joy", "rage", "calm"], cache=False)
    with torch.no_grad():
        for p in b.clip.parameters():
            p.add_(0.5)
    folder = tmp_path / "best"
    save_checkpoint(a, folder)
    stop = threading.Event()

    def sig(m) -> str:
        return hashlib.sha1(next(iter(m.clip.state_dict().values())).numpy().tobytes()).hexdigest()

    whole = {(sig(a), len(a.classes)), (sig(b), len(b.classes))}

    def writer() -> None:
        i = 0
        while not stop.is_set():
            save_checkpoint(a if i % 2 else b, folder)
            i += 1
            time.sleep(0.3)

    t = threading.Thread(target=writer)
    t.start()
    loaded, end = [], time.monotonic() + 6
    try:  # 6 s of racing, longer on a busy machine until a few loads got through (each may say "kept changing")
        while time.monotonic() < end or (len(loaded) < 3 and time.monotonic() < end + 60):
            try:
                m = load_model(str(folder), cache=False)
            except ModelError:  # said, not loaded wrong
                continue
            loaded.append((sig(m), len(m.classes)))
    finally:
        stop.set()
        t.join()
    assert loaded and set(loaded) <= whole, set(loaded) - whole


@pytest.mark.parametrize("key, value", [("classes", {"a": 1, "b": 2}), ("classes", [["a"], ["b"]]), ("classes", 5),
                                        ("format_version", "one"), ("provenance", "xyz"), ("fusion", 3)])
def test_checkpoint_metadata_of_the_wrong_type_is_one_error_naming_the_field(tmp_path, model, key, value):
    """A dict of classes loaded as its keys, nested lists as their reprs; other types gave errors not naming the
    file or the field."""
    import json

    folder = save_checkpoint(model, tmp_path / "ck")
    meta = json.loads((folder / "affectvlm.json").read_text())
    meta[key] = value
    (folder / "affectvlm.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=f"affectvlm.json: '{key}' must be"):
        load_model(str(folder), cache=False)


def test_overlapping_hub_blocks_leave_the_hub_client_as_they_found_it(monkeypatch):
    """Two threads' downloads overlap without a network: the client's offline switch is back when both end."""
    import huggingface_hub.constants as hc

    from affectvlm.model import caches

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(caches, "_host_unreachable", lambda timeout=3.0: True)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    a, b = caches.HubAccess(quiet=False), caches.HubAccess(quiet=False)  # (quieting is per thread: these share one)
    a.__enter__()
    b.__enter__()
    assert hc.HF_HUB_OFFLINE is True and a.offline and b.offline
    a.__exit__(None, None, None)
    assert hc.HF_HUB_OFFLINE is True  # b still downloads offline
    b.__exit__(None, None, None)
    assert hc.HF_HUB_OFFLINE is False


def test_threads_asking_for_one_model_at_once_share_one_build(monkeypatch):
    """The app's first visitors each built their own copy of the model (only the last was kept)."""
    import threading

    from affectvlm.model import clear_cache

    built: list = []
    real = S._build_steady

    def slow_build(*a, **kw):
        time.sleep(0.5)
        m = real(*a, **kw)
        built.append(m)
        return m

    monkeypatch.setattr(S, "_build_steady", slow_build)
    clear_cache()
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(load_model(ARCH, classes="a,b"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(got) == 3 and len(built) == 1 and all(m is built[0] for m in got)
    assert not S._BUILDING
    clear_cache()
