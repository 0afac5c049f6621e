"""Windows events to ECS, shared by every Windows format (EVTX, Winlogbeat, Mordor/NXLog JSON).

A Windows reader extracts the System fields into private columns (``_channel``, ``_eid``,
``_ed`` = the EventData object as JSON, ...); this module maps those to ECS the same way whatever
the export format, so a Sysmon process creation looks identical from an EVTX file or a JSON
export. EventData keys differ by event (Sysmon ``Image`` vs Security 4688 ``NewProcessName``);
the ECS fields below take the first key present, per event where the meaning changes.
"""

from __future__ import annotations

from phagocyte.ingest.jsonmap import int_expr, list_expr, sql_str

__all__ = ["ACCOUNT_EVENTS", "EVENTDATA_KEYS", "EVENT_TYPES", "WINDOWS_OUTER", "windows_stages"]

# EventData keys promoted to ECS fields; parsed once per record with json_transform.
EVENTDATA_KEYS = [
    "CommandLine", "Image", "ImageLoaded", "SourceImage", "SourceProcessId", "SourceProcessGUID",
    "ParentImage", "ParentCommandLine", "ProcessId",
    "ParentProcessId", "ProcessGuid", "ParentProcessGuid", "CurrentDirectory", "Hashes", "Hash",
    "NewProcessName", "NewProcessId", "ParentProcessName", "ProcessName", "Application",
    "User", "TargetUserName", "TargetDomainName", "TargetUserSid", "TargetSid", "SubjectUserName",
    "SubjectDomainName", "SubjectUserSid", "MemberName", "SamAccountName", "AccountName",
    "IpAddress", "IpPort", "SourceIp", "SourcePort", "SourceAddress", "SourceHostname",
    "DestinationIp", "DestinationPort", "DestAddress", "DestPort", "DestinationHostname",
    "Protocol", "QueryName", "QueryResults", "QueryStatus", "TargetFilename", "TargetObject",
    "Details", "ObjectName", "ObjectType", "ShareName", "ServiceName", "ImagePath", "ServiceFileName",
    "LogonType", "Status", "FailureReason", "WorkstationName", "ScriptBlockText", "Path",
]


# Account-management events: the subject acts on a target account.
ACCOUNT_EVENTS = (4720, 4722, 4723, 4724, 4725, 4726, 4738, 4740, 4767, 4781, 4728, 4729,
                  4732, 4733, 4746, 4747, 4751, 4752, 4756, 4757, 4761, 4762)

# (channel or '*', event id) -> (categories, types, action)
EVENT_TYPES: dict[tuple[str, int], tuple[list[str], list[str], str]] = {
    ("sysmon", 1): (["process"], ["start"], "process-created"),
    ("sysmon", 2): (["file"], ["change"], "file-creation-time-changed"),
    ("sysmon", 3): (["network"], ["connection", "start"], "network-connection"),
    ("sysmon", 5): (["process"], ["end"], "process-terminated"),
    ("sysmon", 6): (["driver"], ["start"], "driver-loaded"),
    ("sysmon", 7): (["process"], ["change"], "image-loaded"),
    ("sysmon", 8): (["process"], ["change"], "create-remote-thread"),
    ("sysmon", 9): (["process"], ["access"], "raw-access-read"),
    ("sysmon", 10): (["process"], ["access"], "process-accessed"),
    ("sysmon", 11): (["file"], ["creation"], "file-created"),
    ("sysmon", 12): (["registry"], ["change"], "registry-object-added-or-deleted"),
    ("sysmon", 13): (["registry"], ["change"], "registry-value-set"),
    ("sysmon", 14): (["registry"], ["change"], "registry-object-renamed"),
    ("sysmon", 15): (["file"], ["creation"], "file-stream-created"),
    ("sysmon", 17): (["file"], ["creation"], "pipe-created"),
    ("sysmon", 18): (["file"], ["access"], "pipe-connected"),
    ("sysmon", 19): (["host"], ["creation"], "wmi-filter"),
    ("sysmon", 20): (["host"], ["creation"], "wmi-consumer"),
    ("sysmon", 21): (["host"], ["creation"], "wmi-binding"),
    ("sysmon", 22): (["network"], ["protocol", "info"], "dns-query"),
    ("sysmon", 23): (["file"], ["deletion"], "file-deleted"),
    ("sysmon", 25): (["process"], ["change"], "process-tampering"),
    ("sysmon", 26): (["file"], ["deletion"], "file-deleted-detected"),
    ("security", 1102): (["iam"], ["change"], "audit-log-cleared"),
    ("security", 4624): (["authentication"], ["start"], "logged-in"),
    ("security", 4625): (["authentication"], ["start"], "logon-failed"),
    ("security", 4634): (["authentication"], ["end"], "logged-out"),
    ("security", 4647): (["authentication"], ["end"], "logged-out"),
    ("security", 4648): (["authentication"], ["start"], "logged-in-explicit"),
    ("security", 4672): (["iam"], ["admin"], "logged-in-special"),
    ("security", 4688): (["process"], ["start"], "process-created"),
    ("security", 4689): (["process"], ["end"], "process-terminated"),
    ("security", 4697): (["configuration"], ["creation"], "service-installed"),
    ("security", 4698): (["configuration"], ["creation"], "scheduled-task-created"),
    ("security", 4720): (["iam"], ["user", "creation"], "added-user-account"),
    ("security", 4722): (["iam"], ["user", "change"], "enabled-user-account"),
    ("security", 4724): (["iam"], ["user", "change"], "reset-password"),
    ("security", 4725): (["iam"], ["user", "change"], "disabled-user-account"),
    ("security", 4726): (["iam"], ["user", "deletion"], "deleted-user-account"),
    ("security", 4728): (["iam"], ["group", "change"], "added-member-to-group"),
    ("security", 4732): (["iam"], ["group", "change"], "added-member-to-group"),
    ("security", 4738): (["iam"], ["user", "change"], "modified-user-account"),
    ("security", 4740): (["iam"], ["user", "change"], "locked-out-user-account"),
    ("security", 4756): (["iam"], ["group", "change"], "added-member-to-group"),
    ("security", 4768): (["authentication"], ["start"], "kerberos-authentication-ticket-requested"),
    ("security", 4769): (["authentication"], ["start"], "kerberos-service-ticket-requested"),
    ("security", 4771): (["authentication"], ["start"], "kerberos-preauth-failed"),
    ("security", 4776): (["authentication"], ["start"], "credential-validated"),
    ("security", 5140): (["network", "file"], ["access"], "network-share-object-accessed"),
    ("security", 5145): (["network", "file"], ["access"], "network-share-object-access-checked"),
    ("security", 5156): (["network"], ["connection", "allowed"], "windows-firewall-connection-allowed"),
    ("security", 5157): (["network"], ["connection", "denied"], "windows-firewall-connection-blocked"),
    ("system", 7045): (["configuration"], ["creation"], "service-installed"),
    ("system", 104): (["iam"], ["change"], "audit-log-cleared"),
    ("powershell", 4103): (["process"], ["info"], "powershell-module-logging"),
    ("powershell", 4104): (["process"], ["info"], "powershell-script-block"),
    ("powershell", 400): (["process"], ["start"], "powershell-engine-started"),
    ("powershell", 800): (["process"], ["info"], "powershell-pipeline-executed"),
}


FAMILY = (
    "CASE WHEN _channel ILIKE '%sysmon%' THEN 'sysmon' "
    "WHEN _channel ILIKE 'security' THEN 'security' "
    "WHEN _channel ILIKE 'system' THEN 'system' "
    "WHEN _channel ILIKE '%powershell%' THEN 'powershell' ELSE 'other' END"
)
"""The ``_fam`` private column: which EVENT_TYPES family a channel belongs to."""


def _lookup(index: int) -> str:
    """One MAP constant keyed 'family:eid' (a CASE per event made the plan 60 KB and slow)."""
    entries = []
    for (fam, eid), value in EVENT_TYPES.items():
        v = value[index]
        lit = sql_str(v) if isinstance(v, str) else "[" + ", ".join(sql_str(x) for x in v) + "]"
        entries.append(f"{sql_str(f'{fam}:{eid}')}: {lit}")
    return "MAP {" + ", ".join(entries) + "}[_fam || ':' || CAST(_eid AS VARCHAR)]"


def _e(key: str) -> str:
    """An EventData value, NULL when absent, empty or '-' (Windows' own 'no value').

    A column of the ``CLEAN`` stage: written out inline at each of its ~80 uses, the expressions
    made planning the query cost ~60 ms (a fixed cost per pool of records)."""
    if key not in EVENTDATA_KEYS:
        raise ValueError(f"EventData key {key!r} is not parsed (add it to EVENTDATA_KEYS)")
    return f'"_v_{key}"'


def _basename(expr: str) -> str:
    return f"NULLIF(parse_filename({expr}, false, 'both_slash'), '')"


_ACCOUNT_IDS = ", ".join(str(e) for e in ACCOUNT_EVENTS)

# Stage 3: each promoted EventData value, cleaned once per record.
CLEAN: dict[str, str] = {f"_v_{k}": f"NULLIF(NULLIF(_e.\"{k}\", '-'), '')" for k in EVENTDATA_KEYS}

# Stage 4: values used by several ECS fields, computed once per record.
INTERMEDIATE: dict[str, str] = {
    "_is4688": "(_eid = 4688 AND _fam = 'security')",
    "_account": f"(_eid IN ({_ACCOUNT_IDS}))",
    "_hash_is_file": "(_eid IN (6, 7, 15, 23, 26, 29) AND _fam = 'sysmon')",
    "_hashes": f"COALESCE({_e('Hashes')}, {_e('Hash')})",
    "_u": _e("User"),
    "_src_ip": f"COALESCE({_e('IpAddress')}, {_e('SourceIp')}, {_e('SourceAddress')})",
    "_dst_ip": f"COALESCE({_e('DestinationIp')}, {_e('DestAddress')})",
    "_file_path": (f"COALESCE({_e('TargetFilename')}, {_e('ImageLoaded')}, "
                   f"CASE WHEN _e.\"ObjectType\" = 'File' THEN {_e('ObjectName')} END)"),
}

# Stage 5: executables (need _is4688).
EXECUTABLES: dict[str, str] = {
    "_exe": (f"CASE WHEN _is4688 THEN {_e('NewProcessName')} "
             f"ELSE COALESCE({_e('Image')}, {_e('SourceImage')}, {_e('ProcessName')}, {_e('Application')}) END"),
    "_pexe": f"COALESCE({_e('ParentImage')}, CASE WHEN _is4688 THEN {_e('ParentProcessName')} END)",
    "_md5": "NULLIF(lower(regexp_extract(_hashes, 'MD5=([0-9A-Fa-f]+)', 1)), '')",
    "_sha1": "NULLIF(lower(regexp_extract(_hashes, 'SHA1=([0-9A-Fa-f]+)', 1)), '')",
    "_sha256": "NULLIF(lower(regexp_extract(_hashes, 'SHA256=([0-9A-Fa-f]+)', 1)), '')",
    "_u_has_domain": "contains(_u, '\\')",
}

# Last stage: private columns -> event-schema fields.
WINDOWS_OUTER: dict[str, str] = {
    "@timestamp": "_ts",
    "event.kind": "'event'",
    "event.category": _lookup(0),
    "event.type": _lookup(1),
    "event.action": _lookup(2),
    "event.code": "CAST(_eid AS VARCHAR)",
    "event.module": "'windows'",
    "event.provider": "_provider",
    "event.dataset": (
        "CASE _fam WHEN 'security' THEN 'windows.security' WHEN 'sysmon' THEN 'windows.sysmon' ELSE "
        "CASE WHEN _channel ILIKE 'microsoft-windows-powershell/operational' THEN 'windows.powershell_operational' "
        "WHEN _channel ILIKE 'windows powershell' THEN 'windows.powershell' "
        "ELSE 'windows.' || COALESCE(NULLIF(trim(regexp_replace(lower(_channel), '[^a-z0-9]+', '_', 'g'), '_'), ''), "
        "'unknown') END END"
    ),
    "event.outcome": (
        "CASE WHEN _eid IN (4625, 4771) THEN 'failure' "
        "WHEN starts_with(lower(_keywords), '0x8010') THEN 'failure' "
        "WHEN starts_with(lower(_keywords), '0x8020') THEN 'success' END"
    ),
    "message": "_message",
    "host.name": "_computer",
    "winlog.channel": "_channel",
    "winlog.event_id": "_eid",
    "winlog.provider_name": "_provider",
    "winlog.provider_guid": "_provider_guid",
    "winlog.computer_name": "_computer",
    "winlog.record_id": "_record_id",
    "winlog.version": "_version",
    "winlog.level": "_level",
    "winlog.task": "_task",
    "winlog.opcode": "_opcode",
    "winlog.keywords": "_keywords",
    "winlog.process.pid": "_pid",
    "winlog.process.thread.id": "_tid",
    "winlog.user.identifier": "_user_sid",
    "winlog.activity_id": "_activity_id",
    "winlog.event_data": "_ed",
    "process.executable": "_exe",
    "process.name": _basename("_exe"),
    "process.command_line": _e("CommandLine"),
    "process.pid": int_expr(f"CASE WHEN _is4688 THEN {_e('NewProcessId')} "
                            f"ELSE COALESCE({_e('ProcessId')}, {_e('SourceProcessId')}) END"),
    # json_transform matches keys ignoring case: SourceProcessGUID (Sysmon 10) also reads
    # SourceProcessGuid (Sysmon 8).
    "process.entity_id": f"COALESCE({_e('ProcessGuid')}, {_e('SourceProcessGUID')})",
    "process.working_directory": _e("CurrentDirectory"),
    "process.hash.md5": "CASE WHEN NOT _hash_is_file THEN _md5 END",
    "process.hash.sha1": "CASE WHEN NOT _hash_is_file THEN _sha1 END",
    "process.hash.sha256": "CASE WHEN NOT _hash_is_file THEN _sha256 END",
    "process.parent.executable": "_pexe",
    "process.parent.name": _basename("_pexe"),
    "process.parent.command_line": _e("ParentCommandLine"),
    "process.parent.pid": int_expr(f"CASE WHEN _is4688 THEN {_e('ProcessId')} ELSE {_e('ParentProcessId')} END"),
    "process.parent.entity_id": _e("ParentProcessGuid"),
    "user.name": (
        f"CASE WHEN _account THEN {_e('SubjectUserName')} ELSE COALESCE({_e('TargetUserName')}, "
        f"CASE WHEN _u_has_domain THEN split_part(_u, '\\', 2) ELSE _u END, "
        f"{_e('AccountName')}, {_e('SubjectUserName')}) END"
    ),
    "user.domain": (
        f"CASE WHEN _account THEN {_e('SubjectDomainName')} ELSE COALESCE({_e('TargetDomainName')}, "
        f"CASE WHEN _u_has_domain THEN split_part(_u, '\\', 1) END, {_e('SubjectDomainName')}) END"
    ),
    "user.id": (
        f"CASE WHEN _account THEN {_e('SubjectUserSid')} "
        f"ELSE COALESCE(NULLIF({_e('TargetUserSid')}, 'S-1-0-0'), NULLIF({_e('TargetSid')}, 'S-1-0-0'), "
        f"CASE WHEN {_e('TargetUserName')} IS NULL THEN {_e('SubjectUserSid')} END, "
        f"CASE WHEN _u IS NULL THEN _user_sid END) END"
    ),
    "user.target.name": (f"CASE WHEN _account THEN COALESCE({_e('TargetUserName')}, {_e('MemberName')}, "
                         f"{_e('SamAccountName')}) END"),
    "source.user.name": _e("SubjectUserName"),
    "source.ip": "_src_ip",
    "source.port": "NULLIF(" + int_expr(f"COALESCE({_e('IpPort')}, {_e('SourcePort')})") + ", 0)",
    "destination.ip": "_dst_ip",
    "destination.port": int_expr(f"COALESCE({_e('DestinationPort')}, {_e('DestPort')})"),
    "destination.domain": _e("DestinationHostname"),
    "network.transport": (
        f"CASE {_e('Protocol')} WHEN '6' THEN 'tcp' WHEN '17' THEN 'udp' WHEN '1' THEN 'icmp' "
        f"ELSE lower({_e('Protocol')}) END"
    ),
    "dns.question.name": _e("QueryName"),
    "dns.answers": _e("QueryResults"),
    "dns.response_code": _e("QueryStatus"),
    "file.path": "_file_path",
    "file.name": _basename("_file_path"),
    "file.hash.md5": "CASE WHEN _hash_is_file THEN _md5 END",
    "file.hash.sha1": "CASE WHEN _hash_is_file THEN _sha1 END",
    "file.hash.sha256": "CASE WHEN _hash_is_file THEN _sha256 END",
    "registry.path": f"COALESCE({_e('TargetObject')}, CASE WHEN _e.\"ObjectType\" = 'Key' THEN {_e('ObjectName')} END)",
    "registry.data.strings": f"CASE WHEN _eid IN (12, 13, 14) THEN {_e('Details')} END",
    "related.ip": list_expr("_src_ip", "_dst_ip"),
}

_ED_STRUCT = "{" + ", ".join(f'"{k}": "VARCHAR"' for k in EVENTDATA_KEYS) + "}"


def ed_transform(ed_expr: str) -> str:
    """The ``_e`` private column: the promoted EventData keys, parsed once per record."""
    return f"json_transform({ed_expr}, {sql_str(_ED_STRUCT)})"


def windows_stages(ed_column: str = "_ed") -> list[dict[str, str]]:
    """The stages a Windows reader appends after extracting its private columns."""
    return [{"_e": ed_transform(ed_column), "_fam": FAMILY}, CLEAN, INTERMEDIATE, EXECUTABLES, WINDOWS_OUTER]
