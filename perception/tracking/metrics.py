"""Multi-object tracking metrics computed by TrackEval: HOTA, IDF1, MOTA, identity switches and
fragmentations, and merged ids (ours, on TrackEval's CLEAR matching).

Inputs are MOTChallenge text files: ground truth as ``<gt_root>/<sequence>/gt/gt.txt`` with its
``seqinfo.ini`` (perception.training.synthetic.write_mot_sequence writes both), tracker results as
``<tracker_dir>/<sequence>.txt`` (perception.tracking.records writes them). Both use the same box
convention, so no offset is applied. Scores are over all sequences together (TrackEval's COMBINED_SEQ).
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trackeval
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingScores:
    hota: float  # higher order tracking accuracy in [0, 1], averaged over IoU thresholds 0.05 .. 0.95
    idf1: float  # identity F1 in [0, 1]
    mota: float  # multi-object tracking accuracy, <= 1 (negative when errors outnumber objects)
    id_switches: int  # CLEAR MOT identity switches
    # Tracker ids matched to two or more ground-truth identities over their sequence (CLEAR's matching: IoU
    # >= 0.5, Hungarian per frame, continuing matches first). A merge is not a switch: one id passed from
    # one person to another switches the second person's identity once, but a merged id is one error the
    # switch count may not show (the first person's track ended, so nothing switched for it).
    merged_ids: int
    fragmentations: int  # CLEAR's Frag: times a ground-truth track resumes being matched after a gap
    gt_tracks: int  # ground-truth identities
    frames: int  # frames over all sequences

    def as_dict(self) -> dict:
        return {"HOTA": round(self.hota, 4), "IDF1": round(self.idf1, 4), "MOTA": round(self.mota, 4),
                "id_switches": self.id_switches, "merged_ids": self.merged_ids,
                "fragmentations": self.fragmentations, "gt_tracks": self.gt_tracks, "frames": self.frames}


class MergedIds(trackeval.metrics.CLEAR):
    """TrackEval metric: tracker ids matched to two or more ground-truth ids within a sequence, matched per
    frame exactly as CLEAR matches (score 1000 for continuing the previous frame's match plus the IoU, pairs
    below CLEAR's threshold excluded, Hungarian). A CLEAR subclass for its threshold and configuration; its
    only field is merged_ids."""

    def __init__(self) -> None:
        super().__init__({"PRINT_CONFIG": False})
        self.integer_fields = self.fields = self.summary_fields = self.summed_fields = ["merged_ids"]
        self.float_fields = []

    @classmethod
    def get_name(cls) -> str:
        return "MergedIds"

    def eval_sequence(self, data: dict) -> dict:
        matched_gt: dict[int, set[int]] = {}
        previous = np.full(data["num_gt_ids"], np.nan)  # tracker id matched to each gt id in the last frame
        for gt_ids, tracker_ids, similarity in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
            if len(gt_ids) == 0 or len(tracker_ids) == 0:
                continue  # CLEAR keeps the last frame's matches over such frames too
            score = 1000.0 * (tracker_ids[None, :] == previous[gt_ids[:, None]]) + similarity
            score[similarity < self.threshold - np.finfo("float").eps] = 0
            rows, cols = linear_sum_assignment(-score)
            kept = score[rows, cols] > np.finfo("float").eps
            previous[:] = np.nan
            previous[gt_ids[rows[kept]]] = tracker_ids[cols[kept]]
            for gt_id, tracker_id in zip(gt_ids[rows[kept]], tracker_ids[cols[kept]]):
                matched_gt.setdefault(int(tracker_id), set()).add(int(gt_id))
        return {"merged_ids": sum(len(gt) >= 2 for gt in matched_gt.values())}

    def combine_sequences(self, all_res: dict) -> dict:
        return {"merged_ids": self._combine_sum(all_res, "merged_ids")}

    def combine_classes_class_averaged(self, all_res: dict, ignore_empty_classes: bool = False) -> dict:
        return self.combine_sequences(all_res)

    def combine_classes_det_averaged(self, all_res: dict) -> dict:
        return self.combine_sequences(all_res)


def evaluate_trackers(gt_root: Path, trackers_root: Path, trackers: list[str],
                      sequence_lengths: dict[str, int]) -> dict[str, TrackingScores]:
    """Scores of each tracker (files ``<trackers_root>/<tracker>/<sequence>.txt``) against the ground truth
    sequences under gt_root, in one TrackEval run. sequence_lengths: frames of each sequence, by name."""
    if not sequence_lengths or not trackers:
        raise ValueError("evaluate_trackers needs at least one sequence and one tracker")
    eval_config = {**trackeval.Evaluator.get_default_eval_config(), "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                   "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
                   "LOG_ON_ERROR": None, "USE_PARALLEL": False}
    dataset_config = {**trackeval.datasets.MotChallenge2DBox.get_default_dataset_config(),
                      "GT_FOLDER": str(gt_root), "TRACKERS_FOLDER": str(trackers_root),
                      "TRACKERS_TO_EVAL": list(trackers), "TRACKER_SUB_FOLDER": "",
                      "OUTPUT_FOLDER": str(trackers_root), "SKIP_SPLIT_FOL": True,
                      "SEQ_INFO": dict(sequence_lengths), "PRINT_CONFIG": False}
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False}), MergedIds()]
    printed = io.StringIO()  # TrackEval prints progress unconditionally; keep stdout for our JSON
    with contextlib.redirect_stdout(printed):
        results, messages = trackeval.Evaluator(eval_config).evaluate(
            [trackeval.datasets.MotChallenge2DBox(dataset_config)], metrics)
    logger.debug("TrackEval: %s", printed.getvalue().strip())
    scores = {}
    for tracker in trackers:
        combined = results["MotChallenge2DBox"][tracker]["COMBINED_SEQ"]["pedestrian"]
        scores[tracker] = TrackingScores(
            hota=float(combined["HOTA"]["HOTA"].mean()),
            idf1=float(combined["Identity"]["IDF1"]),
            mota=float(combined["CLEAR"]["MOTA"]),
            id_switches=int(combined["CLEAR"]["IDSW"]),
            merged_ids=int(combined["MergedIds"]["merged_ids"]),
            fragmentations=int(combined["CLEAR"]["Frag"]),
            gt_tracks=int(combined["Count"]["GT_IDs"]),
            frames=int(sum(sequence_lengths.values())),
        )
    return scores


def evaluate_mot(gt_root: Path, tracker_dir: Path, sequence_lengths: dict[str, int]) -> TrackingScores:
    """Scores of the tracker files in tracker_dir (``<tracker_dir>/<sequence>.txt``) against the ground truth
    sequences under gt_root; sequence_lengths: frames of each sequence, by sequence (folder and file) name."""
    tracker_dir = Path(tracker_dir)
    return evaluate_trackers(gt_root, tracker_dir.parent, [tracker_dir.name], sequence_lengths)[tracker_dir.name]
