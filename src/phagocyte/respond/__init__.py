"""Response: YAML playbooks whose steps enrich, notify, export and contain, with analyst approval.

Dry-run is the default; a destructive step (containment) waits for an analyst's approval; every run
is idempotent (one run per playbook version, incident and mode) and audited in the case store.
"""
