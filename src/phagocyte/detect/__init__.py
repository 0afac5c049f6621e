"""Detection: Sigma rules (and correlations) over the store and the ingest stream."""
