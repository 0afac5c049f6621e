"""The dispatcher: a path or bytes in, one Verdict out, whatever the file is.

    Scanner(limits, yara=None, model=None).scan_path(path) -> Verdict
    Scanner(...).scan_text(text, language) -> Verdict   (script blocks, command lines)

The kind is decided by content (magic numbers first, then script sniffing), never by the name
alone; YARA runs on the raw bytes and, for scripts, on the deobfuscated text too; a trained model,
when given, scores scripts of its languages by its stacked model (text probability + heuristics),
which then stands in for the heuristics' weights in the score. Nothing is executed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from phagocyte.analysers.files import analyse_elf, analyse_office, analyse_pdf, analyse_pe
from phagocyte.analysers.files.elf import is_elf
from phagocyte.analysers.files.office import is_office
from phagocyte.analysers.files.pdf import is_pdf
from phagocyte.analysers.files.pe import is_pe
from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.scripts import analyse_script, analyse_text, detect_language
from phagocyte.analysers.scripts.decoding import decode_text
from phagocyte.analysers.verdict import Reason, Verdict
from phagocyte.analysers.yara import TIMEOUT_RULE, YaraRules, file_externals

__all__ = ["Scanner", "iter_scan_files", "kind_of"]

_YARA_WEIGHT = 0.55


def kind_of(data: bytes, path: str = "") -> str:
    """`office`, `pdf`, `pe`, `elf`, a script language, or `data`."""
    if is_office(data):
        return "office"
    if is_pdf(data):
        return "pdf"
    if is_pe(data):
        return "pe"
    if is_elf(data):
        return "elf"
    return detect_language(path, data[:65536]) or "data"


def iter_scan_files(paths: list[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files under `paths` (folders walked, hidden entries skipped unless named), in a stable order."""
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith("."):
                        yield Path(root) / f
        else:
            yield p


class Scanner:
    """Holds what is costly to build once (compiled YARA rules, loaded models) and the limits."""

    def __init__(self, limits: ScanLimits | None = None, *, yara: YaraRules | None = None,
                 model: object | None = None) -> None:
        self.limits = limits or ScanLimits()
        self.yara = yara
        self.model = model

    def scan_path(self, path: str | os.PathLike[str]) -> Verdict:
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > self.limits.max_file_bytes:
                v = Verdict(path=str(p), kind="data", size=size)
                v.errors.append(f"not analysed: {size:,} bytes is over the {self.limits.max_file_bytes:,}-byte limit")
                return v
            data = p.read_bytes()
        except OSError as exc:
            v = Verdict(path=str(p), kind="data")
            v.errors.append(f"cannot read: {exc.strerror or exc}")
            return v
        return self.scan_bytes(data, str(p))

    def scan_bytes(self, data: bytes, path: str = "") -> Verdict:
        if len(data) > self.limits.max_file_bytes:
            v = Verdict(path=path, kind="data", size=len(data), sha256=hashlib.sha256(data).hexdigest())
            v.errors.append(f"not analysed: {len(data):,} bytes is over the {self.limits.max_file_bytes:,}-byte limit")
            return v
        kind = kind_of(data, path)
        try:
            if kind == "office":
                v = analyse_office(data, path, self.limits)
            elif kind == "pdf":
                v = analyse_pdf(data, path, self.limits)
            elif kind == "pe":
                v = analyse_pe(data, path, self.limits)
            elif kind == "elf":
                v = analyse_elf(data, path, self.limits)
            elif kind == "data":
                v = Verdict(path=path, kind="data", size=len(data), sha256=hashlib.sha256(data).hexdigest())
            else:
                v = analyse_script(data, path, language=kind, limits=self.limits)
        except RecursionError:
            v = Verdict(path=path, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            v.errors.append("analysis stopped: input nested too deeply")
        self._yara(v, data, path)
        if v.kind in getattr(self.model, "languages", ()):
            self._model(v, v.deobfuscated if v.deobfuscated is not None else decode_text(data))
        return v

    def scan_text(self, text: str, language: str = "powershell", *, path: str = "") -> Verdict:
        """A script block or command line (no file): same analysers, same verdict."""
        v = analyse_text(text, language, path=path, limits=self.limits)
        v.sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        self._model(v, v.deobfuscated if v.deobfuscated is not None else text)
        return v

    def _yara(self, v: Verdict, data: bytes, path: str) -> None:
        if self.yara is None:
            return
        ext = file_externals(path) if path else {}
        passes = [("raw bytes", self.yara.scan(data, externals=ext))]
        if v.deobfuscated:
            passes.append(("deobfuscated text", self.yara.scan(v.deobfuscated.encode("utf-8", "replace"),
                                                               externals=ext)))
        seen = set()
        for what, matches in passes:
            for m in matches:
                if m.rule == TIMEOUT_RULE:  # partial: the rules that had not finished are unknown, so say so
                    v.errors.append(f"YARA scan of the {what} timed out ({self.yara.timeout} s): no rule verdict")
                elif m.rule not in seen:
                    seen.add(m.rule)
                    v.add(Reason("yara", m.rule, _YARA_WEIGHT, m.description[:120]))
        v.rescore()

    def _model(self, v: Verdict, text: str) -> None:
        """The stacked model's score replaces the heuristics' share of the noisy-OR (it already weighs them);
        YARA and the file analysers' reasons still add to it. Reasons keep every heuristic hit and name
        the text model's probability and top words."""
        judge = getattr(self.model, "judge", None)
        if judge is None or v.kind not in getattr(self.model, "languages", ()):
            return
        from phagocyte.analysers.classifier import stack_features

        score, p, words = judge(v.kind, text, stack_features(v.kind, v.reasons, v.layers))
        detail = f"combined {score:.2f} from p(malicious)={p:.2f} and the heuristics"
        if words:
            detail += "; top words: " + ", ".join(words)
        v.add(Reason("model", f"{v.kind}-classifier", round(score, 4), detail, ()))
        v.stacked = True
        v.rescore()
