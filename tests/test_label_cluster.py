"""`gdino label --ray-address` on a two-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head
and a second node, each a raylet of its own with 1 CPU), against the same command on a local instance."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
from rosbags.rosbag2 import StoragePlugin
from test_ros_bag import write_input_bag
from video_samples import synthetic_clip

from perception.cli.main import main

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

PROMPT = "blue car . blue star . yellow square . purple circle ."


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.slow
def test_a_two_node_cluster_writes_what_a_local_run_writes(tmp_path, monkeypatch):
    """2 workers of 1 CPU on 2 nodes of 1 CPU each: one worker per node. Every output file is the same, byte
    for byte (tracks, MOT, detections bag, dataset fragments, JPEG frames, coco.json); summary.json too, but
    for the seconds each input took."""
    # Byte equality needs every worker on the same linear kernel: left to each process's timing probe
    # (model/linear.py), a machine where oneDNN and F.linear are close may pick differently per worker.
    # The raylets, and so the workers, inherit this process's environment.
    monkeypatch.setenv("GDINO_ONEDNN_LINEAR", "1")
    synthetic_clip(tmp_path / "v1.mp4", 16, seed=18)
    write_input_bag(tmp_path / "bag", StoragePlugin.MCAP)
    arguments = ["label", str(tmp_path / "v1.mp4"), str(tmp_path / "bag"), "--prompt", PROMPT, "--jpeg",
                 "--workers", "2", "-q"]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        assert main([*arguments, "--output", str(tmp_path / "cluster"), "--ray-address", cluster.address]) == 3
        assert not ray.is_initialized()  # the command disconnected; the cluster is still up
    finally:
        cluster.shutdown()
    assert main([*arguments, "--output", str(tmp_path / "local")]) == 3  # the bag's truncated image
    cluster_files, local_files = files_under(tmp_path / "cluster"), files_under(tmp_path / "local")
    assert cluster_files == local_files and len(local_files) > 10
    different = [name for name in local_files if name != "summary.json"
                 and not filecmp.cmp(tmp_path / "cluster" / name, tmp_path / "local" / name, shallow=False)]
    assert different == []
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("cluster", "local")]
    for summary in summaries:
        for record in summary["inputs"]:
            assert record.pop("seconds") > 0
    assert summaries[0] == summaries[1]
    assert [r["outcome"] for r in summaries[0]["inputs"]] == ["done", "damaged"]
