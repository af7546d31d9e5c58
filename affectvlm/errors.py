"""Error types. Every user-facing failure is one of these, with a message naming the file and problem."""
from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` on one line: newlines, control and bidi-format characters escaped (``\\n``, ``\\x1b``)."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class AffectVLMError(Exception):
    """Base class for errors the CLI and app report as one readable line."""


class InputError(AffectVLMError, ValueError):
    """A user's file is malformed, empty, non-finite, degenerate, over a limit or hostile.

    The message always names the file (``source``) and the problem, on one line: control characters in
    either are escaped (``source`` and ``problem`` keep the raw text).
    """

    def __init__(self, source: str, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{printable(self.source)}: {printable(problem)}")


class ModelError(AffectVLMError):
    """A model spec cannot be resolved or loaded (bad spec, missing weights, offline download)."""


class ConfigError(AffectVLMError, ValueError):
    """Invalid settings or command-line options."""
