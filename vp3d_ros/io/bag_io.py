"""rosbag2 files in and out, through the ``rosbags`` library (the package's only bag I/O).

Why one module: the recorder, the exporters and the tests must agree on storage, message
definitions, metadata, splitting and crash recovery; none of them should know ``rosbags``.

Message definitions come from the rosbags ``ROS2_KILTED`` store (the distro of the rclpy
wheels the nodes run on; rosbags also ships Lyrical, whose PointCloud2/Header hashes are the
same). Bags are rosbag2 version 9, so stock ``ros2 bag info``/``play`` read them; MCAP files
carry their schemas.

Custom metadata (rosbag2 ``custom_data`` in ``metadata.yaml``): every value is stored
JSON-encoded (so a dict, number or string comes back exactly; a foreign non-JSON value is
returned as the raw string). Keys the package uses:

- ``vp3d.layout_2d``: joint layout of the ``keypoints_2d`` topics, ``"h36m"`` or ``"coco"``
- ``vp3d.layout_3d``: joint layout of the ``skeleton_3d`` topics (``"h36m"``)
- ``vp3d.topic_layouts``: ``{topic: layout}``, per-topic override of the two above
- ``vp3d.checkpoint``: the lifter model that made the skeletons, as the lifter announced it
  (``lifter_config.model_provenance``: path, sha256, architecture, input_layout, causal,
  flip, mode, ...); ``{"path": "", "sha256": ""}`` when no lifter announced one
- ``vp3d.models``: every distinct model announced while recording (several lifters, or one
  restarted with another checkpoint), each with the ``topic`` it came on
- ``vp3d.parameters``: node parameters, ``{node: {name: value}}``
- ``vp3d.subject``: subject information (free-form dict: id, height_m, mass_kg, ...)
- ``vp3d.format``: ``"LandmarkRecord/1"`` for bags written by the landmark recorder
- ``vp3d.split`` (written here, split sets only): ``{"index", "max_bytes", "max_duration_s"}``
- ``vp3d.recovered`` (written by ``reindex``): ``{"source", "messages", "discarded_bytes"}``

``BagReader.metadata`` returns the caller's keys (the last two are in ``custom_data``).

Split layout: rosbags writes one storage file per bag, so with ``split_max_bytes`` or
``split_max_duration_s`` set, ``path`` becomes a plain directory of consecutive complete
bags ``path/<name>_0``, ``path/<name>_1``, ... (``<name>`` = ``path``'s last component),
each with its own ``metadata.yaml`` and the same custom data; ``open_bag(path)`` reads the
set as one bag. A part is closed before the message that would exceed the byte budget
(counted as serialized message bytes) or that lies ``max_duration_s`` after its first message.

Crash recovery: rosbags keeps data in memory/uncommitted until ``close()`` (sqlite3: one open
transaction; MCAP: a 1 MiB in-memory chunk), and writes ``metadata.yaml`` last. ``BagWriter``
therefore flushes every ``flush_interval_s`` (sqlite3: commit; MCAP: close the chunk and flush
the file) and leaves ``vp3d_custom_data.json`` in each bag while it is open. After a SIGKILL,
``reindex(path)`` rebuilds a complete bag from what was flushed: for sqlite3 every committed
message (the open transaction is rolled back); for MCAP every complete chunk (the partial
record at the end is discarded). The custom data is restored from the side file.
On a write/flush/close error (disk full, EFBIG, ...) the writer does the same itself: it
saves what is still safe to save, aborts, reindexes the part from disk and raises
``BagError`` saying how many messages were kept (or to run ``reindex`` once the disk is
writable again) and the cause by its errno (disk full, permission denied, read-only file
system, I/O error; ``io_cause``) with the matching advice.
"""
from __future__ import annotations

import errno
import functools
import heapq
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, TypesysError, get_typestore, get_types_from_msg

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
SUFFIXES = {'.mcap': 'mcap', '.db3': 'sqlite3'}
SIDECAR = 'vp3d_custom_data.json'

META_LAYOUT_2D = 'vp3d.layout_2d'
META_LAYOUT_3D = 'vp3d.layout_3d'
META_TOPIC_LAYOUTS = 'vp3d.topic_layouts'
META_CHECKPOINT = 'vp3d.checkpoint'
META_MODELS = 'vp3d.models'
META_PARAMETERS = 'vp3d.parameters'
META_SUBJECT = 'vp3d.subject'
META_FORMAT = 'vp3d.format'
META_SPLIT = 'vp3d.split'
META_RECOVERED = 'vp3d.recovered'
_INTERNAL_KEYS = (META_SPLIT, META_RECOVERED)

_MCAP_MAGIC = b'\x89MCAP0\r\n'


class BagError(RuntimeError):
    """A bag cannot be written/read/recovered; the message says what to fix."""


class TopicInfo(NamedTuple):
    msgtype: str
    count: int


class Recovered(NamedTuple):
    """What ``reindex`` rebuilt from one bag directory."""
    path: Path
    storage: str
    messages: int
    topics: Dict[str, int]
    discarded_bytes: Optional[int]  # MCAP: bytes after the last complete record; sqlite3: None


@functools.lru_cache(maxsize=None)
def typestore():
    """The stock message definitions bags are written with."""
    return get_typestore(Stores.ROS2_KILTED)


def encode_metadata(metadata: Optional[dict]) -> Dict[str, str]:
    try:
        return {str(k): json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    except (TypeError, ValueError) as e:
        raise BagError(f'bag metadata must be JSON-serialisable: {e}') from None


def decode_metadata(custom: Optional[Dict[str, str]]) -> Dict[str, Any]:
    out = {}
    for k, v in (custom or {}).items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


# What to do about a failing write, by cause: "free disk space" was the advice for every
# error, also for a directory that had become unwritable.
_CAUSES = {
    errno.ENOSPC: ('the disk is full', 'free disk space'),
    errno.EDQUOT: ('the disk quota is used up', 'free space within the quota'),
    errno.EACCES: ('permission denied', 'make the bag directory writable again'),
    errno.EPERM: ('operation not permitted', 'make the bag directory writable again'),
    errno.EROFS: ('the file system is read-only (remounted read-only after disk errors?)',
                  'check the disk and remount it read-write'),
    errno.EIO: ('an input/output error (a failing or removed disk?)', 'check the disk'),
    errno.ENOENT: ('the bag directory was removed', 'do not delete a bag while recording'),
}
_SQLITE_CAUSES = {'SQLITE_FULL': errno.ENOSPC, 'SQLITE_READONLY': errno.EACCES,
                  'SQLITE_PERM': errno.EPERM, 'SQLITE_IOERR': errno.EIO,
                  'SQLITE_CANTOPEN': errno.EACCES}


def io_cause(err: BaseException) -> Tuple[str, str]:
    """(what went wrong, what to do) for an error writing a bag: its errno (an OSError
    anywhere in the exception's chain) or SQLite's error code; unknown causes say so."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code = getattr(err, 'errno', None)
        if isinstance(err, OSError) and code in _CAUSES:
            return _CAUSES[code]
        name = getattr(err, 'sqlite_errorname', '') or ''
        for prefix, mapped in _SQLITE_CAUSES.items():
            if name.startswith(prefix):
                return _CAUSES[mapped]
        err = err.__cause__ or err.__context__
    return ('an error writing the bag', 'check the output directory and disk')


def _check_output_path(path: Path) -> None:
    """Fail before any data is accepted if ``path`` cannot become a new bag."""
    if path.exists() or path.is_symlink():
        raise BagError(f'{path} already exists; bags are never overwritten: choose a new '
                       f'output path or move the old bag away')
    anc = path.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise BagError(f'cannot create {path}: {anc} is not a directory')
    try:
        os.rmdir(tempfile.mkdtemp(prefix='.vp3d_probe_', dir=anc))
    except OSError as e:
        what, todo = io_cause(e)
        raise BagError(f'cannot write under {anc} ({e.strerror}: {what}): {todo}, or choose '
                       'another output directory') from None


def _flush_storage(storage) -> None:
    """Make everything written so far survive a crash (rosbags defers it to close)."""
    if isinstance(storage, Sqlite3Writer):
        storage.conn.commit()
    elif isinstance(storage, McapWriter):
        if storage.chunk.msgs:
            storage.close_chunk()
        storage.bio.flush()


class BagWriter:
    """Writes one bag (or a split set of bags) of serialized ROS 2 messages."""

    def __init__(self, path, storage: str = 'mcap', metadata: Optional[dict] = None,
                 split_max_bytes: int = 0, split_max_duration_s: float = 0.0,
                 flush_interval_s: float = 1.0):
        if storage not in STORAGES:
            raise BagError(f'storage must be one of {sorted(STORAGES)}, not {storage!r}')
        if split_max_bytes < 0 or split_max_duration_s < 0:
            raise BagError('split limits must be >= 0 (0 disables splitting)')
        self.path = Path(path)
        self.storage = storage
        self.split_max_bytes = int(split_max_bytes)
        self.split_max_duration_s = float(split_max_duration_s)
        self.flush_interval_s = float(flush_interval_s)
        self._custom = encode_metadata(metadata)
        self._split = bool(self.split_max_bytes or self.split_max_duration_s)
        self._topics: Dict[str, Tuple[str, tuple]] = {}
        self._conns: Dict[str, Any] = {}
        self._writer: Optional[Writer] = None
        self.parts: List[Path] = []
        self.closed = False
        _check_output_path(self.path)
        if self._split:
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise BagError(f'cannot create {self.path}: {e}') from None
        self._open_part()

    # -- parts -------------------------------------------------------------------------
    def _open_part(self) -> None:
        part = self.path / f'{self.path.name}_{len(self.parts)}' if self._split else self.path
        custom = dict(self._custom)
        if self._split:
            custom.update(encode_metadata({META_SPLIT: {
                'index': len(self.parts), 'max_bytes': self.split_max_bytes,
                'max_duration_s': self.split_max_duration_s}}))
        writer = Writer(part, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[self.storage])
        for k, v in custom.items():
            writer.set_custom_data(k, v)
        try:
            writer.open()
            (part / SIDECAR).write_text(json.dumps(custom, sort_keys=True))
            self._writer = writer
            self._conns = {t: self._add_connection(t, *spec) for t, spec in self._topics.items()}
        except (OSError, sqlite3.Error, WriterError) as e:
            self._writer = None
            writer.abort()
            what, todo = io_cause(e)
            raise BagError(f'cannot start bag {part}: {e} ({what}: {todo})') from e
        self.parts.append(part)
        self._part_msgs = 0
        self._part_bytes = 0
        self._part_start_ns = 0
        self._last_flush = time.monotonic()
        self._mark_clean()

    def _add_connection(self, topic: str, msgtype: str, qos: tuple):
        return self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                           offered_qos_profiles=qos)

    def _close_part(self) -> None:
        self._writer.close()
        self._writer = None
        (self.parts[-1] / SIDECAR).unlink(missing_ok=True)

    # -- API -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed or self._writer is None:
            raise BagError(f'bag {self.path} is closed')

    def add_topic(self, topic: str, msgtype: str, qos=None) -> None:
        """Register ``topic``; ``qos``: None, a rosbags ``Qos`` or a sequence of them."""
        self._check_open()
        if topic in self._topics:
            if self._topics[topic][0] != msgtype:
                raise BagError(f'{topic} already added as {self._topics[topic][0]}, not {msgtype}')
            return
        if msgtype not in typestore().fielddefs:
            raise BagError(f'unknown message type {msgtype!r} (not in the ROS 2 Kilted store)')
        qos = () if qos is None else (qos,) if hasattr(qos, 'reliability') else tuple(qos)
        try:
            self._conns[topic] = self._add_connection(topic, msgtype, qos)
        except (OSError, sqlite3.Error, WriterError) as e:
            raise BagError(f'cannot add topic {topic}: {e}') from e
        self._topics[topic] = (msgtype, qos)

    def write(self, topic: str, stamp_ns: int, raw_cdr) -> None:
        """Store one serialized (CDR) message as given, at bag time ``stamp_ns``."""
        self._check_open()
        if topic not in self._conns:
            raise BagError(f'topic {topic} was not added; call add_topic first')
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise BagError(f'negative timestamp {stamp_ns}')
        size = len(raw_cdr)
        try:
            if self._split and self._part_msgs and (
                    (self.split_max_bytes and self._part_bytes + size > self.split_max_bytes)
                    or (self.split_max_duration_s and stamp_ns - self._part_start_ns
                        >= self.split_max_duration_s * 1e9)):
                self._close_part()
                try:
                    self._open_part()
                except BagError:
                    self.closed = True
                    raise
            self._writer.write(self._conns[topic], stamp_ns, raw_cdr)
            self._mark_clean()
        except (OSError, sqlite3.Error, WriterError) as e:
            self._fail(e, f'writing {topic} at {stamp_ns} ns')
        if not self._part_msgs:
            self._part_start_ns = stamp_ns
        self._part_msgs += 1
        self._part_bytes += size
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def update_metadata(self, metadata: dict) -> None:
        """Set custom metadata keys after opening (e.g. a lifter's model announced late):
        stored in this part and every later one (rosbag2 writes metadata.yaml at close;
        the side file keeps it recoverable after a crash). Split parts already closed keep
        what they had."""
        self._check_open()
        encoded = encode_metadata(metadata)
        self._custom.update(encoded)
        for k, v in encoded.items():
            self._writer.set_custom_data(k, v)
        custom = dict(self._writer.custom_data)
        try:
            (self.parts[-1] / SIDECAR).write_text(json.dumps(custom, sort_keys=True))
        except OSError as e:
            raise BagError(f'cannot update {self.parts[-1] / SIDECAR}: {e}') from e

    def write_msg(self, topic: str, stamp_ns: int, msg) -> None:
        """Serialize a rosbags message object with the topic's type and store it."""
        self._check_open()
        if topic not in self._topics:
            raise BagError(f'topic {topic} was not added; call add_topic first')
        self.write(topic, stamp_ns, typestore().serialize_cdr(msg, self._topics[topic][0]))

    def flush(self) -> None:
        """Put everything written so far on disk, recoverable by ``reindex`` after a crash."""
        self._check_open()
        try:
            _flush_storage(self._writer.storage)
            self._mark_clean()
        except (OSError, sqlite3.Error) as e:
            self._fail(e, 'flushing')
        self._last_flush = time.monotonic()

    def _mark_clean(self) -> None:
        """Remember where the MCAP file ends after a successful operation (see _fail)."""
        storage = self._writer.storage
        self._clean_pos = storage.bio.tell() if isinstance(storage, McapWriter) else None

    def _fail(self, err: Exception, doing: str) -> None:
        """After an I/O error: save what is safe to save, then index the part from disk.

        rosbags' own close would write counts that include the failed message, so the
        part is aborted and rebuilt by ``reindex`` from what really reached the file.
        """
        part, writer, self._writer, self.closed = self.parts[-1], self._writer, None, True
        storage = writer.storage
        try:  # sqlite3: commit is atomic; MCAP: only if the failed call wrote no bytes
            if isinstance(storage, Sqlite3Writer) or (
                    isinstance(storage, McapWriter) and storage.bio.tell() == self._clean_pos):
                _flush_storage(storage)
        except Exception:  # noqa: BLE001 - best effort on a failing disk
            pass
        try:
            writer.abort()
        except Exception:  # noqa: BLE001
            pass
        try:
            rec = _reindex_one(part, keep_original=False)
            kept = f'{part} was indexed and keeps {rec.messages} messages'
        except (BagError, OSError) as e:
            kept = (f'{part} could not be indexed ({e}); once it is writable again, run '
                    f'vp3d_ros.io.bag_io.reindex({str(part)!r}) to recover the flushed messages')
        what, todo = io_cause(err)
        raise BagError(f'{doing} failed ({err}): {what}; {kept}. To record further: {todo}, '
                       'or choose another output path') from err

    def close(self) -> None:
        """Finish the bag (index, metadata.yaml). Safe to call twice."""
        if self.closed:
            return
        if self._writer is not None:
            try:
                self._close_part()
            except (OSError, sqlite3.Error, WriterError) as e:
                self._fail(e, 'closing')
        self.closed = True

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


# -- reading ---------------------------------------------------------------------------
def _part_index(p: Path) -> Optional[int]:
    head, sep, tail = p.name.rpartition('_')
    return int(tail) if sep and head and tail.isdigit() else None


def split_parts(path: Path) -> List[Path]:
    """The ``<name>_<n>`` bag directories of a split set, in order (empty if none)."""
    if not path.is_dir():
        return []
    parts = [p for p in path.iterdir() if p.is_dir() and _part_index(p) is not None
             and (any(p.glob('*.mcap')) or any(p.glob('*.db3'))
                  or (p / 'metadata.yaml').exists())]
    return sorted(parts, key=_part_index)


def _bag_parts(path: Path) -> List[Path]:
    if not path.exists():
        raise BagError(f'no bag at {path}')
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise BagError(f'{path} is not a rosbag2 storage file (.mcap or .db3)')
        return [path]
    if (path / 'metadata.yaml').exists():
        return [path]
    parts = split_parts(path)
    if not parts:
        if any(path.glob('*.mcap')) or any(path.glob('*.db3')):
            raise BagError(f'{path} has no metadata.yaml (its writer was killed?): run '
                           f'vp3d_ros.io.bag_io.reindex({str(path)!r}) first')
        raise BagError(f'{path} is not a rosbag2 bag (no metadata.yaml, no split parts)')
    if missing := [p.name for p in parts if not (p / 'metadata.yaml').exists()]:
        raise BagError(f'split parts {missing} of {path} have no metadata.yaml: run '
                       f'vp3d_ros.io.bag_io.reindex({str(path)!r}) first')
    return parts


class BagReader:
    """Reads a bag, a split set of bags or a bare .mcap/.db3 file, in time order."""

    def __init__(self, path):
        self.path = Path(path)
        self.parts = _bag_parts(self.path)
        self._readers: List[Reader] = []
        try:
            for p in self.parts:
                r = Reader(p)
                r.open()
                self._readers.append(r)
        except (ReaderError, OSError, KeyError, ValueError) as e:
            self.close()
            raise BagError(f'cannot read bag {self.path}: {e}') from e
        self._types = typestore()

    def close(self) -> None:
        readers, self._readers = self._readers, []
        for r in readers:
            r.close()

    def __enter__(self) -> 'BagReader':
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    @property
    def storage(self) -> str:
        """'mcap' or 'sqlite3'."""
        p = self.parts[0]
        files = [p] if p.is_file() else [*p.glob('*.mcap'), *p.glob('*.db3')]
        return SUFFIXES[files[0].suffix] if files else ''

    @property
    def topics(self) -> Dict[str, TopicInfo]:
        out: Dict[str, TopicInfo] = {}
        for r in self._readers:
            for c in r.connections:
                prev = out.get(c.topic, TopicInfo(c.msgtype, 0))
                out[c.topic] = TopicInfo(prev.msgtype, prev.count + c.msgcount)
        return dict(sorted(out.items()))

    @property
    def message_count(self) -> int:
        return sum(r.message_count for r in self._readers)

    @property
    def custom_data(self) -> List[Dict[str, str]]:
        """Raw ``custom_data`` of each part."""
        return [dict(r.storage.metadata.custom or {}) for r in self._readers]

    @property
    def metadata(self) -> Dict[str, Any]:
        """The decoded custom metadata the bag was written with."""
        meta = decode_metadata(self.custom_data[0] if self._readers else {})
        return {k: v for k, v in meta.items() if k not in _INTERNAL_KEYS}

    def messages(self, topics: Optional[Iterable[str]] = None
                 ) -> Iterator[Tuple[str, str, int, bytes]]:
        """(topic, msgtype, stamp_ns, raw CDR bytes), in time order over all parts."""
        wanted = None if topics is None else set(topics)
        gens = []
        for r in self._readers:
            conns = [c for c in r.connections if wanted is None or c.topic in wanted]
            if conns:
                gens.append((c.topic, c.msgtype, t, bytes(raw))
                            for c, t, raw in r.messages(connections=conns))
        return heapq.merge(*gens, key=lambda m: m[2])

    def deserialize(self, raw, msgtype: str):
        """Raw CDR -> rosbags message object (bag definitions used for non-stock types)."""
        if msgtype not in self._types.fielddefs:
            self._register(msgtype)
        return self._types.deserialize_cdr(raw, msgtype)

    def read_messages(self, topics: Optional[Iterable[str]] = None):
        """(topic, msgtype, stamp_ns, message object), in time order."""
        for topic, msgtype, stamp, raw in self.messages(topics):
            yield topic, msgtype, stamp, self.deserialize(raw, msgtype)

    def _register(self, msgtype: str) -> None:
        for r in self._readers:
            for c in r.connections:
                if c.msgtype == msgtype and c.msgdef.format == MessageDefinitionFormat.MSG:
                    if self._types is typestore():
                        self._types = get_typestore(Stores.ROS2_KILTED)
                    try:
                        self._types.register(get_types_from_msg(c.msgdef.data, msgtype))
                    except TypesysError as e:
                        raise BagError(f'cannot use the bag definition of {msgtype}: {e}') from e
                    return
        raise BagError(f'no definition for message type {msgtype}')


def open_bag(path) -> BagReader:
    return BagReader(path)


# -- recovery --------------------------------------------------------------------------
def _complete_records_end(bio, start: int, size: int) -> int:
    """Offset after the last complete MCAP record of the data section (framing only)."""
    pos = start
    while pos + 9 <= size:
        bio.seek(pos)
        op, length = struct.unpack('<BQ', bio.read(9))
        if op in (0x00, 0x02, 0x0F) or pos + 9 + length > size:
            break  # zero fill, footer, data end, or a record cut short
        pos += 9 + length
    return pos


class _Salvage:
    """Connections + message iterator of a storage file without metadata.yaml."""

    def __init__(self, file: Path):
        self.file = file
        self.discarded: Optional[int] = None
        if file.suffix == '.db3':
            # A plain read-write open rolls back the killed writer's hot journal; rosbags
            # opens databases immutable and would read its half-written pages.
            try:
                con = sqlite3.connect(str(file))
                con.execute('SELECT count(*) FROM sqlite_master').fetchall()
                con.close()
            except sqlite3.Error as e:
                raise BagError(f'{file} is not a readable sqlite3 bag: {e}') from e
            reader = Reader(file)
            reader.open()
            self.close = reader.close
            self.connections = list(reader.connections)
            self.messages = reader.messages
            return
        size = file.stat().st_size
        r = McapReader(file)
        r.bio = file.open('rb')
        self.close = r.bio.close
        try:
            if r.bio.read(8) != _MCAP_MAGIC or r.bio.read(1) != b'\x01':
                raise BagError(f'{file} does not start like an MCAP file; nothing to recover')
            (hlen,) = struct.unpack('<Q', r.bio.read(8))
            r.data_start = 17 + hlen
            r.data_end = _complete_records_end(r.bio, r.data_start, size)
            self.discarded = size - r.data_end
            r.meta_scan()
        except BaseException:
            self.close()
            raise
        self.connections = list(r.connections)
        self.messages = lambda: r.messages_scan(self.connections)


def _definition(c) -> dict:
    """add_connection arguments: the file's own definition, else the stock one."""
    if c.msgdef.format == MessageDefinitionFormat.NONE or c.msgtype in typestore().fielddefs:
        return {'typestore': typestore()}
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(c.msgdef.data, c.msgtype))
    return {'msgdef': c.msgdef.data, 'rihs01': c.digest or store.hash_rihs01(c.msgtype)}


_NOTHING_FLUSHED_BELOW = 4096  # bytes: a storage file this short holds no complete message


class _NothingFlushed:
    connections = ()
    discarded = 0

    def messages(self):
        return iter(())

    def close(self):
        pass


def _reindex_one(bag: Path, keep_original: bool) -> Recovered:
    files = [f for f in bag.iterdir() if f.is_file() and f.suffix in SUFFIXES]
    if len(files) != 1:
        raise BagError(f'{bag}: expected one .mcap or .db3 file to recover, found '
                       f'{[f.name for f in files]}')
    src = files[0]
    storage = SUFFIXES[src.suffix]
    sidecar = bag / SIDECAR
    custom = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    try:
        salvage = _Salvage(src)
    except (ReaderError, OSError, struct.error, BagError) as e:
        if src.stat().st_size >= _NOTHING_FLUSHED_BELOW:
            raise BagError(f'cannot recover {src}: {e}') from e
        # Killed before its first record reached the disk (a split part just opened):
        # nothing to salvage, but an empty valid part keeps the whole set readable.
        salvage = _NothingFlushed()
    tmp_root = bag.parent / f'.{bag.name}.reindex'
    counts: Dict[str, int] = {}
    n = 0
    try:
        shutil.rmtree(tmp_root, ignore_errors=True)
        tmp_root.mkdir()
        writer = Writer(tmp_root / bag.name, version=Writer.VERSION_LATEST,
                        storage_plugin=STORAGES[storage])
        writer.open()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, **_definition(c),
                                             offered_qos_profiles=c.ext.offered_qos_profiles)
                 for c in salvage.connections}
        for c, stamp, raw in salvage.messages():
            writer.write(conns[c.id], stamp, raw)
            counts[c.topic] = counts.get(c.topic, 0) + 1
            n += 1
        custom[META_RECOVERED] = json.dumps({'source': src.name, 'messages': n,
                                             'discarded_bytes': salvage.discarded},
                                            sort_keys=True)
        for k, v in custom.items():
            writer.set_custom_data(k, v)
        writer.close()
    except (ReaderError, WriterError, TypesysError, OSError, sqlite3.Error, struct.error) as e:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise BagError(f'recovering {src} failed: {e}') from e
    finally:
        salvage.close()
    new_file = next(f for f in (tmp_root / bag.name).iterdir() if f.suffix in SUFFIXES)
    backup = src.with_name(src.name + '.unindexed')
    os.replace(src, backup)
    os.replace(new_file, bag / new_file.name)
    os.replace(tmp_root / bag.name / 'metadata.yaml', bag / 'metadata.yaml')  # whole again
    shutil.rmtree(tmp_root, ignore_errors=True)
    sidecar.unlink(missing_ok=True)
    if not keep_original:
        backup.unlink()
    return Recovered(bag, storage, n, counts, salvage.discarded)


def reindex(path, keep_original: bool = True) -> List[Recovered]:
    """Rebuild the bag(s) at ``path`` whose writer died before writing metadata.yaml.

    Works on one bag directory or on a split set (only parts lacking metadata.yaml are
    touched). The damaged storage file is kept as ``<file>.unindexed`` unless
    ``keep_original`` is False. Returns one ``Recovered`` per rebuilt bag ([] if none).
    """
    path = Path(path)
    if not path.is_dir():
        raise BagError(f'no bag directory at {path}')
    if (path / 'metadata.yaml').exists():
        return []
    parts = split_parts(path)
    if not parts:
        return [_reindex_one(path, keep_original)]
    return [_reindex_one(p, keep_original) for p in parts if not (p / 'metadata.yaml').exists()]


def recording_metadata(layout_2d: str, checkpoint: dict, parameters: dict, subject: dict,
                       producer: str, layout_3d: str = 'h36m') -> Dict[str, Any]:
    """The custom metadata every LandmarkRecord bag carries, live recorder and offline alike."""
    from .. import __version__
    return {
        META_FORMAT: 'LandmarkRecord/1',
        META_LAYOUT_2D: layout_2d,
        META_LAYOUT_3D: layout_3d,
        META_CHECKPOINT: checkpoint,
        META_MODELS: [checkpoint] if checkpoint.get('path') else [],
        META_PARAMETERS: {producer: parameters},
        META_SUBJECT: subject,
        'vp3d.producer': f'vp3d_ros {__version__} {producer}',
    }
