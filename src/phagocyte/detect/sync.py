"""`phago rules sync`: the latest SigmaHQ release, fetched and unpacked for users who are online.

The SigmaHQ rules cannot ship inside Phagocyte (Detection Rule License), and no package on PyPI
carries them, so they are fetched from SigmaHQ's GitHub releases into `$PHAGO_HOME/rules/sigmahq`,
which then joins the default rule path. The archive is unpacked with limits (members, sizes,
ratio, no paths outside the target), only `.yml` files are kept, and the old copy is replaced
only once the new one is complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from phagocyte.errors import PhagocyteError

__all__ = ["RELEASE_API", "SyncError", "fetch_latest", "unpack_release"]

RELEASE_API = "https://api.github.com/repos/SigmaHQ/sigma/releases/latest"
ASSET = "sigma_all_rules.zip"
"""The release asset holding every rule (core, emerging threats, threat hunting)."""
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 50_000
MAX_RATIO = 200.0


class SyncError(PhagocyteError):
    """The release could not be fetched or unpacked; the message says why."""


def _get(url: str, timeout: float, limit: int) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "phagocyte-rules-sync",
                                               "Accept": "application/octet-stream, application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(limit + 1)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SyncError(f"cannot reach {url}: {reason} (offline? copy a SigmaHQ release zip here and use "
                        f"`phago rules sync --archive FILE`, or point --rules at a rules folder)") from exc
    if len(data) > limit:
        raise SyncError(f"{url}: larger than {limit:,} bytes, refused")
    return data


def fetch_latest(target: Path, *, api: str = RELEASE_API, timeout: float = 30.0) -> tuple[str, int]:
    """Download the latest release's rule archive and unpack it into `target`; (tag, rules)."""
    meta = json.loads(_get(api, timeout, 4 * 1024 * 1024))
    assets = {a.get("name"): a.get("browser_download_url") for a in meta.get("assets", [])}
    url = assets.get(ASSET) or next((u for n, u in assets.items() if n and n.endswith(".zip")), None)
    if not url:
        raise SyncError(f"release {meta.get('tag_name')!r} has no rule archive ({sorted(a for a in assets if a)})")
    data = _get(str(url), timeout, MAX_ARCHIVE_BYTES)
    return str(meta.get("tag_name") or "unknown"), unpack_release(io.BytesIO(data), target)


def unpack_release(archive: str | os.PathLike[str] | io.BytesIO, target: Path) -> int:
    """Unpack the `.yml` rules of a SigmaHQ release zip into `target` (replaced whole); returns the count."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SyncError(f"not a readable zip archive: {exc}") from exc
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_MEMBERS:
            raise SyncError(f"archive has {len(members):,} members (limit {MAX_MEMBERS:,})")
        total = 0
        stage = target.with_name(target.name + ".partial")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        count = 0
        try:
            for m in members:
                name = PurePosixPath(m.filename)
                if name.suffix.lower() not in (".yml", ".yaml"):
                    continue
                if name.is_absolute() or ".." in name.parts or any(p.startswith(".") for p in name.parts):
                    raise SyncError(f"unsafe path in archive: {m.filename!r}")
                if m.file_size > 1024 * 1024 or (m.compress_size and m.file_size / m.compress_size > MAX_RATIO
                                                  and m.file_size > 64 * 1024):
                    raise SyncError(f"member {m.filename!r} is too large or too compressed")
                total += m.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise SyncError(f"archive unpacks to more than {MAX_UNPACKED_BYTES:,} bytes")
                out = stage.joinpath(*name.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src:
                    data = src.read(m.file_size + 1)
                if len(data) > m.file_size:
                    raise SyncError(f"member {m.filename!r} is larger than its header says")
                out.write_bytes(data)
                count += 1
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    if count == 0:
        shutil.rmtree(stage, ignore_errors=True)
        raise SyncError("the archive holds no .yml rules")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    stage.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return count
