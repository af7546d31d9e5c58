"""Error types. Every user-facing failure is one of these, with a message naming the file and problem."""
from __future__ import annotations


class AffectVLMError(Exception):
    """Base class for errors the CLI and app report as one readable line."""


class InputError(AffectVLMError, ValueError):
    """A user's file is malformed, empty, non-finite, degenerate, over a limit or hostile.

    The message always names the file (``source``) and the problem.
    """

    def __init__(self, source: str, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ModelError(AffectVLMError):
    """A model spec cannot be resolved or loaded (bad spec, missing weights, offline download)."""


class ConfigError(AffectVLMError, ValueError):
    """Invalid settings or command-line options."""
