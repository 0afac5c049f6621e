"""Ingest: readers turn raw logs and alerts into ECS-normalised Arrow batches for the store."""

from phagocyte.ingest.pipeline import IngestReport, SourceResult, ingest

__all__ = ["IngestReport", "SourceResult", "ingest"]
