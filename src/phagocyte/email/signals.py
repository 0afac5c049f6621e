"""The rules an analyst applies to a message, each a `Reason` with its evidence.

Weights are hand-set priors (0-1, how strongly one signal alone suggests phishing), used for the
signal-only score when no model is loaded; a trained model learns its own weight for every signal
code. Signals only ever *add* suspicion from something present in the message: none fires on a
missing header, so the same rules run on messages whose provenance headers were stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from phagocyte.email.attachments import inspect_attachment
from phagocyte.email.domains import BRANDS, FREEMAIL, brand_domains, brand_in_text, host_facts, registrable, url_host
from phagocyte.email.parse import ParsedMessage

__all__ = ["SIGNALS", "Reason", "Signal", "collect", "message_urls"]


@dataclass(frozen=True, slots=True)
class Signal:
    code: str
    category: str
    weight: float
    description: str


@dataclass(slots=True)
class Reason:
    code: str
    category: str
    weight: float
    description: str
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "category": self.category, "weight": round(self.weight, 3),
                "description": self.description, "evidence": self.evidence}


_S = [
    # header
    ("display_name_address_mismatch", "header", 0.55, "the display name shows another address than the sender's"),
    ("brand_impersonation_sender", "header", 0.65, "the sender name claims a brand its domain does not belong to"),
    ("brand_in_subject", "header", 0.15, "the subject names a brand the sender does not belong to"),
    ("reply_to_mismatch", "header", 0.35, "replies go to another domain than the sender's"),
    ("reply_to_freemail", "header", 0.45, "replies go to a free-mail address while the sender is not free-mail"),
    ("return_path_mismatch", "header", 0.1, "the envelope sender's domain differs from the From domain"),
    ("freemail_brand_sender", "header", 0.5, "a free-mail address writes in a brand's name"),
    ("spf_fail", "header", 0.3, "SPF failed (Authentication-Results / Received-SPF)"),
    ("dkim_fail", "header", 0.25, "DKIM failed"),
    ("dmarc_fail", "header", 0.5, "DMARC failed"),
    ("received_forged_helo", "header", 0.4, "a Received hop names a brand's host from an address outside it"),
    ("received_many_hops", "header", 0.15, "unusually long Received chain"),
    # url
    ("url_ip_literal", "url", 0.5, "a link points at a bare IP address"),
    ("url_punycode", "url", 0.35, "a link uses a punycode (internationalised) domain"),
    ("url_lookalike", "url", 0.6, "a link's domain imitates a brand (look-alike, homoglyph or embedded name)"),
    ("url_shortener", "url", 0.2, "a link goes through a URL shortener"),
    ("url_userinfo", "url", 0.5, "a link hides its host behind user@ (http://brand.com@other)"),
    ("anchor_domain_mismatch", "url", 0.4, "a link's text names another domain than the link goes to"),
    ("url_data_uri", "url", 0.6, "a data: URI carries a document or script"),
    ("url_suspicious_tld", "url", 0.15, "a link's domain is under a top-level domain abused by phishing"),
    ("html_credential_form", "url", 0.75, "HTML with a password form (credential harvesting)"),
    ("html_external_form", "url", 0.3, "an HTML form posts to an external address"),
    ("html_smuggling", "url", 0.8, "a script builds a file in the browser (HTML smuggling)"),
    ("html_meta_refresh", "url", 0.3, "HTML redirects itself (meta refresh)"),
    ("html_script", "url", 0.2, "the message HTML carries scripts"),
    # attachment
    ("attachment_executable", "attachment", 0.8, "an executable or script attachment"),
    ("attachment_double_extension", "attachment", 0.8, "an attachment hides its real extension"),
    ("attachment_type_mismatch", "attachment", 0.5, "an attachment's content is not what its name says"),
    ("attachment_office_macro", "attachment", 0.7, "an Office document with VBA macros"),
    ("attachment_archive", "attachment", 0.1, "an archive attachment"),
    ("attachment_nested_archive", "attachment", 0.4, "an archive inside an archive"),
    ("attachment_encrypted_archive", "attachment", 0.6, "a password-protected archive (hides content from scanners)"),
    ("attachment_archive_bomb", "attachment", 0.5, "an archive over the size or ratio limits"),
    ("attachment_pdf_javascript", "attachment", 0.6, "a PDF with JavaScript"),
    ("attachment_pdf_launch", "attachment", 0.8, "a PDF with a launch action"),
    ("attachment_pdf_embedded_file", "attachment", 0.3, "a PDF with an embedded file"),
    ("attachment_pdf_link", "attachment", 0.1, "a PDF with links"),
    ("attachment_html", "attachment", 0.35, "an HTML or SVG attachment (opens locally in a browser)"),
    ("attachment_unreadable", "attachment", 0.05, "an attachment could not be inspected"),
    ("attachment_qr_code", "attachment", 0.35, "an image carries a QR code (the link moves out of the text)"),
    # language
    ("urgency", "language", 0.2, "urgency or a threat to the account"),
    ("credential_request", "language", 0.35, "asks to log in, verify or update an account or password"),
    ("payment_request", "language", 0.35, "asks for a payment, a change of bank details or a transfer"),
    ("gift_card", "language", 0.35, "asks for gift cards"),
    ("bec_pattern", "language", 0.5, "short request to act for the sender with no link (business e-mail compromise)"),
    ("advance_fee", "language", 0.3, "prize, lottery, inheritance or investment promise"),
]
SIGNALS: dict[str, Signal] = {c: Signal(c, cat, w, d) for c, cat, w, d in _S}

_AUTH = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", re.I)
_RECEIVED_FROM = re.compile(r"^from\s+(\S+)\s+\(([^)\[]*)\[?([0-9a-f.:]*)\]?", re.I)
_DOMAINISH = re.compile(r"(?i)\b(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b")
_EMAILISH = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
_BAD_TLDS = frozenset({"top", "xyz", "click", "link", "zip", "mov", "icu", "buzz", "rest", "country", "gq", "tk",
                       "ml", "cf", "ga", "cyou", "sbs", "cfd", "monster", "live", "work", "fit", "bid", "loan",
                       "men", "date", "kim", "support", "ru.com", "quest", "lat"})


def _terms(*words: str) -> str:
    return "|".join(words)


# English, Portuguese and Spanish phrasing (the languages of the phishing this was written against).
# "Immediately" alone is ordinary prose ("the call returns immediately", a confidentiality notice's
# "notify the sender immediately"): it counts only beside a call to act on the message or account.
_ACT_EN = r"(?:act|respond|reply|verify|update|confirm|validate|click|call us|contact us|pay|log ?in|sign ?in)"
_ACT_PT_ES = (r"(?:acesse|atualize|regularize|confirme|verifique|valide|clique|pague|responda|entre em contato|"
              r"actualice|actualiza|haga clic|ingrese)")
_URGENCY = _terms(
    r"urgent(?:ly)?", r"immediate (?:action|attention|response)", rf"{_ACT_EN}(?: [\w']+){{0,3}} immediately",
    rf"immediately (?:to )?{_ACT_EN}", rf"{_ACT_PT_ES}(?: \w+){{0,3}} (?:imediatamente|inmediatamente)",
    rf"(?:imediatamente|inmediatamente) {_ACT_PT_ES}", r"within (?:24|48|72) hours", r"act now",
    r"final (?:notice|warning)",
    r"(?:account|access|service) (?:will be|has been|is) (?:suspended|closed|locked|blocked|disabled|terminated|"
    r"restricted|deactivated)", r"last chance", r"expires? (?:today|soon)", r"unusual (?:sign-?in|activity)",
    r"suspicious activity", r"urgente", r"[úu]ltimo aviso", r"(?:conta|cart[ãa]o|acesso) "
    r"(?:ser[áa] )?(?:bloquead[oa]|suspens[oa]|cancelad[oa])", r"prazo", r"cuenta suspendida")
_CREDENTIAL = _terms(
    r"verify your (?:account|identity|email|information|details)", r"confirm your (?:account|identity|password|"
    r"details|information)", r"(?:update|validate|reactivate|unlock|restore) your (?:account|password|information|"
    r"payment|billing|details)", r"(?:log ?in|sign ?in) (?:to|now|here)", r"reset your password",
    r"password (?:expires|expired|will expire)", r"mailbox (?:is )?(?:full|quota|storage)", r"e-?mail quota",
    r"atualize seus dados", r"confirme seus dados", r"(?:sua )?senha", r"verifique sua conta", r"acesse sua conta",
    r"verifica tu cuenta", r"actualiza tus datos")
_PAYMENT = _terms(
    r"(?:new|change of|updated?) (?:bank(?:ing)?|account) (?:details|information)", r"wire transfer",
    r"bank transfer", r"outstanding (?:invoice|payment|balance)", r"overdue (?:invoice|payment)",
    r"payment (?:failed|declined|was declined|could not be processed)", r"update (?:your )?payment",
    r"boleto", r"pix", r"fatura (?:em aberto|vencida|pendente)", r"pagamento (?:pendente|recusado)",
    r"transferencia bancaria")
_GIFT = _terms(r"gift ?cards?", r"itunes cards?", r"google play cards?", r"steam cards?", r"cart[ãa]o presente")
_BEC = _terms(r"are you (?:available|at your desk|free)", r"quick (?:favou?r|task)", r"i need you to",
              r"(?:kindly|please) (?:handle|process) (?:this|a) (?:payment|transfer)", r"keep (?:this )?confidential",
              r"(?:your|my) (?:cell|mobile|whatsapp) (?:number|phone)")
_ADVANCE = _terms(r"you (?:have )?won", r"lottery", r"inheritance", r"beneficiary", r"next of kin",
                  r"million (?:dollars|usd|euros)", r"claim your (?:prize|reward)", r"guaranteed (?:profit|returns)",
                  r"voc[êe] (?:foi sorteado|ganhou)", r"pr[êe]mio")


# One pass over the lower-cased text for all phrase lists (six separate passes cost 6x).
_LANGUAGE = re.compile(r"\b(?:(?P<urgency>" + _URGENCY + r")|(?P<credential_request>" + _CREDENTIAL
                       + r")|(?P<payment_request>" + _PAYMENT + r")|(?P<gift_card>" + _GIFT + r")|(?P<bec>" + _BEC
                       + r")|(?P<advance_fee>" + _ADVANCE + r"))\b")


class _Collector:
    def __init__(self) -> None:
        self.found: dict[str, Reason] = {}

    def add(self, code: str, evidence: str) -> None:
        s = SIGNALS[code]
        r = self.found.get(code)
        if r is None:
            r = self.found[code] = Reason(code, s.category, s.weight, s.description)
        if len(r.evidence) < 5 and evidence not in r.evidence:
            r.evidence.append(evidence[:300])


def message_urls(pm: ParsedMessage) -> list[str]:
    """Every http(s) URL the reader could follow: anchors, image and frame sources, plain-text URLs."""
    seen: dict[str, None] = {}
    for u in [a.href for a in pm.anchors] + pm.sources + pm.text_urls:
        low = u[:12].lower()
        if (low.startswith(("http://", "https://", "www.")) or low.startswith("hxxp")) and u not in seen:
            seen[u[:2000]] = None
    return list(seen)


def collect(pm: ParsedMessage) -> tuple[list[Reason], list[dict[str, object]]]:
    """All signals of a parsed message, and the attachment indicators (name, types, size, hashes).

    Links decoded from QR codes in attachments are appended to `pm.text_urls`."""
    c = _Collector()
    _headers(pm, c)
    atts = _attachments(pm, c)  # first: links decoded from QR codes join the message's links
    _urls(pm, c)
    _language(pm, c)
    return list(c.found.values()), atts


def _domain_of(addr: str) -> str:
    return registrable(addr.rsplit("@", 1)[-1]) if "@" in addr else ""


def _headers(pm: ParsedMessage, c: _Collector) -> None:
    name, addr = pm.address("from")
    dom = _domain_of(addr)
    if name:
        for m in _EMAILISH.finditer(name):
            other = registrable(m.group(1).lower())
            if dom and other != dom:
                c.add("display_name_address_mismatch", f"From: {name!r} <{addr}>")
        brand = brand_in_text(name)
        if brand and dom and dom not in brand_domains(brand):
            c.add("freemail_brand_sender" if dom in FREEMAIL else "brand_impersonation_sender",
                  f"From: {name!r} <{addr}> (brand {brand})")
    brand = brand_in_text(pm.subject)
    if brand and dom and dom not in brand_domains(brand):
        c.add("brand_in_subject", f"Subject names {brand}; sender {dom}")
    _, reply = pm.address("reply-to")
    rdom = _domain_of(reply)
    if rdom and dom and rdom != dom:
        if rdom in FREEMAIL and dom not in FREEMAIL:
            c.add("reply_to_freemail", f"From {addr}, Reply-To {reply}")
        else:
            c.add("reply_to_mismatch", f"From {addr}, Reply-To {reply}")
    _, rp = pm.address("return-path")
    rpdom = _domain_of(rp)
    if rpdom and dom and rpdom != dom:
        c.add("return_path_mismatch", f"From {addr}, Return-Path {rp}")
    auth = pm.get("authentication-results") or pm.get("arc-authentication-results")
    for mech, result in _AUTH.findall(auth):
        res = result.lower()
        if res in ("fail", "softfail", "permerror", "hardfail"):
            c.add(f"{mech.lower()}_fail", f"Authentication-Results: {mech.lower()}={res}")
    spf = pm.get("received-spf").lower()
    if spf.startswith(("fail", "softfail")):
        c.add("spf_fail", f"Received-SPF: {spf.split()[0]}")
    received = pm.get_all("received")
    if len(received) > 20:
        c.add("received_many_hops", f"{len(received)} Received headers")
    for hop in received[:30]:
        hm = _RECEIVED_FROM.match(hop)
        if not hm:
            continue
        helo, rdns = hm.group(1).lower().strip("[]"), hm.group(2).strip().lower()
        brand = host_facts(helo).lookalike if "." in helo else None
        hdom = registrable(helo)
        claimed = next((b for b, ds in BRANDS.items() if hdom in ds), None)
        rhost = rdns.split()[0] if rdns else ""
        if claimed and re.search(r"[a-z]", rhost) and ":" not in rhost and "." in rhost \
                and registrable(rhost) not in brand_domains(claimed):
            c.add("received_forged_helo", f"HELO {helo} from {rhost} [{hm.group(3)}]")
        elif brand:
            c.add("received_forged_helo", f"HELO {helo} imitates {brand}")


def _urls(pm: ParsedMessage, c: _Collector) -> None:
    for url in message_urls(pm):
        if url.lower().startswith("hxxp"):
            continue
        host = url_host(url)
        if not host:
            continue
        f = host_facts(host)
        if f.ip_literal:
            c.add("url_ip_literal", url[:200])
        if f.punycode:
            c.add("url_punycode", f"{host} shows as {f.unicode}")
        if f.lookalike:
            c.add("url_lookalike", f"{host}: {f.how}")
        if f.shortener:
            c.add("url_shortener", url[:200])
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            c.add("url_userinfo", url[:200])
        tld = host.rsplit(".", 1)[-1]
        if tld in _BAD_TLDS:
            c.add("url_suspicious_tld", host)
    for a in pm.anchors:
        href = a.href.lower()
        if href.startswith(("data:text/html", "data:application", "data:image/svg")):
            c.add("url_data_uri", a.href[:80])
        if not href.startswith(("http://", "https://")) or not a.text:
            continue
        m = _DOMAINISH.search(a.text)
        if not m or "@" in a.text:
            continue
        shown = registrable(m.group(1).lower())
        real = registrable(url_host(a.href))
        if real and shown != real and "." in shown and shown.rsplit(".", 1)[-1].isalpha() and len(shown) > 4:
            c.add("anchor_domain_mismatch", f"text {a.text[:80]!r} -> {real}")
    for src in pm.sources:
        if src.lower().startswith(("data:text/html", "data:application")):
            c.add("url_data_uri", src[:80])
    for form in pm.forms:
        if form.password:
            c.add("html_credential_form", f"form action {form.action[:200] or '(none)'}")
        elif form.action.lower().startswith(("http://", "https://")):
            c.add("html_external_form", f"form action {form.action[:200]}")
    if pm.smuggling:
        c.add("html_smuggling", ", ".join(pm.smuggling[:6]))
    if pm.meta_refresh:
        c.add("html_meta_refresh", pm.meta_refresh[0][:200])
    if pm.scripts:
        c.add("html_script", f"{pm.scripts} script element(s)")


def _attachments(pm: ParsedMessage, c: _Collector) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for att in pm.attachments:
        kind, findings = inspect_attachment(att)
        out.append({"name": att.name, "declared_type": att.declared_type, "true_type": kind, "size": att.size,
                    "sha256": att.sha256, "md5": att.md5})
        if kind == "html" or att.name.lower().endswith((".html", ".htm", ".shtml", ".svg")):
            c.add("attachment_html", att.name or att.declared_type)
        for f in findings:
            c.add(f.code, f.evidence)
            if f.url and len(pm.text_urls) < 500:
                pm.text_urls.append(f.url)
    return out


def _language(pm: ParsedMessage, c: _Collector) -> None:
    text = (pm.subject + "\n" + pm.text)[:20_000].lower()
    bec: list[str] = []
    for m in _LANGUAGE.finditer(text):
        code = m.lastgroup or ""
        if code == "bec":
            if m.group(0) not in bec:
                bec.append(m.group(0))
        else:
            c.add(code, m.group(0))
    if not bec:
        return
    words = len(pm.text.split())
    if words < 150 and not message_urls(pm):
        for hit in bec[:5]:
            c.add("bec_pattern", f"{hit!r} in a {words}-word message without links")
