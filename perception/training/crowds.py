"""Crowd videos: many instances of one phrase walking through a panning view, with exact ground truth.

People (sprites of one phrase of the generator's vocabulary, "green circle" by default, so the bundled
model can learn them) walk mostly sideways at constant velocity: some enter and leave at the side borders,
some walk side by side in pairs, people walking opposite ways cross and hide each other, and static pillars
(muted, not of the vocabulary) hide whoever passes behind them. Depth is the bottom edge: what stands lower
in the image is nearer and drawn in front. The camera pans sideways at a constant speed over a background
wider than the frame. A mixed crowd adds walkers of a few other phrases.

Ground truth per frame (perception.training.synthetic.TrackedObject): every walker with at least one pixel
inside the frame, in track-id order; ids count from 1 in order of appearance and are never reused (someone
who leaves never comes back). A box is the tight box of the walker's pixels inside the frame (so a walker
half out of view has the box of its visible half) and includes the parts hidden by nearer walkers or
pillars; `visibility` is the fraction of all the walker's pixels that are drawn (inside the frame and not
hidden). Boxes are xyxy pixel edges as in synthetic.py.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from perception.training.backgrounds import draw_background
from perception.training.sprites import COLOUR_HUES, KINDS, Sprite, draw_sprite
from perception.training.synthetic import (Scene, SceneConfig, SceneObject, TrackedObject, camera_effects,
                                           check_request, compose, sprite_window)

# Slowest sideways speed relative to the camera (pixels per frame): a newcomer must get into view.
MIN_RELATIVE_SPEED = 0.3


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class CrowdConfig:
    """What a crowd video contains; sizes are fractions of the frame's shorter side, speeds pixels per frame."""

    phrase: str = "green circle"  # "<colour> <kind>" of the vocabulary (sprites.COLOUR_HUES x sprites.KINDS)
    min_people: int = 6  # walkers the scene keeps in view, drawn once per video in [min_people, max_people]
    max_people: int = 15
    min_size: float = 0.13  # 31 px at 240 px: small, like people across a square
    max_size: float = 0.2
    min_speed: float = 0.5  # sideways speed of a walker; 3 px per frame is a brisk walk at 10 fps
    max_speed: float = 3.0
    max_drift: float = 0.3  # vertical speed, drawn in [-max_drift, max_drift]
    standing: float = 0.15  # share of the first frame's people who stand still
    pairs: float = 0.3  # chance that a newcomer comes with a companion beside it at the same velocity
    arrival: float = 0.2  # chance per frame that someone arrives while fewer than the scene's people are in view
    max_pillars: int = 2  # static occluders, drawn in [0, max_pillars]
    max_pan_speed: float = 1.5  # camera pan, drawn in [-max_pan_speed, max_pan_speed]
    other_phrases: int = 0  # mixed crowd: distinct other phrases of the vocabulary in the video
    other_share: float = 0.0  # chance that a walker has one of the other phrases
    scene: SceneConfig = field(default_factory=SceneConfig)  # backgrounds, camera noise, vocabulary of others

    def __post_init__(self) -> None:
        colour, _, kind = self.phrase.partition(" ")
        _check(colour in COLOUR_HUES and kind in KINDS,
               f"crowd phrase must be '<colour> <kind>' with a colour of {tuple(COLOUR_HUES)} and a kind of {KINDS}; "
               f"got {self.phrase!r}")
        _check(1 <= self.min_people <= self.max_people <= 100,
               f"crowd needs 1 <= min_people <= max_people <= 100; got {self.min_people} and {self.max_people}")
        _check(0 < self.min_size <= self.max_size <= 0.5,
               f"crowd needs 0 < min_size <= max_size <= 0.5; got {self.min_size} and {self.max_size}")
        _check(MIN_RELATIVE_SPEED <= self.min_speed <= self.max_speed,
               f"crowd needs {MIN_RELATIVE_SPEED} <= min_speed <= max_speed; got {self.min_speed} and {self.max_speed}")
        for name in ("standing", "pairs", "arrival", "other_share"):
            _check(0 <= getattr(self, name) <= 1, f"crowd {name} must be in [0, 1]; got {getattr(self, name)}")
        _check(self.max_drift >= 0 and self.max_pan_speed >= 0 and 0 <= self.max_pillars <= 10,
               "crowd needs max_drift >= 0, max_pan_speed >= 0 and max_pillars in [0, 10]; got "
               f"{self.max_drift}, {self.max_pan_speed} and {self.max_pillars}")
        others = len(self.scene.phrases) - (self.phrase in self.scene.phrases)
        _check(0 <= self.other_phrases <= others,
               f"crowd other_phrases must be in [0, {others}] (the scene's vocabulary less the crowd's phrase); "
               f"got {self.other_phrases}")


CROWD = CrowdConfig()
MIXED_CROWD = CrowdConfig(other_phrases=3, other_share=0.3)


@dataclass
class _Walker:
    track_id: int
    phrase: str
    sprite: Sprite
    x: float  # top-left corner in world coordinates (the background's), pixels
    y: float
    velocity: tuple[float, float]

    @property
    def bottom(self) -> float:
        return self.y + self.sprite.mask.shape[0]


def _pillar(height: int, width: int, rng: np.random.Generator) -> Sprite:
    """A muted (saturation <= 0.25, never a colour word) upright block, shaded from top to bottom."""
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.25), rng.uniform(0.3, 0.7)))
    shade = np.linspace(1.0, 0.75, height)[:, None, None]
    rgb = np.broadcast_to(base * shade * 255.0, (height, width, 3)).round().astype(np.uint8)
    return Sprite(mask=np.ones((height, width), bool), rgb=rgb)


class _Crowd:
    """The simulation: who is in the world, where, and who arrives next."""

    def __init__(self, size: tuple[int, int], config: CrowdConfig, pan: float, rng: np.random.Generator) -> None:
        self.size, self.config, self.pan, self.rng = size, config, pan, rng
        others = [phrase for phrase in config.scene.phrases if phrase != config.phrase]
        chosen = rng.choice(len(others), size=config.other_phrases, replace=False) if config.other_phrases else []
        self.other_phrases = [others[int(index)] for index in chosen]
        self.walkers: list[_Walker] = []
        self.next_id = 1

    def _phrase(self) -> str:
        if self.other_phrases and self.rng.uniform() < self.config.other_share:
            return self.other_phrases[int(self.rng.integers(len(self.other_phrases)))]
        return self.config.phrase

    def _sprite(self, phrase: str) -> Sprite:
        colour, kind = phrase.split(" ", 1)
        side = self.rng.uniform(self.config.min_size, self.config.max_size) * min(self.size)
        return draw_sprite(kind, colour, int(round(side)), self.rng)

    def _add(self, phrase: str, sprite: Sprite, x: float, y: float, velocity: tuple[float, float]) -> None:
        self.walkers.append(_Walker(self.next_id, phrase, sprite, x, y, velocity))
        self.next_id += 1

    def _sideways(self) -> float:
        """A sideways velocity that moves relative to the camera by at least MIN_RELATIVE_SPEED."""
        while True:
            speed = self.rng.uniform(self.config.min_speed, self.config.max_speed) * self.rng.choice((-1.0, 1.0))
            if abs(speed - self.pan) >= MIN_RELATIVE_SPEED:
                return speed

    def populate(self, camera_x: int, people: int) -> None:
        """The first frame's people, anywhere in view; some stand still."""
        height, width = self.size
        for _ in range(people):
            phrase = self._phrase()
            sprite = self._sprite(phrase)
            h, w = sprite.mask.shape
            standing = self.rng.uniform() < self.config.standing
            velocity = (0.0, 0.0) if standing else (self._sideways(), self._drift())
            x, y = camera_x + self.rng.uniform(0, width - w), self.rng.uniform(0, height - h)
            self._add(phrase, sprite, x, y, velocity)

    def _drift(self) -> float:
        return self.rng.uniform(-self.config.max_drift, self.config.max_drift)

    def arrive(self, camera_x: int) -> None:
        """Someone steps in just outside the side border it walks in from, maybe with a companion beside it."""
        height, width = self.size
        velocity = (self._sideways(), self._drift())
        phrase = self._phrase()
        sprite = self._sprite(phrase)
        h, w = sprite.mask.shape
        from_left = velocity[0] > self.pan
        y = self.rng.uniform(0, height - h)
        self._add(phrase, sprite, camera_x - w if from_left else camera_x + width, y, velocity)
        if self.rng.uniform() < self.config.pairs:
            companion = self._sprite(phrase)
            ch, cw = companion.mask.shape
            # Beside: one row nearer or further, overlapping sideways, so the two cross into each other's box.
            below = y + h * self.rng.uniform(0.5, 0.9)
            above = y - ch * self.rng.uniform(0.5, 0.9)
            companion_y = below if below + ch <= height and (above < 0 or self.rng.uniform() < 0.5) else max(above, 0.0)
            behind = self.rng.uniform(0, 0.3 * cw)
            x = camera_x - cw - behind if from_left else camera_x + width + behind
            self._add(phrase, companion, x, min(companion_y, height - ch), velocity)

    def step(self, camera_x: int) -> None:
        """Move everyone to the next frame, whose camera is at camera_x (bouncing off the top and bottom edges);
        drop who left the view for good."""
        height, width = self.size
        kept = []
        for walker in self.walkers:
            vx, vy = walker.velocity
            walker.x += vx
            walker.y += vy
            top_limit = height - walker.sprite.mask.shape[0]
            if walker.y < 0 or walker.y > top_limit:
                walker.y = -walker.y if walker.y < 0 else 2 * top_limit - walker.y
                walker.velocity = (vx, -vy)
            left = round(walker.x) - camera_x
            relative = vx - self.pan
            gone = (left + walker.sprite.mask.shape[1] <= 0 and relative <= 0) or (left >= width and relative >= 0)
            if not gone:
                kept.append(walker)
        self.walkers = kept


def _in_frame_box(sprite: Sprite, x: int, y: int, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """Tight xyxy box of the sprite's pixels inside the frame, None when none is."""
    window = sprite_window(sprite.mask.shape, x, y, size)
    if window is None:
        return None
    rows, cols = np.nonzero(sprite.mask[window[2], window[3]])
    if len(rows) == 0:
        return None
    left, top = window[1].start, window[0].start
    return (float(left + cols.min()), float(top + rows.min()),
            float(left + cols.max() + 1), float(top + rows.max() + 1))


def generate_crowd_video(
    seed: int, num_frames: int, size: tuple[int, int] = (240, 320), config: CrowdConfig = CROWD
) -> tuple[list[np.ndarray], list[list[TrackedObject]]]:
    """The crowd video of `seed`: `num_frames` (H, W, 3) uint8 RGB frames and, per frame, the walkers with at
    least one pixel in view (see the module docstring); equal arguments give equal videos."""
    check_request(seed, size)
    _check(num_frames >= 1, f"num_frames must be at least 1, got {num_frames}")
    height, width = size
    rng = np.random.default_rng(seed)
    pan = rng.uniform(-config.max_pan_speed, config.max_pan_speed)
    # Camera's left edge in the world at frame t: round(pan * t) shifted so the world starts at 0.
    origin = -min(0.0, pan * (num_frames - 1))
    cameras = [int(round(origin + pan * t)) for t in range(num_frames)]
    background = draw_background(height, width + max(cameras) + 1, config.scene.backgrounds, rng)
    pillars = []
    for _ in range(int(rng.integers(0, config.max_pillars + 1))):
        pillar = _pillar(int(rng.uniform(0.35, 0.8) * height), max(int(rng.uniform(0.05, 0.1) * width), 4), rng)
        x = int(rng.integers(0, background.shape[1] - pillar.mask.shape[1] + 1))
        pillars.append((pillar, x, height - pillar.mask.shape[0] - int(rng.integers(0, height // 8 + 1))))
    blur = rng.uniform() < config.scene.blur_probability
    noise_std = rng.uniform(0, config.scene.max_noise_std)
    people = int(rng.integers(config.min_people, config.max_people + 1))
    crowd = _Crowd(size, config, pan, rng)
    crowd.populate(cameras[0], people)
    frames, tracks = [], []
    for t, camera_x in enumerate(cameras):
        if len(crowd.walkers) < people and rng.uniform() < config.arrival:
            crowd.arrive(camera_x)
        # Back to front by bottom edge; pillars stand among the walkers by theirs.
        scene = [(w.bottom, 0, w.track_id, w.sprite, (round(w.x) - camera_x, round(w.y))) for w in crowd.walkers]
        scene += [(y + p.mask.shape[0], 1, index, p, (x - camera_x, y)) for index, (p, x, y) in enumerate(pillars)]
        scene.sort(key=lambda item: item[:3])
        image, visibilities = compose(background[:, camera_x : camera_x + width], [s[3] for s in scene],
                                      [s[4] for s in scene])
        frames.append(camera_effects(image, blur, noise_std, rng))
        visible_by_id = {s[2]: float(v) for s, v in zip(scene, visibilities) if s[1] == 0}
        objects = []
        for walker in sorted(crowd.walkers, key=lambda w: w.track_id):
            box = _in_frame_box(walker.sprite, round(walker.x) - camera_x, round(walker.y), size)
            if box is not None:
                objects.append(TrackedObject(walker.track_id, walker.phrase, box, visible_by_id[walker.track_id]))
        tracks.append(objects)
        crowd.step(cameras[min(t + 1, num_frames - 1)])
    return frames, tracks


# A walker counts as an object of a crowd still image when at least this share of its pixels is drawn; the
# rest (mostly hidden or mostly out of view) is left out of the image's ground truth.
SCENE_MIN_VISIBILITY = 0.3


def generate_crowd_scene(seed: int, size: tuple[int, int] = (240, 320), config: CrowdConfig = CROWD,
                         min_visibility: float = SCENE_MIN_VISIBILITY) -> Scene:
    """One still image of a crowd: frame k (0 <= k < 20, drawn from the seed) of the crowd video of `seed`,
    so people are also caught entering, leaving and crossing; the objects are the walkers whose visibility is
    at least `min_visibility`, each with its visible-part box (as in the video's ground truth)."""
    _check(0 <= min_visibility <= 1, f"min_visibility must be in [0, 1]; got {min_visibility}")
    frames = 1 + int(np.random.default_rng([seed, 1]).integers(0, 20))
    images, tracks = generate_crowd_video(seed, frames, size, config)
    objects = [SceneObject(item.phrase, item.box, item.visibility) for item in tracks[-1]
               if item.visibility >= min_visibility]
    return Scene(image=images[-1], objects=objects)
