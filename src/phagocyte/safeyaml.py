"""YAML from untrusted files (playbooks, rules): size-bounded, no aliases, bounded nesting.

Why: `yaml.safe_load` still expands anchors and aliases, so a few hundred bytes ("billion laughs")
become a structure that takes minutes to walk or print; and deep nesting exhausts the stack. A
scan of the parser's events (linear in the input) refuses both before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["UnsafeYaml", "check", "load"]

MAX_DEPTH = 64


class UnsafeYaml(ValueError):
    """The document uses aliases, nests too deep or is too large."""


def check(raw: bytes | str, *, max_bytes: int) -> None:
    """Raise `UnsafeYaml` (or `yaml.YAMLError`) unless `raw` is a plain, bounded YAML document stream."""
    if len(raw) > max_bytes:
        raise UnsafeYaml(f"larger than {max_bytes} bytes")
    depth = 0
    for event in yaml.parse(raw, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise UnsafeYaml(f"YAML aliases are not accepted (line {_line(event)})")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeYaml(f"nested deeper than {MAX_DEPTH} (line {_line(event)})")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _line(event: yaml.Event) -> int | str:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else "?"


def load(raw: bytes | str, *, max_bytes: int) -> Any:
    """`check`, then `yaml.safe_load`."""
    check(raw, max_bytes=max_bytes)
    return yaml.safe_load(raw)
