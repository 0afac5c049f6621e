"""AIT-ADS reader: the four real scenario files, hand-written variants, bad input and fuzzing."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.readers.ait_ads import AitAdsReader
from tests.conftest import FIXTURES, assert_event, evaldata, rows, run_ingest, small_limits

FIX = FIXTURES / "ait_ads"
HEADER = "time,name,ip,host,short,time_label,event_label"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _alert(line: int, epoch: int, name: str, ip: str, host: str, short: str, tl: str, el: str,
           product: str, vendor: str) -> dict[str, object]:
    return {
        "log.file.line": line, "@timestamp": _at(epoch), "rule.name": name, "message": name, "rule.id": short,
        "host.ip": ip, "host.name": host, "related.ip": [ip], "observer.product": product,
        "observer.vendor": vendor, "tags": [f"time_label:{tl}", f"event_label:{el}"], "event.kind": "alert",
        "event.dataset": "ait_ads.alerts", "event.module": "ait_ads", "event.category": ["intrusion_detection"],
        "event.type": ["info"],
        "event.original": ",".join([str(epoch), name, ip, host, short, tl, el]),
    }


def _by_line(store, where: str = "true", lines: tuple[int, ...] = ()) -> dict[int, dict[str, object]]:
    if lines:
        where += f' and "log.file.line" in {lines}'
    return {r["log.file.line"]: r for r in rows(store, f"select * from events where {where}")}


def _quarantine(store) -> list[dict[str, object]]:
    return rows(store, "select * from quarantine order by line")


# --- real data ------------------------------------------------------------------------------------


def _check_counts(files: list[Path], report, store) -> None:
    """Stored rows per file = its lines minus the header (plain Python), zero quarantined, one
    distinct event per physical line."""
    assert report.quarantined == 0
    assert {r.reader for r in report.results} == {"ait_ads"}
    got = {r["p"]: r for r in rows(store, 'select "log.file.path" p, count(*) n, count(distinct "log.file.line") d, '
                                        'min("log.file.line") lo, max("log.file.line") hi from events group by 1')}
    for f in files:
        with f.open(encoding="utf-8") as fh:
            n = sum(1 for _ in fh) - 1
        assert got[str(f)] == {"p": str(f), "n": n, "d": n, "lo": 2, "hi": n + 1}


@pytest.mark.evaldata
def test_small_scenarios_counts_and_exact_rows(settings) -> None:
    root = evaldata("ait_ads") / "alerts_csv"
    files = [root / "russellmitchell_alerts.txt", root / "shaw_alerts.txt"]
    report, store = run_ingest(files, settings)
    _check_counts(files, report, store)
    rm = _by_line(store, """"log.file.path" like '%russellmitchell_alerts.txt'""", (2, 100, 33191, 41490))
    assert_event(rm[2], _alert(2, 1642723347, "Wazuh: ClamAV database update", "172.19.130.4", "mail",
                               "W-Sys-Cav", "false_positive", "-", "Wazuh", "Wazuh"))
    assert_event(rm[100], _alert(100, 1642742644, "Suricata: Alert - SURICATA TLS invalid record/traffic",
                                 "172.19.128.1", "inet-firewall", "S-Tls-Rec", "false_positive", "-", "Suricata",
                                 "OISF"))
    assert_event(rm[33191], _alert(33191, 1642999078, "Wazuh: Successful sudo to ROOT executed.", "10.143.2.4",
                                   "intranet_server", "W-Aut-Sud", "privilege_escalation", "escalated_sudo_command",
                                   "Wazuh", "Wazuh"))
    assert_event(rm[41490], _alert(41490, 1642723201, "AMiner: New event type.", "172.19.130.106", "cloud_share",
                                   "A-All-Evt", "false_positive", "-", "AMiner", "AIT"))
    assert rm[2]["log.offset"] == len(HEADER) + 1
    shaw = _by_line(store, """"log.file.path" like '%shaw_alerts.txt'""", (44229, 49422, 50067, 68541))
    assert_event(shaw[44229], _alert(44229, 1643467132, "Wazuh: Web server 400 error code.", "192.168.188.179",
                                     "intranet_server", "W-Acc-400", "wpscan", "wpscan", "Wazuh", "Wazuh"))
    assert_event(shaw[49422], _alert(49422, 1643467478, "Suricata: Alert - SURICATA TLS invalid record/traffic",
                                     "172.27.180.4", "inet-firewall", "S-Tls-Rec", "cracking", "-", "Suricata",
                                     "OISF"))
    assert_event(shaw[50067], _alert(50067, 1643469651, "Wazuh: User successfully changed UID.",
                                     "192.168.188.179", "intranet_server", "W-Aut-Uid", "privilege_escalation",
                                     "attacker_change_user", "Wazuh", "Wazuh"))
    assert_event(shaw[68541], _alert(68541, 1643068801, "AMiner: New event type.", "10.38.242.230", "cloud_share",
                                     "A-All-Evt", "false_positive", "-", "AMiner", "AIT"))


@pytest.mark.evaldata
@pytest.mark.slow
def test_big_scenarios_counts_products_and_labels(settings) -> None:
    root = evaldata("ait_ads") / "alerts_csv"
    files = [root / "fox_alerts.txt", root / "wheeler_alerts.txt"]
    t0 = time.perf_counter()
    report, store = run_ingest(files, settings)
    seconds = time.perf_counter() - t0
    _check_counts(files, report, store)
    print(f"\nait_ads: {report.events} alerts in {seconds:.1f} s ({report.events / seconds:,.0f} events/s)")
    # Independent tallies with the csv module: tool per alert, and the two labels.
    products: Counter[str] = Counter()
    labels: Counter[tuple[str, str]] = Counter()
    for f in files:
        with f.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                products[row["name"].split(":", 1)[0]] += 1
                labels[(row["time_label"], row["event_label"])] += 1
    got = {r["p"]: r["n"] for r in rows(store, 'select "observer.product" p, count(*) n from events group by 1')}
    assert got == dict(products)
    got_labels = {(r["t"][0].removeprefix("time_label:"), r["t"][1].removeprefix("event_label:")): r["n"]
                  for r in rows(store, 'select tags t, count(*) n from events group by 1')}
    assert got_labels == dict(labels)
    first = rows(store, """select * from events where "log.file.line" = 2 and "log.file.path" like '%fox_alerts.txt'""")
    assert_event(first[0], _alert(2, 1642213952, "Wazuh: ClamAV database update", "172.17.131.81", "mail",
                                  "W-Sys-Cav", "false_positive", "-", "Wazuh", "Wazuh"))


# --- fixtures -------------------------------------------------------------------------------------


def test_sniff() -> None:
    r = AitAdsReader()
    body = (FIX / "variants.csv").read_bytes()
    assert r.sniff(body, "x.txt") == 100
    assert r.sniff(codecs.BOM_UTF8 + body, "x.txt") == 100
    assert r.sniff(body.replace(b"\n", b"\r\n"), "x.txt") == 100
    assert r.sniff(codecs.BOM_UTF16_LE + body.decode().encode("utf-16-le"), "x.txt") == 100
    assert r.sniff(b"time,name,ip,host,short,time_label\n1,a,b,c,d,e\n", "x.txt") == 0
    assert r.sniff(b"time,name,ip,host,short,time_label,event_label,extra\n", "x.txt") == 0
    assert r.sniff(b"", "x.txt") == 0


def test_variants_quoting_and_mapping(settings) -> None:
    report, store = run_ingest([FIX / "variants.csv"], settings)
    assert report.events == 9 and report.quarantined == 0
    ev = _by_line(store)
    assert sorted(ev) == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert_event(ev[4], _alert(4, 1642742644, "Suricata: Alert - ET SCAN Possible Nmap User-Agent Observed",
                               "172.19.128.1", "inet-firewall", "S-Scn-Nmp", "network_scans", "dns_scan",
                               "Suricata", "OISF"))
    name = "Wazuh: Multiple web server 400 error codes from same source ip, possible scan"
    assert_event(ev[6], {"rule.name": name, "observer.product": "Wazuh", "host.name": "intranet_server",
                         "tags": ["time_label:dirb", "event_label:dirb"]})
    assert ev[6]["event.original"] == (FIX / "variants.csv").read_text().splitlines()[5]
    assert_event(ev[7], {"rule.name": 'Suricata: Alert - ET WEB_SERVER "cmd.exe" In URI, Possible Command Execution',
                         "rule.id": "S-Web-Cmd", "observer.vendor": "OISF"})
    assert_event(ev[8], {"@timestamp": datetime(2022, 1, 21, 21, 20, 2, 250000, tzinfo=UTC), "host.ip": None,
                         "host.name": None, "related.ip": None, "rule.id": "W-Sys-Rck"})
    assert_event(ev[9], {"rule.name": "AMiner: Value in audit log\nspans two lines", "observer.product": "AMiner",
                         "rule.id": "A-Aud-Val", "tags": ["time_label:cracking", "event_label:crack_passwords"]})
    assert ev[9]["event.original"].count("\n") == 1
    assert_event(ev[11], {"observer.product": None, "observer.vendor": None, "log.file.line": 11,
                          "tags": ["time_label:service_stop", "event_label:-"]})


def test_record_spanning_a_block_boundary(settings) -> None:
    small = dataclasses.replace(settings, limits=small_limits(batch_rows=3))
    report, store = run_ingest([FIX / "variants.csv"], small)
    assert report.events == 9 and report.quarantined == 0
    assert _by_line(store)[9]["rule.name"] == "AMiner: Value in audit log\nspans two lines"


def test_other_column_order_and_no_header(settings, tmp_path: Path) -> None:
    reordered = tmp_path / "reordered.csv"
    reordered.write_text("short,time,name,host,ip,event_label,time_label\n"
                         "W-Sys-Cav,1642723347,Wazuh: ClamAV database update,mail,172.19.130.4,-,false_positive\n")
    bare = tmp_path / "bare.csv"
    bare.write_text("1642723347,Wazuh: ClamAV database update,172.19.130.4,mail,W-Sys-Cav,false_positive,-\n")
    report, store = run_ingest([reordered, bare], settings, format="ait_ads")
    assert report.events == 2 and report.quarantined == 0
    no_header = {"no AIT-ADS header line; columns read in the standard order": 1}
    assert [r.warnings for r in report.results] == [{}, no_header]
    expected = {"rule.id": "W-Sys-Cav", "host.name": "mail", "host.ip": "172.19.130.4",
                "@timestamp": _at(1642723347), "tags": ["time_label:false_positive", "event_label:-"]}
    got = _by_line(store, """"log.file.path" like '%reordered.csv'""")
    assert list(got) == [2]
    assert_event(got[2], expected)
    got = _by_line(store, """"log.file.path" like '%bare.csv'""")
    assert list(got) == [1]
    assert_event(got[1], expected)


# --- bad input ------------------------------------------------------------------------------------

GOOD = "1642723347,Wazuh: ClamAV database update,172.19.130.4,mail,W-Sys-Cav,false_positive,-"


def test_bad_rows_are_quarantined(settings, tmp_path: Path) -> None:
    f = tmp_path / "bad_alerts.txt"
    f.write_bytes("\n".join([
        HEADER,                                                  # 1
        GOOD,                                                    # 2
        "1642723348,too,few,fields",                             # 3
        "yesterday,Wazuh: x,1.2.3.4,h,W-X,false_positive,-",     # 4: time is not epoch seconds
        "",                                                      # 5: blank, skipped
        GOOD.replace("mail", "m\xe9l"),                          # 6: Latin-1 byte (written below)
        "1642723349,a,b,c,d,e,f,g",                              # 7: eight fields
        GOOD,                                                    # 8
        '1642723350,"Wazuh: stray quote,1.2.3.4,h,W-X,fp,-',     # 9: quote never closed
        GOOD,                                                    # 10: read again after 9
    ]).encode("latin-1") + b"\n")
    report, store = run_ingest([f], settings)
    ev = _by_line(store)
    assert sorted(ev) == [2, 6, 8, 10]
    assert ev[6]["host.name"] == "m\xe9l"
    assert report.results[0].warnings == {"lines not UTF-8, decoded as Latin-1": 1}
    assert [(r["line"], r["reason"]) for r in _quarantine(store)] == [
        (3, "CSV: 4 fields, expected 7"),
        (4, "AIT-ADS: time 'yesterday' is not epoch seconds"),
        (7, "CSV: 8 fields, expected 7"),
        (9, "CSV: quoted field not closed"),
    ]


def test_quoted_rows_with_bad_fields(settings, tmp_path: Path) -> None:
    f = tmp_path / "q_alerts.txt"
    f.write_text("\n".join([
        HEADER,
        '1642723350,"Wazuh: a, b",1.2.3.4,h,W-X,fp',             # 2: quoted, six fields
        '1642723351,"Wazuh: ok",1.2.3.4,h,W-X,fp,-',             # 3: good
        '1642723352,"Wazuh: a"b"c",1.2.3.4,h,W-X,fp,-',          # 4: text after a closing quote
        '1642723353,"Wazuh: opens',                              # 5: a record over two lines ...
        'closes",1.2.3.4,h',                                     # 6: ... of four fields; 6 is read again
        GOOD,                                                    # 7: and as 6 never closes, 7 too
    ]) + "\n")
    report, store = run_ingest([f], settings)
    assert sorted(_by_line(store)) == [3, 7]
    assert [(r["line"], r["reason"]) for r in _quarantine(store)] == [
        (2, "CSV: 6 fields, expected 7"),
        (4, "CSV: ',' expected after '\"'"),
        (5, "CSV: 4 fields, expected 7"),
        (6, "CSV: quoted field not closed"),
    ]
    assert report.quarantined == 4


def test_empty_header_only_utf16_and_binary(settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    header_only = tmp_path / "header_alerts.txt"
    header_only.write_text(HEADER + "\n")
    u16 = tmp_path / "u16_alerts.txt"
    u16.write_bytes(codecs.BOM_UTF16_LE + f"{HEADER}\r\n{GOOD}\r\n".encode("utf-16-le"))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    report, store = run_ingest([empty, header_only, u16, blob], settings, format="ait_ads")
    assert {r.status for r in report.results} == {"ingested"}
    assert report.events == 1
    assert_event(rows(store, "select * from events")[0], {"log.file.line": 2, "host.name": "mail",
                                                          "event.original": GOOD})
    q = _quarantine(store)
    assert q and all(r["path"].endswith("blob.bin") for r in q)


# --- fuzzing --------------------------------------------------------------------------------------


def _physical_lines(data: bytes) -> int:
    return sum(1 for p in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if p.strip())


FUZZ = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_PIECES = st.sampled_from([GOOD, HEADER, '"', ",", "\n", "\r\n", "x", "1642723347", "\xe9", '""', " ", "\x00"])
_TEXTY = st.lists(_PIECES, max_size=40).map(lambda xs: "".join(xs).encode("utf-8"))


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=400), _TEXTY), min_size=1, max_size=6, unique=True))
def test_fuzz_every_line_is_accounted_for(datas: list[bytes]) -> None:
    """Each non-empty physical line ends up in exactly one stored or quarantined record (a record
    spanning lines counts each of them), except a header line."""
    datas = [d for d in datas if not d.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"\x1f\x8b", b"PK"))]
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"in{i}.txt" for i in range(len(datas))]
        for f, data in zip(paths, datas, strict=True):
            f.write_bytes(data)
        report, store = run_ingest(paths, load_settings(Path(d) / "home"), format="ait_ads")
        results = {r.path: r for r in report.results}
        stored = rows(store, 'select "log.file.path" p, "event.original" o from events')
        q = _quarantine(store)
    for f, data in zip(paths, datas, strict=True):
        res = results[str(f)]
        assert res.status == "ingested"
        spans = sum(r["o"].count("\n") + 1 for r in stored if r["p"] == str(f))
        spans += sum((r["excerpt"] or "").count("\n") + 1 for r in q if r["path"] == str(f))
        assert not any("reader failed" in r["reason"] or "reading stopped" in r["reason"] for r in q)
        header = 0 if any("no AIT-ADS header" in w for w in res.warnings) or not _physical_lines(data) else 1
        assert spans == _physical_lines(data) - header, (data, stored, q)
