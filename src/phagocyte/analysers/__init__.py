"""Static analysers of code and files: bytes in, one `Verdict` out, nothing ever executed.

    analysers/
      limits.py       the bounds every decoder obeys (size, depth, time, decompression)
      verdict.py      the Verdict (label, score, reasons, indicators, deobfuscated text) and its alert
      indicators.py   URLs, IPs, domains, dropped paths and hashes found in text
      scripts/        language detection, one deobfuscator per language, heuristics
      files/          Office (oletools), PDF, PE (pefile), ELF (pyelftools)
      yara.py         YARA through yara-x: compiled once, cached on disk, bad rules reported
      classifier.py   learned per-language script classifier (trained by command)
      scan.py         the dispatcher: a path or bytes to a Verdict
      events.py       script blocks and command lines in the store to alerts
"""

from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.verdict import Verdict

__all__ = ["ScanLimits", "Verdict"]
