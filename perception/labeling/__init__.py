"""`gdino label`: many videos, bags and image folders into per-input tracks and one dataset, on Ray.

One module per step (nothing is imported here, so the command checks its inputs before Ray and torch load):

- :mod:`.inputs`: command-line paths, globs and manifests expanded into typed inputs;
- :mod:`.summary`: each input's outcome in ``summary.json``, the settings hash, and which inputs a rerun skips;
- :mod:`.chunks`: a long video's time chunks, and the join of their track ids through each overlap;
- :mod:`.process`: what a worker does with one input (video, bag, image folder) in a temporary folder;
- :mod:`.dataset`: the frames kept, COCO JSON for the run and YOLO label files;
- :mod:`.workers`: the Ray actor pool (one model per actor, one input or chunk at a time);
- :mod:`.job`: the driver: submit, retry a dead worker's input, finish outputs, progress and ETA, Ctrl-C.
"""
