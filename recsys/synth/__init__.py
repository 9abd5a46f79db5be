"""Synthetic media: a topic-structured corpus generator and a one-file test video writer."""

from recsys.synth.badfiles import write_bad_inputs
from recsys.synth.corpus import CorpusInfo, SynthVideo, generate_corpus
from recsys.synth.writer import VideoWriter, write_test_video

__all__ = [
    "CorpusInfo",
    "SynthVideo",
    "VideoWriter",
    "generate_corpus",
    "write_bad_inputs",
    "write_test_video",
]
