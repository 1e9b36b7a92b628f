"""COCO-style detection AP with pycocotools, from per-image Detections against ground truth.

Each distinct phrase is a category. A detection is matched only to ground truth of its own phrase, so
a box labelled with a phrase that is absent from its image is a false positive of that phrase.
pycocotools averages AP over the categories that have ground truth in the evaluated set; detections
of phrases that no image contains (and detections with the empty label "", which name nothing) are
therefore not counted. As in COCO, at most 100 detections per image (the highest scores) count.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Protocol, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from perception.types import Detections

logger = logging.getLogger(__name__)


class LabelledBoxes(Protocol):
    """Ground truth of one image: boxes (N, 4) xyxy pixels and one phrase per box (e.g. a Scene)."""

    boxes: np.ndarray
    labels: list[str]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1)


def _coco_inputs(
    predictions: Sequence[Detections], ground_truth: Sequence[LabelledBoxes]
) -> tuple[dict, list[dict]]:
    """A COCO ground-truth dataset and the detection results, with image ids 1..N."""
    phrases = sorted({label for image in ground_truth for label in image.labels})
    phrases += sorted({label for image in predictions for label in image.labels} - set(phrases))
    category = {phrase: index + 1 for index, phrase in enumerate(phrases)}
    annotations, results = [], []
    for image_id, (truth, detections) in enumerate(zip(ground_truth, predictions), start=1):
        if len(truth.boxes) != len(truth.labels):
            raise ValueError(f"ground truth of image {image_id - 1} has {len(truth.boxes)} boxes, {len(truth.labels)} labels")
        for box, label in zip(_xywh(truth.boxes), truth.labels):
            if box[2] < 0 or box[3] < 0:
                raise ValueError(f"ground-truth box of image {image_id - 1} is not xyxy: width/height {box[2:]}")
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category[label],
                 "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0}
            )
        for box, score, label in zip(_xywh(detections.boxes), detections.scores, detections.labels):
            results.append({"image_id": image_id, "category_id": category[label], "bbox": box.tolist(), "score": float(score)})
    dataset = {
        "images": [{"id": image_id} for image_id in range(1, len(ground_truth) + 1)],
        "annotations": annotations,
        "categories": [{"id": index, "name": phrase} for phrase, index in category.items()],
    }
    return dataset, results


def evaluate_detections(predictions: Sequence[Detections], ground_truth: Sequence[LabelledBoxes]) -> dict[str, float]:
    """COCO AP of per-image detections against per-image ground truth (same order, same pixels).

    Returns {"AP": AP@[.50:.95], "AP50": AP@.50, "AP75": AP@.75, "images", "ground_truth",
    "detections"}, the AP values in [0, 1].
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction lists for {len(ground_truth)} ground-truth images")
    dataset, results = _coco_inputs(predictions, ground_truth)
    if not dataset["annotations"]:
        raise ValueError("the ground truth holds no box: AP is undefined")
    counts = {"images": len(ground_truth), "ground_truth": len(dataset["annotations"]), "detections": len(results)}
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, **counts}
    # pycocotools reports progress with print(); keep it out of our callers' stdout.
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        coco_truth = COCO()
        coco_truth.dataset = dataset
        coco_truth.createIndex()
        evaluator = COCOeval(coco_truth, coco_truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("pycocotools:\n%s", report.getvalue())
    ap, ap50, ap75 = (float(value) for value in evaluator.stats[:3])
    return {"AP": ap, "AP50": ap50, "AP75": ap75, **counts}
