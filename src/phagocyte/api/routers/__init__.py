"""One router per domain (Tracecat style); each route names its minimum role."""
