"""Recordings that died mid-write: the complete messages of a truncated rosbag2 (mcap or sqlite3), in a new bag.

rosbags opens an mcap through the footer and summary at its end, and a sqlite3 bag through `metadata.yaml`; a
recorder killed mid-write (power loss, a full disk) leaves neither. Salvage reads the storage file from its start
instead (mcap records one after another, down into uncompressed chunks, until the first incomplete one; sqlite3
rows in insertion order until the first unreadable page) and writes every complete message of a known type into
a new rosbag2 in a temporary directory (removed when the process exits), which the normal reader then opens.
"""
from __future__ import annotations

import atexit
import mmap
import shutil
import sqlite3
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .topics import typestore

MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class Salvaged:
    channels: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (topic, msgtype)
    messages: list[tuple[int, int, bytes]] = field(default_factory=list)  # (channel id, log time ns, data)
    stopped_at: str = ""  # where reading stopped, for the note


def storage_file(path: Path) -> Path | None:
    """The mcap or sqlite3 file of a rosbag2 directory (or the file itself)."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix in (".mcap", ".db3") else None
    files = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    return files[0] if files else None


def salvage(path: Path) -> tuple[Path, str] | None:
    """A readable copy of the damaged bag at `path` and a note on what it holds; None if nothing is recoverable."""
    source = storage_file(path)
    if source is None or source.stat().st_size == 0:
        return None
    try:
        found = _read_mcap(source) if source.suffix == ".mcap" else _read_sqlite3(source)
    except (OSError, ValueError, sqlite3.Error):
        return None
    if not found.messages:
        return None
    out = Path(tempfile.mkdtemp(prefix="fourds_ros-salvaged-")) / Path(path).name
    atexit.register(shutil.rmtree, out.parent, True)  # the copy lives as long as the process reading it
    kept = _write(found, out)
    note = (f"bag {path} is damaged ({found.stopped_at}); read the {kept} complete messages before the damage "
            f"(a salvaged copy in {out})")
    return out, note


def _read_mcap(path: Path) -> Salvaged:
    found = Salvaged()
    schemas: dict[int, str] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:8] != MCAP_MAGIC:
            raise ValueError("not an mcap file")
        end = _mcap_scan(data, 8, len(data), found, schemas, top_level=True)
    if not found.stopped_at:
        found.stopped_at = f"no summary or footer after byte {end}"
    return found


def _mcap_scan(data, pos: int, end: int, found: Salvaged, schemas: dict[int, str], top_level: bool) -> int:
    """Read records from `pos` to `end`; returns where it stopped."""
    while pos + 9 <= end:
        op = data[pos]
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        body, record_end = pos + 9, pos + 9 + length
        if op in (0x02, 0x0F) and top_level:  # footer or data end: the data section is complete
            return pos
        if record_end > end:
            if op == 0x06:  # an uncompressed chunk cut short still holds whole messages
                _partial_chunk(data, body, end, found, schemas)
            found.stopped_at = found.stopped_at or f"truncated in a record at byte {pos} of {end}"
            return pos
        if op == 0x03:
            (schema_id,) = struct.unpack_from("<H", data, body)
            name, _ = _string(data, body + 2)
            schemas[schema_id] = name
        elif op == 0x04:
            channel_id, schema_id = struct.unpack_from("<HH", data, body)
            topic, _ = _string(data, body + 4)
            if schema_id in schemas:
                found.channels[channel_id] = (topic, schemas[schema_id])
        elif op == 0x05:
            channel_id, _, log_time = struct.unpack_from("<HIQ", data, body)
            found.messages.append((channel_id, log_time, bytes(data[body + 22:record_end])))
        elif op == 0x06:
            _chunk(data, body, record_end, found, schemas)
        pos = record_end
    return pos


def _chunk_header(data, body: int) -> tuple[int, int, str, int, int]:
    uncompressed_size, crc = struct.unpack_from("<QI", data, body + 16)
    compression, pos = _string(data, body + 28)
    (compressed_size,) = struct.unpack_from("<Q", data, pos)
    return uncompressed_size, crc, compression, compressed_size, pos + 8


def _chunk(data, body: int, record_end: int, found: Salvaged, schemas: dict[int, str]) -> None:
    from rosbags.rosbag2.storage_mcap import decompress
    size, crc, compression, compressed_size, records = _chunk_header(data, body)
    raw = decompress(bytes(data[records:records + compressed_size]), compression, size, crc)
    _mcap_scan(raw, 0, len(raw), found, schemas, top_level=False)


def _partial_chunk(data, body: int, end: int, found: Salvaged, schemas: dict[int, str]) -> None:
    if body + 40 > end:
        return
    size, _, compression, _, records = _chunk_header(data, body)
    if compression == "" and records < end:
        _mcap_scan(data, records, min(end, records + size), found, schemas, top_level=False)


def _string(data, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<I", data, pos)
    return bytes(data[pos + 4:pos + 4 + length]).decode(), pos + 4 + length


def _read_sqlite3(path: Path) -> Salvaged:
    with tempfile.TemporaryDirectory(prefix="fourds_ros-sqlite3-") as tmp:
        return _read_sqlite3_rows(_whole_pages(path, Path(tmp) / path.name))


def _whole_pages(path: Path, copy: Path) -> Path:
    """A copy of a cut-off database that SQLite will read: whole pages only, and a header that says so.

    The header of a database cut off mid-write still counts the pages it had, and SQLite trusts that count and
    calls the file malformed; with the count of the pages that are really there, it reads every row whose pages
    survived.
    """
    shutil.copyfile(path, copy)
    with open(copy, "r+b") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            raise ValueError("not an SQLite database")
        (page_size,) = struct.unpack(">H", header[16:18])
        page_size = 65536 if page_size == 1 else page_size
        pages = copy.stat().st_size // page_size
        f.truncate(pages * page_size)
        f.seek(28)
        f.write(struct.pack(">I", pages))
    return copy


def _read_sqlite3_rows(path: Path) -> Salvaged:
    found = Salvaged()
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        for topic_id, name, msgtype in db.execute("SELECT id, name, type FROM topics"):
            found.channels[topic_id] = (name, msgtype)
        rows = db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
        try:
            for topic_id, stamp, payload in rows:
                found.messages.append((topic_id, stamp, bytes(payload)))
            found.stopped_at = "no metadata.yaml (the recorder did not finish)"
        except sqlite3.DatabaseError as exc:
            found.stopped_at = f"sqlite3: {exc} after {len(found.messages)} messages"
    finally:
        db.close()
    return found


def _write(found: Salvaged, out: Path) -> int:
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    kept = 0
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for channel_id, (topic, msgtype) in found.channels.items():
            if msgtype in store.types:  # a type this reader could not decode anyway is left out
                connections[channel_id] = writer.add_connection(topic, msgtype, typestore=store)
        for channel_id, stamp, payload in sorted(found.messages, key=lambda m: m[1]):
            if channel_id in connections:
                writer.write(connections[channel_id], stamp, payload)
                kept += 1
    return kept
