"""Suppression: identical alerts (same rule, same key entities) close in time become one group.

A group stays open while its alerts keep coming within `window` seconds of each other and is
closed after `max_span` seconds whatever happens, so the state one key holds is bounded by time
(a streaming implementation evicts a key once `window` has passed since its last alert). Keys and
windows can be set per rule (`rule` value such as `ait_ads:W-Sys-Dov`) or per source module
(`wazuh`). Vectorised: one stable sort, no Python loop over alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phagocyte.triage.sources import ENTITY_FIELDS, AlertFrame

__all__ = ["Groups", "SuppressionConfig", "alert_keys", "suppress"]

DEFAULT_KEYS: tuple[str, ...] = ("host.name", "host.ip", "source.ip", "destination.ip", "user.name",
                                 "file.hash.sha256", "destination.domain")


@dataclass(frozen=True)
class SuppressionConfig:
    """Default key entities and windows, with overrides per rule or per source module."""

    keys: tuple[str, ...] = DEFAULT_KEYS
    window: float = 300.0
    """A gap longer than this (seconds) between two identical alerts starts a new group."""
    max_span: float = 6 * 3600.0
    """No group spans longer than this: long-running noise is cut into bounded pieces."""
    per_rule: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    """`{"ait_ads:W-Sys-Dov": {"window": 3600, "keys": ["host.name"]}, "wazuh": {...}}`."""

    def to_dict(self) -> dict[str, object]:
        return {"keys": list(self.keys), "window": self.window, "max_span": self.max_span,
                "per_rule": {k: dict(v) for k, v in self.per_rule.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> SuppressionConfig:
        keys = d.get("keys", DEFAULT_KEYS)
        per_rule = d.get("per_rule", {})
        return cls(keys=tuple(keys) if isinstance(keys, list | tuple) else DEFAULT_KEYS,
                   window=float(d.get("window", 300.0)),  # type: ignore[arg-type]
                   max_span=float(d.get("max_span", 6 * 3600.0)),  # type: ignore[arg-type]
                   per_rule=per_rule if isinstance(per_rule, dict) else {})


@dataclass
class Groups:
    """One row per group; `of_alert[i]` is the group of alert i."""

    of_alert: np.ndarray
    first_alert: np.ndarray  # index of the group's first alert (its rule and entities)
    count: np.ndarray
    first_seen: np.ndarray
    last_seen: np.ndarray
    key: np.ndarray  # object: the group key string (rule + key entities)

    def __len__(self) -> int:
        return len(self.count)


def suppress(frame: AlertFrame, config: SuppressionConfig | None = None) -> Groups:
    """Group the alerts of a frame (sorted by time)."""
    cfg = config or SuppressionConfig()
    n = len(frame)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return Groups(e, e, e, np.zeros(0), np.zeros(0), np.zeros(0, dtype=object))
    enc = pc.dictionary_encode(pa.array(frame.rule, pa.string()))
    rule_codes = enc.dictionary.to_pylist()
    rule_inv = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    window = np.full(n, cfg.window)
    max_span = np.full(n, cfg.max_span)
    default = tuple(k for k in cfg.keys if k in ENTITY_FIELDS)
    rule_keys: list[tuple[str, ...]] = []
    for ci, name in enumerate(rule_codes):
        module = name.split(":", 1)[0]
        over = cfg.per_rule.get(name) or cfg.per_rule.get(module) or {}
        mask = rule_inv == ci
        if "window" in over:
            window[mask] = float(over["window"])  # type: ignore[arg-type]
        if "max_span" in over:
            max_span[mask] = float(over["max_span"])  # type: ignore[arg-type]
        keys = over.get("keys")
        rule_keys.append(tuple(k for k in keys if k in ENTITY_FIELDS) if isinstance(keys, list | tuple) else default)
    # One string key per alert (rule + its key entities), hashed by Arrow: all in C.
    combined = np.zeros(n, dtype=np.int64)
    rule_arr = pa.array(frame.rule, pa.string())
    for j, ks in enumerate(sorted(set(rule_keys))):
        cols = [rule_arr, *(pa.array(frame.entities[k], pa.string(), from_pandas=True) for k in ks)]
        joined = pc.binary_join_element_wise(*cols, "\x1f", null_handling="replace", null_replacement="")
        idx = np.asarray(pc.dictionary_encode(joined).indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        mask = np.isin(rule_inv, [ci for ci, k in enumerate(rule_keys) if k == ks])
        combined[mask] = idx[mask] + j * n
    order = np.lexsort((frame.ts, combined))
    k_sorted, t_sorted = combined[order], frame.ts[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (k_sorted[1:] != k_sorted[:-1]) | (t_sorted[1:] - t_sorted[:-1] > window[order][1:])
    # Cut groups longer than max_span into consecutive slices of max_span from the group's start.
    gid = np.cumsum(new) - 1
    starts = np.nonzero(new)[0]
    span = t_sorted - t_sorted[starts][gid]
    piece = np.floor(span / max_span[order]).astype(np.int64)
    if piece.any():
        new[1:] |= piece[1:] != piece[:-1]
        gid = np.cumsum(new) - 1
        starts = np.nonzero(new)[0]
    ng = len(starts)
    of_alert = np.empty(n, dtype=np.int64)
    of_alert[order] = gid
    # Number groups by their first alert's time, so group ids read as a timeline.
    first_alert = order[starts]
    relabel = np.argsort(first_alert, kind="stable")
    inverse = np.empty(ng, dtype=np.int64)
    inverse[relabel] = np.arange(ng)
    of_alert = inverse[of_alert]
    first_alert = first_alert[relabel]
    count = np.bincount(of_alert, minlength=ng)
    first_seen = frame.ts[first_alert]
    ends = np.r_[starts[1:] - 1, n - 1]
    last_seen = t_sorted[ends][relabel]
    key = np.asarray([frame.rule[i] + "|" + "|".join(str(frame.entities[k][i] or "") for k in rule_keys[rule_inv[i]])
                      for i in first_alert], dtype=object)
    return Groups(of_alert, first_alert, count, first_seen, last_seen, key)


def alert_keys(frame: AlertFrame, config: SuppressionConfig) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The group key of every alert as (distinct keys, code of each alert), with its window and max span.

    Same keys as `suppress` (rule + the rule's key entities), as strings, so that a stream can match
    them against the groups it holds open from earlier chunks."""
    n = len(frame)
    enc = pc.dictionary_encode(pa.array(frame.rule, pa.string()))
    rule_codes = enc.dictionary.to_pylist()
    rule_inv = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    window = np.full(n, config.window)
    max_span = np.full(n, config.max_span)
    default = tuple(k for k in config.keys if k in ENTITY_FIELDS)
    by_keys: dict[tuple[str, ...], list[int]] = {}
    for ci, name in enumerate(rule_codes):
        over = config.per_rule.get(name) or config.per_rule.get(name.split(":", 1)[0]) or {}
        mask = rule_inv == ci
        if "window" in over:
            window[mask] = float(over["window"])  # type: ignore[arg-type]
        if "max_span" in over:
            max_span[mask] = float(over["max_span"])  # type: ignore[arg-type]
        keys = over.get("keys")
        ks = tuple(k for k in keys if k in ENTITY_FIELDS) if isinstance(keys, list | tuple) else default
        by_keys.setdefault(ks, []).append(ci)
    joined = np.empty(n, dtype=object)
    rule_arr = pa.array(frame.rule, pa.string())
    for ks, codes in by_keys.items():
        cols = [rule_arr, *(pa.array(frame.entities[k], pa.string(), from_pandas=True) for k in ks)]
        j = pc.binary_join_element_wise(*cols, "\x1f", null_handling="replace", null_replacement="")
        mask = np.isin(rule_inv, codes)
        joined[mask] = np.asarray(j.to_numpy(zero_copy_only=False), dtype=object)[mask]
    enc2 = pc.dictionary_encode(pa.array(joined, pa.string()))
    return (enc2.dictionary.to_pylist(), np.asarray(enc2.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            window, max_span)
