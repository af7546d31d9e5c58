"""AffectVLM model: multiview CLIP classifier, model specs, checkpoints.

    from affectvlm.model import load_model, save_checkpoint
    model = load_model("AffectVLM-Test")            # or None (embedded default), "ViT-B-32:openai", a folder...
    probs = model.predict_proba(images)              # images: (B, V, 3, H, W) in [0, 1] from render_views
"""
from affectvlm.model.checkpoint import describe_provenance, read_meta, save_checkpoint
from affectvlm.model.core import FUSIONS, AffectVLM, AttentionFusion
from affectvlm.model.devices import resolve_device
from affectvlm.model.specs import Spec, clear_cache, list_architectures, load_model, parse_spec, register_configs

register_configs()

__all__ = ["describe_provenance", "AffectVLM", "AttentionFusion", "FUSIONS", "load_model", "save_checkpoint", "read_meta", "parse_spec",
           "Spec", "list_architectures", "register_configs", "clear_cache", "resolve_device"]
