"""Build the app package as `azd deploy` does: the project folder minus what `.funcignore` leaves out.

    python infra/package.py [--output .local/package/leadpush.zip] [--list]

No dependencies go in: Flex Consumption installs requirements.txt itself (remote build), so the zip holds only the
app's own files. Entries are sorted and dated 1980-01-01, so the same tree always gives the same bytes.

`.funcignore` patterns follow .gitignore: `#` comments, a trailing `/` for directories only, a pattern without `/`
matching a name at any depth, one with `/` matching the path from the project root. Negation (`!`) is refused
rather than half-supported.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / ".local" / "package" / "leadpush.zip"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class IgnoreFileError(ValueError):
    """A .funcignore line this packager cannot honour."""


@dataclass(frozen=True)
class Pattern:
    glob: str
    directory_only: bool
    anchored: bool

    def matches(self, relative: str, *, is_dir: bool) -> bool:
        if self.directory_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(relative, self.glob)
        return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], self.glob)


def read_patterns(ignore_file: Path) -> list[Pattern]:
    """The patterns of a .funcignore file. Raises IgnoreFileError on a negation."""
    patterns = []
    for number, raw in enumerate(ignore_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise IgnoreFileError(f"{ignore_file.name}:{number}: negated patterns are not supported: {line!r}")
        directory_only = line.endswith("/")
        glob = line.strip("/")
        patterns.append(Pattern(glob, directory_only, anchored="/" in glob))
    return patterns


def package_files(root: Path, patterns: list[Pattern]) -> list[str]:
    """Paths (relative, with /) of the files the package holds, sorted. An ignored directory is not entered."""
    kept = []
    for directory, subdirectories, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        subdirectories[:] = sorted(
            name for name in subdirectories if not _ignored(f"{prefix}{name}", patterns, is_dir=True)
        )
        kept.extend(f"{prefix}{name}" for name in files if not _ignored(f"{prefix}{name}", patterns, is_dir=False))
    return sorted(kept)


def build(root: Path, output: Path) -> list[str]:
    """Write the zip; returns the paths it holds."""
    files = package_files(root, read_patterns(root / ".funcignore"))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            source = root / relative
            entry = zipfile.ZipInfo(relative, date_time=ZIP_DATE)
            entry.external_attr = (source.stat().st_mode & 0o777 | 0o100000) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, source.read_bytes())
    partial.replace(output)
    return files


def _ignored(relative: str, patterns: list[Pattern], *, is_dir: bool) -> bool:
    return any(pattern.matches(relative, is_dir=is_dir) for pattern in patterns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--list", action="store_true", help="print each packaged path")
    args = parser.parse_args(argv)
    files = build(ROOT, args.output)
    if args.list:
        print("\n".join(files))
    size_kib = args.output.stat().st_size / 1024
    print(
        f"package: {args.output} ({len(files)} files, {size_kib:.0f} KiB); dependencies: requirements.txt, "
        "installed by the Flex Consumption remote build",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
