"""Which script language a file or text is, by name first and content second.

Why content too: attachments and dropped files are often misnamed (`invoice.pdf.js`, `.txt`
holding PowerShell), and event fields carry no file name at all.
"""

from __future__ import annotations

import re

__all__ = ["LANGUAGES", "detect_language"]

LANGUAGES = ("powershell", "javascript", "vbscript", "batch", "hta", "shell", "python")

_BY_EXT = {
    ".ps1": "powershell", ".psm1": "powershell", ".psd1": "powershell",
    ".js": "javascript", ".jse": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".wsf": "javascript",
    ".vbs": "vbscript", ".vbe": "vbscript", ".vba": "vbscript", ".bas": "vbscript",
    ".bat": "batch", ".cmd": "batch",
    ".hta": "hta",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ksh": "shell",
    ".py": "python", ".pyw": "python",
}
_SHEBANG = re.compile(rb"^#!\s*\S*?(?:/env\s+)?(bash|sh|zsh|ksh|dash|python[\d.]*|node|pwsh|powershell)\b")
_SNIFF = (
    ("hta", re.compile(r"<hta:application|<script[^>]+language\s*=\s*[\"']?(?:vbscript|jscript)", re.I)),
    ("powershell", re.compile(
        r"\b(?:invoke-expression|new-object|write-host|get-\w+|set-\w+|\$env:|\[convert\]::|param\s*\(|"
        r"foreach-object|\$psscriptroot|-encodedcommand|\[system\.[\w.]+\]::)", re.I)),
    ("vbscript", re.compile(r"^\s*(?:dim|sub|function|set|on error resume next|private sub|public sub)\b.*$"
                            r"|createobject\(\s*\"", re.I | re.M)),
    ("batch", re.compile(r"^\s*@?echo\s+off\b|^\s*(?:set|if|goto|call|rem)\s+.*%\w+%", re.I | re.M)),
    ("javascript", re.compile(r"\b(?:function\s*\w*\s*\(|var\s+\w+\s*=|let\s+\w+|const\s+\w+|=>|"
                              r"activexobject|wscript\.|document\.|window\.|require\()", re.I)),
    ("python", re.compile(r"^\s*(?:import \w+|from [\w.]+ import|def \w+\(.*\):)", re.M)),
    ("shell", re.compile(r"^\s*(?:export \w+=|if \[|fi$|echo \$|chmod |curl |wget )", re.M)),
)


def detect_language(name: str | None, head: bytes) -> str | None:
    """The language of a script, or None when it does not look like one of `LANGUAGES`."""
    if name:
        lower = name.lower()
        for ext, lang in _BY_EXT.items():
            if lower.endswith(ext):
                return lang
    m = _SHEBANG.match(head)
    if m:
        word = m.group(1).decode()
        return ("python" if word.startswith("python") else "javascript" if word == "node"
                else "powershell" if word in ("pwsh", "powershell") else "shell")
    text = head[:65536].decode("utf-8", errors="replace")
    if "\0" in text[:1024]:
        return None
    for lang, rx in _SNIFF:
        if rx.search(text):
            return lang
    return None
