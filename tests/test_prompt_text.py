"""Prompt text: invisible format characters are dropped, control characters (NUL first) are refused with
their position, through the tokenizer (what the node checks a prompt with), the detector and `gdino detect`."""
from __future__ import annotations

import logging
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from perception.detector import GroundingDinoDetector
from perception.model.tokenizer import PromptTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> PromptTokenizer:
    return PromptTokenizer.from_vocab_file(None, 256)


def phrases(tokenizer, prompt: str) -> list[str]:
    return [phrase for chunk in tokenizer.chunk_prompt(prompt) for phrase in chunk.phrases]


@pytest.mark.parametrize("prompt, position, name", [
    ("a cat\0 . a dog .", 5, "NUL (U+0000)"),
    ("\0a cat .", 0, "NUL (U+0000)"),
    ("a cat . a d\x07og", 11, "a control character (U+0007)"),
    ("a cat . \x1b[31ma dog", 8, "a control character (U+001B)"),
    ("a cat\x7f", 5, "a control character (U+007F)"),
    ("a cat \x85 a dog", 6, "a control character (U+0085)"),
    ("a cat \ud800", 6, "a lone surrogate (U+D800)"),
])
def test_control_characters_are_refused_with_their_position(tokenizer, prompt, position, name):
    with pytest.raises(ValueError, match=re.escape(f"prompt has {name} at character {position}, after")):
        tokenizer.chunk_prompt(prompt)


def test_tabs_and_line_breaks_separate_words_as_spaces_do(tokenizer):
    assert phrases(tokenizer, "a cat\t.\na red\tdog\r\n.") == ["a cat", "a red\tdog"]
    assert tokenizer.chunk_prompt("a red\tdog .")[0].input_ids.tolist() == tokenizer.chunk_prompt("a red dog .")[0].input_ids.tolist()


def test_a_phrase_of_only_format_characters_is_ignored_and_format_characters_leave_labels(tokenizer):
    assert phrases(tokenizer, "a cat . \ufeff . a dog .") == ["a cat", "a dog"]
    assert phrases(tokenizer, "\ufeffa cat . a dog\u200b\u200e .") == ["a cat", "a dog"]
    with pytest.raises(ValueError, match="names nothing"):
        tokenizer.chunk_prompt("\ufeff . \u200b")


def test_the_detector_warns_once_about_ignored_phrases(caplog):
    detector = GroundingDinoDetector.from_pretrained("random:tiny")
    with caplog.at_level(logging.WARNING, logger="perception.detector"):
        assert detector.set_prompt("a cat . \ufeff . \u200b\u200d . a dog") == ["a cat", "a dog"]
        assert detector.set_prompt("a cat . \ufeff . \u200b\u200d . a dog") == ["a cat", "a dog"]
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == ["prompt phrases ['\\ufeff', '\\u200b\\u200d'] hold only invisible format characters "
                        "(byte-order mark, zero-width space...): ignored"]
    with pytest.raises(ValueError, match="NUL"):
        detector.set_prompt("a cat\0a dog")
    assert detector.phrases == ["a cat", "a dog"]  # a refused prompt leaves the current one


def test_gdino_detect_refuses_a_control_character_in_its_prompt(tmp_path):
    image = tmp_path / "grey.png"
    cv2.imwrite(str(image), np.full((32, 48, 3), 128, np.uint8))
    result = subprocess.run([sys.executable, "-m", "perception.cli.main", "detect", str(image), "--weights",
                             "random:tiny", "--prompt", "a cat . a \x1bdog"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "prompt has a control character (U+001B) at character 10, after 'a cat . a '" in result.stderr
    assert "Traceback" not in result.stderr
