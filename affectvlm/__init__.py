"""AffectVLM: facial emotion recognition from 3D face scans and 4D sequences with CLIP models."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public API, imported lazily so that `import affectvlm` stays cheap (torch loads only when needed).
_LAZY = {
    "load_mesh": "affectvlm.io",
    "load_sequence": "affectvlm.io",
    "render_views": "affectvlm.render",
    "predict": "affectvlm.predict",
    "load_model": "affectvlm.model",
    "AffectVLM": "affectvlm.model",
    "Mesh": "affectvlm.mesh",
    "MeshSequence": "affectvlm.mesh",
    "InputError": "affectvlm.errors",
    "ModelError": "affectvlm.errors",
    "AffectVLMError": "affectvlm.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        if name == "predict":  # the callable module (affectvlm/predict.py), the same object before and after import
            return module
        return getattr(module, name)
    raise AttributeError(f"module 'affectvlm' has no attribute {name!r}")
