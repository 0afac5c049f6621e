"""Ports to the outside world, each with a real adapter: notification, firewall, accounts, hosts.

Why ports: a playbook step says *what* (block this IP); the adapter says *how* on this site
(nftables or iptables, a webhook or SMTP). Tests run the real adapters where they can run here (a
webhook to a local HTTP server, rule generation) and a recorder only where nothing can (a live
firewall). No adapter ever builds a shell command line: programs get argument lists.
"""

from __future__ import annotations

import ipaddress
import json
import re
import smtplib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from phagocyte.errors import PhagocyteError

__all__ = [
    "AccountAdmin",
    "Firewall",
    "IptablesFirewall",
    "NftablesFirewall",
    "Notifier",
    "OutboundPolicy",
    "ResponseError",
    "ScriptAccountAdmin",
    "SmtpNotifier",
    "WebhookNotifier",
]


class ResponseError(PhagocyteError):
    """A response step refused or failed (policy, bad target, adapter error)."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Where notification steps may connect: only hosts listed here (`PHAGO_NOTIFY_ALLOW`).

    This is the SSRF guard: a playbook (or an incident field it quotes) cannot make Phagocyte call
    an arbitrary address such as a cloud metadata service; redirects are never followed.
    """

    allowed: frozenset[str] = field(default_factory=frozenset)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ResponseError(f"notify: scheme {parts.scheme!r} not allowed (http or https)")
        host = (parts.hostname or "").lower()
        hostport = f"{host}:{parts.port}" if parts.port else host
        if host not in self.allowed and hostport not in self.allowed:
            raise ResponseError(f"notify: host {hostport!r} is not in PHAGO_NOTIFY_ALLOW")


class Notifier(Protocol):
    def send(self, subject: str, body: dict[str, Any]) -> str: ...


class WebhookNotifier:
    """POST a JSON body to a URL (generic webhook; `chat=True` sends Slack/Mattermost-style `{"text": ...}`)."""

    def __init__(self, url: str, policy: OutboundPolicy, *, chat: bool = False, timeout: float = 5.0) -> None:
        policy.check(url)
        self.url, self.chat, self.timeout = url, chat, timeout

    def send(self, subject: str, body: dict[str, Any]) -> str:
        payload = {"text": f"{subject}\n{body.get('summary', '')}"} if self.chat else {"subject": subject, **body}
        try:
            r = httpx.post(self.url, json=payload, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ResponseError(f"webhook {self.url}: {exc}") from exc
        if r.status_code >= 300:
            raise ResponseError(f"webhook {self.url}: HTTP {r.status_code}")
        return f"HTTP {r.status_code}"


class SmtpNotifier:
    """Send a plain-text mail through the site's SMTP relay (host must be allowed like a webhook's)."""

    def __init__(self, host: str, port: int, sender: str, to: Sequence[str], policy: OutboundPolicy) -> None:
        policy.check(f"http://{host}:{port}/")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)

    def send(self, subject: str, body: dict[str, Any]) -> str:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, ", ".join(self.to), subject[:200]
        msg.set_content(json.dumps(body, indent=2, default=str))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise ResponseError(f"smtp {self.host}:{self.port}: {exc}") from exc
        return f"mailed {len(self.to)} recipient(s)"


def _ips(values: Sequence[str]) -> list[str]:
    out = []
    for v in values:
        try:
            ip = ipaddress.ip_address(str(v).strip())
        except ValueError as exc:
            raise ResponseError(f"contain: {v!r} is not an IP address") from exc
        if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
            raise ResponseError(f"contain: refusing to block {ip} (loopback/unspecified/multicast)")
        out.append(str(ip))
    return sorted(set(out))


class Firewall(Protocol):
    name: str

    def render(self, ips: Sequence[str]) -> str: ...

    def apply(self, ips: Sequence[str]) -> str: ...


class NftablesFirewall:
    """Block addresses with an nftables table of its own (`inet phagocyte`), so removal is one command."""

    name = "nftables"

    def render(self, ips: Sequence[str]) -> str:
        addrs = _ips(ips)
        v4 = [a for a in addrs if ":" not in a]
        v6 = [a for a in addrs if ":" in a]
        lines = ["table inet phagocyte {", "  chain input { type filter hook input priority -10; policy accept;"]
        if v4:
            lines.append(f"    ip saddr {{ {', '.join(v4)} }} drop")
        if v6:
            lines.append(f"    ip6 saddr {{ {', '.join(v6)} }} drop")
        lines += ["  }", "  chain output { type filter hook output priority -10; policy accept;"]
        if v4:
            lines.append(f"    ip daddr {{ {', '.join(v4)} }} drop")
        if v6:
            lines.append(f"    ip6 daddr {{ {', '.join(v6)} }} drop")
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def apply(self, ips: Sequence[str]) -> str:
        ruleset = self.render(ips)
        try:
            subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ResponseError(f"nft: {exc}") from exc
        return f"nftables: {len(_ips(ips))} address(es) blocked"


class IptablesFirewall:
    """Block addresses with iptables/ip6tables rules (for hosts without nftables)."""

    name = "iptables"

    def commands(self, ips: Sequence[str]) -> list[list[str]]:
        cmds = []
        for a in _ips(ips):
            tool = "ip6tables" if ":" in a else "iptables"
            cmds.append([tool, "-I", "INPUT", "-s", a, "-j", "DROP", "-m", "comment", "--comment", "phagocyte"])
            cmds.append([tool, "-I", "OUTPUT", "-d", a, "-j", "DROP", "-m", "comment", "--comment", "phagocyte"])
        return cmds

    def render(self, ips: Sequence[str]) -> str:
        return "\n".join(" ".join(c) for c in self.commands(ips)) + "\n"

    def apply(self, ips: Sequence[str]) -> str:
        for cmd in self.commands(ips):
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ResponseError(f"{cmd[0]}: {exc}") from exc
        return f"iptables: {len(_ips(ips))} address(es) blocked"


class AccountAdmin(Protocol):
    def render(self, user: str, host_os: str) -> str: ...


class ScriptAccountAdmin:
    """Disable an account / isolate a host by generating the command an administrator runs (or an
    orchestrator picks up): Phagocyte holds no domain-admin or EDR credentials (least privilege)."""

    _NAME = re.compile(r"^[A-Za-z0-9._@ \\-]{1,128}$")

    @classmethod
    def _safe(cls, name: str) -> str:
        if not cls._NAME.match(name or ""):
            raise ResponseError(f"refusing a name outside [A-Za-z0-9._@ \\-]: {name!r}")
        return name

    def render(self, user: str, host_os: str = "windows") -> str:
        u = self._safe(user)
        account = u.split("\\")[-1]
        if host_os == "windows":
            return f"Disable-ADAccount -Identity '{account}'\n"
        return f"usermod --lock --expiredate 1 -- '{account}'\n"

    def isolate(self, host: str) -> str:
        h = self._safe(host)
        return f"# isolate host {h}: EDR network containment\nInvoke-HostIsolation -ComputerName '{h}'\n"
