"""Text the models see: the `[Name] message` turn format, training datasets built from stored
messages (`dataset`), token packing for training (`packing`), privacy scrubbing (`scrub`) and
saved conversations (`transcripts`).

Contract: pure functions over plain records; the only files written are transcripts, atomically.
"""
