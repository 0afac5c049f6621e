"""Streaming triage: the same incidents as the batch, with state bounded by time, not by the stream."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from phagocyte.cli.app import app
from phagocyte.triage import triage
from phagocyte.triage.learn import learn
from phagocyte.triage.score import RiskModel
from phagocyte.triage.sources import AlertFrame, load_alerts
from phagocyte.triage.stream import MAX_INCIDENT_SPAN, Baseline, StreamTriage, chunks, concat_frames
from tests.conftest import evaldata
from tests.triage.conftest import write_stream


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[RiskModel, AlertFrame, Path]:
    d = tmp_path_factory.mktemp("streams")
    paths = {n: write_stream(d / f"net{n}_alerts.txt", n) for n in (1, 2, 3)}
    model, _, _ = learn([(paths[n].name, load_alerts([paths[n]], "ait-ads")[0]) for n in (1, 2)])
    return model, load_alerts([paths[3]], "ait-ads")[0], paths[3]


def _replay(frame: AlertFrame, copies: int) -> AlertFrame:
    """The stream again and again, a day apart (refs prefixed with the copy)."""
    span = float(frame.ts[-1] - frame.ts[0]) + 86400
    parts = []
    for k in range(copies):
        c = frame.take(np.arange(len(frame)))
        c.ts = c.ts + k * span
        c.ref = np.asarray([f"{k}/{r}" for r in c.ref], dtype=object)
        parts.append(c)
    return concat_frames(parts)


def _stream(frame: AlertFrame, model: RiskModel, size: int) -> tuple[list[dict[str, Any]], StreamTriage]:
    st = StreamTriage(model)
    out: list[dict[str, Any]] = []
    for c in chunks(frame, size):
        out += st.push(c)
    return out + st.close(), st


def _per_alert(incs: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for i in incs:
        for r in i["alert_refs"]:
            assert r not in out, "an alert in two incidents"
            out[r] = i["disposition"] + ("/deferred" if i["deferred"] else "")
    return out


def _analyst_items(incs: list[dict[str, Any]]) -> list[tuple[bool, tuple[str, ...]]]:
    return sorted((i["deferred"], tuple(sorted(i["alert_refs"]))) for i in incs if i["disposition"] == "escalate")


def _assert_same_as_batch(batch: list[dict[str, Any]], stream: list[dict[str, Any]]) -> None:
    a, b = _per_alert(batch), _per_alert(stream)
    assert a == b  # every alert, the same disposition
    assert _analyst_items(batch) == _analyst_items(stream)  # the same escalated and deferred incidents
    for i in stream:
        assert {"id", "score", "disposition", "alert_refs", "entities", "tactics", "first_seen", "last_seen",
                "summary", "reasons"} <= set(i)


@pytest.mark.parametrize("size", [1, 97, 1000, 10**6])
def test_stream_matches_batch_on_hand_written_streams(setup: tuple[RiskModel, AlertFrame, Path], size: int) -> None:
    model, frame, _ = setup
    if size == 1:  # one alert at a time is slow: the first day and the attack day only
        frame = frame.take(np.nonzero((frame.ts < frame.ts[0] + 6 * 3600) | (frame.ts > frame.ts[-1] - 8 * 3600))[0])
    batch = list(triage(frame, model).incident_dicts())
    stream, st = _stream(frame, model, size)
    _assert_same_as_batch(batch, stream)
    assert any(i["disposition"] == "escalate" and not i["deferred"] for i in stream)
    assert [i["id"] for i in stream] == [f"INC-{n:05d}" for n in range(1, len(stream) + 1)]
    # Routine noise is cut into pieces of about a day (the batch keeps one per rule and host): checked once
    # per chunk, against the start of the oldest group still open (up to its 6 h span + settling behind).
    chunk_span = max(float(c.ts[-1] - c.ts[0]) for c in chunks(frame, size))
    for i in stream:
        first = np.datetime64(i["first_seen"].rstrip("Z"))
        last = np.datetime64(i["last_seen"].rstrip("Z"))
        assert (last - first) / np.timedelta64(1, "s") <= MAX_INCIDENT_SPAN + chunk_span + st.settle + 6 * 3600
    assert st.stats.alerts == len(frame) and st.stats.incidents == len(stream)


def test_state_does_not_grow_with_the_stream(setup: tuple[RiskModel, AlertFrame, Path]) -> None:
    model, frame, _ = setup
    _, st1 = _stream(frame, model, 500)
    four = _replay(frame, 4)
    out, st4 = _stream(four, model, 500)
    # Over the replay too, the same result as the batch (which holds all four copies at once).
    _assert_same_as_batch(list(triage(four, model).incident_dicts()), out)
    # What is held is bounded by the horizon (hours of alerts), about the same for 1 and 4 copies (up to
    # one chunk more: chunks fall differently on the copies' boundaries).
    assert st1.stats.max_buffered_alerts < len(frame) / 2
    assert st4.stats.max_buffered_alerts <= st1.stats.max_buffered_alerts + 500
    assert st4.stats.max_pool_groups <= 1.25 * st1.stats.max_pool_groups < st4.stats.groups_scored / 4
    assert st4.stats.max_open_keys == st1.stats.max_open_keys
    assert st4.stats.max_baseline_keys == st1.stats.max_baseline_keys


def test_baseline_is_capped_and_forgets_the_oldest() -> None:
    b = Baseline(cap=8)
    for t in range(20):
        b.add(np.array([f"r{t}"], dtype=object), np.array(["h"], dtype=object), np.array([1.0]), np.array([t]))
    assert len(b.pair) <= 8 and len(b.rule) <= 8
    n_rh, s_rh, n_r, bins = b(np.array(["r19", "r0"], dtype=object), np.array(["h", "h"], dtype=object))
    assert n_rh.tolist() == [1.0, 0.0] and s_rh.tolist() == [1.0, 0.0] and n_r.tolist() == [1.0, 0.0]
    assert bins.tolist() == [1, 0]  # r19 was seen at 19 s after midnight: the first 30-min bin


def test_unsorted_and_empty_chunks(setup: tuple[RiskModel, AlertFrame, Path]) -> None:
    model, frame, _ = setup
    st = StreamTriage(model)
    out = st.push(frame.take(np.arange(0)))
    for c in chunks(frame, 400):
        out += st.push(c.take(np.arange(len(c))[::-1]))  # reversed inside each chunk
    out += st.close()
    _assert_same_as_batch(list(triage(frame, model).incident_dicts()), out)


def test_cli_stream(setup: tuple[RiskModel, AlertFrame, Path], tmp_path: Path) -> None:
    model, frame, path = setup
    md = tmp_path / "model"
    model.save(md)
    outp = tmp_path / "incidents.jsonl"
    r = CliRunner().invoke(app, ["triage", "--model", str(md), "--stream", "--chunk", "300", str(path),
                                 "--out", str(outp)])
    assert r.exit_code == 0, r.output
    incs = [json.loads(line) for line in outp.read_text().splitlines()]
    refs = [x for i in incs for x in i["alert_refs"]]
    assert len(refs) == len(set(refs)) == len(frame)
    assert Counter(i["disposition"] for i in incs)["escalate"] >= 1
    assert "n3-web" in json.dumps([i["entities"] for i in incs if i["disposition"] == "escalate"])


@pytest.mark.evaldata
def test_stream_matches_batch_on_ait_ads() -> None:
    root = evaldata("ait_ads") / "alerts_csv"
    train, _ = load_alerts([root / "shaw_alerts.txt"], "ait-ads")
    test, _ = load_alerts([root / "russellmitchell_alerts.txt"], "ait-ads")
    model, _, _ = learn([("shaw", train)])
    batch = list(triage(test, model).incident_dicts())
    stream, st = _stream(test, model, 5_000)
    _assert_same_as_batch(batch, stream)
    assert st.stats.max_buffered_alerts < len(test) / 2


def test_cli_stream_on_garbage(setup: tuple[RiskModel, AlertFrame, Path], tmp_path: Path) -> None:
    model, _, _ = setup
    md = tmp_path / "model"
    model.save(md)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"timestamp": "x", "alert": \xff\xfe' + b"\x00" * 100 + b"\n{]\n")
    outp = tmp_path / "incidents.jsonl"
    r = CliRunner().invoke(app, ["triage", "--model", str(md), "--stream", str(bad), "--out", str(outp)])
    assert r.exit_code == 0, r.output
    assert outp.read_text() == ""
    assert StreamTriage(model).close() == []
