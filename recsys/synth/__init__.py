"""Synthetic data: a topic-structured corpus of real media files, its watch-event log, a one-file
test video writer, and seeded clustered embedding vectors for index tests and benchmarks."""

from recsys.synth.badfiles import write_bad_inputs
from recsys.synth.corpus import CorpusInfo, SynthVideo, generate_corpus
from recsys.synth.events import EventsInfo, generate_events
from recsys.synth.vectors import SyntheticVectors
from recsys.synth.writer import VideoWriter, write_test_video

__all__ = [
    "CorpusInfo",
    "EventsInfo",
    "SynthVideo",
    "SyntheticVectors",
    "VideoWriter",
    "generate_corpus",
    "generate_events",
    "write_bad_inputs",
    "write_test_video",
]
