"""Multi-object tracking metrics (HOTA, IDF1, MOTA, identity switches) computed by TrackEval.

Inputs are MOTChallenge text files: ground truth as ``<gt_root>/<sequence>/gt/gt.txt`` with its
``seqinfo.ini`` (perception.training.synthetic.write_mot_sequence writes both), tracker results as
``<tracker_dir>/<sequence>.txt`` (perception.track_records writes them). Both use the same box
convention, so no offset is applied. Scores are over all sequences together (TrackEval's COMBINED_SEQ).
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingScores:
    hota: float  # higher order tracking accuracy in [0, 1], averaged over IoU thresholds 0.05 .. 0.95
    idf1: float  # identity F1 in [0, 1]
    mota: float  # multi-object tracking accuracy, <= 1 (negative when errors outnumber objects)
    id_switches: int  # CLEAR MOT identity switches
    gt_tracks: int  # ground-truth identities
    frames: int  # frames over all sequences

    def as_dict(self) -> dict:
        return {"HOTA": round(self.hota, 4), "IDF1": round(self.idf1, 4), "MOTA": round(self.mota, 4),
                "id_switches": self.id_switches, "gt_tracks": self.gt_tracks, "frames": self.frames}


def evaluate_mot(gt_root: Path, tracker_dir: Path, sequence_lengths: dict[str, int]) -> TrackingScores:
    """Scores of the tracker files in tracker_dir against the ground truth sequences under gt_root.

    sequence_lengths: frames of each sequence, by sequence (folder and file) name.
    """
    import trackeval

    if not sequence_lengths:
        raise ValueError("evaluate_mot needs at least one sequence")
    eval_config = {**trackeval.Evaluator.get_default_eval_config(), "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                   "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
                   "LOG_ON_ERROR": None, "USE_PARALLEL": False}
    dataset_config = {**trackeval.datasets.MotChallenge2DBox.get_default_dataset_config(),
                      "GT_FOLDER": str(gt_root), "TRACKERS_FOLDER": str(Path(tracker_dir).parent),
                      "TRACKERS_TO_EVAL": [Path(tracker_dir).name], "TRACKER_SUB_FOLDER": "",
                      "OUTPUT_FOLDER": str(Path(tracker_dir).parent), "SKIP_SPLIT_FOL": True,
                      "SEQ_INFO": dict(sequence_lengths), "PRINT_CONFIG": False}
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    printed = io.StringIO()  # TrackEval prints progress unconditionally; keep stdout for our JSON
    with contextlib.redirect_stdout(printed):
        results, messages = trackeval.Evaluator(eval_config).evaluate(
            [trackeval.datasets.MotChallenge2DBox(dataset_config)], metrics)
    logger.debug("TrackEval: %s", printed.getvalue().strip())
    tracker_results = results["MotChallenge2DBox"][Path(tracker_dir).name]
    combined = tracker_results["COMBINED_SEQ"]["pedestrian"]
    return TrackingScores(
        hota=float(combined["HOTA"]["HOTA"].mean()),
        idf1=float(combined["Identity"]["IDF1"]),
        mota=float(combined["CLEAR"]["MOTA"]),
        id_switches=int(combined["CLEAR"]["IDSW"]),
        gt_tracks=int(combined["Count"]["GT_IDs"]),
        frames=int(sum(sequence_lengths.values())),
    )
