"""Where a Sigma rule looks in our store: log source routes and field mapping.

Why routes and not per-rule conditions: a rule's log source (`product: windows`, `category:
process_creation`) decides which events it can ever match. The engine groups rules by route and
scans each route's events once for all of its rules, instead of one query per rule over everything
(the fixed cost per query made a naive design only 1-3x Zircolite, see the speed notes).

Fields: Windows rules name EventData keys (`CommandLine`, `GrantedAccess`), which the store keeps
verbatim in `winlog.event_data`; the System fields (`EventID`, `Channel`, `Provider_Name`, ...) map
onto `winlog.*` columns. Other sources map the Sigma taxonomy's common names onto ECS columns, and a
field without a mapping is read from the source record itself (`event.original` of JSON sources:
CloudTrail's `eventName`, Okta's `eventType`, Zeek's `query`), so cloud and SaaS rules run on their
native JSON without a table per product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phagocyte.ingest.jsonmap import sql_str

if TYPE_CHECKING:
    from sigma.processing.pipeline import ProcessingPipeline

__all__ = ["SECURITY_4688", "SYSMON_CHANNEL", "WINDOWS_CHANNELS", "Route", "is_process_creation", "phagocyte_pipeline",
           "route_for"]

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"

# Sigma `service` -> Windows channel(s) (Microsoft's channel names).
WINDOWS_CHANNELS: dict[str, tuple[str, ...]] = {
    "security": ("Security",),
    "system": ("System",),
    "application": ("Application",),
    "sysmon": (SYSMON_CHANNEL,),
    "powershell": ("Microsoft-Windows-PowerShell/Operational",),
    "powershell-classic": ("Windows PowerShell",),
    "taskscheduler": ("Microsoft-Windows-TaskScheduler/Operational",),
    "wmi": ("Microsoft-Windows-WMI-Activity/Operational",),
    "dns-server": ("DNS Server",),
    "dns-server-analytic": ("Microsoft-Windows-DNS-Server/Analytical",),
    "dns-server-audit": ("Microsoft-Windows-DNS-Server/Audit",),
    "dns-client": ("Microsoft-Windows-DNS Client Events/Operational",),
    "driver-framework": ("Microsoft-Windows-DriverFrameworks-UserMode/Operational",),
    "ntlm": ("Microsoft-Windows-NTLM/Operational",),
    "firewall-as": ("Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",),
    "bits-client": ("Microsoft-Windows-Bits-Client/Operational",),
    "codeintegrity-operational": ("Microsoft-Windows-CodeIntegrity/Operational",),
    "msexchange-management": ("MSExchange Management",),
    "windefend": ("Microsoft-Windows-Windows Defender/Operational",),
    "applocker": ("Microsoft-Windows-AppLocker/MSI and Script", "Microsoft-Windows-AppLocker/EXE and DLL",
                  "Microsoft-Windows-AppLocker/Packaged app-Deployment",
                  "Microsoft-Windows-AppLocker/Packaged app-Execution"),
    "appxdeployment-server": ("Microsoft-Windows-AppXDeploymentServer/Operational",),
    "appxpackaging-om": ("Microsoft-Windows-AppxPackaging/Operational",),
    "appmodel-runtime": ("Microsoft-Windows-AppModel-Runtime/Admin",),
    "iis-configuration": ("Microsoft-IIS-Configuration/Operational",),
    "security-mitigations": ("Microsoft-Windows-Security-Mitigations/Kernel Mode",
                             "Microsoft-Windows-Security-Mitigations/User Mode"),
    "printservice-admin": ("Microsoft-Windows-PrintService/Admin",),
    "printservice-operational": ("Microsoft-Windows-PrintService/Operational",),
    "smbclient-security": ("Microsoft-Windows-SmbClient/Security",),
    "smbclient-connectivity": ("Microsoft-Windows-SmbClient/Connectivity",),
    "smbserver-connectivity": ("Microsoft-Windows-SMBServer/Connectivity",),
    "terminalservices-localsessionmanager": ("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",),
    "shell-core": ("Microsoft-Windows-Shell-Core/Operational",),
    "certificateservicesclient-lifecycle-system": (
        "Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational",),
    "ldap": ("Microsoft-Windows-LDAP-Client/Debug",),
    "diagnosis-scripted": ("Microsoft-Windows-Diagnosis-Scripted/Operational",),
    "lsa-server": ("Microsoft-Windows-LSA/Operational",),
    "openssh": ("OpenSSH/Operational",),
    "capi2": ("Microsoft-Windows-CAPI2/Operational",),
    "microsoft-servicebus-client": ("Microsoft-ServiceBus-Client",),
    "vhdmp": ("Microsoft-Windows-VHDMP/Operational",),
    "kernel-shimengine": ("Microsoft-Windows-Kernel-ShimEngine/Operational",),
}

# Sigma `category` of product windows -> (channel, EventIDs). Sysmon first; PowerShell logging.
WINDOWS_CATEGORIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "process_creation": (SYSMON_CHANNEL, (1,)),
    "file_change": (SYSMON_CHANNEL, (2,)),
    "network_connection": (SYSMON_CHANNEL, (3,)),
    "sysmon_status": (SYSMON_CHANNEL, (4, 16)),
    "process_termination": (SYSMON_CHANNEL, (5,)),
    "driver_load": (SYSMON_CHANNEL, (6,)),
    "image_load": (SYSMON_CHANNEL, (7,)),
    "create_remote_thread": (SYSMON_CHANNEL, (8,)),
    "raw_access_thread": (SYSMON_CHANNEL, (9,)),
    "process_access": (SYSMON_CHANNEL, (10,)),
    "file_event": (SYSMON_CHANNEL, (11,)),
    "file_rename": (SYSMON_CHANNEL, (11,)),
    "file_access": (SYSMON_CHANNEL, (11,)),
    "registry_add": (SYSMON_CHANNEL, (12,)),
    "registry_delete": (SYSMON_CHANNEL, (12,)),
    "registry_set": (SYSMON_CHANNEL, (13,)),
    "registry_rename": (SYSMON_CHANNEL, (14,)),
    "registry_event": (SYSMON_CHANNEL, (12, 13, 14)),
    "create_stream_hash": (SYSMON_CHANNEL, (15,)),
    "pipe_created": (SYSMON_CHANNEL, (17, 18)),
    "wmi_event": (SYSMON_CHANNEL, (19, 20, 21)),
    "dns_query": (SYSMON_CHANNEL, (22,)),
    "file_delete": (SYSMON_CHANNEL, (23, 26)),
    "clipboard_capture": (SYSMON_CHANNEL, (24,)),
    "process_tampering": (SYSMON_CHANNEL, (25,)),
    "file_block_executable": (SYSMON_CHANNEL, (27,)),
    "file_block_shredding": (SYSMON_CHANNEL, (28,)),
    "file_executable_detected": (SYSMON_CHANNEL, (29,)),
    "sysmon_error": (SYSMON_CHANNEL, (255,)),
    "ps_module": ("Microsoft-Windows-PowerShell/Operational", (4103,)),
    "ps_script": ("Microsoft-Windows-PowerShell/Operational", (4104,)),
    "ps_classic_start": ("Windows PowerShell", (400,)),
    "ps_classic_provider_start": ("Windows PowerShell", (600,)),
    "ps_classic_script": ("Windows PowerShell", (800,)),
}

# Non-Windows log sources -> event.dataset patterns (SQL LIKE) the store gives those sources.
DATASETS: dict[tuple[str | None, str | None, str | None], tuple[str, ...]] = {
    ("linux", None, "auth"): ("system.auth",),
    ("linux", None, "sshd"): ("system.auth",),
    ("linux", None, "sudo"): ("system.auth",),
    ("linux", None, "syslog"): ("syslog", "system.auth"),
    ("linux", None, "cron"): ("syslog",),
    ("linux", None, None): ("syslog", "system.auth", "linux.%"),
    ("zeek", None, None): ("zeek.%",),
    (None, "dns", None): ("zeek.dns", "suricata.eve"),
    (None, "proxy", None): ("zeek.http", "proxy%"),
    (None, "webserver", None): ("zeek.http", "web%", "apache%", "nginx%", "iis%"),
    (None, "firewall", None): ("zeek.conn", "firewall%"),
    ("suricata", None, None): ("suricata.eve",),
    ("suricata", "alert", None): ("suricata.eve",),
    ("wazuh", None, None): ("wazuh.alerts",),
    ("wazuh", "alert", None): ("wazuh.alerts",),
}

# Sigma taxonomy names -> ECS columns, for sources that are not Windows event logs.
ECS_FIELDS: dict[str, str] = {
    "c-uri": "url.full", "cs-uri-query": "url.path", "cs-uri-stem": "url.path", "c-uri-query": "url.path",
    "c-uri-stem": "url.path", "cs-method": "http.request.method", "c-useragent": "user_agent.original",
    "cs-user-agent": "user_agent.original", "sc-status": "http.response.status_code", "cs-host": "url.domain",
    "r-dns": "url.domain", "c-ip": "source.ip", "dst_ip": "destination.ip", "src_ip": "source.ip",
    "dst_port": "destination.port", "src_port": "source.port", "query": "dns.question.name",
    "answer": "dns.answers", "record_type": "dns.question.type", "qtype_name": "dns.question.type",
    "id.orig_h": "source.ip", "id.resp_h": "destination.ip", "id.orig_p": "source.port",
    "id.resp_p": "destination.port",
    "Image": "process.executable", "CommandLine": "process.command_line", "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line", "User": "user.name", "CurrentDirectory":
    "process.working_directory", "TargetFilename": "file.path", "pid": "process.pid",
}

# Windows System fields -> winlog columns (what Sigma calls them in Windows rules).
WINDOWS_SYSTEM_FIELDS: dict[str, str] = {
    "EventID": "winlog.event_id", "Channel": "winlog.channel", "Provider_Name": "winlog.provider_name",
    "Computer": "winlog.computer_name", "Security_UserID": "winlog.user.identifier",
    "EventRecordID": "winlog.record_id", "Level": "winlog.level", "Task": "winlog.task",
    "Opcode": "winlog.opcode", "Keywords": "winlog.keywords", "Version": "winlog.version",
    "ProviderGuid": "winlog.provider_guid", "Provider_Guid": "winlog.provider_guid",
}


# Process creation as Security 4688 reports it (Sysmon's EventID 1 names differ); fields without an
# equivalent in 4688 (OriginalFileName, Hashes, ParentCommandLine, ...) are absent there.
SECURITY_4688_FIELDS: dict[str, str] = {
    "Image": "NewProcessName", "ParentImage": "ParentProcessName", "ProcessId": "NewProcessId",
    "ParentProcessId": "ProcessId", "LogonId": "SubjectLogonId",
}


@dataclass(frozen=True, slots=True)
class Route:
    """The events a rule can match: a stable key (groups rules) and its SQL predicate on `events`
    (reading only `winlog.channel`, `winlog.event_id`, `event.dataset`, `event.module`: the engine
    tests it on their distinct values).

    `json_source` names the column holding the source record's own fields (`winlog.event_data`
    for Windows, `event.original` otherwise). `mapped` is False when the log source is unknown and
    the rule runs on everything of its product (stated in `phago rules check`)."""

    key: str
    predicate: str
    json_source: str
    mapped: bool = True
    spaced_keys: bool = False
    """EventData keys may hold spaces (Defender's `Threat Name`) where Sigma writes `ThreatName`."""


def _in(column: str, values: tuple[str | int, ...]) -> str:
    items = ", ".join(str(v) if isinstance(v, int) else sql_str(v.lower()) for v in values)
    col = f'"{column}"' if isinstance(values[0], int) else f'lower("{column}")'
    return f"{col} = {items}" if len(values) == 1 else f"{col} IN ({items})"


SECURITY_4688 = Route("win:security:4688", f"{_in('winlog.channel', ('Security',))} AND \"winlog.event_id\" = 4688",
                      "winlog.event_data")
"""Route of the Security 4688 variant of process-creation rules."""


def is_process_creation(logsource: Any) -> bool:
    return (logsource.product or "").lower() == "windows" and (logsource.category or "").lower() == "process_creation"


def route_for(logsource: Any) -> Route:
    """The route of a rule's `logsource` (a pySigma SigmaLogSource)."""
    product = (logsource.product or "").lower() or None
    category = (logsource.category or "").lower() or None
    service = (logsource.service or "").lower() or None
    if product == "windows":
        ed = "winlog.event_data"
        if category in WINDOWS_CATEGORIES:
            channel, eids = WINDOWS_CATEGORIES[category]
            return Route(f"win:{channel.lower()}:{','.join(map(str, eids))}",
                         f"{_in('winlog.channel', (channel,))} AND {_in('winlog.event_id', eids)}", ed)
        if service in WINDOWS_CHANNELS:
            chans = WINDOWS_CHANNELS[service]
            return Route(f"win:{'|'.join(c.lower() for c in chans)}", _in("winlog.channel", chans), ed,
                         spaced_keys=service != "sysmon")
        return Route("win:*", '"winlog.channel" IS NOT NULL', ed, mapped=category is None and service is None,
                     spaced_keys=True)
    for key in ((product, category, service), (product, None, service), (product, category, None),
                (None, category, None), (product, None, None)):
        if key in DATASETS and any(key):
            pats = DATASETS[key]
            pred = " OR ".join(f'"event.dataset" LIKE {sql_str(p)}' for p in pats)
            return Route("ds:" + "|".join(pats), f"({pred})", "event.original")
    if product:  # a product we hold no mapping for: events whose dataset or module names it
        pred = (f'(lower("event.dataset") LIKE {sql_str(product + "%")} '
                f'OR lower("event.module") = {sql_str(product)})')
        return Route(f"product:{product}", pred, "event.original", mapped=False)
    return Route(f"other:{category or service or '*'}", '"winlog.channel" IS NULL', "event.original", mapped=False)


def _mapping(fields: dict[str, str]) -> dict[str | None, str | list[str]]:
    return {k: v for k, v in fields.items()}


def phagocyte_pipeline(security_4688: bool = False) -> ProcessingPipeline:
    """pySigma processing: System fields of Windows rules onto winlog columns, taxonomy names of
    other sources onto ECS, `|expand` placeholders matched as wildcards (no placeholder lists are
    configured; a wildcard never misses what a list would find). With `security_4688`, the
    Sysmon names of process-creation rules become Security 4688's."""
    # pySigma is imported here, not at the top: running cached compiled rules does not need it.
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import FieldMappingTransformation, WildcardPlaceholderTransformation

    items = [
        *([ProcessingItem(identifier="phago_security_4688", transformation=FieldMappingTransformation(
            _mapping(SECURITY_4688_FIELDS)))] if security_4688 else []),
        ProcessingItem(identifier="phago_windows_system", transformation=FieldMappingTransformation(
            _mapping(WINDOWS_SYSTEM_FIELDS)), rule_conditions=[LogsourceCondition(product="windows")]),
        ProcessingItem(identifier="phago_ecs", transformation=FieldMappingTransformation(
            _mapping(ECS_FIELDS)),
                       rule_conditions=[LogsourceCondition(product="windows")], rule_condition_negation=True),
        ProcessingItem(identifier="phago_placeholders", transformation=WildcardPlaceholderTransformation()),
    ]
    return ProcessingPipeline(name="phagocyte", priority=20, items=items)
