"""Triage: from an alert flood to a short, ranked, explained list of incidents.

The pipeline is `sources` (alerts of any tool → one columnar frame of the shared alert model) →
`suppress` (identical alerts in a window → one group) → `features` (priors and the stream's own
baseline, per group) → `score` (a learned, explainable risk model → escalate / monitor /
auto_close, never auto_close for what it has not seen) → `correlate` (escalated groups linked by
shared entities and time → incidents) → `explain`. `service.triage` runs it end to end.
"""

from phagocyte.triage.service import TriageResult, triage

__all__ = ["TriageResult", "triage"]
