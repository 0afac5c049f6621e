"""Domains as a phishing analyst reads them: who owns it, whom it imitates, what it hides.

The brand list and the two-level public suffixes are small, hand-written tables (no network, no
downloaded list): enough for the brands phishing imitates most, extendable by a team. The
registrable domain is approximated as the last two labels, or three under a known two-level
suffix (`co.uk`, `com.br`, ...).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = [
    "BRANDS",
    "FREEMAIL",
    "SHORTENERS",
    "HostFacts",
    "brand_domains",
    "brand_in_text",
    "host_facts",
    "registrable",
    "url_host",
]

# brand -> domains it legitimately sends from and links to (registrable domains).
BRANDS: dict[str, tuple[str, ...]] = {
    "paypal": ("paypal.com", "paypal.me", "paypal-communication.com", "paypalobjects.com"),
    "microsoft": ("microsoft.com", "office.com", "office365.com", "outlook.com", "live.com", "hotmail.com",
                  "microsoftonline.com", "sharepoint.com", "onedrive.com", "msn.com", "azure.com", "windows.net",
                  "skype.com", "bing.com", "1drv.ms"),
    "office365": ("office.com", "office365.com", "microsoft.com", "microsoftonline.com"),
    "outlook": ("outlook.com", "live.com", "microsoft.com", "office.com"),
    "onedrive": ("onedrive.com", "live.com", "microsoft.com", "1drv.ms", "sharepoint.com"),
    "sharepoint": ("sharepoint.com", "microsoft.com"),
    "apple": ("apple.com", "icloud.com", "me.com", "apple.news"),
    "icloud": ("icloud.com", "apple.com"),
    "amazon": ("amazon.com", "amazon.co.uk", "amazon.de", "amazon.com.br", "amazon.fr", "amazon.es", "amazon.it",
               "amazon.ca", "amazon.co.jp", "amazon.in", "amazonaws.com", "amazonses.com", "a2z.com", "primevideo.com"),
    "netflix": ("netflix.com", "netflix.net", "nflxext.com", "nflximg.net"),
    "google": ("google.com", "gmail.com", "googlemail.com", "youtube.com", "googleusercontent.com", "gstatic.com",
               "googleapis.com", "google.com.br", "goo.gl", "g.co", "withgoogle.com"),
    "facebook": ("facebook.com", "facebookmail.com", "fb.com", "meta.com", "fbcdn.net"),
    "instagram": ("instagram.com", "facebookmail.com", "meta.com"),
    "whatsapp": ("whatsapp.com", "whatsapp.net", "meta.com"),
    "linkedin": ("linkedin.com", "licdn.com"),
    "dhl": ("dhl.com", "dhl.de", "dhl.co.uk", "dhl.com.br", "dhlparcel.nl"),
    "fedex": ("fedex.com",),
    "ups": ("ups.com",),
    "usps": ("usps.com", "usps.gov"),
    "docusign": ("docusign.com", "docusign.net"),
    "dropbox": ("dropbox.com", "dropboxmail.com"),
    "adobe": ("adobe.com", "adobesign.com", "acrobat.com"),
    "wetransfer": ("wetransfer.com", "we.tl"),
    "chase": ("chase.com", "jpmorgan.com"),
    "wellsfargo": ("wellsfargo.com", "wf.com"),
    "bankofamerica": ("bankofamerica.com", "bofa.com"),
    "citibank": ("citi.com", "citibank.com"),
    "hsbc": ("hsbc.com", "hsbc.co.uk"),
    "barclays": ("barclays.co.uk", "barclays.com"),
    "santander": ("santander.com", "santander.com.br", "santander.co.uk"),
    "itau": ("itau.com.br",),
    "bradesco": ("bradesco.com.br",),
    "nubank": ("nubank.com.br", "nu.com.br"),
    "caixa": ("caixa.gov.br",),
    "correios": ("correios.com.br",),
    "mercadolivre": ("mercadolivre.com.br", "mercadolibre.com", "mercadopago.com", "mercadopago.com.br"),
    "binance": ("binance.com",),
    "coinbase": ("coinbase.com",),
    "metamask": ("metamask.io",),
    "steam": ("steampowered.com", "steamcommunity.com"),
    "spotify": ("spotify.com",),
    "ebay": ("ebay.com", "ebay.co.uk", "ebay.de"),
    "walmart": ("walmart.com",),
    "costco": ("costco.com",),
    "norton": ("norton.com", "nortonlifelock.com", "gen.digital"),
    "mcafee": ("mcafee.com",),
    "zoom": ("zoom.us", "zoom.com"),
    "yahoo": ("yahoo.com", "yahoo.co.uk", "yahoo.com.br"),
    "att": ("att.com", "att.net"),
    "verizon": ("verizon.com", "verizonwireless.com"),
    "irs": ("irs.gov",),
    "hmrc": ("gov.uk",),
    "booking": ("booking.com",),
    "airbnb": ("airbnb.com",),
    "stripe": ("stripe.com",),
    "intuit": ("intuit.com", "quickbooks.com"),
}

SHORTENERS = frozenset({
    "bit.ly", "bitly.com", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly",
    "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "bl.ink", "short.io", "s.id", "v.gd", "qrco.de", "lnkd.in",
    "urlz.fr", "shorturl.com", "x.co", "trib.al", "soo.gd", "clck.ru", "u.to", "tny.im", "encurtador.com.br",
    "bit.do", "l.ead.me", "linktr.ee",
})

FREEMAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.com.br", "hotmail.com", "outlook.com", "live.com",
    "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com", "gmx.de", "gmx.net", "yandex.ru", "yandex.com",
    "protonmail.com", "proton.me", "zoho.com", "mail.ru", "bol.com.br", "uol.com.br", "qq.com", "163.com",
})

_TWO_LEVEL = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "com.br", "net.br", "org.br", "gov.br", "com.au", "net.au", "org.au",
    "co.jp", "ne.jp", "or.jp", "co.in", "co.za", "com.mx", "com.ar", "com.co", "co.nz", "com.tr", "com.cn",
    "com.hk", "com.sg", "co.kr", "com.tw", "com.pl", "co.il", "com.my", "com.ph", "com.vn", "com.ua", "com.pe",
})

# Characters that render like Latin letters (Cyrillic, Greek, digits): folded to build a skeleton.
_CONFUSABLE = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ο": "o", "α": "a", "ν": "v", "ρ": "p", "τ": "t", "κ": "k",
    "ι": "i", "ε": "e", "0": "o", "1": "l", "3": "e", "5": "s", "ı": "i", "ⅼ": "l",
})
_BRAND_WORD = re.compile(r"[a-z0-9]+")


def registrable(host: str) -> str:
    """`login.paypal.co.uk` -> `paypal.co.uk` (approximate; see module doc). IPs are returned as is."""
    host = host.strip(".").lower()
    labels = host.split(".")
    if len(labels) <= 2 or _is_ip(host):
        return host
    n = 3 if ".".join(labels[-2:]) in _TWO_LEVEL else 2
    return ".".join(labels[-n:])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


@lru_cache(maxsize=8_192)
def url_host(url: str) -> str:
    """Lower-cased host of a URL ('' when it has none); `www.x.com/...` without a scheme works too."""
    u = url.strip()
    if u.lower().startswith("www."):
        u = "http://" + u
    try:
        host = urlsplit(u).hostname or ""
    except ValueError:
        return ""
    return host.strip(".").lower()


def _skeleton(label: str) -> str:
    folded = unicodedata.normalize("NFKC", label.lower()).translate(_CONFUSABLE)
    return folded.replace("rn", "m").replace("vv", "w")


def _distance(a: str, b: str, cap: int = 3) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, capped: `cap` means "cap or more".

    Only cells within `cap` of the diagonal can hold a distance under `cap`, and once a whole row
    reaches `cap` no later row can come back under it: most label-vs-brand comparisons stop after
    a few rows (this runs for every new link host against every brand)."""
    if abs(len(a) - len(b)) >= cap:
        return cap
    big = cap
    prev2: list[int] = []
    prev = [j if j < cap else big for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        cur = [big] * (len(b) + 1)
        cur[0] = i if i < cap else big
        lo, hi = max(1, i - cap + 1), min(len(b), i + cap - 1)
        for j in range(lo, hi + 1):
            cb = b[j - 1]
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) >= cap:
            return cap
        prev2, prev = prev, cur
    return min(prev[-1], cap)


_BRAND_DOMAINS = frozenset(d for ds in BRANDS.values() for d in ds)
_BRAND_LABELS = {d.split(".")[0]: brand for brand, ds in BRANDS.items() for d in ds if len(d.split(".")[0]) >= 4}
for _b in BRANDS:
    _BRAND_LABELS.setdefault(_b, _b)
_INFRA_LABELS = frozenset({"gstatic", "googleusercontent", "googleapis", "amazonaws", "amazonses", "nflxext",
                           "nflximg", "fbcdn", "licdn", "paypalobjects", "dropboxmail", "facebookmail"})
"""Labels of a brand's content-delivery, API and mail-sending domains: nobody reads them as the brand,
so a near miss of one is no lure (`sstatic`, Stack Overflow's CDN, is one edit from `gstatic`)."""
_LONG_BRAND_LABELS = tuple((lbl, b) for lbl, b in _BRAND_LABELS.items() if len(lbl) >= 6 and lbl not in _INFRA_LABELS)


def _deletions(word: str, k: int = 2) -> set[str]:
    """The word with up to `k` characters deleted. Two strings within edit distance k (insertions,
    deletions, substitutions, adjacent transpositions) share one of these: an exact prefilter."""
    out = {word}
    frontier = {word}
    for _ in range(k):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


_NEAR_BRAND: dict[str, list[int]] = {}
for _k, (_lbl, _) in enumerate(_LONG_BRAND_LABELS):
    for _v in _deletions(_lbl):
        _NEAR_BRAND.setdefault(_v, []).append(_k)


@dataclass(frozen=True, slots=True)
class HostFacts:
    host: str
    domain: str
    ip_literal: bool
    punycode: bool
    unicode: str
    """The host as shown to a reader (punycode decoded)."""
    shortener: bool
    lookalike: str | None
    """The brand this host imitates without belonging to it (look-alike, homoglyph or embedded name)."""
    how: str


@lru_cache(maxsize=16_384)
def host_facts(host: str) -> HostFacts:
    host = host.lower().strip(".")
    ip = _is_ip(host)
    domain = registrable(host)
    puny = any(label.startswith("xn--") for label in host.split("."))
    shown = host
    if puny:
        try:
            shown = host.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            shown = host
    lookalike, how = (None, "") if ip else _imitates(shown, registrable(shown) if shown != host else domain)
    return HostFacts(host, domain, ip, puny, shown, domain in SHORTENERS, lookalike, how)


def _imitates(host: str, domain: str) -> tuple[str | None, str]:
    if domain in _BRAND_DOMAINS or host in _BRAND_DOMAINS:
        return None, ""
    label = domain.split(".")[0]
    brand, how = _label_imitates(label)
    if brand:
        return brand, how
    words = set(_BRAND_WORD.findall(host.replace(domain, " ") + " " + label.replace("-", " ")))
    for w in words:
        if w in _BRAND_LABELS and len(w) >= 4 and w != label:
            return _BRAND_LABELS[w], f"brand name {w!r} inside a domain it does not own"
    if "-" in label:
        for w in label.split("-"):
            if w in _BRAND_LABELS and len(w) >= 4:
                return _BRAND_LABELS[w], f"brand name {w!r} inside a domain it does not own"
    return None, ""


@lru_cache(maxsize=16_384)
def _label_imitates(label: str) -> tuple[str | None, str]:
    """Homoglyph or small edit distance between a domain's first label and a brand's (cached per label:
    many hosts share one registrable domain)."""
    skel = _skeleton(label)
    if skel != label and skel in _BRAND_LABELS:
        return _BRAND_LABELS[skel], f"homoglyph of {skel}"
    near: set[int] = set()
    for variant in _deletions(skel):
        near.update(_NEAR_BRAND.get(variant, ()))
    for k in sorted(near):  # brand-list order, as a plain scan would find them
        brand_label, brand = _LONG_BRAND_LABELS[k]
        if label != brand_label:
            d = _distance(skel, brand_label)
            if d == 1 or (d == 2 and len(brand_label) >= 9):
                return brand, f"look-alike of {brand_label} (edit distance {d})"
    return None, ""


_BRAND_TEXT = re.compile(r"\b(" + "|".join(sorted((b for b in BRANDS if len(b) >= 4), key=len, reverse=True))
                         + r"|dhl|hmrc)\b", re.I)


def brand_in_text(text: str) -> str | None:
    """The first brand named in a short text (display name, subject), or None."""
    m = _BRAND_TEXT.search(text)
    return m.group(1).lower() if m else None


def brand_domains(brand: str) -> tuple[str, ...]:
    return BRANDS.get(brand, ())
