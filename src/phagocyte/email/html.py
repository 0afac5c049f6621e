"""What a phishing analyst looks for in HTML: links and their text, forms, scripts (never rendered).

The HTML of a message or of an attachment is untrusted: it is cut to a size limit before parsing,
the parser never fetches or executes anything, and a failure becomes a recorded problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Anchor", "Form", "HtmlFacts", "read_html"]

MAX_HTML_CHARS = 2_000_000
MAX_ITEMS = 500

# HTML smuggling: a script that assembles a file in the browser and hands it to the user.
_SMUGGLING = re.compile(
    r"msSaveOrOpenBlob|msSaveBlob|new\s+Blob\s*\(|URL\.createObjectURL|\.download\s*=|"
    r"atob\s*\(|Uint8Array\s*\(|fromCharCode", re.I)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{2000,}={0,2}")


@dataclass(slots=True)
class Anchor:
    href: str
    text: str


@dataclass(slots=True)
class Form:
    action: str
    method: str
    password: bool
    inputs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class HtmlFacts:
    text: str = ""
    anchors: list[Anchor] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """`src` of images, iframes, scripts, embeds (data: URIs included)."""
    forms: list[Form] = field(default_factory=list)
    scripts: int = 0
    smuggling: list[str] = field(default_factory=list)
    """Evidence of HTML smuggling: the script tokens found, and base64 runs of 2,000+ chars."""
    meta_refresh: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _attr(node: Any, name: str) -> str:
    value = node.attributes.get(name)
    return value.strip() if isinstance(value, str) else ""


def read_html(html: str) -> HtmlFacts:
    """Links, forms, sources, scripts and visible text of an HTML document, within the limits.

    Lexbor (via selectolax) parses like a browser's HTML5 tokenizer, in C, without running scripts
    or loading anything; it is fast enough to read every HTML part of every message.
    """
    from selectolax.lexbor import LexborHTMLParser

    facts = HtmlFacts()
    if len(html) > MAX_HTML_CHARS:
        facts.problems.append(f"HTML cut to {MAX_HTML_CHARS:,} of {len(html):,} characters")
        html = html[:MAX_HTML_CHARS]
    try:
        tree = LexborHTMLParser(html.replace("\x00", ""))
        for node in tree.css("a[href]")[:MAX_ITEMS]:
            facts.anchors.append(Anchor(_attr(node, "href"), " ".join((node.text() or "").split())[:300]))
        for node in tree.css("img[src], iframe[src], frame[src], embed[src], script[src], source[src], object[data]"
                             )[:MAX_ITEMS]:
            facts.sources.append(_attr(node, "src") or _attr(node, "data"))
        for node in tree.css("form")[:MAX_ITEMS]:
            inputs = [(_attr(i, "type") or "text").lower() + ":" + _attr(i, "name") for i in node.css("input")[:64]]
            facts.forms.append(Form(_attr(node, "action"), (_attr(node, "method") or "get").lower(),
                                    any(i.startswith("password:") for i in inputs), inputs))
        if not facts.forms and tree.css_first("input[type=password]") is not None:
            facts.forms.append(Form("", "get", True, ["password:"]))
        for node in tree.css("meta[http-equiv]"):
            if _attr(node, "http-equiv").lower() == "refresh":
                facts.meta_refresh.append(_attr(node, "content")[:500])
        scripts = tree.css("script")
        facts.scripts = len(scripts)
        for node in scripts[:50]:
            _check_script(facts, node.text() or "")
        tree.strip_tags(["script", "style", "noscript", "title", "head"])
        root = tree.body or tree.root
        facts.text = " ".join((root.text(separator=" ") if root is not None else "").split())
    except Exception as exc:  # lexbor itself does not fail on bad HTML; this guards the wrapper
        facts.problems.append(f"HTML not readable: {type(exc).__name__}: {str(exc)[:100]}")
    return facts


def _check_script(facts: HtmlFacts, code: str) -> None:
    code = code[:MAX_HTML_CHARS]
    tokens = sorted({m.group(0).split("(")[0].strip() for m in _SMUGGLING.finditer(code)})
    if _BASE64_RUN.search(code):
        tokens.append("base64 blob")
    if len(tokens) >= 2 and len(facts.smuggling) < 20:
        facts.smuggling.extend(t for t in tokens if t not in facts.smuggling)
