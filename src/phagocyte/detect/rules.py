"""Loading Sigma rule folders: every rule compiles or gets its own clear error; the others run.

pySigma parses each file (rules, correlation rules, filters; its default policy checks `|re`
patterns with RE2), filters are applied to the rules they name, correlation rules are resolved
against the rules loaded with them, then each rule goes through our processing pipeline and back
end. One bad file or rule never stops the set: it becomes a `RuleError` with its path and reason.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from phagocyte import __version__
from phagocyte.detect.correlation import CompiledCorrelation, compile_correlation
from phagocyte.detect.sigma.backend import CompiledRule
from phagocyte.detect.sigma.pipeline import SECURITY_4688, Route, is_process_creation, phagocyte_pipeline

if TYPE_CHECKING:  # pySigma is imported when rules are compiled, not when a cached compilation is read
    from sigma.correlations import SigmaCorrelationRule
    from sigma.filters import SigmaFilter
    from sigma.rule import SigmaRule

__all__ = ["BUILTIN_RULES", "MAX_RULE_BYTES", "RuleError", "RuleSet", "RuleSource", "load_rules", "rule_files",
           "rule_source"]

BUILTIN_RULES = Path(__file__).parent / "rules"
"""Phagocyte's own rule pack (original rules; the SigmaHQ set comes with `--rules` or `phago rules sync`)."""
CACHE_FORMAT = 8
"""Bumped whenever compilation changes, so that no cache of an older compiler is reused."""
MAX_RULE_BYTES = 1024 * 1024
"""A rule file larger than this is refused unread (SigmaHQ's largest is ~60 KB)."""


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule file or rule that cannot run, and why."""

    path: str
    reason: str
    rule_id: str | None = None
    title: str | None = None


@dataclass(slots=True)
class RuleSet:
    """Compiled rules and correlations, with the errors of those that did not compile."""

    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    files: int = 0

    @property
    def primary(self) -> list[CompiledRule]:
        """The rules as written (without their variants, such as the Security 4688 form)."""
        return [r for r in self.rules if r.variant is None]

    @property
    def total(self) -> int:
        return len(self.primary) + len(self.correlations) + len(self.errors)

    def by_id(self) -> dict[str, CompiledRule]:
        return {r.id: r for r in self.rules}


def rule_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The `.yml`/`.yaml` files under `paths`, sorted (as `Path`s sort: part by part), hidden files
    and folders skipped, symbolic links to folders not followed."""
    for path, _ in _rule_entries(paths):
        yield Path(path)


def _rule_entries(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, os.stat_result | None]]:
    """`rule_files` as strings with their `stat` (None: a path given as a file that cannot be
    stat'ed; the compile reports it). Walked with `os.scandir` on strings, one `stat` per file:
    `Path.rglob`, sorting `Path`s and a second `stat` per file took a tenth of a warm hunt's start
    for ~2,400 files."""
    out: list[tuple[str, os.stat_result | None]] = []
    for given in paths:
        p = os.fspath(given)
        if os.path.isfile(p):
            try:
                out.append((p, os.stat(p)))
            except OSError:
                out.append((p, None))
            continue
        found: list[tuple[list[str], str, os.stat_result]] = []
        stack: list[tuple[str, list[str]]] = [(p, [])]
        while stack:
            folder, parts = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, [*parts, e.name]))
                elif os.path.splitext(e.name)[1].lower() in (".yml", ".yaml"):
                    try:
                        st = e.stat()
                    except OSError:  # a dangling link: not a rule file
                        continue
                    if stat.S_ISREG(st.st_mode):
                        found.append(([*parts, e.name], e.path, st))
        found.sort(key=lambda x: x[0])
        out += [(path, st) for _, path, st in found]
    return out


def _parse(path: Path, errors: list[RuleError]) -> list[SigmaRule | SigmaCorrelationRule | SigmaFilter]:
    import yaml  # here: a run with cached rules reads no YAML
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaRuleLocation

    try:
        size = path.stat().st_size
        if size > MAX_RULE_BYTES:
            errors.append(RuleError(str(path), f"file too large ({size:,} bytes > {MAX_RULE_BYTES:,})"))
            return []
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(RuleError(str(path), f"cannot read: {exc}"))
        return []
    try:
        # References are resolved later, against every rule loaded (a correlation and its rules
        # may live in different files).
        # The YAML is read with libyaml's safe loader when PyYAML has it (what pySigma's
        # `from_yaml` does with the pure-Python one: same documents, several times faster; parsing
        # was most of a cold start), then handed to pySigma as dicts.
        docs = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        coll = SigmaCollection.from_dicts(docs, collect_errors=True, source=SigmaRuleLocation(path),
                                          collect_filters=True, resolve_references=False)
    except Exception as exc:  # YAML errors and anything pySigma raises on hostile input
        errors.append(RuleError(str(path), f"{type(exc).__name__}: {_reason(exc)}"))
        return []
    out: list[SigmaRule | SigmaCorrelationRule | SigmaFilter] = []
    reported: set[int] = set()
    for item in [*coll.rules, *coll.filters]:
        item_errors = getattr(item, "errors", None) or []
        rid = str(item.id) if getattr(item, "id", None) else None
        title = getattr(item, "title", None)
        if item_errors:
            reported.update(id(e) for e in item_errors)
            errors.append(RuleError(str(path), "; ".join(_reason(e) for e in item_errors), rid, title))
            continue
        out.append(item)
    rest = [e for e in coll.errors if id(e) not in reported]
    if rest:
        errors.append(RuleError(str(path), "; ".join(_reason(e) for e in rest)))
    return out


def _reason(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg[:400]


def load_rules(paths: Iterable[str | os.PathLike[str]], *, cache_dir: Path | None = None) -> RuleSet:
    """Compile every rule under `paths` (a cached result is reused while no file changed).

    The cache is plain JSON (JSON Lines; never pickle: a cache file must not be able to run code)."""
    return rule_source(paths, cache_dir=cache_dir).load()


@dataclass
class RuleSource:
    """The rule files under some paths and the file their compiled form is cached in: `load_rules` in
    two steps, so that a command can tell a warm start (`cached`) before it loads."""

    files: list[str]
    key: Path | None
    """The cache file (None: no cache)."""

    @property
    def cached(self) -> bool:
        return self.key is not None and self.key.exists()

    def load(self) -> RuleSet:
        key = self.key
        if key is not None and self.cached:
            try:
                gc.disable()  # ~27,000 objects at once: collections would run, and find nothing to free
                try:
                    return _from_json(key.read_bytes())
                finally:
                    gc.enable()
            except (ValueError, KeyError, TypeError, IndexError):  # a stale or broken cache is rebuilt
                pass
        data = _to_json(_compile([Path(path) for path in self.files]))
        rs = _from_json(data)  # what a warm start holds: each distinct value once
        if key is not None:
            tmp = key.with_suffix(f".{os.getpid()}.tmp")
            try:
                key.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                os.replace(tmp, key)
                _prune(key.parent, key)
            except OSError:  # an unwritable cache costs the next run its compile time, nothing more
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        return rs


def rule_source(paths: Iterable[str | os.PathLike[str]], *, cache_dir: Path | None = None) -> RuleSource:
    """The rule files under `paths` and, with `cache_dir`, the cache file of their compiled form (named
    by the files' paths and identities: an edited rule makes another)."""
    entries = _rule_entries(paths)
    files = [path for path, _ in entries]
    key = None
    if cache_dir is not None:
        h = hashlib.sha256(f"{__version__}\0{CACHE_FORMAT}".encode())
        for path, st in entries:
            # The absolute path and the file's identity (device, inode), not `resolve()`: that
            # walks every path component of the ~2,400 files (a tenth of a warm start).
            ident = f"{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}" if st is not None else "missing"
            h.update(f"{os.path.abspath(path)}\0{ident}\n".encode())
        key = cache_dir / f"rules-{h.hexdigest()[:24]}.json"
    # `entries` is freed before the rules are made, so that they take its memory (1.5 of the 9.6 MB
    # that loading SigmaHQ's Windows rules added, the files' `stat` results left as holes among them).
    return RuleSource(files, key)


CACHE_KEEP = 8
"""Compiled rule sets kept per cache folder (one per distinct rule path and version of it)."""


def _prune(cache_dir: Path, keep: Path) -> None:
    """Drop all but the newest CACHE_KEEP compiled rule sets (edited rules leave old ones behind)."""
    try:
        old = sorted(cache_dir.glob("rules-*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:
        return
    for f in old[CACHE_KEEP:]:
        if f != keep:
            f.unlink(missing_ok=True)


RULE_FIELDS = ("id", "title", "level", "tags", "description", "status", "path", "route", "condition", "columns",
               "name", "generate", "keep", "variant", "needs", "plan")
"""A cached rule's values, in this order (`CompiledRule`'s fields; a test checks they are the same)."""
_ROUTE, _COLUMNS = RULE_FIELDS.index("route"), RULE_FIELDS.index("columns")


def _to_json(rs: RuleSet) -> bytes:
    """The cache file: JSON Lines, a head (routes, correlations, errors) then one array per rule.

    The rules are read a line at a time: what parsing a line leaves behind (its lists, the copies of
    values already held) is freed before the next line is parsed, into the same memory. Parsed as one
    8 MB document, those temporaries stayed as holes among the rules (~5 of the ~24 MiB that loading
    SigmaHQ's Windows rules added)."""
    routes: dict[Route, int] = {}
    lines = []
    for r in rs.rules:
        row: list[Any] = [getattr(r, f) for f in RULE_FIELDS]
        row[_ROUTE] = routes.setdefault(r.route, len(routes))
        row[_COLUMNS] = sorted(r.columns)
        lines.append(orjson.dumps(row))
    head = {"format": CACHE_FORMAT, "fields": RULE_FIELDS, "routes": [astuple(x) for x in routes],
            "rules": len(lines), "correlations": [asdict(c) for c in rs.correlations],
            "errors": [asdict(e) for e in rs.errors], "files": rs.files}
    return b"\n".join([orjson.dumps(head), *lines, b""])


def _from_json(data: bytes) -> RuleSet:
    """The rule set of a cache file (`_to_json`), each distinct value held once: a process-creation
    rule's Security 4688 variant has its metadata, many rules of a route the same columns, many
    rules the same tags and literals; one `Route` per route. Raises ValueError (or KeyError,
    TypeError, IndexError) on a file of another layout, damaged or cut short."""
    view = memoryview(data)
    end = data.index(b"\n")
    head = orjson.loads(view[:end])
    if head["format"] != CACHE_FORMAT or tuple(head["fields"]) != RULE_FIELDS:
        raise ValueError("another cache layout")
    routes = [Route(*x) for x in head["routes"]]
    memo: dict[Any, Any] = {}
    one = memo.setdefault
    rules = []
    pos = end + 1
    while pos < len(data):
        end = data.index(b"\n", pos)
        (rid, title, level, tags, description, status, path, route, condition, columns, name, generate, keep,
         variant, needs, plan) = orjson.loads(view[pos:end])
        pos = end + 1
        tags = tuple([one(t, t) for t in tags])
        columns = frozenset([one(x, x) for x in [(one(k, k), one(f, f)) for k, f in columns]])
        if needs:
            needs = tuple([one(x, x) for x in [(one(c, c), one(lit, lit)) for c, lit in needs]])
        rules.append(CompiledRule(
            id=one(rid, rid), title=one(title, title), level=one(level, level), tags=one(tags, tags),
            description=one(description, description), status=one(status, status), path=one(path, path),
            route=routes[route], condition=one(condition, condition), columns=one(columns, columns), name=name,
            generate=bool(generate), keep=tuple(keep), variant=one(variant, variant),
            needs=one(needs, needs) if needs else None,
            plan=one(plan, plan)))
    if len(rules) != head["rules"]:
        raise ValueError("cache file cut short")
    return RuleSet(rules=rules, correlations=[CompiledCorrelation(**c) for c in head["correlations"]],
                   errors=[RuleError(**e) for e in head["errors"]], files=int(head["files"]))


COMPILE_JOBS_MIN_FILES = 200
"""Below this many rule files, compiling in one process is quicker than starting others."""
_SPECIAL = re.compile(rb"^[\"']?(?:correlation|filter)[\"']?\s*:", re.M)
"""A top-level `correlation:` or `filter:` key: the file holds a document that needs the others."""
_FILTER = re.compile(rb"^[\"']?filter[\"']?\s*:", re.M)


def compile_jobs() -> int:
    """Processes that compile rules: `$PHAGO_COMPILE_JOBS`, else one per core (at most 4); 1 where
    processes cannot be forked (they would have to import everything again) or other threads run."""
    import multiprocessing
    import threading

    # Forking a process that runs other threads (a server, an ingest) can copy a lock held by one.
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 1
    env = os.environ.get("PHAGO_COMPILE_JOBS", "")
    if env.strip().isdigit():
        return max(1, int(env))
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _compile(files: list[Path]) -> RuleSet:
    """Every file's rules compiled, in file order: parse errors first, then per rule its compiled
    form (and its Security 4688 variant) or its error, then the correlations.

    pySigma is pure Python and single-threaded: with several cores and many files, the files are
    split into contiguous parts compiled by forked processes (the result is the same, in the same
    order). Files holding a correlation or a filter are compiled here, since those refer to rules
    of other files; a filter anywhere means every file is compiled here (it changes other files'
    rules)."""
    jobs = compile_jobs()
    if jobs > 1 and len(files) >= COMPILE_JOBS_MIN_FILES:
        special = [_is_special(f) for f in files]
        if not any(_has_filter(f) for f, sp in zip(files, special, strict=True) if sp):
            done = _compile_parallel(files, special, jobs)
            if done is not None:
                return done
    parsed, rules, errors, correlations, _ = _compile_part(files)
    return _finish(files, parsed, rules, errors, correlations)


def _is_special(f: Path) -> bool:
    try:
        return _SPECIAL.search(f.read_bytes()[:MAX_RULE_BYTES]) is not None
    except OSError:
        return True  # read (and reported) by the sequential path


def _has_filter(f: Path) -> bool:
    try:
        return _FILTER.search(f.read_bytes()) is not None
    except OSError:
        return True


_Part = tuple[list[RuleError], list[CompiledRule], list[RuleError], list[Any], bool]
"""(parse errors, compiled rules, compile errors, correlation rules, whether a filter or correlation was seen)."""


def _compile_parallel(files: list[Path], special: list[bool], jobs: int) -> RuleSet | None:
    """Plain files compiled by `jobs` forked processes, correlation files here; None when a worker
    found a filter or correlation after all (the caller then compiles everything here)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    plain = [f for f, sp in zip(files, special, strict=True) if not sp]
    size = -(-len(plain) // jobs)
    chunks = [plain[i:i + size] for i in range(0, len(plain), size)]
    # What the parent holds is frozen out of the cyclic GC across the fork (Python's advice for
    # fork without exec): a child's collection never frees the parent's objects, whose C++
    # destructors (a DuckDB connection, say) crashed a forked worker that found them garbage, and
    # their pages stay shared.
    gc.freeze()
    try:
        with ProcessPoolExecutor(len(chunks), mp_context=multiprocessing.get_context("fork")) as ex:
            futures = [ex.submit(_compile_part, c) for c in chunks]
            here = _compile_part([f for f, sp in zip(files, special, strict=True) if sp])
            parts = [fut.result() for fut in futures]
    except Exception:  # a worker died (memory, a signal): compile in this process instead
        return None
    finally:
        gc.unfreeze()
    if any(part[4] for part in parts):
        return None
    # Back in file order: each file's parse errors and rules where the file stands.
    by_file: dict[str, tuple[list[RuleError], list[CompiledRule], list[RuleError]]] = {}
    for part in [*parts, here]:
        for e in part[0]:
            by_file.setdefault(e.path, ([], [], []))[0].append(e)
        for r in part[1]:
            by_file.setdefault(r.path, ([], [], []))[1].append(r)
        for e in part[2]:
            by_file.setdefault(e.path, ([], [], []))[2].append(e)
    parsed: list[RuleError] = []
    rules: list[CompiledRule] = []
    errors: list[RuleError] = []
    for f in files:
        pe, rl, ce = by_file.pop(str(f), ([], [], []))
        parsed += pe
        rules += rl
        errors += ce
    for pe, rl, ce in by_file.values():  # a path pySigma spelled otherwise: kept, at the end
        parsed += pe
        rules += rl
        errors += ce
    return _finish(files, parsed, rules, errors, here[3])


def _compile_part(files: list[Path]) -> _Part:
    """Parse and compile `files` (rules only; correlations are returned unresolved)."""
    from sigma.correlations import SigmaCorrelationRule
    from sigma.filters import SigmaFilter
    from sigma.rule import SigmaRule

    from phagocyte.detect.sigma.compiler import compile_rule

    parsed: list[RuleError] = []
    errors: list[RuleError] = []
    compiled: list[CompiledRule] = []
    items: list[SigmaRule | SigmaCorrelationRule | SigmaFilter] = []
    for f in files:
        items.extend(_parse(f, parsed))
    filters = [i for i in items if isinstance(i, SigmaFilter)]
    rules = [r for r in items if isinstance(r, SigmaRule)]
    correlations = [r for r in items if isinstance(r, SigmaCorrelationRule)]
    for rule in rules:
        path = str(rule.source.path) if rule.source and rule.source.path else "?"
        try:
            filtered: SigmaRule | SigmaCorrelationRule = rule
            for flt in filters:  # Sigma filters: extra conditions on the rules they name
                filtered = flt.apply_on_rule(filtered)
            assert isinstance(filtered, SigmaRule)
            second = copy.deepcopy(filtered) if is_process_creation(filtered.logsource) else None
            phagocyte_pipeline().apply(filtered)
            c = compile_rule(filtered)
        except Exception as exc:  # per-rule isolation: pySigma and the back end raise many types
            errors.append(RuleError(path, _reason(exc), str(rule.id) if rule.id else None, rule.title))
            continue
        compiled.append(c)
        if second is not None:  # the same rule on Security 4688 process creations
            try:
                phagocyte_pipeline(security_4688=True).apply(second)
                compiled.append(compile_rule(second, SECURITY_4688, "security-4688"))
            except Exception:  # the Sysmon form compiled; the variant is a bonus
                continue
    return parsed, compiled, errors, correlations, bool(filters or correlations)


def _finish(files: list[Path], parsed: list[RuleError], rules: list[CompiledRule], errors: list[RuleError],
            correlations: list[Any]) -> RuleSet:
    rs = RuleSet(rules=rules, errors=[*parsed, *errors], files=len(files))
    if correlations:
        by_ref: dict[str, CompiledRule] = {}
        for c in rs.primary:
            by_ref[c.id] = c
            if c.name:
                by_ref[c.name] = c
        for corr in correlations:
            path = str(corr.source.path) if corr.source and corr.source.path else "?"
            try:
                rs.correlations.append(compile_correlation(corr, by_ref))
            except Exception as exc:
                rs.errors.append(RuleError(path, _reason(exc), str(corr.id) if corr.id else None, corr.title))
        for c in rs.rules:  # a variant returns the same values and alerts as its primary form
            if c.variant is not None and (p := by_ref.get(c.id)) is not None:
                c.generate = p.generate
                c.keep = p.keep
                c.columns |= {("r", f) for f in p.keep}
    return rs
