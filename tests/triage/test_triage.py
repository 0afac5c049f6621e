"""Triage end to end on hand-written streams: suppression, scoring, dispositions, correlation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from phagocyte.cli.app import app
from phagocyte.triage import triage
from phagocyte.triage.correlate import correlate, merge, split
from phagocyte.triage.evaluate import metrics
from phagocyte.triage.learn import FP, TP, alert_truth, apply_verdicts, group_labels, learn
from phagocyte.triage.score import AUTO_CLOSE, DEFER, ESCALATE, RiskModel, Thresholds, disposition
from phagocyte.triage.sources import load_alerts
from phagocyte.triage.suppress import SuppressionConfig, suppress
from tests.triage.conftest import ATTACK, HEADER, write_stream

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("streams")
    return {n: write_stream(d / f"net{n}_alerts.txt", n) for n in (1, 2, 3)}


@pytest.fixture(scope="module")
def model(streams: dict[int, Path]) -> tuple[RiskModel, np.ndarray, np.ndarray]:
    frames = [(p.name, load_alerts([p], "ait-ads")[0]) for n, p in streams.items() if n != 3]
    return learn(frames)


def test_alert_refs_are_physical_lines(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(HEADER + "\n1700000000,Wazuh: a,10.0.0.1,h1,W-A,false_positive,-\n"
                 "1700000001,Wazuh: b,10.0.0.1,h1,W-B,dirb,dirb\n")
    frame, _ = load_alerts([p], "ait-ads")
    assert frame.ref.tolist() == ["x.csv:2", "x.csv:3"]
    assert alert_truth(frame).tolist() == [0, 1]


@pytest.mark.parametrize(("fmt", "path", "n"), [
    ("eve", FIX / "suricata_eve" / "eve.json", 1), ("auto", FIX / "suricata_eve" / "eve.json", 1),
    ("wazuh", FIX / "wazuh" / "alerts.json", None),
])
def test_imported_tool_alerts_load(fmt: str, path: Path, n: int | None) -> None:
    frame, _ = load_alerts([path], fmt)
    assert len(frame) == (n if n is not None else sum(1 for line in path.open() if line.strip()))
    assert all(r.startswith(path.name + ":") for r in frame.ref)
    lines = path.read_text().splitlines()
    for ref, rule in zip(frame.ref, frame.rule, strict=True):  # the cited line holds that alert
        rid = rule.split(":", 1)[1]
        assert rid in lines[int(ref.rsplit(":", 1)[1]) - 1]


def test_suppression_groups_identical_alerts_in_a_window(streams: dict[int, Path]) -> None:
    frame, _ = load_alerts([streams[1]], "ait-ads")
    g = suppress(frame)
    # every alert is in exactly one group, and the counts add up
    assert g.count.sum() == len(frame)
    assert np.all(g.first_seen <= g.last_seen)
    # the 400 web errors (4 per second) are one group; ClamAV every 600 s (> window) is one group each
    web = [i for i in range(len(g)) if frame.rule[g.first_alert[i]] == "ait_ads:W-Acc-400"]
    assert len(web) == 1 and g.count[web[0]] == 400
    cav = [i for i in range(len(g)) if frame.rule[g.first_alert[i]] == "ait_ads:W-Sys-Cav"]
    assert len(cav) == 3 * 86400 // 600
    # a per-rule window joins them; max_span bounds how long one group may grow
    g2 = suppress(frame, SuppressionConfig(per_rule={"ait_ads:W-Sys-Cav": {"window": 700, "max_span": 86400}}))
    cav2 = [i for i in range(len(g2)) if frame.rule[g2.first_alert[i]] == "ait_ads:W-Sys-Cav"]
    assert len(cav2) == 3
    assert max(g2.last_seen[i] - g2.first_seen[i] for i in cav2) <= 86400


def test_learned_model_escalates_the_attack_in_a_new_network(streams: dict[int, Path],
                                                           model: tuple[RiskModel, np.ndarray, np.ndarray]) -> None:
    m, _, y = model
    assert m.verdicts == len(y) > 0 and set(np.unique(y)) == {0, 1}
    frame, _ = load_alerts([streams[3]], "ait-ads")
    res = triage(frame, m)
    mt = metrics(res)
    assert mt["attack_recall"] == 1.0
    assert mt["steps_surfaced"] == sorted({s for *_, s in ATTACK})
    assert mt["noise_suppression"] == 1.0
    assert mt["incident_precision"] == 1.0
    assert mt["escalated_incidents"] == 1  # one host, one chain: one incident
    assert mt["first_attack_position"] == 1
    inc = next(res.incident_dicts())
    for key in ("id", "score", "disposition", "alert_refs", "entities", "tactics", "first_seen", "last_seen",
                "summary", "reasons"):
        assert key in inc
    assert inc["disposition"] == "escalate" and inc["entities"]["host.name"] == ["n3-web"]
    assert len(inc["alert_refs"]) == sum(c for _, _, _, c, _ in ATTACK)
    assert "TA0004" in inc["tactics"] and inc["reasons"]
    # routine noise is closed or monitored, never escalated
    assert {d for d in res.group_disposition[group_labels(frame, res.groups) == 0]} <= {AUTO_CLOSE, "monitor"}


def test_unseen_rules_are_never_auto_closed(streams: dict[int, Path]) -> None:
    frame, _ = load_alerts([streams[1]], "ait-ads")
    res = triage(frame, RiskModel.untrained())
    assert set(res.group_disposition.tolist()) == {DEFER}
    assert all(i.disposition == ESCALATE and i.deferred for i in res.incidents)
    # even a model that is sure of "benign" defers a rule without verdicts
    d = disposition(np.array([0.0, 0.0, 0.9]), np.array([0, 100, 0]), Thresholds())
    assert d.tolist() == [DEFER, AUTO_CLOSE, ESCALATE]


def test_model_round_trip_and_bad_model(tmp_path: Path, model: tuple[RiskModel, np.ndarray, np.ndarray]) -> None:
    m, X, y = model
    m.save(tmp_path / "m", X, y)
    m2 = RiskModel.load(tmp_path / "m")
    assert np.allclose(m2.predict(X), m.predict(X))
    assert RiskModel.training_set(tmp_path / "m")[1].tolist() == y.tolist()  # type: ignore[index]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text('{"format": "x"}')
    with pytest.raises(ValueError):
        RiskModel.load(tmp_path / "bad")


def test_verdicts_update_the_model_and_propose_narrow_suppressions(
        streams: dict[int, Path], model: tuple[RiskModel, np.ndarray, np.ndarray]) -> None:
    m, X, y = model
    frame, _ = load_alerts([streams[3]], "ait-ads")
    res = triage(frame, m)
    web = next(i for i in res.incidents if not i.deferred)
    noise = int(np.nonzero(group_labels(frame, res.groups) == 0)[0][0])
    new, proposals, _, y2 = apply_verdicts(m, frame, {**dict.fromkeys(web.groups, TP), noise: FP}, (X, y))
    assert new.verdicts == len(y) + len(web.groups) + 1 == len(y2)
    assert len(proposals) == 1 and proposals[0]["host"] and proposals[0]["rule"] == frame.rule[
        res.groups.first_alert[noise]]
    with pytest.raises(ValueError):
        apply_verdicts(m, frame, {0: "maybe"})


def test_correlation_links_shared_entities_within_the_gap_and_merge_split(streams: dict[int, Path]) -> None:
    frame, _ = load_alerts([streams[1]], "ait-ads")
    g = suppress(frame)
    web = np.nonzero(np.char.startswith(frame.entities["host.name"][g.first_alert].astype(str), "n1-web"))[0]
    incs = correlate(frame, g, web)
    assert len(incs) == 1 and sorted(incs[0]) == sorted(web.tolist())
    assert len(correlate(frame, g, web, gap=1.0)) > 1  # the chain spans more than a second between steps
    mail = np.nonzero(frame.entities["host.name"][g.first_alert] == "n1-mail")[0][:2]
    both = correlate(frame, g, np.r_[web, mail])
    assert len(both) >= 2  # other host, other time: not linked
    merged = merge(both, 0, 1)
    assert len(merged) == len(both) - 1
    parted = split(merged, 0, merged[0][:1])
    assert len(parted) == len(both) and parted[-1] == merged[0][:1]
    with pytest.raises(ValueError):
        split(merged, 0, merged[0])


def test_cli_contract(streams: dict[int, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    md = tmp_path / "model"
    r = runner.invoke(app, ["triage", "learn", "--model", str(md), "--format", "ait-ads",
                            str(streams[1]), str(streams[2])])
    assert r.exit_code == 0, r.output
    out = tmp_path / "incidents.jsonl"
    r = runner.invoke(app, ["triage", "--model", str(md), str(streams[3]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    incs = [json.loads(line) for line in out.read_text().splitlines()]
    assert incs[0]["disposition"] == "escalate" and not incs[0]["deferred"]
    assert {i["disposition"] for i in incs} <= {"escalate", "monitor", "auto_close"}
    lines = streams[3].read_text().splitlines()
    refs = [r for i in incs for r in i["alert_refs"]]
    assert len(refs) == len(set(refs)) == len(lines) - 1  # every alert in exactly one incident
    name, line = incs[0]["alert_refs"][0].rsplit(":", 1)
    assert name == streams[3].name and "n3-web" in lines[int(line) - 1]
    r = runner.invoke(app, ["triage", "verdict", "--model", str(md), str(streams[3]),
                            "--verdict", f"{incs[-1]['id']}=false_positive"])
    assert r.exit_code == 0, r.output
    assert json.loads((md / "model.json").read_text())["proposals"]
    r = runner.invoke(app, ["triage", "--model", str(tmp_path / "nomodel"), str(streams[3])])
    assert r.exit_code == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_garbage_never_crashes(tmp_path: Path, blob: bytes) -> None:
    p = tmp_path / "g.txt"
    p.write_bytes(HEADER.encode() + b"\n" + blob)
    frame, _ = load_alerts([p], "ait-ads")
    res = triage(frame, RiskModel.untrained())
    assert sum(len(i.groups) for i in res.incidents) == len(res.groups)


def test_ecs_alerts_and_phago_run_hook(tmp_path: Path) -> None:
    """Generic ECS alert JSON lines are triaged, and `phago run` writes the incidents of the store."""
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"@timestamp": f"2026-01-01T10:00:{i:02d}Z", "event": {"kind": "alert", "module": "edr"},
                         "rule": {"id": "R1", "name": "Credential dumping"}, "host": {"name": "ws-1"},
                         "user": {"name": "bob"}}) for i in range(3)]
    (src / "alerts.ndjson").write_text("\n".join(lines) + "\n")
    frame, _ = load_alerts([src / "alerts.ndjson"], "ecs")
    assert len(frame) == 3 and frame.ref.tolist() == ["alerts.ndjson:1", "alerts.ndjson:2", "alerts.ndjson:3"]
    assert len(suppress(frame)) == 1
    home = tmp_path / "home"
    r = CliRunner().invoke(app, ["run", "--home", str(home), str(src)])
    assert r.exit_code == 0, r.output
    incs = [json.loads(x) for x in (home / "reports" / "incidents.jsonl").read_text().splitlines()]
    assert len(incs) == 1 and incs[0]["deferred"] and incs[0]["disposition"] == "escalate"  # no model: a human
    assert incs[0]["entities"]["host.name"] == ["ws-1"] and len(incs[0]["alert_refs"]) == 3


def test_learning_budget_counts_the_verdicts_used(streams: dict[int, Path]) -> None:
    frames = [(p.name, load_alerts([p], "ait-ads")[0]) for n, p in streams.items() if n != 3]
    _, _, y_full = learn(frames)
    small, _, y = learn(frames, budget=len(y_full) // 2, seed=1)
    assert small.verdicts == len(y) == len(y_full) // 2
    assert sum(a + b for a, b in small.rule_stats.values()) == len(y)  # priors only from those verdicts


def test_phago_run_survives_a_broken_model(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.ndjson").write_text(json.dumps({"@timestamp": "2026-01-01T10:00:00Z", "event": {"kind": "alert"},
                                              "rule": {"id": "R1", "name": "x"}, "host": {"name": "h"}}) + "\n")
    home = tmp_path / "home"
    (home / "triage-model").mkdir(parents=True)
    (home / "triage-model" / "model.json").write_text("{not json")
    r = CliRunner().invoke(app, ["run", "--home", str(home), str(src)])
    assert r.exit_code == 0, r.output
    assert "triage skipped" in r.output and list((home / "reports").glob("run-*.md"))
