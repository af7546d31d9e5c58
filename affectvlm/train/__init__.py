"""The AffectVLM trainer (run as ``affectvlm train``, ``python -m affectvlm.train`` or under torchrun).

Library code never imports this package; it uses everything below it (io, render, model, prompts)."""
from __future__ import annotations


def main(argv=None) -> int:
    from affectvlm.train.train import main as _main

    return _main(argv)


__all__ = ["main"]
