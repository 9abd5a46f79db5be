"""Tests of the embedding store (core)."""
