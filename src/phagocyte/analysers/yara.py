"""YARA detection through yara-x: user rule sets compiled once and cached on disk.

Why yara-x and a cache: compiling a few thousand community rules takes seconds; the compiled set
is serialised under a key made of every rule file's content, the externals and the yara-x
version, so later runs load it in milliseconds and any edit recompiles. Community sets always
carry some rules that one engine rejects: each is reported (file, rule, reason) and skipped, never
allowed to sink the set. Externals (`filename`, `filepath`, `extension`, `filetype`, `owner`,
the LOKI/THOR convention signature-base relies on) are declared at compile time and set per file.
Scans run in yara-x's fast mode: a verdict needs which rules matched, not every offset, and
tracking every hit of wide community regexes was what made YARA the slowest stage (3.8x faster on
JavaScript, same matching rules; rules that count or locate hits still get them). Each scan has a
time budget; a scan that runs out is reported as `__timeout__` (and counted), never as clean.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yara_x

from phagocyte.errors import InputError

__all__ = ["DEFAULT_EXTERNALS", "TIMEOUT_RULE", "YaraMatch", "YaraRules", "rule_files"]

DEFAULT_EXTERNALS: dict[str, str | int | bool] = {
    "filename": "", "filepath": "", "extension": "", "filetype": "", "owner": "",
}
_SUFFIXES = (".yar", ".yara")
_MAX_RULE_FILE = 8 * 1024 * 1024
TIMEOUT_RULE = "__timeout__"


@dataclass(frozen=True, slots=True)
class YaraMatch:
    rule: str
    namespace: str
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return str(self.meta.get("description") or "")


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Rule files under `paths`, sorted; index files that only `include` others are left out (their
    rules are read from the included files themselves, once)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
            continue
        if not p.is_dir():
            raise InputError(f"YARA rules not found: {p}")
        if (p / "index.yar").is_file():  # the set's maintainers chose what is in it (Yara-Rules leaves utils out)
            out.extend(_included(p / "index.yar", depth=0))
            continue
        for f in sorted(p.rglob("*")):
            hidden = any(part.startswith(".") for part in f.relative_to(p).parts)
            if f.suffix.lower() in _SUFFIXES and f.is_file() and not hidden:
                out.append(f)
    return [f for f in out if not _is_index(f)]


def _included(index: Path, depth: int) -> list[Path]:
    out: list[Path] = []
    for line in index.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("include"):
            continue
        target = (index.parent / line.split('"')[1]).resolve() if line.count('"') >= 2 else None
        if target is None or not target.is_file():
            continue
        out.extend(_included(target, depth + 1) if _is_index(target) and depth < 3 else [target])
    return out


def _is_index(f: Path) -> bool:
    try:
        head = f.read_bytes()[:4096]
    except OSError:
        return False
    lines = [ln.strip() for ln in head.splitlines() if ln.strip() and not ln.strip().startswith(b"//")]
    return bool(lines) and all(ln.startswith(b"include") for ln in lines)


def _namespace(f: Path, n: int) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in f.stem)
    return f"ns{n}_{stem}"


class YaraRules:
    """A compiled rule set plus the report of what was skipped."""

    def __init__(self, rules: yara_x.Rules, report: dict[str, Any], externals: Mapping[str, Any], *,
                 timeout: int = 5) -> None:
        self._rules = rules
        self.report = report
        self.externals = dict(externals)
        self.timeout = timeout
        self.timeouts = 0  # scans that ran out of time (each also returned as a `__timeout__` match)
        self._scanner = yara_x.Scanner(rules)
        self._scanner.set_timeout(max(1, int(timeout)))
        self._scanner.fast_scan(True)

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.report.get("skipped", []))

    @property
    def count(self) -> int:
        return int(self.report.get("files", 0))

    @classmethod
    def compile(cls, paths: Iterable[str | os.PathLike[str]], *, externals: Mapping[str, Any] | None = None,
                cache_dir: str | os.PathLike[str] | None = None, timeout: int = 5) -> YaraRules:
        """Compile every rule file under `paths` (or load the cached build of exactly these files).

        `timeout` is each scan's budget in whole seconds (yara-x's unit)."""
        ext = {**DEFAULT_EXTERNALS, **(externals or {})}
        files = rule_files(paths)
        sources: list[tuple[Path, str]] = []
        key = hashlib.sha256(f"yara-x|{_yara_x_version()}|{sorted(ext.items())!r}".encode())
        for f in files:
            data = f.read_bytes()[:_MAX_RULE_FILE]
            key.update(str(f).encode() + b"\0" + hashlib.sha256(data).digest())
            sources.append((f, data.decode("utf-8", errors="replace")))
        digest = key.hexdigest()[:32]
        cache = Path(cache_dir) / f"yara-{digest}" if cache_dir else None
        if cache is not None and (cache / "rules.bin").exists() and (cache / "report.json").exists():
            try:
                with open(cache / "rules.bin", "rb") as fh:
                    rules = yara_x.Rules.deserialize_from(fh)
                return cls(rules, json.loads((cache / "report.json").read_text()), ext, timeout=timeout)
            except Exception:  # a damaged cache is rebuilt, never trusted
                pass
        compiler = yara_x.Compiler()
        compiler.ignore_invalid_rules(True)
        for name, value in ext.items():
            compiler.define_global(name, value)
        skipped: list[dict[str, str]] = []
        for n, (f, src) in enumerate(sources):
            compiler.new_namespace(_namespace(f, n))
            before = len(compiler.ignored_rules())  # type: ignore[misc]
            errors_before = len(compiler.errors())
            try:
                compiler.add_source(src, origin=str(f))
            except yara_x.CompileError as exc:
                skipped.append({"file": str(f), "rule": "*", "reason": str(exc).splitlines()[0]})
                continue
            new_ignored = compiler.ignored_rules()[before:]  # type: ignore[misc]
            if not new_ignored:  # a syntax error: the whole file is left out, and said so
                for err in compiler.errors()[errors_before:]:
                    skipped.append({"file": str(f), "rule": "*",
                                    "reason": f"{err.get('title', 'error')} at line {err.get('line')}"[:300]})
            for ignored in new_ignored:
                message = str(getattr(ignored, "message", "") or getattr(ignored, "reason", ""))
                skipped.append({"file": str(f), "rule": str(getattr(ignored, "name", ignored)),
                                "reason": (message.splitlines() or [""])[0][:300]})
        rules = compiler.build()
        report = {"files": len(sources), "skipped": skipped, "key": digest}
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            rules.serialize_into(buf)
            tmp = cache / "rules.bin.tmp"
            tmp.write_bytes(buf.getvalue())
            tmp.replace(cache / "rules.bin")
            (cache / "report.json").write_text(json.dumps(report))
        return cls(rules, report, ext, timeout=timeout)

    def scan(self, data: bytes, *, externals: Mapping[str, Any] | None = None) -> list[YaraMatch]:
        """Matching rules on `data`; externals given here override the defaults for this scan only."""
        values = {**self.externals, **(externals or {})}
        for name, value in values.items():
            try:
                self._scanner.set_global(name, value)
            except Exception:  # an external no rule declares
                continue
        try:
            results = self._scanner.scan(data)
        except yara_x.TimeoutError:
            self.timeouts += 1
            return [YaraMatch(TIMEOUT_RULE, "phagocyte", (),
                              {"description": f"YARA scan stopped after its {self.timeout} s budget"})]
        return [YaraMatch(r.identifier, r.namespace, tuple(r.tags), dict(r.metadata)) for r in results.matching_rules]


def file_externals(path: str) -> dict[str, str]:
    p = Path(path)
    return {"filename": p.name, "filepath": str(p.parent), "extension": p.suffix.lower(), "filetype": ""}


def _yara_x_version() -> str:
    try:
        from importlib.metadata import version

        return version("yara-x")
    except Exception:
        return "unknown"
