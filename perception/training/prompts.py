"""Text prompts for grounding: phrases joined as "red circle . blue square .", with the character span
of each phrase, and the training prompts that mix absent (negative) phrases among the present ones.

As in MM-Grounding-DINO, a training prompt names the phrases present in the image and a random number
of phrases that are not, in random order, so the model learns to score a box against the words that
name it and to leave unnamed and absent things alone. Two additions for a small vocabulary: "hard"
negatives share a word with a present phrase ("red square" beside a red circle), so colour and shape
must both be read; a present phrase is sometimes left out (its boxes then have no target), so an
object that the prompt does not name must not be detected; and some prompts name only absent phrases,
the case where a user asks for something that is not in view and every box must score low.
"Attribute" negatives, the hardest kind, end in the head noun (last word) of a present phrase with
other words before it ("red car" beside a purple car): the prompt names the right kind of thing with the
wrong attribute, which a model that reads the noun and skims the adjective gets wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

PHRASE_SEPARATOR = " . "


@dataclass(frozen=True)
class Prompt:
    """text: "red circle . blue square ."; phrase_spans: [start, end) character span of each phrase."""

    text: str
    phrases: tuple[str, ...]
    phrase_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PromptConfig:
    """How training prompts are drawn."""

    min_negatives: int = 0
    # Absent phrases per prompt, drawn uniformly in [min_negatives, max_negatives] (fewer when the
    # vocabulary has fewer). 8 keeps prompts of a 48-phrase vocabulary at about 30 tokens.
    max_negatives: int = 8
    # Expected share of negatives drawn among absent phrases that end in the head noun (last word) of a
    # present one; drawn first. 0 keeps the draws (and so the prompts of a seed) of earlier versions.
    attribute_negative_fraction: float = 0.0
    # Expected share of the remaining negatives drawn among absent phrases sharing a word with a present one.
    hard_negative_fraction: float = 0.5
    # Chance that a present phrase is left out of the prompt (its boxes then are no target).
    drop_positive_probability: float = 0.1
    # Chance that a prompt names absent phrases only (every present phrase left out).
    absent_only_probability: float = 0.0
    # Prompts never hold more phrases; present phrases beyond it are left out, negatives first go.
    max_phrases: int = 24

    def __post_init__(self) -> None:
        if not 0 <= self.min_negatives <= self.max_negatives:
            raise ValueError(
                f"need 0 <= min_negatives <= max_negatives, got {self.min_negatives} and {self.max_negatives}"
            )
        for name in ("attribute_negative_fraction", "hard_negative_fraction", "drop_positive_probability",
                     "absent_only_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_phrases < 1:
            raise ValueError(f"max_phrases must be at least 1, got {self.max_phrases}")


def build_prompt(phrases: Sequence[str]) -> Prompt:
    """The prompt naming `phrases` in this order; phrases must be distinct, non-empty and free of '.'."""
    if not phrases:
        raise ValueError("a prompt needs at least one phrase")
    text, spans = "", []
    for phrase in phrases:
        if phrase != phrase.strip() or not phrase or "." in phrase:
            raise ValueError(f"phrase {phrase!r} must be non-empty, without '.' or surrounding spaces")
        if text:
            text += PHRASE_SEPARATOR
        spans.append((len(text), len(text) + len(phrase)))
        text += phrase
    if len(set(phrases)) != len(phrases):
        raise ValueError(f"phrases of a prompt must be distinct, got {list(phrases)}")
    return Prompt(text=text + " .", phrases=tuple(phrases), phrase_spans=tuple(spans))


def vocabulary_of(label_lists: Iterable[Sequence[str]]) -> list[str]:
    """Every distinct phrase of a dataset's labels, sorted: the pool negatives are drawn from."""
    return sorted({label for labels in label_lists for label in labels})


def _draw(pool: list[str], count: int, rng: np.random.Generator) -> list[str]:
    count = min(count, len(pool))
    return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)] if count else []


def sample_prompt(
    labels: Sequence[str], vocabulary: Sequence[str], rng: np.random.Generator, config: PromptConfig = PromptConfig()
) -> Prompt:
    """A training prompt for an image whose boxes carry `labels`, negatives drawn from `vocabulary`."""
    present = list(dict.fromkeys(labels))
    unknown = [label for label in present if label not in vocabulary]
    if unknown:
        raise ValueError(f"labels {unknown} are not in the vocabulary")
    absent_only = config.absent_only_probability > 0 and rng.uniform() < config.absent_only_probability
    kept = [] if absent_only else [phrase for phrase in present if rng.uniform() >= config.drop_positive_probability]
    kept = _draw(kept, config.max_phrases, rng)
    absent = [phrase for phrase in vocabulary if phrase not in present]
    present_words = {word for phrase in present for word in phrase.split()}
    hard = [phrase for phrase in absent if present_words & set(phrase.split())]
    easy = [phrase for phrase in absent if phrase not in hard]
    wanted = min(int(rng.integers(config.min_negatives, config.max_negatives + 1)), config.max_phrases - len(kept))
    # At least one phrase: an image whose phrases were all dropped gets a prompt of absent ones only.
    wanted = max(wanted, 1 - len(kept))
    negatives = []
    if config.attribute_negative_fraction > 0:
        heads = {phrase.split()[-1] for phrase in present}
        attribute = [phrase for phrase in absent if phrase.split()[-1] in heads]
        negatives = _draw(attribute, int(rng.binomial(wanted, config.attribute_negative_fraction)), rng)
    hard_count = int(rng.binomial(wanted - len(negatives), config.hard_negative_fraction))
    negatives += _draw([phrase for phrase in hard if phrase not in negatives], hard_count, rng)
    negatives += _draw(easy, wanted - len(negatives), rng)
    negatives += _draw([phrase for phrase in hard if phrase not in negatives], wanted - len(negatives), rng)
    if not kept and not negatives:
        raise ValueError("cannot build a prompt: every phrase was dropped and the vocabulary has no absent phrase")
    phrases = kept + negatives
    return build_prompt([phrases[i] for i in rng.permutation(len(phrases))])
