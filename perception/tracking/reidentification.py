"""Re-identification: a new track takes a lost track's id only when nothing else explains it as well.

Decided once per new track, when it is confirmed (reported for the first time after its initialization
delay), against every reported track of its association key that is really lost: last seen before the new
track's first detection (two objects seen at the same time are never one), at most ``reid_seconds``
before it. norfair's own re-identification is not used: it offered a new track every track that merely
missed the current frame. A lost track is a candidate when all of these hold:

- where: the new track's latest box centre is within reach of where the lost one should be by then (its
  last full-size box moved along its velocity; a partly hidden object's box shrinks and misleads). The
  reach is ``reid_distance`` box sizes of the lost track, plus ``reid_distance_per_second`` for every
  second it has been lost, capped at ``reid_max_distance``: a bounded region, not "anywhere it could have
  walked to";
- still hidden: when that predicted box is mostly covered by a track matched now, the lost object may
  simply still be behind it, so only a new track within ``reid_distance`` (no growth) counts;
- borders: a new track that entered touching an image border is someone entering unless the lost track
  was last seen at that border too (within a quarter of its size of it: box edges jitter); a track that
  left through a border (touching it while moving out, or predicted mostly beyond it by then) is measured
  from where it left, and is a candidate only while no other reported track of its key is known: among
  others of its kind, someone entering is as likely;
- size: the new track's largest box is within 2x of the range of the lost track's recent boxes;
- colour (``reid_appearance`` > 0): their colour histograms are at least that similar.

A lost track among at least two others of its key known (a crowd) is a candidate only within half its reach:
there someone new of its kind is as likely as the lost one a little farther away.
A lost track alone of its key (no other reported track of it known, live or lost) gets a larger reach, a longer
window (``_ALONE_WINDOW`` times ``reid_seconds``) and neither the "still hidden" nor the border rules: with nobody
else of its kind around, a newcomer of that kind is the less likely explanation (an object hidden behind another
near a border comes back cut by it). When a track matched now also covers where it should be, the size rule's lower
bound is waived too: it may come back with most of its box still hidden.
Among candidates, the nearest (distance over reach) wins only with a margin: at most half the runner-up's,
or else a clearly higher colour similarity (by ``_APPEARANCE_MARGIN``); people dressed alike never decide by
colour. Failing that, a farther candidate wins if its colours are clearly more alike than every other's and
none is clearly nearer (two lost about as far away, one of them the newcomer's colours). The same margins
apply against the other new tracks that appeared within the lost track's reach since it was lost (another
claimant of the same id), except one overlapping the new track (a second box the detector put on the same
object). Otherwise the new track keeps a new id.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from perception.tracking.appearance import best_similarity
from perception.tracking.history import LAST_SEEN_BORDER_REACH, TrackHistory, area, centre, overlap, touched_borders
from perception.tracking.config import TrackerConfig

# The nearest candidate must be at most this fraction as far (in reaches) as the runner-up.
_DISTANCE_MARGIN = 0.5
# Or its colour similarity must exceed the runner-up's by this much (Bhattacharyya coefficient).
_APPEARANCE_MARGIN = 0.15
# Another new track whose box overlaps this one's by more than this IoU is a second box on the same object.
_SAME_OBJECT_IOU = 0.3
# A lost track alone of its key (no other reported track of it known, live or lost) is not one of a crowd:
# someone new of its kind appearing is unlikely, so its reach is this much larger and, hidden or not, it
# may reappear anywhere within it (default videos with the bundled model, seeds 0-23: 1 left 5 identity
# switches, 1.5 4, 2 4 but took a box 3 sizes away for the lost object).
_ALONE_REACH = 1.5
# And its window is this many times reid_seconds: an object of a phrase of its own hidden behind another for
# longer than reid_seconds comes back with its id. Bundled model, default videos (seeds 0, 1870000-1890000): 24
# identity switches -> 23 (a red house 3.3 s behind a red square), as reid_seconds 4.5 or 6 for every track gave
# there; those also changed crowds (the crowd model's IDF1 0.792 -> 0.787), whose tracks are never alone. Seeds
# 1900000-1920000: 11 -> 10. A track kept past reid_seconds must not count towards a crowd (reidentify): while it
# did, it cost a second red circle its id on 1910000, and those seeds stayed at 11.
_ALONE_WINDOW = 1.5
# A lost track with at least _CROWD_SIZE other reported tracks of its key known (live or lost) is one of a
# crowd: there a newcomer of its kind is likely, so it is a candidate only within this fraction of its reach.
# Tuned on the bundled model's crowd videos of seed 1300000 (merged ids 20 / 19 / 18 / 17 at 1, 0.75, 0.5, 0.25,
# switches 35 / 33 / 34 / 50; _CROWD_SIZE 1, 2 or 4 alike); on fresh seeds 1800000 and 1810000 merged ids 38 -> 29
# and switches 47 -> 47, the default videos unchanged (see the README's tracking figures).
_CROWD_SIZE = 2
_CROWD_REACH = 0.5
# Box size ratio a re-identified track may differ from the lost one by, either way.
_SIZE_RATIO = 2.0


def window(config: TrackerConfig, alone: bool = True) -> float:
    """Seconds after its loss within which a lost track may be re-identified (by default the longest: alone)."""
    return config.reid_seconds * (_ALONE_WINDOW if alone else 1.0)


def reach(lost: TrackHistory, time: float, config: TrackerConfig, growing: bool = True) -> float:
    """Radius in pixels around where the lost track should be within which it can be re-identified at ``time``."""
    lost_for = max(time - lost.last_time, 0.0)
    box_sizes = config.reid_distance + (config.reid_distance_per_second * lost_for if growing else 0.0)
    return min(box_sizes, config.reid_max_distance) * lost.size


def _reaches(new: TrackHistory, lost: TrackHistory, config: TrackerConfig, hidden: bool, alone: bool) -> float:
    """How far ``new``'s latest box is from where ``lost`` should be by then, in reaches (<= 1: within reach):
    its predicted box, or for a track that left through a border the last box it was seen in."""
    latest = new.sightings[-1]
    expected = lost.sightings[-1].box if lost.left_through(latest.time) else lost.predicted(latest.time)
    distance = float(np.linalg.norm(centre(latest.box) - centre(expected)))
    if alone:
        return distance / (_ALONE_REACH * reach(lost, latest.time, config))
    if hidden and distance > reach(lost, latest.time, config, growing=False):
        return math.inf
    return distance / reach(lost, latest.time, config)


def _borders_agree(new: TrackHistory, lost: TrackHistory, alone: bool) -> bool:
    if alone:  # nobody else of its kind around: someone new entering is the less likely explanation
        return True
    entered = touched_borders(new.sightings[0].image_box, new.frame_size)
    last_seen = touched_borders(lost.sightings[-1].image_box, lost.frame_size, LAST_SEEN_BORDER_REACH)
    return entered <= last_seen and not lost.left_through(new.sightings[-1].time)


def _similar_size(new: TrackHistory, lost: TrackHistory, cut: bool) -> bool:
    """Whether new's largest box is within _SIZE_RATIO of the range of the lost track's recent boxes (``cut``,
    it may be partly hidden: at most _SIZE_RATIO times its largest, however small)."""
    new_area = max(area(s.box) for s in new.sightings)
    lost_areas = [area(s.box) for s in lost.sightings]
    return (cut or min(lost_areas) / _SIZE_RATIO <= new_area) and new_area <= _SIZE_RATIO * max(lost_areas)


def _similarity(new: TrackHistory, lost: TrackHistory) -> float | None:
    return best_similarity((s.look for s in new.sightings), (s.look for s in lost.full_sightings()))


def _same_object(new: TrackHistory, other: TrackHistory) -> bool:
    """Whether two tracks' latest boxes overlap like two boxes the detector put on one object."""
    first, second = new.sightings[-1].box, other.sightings[-1].box
    shared = overlap(first, second)
    return shared > _SAME_OBJECT_IOU * (area(first) + area(second) - shared)


def _clearly_better(best: tuple[float, float | None], other: tuple[float, float | None]) -> bool:
    """(reaches, colour similarity) of the best candidate against another's."""
    if best[0] <= _DISTANCE_MARGIN * other[0]:
        return True
    return best[1] is not None and other[1] is not None and best[1] - other[1] >= _APPEARANCE_MARGIN


def _candidates(new: TrackHistory, lost_tracks: Sequence[TrackHistory], known: list[TrackHistory],
                hidden: Callable[[TrackHistory], bool], config: TrackerConfig) -> list[tuple[float, float | None, TrackHistory]]:
    """(reaches, colour similarity, lost track) of every lost track ``new`` may be, nearest first."""
    candidates = []
    for lost in lost_tracks:
        others = sum(track is not lost for track in known)
        alone, limit = others == 0, _CROWD_REACH if others >= _CROWD_SIZE else 1.0
        covered = hidden(lost)
        if not (lost.last_time < new.first_time <= lost.last_time + window(config, alone)
                and _similar_size(new, lost, alone and covered) and _borders_agree(new, lost, alone)):
            continue
        reaches = _reaches(new, lost, config, covered, alone)
        similarity = _similarity(new, lost) if config.reid_appearance > 0 else None
        if reaches <= limit and (config.reid_appearance == 0 or (similarity or 0.0) >= config.reid_appearance):
            candidates.append((reaches, similarity, lost))
    return sorted(candidates, key=lambda candidate: candidate[0])


def reidentify(new: TrackHistory, lost_tracks: Sequence[TrackHistory], claimants: Sequence[TrackHistory],
               hidden: Callable[[TrackHistory], bool], config: TrackerConfig) -> TrackHistory | None:
    """The lost track whose id ``new`` (just confirmed) takes, or None for a new id (see the module docstring).

    lost_tracks: reported tracks of new's association key not matched since before new's first detection.
    claimants: the other live tracks of that key, confirmed or not (the newer ones may claim the same id).
    hidden: whether a lost track's predicted box is covered by a track matched now.
    """
    # Lost for longer than reid_seconds, a track is neither a candidate nor one of the others known (a crowd), unless
    # it is the only track of its key known: then it is alone and has its longer window.
    recent, older = [], []
    for lost in lost_tracks:
        (recent if new.first_time <= lost.last_time + window(config, alone=False) else older).append(lost)
    known = [track for track in (*recent, *claimants) if track.track_id is not None]
    older = [lost for lost in older if lost.track_id is not None]
    if not known and len(older) == 1:
        recent = known = older
    candidates = _candidates(new, recent, known, hidden, config)
    for rank, (reaches, similarity, lost) in enumerate(candidates):
        rivals = [(other_reaches, other_similarity) for other_reaches, other_similarity, other_lost in candidates
                  if other_lost is not lost]
        covered = hidden(lost)
        for other in claimants:
            if other is not new and other.first_time > lost.last_time and not _same_object(new, other):
                rivals.append((_reaches(other, lost, config, covered, alone=False),
                               _similarity(other, lost) if config.reid_appearance > 0 else None))
        rivals = [rival for rival in rivals if rival[0] <= 1.0]
        best = (reaches, similarity)
        # The nearest wins by either margin; a farther one (by colour) also must not be clearly beaten back.
        if all(_clearly_better(best, rival) and (rank == 0 or not _clearly_better(rival, best)) for rival in rivals):
            return lost
    return None
