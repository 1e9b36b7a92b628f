"""The demo's default input: a generated video of moving coloured shapes (deterministic), the kind of
scene the bundled model was trained on. ``gdino demo-clip OUT.mp4`` writes it and prints its phrases."""
from __future__ import annotations

from fractions import Fraction

from perception.training.synthetic import generate_video
from perception.video.encode import VideoWriter

DEMO_SEED = 7  # four objects: blue cross, yellow circle, orange square, green star
FRAME_RATE = 10


def write_demo_clip(path: str, seed: int = DEMO_SEED, num_frames: int = 120, size: tuple[int, int] = (240, 320)) -> list[str]:
    """Encode the clip; returns the phrases of the objects in it, first frame's order."""
    frames, tracks = generate_video(seed, num_frames, size)
    writer = VideoWriter(path, size[1], size[0], Fraction(FRAME_RATE), Fraction(1, FRAME_RATE))
    try:
        for index, frame in enumerate(frames):
            writer.write(frame, index)
    finally:
        writer.close()
    return list(dict.fromkeys(obj.phrase for obj in tracks[0]))

