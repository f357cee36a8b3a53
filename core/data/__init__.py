"""Text the models see: the `[Name] message` turn format, training datasets built from stored
messages (`dataset`) and their versioned folder format (`dataset_files`), token packing for
training (`packing`), privacy scrubbing (`scrub`) and saved conversations (`transcripts`).

Contract: pure functions over plain records; the only files written are dataset folders and
transcripts, atomically.
"""
