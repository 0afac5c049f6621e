"""A hand-written alert stream generator (AIT-ADS CSV layout) for the triage tests.

Three days of routine noise on a few hosts, then a short multi-step attack on one web server.
Host names and addresses differ per `network`, as in a new customer's network.
"""

from __future__ import annotations

from pathlib import Path

HEADER = "time,name,ip,host,short,time_label,event_label"
NOISE = [  # (rule, name, host suffix, period seconds)
    ("W-Sys-Cav", "Wazuh: ClamAV database update", "mail", 600),
    ("S-Tls-Hnd", "Suricata: Alert - SURICATA TLS invalid handshake message", "fw", 300),
    ("W-Sys-Dov", "Wazuh: Dovecot Authentication Success.", "mail", 120),
    ("A-Dns-Val1", "AMiner: New ip address in DNS logs.", "dns", 7200),
]
ATTACK = [  # (offset s, rule, name, count, step)
    (0, "S-Flw-Nmp", "Suricata: Alert - ET SCAN Possible Nmap User-Agent Observed", 5, "service_scan"),
    (60, "W-Acc-400", "Wazuh: Web server 400 error code.", 400, "dirb"),
    (60, "W-All-Mul3", "Wazuh: Multiple web server 400 error codes from same source ip.", 40, "dirb"),
    (400, "A-Acc-Ent2", "AMiner: High entropy in Apache Access request.", 2, "webshell_cmd"),
    (900, "W-Aut-Uid", "Wazuh: User successfully changed UID.", 1, "attacker_change_user"),
    (960, "W-Aut-Sud", "Wazuh: Successful sudo to ROOT executed.", 2, "escalated_sudo_command"),
]


def write_stream(path: Path, network: int, start: int = 1_700_000_000, days: int = 3) -> Path:
    """Write one labelled scenario; returns its path."""
    rows = []
    end = start + days * 86400
    for k, (rule, name, host, period) in enumerate(NOISE):
        for t in range(start + 7 * k, end, period):
            rows.append((t, name, f"10.{network}.0.{k + 1}", f"n{network}-{host}", rule, "false_positive", "-"))
    t0 = end - 6 * 3600
    for off, rule, name, count, step in ATTACK:
        for j in range(count):
            rows.append((t0 + off + j // 4, name, f"10.{network}.9.9", f"n{network}-web", rule, step, step))
    rows.sort(key=lambda r: r[0])
    path.write_text(HEADER + "\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")
    return path
