"""Say in words what a file is, for the error raised when it is not a torch checkpoint.

``torch.load`` fails on a wrong file with messages that name its internals (a memo index,
a "magic number", a miniz error). The user needs what the file *is*: its size and what its
first bytes look like (text, a zip archive without torch's ``data.pkl``, a plain pickle,
a NumPy array, compressed data, ...), so that a wrong path or a damaged copy is obvious.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

_HEAD_BYTES = 512
_MAGICS = (  # (leading bytes, what a file starting with them is)
    (b"\x93NUMPY", "a NumPy .npy array (np.save), not a torch.save file"),
    (b"\x1f\x8b", "gzip-compressed data: decompress it first"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. Keras .h5 weights), not a torch.save file"),
    (b"BZh", "bzip2-compressed data: decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed data: decompress it first"),
    (b"\x7fELF", "an executable (ELF)"),
)


@dataclass(frozen=True)
class FileKind:
    """What a file looks like.

    Attributes:
        size: its length in bytes.
        what: its kind in words (e.g. "a text file, starting 'hello'").
        torch_archive: it is torch.save's zip layout (so torch's own reason matters).
    """

    size: int
    what: str
    torch_archive: bool = False

    def __str__(self) -> str:
        return f"{size_in_words(self.size)}: {self.what}"


def size_in_words(n: int) -> str:
    """``n`` bytes as a short human-readable size (e.g. "3.0 kB")."""
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if value < 1000.0 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _zip_kind(size: int, path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        what = "the start of a zip archive (torch.save's format) that is cut short or damaged"
        return FileKind(size, what)
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return FileKind(size, "a torch.save zip archive whose contents cannot be read", True)
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return FileKind(size, f"a zip archive without torch's data.pkl (it holds: {shown or '-'})")


def _text_kind(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # possibly a multi-byte character cut at the end
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not text or not all(c.isprintable() or c in "\n\r\t" for c in text):
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"a text file, starting {first!r}" if first else "a text file of blank lines"


def describe_file(path: Path) -> FileKind:
    """What ``path`` holds, in words: its size and the kind its first bytes show.

    Args:
        path: an existing file.

    Returns:
        Its kind; ``str()`` of it reads e.g. ``"3.0 kB: binary data (first bytes d5 3e 01 ...),
        neither a zip archive nor a pickle"`` or ``"0 bytes: an empty file"``.
    """
    size = path.stat().st_size
    if size == 0:
        return FileKind(0, "an empty file")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(size, path)
    kind: str | None = None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = f"a Python pickle (protocol {head[1]}), but not one written by torch.save"
    else:
        kind = next((what for magic, what in _MAGICS if head.startswith(magic)), None)
    if kind is None:
        kind = _text_kind(head)
    if kind is None:
        first = " ".join(f"{b:02x}" for b in head[:8])
        kind = f"binary data (first bytes {first} ...), neither a zip archive nor a pickle"
    return FileKind(size, kind)
