"""Long class lists: the detector's time for a prompt of N distinct phrases, split into several chunks by the
256-token limit, against the time for its first chunk alone (``chunk_cost_ratio``: 1 + what each further chunk
adds; the backbone runs once per frame whatever the number of chunks) and against transformers, which takes
at most one chunk per forward and so runs once per chunk, backbone included."""
from __future__ import annotations

import itertools

from perception.bench.measure import PeakMemory, latencies_ms, latency_summary

# Phrases of 3-5 word pieces, as class names of LVIS-like lists are: "small red traffic cone".
_SIZES = ("small", "large", "old", "new")
_COLOURS = ("red", "green", "blue", "yellow", "white", "black", "brown", "orange", "purple", "gray")
_OBJECTS = ("person", "dog", "cat", "horse", "bicycle", "car", "bus", "truck", "boat", "bird", "chair", "table",
            "bottle", "cup", "mug", "bowl", "knife", "spoon", "laptop", "phone", "book", "clock", "vase", "box",
            "traffic cone", "fire hydrant", "stop sign", "parking meter", "tennis racket", "teddy bear", "hair drier")
MAX_PHRASES = len(_SIZES) * len(_COLOURS) * len(_OBJECTS)


def distinct_phrases(count: int) -> list[str]:
    """``count`` distinct phrases (1..MAX_PHRASES, 1,240: more than LVIS's 1,203 classes), the objects varying
    fastest, so a short list already names many kinds."""
    if not 1 <= count <= MAX_PHRASES:
        raise ValueError(f"the number of phrases must be in 1..{MAX_PHRASES}, got {count}")
    combinations = itertools.product(_SIZES, _COLOURS, _OBJECTS)
    return [f"{size} {colour} {kind}" for size, colour, kind in itertools.islice(combinations, count)]


def time_long_prompt(detector, reference_call, frames, count: int, repeats: int, warmup: int) -> dict:
    """Our detector on ``frames`` with a prompt of ``count`` phrases and with its first chunk alone, and
    transformers once per chunk (``reference_call(input_ids)`` gives a closure timing one forward).

    returns: chunks, ours (latency summary of the whole prompt), first_chunk (ours, first chunk alone),
    chunk_cost_ratio = ours p50 / first_chunk p50, reference (transformers, all chunks one after the other)
    and ratio = ours p50 / reference p50.
    """
    prompt = " . ".join(distinct_phrases(count)) + " ."
    chunks = detector.tokenizer.chunk_prompt(prompt)
    first_chunk = " . ".join(chunks[0].phrases) + " ."
    device = detector.device
    entry = {"phrases": count, "chunks": len(chunks)}
    for name, text in (("ours", prompt), ("first_chunk", first_chunk)):
        detector.set_prompt(text)
        with PeakMemory(device) as memory:
            times = latencies_ms(lambda: detector.detect(frames), repeats, warmup, device)
        entry[name] = {**latency_summary(times, len(frames)), "peak_memory_mib": memory.mib}
    entry["chunk_cost_ratio"] = round(entry["ours"]["p50_ms"] / entry["first_chunk"]["p50_ms"], 3)
    calls = [reference_call(chunk.input_ids.to(device)) for chunk in chunks]

    def every_chunk():
        for call in calls:
            call()

    with PeakMemory(device) as memory:
        times = latencies_ms(every_chunk, repeats, warmup, device)
    entry["reference"] = {**latency_summary(times, len(frames)), "peak_memory_mib": memory.mib}
    entry["ratio"] = round(entry["ours"]["p50_ms"] / entry["reference"]["p50_ms"], 3)
    return entry
