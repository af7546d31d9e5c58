"""Prompt templates: zero-shot prompt ensembles and augmented training captions.

Templates are data (``affectvlm/data/prompts/default.yaml``, or any YAML/JSON file with the same keys):
``templates.adjective`` / ``templates.noun`` (one ``{}`` each), ``classes`` (per-class ``adjectives`` and
``nouns``), ``intensity`` (level -> word), ``subject`` (sex/age/ethnicity words) and ``augmented``
(captions with ``{subject}``, ``{intensity}``, ``{adjective}``, ``{noun}``).
A class that the file does not list (a user's own label) uses its own name as its only synonym; a
label that is a listed synonym ("happy") borrows that class's synonyms.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from affectvlm.errors import ConfigError

DEFAULT_CLASSES: tuple[str, ...] = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
_FIELDS = {"subject", "intensity", "adjective", "noun"}


def _default_path() -> Path:
    return Path(str(resources.files("affectvlm") / "data" / "prompts" / "default.yaml"))


def _strs(value: Any, where: str, source: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: '{where}' must be a list of strings")
    out = tuple(v.strip() for v in value if v.strip())
    if not out and not allow_empty:
        raise ConfigError(f"{source}: '{where}' is empty")
    return out


def _fix_articles(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()

    def article(m: re.Match) -> str:
        word = m.group(2)
        vowel = word[:1].lower() in "aeiou" and not word.lower().startswith(("eu", "uni", "use", "one"))
        art = "an" if vowel else "a"
        return (art.capitalize() if m.group(1)[0].isupper() else art) + " " + word

    return re.sub(r"\b([Aa]n?) ([A-Za-z][\w-]*)", article, text)


def _choice(rng: Any, seq: Sequence[Any]) -> Any:
    """Pick from ``seq`` with a ``random.Random`` or a ``numpy.random.Generator``."""
    if hasattr(rng, "integers"):
        return seq[int(rng.integers(len(seq)))]
    return seq[rng.randrange(len(seq))]


@dataclass(frozen=True)
class ClassWords:
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]


@dataclass(frozen=True)
class PromptSet:
    """Validated prompt data. Immutable and hashable (usable as a cache key)."""

    adjective_templates: tuple[str, ...]
    noun_templates: tuple[str, ...]
    classes: tuple[tuple[str, ClassWords], ...]
    intensity: tuple[tuple[int, str], ...]
    sex: tuple[tuple[str, str], ...]
    age: tuple[tuple[str, str], ...]
    ethnicity: tuple[tuple[str, str], ...]
    default_subject: str
    augmented_templates: tuple[str, ...]
    source: str = field(default="<default>", compare=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path | None = None) -> "PromptSet":
        """Read a YAML or JSON prompt file (None: the shipped default) and validate it."""
        p = _default_path() if path is None else Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: prompt file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read prompt file ({e})") from None
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                from affectvlm import yamltext

                data = yamltext.safe_load(text)
        except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
            raise ConfigError(f"{source}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return cls.from_dict(data, source=source if path is not None else "<default>")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "PromptSet":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: prompt file must hold a mapping with 'templates' and 'classes'")
        tpl = data.get("templates")
        if isinstance(tpl, list):  # a flat list = adjective templates
            tpl = {"adjective": tpl}
        if not isinstance(tpl, Mapping) or not (tpl.get("adjective") or tpl.get("noun")):
            raise ConfigError(f"{source}: 'templates' needs an 'adjective' and/or 'noun' list of strings with '{{}}'")
        unknown = set(tpl) - {"adjective", "noun"}
        if unknown:
            raise ConfigError(f"{source}: unknown template group(s) {sorted(unknown)} (use 'adjective', 'noun')")
        adj = _strs(tpl.get("adjective", []), "templates.adjective", source, allow_empty=True)
        noun = _strs(tpl.get("noun", []), "templates.noun", source, allow_empty=True)
        for t in adj + noun:
            fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
            if fields != [""]:
                raise ConfigError(f"{source}: template {t!r} must contain exactly one '{{}}' placeholder")

        raw_classes = data.get("classes", {}) or {}
        if not isinstance(raw_classes, Mapping):
            raise ConfigError(f"{source}: 'classes' must map class names to adjectives/nouns")
        classes = []
        for name, words in raw_classes.items():
            if isinstance(words, (list, str)):
                words = {"adjectives": words, "nouns": words}
            if not isinstance(words, Mapping):
                raise ConfigError(f"{source}: class {name!r} must have 'adjectives' and 'nouns' lists")
            a = _strs(words.get("adjectives", []), f"classes.{name}.adjectives", source, allow_empty=True)
            n = _strs(words.get("nouns", []), f"classes.{name}.nouns", source, allow_empty=True)
            if not a and not n:
                raise ConfigError(f"{source}: class {name!r} has no adjectives or nouns")
            classes.append((str(name), ClassWords(a or n, n or a)))

        raw_int = data.get("intensity", {}) or {}
        if not isinstance(raw_int, Mapping):
            raise ConfigError(f"{source}: 'intensity' must map levels (0-4) to words")
        try:
            intensity = tuple(sorted((int(k), str(v or "")) for k, v in raw_int.items()))
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: 'intensity' keys must be integers") from None

        subj = data.get("subject", {}) or {}
        if not isinstance(subj, Mapping):
            raise ConfigError(f"{source}: 'subject' must be a mapping with sex/age/ethnicity")

        def words(key: str) -> tuple[tuple[str, str], ...]:
            m = subj.get(key, {}) or {}
            if not isinstance(m, Mapping):
                raise ConfigError(f"{source}: 'subject.{key}' must map values to words")
            return tuple((str(k).lower(), str(v)) for k, v in m.items())

        aug = _strs(data.get("augmented", ["a 3D scan of {subject} looking {intensity} {adjective}"]),
                    "augmented", source)
        for t in aug:
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            except ValueError as e:
                raise ConfigError(f"{source}: augmented template {t!r}: {e}") from None
            if not fields <= _FIELDS or not fields & {"adjective", "noun"}:
                raise ConfigError(f"{source}: augmented template {t!r} may use only {sorted(_FIELDS)} "
                                  "and needs {adjective} or {noun}")
        return cls(adj, noun, tuple(classes), intensity, words("sex"), words("age"), words("ethnicity"),
                   str(subj.get("default", "person")), aug, source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints); ``from_dict`` reads it back."""
        return {
            "templates": {"adjective": list(self.adjective_templates), "noun": list(self.noun_templates)},
            "classes": {k: {"adjectives": list(w.adjectives), "nouns": list(w.nouns)} for k, w in self.classes},
            "intensity": {str(k): v for k, v in self.intensity},
            "subject": {"sex": dict(self.sex), "age": dict(self.age), "ethnicity": dict(self.ethnicity),
                        "default": self.default_subject},
            "augmented": list(self.augmented_templates),
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ use
    def words(self, class_name: str) -> ClassWords:
        """Synonyms of a class; unknown labels use their own name (underscores as spaces)."""
        table = dict(self.classes)
        if class_name in table:
            return table[class_name]
        key = class_name.strip().lower()
        for name, w in self.classes:
            if key == name.lower() or key in (s.lower() for s in w.adjectives + w.nouns):
                return w
        plain = class_name.replace("_", " ").strip()
        if not plain:
            raise ConfigError(f"empty class name {class_name!r}")
        return ClassWords((plain,), (plain,))

    def zeroshot_texts(self, class_name: str) -> list[str]:
        """Every template × every synonym of the class (the zero-shot prompt ensemble)."""
        w = self.words(class_name)
        texts = [t.format(a) for t in self.adjective_templates for a in w.adjectives]
        texts += [t.format(n) for t in self.noun_templates for n in w.nouns]
        return list(dict.fromkeys(_fix_articles(t) for t in texts))

    @staticmethod
    def _lookup(table: tuple[tuple[str, str], ...], value: Any) -> str:
        """The book's word for a subject attribute; "" when it is missing or one the book does not name (a
        dataset's own code), so the caption leaves it out rather than the run failing."""
        if value is None or value == "":
            return ""
        return dict(table).get(str(value).strip().lower(), "")

    def subject_phrase(self, sex: Any = None, age: Any = None, ethnicity: Any = None) -> str:
        """E.g. ``a young East Asian woman``; numeric ages map to young (<30), middle-aged, elderly (>=55)."""
        if isinstance(age, (int, float)) and not isinstance(age, bool):
            age = "young" if age < 30 else ("middle" if age < 55 else "old")
        parts = [self._lookup(self.age, age), self._lookup(self.ethnicity, ethnicity),
                 self._lookup(self.sex, sex) or self.default_subject]
        return _fix_articles("a " + " ".join(p for p in parts if p))

    def augmented(self, class_name: str, rng: Any, intensity: int | None = None, sex: Any = None,
                  age: Any = None, ethnicity: Any = None) -> str:
        """One random training caption, e.g. ``a 3D scan of a young woman looking slightly disgusted``."""
        w = self.words(class_name)
        level = dict(self.intensity)  # a level the book has no word for (a dataset's 1-5 scale) is left out
        fields = {
            "subject": self.subject_phrase(sex, age, ethnicity),
            "intensity": level.get(int(intensity), "") if intensity is not None else "",
            "adjective": _choice(rng, w.adjectives),
            "noun": _choice(rng, w.nouns),
        }
        return _fix_articles(_choice(rng, self.augmented_templates).format(**fields))


_DEFAULT: PromptSet | None = None


def default_prompts() -> PromptSet:
    """The shipped prompt set (loaded once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PromptSet.load(None)
    return _DEFAULT


def as_prompt_set(prompts: "PromptSet | str | Path | Mapping | None") -> PromptSet:
    """Accept a PromptSet, a file path, a dict (checkpoint form) or None (default)."""
    if prompts is None:
        return default_prompts()
    if isinstance(prompts, PromptSet):
        return prompts
    if isinstance(prompts, Mapping):
        return PromptSet.from_dict(prompts)
    return PromptSet.load(prompts)


def parse_classes(value: "str | Sequence[str] | None") -> tuple[str, ...] | None:
    """``"a,b,c"`` or a list -> a tuple of unique, non-empty class names (ConfigError otherwise)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(c).strip() for c in items)
    if len(names) < 2 or any(not n for n in names):
        raise ConfigError(f"classes must be at least two non-empty names, got {value!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"classes contain duplicated names: {value!r}")
    return names
