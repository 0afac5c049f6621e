"""Streaming triage: the same suppression, features, scores and incidents, in memory bounded by time.

Why: a SOC feed never ends, and the batch `triage` holds every alert it was given. Here alerts
arrive in time-ordered chunks and every piece of state is evicted by time:

- suppression keys are held open only while their window may still extend them;
- alerts are held until their group is closed and scored, then as context for the host windows of
  the groups still open (two `HOST_WINDOW`s back from the oldest open group), then dropped;
- the baseline (how often a rule fired on a host, and in the organisation) of dropped groups is
  kept as counts in capped dictionaries (the least recently seen keys are forgotten first);
- scored groups wait in a pool until no group still to come can join their incident (the
  correlation gap, the absorption margin, the 6 h deferred batch), then the incident is written
  and forgotten; no incident is held longer than `max_incident_span` (routine noise is cut into
  daily pieces: the one difference from the batch by design).

A group is scored once it has been closed for `settle` seconds (its window plus two host windows),
so its host context, and the context of its neighbours, is complete except for groups still open
around it (long-running groups), the one source of small differences from the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phagocyte.triage.correlate import CORRELATION_GAP
from phagocyte.triage.features import HOST_WINDOW, GroupFeatures, day_bins, group_features
from phagocyte.triage.score import ESCALATE, RiskModel, disposition
from phagocyte.triage.service import ABSORB_MARGIN, BRIDGE_GAP, DEFER_GAP, Incident, build_incidents, incident_dict
from phagocyte.triage.sources import AlertFrame
from phagocyte.triage.suppress import Groups, alert_keys

__all__ = ["Baseline", "StreamStats", "StreamTriage", "chunks", "concat_frames", "stream_triage"]

MAX_INCIDENT_SPAN = 24 * 3600.0
"""No incident is held open longer than this (seconds): it is written and a new one starts."""


def concat_frames(frames: list[AlertFrame]) -> AlertFrame:
    """Frames one after the other (no sorting)."""
    f0 = frames[0]
    return AlertFrame(
        np.concatenate([f.ts for f in frames]), np.concatenate([f.rule for f in frames]),
        np.concatenate([f.rule_name for f in frames]), np.concatenate([f.level for f in frames]),
        {k: np.concatenate([f.entities[k] for f in frames]) for k in f0.entities},
        np.concatenate([f.tactics for f in frames]), np.concatenate([f.ref for f in frames]),
        np.concatenate([f.event_label for f in frames]), np.concatenate([f.time_label for f in frames]))


def chunks(frame: AlertFrame, size: int = 50_000) -> Iterator[AlertFrame]:
    """A time-sorted frame as consecutive chunks of `size` alerts."""
    for a in range(0, len(frame), size):
        yield frame.take(np.arange(a, min(a + size, len(frame))))


class Baseline:
    """Counts of past groups per (rule, host) and per rule, capped: when a dictionary outgrows `cap`
    its least recently seen quarter is forgotten (a forgotten pair looks new again, as it would to an
    analyst after a long silence)."""

    def __init__(self, cap: int = 200_000) -> None:
        self.cap = cap
        self.pair: dict[tuple[str, str], list[float]] = {}  # (rule, host) → [groups, Σ log1p(count), last seen,
        # times of day seen (bit mask of `day_bins`)]
        self.rule: dict[str, list[float]] = {}  # rule → [groups, last seen]

    def __len__(self) -> int:
        return len(self.pair) + len(self.rule)

    def add(self, rules: np.ndarray, hosts: np.ndarray, logc: np.ndarray, t: np.ndarray) -> None:
        bins = day_bins(t).tolist()
        for r, h, c, ti, b in zip(rules.tolist(), hosts.tolist(), logc.tolist(), t.tolist(), bins, strict=True):
            p = self.pair.get((r, str(h)))
            if p is None:
                self.pair[(r, str(h))] = [1.0, c, ti, b]
            else:
                p[0] += 1.0
                p[1] += c
                p[2] = max(p[2], ti)
                p[3] = int(p[3]) | b
            q = self.rule.get(r)
            if q is None:
                self.rule[r] = [1.0, ti]
            else:
                q[0] += 1.0
                q[1] = max(q[1], ti)
        self._evict()

    def _evict(self) -> None:
        if len(self.pair) > self.cap:
            self.pair = dict(sorted(self.pair.items(), key=lambda kv: kv[1][2])[len(self.pair) - 3 * self.cap // 4:])
        if len(self.rule) > self.cap:
            self.rule = dict(sorted(self.rule.items(), key=lambda kv: kv[1][1])[len(self.rule) - 3 * self.cap // 4:])

    def __call__(self, rules: np.ndarray, hosts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(rules)
        n_rh, s_rh, n_r, bins = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
        if not self.pair:
            return n_rh, s_rh, n_r, bins
        for i, (r, h) in enumerate(zip(rules.tolist(), hosts.tolist(), strict=True)):
            p = self.pair.get((r, str(h)))
            if p is not None:
                n_rh[i], s_rh[i], bins[i] = p[0], p[1], int(p[3])
            q = self.rule.get(r)
            if q is not None:
                n_r[i] = q[0]
        return n_rh, s_rh, n_r, bins


@dataclass
class StreamStats:
    """High-water marks of what the stream held: memory is bounded by these, not by the stream."""

    alerts: int = 0
    groups_scored: int = 0
    incidents: int = 0
    max_buffered_alerts: int = 0
    max_pool_groups: int = 0
    max_open_keys: int = 0
    max_baseline_keys: int = 0


@dataclass
class _Pool:
    """Scored groups waiting for their incident to close (one row per group)."""

    first: list[AlertFrame] = field(default_factory=list)  # the groups' first alerts
    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)
    refs: list[np.ndarray] = field(default_factory=list)  # per group: its alerts' refs, in time order

    def add(self, first: AlertFrame, refs: list[np.ndarray], **cols: np.ndarray) -> None:
        self.first.append(first)
        self.refs.extend(refs)
        for k, v in cols.items():
            self.cols.setdefault(k, []).append(v)

    def consolidate(self) -> tuple[AlertFrame | None, dict[str, np.ndarray]]:
        if not self.first:
            return None, {}
        if len(self.first) > 1:
            self.first = [concat_frames(self.first)]
            self.cols = {k: [np.concatenate(v)] for k, v in self.cols.items()}
        return self.first[0], {k: v[0] for k, v in self.cols.items()}

    def keep(self, mask: np.ndarray) -> None:
        frame, cols = self.consolidate()
        if frame is None:
            return
        idx = np.nonzero(mask)[0]
        self.first = [frame.take(idx)] if len(idx) else []
        self.cols = {k: [v[idx]] for k, v in cols.items()} if len(idx) else {}
        self.refs = [self.refs[i] for i in idx.tolist()]


class StreamTriage:
    """Feed time-ordered chunks with `push`, then `close`; both return the incidents (JSON objects)
    closed meanwhile, numbered in the order they are written."""

    def __init__(self, model: RiskModel, *, baseline_cap: int = 200_000,
                 max_incident_span: float = MAX_INCIDENT_SPAN) -> None:
        self.model = model
        cfg = model.suppression
        windows = [cfg.window, *(float(v["window"]) for v in cfg.per_rule.values()  # type: ignore[arg-type]
                                 if isinstance(v, dict) and "window" in v)]
        self.window = max(windows)
        self.settle = self.window + 2 * HOST_WINDOW
        self.max_incident_span = max_incident_span
        self.open: dict[str, list[float]] = {}  # key → [run start, last seen, piece, group id]
        self.next_gid = 0
        self.buf: AlertFrame | None = None
        self.buf_gid = np.zeros(0, dtype=np.int64)
        self.buf_done = np.zeros(0, dtype=bool)  # the alert's group is scored
        self.buf_seq = np.zeros(0, dtype=np.int64)
        self.seq = 0
        self.now = -np.inf
        self.last_score = -np.inf
        self.t0: float | None = None
        self.baseline = Baseline(baseline_cap)
        self.pool = _Pool()
        self.n_incidents = 0
        self.stats = StreamStats()

    # -- suppression, one chunk at a time -------------------------------------------------------
    def _assign_groups(self, chunk: AlertFrame) -> np.ndarray:
        """Global group id of each alert of a time-sorted chunk, continuing the groups held open."""
        n = len(chunk)
        uniq, code, window, max_span = alert_keys(chunk, self.model.suppression)
        order = np.lexsort((chunk.ts, code))
        k, t, w, m = code[order], chunk.ts[order], window[order], max_span[order]
        first = np.ones(n, dtype=bool)
        first[1:] = k[1:] != k[:-1]
        fpos = np.nonzero(first)[0]
        nk = len(fpos)
        st_last = np.full(nk, -np.inf)
        st_run = np.zeros(nk)
        st_piece = np.full(nk, -1.0)
        st_gid = np.full(nk, -1, dtype=np.int64)
        for j, kc in enumerate(k[fpos].tolist()):
            s = self.open.get(uniq[kc])
            if s is not None:
                st_run[j], st_last[j], st_piece[j], st_gid[j] = s[0], s[1], s[2], int(s[3])
        cont = t[fpos] - st_last <= w[fpos]  # the key's first alert here continues a held run
        gap = np.zeros(n, dtype=bool)
        gap[1:] = t[1:] - t[:-1] > w[1:]
        gap[fpos] = ~cont
        seg_start = first | gap
        seg = np.cumsum(seg_start) - 1
        run_start = t[seg_start].copy()
        fseg = seg[fpos]
        run_start[fseg[cont]] = st_run[cont]
        rs = run_start[seg]
        piece = np.floor((t - rs) / m)
        boundary = gap.copy()
        boundary[1:] |= ~seg_start[1:] & (piece[1:] != piece[:-1])
        boundary[fpos[cont]] = piece[fpos[cont]] != st_piece[cont]
        gid = np.full(n, -1, dtype=np.int64)
        nb = int(boundary.sum())
        gid[boundary] = self.next_gid + np.arange(nb)
        self.next_gid += nb
        keep_old = fpos[cont & ~boundary[fpos]]
        gid[keep_old] = st_gid[cont & ~boundary[fpos]]
        # Forward-fill within each key (every key's first alert has an id).
        have = np.where(gid >= 0, np.arange(n), 0)
        gid = gid[np.maximum.accumulate(have)]
        last = np.r_[fpos[1:] - 1, n - 1]
        for i in last.tolist():
            self.open[uniq[k[i]]] = [float(rs[i]), float(t[i]), float(piece[i]), float(gid[i])]
        out = np.empty(n, dtype=np.int64)
        out[order] = gid
        return out

    # -- the stream ----------------------------------------------------------------------------
    def push(self, chunk: AlertFrame) -> list[dict[str, Any]]:
        """Add a chunk of alerts (in time order, after the previous chunks); returns the incidents closed."""
        if not len(chunk):
            return []
        if np.any(np.diff(chunk.ts) < 0):
            chunk = chunk.take(np.argsort(chunk.ts, kind="stable"))
        if self.t0 is None:
            self.t0 = float(chunk.ts[0])
        self.stats.alerts += len(chunk)
        gid = self._assign_groups(chunk)
        seq = self.seq + np.arange(len(chunk), dtype=np.int64)
        self.seq += len(chunk)
        if self.buf is None or not len(self.buf):
            self.buf, self.buf_gid, self.buf_seq = chunk, gid, seq
            self.buf_done = np.zeros(len(chunk), dtype=bool)
        else:
            self.buf = concat_frames([self.buf, chunk])
            self.buf_gid = np.r_[self.buf_gid, gid]
            self.buf_seq = np.r_[self.buf_seq, seq]
            self.buf_done = np.r_[self.buf_done, np.zeros(len(chunk), dtype=bool)]
            if chunk.ts[0] < self.now:  # a late chunk: keep the buffer in time order
                o = np.argsort(self.buf.ts, kind="stable")
                self.buf, self.buf_gid, self.buf_seq, self.buf_done = (
                    self.buf.take(o), self.buf_gid[o], self.buf_seq[o], self.buf_done[o])
        self.now = max(self.now, float(chunk.ts.max()))
        self.open = {key: s for key, s in self.open.items() if s[1] >= self.now - self.window}
        self.stats.max_open_keys = max(self.stats.max_open_keys, len(self.open))
        self.stats.max_buffered_alerts = max(self.stats.max_buffered_alerts, len(self.buf))
        return self._step(final=False)

    def close(self) -> list[dict[str, Any]]:
        """End of the stream: score and write everything still held."""
        out = self._step(final=True)
        self.buf = None
        self.open.clear()
        return out

    def _buffer_groups(self) -> tuple[Groups, np.ndarray]:
        """The buffer's groups (numbered by first alert) and their global ids."""
        assert self.buf is not None
        ts = self.buf.ts
        uniq, first_idx, inv = np.unique(self.buf_gid, return_index=True, return_inverse=True)
        relabel = np.argsort(first_idx, kind="stable")
        local = np.empty(len(uniq), dtype=np.int64)
        local[relabel] = np.arange(len(uniq))
        of_alert = local[inv.reshape(-1)]
        first_alert = first_idx[relabel]
        count = np.bincount(of_alert, minlength=len(uniq))
        order = np.argsort(of_alert, kind="stable")
        last_seen = ts[order][np.cumsum(count) - 1]
        g = Groups(of_alert, first_alert, count, ts[first_alert], last_seen, np.zeros(len(uniq), dtype=object))
        return g, uniq[relabel]

    def _step(self, final: bool) -> list[dict[str, Any]]:
        # Score when a group may be ready (an open group ends after its first alert), at most once per
        # `window` of stream time: during a burst, chunks come faster than groups can close.
        if self.buf is not None and len(self.buf) and (final or (
                self._frontier() + self.settle < self.now and self.now >= self.last_score + self.window)):
            self.last_score = self.now
            self._score(final)
        return self._emit(final)

    def _score(self, final: bool) -> None:
        assert self.buf is not None
        groups, _ = self._buffer_groups()
        done = self.buf_done[groups.first_alert]
        ready = ~done & ((groups.last_seen + self.settle < self.now) | final)
        if ready.any():
            m = self.model
            feats = group_features(self.buf, groups, m.rule_stats, history=self.baseline, t0=self.t0,
                                   context_stats=m.context_stats)
            X = m.full_features(feats)
            prob = m.predict(X)
            disp = disposition(prob, feats.support, m.thresholds)
            r = np.nonzero(ready)[0]
            order = np.argsort(groups.of_alert, kind="stable")
            bounds = np.r_[0, np.cumsum(groups.count)]
            refs = [self.buf.ref[np.sort(order[bounds[i]:bounds[i + 1]])] for i in r.tolist()]
            seqs = [self.buf_seq[np.sort(order[bounds[i]:bounds[i + 1]])] for i in r.tolist()]
            tactics = np.empty(len(r), dtype=object)
            tactics[:] = [feats.tactics[i] for i in r.tolist()]
            self.pool.add(self.buf.take(groups.first_alert[r]), [np.stack([a, b.astype(object)]) for a, b in
                                                                  zip(refs, seqs, strict=True)],
                          count=groups.count[r], first_seen=groups.first_seen[r], last_seen=groups.last_seen[r],
                          X=X[r], prob=prob[r], disp=disp[r], rule=feats.rule[r], host=feats.host[r],
                          support=feats.support[r], tactics=tactics, base=feats.X[r])
            self.stats.groups_scored += len(r)
            self.buf_done |= ready[groups.of_alert]
            done = done | ready
        # Drop scored groups no open group needs as context; their counts go to the baseline.
        pending = ~done
        bound = groups.first_seen[pending].min() if pending.any() else self.now - self.settle
        drop = done & (groups.first_seen < bound - 2 * HOST_WINDOW) if not final else done
        if drop.any():
            d = np.nonzero(drop)[0]
            fa = groups.first_alert[d]
            hosts = np.where(self.buf.entities["host.name"][fa] == None,  # noqa: E711
                             self.buf.entities["host.ip"][fa], self.buf.entities["host.name"][fa])
            self.baseline.add(self.buf.rule[fa], hosts, np.log1p(groups.count[d].astype(np.float64)),
                              groups.first_seen[d])
            keep = ~drop[groups.of_alert]
            self.buf = self.buf.take(np.nonzero(keep)[0])
            self.buf_gid, self.buf_seq, self.buf_done = self.buf_gid[keep], self.buf_seq[keep], self.buf_done[keep]
            self.stats.max_baseline_keys = max(self.stats.max_baseline_keys, len(self.baseline))

    def _emit(self, final: bool) -> list[dict[str, Any]]:
        frame, c = self.pool.consolidate()
        if frame is None:
            return []
        ng = len(frame)
        self.stats.max_pool_groups = max(self.stats.max_pool_groups, ng)
        ar = np.arange(ng)
        groups = Groups(ar, ar, c["count"], c["first_seen"], c["last_seen"], np.zeros(ng, dtype=object))
        host_code = np.unique(np.where(c["host"] == None, "\0", c["host"]).astype(str),  # noqa: E711
                              return_inverse=True)[1].reshape(-1).astype(np.int64)
        feats = GroupFeatures(c["base"], c["rule"], c["host"], c["support"], list(c["tactics"]), host_code,
                              c["first_seen"], c["last_seen"])
        disp = c["disp"].copy()
        incidents = build_incidents(frame, groups, feats, c["X"], c["prob"], disp, self.model)
        # The earliest start any group still to be scored may have.
        frontier = np.inf if final else self._frontier()
        closed: list[Incident] = []
        for inc in incidents:
            start, end = float(groups.first_seen[inc.groups].min()), float(groups.last_seen[inc.groups].max())
            if inc.disposition == ESCALATE and not inc.deferred:  # a later escalation may bridge to it
                gap = max(CORRELATION_GAP, ABSORB_MARGIN, BRIDGE_GAP + CORRELATION_GAP)
            else:
                gap = DEFER_GAP
            if end + gap < frontier or frontier - start > self.max_incident_span:
                closed.append(inc)
        if not closed:
            return []
        closed.sort(key=lambda x: (groups.first_seen[x.groups].min(), x.deferred))
        out = []
        for inc in closed:
            self.n_incidents += 1
            inc.id = f"INC-{self.n_incidents:05d}"
            pairs = np.concatenate([self.pool.refs[i] for i in inc.groups], axis=1)
            o = np.argsort(pairs[1].astype(np.int64), kind="stable")
            out.append(incident_dict(inc, frame, groups, c["prob"], disp, pairs.shape[1], pairs[0][o].tolist()))
        gone = np.zeros(ng, dtype=bool)
        for inc in closed:
            gone[inc.groups] = True
        self.pool.keep(~gone)
        self.stats.incidents += len(out)
        return out

    def _frontier(self) -> float:
        """No group scored from now on starts before this."""
        if self.buf is None or not len(self.buf) or self.buf_done.all():
            return self.now - self.window
        return float(self.buf.ts[~self.buf_done].min())


def stream_triage(frames: Iterable[AlertFrame], model: RiskModel, **kw: Any) -> Iterator[dict[str, Any]]:
    """Incidents of a stream of time-ordered chunks, as they close."""
    st = StreamTriage(model, **kw)
    for chunk in frames:
        yield from st.push(chunk)
    yield from st.close()
