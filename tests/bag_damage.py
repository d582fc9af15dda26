"""Damaged recordings for the tests and scripts/fault_injection.py: a bag cut short as a killed recorder leaves it."""
from __future__ import annotations

from pathlib import Path


def sqlite3_copy(source: Path, out: Path) -> Path:
    """The bag at `source` written again with the sqlite3 storage plugin."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from fourds_ros.bags.topics import typestore
    store = typestore()
    with AnyReader([source], default_typestore=store) as reader, \
            Writer(out, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connections = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            writer.write(connections[connection.id], stamp, raw)
    return out


def cut_short(bag: Path, fraction: float, keep_metadata: bool) -> None:
    """What a recorder killed mid-write leaves: a storage file cut off (and, if it died early, no metadata)."""
    (storage,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    storage.write_bytes(storage.read_bytes()[: int(storage.stat().st_size * fraction)])
    if not keep_metadata:
        (bag / "metadata.yaml").unlink()
