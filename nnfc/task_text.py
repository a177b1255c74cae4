"""Tasks as a person writes them: "crimson cars", "people in white", "red or blue cars" -> the
factory's attributes.

Words are matched longest first: an attribute itself; a word the task family declares
(plurals, synonyms: ``task_words``); a colour name (:mod:`nnfc.colour_names`: the nearest
factory colour within a cutoff); filler words ("in", "or", "the") are skipped. Anything else
is one error line naming the nearest words. An exact attribute list ("red,car") is taken as is.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from nnfc.colour_names import CUTOFF, colour_table, nearest_colour, normalise
from nnfc.errors import NnfcError

#: words that carry no attribute ("red or blue cars", "people in white")
FILLER = frozenset("a an the in on of with and or wearing dressed coloured colored painted "
                   "all any some every that are is which who".split())
MAX_WORDS = 4  # longest phrase tried as one name ("dark pastel green")


@dataclass
class Resolution:
    """A task phrase and what it resolved to."""

    text: str
    attributes: list[str]
    steps: list[str] = field(default_factory=list)  # "crimson ≈ red (ΔE 8.6)", "cars = car"

    @property
    def exact(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        return (f"task {self.text!r} -> {','.join(self.attributes)}"
                + (f" ({'; '.join(self.steps)})" if self.steps else ""))


def family_words(manifest: Mapping) -> tuple[dict[str, str], dict[str, tuple]]:
    """(word -> attribute, colour attribute -> sRGB) the bundle's task family declares."""
    from nnfc.families import family_class

    name = (manifest.get("task_family") or {}).get("family")
    if not name:
        return {}, {}
    cls = family_class(str(name))
    return dict(getattr(cls, "task_words", {}) or {}), dict(getattr(cls, "palette", {}) or {})


def resolve(text: str | Sequence[str], attributes: Sequence[str],
            words: Mapping[str, str] | None = None,
            palette: Mapping[str, tuple] | None = None) -> Resolution:
    """Resolve a task phrase (or an attribute list) against a factory's ``attributes``."""
    attributes = list(attributes)
    if not isinstance(text, str):
        text = ",".join(str(t) for t in text)
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items and all(t in attributes for t in items):
        repeated = sorted({t for t in items if items.count(t) > 1})
        if repeated:
            raise NnfcError(f"task {text!r}: {', '.join(repr(t) for t in repeated)} given more "
                            "than once")
        return Resolution(text, [a for a in attributes if a in items])
    by_norm = {normalise(a): a for a in attributes}
    words = {normalise(k): v for k, v in (words or {}).items() if v in attributes}
    palette = {a: tuple(v) for a, v in (palette or {}).items() if a in attributes}
    if not palette:  # colour attributes the family does not declare: matplotlib's values
        palette = {a: colour_table()[normalise(a)] for a in attributes
                   if normalise(a) in colour_table()}
    tokens = normalise(text).split()
    found: list[str] = []
    steps: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(MAX_WORDS, len(tokens) - i), 0, -1):
            phrase = " ".join(tokens[i:i + n])
            hit = _match(phrase, by_norm, words, palette)
            if hit is not None:
                attr, step = hit
                found.append(attr)
                if step:
                    steps.append(step)
                i += n
                break
        else:
            word = tokens[i]
            if word not in FILLER:
                raise NnfcError(_unknown(word, text, by_norm, words, palette))
            i += 1
    if not found:
        raise NnfcError(f"task {text!r} names no attribute; this factory knows: "
                        f"{', '.join(attributes)}")
    ordered = [a for a in attributes if a in found]
    return Resolution(text, ordered, steps)


def _match(phrase: str, by_norm: Mapping[str, str], words: Mapping[str, str],
           palette: Mapping[str, tuple]) -> tuple[str, str] | None:
    """(attribute, how) for a phrase, or None."""
    if phrase in by_norm:
        return by_norm[phrase], ""
    if phrase in words:
        return words[phrase], f"{phrase} = {words[phrase]}"
    for stem in _singulars(phrase):
        if stem in by_norm:
            return by_norm[stem], f"{phrase} = {by_norm[stem]}"
    if phrase in FILLER or not palette:
        return None
    near = nearest_colour(phrase, palette)
    if near is None:
        return None
    colour, diff = near
    if diff > CUTOFF:
        raise NnfcError(f"colour {phrase!r} is not close to any colour this factory knows "
                        f"(nearest: {colour}, CIEDE2000 difference {diff:.0f} > {CUTOFF:.0f}); "
                        f"colours: {', '.join(palette)}")
    return colour, (f"{phrase} ≈ {colour} (ΔE {diff:.1f})" if diff else f"{phrase} = {colour}")


def _singulars(word: str) -> list[str]:
    """Plain English singulars of a plural: cars -> car, buses -> bus, bodies -> body."""
    out = []
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


def _unknown(word: str, text: str, by_norm, words, palette) -> str:
    """One line: the word, and the nearest words nnfc would understand."""
    vocab = [*by_norm, *words]
    close: list[str] = []
    for form in (*_singulars(word), word):
        close += [c for c in difflib.get_close_matches(form, vocab, n=3, cutoff=0.6)
                  if c not in close]
    close = close[:3]
    if palette:
        close += [c for c in difflib.get_close_matches(word, list(colour_table()), n=6,
                                                       cutoff=0.75) if c not in close][:2]
    hint = f"; nearest words: {', '.join(close)}" if close else ""
    return (f"task {text!r}: {word!r} is no attribute, category or colour name this factory "
            f"understands{hint} (attributes: {', '.join(by_norm.values())})")


def resolve_for(bundle, task: str | Sequence[str]) -> Resolution:
    """:func:`resolve` against a bundle's attributes and its family's words and palette."""
    words, palette = family_words(bundle.manifest)
    return resolve(task, bundle.attributes, words, palette)
