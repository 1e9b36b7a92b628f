"""A prompt change that arrives while a batch is in the model (perception.detector.PromptUpdates): the batch
is answered with the new prompt on the image features it already has, never with a second image pass."""
from __future__ import annotations

import pytest
from test_detector import assert_same, frames, make_detector

from perception.detector import MAX_TEXT_SIDE_RESTARTS
from perception.streams import MultiStreamDetector
from perception.tracking.config import TrackerConfig

pytestmark = pytest.mark.numeric
OLD, NEW = "a person . a red mug .", "a traffic cone . a dog . a bicycle ."


class ScriptedUpdates:
    """Prompt changes on a script: ``arrive_at_check`` is the prompt_waiting() call (1-based) at which a
    change to ``prompt`` arrives (0: it is waiting before the batch's text side starts); ``again`` makes
    every applied change be followed at once by another (a flood), alternating between the two prompts."""

    def __init__(self, apply, prompt: str, arrive_at_check: int, again: bool = False) -> None:
        self.apply, self.prompt, self.again = apply, prompt, again
        self.arrive_at_check, self.checks, self.applied = arrive_at_check, 0, []
        self.waiting = arrive_at_check == 0

    def prompt_waiting(self) -> bool:
        self.checks += 1
        if self.checks == self.arrive_at_check:
            self.waiting = True
        return self.waiting

    def apply_pending(self) -> None:
        if self.waiting:
            self.apply(self.prompt)
            self.applied.append(self.prompt)
            if self.again:
                self.prompt = OLD if self.prompt == NEW else NEW
            else:
                self.waiting = False


def count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def expected(prompt: str, images, **config) -> list:
    reference = make_detector(**config)
    reference.set_prompt(prompt)
    return reference.detect(images)


def test_a_change_waiting_when_the_image_side_is_done_answers_this_batch():
    detector, images = make_detector(), frames(2)
    detector.set_prompt(OLD)
    image_passes = count_calls(detector.model.image_backbone)
    updates = ScriptedUpdates(detector.set_prompt, NEW, arrive_at_check=0)
    found = detector.detect(images, prompt_updates=updates)
    assert updates.applied == [NEW] and detector.text_side_restarts == 0 and image_passes == [1]
    for a, b in zip(found, expected(NEW, images)):
        assert_same(a, b)


@pytest.mark.parametrize("step", [1, 3, -1])  # the encoder's text layer, query selection, the last decoder layer
def test_a_change_during_the_text_side_restarts_it_on_the_same_image_features(step):
    detector, images = make_detector(), frames(2)
    detector.set_prompt(OLD)
    steps = detector.model.text_side_steps()
    assert len(steps) == 3 * detector.model.config.encoder_layers + 1 + detector.model.config.decoder_layers
    arrive_at_check = step % len(steps) + 1  # checked at the start of that step
    image_passes, last_step = count_calls(detector.model.image_backbone), count_calls(steps[-1])
    updates = ScriptedUpdates(detector.set_prompt, NEW, arrive_at_check)
    found = detector.detect(images, prompt_updates=updates)
    assert updates.applied == [NEW] and detector.text_side_restarts == 1 and image_passes == [1]
    assert last_step == [1]  # the abandoned pass stopped where the change arrived
    for a, b in zip(found, expected(NEW, images)):
        assert_same(a, b)
    assert all(handle_free(step) for step in steps)


def handle_free(module) -> bool:
    return not module._forward_pre_hooks


def test_changes_that_keep_coming_restart_a_bounded_number_of_times():
    detector, images = make_detector(), frames(1)
    detector.set_prompt(OLD)
    updates = ScriptedUpdates(detector.set_prompt, NEW, arrive_at_check=0, again=True)
    (found,) = detector.detect(images, prompt_updates=updates)
    # Applied before each of the MAX + 1 passes; the last one runs to its end with the prompt then in force.
    assert len(updates.applied) == MAX_TEXT_SIDE_RESTARTS + 1 == detector.text_side_restarts + 1
    assert_same(found, expected(updates.applied[-1], images)[0])


def test_the_later_batches_of_a_call_keep_the_prompt_of_its_first():
    detector, images = make_detector(batch_size=1), frames(3)
    detector.set_prompt(OLD)
    updates = ScriptedUpdates(detector.set_prompt, NEW, arrive_at_check=0, again=True)
    found = detector.detect(images, prompt_updates=updates)
    # The first batch took changes until the bound; the other two were answered with the prompt it ended on.
    assert len(updates.applied) == MAX_TEXT_SIDE_RESTARTS + 1
    for a, b in zip(found, expected(updates.applied[-1], images, batch_size=1)):
        assert_same(a, b)


def test_the_trackers_follow_a_change_made_inside_a_batch():
    detector, images = make_detector(), frames(2)
    pipeline = MultiStreamDetector(detector, tracker_config=TrackerConfig(initialization_delay=0))
    pipeline.set_prompt(OLD)
    pipeline.process([("left", images[0])])
    updates = ScriptedUpdates(pipeline.set_prompt, NEW, arrive_at_check=5)
    changed = pipeline.process([("left", images[0]), ("right", images[1])], prompt_updates=updates)
    after = pipeline.process([("left", images[0]), ("right", images[1])])
    assert pipeline.phrases == ["a traffic cone", "a dog", "a bicycle"] and detector.text_side_restarts == 1
    for result in (changed, after):
        labels = {box.label for objects in result.objects for box in objects} - {""}  # "": under text_threshold
        assert labels and labels <= set(pipeline.phrases)


def test_a_batch_answered_one_by_one_keeps_one_prompt():
    """A refused frame makes the batch go one image at a time (perception.streams.detect_each); a change that
    arrives meanwhile waits for the next call instead of answering the last image with another prompt."""
    detector, images = make_detector(), frames(2)
    pipeline = MultiStreamDetector(detector, tracker_config=None)
    pipeline.set_prompt(OLD)
    # Without the refused frame the whole text side of the first image passes first, then the change arrives.
    updates = ScriptedUpdates(pipeline.set_prompt, NEW, arrive_at_check=len(detector.model.text_side_steps()) + 1)
    result = pipeline.process([("a", images[0]), ("bad", images[1][:0]), ("b", images[1])], prompt_updates=updates)
    assert result.objects[1] is None and result.errors[1] is not None
    labels = {box.label for i in (0, 2) for box in result.objects[i]} - {""}
    assert labels and labels <= {"a person", "a red mug"} and pipeline.phrases == ["a person", "a red mug"]
    assert updates.applied == []  # still waiting: the next call takes it
