"""Static heuristics on deobfuscated script text: behaviours that matter, with weights and ATT&CK ids.

Why on the deobfuscated text: after the layers are peeled, what the script does (download, run,
inject, persist, tamper with defences) is written in plain words, whatever the obfuscator did.
Weights are evidence strengths combined by noisy-OR (`verdict.combine`): one strong sign or
several weak ones make a script malicious; a single weak one (a download in an admin script)
leaves it clean or suspicious. They were set by reading samples, not fitted on the evaluation data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from phagocyte.analysers.verdict import Reason

__all__ = ["RULES", "Rule", "match_rules", "obfuscation_reasons"]

_F = re.DOTALL  # patterns are lower case and run on lower-cased text (IGNORECASE is several times slower)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    weight: float
    techniques: tuple[str, ...] = ()


def _r(name: str, rx: str, weight: float, *tech: str) -> Rule:
    return Rule(name, re.compile(rx, _F), weight, tech)


_COMMON = (
    _r(
        "url-to-executable",
        r"https?://[^\s'\"<>]{1,300}?\.(?:exe|scr|dll|ps1|hta|jar|bat|vbs|msi)(?:[\s'\"?)]|$)",
        0.35,
        "T1105",
    ),
    _r("url-to-ip", r"https?://(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?/", 0.25, "T1105"),
    _r(
        "shadow-copy-deletion",
        r"vssadmin(?:\.exe)?\s+delete\s+shadows|shadowcopy\s+delete|wbadmin\s+delete\s+catalog",
        0.7,
        "T1490",
    ),
    _r("event-log-clearing", r"wevtutil(?:\.exe)?\s+cl\b|clear-eventlog", 0.45, "T1070.001"),
    _r(
        "credential-dumping",
        r"sekurlsa::|lsadump::|invoke-mimikatz|mimikatz|procdump[^\n]{0,60}lsass|comsvcs[^\n]{0,40}"
        r"minidump",
        0.7,
        "T1003",
    ),
    _r("coin-miner", r"stratum\+tcp://|xmrig|cryptonight|minerd\b", 0.7, "T1496"),
)

RULES: dict[str, tuple[Rule, ...]] = {
    "powershell": (
        *_COMMON,
        _r(
            "download",
            r"net\.webclient|invoke-webrequest|\biwr\b|start-bitstransfer|downloadstring|downloadfile|"
            r"downloaddata|msxml2\.xmlhttp|system\.net\.http\.httpclient",
            0.3,
            "T1105",
        ),
        _r(
            "download-and-execute",
            r"invoke-expression[^\n]{0,200}?(?:downloadstring|downloaddata|invoke-webrequest|"
            r"\biwr\b|\.content\b)|(?:downloadstring|downloaddata)[^\n]{0,200}\|\s*invoke-expression",
            0.65,
            "T1059.001",
        ),
        _r("invoke-expression", r"invoke-expression", 0.12, "T1059.001"),
        _r(
            "process-injection",
            r"virtualalloc(?:ex)?|createremotethread|writeprocessmemory|createthread|"
            r"getdelegateforfunctionpointer|ntallocatevirtualmemory|queueuserapc",
            0.45,
            "T1055",
        ),
        _r(
            "reflective-load",
            r"reflection\.assembly\]::load(?:file)?\s*\(|\[system\.reflection\.assembly\]::load|"
            r"invoke-reflectivepeinjection",
            0.45,
            "T1620",
        ),
        _r("amsi-bypass", r"amsiutils|amsiinitfailed|amsiscanbuffer|amsicontext", 0.75, "T1562.001"),
        _r(
            "defender-tampering",
            r"set-mppreference[^\n]{0,120}-disable\w*\s+\$?(?:true|1)|add-mppreference[^\n]{0,60}" r"exclusion",
            0.55,
            "T1562.001",
        ),
        _r(
            "offensive-framework",
            r"invoke-shellcode|invoke-tokenmanipulation|invoke-psinject|invoke-dllinjection|"
            r"invoke-ninjacopy|get-keystrokes|invoke-smbexec|invoke-wmiexec|invoke-kerberoast|get-gpppassword|"
            r"invoke-powerdump|powerview|invoke-empire|invoke-bloodhound|sharphound|invoke-inveigh|"
            r"invoke-credentialinjection|get-timedscreenshot|invoke-portscan|out-minidump|invoke-runas",
            0.6,
            "T1059.001",
        ),
        _r("hidden-window", r"-w(?:indowstyle)?\s+h(?:idden)?\b|-windowstyle\s+1\b", 0.2, "T1564.003"),
        _r(
            "policy-bypass",
            r"-ep\s+bypass|-exec(?:utionpolicy)?\s+bypass|-nop\b[^\n]{0,60}-(?:w|enc|e)\b",
            0.15,
            "T1059.001",
        ),
        _r("encoded-command", r"-e(?:nc|ncodedcommand|c)?\s+[a-z0-9+/]{40,}", 0.35, "T1027"),
        _r("shellcode-array", r"\[byte\[\]\]\s*\$\w+\s*=\s*(?:0x[0-9a-f]{1,2}\s*,\s*){16}", 0.5, "T1055"),
        _r(
            "reverse-shell",
            r"net\.sockets\.tcpclient[^\n]{0,300}getstream|tcpclient\([^\n]{0,200}\)[^\n]{0,400}"
            r"(?:invoke-expression|iex)",
            0.55,
            "T1059.001",
        ),
        _r(
            "persistence",
            r"schtasks[^\n]{0,40}/create|new-scheduledtask|register-scheduledtask|currentversion\\run\b|"
            r"__eventfilter|commandlineeventconsumer|new-service\b",
            0.25,
            "T1053.005",
        ),
        _r("securestring-payload", r"76492d1116743f0423413b16050a5345", 0.45, "T1027"),
        _r("bxor-decoding", r"-bxor", 0.12, "T1140"),
        _r("win32-api-import", r"dllimport[^\n]{0,80}(?:kernel32|ntdll|advapi32)", 0.15, "T1106"),
        _r("token-privilege", r"adjusttokenprivileges|sedebugprivilege|impersonateloggedonuser", 0.3, "T1134"),
        _r("keylogger", r"getasynckeystate|setwindowshookex", 0.4, "T1056.001"),
        _r("clipboard-or-screen", r"copyfromscreen|get-clipboard", 0.15, "T1113"),
    ),
    "javascript": (
        *_COMMON,
        _r("wsh-shell", r"wscript\.shell|shell\.application", 0.35, "T1059.007"),
        _r("activex", r"new\s+activexobject|wscript\.createobject|getobject\s*\(", 0.2, "T1059.007"),
        _r("http-download", r"msxml2\.(?:server)?xmlhttp|winhttp\.winhttprequest|microsoft\.xmlhttp", 0.3, "T1105"),
        _r("adodb-stream", r"adodb\.stream", 0.25, "T1105"),
        _r("save-to-file", r"savetofile|\.write\s*\([^)]{0,40}responsebody", 0.25, "T1105"),
        _r("filesystem", r"scripting\.filesystemobject", 0.12, "T1083"),
        _r("temp-folder", r"%temp%|getspecialfolder\s*\(\s*2\s*\)|expandenvironmentstrings", 0.2, "T1074"),
        _r("runs-command", r"\.run\s*\(|\.exec\s*\(|shellexecute", 0.15, "T1059"),
        _r("spawns-shell", r"powershell|cmd(?:\.exe)?\s+/[ck]\b|mshta|rundll32|regsvr32|certutil", 0.35, "T1059"),
        _r("self-delete", r"deletefile\s*\(\s*wscript\.scriptfullname", 0.45, "T1070.004"),
        _r("wsh-sleep", r"wscript\.sleep", 0.1, "T1497.003"),
        _r(
            "hidden-iframe",
            r"<iframe[^>]{0,200}(?:width\s*=\s*[\"']?[01][\"'\s>]|visibility\s*:\s*hidden|" r"display\s*:\s*none)",
            0.45,
            "T1189",
        ),
        _r("injected-script-tag", r"document\.write\s*\(\s*[\"']<(?:script|iframe)", 0.3, "T1189"),
        _r(
            "heap-spray",
            r"(?:%u0c0c|%u0a0a|%u9090|\\u0c0c|\u0c0c|\u0a0a|\u9090){2}|%u[0-9a-f]{4}%u[0-9a-f]{4}%u[0-9a-f]{4}",
            0.6,
            "T1203",
        ),
        _r(
            "exploit-plugin-probe",
            r"shockwaveflash|agcontrol\.agcontrol|javawebstart|pdf\.pdfctrl|acropdf",
            0.3,
            "T1203",
        ),
        _r("registry-write", r"\.regwrite\s*\(", 0.3, "T1112"),
        _r("run-key", r"currentversion\\\\?run\b", 0.35, "T1547.001"),
        _r("environment-check", r"comspec|processor_architecture", 0.1, "T1082"),
        _r("wsh-host", r"\bwscript\s*\.\s*(?:quit|sleep|createobject|scriptfullname|arguments|echo)", 0.3, "T1059.007"),
        _r("dynamic-eval", r"(?<![\w$.])eval\s*\(\s*(?![\s\"'/])[^)]{1,80}\)", 0.3, "T1027"),
        _r(
            "eval-unescape",
            r"eval\s*\(\s*(?:unescape|atob|decodeuricomponent|string\.fromcharcode)\s*\(",
            0.45,
            "T1027",
        ),
        _r("char-array", r"\[\s*(?:[\"'][^\"']{0,2}[\"']\s*,\s*){60}", 0.35, "T1027"),
        _r("long-encoded-string", r"[\"'][a-z0-9+/=%#~@!^_\\-]{2000,}[\"']", 0.2, "T1027"),
        _r(
            "split-join-decoder", r"\.split\(\s*[\"'][^\"']{1,6}[\"']\s*\)\s*\.join\(\s*(?:''|\"\")\s*\)", 0.15, "T1140"
        ),
    ),
    "vbscript": (
        *_COMMON,
        _r(
            "auto-exec-macro",
            r"\b(?:auto_?open|document_open|workbook_open|autoexec|auto_close|document_close)\b",
            0.2,
            "T1204.002",
        ),
        _r("wsh-shell", r"wscript\.shell|shell\.application", 0.35, "T1059.005"),
        _r("shell-call", r"\bshell\s*\(|\.run\s*\(?|\.exec\s*\(|shellexecute", 0.2, "T1059.005"),
        _r(
            "http-download",
            r"msxml2\.(?:server)?xmlhttp|winhttp\.winhttprequest|urldownloadtofile|microsoft\.xmlhttp",
            0.4,
            "T1105",
        ),
        _r("adodb-stream", r"adodb\.stream", 0.25, "T1105"),
        _r("spawns-shell", r"powershell|cmd(?:\.exe)?\s+/[ck]\b|mshta|rundll32|regsvr32|certutil", 0.35, "T1059"),
        _r(
            "win32-declare",
            r"\bdeclare\s+(?:ptrsafe\s+)?function[^\n]{0,120}lib\s+\"(?:kernel32|ntdll|urlmon)",
            0.35,
            "T1106",
        ),
        _r("callbyname", r"\bcallbyname\b", 0.2, "T1027"),
        _r(
            "temp-folder",
            r"environ\s*\(\s*\"(?:temp|tmp|appdata)\"|%temp%|getspecialfolder\s*\(\s*2\s*\)",
            0.2,
            "T1074",
        ),
    ),
    "batch": (
        *_COMMON,
        _r("powershell-encoded", r"powershell[^\n]{0,120}\s-e(?:nc|ncodedcommand|c)?\s+[a-z0-9+/]{20,}", 0.5, "T1027"),
        _r(
            "powershell-download",
            r"powershell[^\n]{0,300}(?:downloadstring|downloadfile|invoke-webrequest|\biwr\b)",
            0.5,
            "T1105",
        ),
        _r("certutil-abuse", r"certutil(?:\.exe)?[^\n]{0,40}(?:-urlcache|-decode|-split)", 0.55, "T1140"),
        _r("bitsadmin-download", r"bitsadmin[^\n]{0,40}/transfer", 0.45, "T1197"),
        _r("run-key", r"reg(?:\.exe)?\s+add[^\n]{0,120}\\currentversion\\run", 0.4, "T1547.001"),
        _r(
            "recovery-disabled",
            r"bcdedit[^\n]{0,60}recoveryenabled\s+no|bootstatuspolicy\s+ignoreallfailures",
            0.6,
            "T1490",
        ),
        _r(
            "user-added", r"net\s+user\s+\S+\s+\S+\s+/add|net\s+localgroup\s+administrators\s+\S+\s+/add", 0.35, "T1136"
        ),
        _r("scheduled-task", r"schtasks[^\n]{0,20}/create", 0.3, "T1053.005"),
        _r(
            "lolbin-remote",
            r"mshta(?:\.exe)?\s+(?:https?:|javascript:|vbscript:)|regsvr32[^\n]{0,60}/i:\s*https?:|"
            r"rundll32[^\n]{0,80}javascript:",
            0.6,
            "T1218",
        ),
        _r(
            "defender-disabled",
            r"disableantispyware|disablerealtimemonitoring|sc\s+(?:stop|config)\s+windefend",
            0.55,
            "T1562.001",
        ),
        _r("firewall-off", r"netsh\s+(?:adv)?firewall[^\n]{0,60}(?:off|disable)", 0.4, "T1562.004"),
        _r("hidden-attribute", r"attrib\s+\+h", 0.12, "T1564.001"),
    ),
    "shell": (
        *_COMMON,
        _r("download-to-shell", r"(?:curl|wget)[^\n|;]{0,200}\|\s*(?:ba|z|da)?sh\b", 0.55, "T1105"),
        _r("dev-tcp", r"/dev/(?:tcp|udp)/", 0.6, "T1059.004"),
        _r(
            "netcat-shell",
            r"\b(?:nc|ncat|netcat)\b[^\n]{0,60}\s-[ec]\s|mkfifo[^\n]{0,100}\b(?:nc|ncat)\b",
            0.6,
            "T1059.004",
        ),
        _r("base64-to-shell", r"base64\s+(?:-d|--decode)[^\n]{0,40}\|\s*(?:ba|z|da)?sh\b", 0.55, "T1140"),
        _r(
            "tmp-executable", r"chmod\s+(?:\+x|[0-7]*7[0-7]*)\s+[^\n]{0,40}(?:/tmp/|/dev/shm/|/var/tmp/)", 0.35, "T1105"
        ),
        _r("history-wipe", r"history\s+-c|unset\s+histfile|histfile=/dev/null", 0.35, "T1070.003"),
        _r("ssh-key-implant", r">>\s*[^\n]{0,40}authorized_keys", 0.45, "T1098.004"),
        _r("crontab", r"crontab\s+-|/etc/cron", 0.2, "T1053.003"),
        _r("firewall-flush", r"iptables\s+-f|ufw\s+disable", 0.3, "T1562.004"),
        _r(
            "kill-security",
            r"(?:pkill|killall|kill\s+-9)[^\n]{0,40}(?:aliyun|qcloud|falcon|osquery|auditd)",
            0.5,
            "T1562.001",
        ),
    ),
    "python": (
        *_COMMON,
        _r(
            "exec-decoded",
            r"exec\s*\([^\n]{0,80}(?:base64|b64decode|zlib|marshal|codecs\.decode|bytes\.fromhex)",
            0.6,
            "T1027",
        ),
        _r(
            "reverse-shell",
            r"socket[^\n]{0,400}(?:subprocess|os\.dup2)[^\n]{0,400}(?:/bin/(?:ba)?sh|cmd\.exe)|pty\.spawn",
            0.55,
            "T1059.006",
        ),
        _r(
            "process-injection",
            r"ctypes[^\n]{0,200}(?:virtualalloc|createremotethread|writeprocessmemory)",
            0.5,
            "T1055",
        ),
        _r(
            "download-and-exec",
            r"(?:urlopen|requests\.get)\s*\([^\n]{0,200}\)[^\n]{0,200}(?:exec|eval)\s*\(",
            0.55,
            "T1105",
        ),
        _r("marshal-loads", r"marshal\.loads", 0.3, "T1027"),
        _r("shell-download", r"os\.system\s*\([^\n]{0,60}(?:curl|wget)", 0.4, "T1105"),
    ),
}
RULES["hta"] = tuple({r.name: r for r in RULES["javascript"] + RULES["vbscript"]}.values())
# Batch droppers hand their real work to PowerShell: its rules apply to what they decode.
RULES["batch"] = tuple({r.name: r for r in RULES["batch"] + RULES["powershell"]}.values())

# Decoding steps that benign code rarely needs; cosmetic ones (escapes, concatenation) are not counted.
_HEAVY = {"base64", "char-codes", "xor", "iex", "eval", "packer", "arrays", "execute", "format", "replace", "strings"}


def match_rules(language: str, text: str) -> list[Reason]:
    """One reason per rule whose pattern occurs in `text` (already bounded in size)."""
    out = []
    lower = text.lower()
    for rule in RULES.get(language, _COMMON):
        m = rule.pattern.search(lower)
        if m:
            out.append(Reason("heuristic", rule.name, rule.weight, m.group(0)[:80].strip(), rule.techniques))
    return out


def obfuscation_reasons(layers: list[str]) -> list[Reason]:
    heavy = sorted({layer for layer in layers if layer in _HEAVY})
    if not heavy:
        return []
    weight = 0.2 if len(heavy) == 1 else 0.35 if len(heavy) == 2 else 0.5
    return [Reason("heuristic", "obfuscated", weight, "+".join(heavy) + f", {len(layers)} steps", ("T1027",))]
