"""Offline video processing, one module per step of a run (nothing is imported here, so the light
steps stay light: the command checks its input and outputs before torch is loaded):

- :mod:`.decode`: the input file, its header and its frames, with damage counted;
- :mod:`.outputs`: where the outputs go, and the rules that protect the input and existing files;
- :mod:`.job`: the run itself (``process_video``), decode, detect in batches and track on threads;
- :mod:`.write`: each frame annotated into the video, its tracks into the records, kept in step;
- :mod:`.encode`: the MP4 encoder, its output size and what it has put on disk.
"""
