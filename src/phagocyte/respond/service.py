"""Running playbooks on incidents: plan, approval, execution, idempotency and audit.

A run is keyed by (playbook, playbook version, incident, mode), so asking twice returns the same
run instead of blocking an address twice. Runs with a destructive step stop at
`awaiting_approval`; an analyst's approval executes them (in dry-run, execution renders what would
be done and changes nothing). Every request, approval, rejection and step result is audited.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2
from sqlalchemy import select

from phagocyte.cases.models import Action, PlaybookRun, now
from phagocyte.cases.service import CaseError, CaseStore, NotFound, Principal
from phagocyte.respond.adapters import (
    IptablesFirewall,
    NftablesFirewall,
    OutboundPolicy,
    ResponseError,
    ScriptAccountAdmin,
    SmtpNotifier,
    WebhookNotifier,
)
from phagocyte.respond.intel import LocalIntel, entity_kind
from phagocyte.respond.playbooks import BUILTIN_DIR, Playbook, Step, load_playbooks

__all__ = ["Responder", "ResponseConfig"]

_ALIASES = {
    "source.ip": ("source.ip", "src_ip", "source_ip", "ip", "ips"),
    "destination.ip": ("destination.ip", "dst_ip", "destination_ip"),
    "user.name": ("user.name", "user", "users"),
    "host.name": ("host.name", "host", "hosts"),
}


def entity_values(incident: dict[str, Any], name: str) -> list[str]:
    ents = incident.get("entities") or {}
    out: list[str] = []
    for key in _ALIASES.get(name, (name,)):
        for v in ents.get(key) or []:
            if str(v) not in out:
                out.append(str(v))
    return out


@dataclass
class ResponseConfig:
    """Where playbooks, intel and outputs live and what may be reached (from the environment)."""

    home: Path
    playbook_dirs: list[Path] = field(default_factory=list)
    intel_paths: list[Path] = field(default_factory=list)
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    webhook_url: str | None = None
    smtp: str | None = None
    """`host:port:from:to[,to]` for the SMTP notify channel."""
    live: bool = False
    """Live (non-dry-run) runs allowed at all: off unless PHAGO_RESPONSE_LIVE=1."""

    @classmethod
    def from_env(cls, home: Path) -> ResponseConfig:
        env = os.environ
        allow = frozenset(h.strip().lower() for h in env.get("PHAGO_NOTIFY_ALLOW", "").split(",") if h.strip())
        split = [Path(p) for p in env.get("PHAGO_INTEL", "").split(os.pathsep) if p]
        return cls(home=home, playbook_dirs=[BUILTIN_DIR, home / "playbooks"],
                   intel_paths=split or [home / "intel"], policy=OutboundPolicy(allow),
                   webhook_url=env.get("PHAGO_NOTIFY_WEBHOOK") or None, smtp=env.get("PHAGO_NOTIFY_SMTP") or None,
                   live=env.get("PHAGO_RESPONSE_LIVE") == "1")


def _run_dict(r: PlaybookRun) -> dict[str, Any]:
    return {"id": r.id, "playbook": r.playbook, "incident_id": r.incident_id, "dry_run": r.dry_run,
            "status": r.status, "steps": r.steps, "requested_by": r.requested_by, "approved_by": r.approved_by,
            "created": r.created.isoformat() if r.created else None,
            "updated": r.updated.isoformat() if r.updated else None}


class Responder:
    def __init__(self, cases: CaseStore, config: ResponseConfig) -> None:
        self.cases, self.config = cases, config
        self.playbooks, self.errors = load_playbooks(config.playbook_dirs)
        self.intel = LocalIntel([p for p in config.intel_paths if p.exists()])
        self.errors += self.intel.errors

    def applicable(self, incident: dict[str, Any]) -> list[Playbook]:
        return [pb for pb in self.playbooks.values() if pb.trigger.matches(incident)]

    def runs(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        with self.cases.session() as s:
            q = select(PlaybookRun).order_by(PlaybookRun.id.desc())
            if incident_id:
                q = q.where(PlaybookRun.incident_id == incident_id)
            return [_run_dict(r) for r in s.scalars(q.limit(200))]

    def request(self, incident_id: str, playbook: str, actor: Principal, *, dry_run: bool = True) -> dict[str, Any]:
        """Start (or return the existing) run of `playbook` on an incident."""
        if not actor.can("analyst"):
            raise CaseError("running a playbook needs the analyst role")
        pb = self.playbooks.get(playbook)
        if pb is None:
            raise NotFound(f"no playbook {playbook!r}")
        if not dry_run and not self.config.live:
            raise CaseError("live response is disabled (set PHAGO_RESPONSE_LIVE=1); use a dry run")
        incident = self.cases.get(incident_id)
        key = hashlib.sha256(f"{pb.name}\0{pb.version}\0{incident_id}\0{dry_run}".encode()).hexdigest()
        with self.cases.session() as s:
            existing = s.scalar(select(PlaybookRun).where(PlaybookRun.key == key))
            if existing is not None:
                return _run_dict(existing) | {"existing": True}
            planned = [self._plan(st, incident) for st in pb.steps]
            status = "awaiting_approval" if pb.destructive else "running"
            run = PlaybookRun(key=key, playbook=pb.name, incident_id=incident_id, dry_run=dry_run, status=status,
                              steps=planned, requested_by=actor.name, created=now(), updated=now())
            s.add(run)
            s.flush()
            s.add(Action(actor=actor.name, action="playbook.request", incident_id=incident_id, at=now(),
                         detail={"run": run.id, "playbook": pb.name, "version": pb.version, "dry_run": dry_run}))
            run_id = run.id
        if not pb.destructive:
            return self._execute(run_id, pb, incident, actor)
        return self._get(run_id)

    def approve(self, run_id: int, actor: Principal) -> dict[str, Any]:
        if not actor.can("analyst"):
            raise CaseError("approving a playbook run needs the analyst role")
        run = self._get(run_id)
        if run["status"] != "awaiting_approval":
            raise CaseError(f"run {run_id} is {run['status']}, not awaiting approval")
        pb = self.playbooks.get(run["playbook"])
        if pb is None:
            raise NotFound(f"playbook {run['playbook']!r} is no longer loaded")
        with self.cases.session() as s:
            r = s.get(PlaybookRun, run_id)
            assert r is not None
            r.status, r.approved_by = "running", actor.name
            s.add(Action(actor=actor.name, action="playbook.approve", incident_id=r.incident_id, at=now(),
                         detail={"run": run_id, "playbook": r.playbook, "dry_run": r.dry_run}))
        return self._execute(run_id, pb, self.cases.get(run["incident_id"]), actor)

    def reject(self, run_id: int, actor: Principal, reason: str = "") -> dict[str, Any]:
        if not actor.can("analyst"):
            raise CaseError("rejecting a playbook run needs the analyst role")
        with self.cases.session() as s:
            r = s.get(PlaybookRun, run_id)
            if r is None:
                raise NotFound(f"no run {run_id}")
            if r.status != "awaiting_approval":
                raise CaseError(f"run {run_id} is {r.status}, not awaiting approval")
            r.status = "rejected"
            s.add(Action(actor=actor.name, action="playbook.reject", incident_id=r.incident_id, at=now(),
                         detail={"run": run_id, "reason": reason}))
        return self._get(run_id)

    def _get(self, run_id: int) -> dict[str, Any]:
        with self.cases.session() as s:
            r = s.get(PlaybookRun, run_id)
            if r is None:
                raise NotFound(f"no run {run_id}")
            return _run_dict(r)

    # -- steps ---------------------------------------------------------------------------------
    def _plan(self, step: Step, incident: dict[str, Any]) -> dict[str, Any]:
        try:
            preview = self._render(step, incident)
            return {"id": step.id, "action": step.action, "destructive": step.destructive, "status": "planned",
                    "preview": preview}
        except ResponseError as exc:
            return {"id": step.id, "action": step.action, "destructive": step.destructive, "status": "invalid",
                    "error": str(exc)}

    def _render(self, step: Step, incident: dict[str, Any]) -> str:
        w = step.with_
        if step.action == "enrich":
            return f"look up {sum(len(v) for v in (incident.get('entities') or {}).values())} entities in " \
                   f"{len(self.intel.index)} local indicators"
        if step.action == "export":
            return f"write a {w.get('format', 'stix')} export of the incident's indicators"
        if step.action == "notify":
            channel = w.get("channel", "webhook")
            url = w.get("url") or self.config.webhook_url
            if channel in ("webhook", "chat"):
                if not url:
                    return "notify: no webhook configured (PHAGO_NOTIFY_WEBHOOK); step will be skipped"
                self.config.policy.check(url)
                return f"POST the incident summary to {url}"
            return f"mail the incident summary via {self.config.smtp or '(no PHAGO_NOTIFY_SMTP)'}"
        if step.action == "contain":
            kind = w.get("kind", "firewall")
            values = entity_values(incident, str(w.get("entity", "source.ip" if kind == "firewall" else "user.name")))
            if kind == "firewall":
                ips = [v for v in values if _is_public_ip(v)] if w.get("external_only", True) else values
                if not ips:
                    raise ResponseError("contain: no external address among the incident's entities")
                fw = IptablesFirewall() if w.get("backend") == "iptables" else NftablesFirewall()
                return fw.render(ips)
            admin = ScriptAccountAdmin()
            if kind == "account":
                if not values:
                    raise ResponseError("contain: the incident names no user account")
                return "".join(admin.render(v, str(w.get("os", "windows"))) for v in values)
            if kind == "host":
                if not values:
                    raise ResponseError("contain: the incident names no host")
                return "".join(admin.isolate(v) for v in values)
            raise ResponseError(f"contain: unknown kind {kind!r}")
        raise ResponseError(f"unknown action {step.action!r}")

    def _execute(self, run_id: int, pb: Playbook, incident: dict[str, Any], actor: Principal) -> dict[str, Any]:
        run = self._get(run_id)
        results: list[dict[str, Any]] = []
        failed = False
        for step, planned in zip(pb.steps, run["steps"], strict=True):
            res = dict(planned)
            try:
                if planned["status"] == "invalid":
                    raise ResponseError(planned.get("error", "invalid step"))
                res["output"] = self._do(step, incident, dry_run=run["dry_run"], run_id=run_id)
                res["status"] = "done"
            except (ResponseError, OSError) as exc:
                res["status"], res["error"], failed = "failed", str(exc), True
            res["at"] = datetime.now(UTC).isoformat()
            results.append(res)
        with self.cases.session() as s:
            r = s.get(PlaybookRun, run_id)
            assert r is not None
            r.steps, r.status = results, ("failed" if failed else "done")
            s.add(Action(actor=actor.name, action="playbook.run", incident_id=r.incident_id, at=now(),
                         detail={"run": run_id, "playbook": r.playbook, "dry_run": r.dry_run, "status": r.status,
                                 "steps": [{"id": x["id"], "status": x["status"]} for x in results]}))
        return self._get(run_id)

    def _do(self, step: Step, incident: dict[str, Any], *, dry_run: bool, run_id: int) -> Any:
        w = step.with_
        if step.action == "enrich":  # local and read-only: runs in dry-run too
            return {"hits": self.intel.lookup(incident.get("entities") or {})}
        if step.action == "export":  # a local file: written in dry-run too
            out_dir = self.config.home / "exports"
            out_dir.mkdir(parents=True, exist_ok=True)
            fmt = w.get("format", "stix")
            doc = stix_bundle(incident) if fmt == "stix" else thehive_alert(incident)
            path = out_dir / f"{incident['id']}-{fmt}.json"
            path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
            return {"file": str(path)}
        preview = self._render(step, incident)
        if dry_run:
            return {"dry_run": True, "would": preview}
        if step.action == "notify":
            channel = w.get("channel", "webhook")
            body = {"incident": incident["id"], "score": incident.get("score"), "summary": incident.get("summary"),
                    "tactics": incident.get("tactics")}
            subject = f"[phagocyte] incident {incident['id']}: {incident.get('title', '')}"
            if channel in ("webhook", "chat"):
                url = w.get("url") or self.config.webhook_url
                if not url:
                    return {"skipped": "no webhook configured"}
                return {"sent": WebhookNotifier(url, self.config.policy, chat=channel == "chat").send(subject, body)}
            if not self.config.smtp:
                return {"skipped": "no PHAGO_NOTIFY_SMTP"}
            host, port, sender, to = self.config.smtp.split(":", 3)
            smtp = SmtpNotifier(host, int(port), sender, to.split(","), self.config.policy)
            return {"sent": smtp.send(subject, body)}
        # contain, live: the firewall adapter applies; accounts/hosts are handed to the admin as a script
        kind = w.get("kind", "firewall")
        if kind == "firewall":
            fw = IptablesFirewall() if w.get("backend") == "iptables" else NftablesFirewall()
            ips = [v for v in entity_values(incident, str(w.get("entity", "source.ip"))) if _is_public_ip(v)]
            return {"applied": fw.apply(ips)}
        out = self.config.home / "response" / f"run-{run_id}-{step.id}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(preview, encoding="utf-8")
        return {"handed_off": str(out)}


def _is_public_ip(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def _observables(incident: dict[str, Any]) -> list[tuple[str, str]]:
    """Shareable indicators: public addresses, domains, URLs and hashes (internal addresses are not IOCs)."""
    out: list[tuple[str, str]] = []
    ents = incident.get("entities") or {}
    for key, values in ents.items():
        kind = entity_kind(key)
        for v in values or []:
            v = str(v)
            try:
                ip = ipaddress.ip_address(v)
                if _is_public_ip(v):
                    out.append(("ipv6-addr" if ip.version == 6 else "ipv4-addr", v))
                continue
            except ValueError:
                pass
            if kind == "hash" and len(v) in (32, 40, 64):
                out.append(("file", v))
            elif kind == "url":
                out.append(("url", v))
            elif kind == "domain":
                out.append(("domain-name", v))
    return out


def stix_bundle(incident: dict[str, Any]) -> dict[str, Any]:
    """A STIX 2.1 bundle: one indicator per IP, domain, URL or hash of the incident (built and validated by `stix2`)."""
    objects: list[Any] = []
    valid_from: Any = incident.get("first_seen") or datetime.now(UTC)
    for kind, value in _observables(incident):
        esc = value.replace("\\", "\\\\").replace("'", "\\'")
        if kind == "file":
            algo = {32: "MD5", 40: "SHA-1", 64: "SHA-256"}[len(value)]
            pattern = f"[file:hashes.'{algo}' = '{esc}']"
        else:
            pattern = f"[{kind}:value = '{esc}']"
        objects.append(stix2.Indicator(name=f"{kind} {value} (incident {incident['id']})", pattern=pattern,
                                       pattern_type="stix", valid_from=valid_from,
                                       description=str(incident.get("summary") or "")[:1000],
                                       labels=["phagocyte"]))
    bundle = stix2.Bundle(objects=objects, allow_custom=False) if objects else stix2.Bundle()
    return json.loads(bundle.serialize())


def thehive_alert(incident: dict[str, Any]) -> dict[str, Any]:
    """The body of TheHive 5 `POST /api/v1/alert` for the incident."""
    types = {"ipv4-addr": "ip", "ipv6-addr": "ip", "domain-name": "domain", "url": "url", "file": "hash"}
    score = float(incident.get("score") or 0)
    return {
        "type": "phagocyte-incident", "source": "phagocyte", "sourceRef": str(incident["id"]),
        "title": str(incident.get("title") or incident["id"])[:512],
        "description": str(incident.get("summary") or ""),
        "severity": 4 if score >= 0.9 else 3 if score >= 0.7 else 2 if score >= 0.4 else 1,
        "tags": [f"tactic:{t}" for t in incident.get("tactics") or []],
        "observables": [{"dataType": types[k], "data": v} for k, v in _observables(incident)],
    }
