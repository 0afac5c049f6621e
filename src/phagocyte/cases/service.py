"""The case store: incidents, verdicts, comments, merge/split and the audit trail, on any SQL database.

Every change goes through one method here and writes an `Action` row in the same transaction, so
the audit trail cannot miss a change. Verdicts are also handed to a `VerdictSink` (the port to
triage learning), so that every analyst decision flows back into the model.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Text, create_engine, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from phagocyte.attack import tactic, tactic_rank
from phagocyte.cases.models import Action, Comment, Incident, Token, now
from phagocyte.errors import PhagocyteError

__all__ = [
    "DISPOSITIONS",
    "ROLES",
    "STATUSES",
    "VERDICTS",
    "CaseError",
    "CaseStore",
    "JsonlVerdictSink",
    "NotFound",
    "Principal",
    "VerdictSink",
    "incident_dict",
]

STATUSES = ("new", "in_progress", "resolved")
VERDICTS = ("true_positive", "false_positive", "benign_true_positive")
DISPOSITIONS = ("escalate", "monitor", "auto_close")
ROLES = ("viewer", "analyst", "admin")
PRIORITY = {"escalate": 0, "monitor": 1, "auto_close": 2}
_MIGRATIONS = Path(__file__).parent / "migrations"


class CaseError(PhagocyteError):
    """A request the case store refuses (bad value, impossible merge, ...)."""


class NotFound(CaseError):
    """No such incident, run or token."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a token's name and role."""

    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class VerdictSink(Protocol):
    """Where analyst verdicts go for triage to learn from."""

    def record(self, incident: Mapping[str, Any], verdict: str, actor: str, note: str | None) -> None: ...


class JsonlVerdictSink:
    """Default sink: one JSON line per verdict in `$PHAGO_HOME/verdicts.jsonl` (what `phago triage learn` reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, incident: Mapping[str, Any], verdict: str, actor: str, note: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"at": datetime.now(UTC).isoformat(), "incident": incident["id"], "verdict": verdict, "actor": actor,
                "note": note, "alert_refs": incident.get("alert_refs", []), "entities": incident.get("entities", {}),
                "tactics": incident.get("tactics", [])}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")


def _ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise CaseError(f"not an ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives naive datetimes back
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def incident_dict(inc: Incident, *, full: bool = True) -> dict[str, Any]:
    """The incident as the API and the reports show it (the triage JSON contract plus case fields)."""
    d: dict[str, Any] = {
        "id": inc.id, "title": inc.title, "score": inc.score, "disposition": inc.disposition,
        "status": inc.status, "assignee": inc.assignee, "verdict": inc.verdict, "summary": inc.summary,
        "first_seen": _iso(inc.first_seen), "last_seen": _iso(inc.last_seen), "alert_count": inc.alert_count,
        "tactics": inc.tactics, "entities": inc.entities, "merged_into": inc.merged_into,
        "created": _iso(inc.created), "updated": _iso(inc.updated), "resolved": _iso(inc.resolved),
    }
    if full:
        d.update(reasons=inc.reasons, alert_refs=inc.alert_refs, evidence=inc.evidence)
    return d


def _title(doc: Mapping[str, Any]) -> str:
    if doc.get("title"):
        return str(doc["title"])[:300]
    names = [(t.name if (t := tactic(str(x))) else str(x)) for x in doc.get("tactics") or []]
    tactics = " → ".join(sorted(names, key=tactic_rank)) or "alerts"
    hosts = (doc.get("entities") or {}).get("host") or (doc.get("entities") or {}).get("host.name") or []
    where = f" on {', '.join(map(str, hosts[:2]))}" if hosts else ""
    return f"{tactics}{where}"[:300]


def _merge_entities(a: Mapping[str, list[Any]], b: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    out = {k: list(v) for k, v in a.items()}
    for k, vs in b.items():
        for v in vs:
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out


class CaseStore:
    """Incidents and everything done to them. `url` is any SQLAlchemy URL (SQLite file, PostgreSQL)."""

    def __init__(self, url: str, *, verdicts: VerdictSink | None = None) -> None:
        self.url = url
        connect_args = {"check_same_thread": False} if url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.verdicts = verdicts
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (a no-op when it is there)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # -- audit -------------------------------------------------------------------------------
    @staticmethod
    def _audit(s: Session, actor: str, action: str, incident_id: str | None = None, **detail: Any) -> None:
        s.add(Action(actor=actor, action=action, incident_id=incident_id, detail=detail, at=now()))

    def audit(self, *, incident_id: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(Action).order_by(Action.id.desc())
            if incident_id is not None:
                q = q.where(Action.incident_id == incident_id)
            return [{"id": a.id, "at": _iso(a.at), "actor": a.actor, "action": a.action,
                     "incident_id": a.incident_id, "detail": a.detail}
                    for a in s.scalars(q.limit(limit).offset(offset))]

    # -- incidents -----------------------------------------------------------------------------
    def import_incidents(self, docs: Iterable[Mapping[str, Any]], actor: str) -> dict[str, int]:
        """Add triage's incidents (the `phago triage` JSON contract). An incident already here keeps
        what analysts did to it (status, assignee, verdict); its evidence and score are refreshed."""
        created = updated = 0
        docs = list(docs)
        with self.session() as s:
            ids = [str(d["id"]) for d in docs if isinstance(d, Mapping) and d.get("id")]
            known = {i.id: i for k in range(0, len(ids), 500)
                     for i in s.scalars(select(Incident).where(Incident.id.in_(ids[k:k + 500])))}
            for doc in docs:
                if not isinstance(doc, Mapping) or not doc.get("id"):
                    raise CaseError("an incident needs an `id`")
                if len(str(doc["id"])) > 64:
                    raise CaseError(f"incident id longer than 64 characters: {str(doc['id'])[:80]!r}")
                disposition = str(doc.get("disposition") or "escalate")
                if disposition not in DISPOSITIONS:
                    raise CaseError(f"incident {doc['id']}: disposition {disposition!r} not in {DISPOSITIONS}")
                refs = list(doc.get("alert_refs") or [])
                fields: dict[str, Any] = {
                    "title": _title(doc), "score": float(doc.get("score") or 0.0), "disposition": disposition,
                    "priority": PRIORITY[disposition],
                    "summary": str(doc.get("summary") or ""), "first_seen": _ts(doc.get("first_seen")),
                    "last_seen": _ts(doc.get("last_seen")), "entities": dict(doc.get("entities") or {}),
                    "tactics": list(doc.get("tactics") or []), "reasons": list(doc.get("reasons") or []),
                    "alert_refs": refs, "evidence": list(doc.get("evidence") or doc.get("timeline") or []),
                }
                fields["alert_count"] = int(doc.get("alert_count") or len(refs))
                inc = known.get(str(doc["id"]))
                if inc is None:
                    inc = Incident(id=str(doc["id"]), status="new", created=now(), updated=now(), **fields)
                    s.add(inc)
                    known[inc.id] = inc
                    self._audit(s, actor, "incident.created", str(doc["id"]), score=fields["score"])
                    created += 1
                else:
                    for k, v in fields.items():
                        setattr(inc, k, v)
                    updated += 1
        return {"created": created, "updated": updated}

    def _order(self) -> Any:
        return (Incident.priority, Incident.score.desc(), Incident.id)

    def queue(self, *, status: str | None = None, disposition: str | None = None, limit: int = 50,
              offset: int = 0) -> list[dict[str, Any]]:
        """Incidents in priority order: escalated first, then by score; merged ones are hidden."""
        with self.session() as s:
            q = select(Incident).where(Incident.merged_into.is_(None))
            if status:
                q = q.where(Incident.status == status)
            if disposition:
                q = q.where(Incident.disposition == disposition)
            return [incident_dict(i, full=False) for i in s.scalars(q.order_by(*self._order()).limit(limit)
                                                                     .offset(offset))]

    def count(self, *, status: str | None = None) -> int:
        with self.session() as s:
            q = select(func.count()).select_from(Incident).where(Incident.merged_into.is_(None))
            if status:
                q = q.where(Incident.status == status)
            return int(s.scalar(q) or 0)

    def _get(self, s: Session, incident_id: str) -> Incident:
        inc = s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id!r}")
        return inc

    def get(self, incident_id: str) -> dict[str, Any]:
        with self.session() as s:
            inc = self._get(s, incident_id)
            d = incident_dict(inc)
            d["comments"] = [{"id": c.id, "author": c.author, "text": c.text, "at": _iso(c.at)}
                             for c in s.scalars(select(Comment).where(Comment.incident_id == incident_id)
                                                .order_by(Comment.id))]
            return d

    def update(self, incident_id: str, actor: str, *, status: str | None = None,
               assignee: str | None = None) -> dict[str, Any]:
        with self.session() as s:
            inc = self._get(s, incident_id)
            if status is not None:
                if status not in STATUSES:
                    raise CaseError(f"status {status!r} not in {STATUSES}")
                self._audit(s, actor, "incident.status", incident_id, old=inc.status, new=status)
                inc.status = status
                inc.resolved = now() if status == "resolved" else None
            if assignee is not None:
                self._audit(s, actor, "incident.assign", incident_id, old=inc.assignee, new=assignee or None)
                inc.assignee = assignee or None
            return incident_dict(inc)

    def comment(self, incident_id: str, actor: str, text: str) -> dict[str, Any]:
        if not text.strip():
            raise CaseError("empty comment")
        with self.session() as s:
            self._get(s, incident_id)
            c = Comment(incident_id=incident_id, author=actor, text=text, at=now())
            s.add(c)
            self._audit(s, actor, "incident.comment", incident_id, length=len(text))
            s.flush()
            return {"id": c.id, "author": actor, "text": text, "at": _iso(c.at)}

    def verdict(self, incident_id: str, actor: str, verdict: str, note: str | None = None) -> dict[str, Any]:
        """Record an analyst's verdict; the incident is resolved and the verdict goes to triage learning."""
        if verdict not in VERDICTS:
            raise CaseError(f"verdict {verdict!r} not in {VERDICTS}")
        with self.session() as s:
            inc = self._get(s, incident_id)
            self._audit(s, actor, "incident.verdict", incident_id, old=inc.verdict, new=verdict, note=note)
            inc.verdict, inc.status, inc.resolved = verdict, "resolved", now()
            doc = incident_dict(inc)
        if self.verdicts is not None:
            self.verdicts.record(doc, verdict, actor, note)
        return doc

    def merge(self, incident_ids: list[str], actor: str) -> dict[str, Any]:
        """Fold incidents into the first one: evidence, entities, tactics and time range are united."""
        ids = list(dict.fromkeys(incident_ids))
        if len(ids) < 2:
            raise CaseError("merge needs at least two distinct incidents")
        with self.session() as s:
            target, *others = [self._get(s, i) for i in ids]
            for o in others:
                if o.merged_into is not None:
                    raise CaseError(f"incident {o.id} is already merged into {o.merged_into}")
                target.alert_refs = list(dict.fromkeys([*target.alert_refs, *o.alert_refs]))
                target.evidence = [*target.evidence, *o.evidence]
                target.entities = _merge_entities(target.entities, o.entities)
                target.tactics = list(dict.fromkeys([*target.tactics, *o.tactics]))
                target.reasons = [*target.reasons, *[r for r in o.reasons if r not in target.reasons]]
                # Count alerts, not references: the same alert in both incidents counts once.
                target.alert_count = len(target.alert_refs) or target.alert_count + o.alert_count
                target.score = max(target.score, o.score)
                firsts = [t for t in (target.first_seen, o.first_seen) if t]
                lasts = [t for t in (target.last_seen, o.last_seen) if t]
                target.first_seen = min(firsts) if firsts else None
                target.last_seen = max(lasts) if lasts else None
                if o.disposition == "escalate":
                    target.disposition, target.priority = "escalate", PRIORITY["escalate"]
                o.merged_into = target.id
                self._audit(s, actor, "incident.merged", o.id, into=target.id)
            self._audit(s, actor, "incident.merge", target.id, merged=[o.id for o in others])
            return incident_dict(target)

    def split(self, incident_id: str, alert_refs: list[str], actor: str) -> dict[str, Any]:
        """Move some evidence into a new incident (same score and entities until triage re-scores it)."""
        with self.session() as s:
            inc = self._get(s, incident_id)
            moving = [r for r in dict.fromkeys(alert_refs) if r in inc.alert_refs]
            if not moving or len(moving) == len(inc.alert_refs):
                raise CaseError("split must move some, but not all, of the incident's alert references")
            new_id = f"{incident_id}-s{secrets.token_hex(3)}"
            keep = [r for r in inc.alert_refs if r not in moving]
            ev_move = [e for e in inc.evidence if e.get("ref") in moving]
            new = Incident(id=new_id, title=f"split of {inc.title}"[:300], score=inc.score,
                           disposition=inc.disposition, priority=inc.priority, status="new", summary=inc.summary,
                           first_seen=inc.first_seen, last_seen=inc.last_seen, alert_count=len(moving),
                           entities=dict(inc.entities), tactics=list(inc.tactics), reasons=list(inc.reasons),
                           alert_refs=moving, evidence=ev_move, created=now(), updated=now())
            inc.alert_refs, inc.alert_count = keep, len(keep)
            inc.evidence = [e for e in inc.evidence if e.get("ref") not in moving]
            s.add(new)
            self._audit(s, actor, "incident.split", incident_id, into=new_id, moved=len(moving))
            self._audit(s, actor, "incident.created", new_id, split_from=incident_id)
            s.flush()
            return incident_dict(new)

    def search(self, text: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """Incidents whose id, title, summary, entities or alert references contain `text` (case-insensitive)."""
        needle = f"%{text.lower()}%"
        with self.session() as s:
            q = select(Incident).where(or_(
                func.lower(Incident.id).like(needle), func.lower(Incident.title).like(needle),
                func.lower(Incident.summary).like(needle),
                func.lower(func.cast(Incident.entities, Text())).like(needle),
                func.lower(func.cast(Incident.alert_refs, Text())).like(needle),
            )).order_by(*self._order()).limit(limit)
            return [incident_dict(i, full=False) for i in s.scalars(q)]

    def dashboard(self) -> dict[str, Any]:
        """Numbers for the dashboard: incidents by status and disposition, alerts folded, time to resolve."""
        with self.session() as s:
            live = Incident.merged_into.is_(None)
            by_status = {str(k): int(n) for k, n in s.execute(
                select(Incident.status, func.count()).where(live).group_by(Incident.status)).all()}
            by_disp = {str(k): int(n) for k, n in s.execute(
                select(Incident.disposition, func.count()).where(live).group_by(Incident.disposition)).all()}
            alerts = int(s.scalar(select(func.coalesce(func.sum(Incident.alert_count), 0)).where(live)) or 0)
            judged = Incident.verdict.is_not(None)
            by_verdict = {str(v): int(n) for v, n in s.execute(
                select(Incident.verdict, func.count()).where(live, judged).group_by(Incident.verdict)).all()}
            done = Incident.resolved.is_not(None)
            resolved = s.execute(select(Incident.created, Incident.resolved).where(live, done)).all()
        hours = sorted(((r - c).total_seconds() / 3600) for c, r in
                       ((_ts(c), _ts(r)) for c, r in resolved) if c and r)
        items = int(by_disp.get("escalate", 0))
        return {
            "incidents": sum(by_status.values()), "by_status": by_status, "by_disposition": by_disp,
            "by_verdict": by_verdict, "alerts": alerts, "analyst_items": items,
            "workload_reduction": (1 - items / alerts) if alerts else None,
            "median_hours_to_resolve": hours[len(hours) // 2] if hours else None,
        }

    # -- tokens --------------------------------------------------------------------------------
    def create_token(self, role: str, name: str, actor: str = "cli") -> str:
        """Make a token and return it; only its SHA-256 is kept, so it is shown once.

        A fast hash is right here (unlike for passwords): the token is 256 random bits, so there is
        nothing to brute-force, and every API request must verify it quickly.
        """
        if role not in ROLES:
            raise CaseError(f"role {role!r} not in {ROLES}")
        token = "phago_" + secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(Token(name=name or role, role=role, prefix=token[:12], hash=_hash(token), created=now(),
                        revoked=False))
            self._audit(s, actor, "token.create", None, name=name, role=role, prefix=token[:12])
        return token

    def verify_token(self, token: str) -> Principal | None:
        if not token or len(token) > 200:
            return None
        with self.session() as s:
            row = s.scalar(select(Token).where(Token.hash == _hash(token)))
            if row is None or row.revoked:
                return None
            return Principal(row.name, row.role)

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [{"id": t.id, "name": t.name, "role": t.role, "prefix": t.prefix, "created": _iso(t.created),
                     "revoked": t.revoked} for t in s.scalars(select(Token).order_by(Token.id))]

    def revoke_token(self, token_id: int, actor: str) -> None:
        with self.session() as s:
            row = s.get(Token, token_id)
            if row is None:
                raise NotFound(f"no token {token_id}")
            row.revoked = True
            self._audit(s, actor, "token.revoke", None, token=token_id, prefix=row.prefix)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
