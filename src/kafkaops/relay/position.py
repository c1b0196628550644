"""Where the relay is: position headers on relayed records, and the resume they allow.

kaf-relay resumes from "target end offset == next source offset". Filters, compaction, a source
log whose start was deleted, transaction markers on either side, a fixed or key-hash partition
and earlier duplicates all break that equation. Here the target records themselves say where
they came from, and the resume reads them back.

Headers (appended after the source record's own headers, as one block at the end):

- `kafkaops-relay-src`, the *stamp*: `<cluster>|<topic>|<partition>|<epoch>.<batch>|<offset>`
  (ASCII but for the cluster id, which may contain `|`: it is the part left of the last four).
  `<epoch>.<batch>` is the record's *mark*: the relay numbers its consume batches, and a restart
  opens a new epoch, so marks only grow along every target partition.
- `kr`, the *run token*: 4 bytes naming a run, that is records of one source partition with
  consecutive offsets, sent one after the other to one target partition in one batch. The run's
  first record carries its stamp and, right after it, the token under `kafkaops-run-start`; the
  others the token only (`kr`), and stand for the offsets after the stamp's, in order. (Two
  names, so that a relay's block stays recognisable after an upstream relay's headers, whichever
  form each wrote.) Why: a stamp costs ~50 bytes on every record, which librdkafka and the broker
  handle per record (the relay's main cost at 100-byte records); the token is 6 bytes and one
  list object for the whole run. Tokens count up from a random start per session, so another
  writer's records pass for a run's only if one of theirs holds the very token the scan is
  counting (odds 2^-32 per such record): the token, not the place in the partition, ties a record
  to its run, and other writers may interleave freely. Runs start anew at every offset gap
  (compaction, transaction markers) and wherever a checkpoint is due. The record-by-record path
  (filters, key-hash, dedupe), like relays from before run tokens, stamps every record and
  writes no token: both forms are read alike, so a relay upgraded mid-stream resumes
  exactly from either.
- `kafkaops-run-len` (`exclusive_target`, a promise that nothing else writes to the target
  partitions): the run's length, on its first record after the token. The run's other records
  then carry no relay header unless they have headers of their own (then the token, as above),
  which saves librdkafka a header on nearly every record. Reading backwards, the scan counts the
  records without relay headers since the last stamp it read towards the run whose first record
  it reads next, along with that run's token records. More than the length means something else
  wrote there: the run then counts its token records only (duplicates, never a skip), and the
  partition is named in `ResumeResult.foreign`. A foreign record inside the last run of a crash
  cannot be told apart: that is the promise.
- `kafkaops-relay-ckpt` on the first record sent to each target partition after a start or a
  source switch, then on every `checkpoint_every`-th (always a stamped record): JSON naming the
  relay, a *frontier* mark and, for every source partition that can land in that target
  partition, a cursor (cluster, next offset, timestamp of the record before it). It states:
  every record with a mark below the frontier has been acknowledged by the target (or was
  filtered), and sits below the cursor.

The frontier is what keeps the read-back bounded. Per target partition, the resume reads
backwards (`ResumeScan`) until it has the newest checkpoint and then a record of ours whose mark
is below that checkpoint's frontier: everything further back is known to be settled. What lies
after that point is the window that was in flight at the crash, whose records may or may not have
landed. A checkpoint repeats the cursors of every source partition, so a source partition that
has been idle, or whose recent records were all filtered out, still resolves without reading back
to its last relayed record.

Reading backwards, the scan meets a run's token-only records before its stamp: it counts them per
token, and the stamp then names the run's newest landed record (stamp offset + count). The
idempotent producer lands a partition's records in order, so a run cut short by a crash left a
prefix on the target, and the count is exactly that prefix. A relay's own runs follow one another
in a target partition, so the run whose stamp the scan stops at has no records it did not count.
Token-only records whose stamp is gone (target retention) are no positions: the resume then
starts further back, duplicating rather than losing.

How each source partition resumes:

- It lands in one target partition only (`same`, fixed partition, or key-hash onto a
  one-partition topic): the newest record of it in that partition says where it is. With the
  idempotent producer a partition's records land in order, so everything before that record
  landed and nothing after it did. The checkpoint cursor covers a filtered tail past it.
- It spreads over several target partitions (key-hash): a crash can leave a later record landed
  in one partition and an earlier one lost in another. The resume starts at the newest checkpoint
  cursor (everything before is settled) and hands the I/O layer, per target partition, the highest
  source offset already there; re-read records at or below it are skipped (`LandedFilter`).
  Until the re-read has passed them, the new run keeps its frontier at the old one, so a second
  crash still finds those records in the window it reads.

Across sources: a cursor belongs to a cluster. On a source whose offsets are the same
(`position_mapping = "offset"`), it is used as is. Otherwise (`"timestamp"`), the I/O layer asks
the new source for the first offset with a timestamp at or after the cursor's timestamp minus
`timestamp_skew` (`offsets_for_times`). Guarantee: if the new source holds the same records with
the same timestamps (CreateTime set by the original producer; not LogAppendTime) and timestamps
along a partition never step back by more than the skew, nothing is lost. Records whose timestamps
fall in that window are read again; those identical in timestamp, key and value to records the
relay already wrote are dropped (`BoundaryDedupe`), the rest are duplicates.

All of it relies on what the relay configures: the idempotent producer (acks=all) or
transactions on the target, per-partition order, `read_committed` reads of the target, and each
record produced with its source timestamp (the read-back takes a cursor's timestamp from it, so
target topics must keep CreateTime).
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from kafkaops.relay.topicmap import SourceKey, TargetKey

SOURCE_HEADER = "kafkaops-relay-src"
CHECKPOINT_HEADER = "kafkaops-relay-ckpt"
RUN_HEADER = "kr"
"""Short on purpose: it is on nearly every record (see the module doc)."""
RUN_START_HEADER = "kafkaops-run-start"
RUN_LENGTH_HEADER = "kafkaops-run-len"
"""On a run's first record when the run's other records carry no header (`exclusive_target`)."""

Headers = Sequence[tuple[str, bytes | None]]


class PositionFormatError(ValueError):
    """A relay header that does not parse: never guessed around, since positions decide data."""


class ResumeError(RuntimeError):
    """The resume cannot be computed safely; the message says which partitions and why."""


@dataclass(frozen=True, order=True, slots=True)
class Mark:
    """The batch a record was consumed in: (epoch, batch), ordered."""

    epoch: int
    batch: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.batch}"


@dataclass(frozen=True, slots=True)
class Stamp:
    """A decoded `kafkaops-relay-src` header: which source record a target record copies."""

    cluster: str
    topic: str
    partition: int
    mark: Mark
    offset: int

    @property
    def source(self) -> SourceKey:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where to continue reading one source partition."""

    cluster: str
    offset: int
    """The next offset to read."""
    timestamp_ms: int = -1
    """The timestamp of the record read just before `offset`; -1 when none was read yet."""


@dataclass(frozen=True)
class Checkpoint:
    """A decoded `kafkaops-relay-ckpt` header."""

    relay: str
    version: tuple[int, int]
    """(epoch, n): later checkpoints of one relay have higher versions."""
    frontier: Mark
    cursors: Mapping[SourceKey, Cursor]


def encode_stamp(stamp: Stamp) -> bytes:
    return (
        f"{stamp.cluster}|{stamp.topic}|{stamp.partition}|"
        f"{stamp.mark.epoch}.{stamp.mark.batch}|{stamp.offset}"
    ).encode()


def _natural(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(text)
    return int(text)


def decode_stamp(raw: bytes) -> Stamp:
    try:
        cluster, topic, partition, mark, offset = raw.decode().rsplit("|", 4)
        epoch, _, batch = mark.partition(".")
        stamp = Stamp(
            cluster,
            topic,
            _natural(partition),
            Mark(_natural(epoch), _natural(batch)),
            _natural(offset),
        )
    except (ValueError, UnicodeDecodeError):
        raise PositionFormatError(f"bad {SOURCE_HEADER} header {raw!r}") from None
    if not cluster or not topic:
        raise PositionFormatError(f"bad {SOURCE_HEADER} header {raw!r}")
    return stamp


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    grouped: dict[tuple[str, str], list[list[int]]] = {}
    for (topic, partition), cur in sorted(checkpoint.cursors.items()):
        grouped.setdefault((cur.cluster, topic), []).append(
            [partition, cur.offset, cur.timestamp_ms]
        )
    doc = {
        "relay": checkpoint.relay,
        "version": list(checkpoint.version),
        "frontier": [checkpoint.frontier.epoch, checkpoint.frontier.batch],
        "pos": [[cluster, topic, rows] for (cluster, topic), rows in grouped.items()],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _ints(value: Any, n: int) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(value)
    return value


def decode_checkpoint(raw: bytes) -> Checkpoint:
    try:
        doc = json.loads(raw)
        relay = doc["relay"]
        if not isinstance(relay, str):
            raise ValueError(relay)
        version = _ints(doc["version"], 2)
        frontier = _ints(doc["frontier"], 2)
        cursors: dict[SourceKey, Cursor] = {}
        for cluster, topic, rows in doc["pos"]:
            if not isinstance(cluster, str) or not isinstance(topic, str):
                raise ValueError(cluster)
            for row in rows:
                partition, offset, ts = _ints(row, 3)
                cursors[(topic, partition)] = Cursor(cluster, offset, ts)
    except (ValueError, KeyError, TypeError):
        raise PositionFormatError(f"bad {CHECKPOINT_HEADER} header {raw!r}") from None
    return Checkpoint(relay, (version[0], version[1]), Mark(*frontier), cursors)


def read_block(
    headers: Headers | None,
) -> tuple[Stamp | None, Checkpoint | None, bytes | None, int | None]:
    """This hop's stamp, checkpoint, run token and, for a run of `exclusive_target`, its length.

    When the source topic was itself filled by a relay, its headers come along first; the relay
    appends its own block after them, so its block is the last stamp or token: a token alone
    (`kr`), a stamp and the token that opens a run (`kafkaops-run-start`, always right after
    it), or a stamp alone; then maybe a run length and a checkpoint, which count only after
    that block.
    """
    last = -1
    items = list(headers or ())
    for i, (name, value) in enumerate(items):
        if name in _OURS:
            if value is None:
                raise PositionFormatError(f"{name} header without a value")
            if name not in _AFTER_BLOCK:
                last = i
    if last < 0:
        return None, None, None, None
    name, value = items[last]
    if name == RUN_HEADER:
        return None, None, value, None
    run: bytes | None = None
    stamp_at = last
    if name == RUN_START_HEADER:
        run, stamp_at = value, last - 1
        if stamp_at < 0 or items[stamp_at][0] != SOURCE_HEADER:
            raise PositionFormatError(f"{RUN_START_HEADER} header without a stamp before it")
    after = items[last + 1 :]
    ckpt_raw = next((v for n, v in reversed(after) if n == CHECKPOINT_HEADER), None)
    length_raw = next((v for n, v in after if n == RUN_LENGTH_HEADER), None)
    length = None if length_raw is None else _run_length(length_raw, run)
    return (
        decode_stamp(items[stamp_at][1]),  # type: ignore[arg-type]
        None if ckpt_raw is None else decode_checkpoint(ckpt_raw),
        run,
        length,
    )


def _run_length(raw: bytes, run: bytes | None) -> int:
    try:
        length = _natural(raw.decode())
    except (ValueError, UnicodeDecodeError):
        length = 0
    if run is None or length < 1:
        raise PositionFormatError(f"bad {RUN_LENGTH_HEADER} header {raw!r}")
    return length


_OURS = frozenset(
    {SOURCE_HEADER, CHECKPOINT_HEADER, RUN_HEADER, RUN_START_HEADER, RUN_LENGTH_HEADER}
)
_AFTER_BLOCK = frozenset({CHECKPOINT_HEADER, RUN_LENGTH_HEADER})


class Stamps:
    """Every record's stamp along one target partition, read forwards (in offset order): a
    token-only record stands for the offset after the previous record of its run, and so does
    a record without relay headers inside a run of `exclusive_target` (up to its length). None
    for records not relayed, and for token-only records whose stamp was not read."""

    def __init__(self) -> None:
        self._runs: dict[bytes, Stamp] = {}
        self._bare: tuple[bytes, Stamp, int] | None = None
        """The open run of `exclusive_target`: token, newest stamp, records still to come."""

    def of(self, headers: Headers | None) -> Stamp | None:
        stamp, _, run, length = read_block(headers)
        if run is None:
            if stamp is not None:
                self._bare = None
            elif self._bare is not None:
                return self._next_bare()
            return stamp
        if stamp is not None:
            self._bare = None if length is None else (run, stamp, length - 1)
        elif self._bare is not None and self._bare[0] == run:
            return self._next_bare()
        else:
            before = self._runs.get(run)
            if before is None:
                return None
            stamp = replace(before, offset=before.offset + 1)
        self._runs[run] = stamp
        return stamp

    def _next_bare(self) -> Stamp | None:
        assert self._bare is not None
        run, before, left = self._bare
        if left < 1:
            self._bare = None
            return None
        stamp = replace(before, offset=before.offset + 1)
        self._bare = (run, stamp, left - 1)
        return stamp


# --- while relaying: batches, the acknowledged frontier, checkpoints ---------------------------


class Batch:
    """One consume batch; the I/O layer reports each of its records here, in consume order."""

    __slots__ = ("_prefixes", "_tracker", "closed", "last", "mark", "pending")

    def __init__(self, tracker: PositionTracker, mark: Mark) -> None:
        self._tracker = tracker
        self.mark = mark
        self.pending = 0
        self.closed = False
        self.last: dict[SourceKey, tuple[int, int]] = {}
        self._prefixes: dict[SourceKey, bytes] = {}

    def relayed(self, topic: str, partition: int, offset: int, timestamp_ms: int) -> bytes:
        """Count a record handed to the producer; returns its `kafkaops-relay-src` value."""
        key = (topic, partition)
        self.last[key] = (offset, timestamp_ms)
        self.pending += 1
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = (
                f"{self._tracker.cluster}|{topic}|{partition}|{self.mark.epoch}.{self.mark.batch}|"
            ).encode()
            self._prefixes[key] = prefix
        return prefix + b"%d" % offset

    def skipped(self, topic: str, partition: int, offset: int, timestamp_ms: int) -> None:
        """Count a record that is not sent (filtered, or already on the target)."""
        self.last[(topic, partition)] = (offset, timestamp_ms)

    def close(self) -> None:
        """No more records in this batch; it settles once all its records are acknowledged."""
        self.closed = True
        self._tracker._settle()

    def acked(self, count: int = 1) -> None:
        """The target acknowledged `count` records of this batch (a transaction commit: all)."""
        if count > self.pending:
            raise ValueError(
                f"batch {self.mark}: {count} acks for {self.pending} unacknowledged records"
            )
        self.pending -= count
        if self.closed and not self.pending:
            self._tracker._settle()


class PositionTracker:
    """The acknowledged position of every source partition, and the checkpoints that carry it.

    Time-free and I/O-free: the I/O layer opens a batch per consume call, reports each record
    (`Batch.relayed` gives the header value to attach), closes it, and reports acknowledgements
    (per delivery report at-least-once, per commit with transactions). `cursors()` are the
    settled positions: the basis for lag metrics, a source switch and stop-at-end.
    """

    def __init__(
        self,
        relay: str,
        cluster: str,
        epoch: int,
        cursors: Mapping[SourceKey, Cursor],
        sources_by_target: Mapping[TargetKey, Collection[SourceKey]],
        *,
        checkpoint_every: int = 1000,
        carried_frontier: Mark | None = None,
        catch_up: Mapping[SourceKey, int] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be ≥ 1, got {checkpoint_every}")
        self.relay = relay
        self.cluster = cluster
        self.epoch = epoch
        self.checkpoint_every = checkpoint_every
        self._done: dict[SourceKey, Cursor] = dict(cursors)
        self._sources = {t: frozenset(s) for t, s in sources_by_target.items()}
        self._batches: deque[Batch] = deque()
        self._next_batch = 0
        self._version = 0
        self._since: dict[TargetKey, int] = {}
        self._encoded: dict[frozenset[SourceKey], tuple[int, bytes]] = {}
        self._catch_up = dict(catch_up or {})
        self._pin = carried_frontier if self._catch_up else None
        self._runs = int.from_bytes(os.urandom(4), "big")
        if self._catch_up and carried_frontier is None:
            raise ValueError("catch_up needs the carried_frontier it protects")
        self._release_caught_up()

    @property
    def in_flight(self) -> int:
        """Records sent and not yet acknowledged: the bound for back-pressure."""
        return sum(b.pending for b in self._batches)

    @property
    def frontier(self) -> Mark:
        own = self._batches[0].mark if self._batches else Mark(self.epoch, self._next_batch)
        return own if self._pin is None else min(own, self._pin)

    def cursors(self) -> dict[SourceKey, Cursor]:
        return dict(self._done)

    def open_batch(self) -> Batch:
        batch = Batch(self, Mark(self.epoch, self._next_batch))
        self._next_batch += 1
        self._batches.append(batch)
        return batch

    def new_run(self) -> bytes:
        """A fresh run token (see the module doc): a random start, then counting up."""
        self._runs = (self._runs + 1) & 0xFFFFFFFF
        return self._runs.to_bytes(4, "big")

    def checkpoint_for(self, target: TargetKey) -> bytes | None:
        """Call once per record sent to `target`: the checkpoint header value when one is due."""
        return self.take(target, 1)[1]

    def take(self, target: TargetKey, n: int) -> tuple[int, bytes | None]:
        """About to send up to `n` records to `target`: how many of them may go before the next
        checkpoint falls due, and the checkpoint value when the first of them carries one (the
        same placement as `checkpoint_for` on each record)."""
        every = self.checkpoint_every
        since = self._since.get(target)
        if since is not None and since + 1 < every:
            k = min(n, every - 1 - since)
            self._since[target] = since + k
            return k, None
        k = min(n, every)
        self._since[target] = k - 1
        return k, self._checkpoint_value(target)

    def _checkpoint_value(self, target: TargetKey) -> bytes:
        sources = self._sources.get(target, frozenset())
        cached = self._encoded.get(sources)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        value = encode_checkpoint(
            Checkpoint(
                self.relay,
                (self.epoch, self._version),
                self.frontier,
                {s: self._done[s] for s in sources if s in self._done},
            )
        )
        self._encoded[sources] = (self._version, value)
        return value

    def rebase(
        self, cluster: str, cursors: Mapping[SourceKey, Cursor], *, same_offsets: bool
    ) -> None:
        """Continue on another source (after a failover), once every record is acknowledged.

        `same_offsets`: the new source's offsets match the old one's, so the re-read window the
        resume handed over stays meaningful.
        """
        if self._batches:
            raise RuntimeError(
                f"rebase with {len(self._batches)} unsettled batches: flush the producer first"
            )
        self.cluster = cluster
        self._done.update(cursors)
        if not same_offsets:
            self._catch_up.clear()
            self._pin = None
        self._release_caught_up()
        self._version += 1
        self._since.clear()

    def abandon(self) -> dict[SourceKey, Cursor]:
        """Forget unsettled batches (an aborted transaction) and return where to re-read from.

        Only exact with transactions: at-least-once, records of those batches may already be on
        the target, so that case resumes from the target instead.
        """
        self._batches.clear()
        self._since.clear()
        self._version += 1
        return self.cursors()

    def _settle(self) -> None:
        changed = False
        while self._batches and self._batches[0].closed and not self._batches[0].pending:
            batch = self._batches.popleft()
            for key, (offset, ts) in batch.last.items():
                self._done[key] = Cursor(self.cluster, offset + 1, ts)
            changed = True
        if changed:
            self._release_caught_up()
            self._version += 1

    def _release_caught_up(self) -> None:
        if not self._catch_up:
            return
        for key, landed in list(self._catch_up.items()):
            cur = self._done.get(key)
            if cur is not None and cur.offset > landed:
                del self._catch_up[key]
        if not self._catch_up:
            self._pin = None


# --- on start: read back the target --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailRecord:
    """A target record read back at resume: its offset, timestamp and headers are enough."""

    offset: int
    timestamp_ms: int
    headers: Headers | None


@dataclass(slots=True)
class _Seen:
    stamp: Stamp
    timestamp_ms: int
    target_offset: int


@dataclass
class _TargetScan:
    sources: frozenset[SourceKey]
    scanned: int = 0
    at_start: bool = False
    stopped: bool = False
    checkpoint: Checkpoint | None = None
    checkpoint_offset: int = -1
    newest: dict[SourceKey, _Seen] = field(default_factory=dict)
    max_epoch: int = 0
    runs: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)
    """Token-only records read before their run's stamp: count, newest timestamp and offset."""
    bare: tuple[int, int, int] | None = None
    """Records without relay headers read since the last stamp (the same three), which belong
    to the run of that stamp when it is one of `exclusive_target`."""
    foreign: str | None = None
    """Set when records that this relay did not write were found inside one of its runs."""

    @property
    def complete(self) -> bool:
        return self.stopped or self.at_start


class SourceState(StrEnum):
    RESUME = "resume"
    NEVER_RELAYED = "never-relayed"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True)
class SourceResume:
    source: SourceKey
    state: SourceState
    cursor: Cursor | None = None
    landed: Mapping[TargetKey, tuple[str, int]] = field(default_factory=dict)
    """Spread-out partitions only: per target partition, the newest copy there (cluster, source
    offset). A re-read record at or below it is skipped when its offsets are comparable."""
    reason: str = ""


@dataclass(frozen=True)
class ResumeResult:
    epoch: int
    """The epoch the new run uses: higher than any the target holds."""
    sources: Mapping[SourceKey, SourceResume]
    carried_frontier: Mark | None
    """The frontier the new run keeps until it has re-read the landed records (see module doc)."""
    scanned: Mapping[TargetKey, int]
    foreign: Mapping[TargetKey, str] = field(default_factory=dict)
    """Target partitions where something else wrote inside a run of `exclusive_target`."""


class ResumeScan:
    """Reads the tail of every target partition backwards, window by window.

    The I/O layer, per target partition: read a window ending where the last one began
    (`read_committed`), `feed` it in offset order, and repeat while `wants_more`. Then `result`.
    """

    def __init__(
        self,
        relay: str,
        clusters: Collection[str],
        sources_by_target: Mapping[TargetKey, Collection[SourceKey]],
        *,
        max_records: int = 100_000,
    ) -> None:
        self.relay = relay
        self._clusters = frozenset(clusters)
        self._topics = frozenset(s[0] for sources in sources_by_target.values() for s in sources)
        self._scans = {t: _TargetScan(frozenset(s)) for t, s in sources_by_target.items()}
        self.max_records = max_records

    @property
    def targets(self) -> tuple[TargetKey, ...]:
        return tuple(self._scans)

    def wants_more(self, target: TargetKey) -> bool:
        scan = self._scans[target]
        return not scan.complete and scan.scanned < self.max_records

    def feed(
        self, target: TargetKey, records: Sequence[TailRecord], *, reached_start: bool
    ) -> None:
        """One window, in offset order, older than every window fed before for `target`.

        `reached_start`: the window begins at the partition's log start.
        """
        scan = self._scans[target]
        for rec in reversed(records):
            if scan.stopped:
                return
            scan.scanned += 1
            try:
                stamp, ckpt, run, length = read_block(rec.headers)
            except PositionFormatError as exc:
                raise PositionFormatError(
                    f"{target[0]}[{target[1]}] offset {rec.offset}: {exc}"
                ) from None
            if stamp is None:
                if run is not None:
                    scan.runs[run] = _count(scan.runs.get(run), rec)
                else:
                    scan.bare = _count(scan.bare, rec)
                continue
            bare, scan.bare = scan.bare, None
            later = scan.runs.pop(run, None) if run is not None else None
            if length is not None:
                run_records = _merge(later, bare)
                if run_records is not None and run_records[0] > length - 1:
                    scan.foreign = scan.foreign or (
                        f"{run_records[0] - length + 1} records after offset {rec.offset} "
                        "were not written by this relay"
                    )
                else:
                    later = run_records
            newest = _Seen(stamp, rec.timestamp_ms, rec.offset)
            if later is not None:
                n, ts, offset = later
                newest = _Seen(replace(stamp, offset=stamp.offset + n), ts, offset)
            if stamp.cluster not in self._clusters or stamp.topic not in self._topics:
                continue
            scan.max_epoch = max(scan.max_epoch, stamp.mark.epoch)
            if ckpt is not None and ckpt.relay == self.relay and scan.checkpoint is None:
                scan.checkpoint = ckpt
                scan.checkpoint_offset = rec.offset
                scan.max_epoch = max(scan.max_epoch, ckpt.version[0], ckpt.frontier.epoch)
            if stamp.source not in scan.newest:
                scan.newest[stamp.source] = newest
            if scan.checkpoint is not None and stamp.mark < scan.checkpoint.frontier:
                scan.stopped = True
        if reached_start:
            scan.at_start = True

    def result(self) -> ResumeResult:
        targets_of: dict[SourceKey, list[TargetKey]] = {}
        for target, scan in self._scans.items():
            for source in scan.sources:
                targets_of.setdefault(source, []).append(target)
        epoch = 1 + max((s.max_epoch for s in self._scans.values()), default=0)
        out: dict[SourceKey, SourceResume] = {}
        pins: list[Mark] = []
        for source, targets in sorted(targets_of.items()):
            res = self._resolve(source, sorted(targets))
            out[source] = res
            if res.landed:
                pins.extend(self._frontier_of(t) for t in res.landed)
        return ResumeResult(
            epoch=epoch,
            sources=out,
            carried_frontier=min(pins) if pins else None,
            scanned={t: s.scanned for t, s in self._scans.items()},
            foreign={t: s.foreign for t, s in self._scans.items() if s.foreign is not None},
        )

    def _frontier_of(self, target: TargetKey) -> Mark:
        ckpt = self._scans[target].checkpoint
        return ckpt.frontier if ckpt is not None else Mark(0, 0)

    def _best_checkpoint(self, source: SourceKey, targets: list[TargetKey]) -> Checkpoint | None:
        found = [
            ckpt
            for t in targets
            if (ckpt := self._scans[t].checkpoint) is not None and source in ckpt.cursors
        ]
        return max(found, key=lambda c: c.version) if found else None

    def _resolve(self, source: SourceKey, targets: list[TargetKey]) -> SourceResume:
        best = self._best_checkpoint(source, targets)
        complete = all(self._scans[t].complete for t in targets)
        if len(targets) == 1:
            return self._resolve_single(source, targets[0], best, complete)
        newest = {t: seen for t in targets if (seen := self._scans[t].newest.get(source))}
        if not complete:
            return self._unresolved(source, targets)
        if best is None:
            if not newest:
                return SourceResume(
                    source, SourceState.NEVER_RELAYED, reason="no record on the target"
                )
            return SourceResume(
                source,
                SourceState.UNRESOLVED,
                reason=f"{_name(source)} has relayed records but no checkpoint on the target",
            )
        landed = {t: (seen.stamp.cluster, seen.stamp.offset) for t, seen in newest.items()}
        return SourceResume(source, SourceState.RESUME, best.cursors[source], landed, "checkpoint")

    def _resolve_single(
        self, source: SourceKey, target: TargetKey, best: Checkpoint | None, complete: bool
    ) -> SourceResume:
        scan = self._scans[target]
        seen = scan.newest.get(source)
        if seen is not None:
            after = Cursor(seen.stamp.cluster, seen.stamp.offset + 1, seen.timestamp_ms)
            if best is None:
                return SourceResume(source, SourceState.RESUME, after, reason="last record")
            ckpt = best.cursors[source]
            if ckpt.cluster == after.cluster:
                cursor = ckpt if ckpt.offset > after.offset else after
            else:
                cursor = after if seen.target_offset > scan.checkpoint_offset else ckpt
            return SourceResume(
                source, SourceState.RESUME, cursor, reason="last record and checkpoint"
            )
        if not complete:
            return self._unresolved(source, [target])
        if best is not None:
            return SourceResume(
                source, SourceState.RESUME, best.cursors[source], reason="checkpoint"
            )
        return SourceResume(source, SourceState.NEVER_RELAYED, reason="no record on the target")

    def _unresolved(self, source: SourceKey, targets: list[TargetKey]) -> SourceResume:
        short = [f"{t[0]}[{t[1]}]" for t in targets if not self._scans[t].complete]
        return SourceResume(
            source,
            SourceState.UNRESOLVED,
            reason=(
                f"{_name(source)}: read {self.max_records} records back in {', '.join(short)} "
                "without reaching a settled checkpoint (raise resume_scan_limit)"
            ),
        )


def _count(seen: tuple[int, int, int] | None, rec: TailRecord) -> tuple[int, int, int]:
    """One more record read backwards: the first one read is the newest."""
    if seen is None:
        return (1, rec.timestamp_ms, rec.offset)
    return (seen[0] + 1, seen[1], seen[2])


def _merge(
    a: tuple[int, int, int] | None, b: tuple[int, int, int] | None
) -> tuple[int, int, int] | None:
    """Two counts of one run's records: summed, with the newest record of either."""
    if a is None or b is None:
        return a or b
    newest = a if a[2] > b[2] else b
    return (a[0] + b[0], newest[1], newest[2])


def _name(source: SourceKey) -> str:
    return f"{source[0]}[{source[1]}]"


# --- on start: where to read each source partition ----------------------------------------------


@dataclass(frozen=True)
class StartPlan:
    source: SourceKey
    offset: int | None
    """Where to start reading; None until the timestamp lookup is resolved."""
    timestamp_ms: int = -1
    """The timestamp of the last record read before `offset` (carried into the cursor)."""
    lookup_timestamp_ms: int | None = None
    """Set when the position came from another source: ask offsets_for_times for this."""
    skipped: int = 0
    """Offsets the source deleted (retention) before the relay copied them: lost upstream."""
    wait_for_source: bool = False
    """The position lies beyond this source's end: consume only once it has caught up."""
    landed: Mapping[TargetKey, int] = field(default_factory=dict)
    """Per target partition, the highest offset of this source partition already there."""
    reason: str = ""


Watermarks = Mapping[SourceKey, tuple[int, int]]
"""(log start offset, end offset) per source partition, on the source being started."""


@dataclass(frozen=True)
class ResumePlan:
    """Where the new run reads, on which source, and what it must carry over."""

    relay: str
    cluster: str
    epoch: int
    partitions: Mapping[SourceKey, StartPlan]
    carried_frontier: Mark | None

    def lookups(self) -> dict[SourceKey, int]:
        """The timestamps to resolve with offsets_for_times before starting."""
        return {
            s: p.lookup_timestamp_ms
            for s, p in self.partitions.items()
            if p.offset is None and p.lookup_timestamp_ms is not None
        }

    def with_lookups(
        self, found: Mapping[SourceKey, int | None], watermarks: Watermarks
    ) -> ResumePlan:
        """Fill in offsets_for_times answers; None or -1 (no such record yet) means the end."""
        parts = dict(self.partitions)
        for source, offset in found.items():
            low, high = watermarks[source]
            start = high if offset is None or offset < 0 else min(max(offset, low), high)
            before = parts[source]
            parts[source] = StartPlan(
                source,
                start,
                timestamp_ms=before.timestamp_ms,
                landed={t: o for t, o in before.landed.items() if o >= start},
                reason=f"{before.reason}; offset {start} by timestamp",
            )
        return ResumePlan(self.relay, self.cluster, self.epoch, parts, self.carried_frontier)

    def cursors(self) -> dict[SourceKey, Cursor]:
        missing = sorted(s for s, p in self.partitions.items() if p.offset is None)
        if missing:
            raise ResumeError(f"unresolved timestamp lookups for {', '.join(map(_name, missing))}")
        return {
            s: Cursor(self.cluster, p.offset, p.timestamp_ms)  # type: ignore[arg-type]
            for s, p in self.partitions.items()
        }

    def catch_up(self) -> dict[SourceKey, int]:
        return {s: max(p.landed.values()) for s, p in self.partitions.items() if p.landed}

    def tracker(
        self,
        sources_by_target: Mapping[TargetKey, Collection[SourceKey]],
        *,
        checkpoint_every: int = 1000,
    ) -> PositionTracker:
        catch_up = self.catch_up()
        return PositionTracker(
            self.relay,
            self.cluster,
            self.epoch,
            self.cursors(),
            sources_by_target,
            checkpoint_every=checkpoint_every,
            carried_frontier=self.carried_frontier if catch_up else None,
            catch_up=catch_up,
        )

    def landed_filter(self) -> LandedFilter:
        return LandedFilter({s: p.landed for s, p in self.partitions.items() if p.landed})


def plan_start(
    relay: str,
    resume: ResumeResult,
    cluster: str,
    watermarks: Watermarks,
    *,
    position_mapping: Literal["offset", "timestamp"] = "timestamp",
    timestamp_skew_ms: int = 0,
    start_at: Literal["earliest", "latest"] = "earliest",
) -> ResumePlan:
    """Turn the read-back into a start offset per source partition on source `cluster`.

    Raises ResumeError, naming every partition concerned, when a position cannot be trusted: the
    read-back was inconclusive, or this very source now ends before the position the relay
    already copied (topic re-created, or data lost on the source).
    """
    problems: list[str] = []
    plans: dict[SourceKey, StartPlan] = {}
    for source, res in resume.sources.items():
        if source not in watermarks:
            problems.append(f"{_name(source)}: no offsets from source {cluster!r}")
            continue
        low, high = watermarks[source]
        if res.state is SourceState.UNRESOLVED:
            problems.append(res.reason)
            continue
        cursor = res.cursor
        comparable = {
            t: offset
            for t, (where, offset) in res.landed.items()
            if position_mapping == "offset" or where == cluster
        }
        fresh = res.state is SourceState.NEVER_RELAYED or (
            cursor is not None
            and cursor.cluster != cluster
            and position_mapping == "timestamp"
            and cursor.timestamp_ms < 0
        )
        if fresh or cursor is None:
            start = low if start_at == "earliest" else high
            plans[source] = StartPlan(source, start, reason=f"{res.state.value}: {start_at}")
            continue
        if cursor.cluster != cluster and position_mapping == "timestamp":
            plans[source] = StartPlan(
                source,
                None,
                timestamp_ms=cursor.timestamp_ms,
                lookup_timestamp_ms=max(0, cursor.timestamp_ms - timestamp_skew_ms),
                landed=comparable,
                reason=f"position on {cursor.cluster!r} mapped by timestamp",
            )
            continue
        offset, skipped = cursor.offset, 0
        if offset < low:
            offset, skipped = low, low - offset
        wait = offset > high
        if wait and cursor.cluster == cluster:
            problems.append(
                f"{_name(source)}: source {cluster!r} ends at offset {high} but the relay already "
                f"copied up to {cursor.offset - 1} (topic re-created or data lost on the source?)"
            )
            continue
        plans[source] = StartPlan(
            source,
            offset,
            timestamp_ms=cursor.timestamp_ms,
            skipped=skipped,
            wait_for_source=wait,
            landed={t: o for t, o in comparable.items() if o >= offset},
            reason=res.reason,
        )
    if problems:
        raise ResumeError("cannot resume safely: " + "; ".join(problems))
    return ResumePlan(relay, cluster, resume.epoch, plans, resume.carried_frontier)


class LandedFilter:
    """Skips re-read records that are already on the target (spread-out partitions only)."""

    def __init__(self, landed: Mapping[SourceKey, Mapping[TargetKey, int]]) -> None:
        self._landed = {s: dict(t) for s, t in landed.items() if t}
        self._ceiling = {s: max(t.values()) for s, t in self._landed.items()}

    def __bool__(self) -> bool:
        return bool(self._landed)

    def already_landed(self, source: SourceKey, offset: int, target: TargetKey) -> bool:
        per_target = self._landed.get(source)
        if per_target is None:
            return False
        if offset > self._ceiling[source]:
            del self._landed[source]
            return False
        return offset <= per_target.get(target, -1)


class BoundaryDedupe:
    """After a timestamp-mapped switch: drop re-read records identical to ones already relayed.

    Fed with (source partition, timestamp, key, value) of records the relay wrote at or after
    the lookup timestamp: at runtime from `RecentRecords`, on restart from the target tail. Each
    known record cancels one re-read copy, so genuinely repeated records still get through.
    """

    def __init__(
        self, relayed: Iterable[tuple[SourceKey, int, bytes | None, bytes | None]]
    ) -> None:
        self._known: dict[SourceKey, Counter[tuple[int, bytes | None, bytes | None]]] = {}
        for source, ts, key, value in relayed:
            self._known.setdefault(source, Counter())[(ts, key, value)] += 1

    def seen(
        self, source: SourceKey, timestamp_ms: int, key: bytes | None, value: bytes | None
    ) -> bool:
        known = self._known.get(source)
        if not known:
            return False
        item = (timestamp_ms, key, value)
        if not known[item]:
            return False
        known[item] -= 1
        if not known[item]:
            del known[item]
        return True


class RecentRecords:
    """A bounded memory of recently acknowledged records, for `BoundaryDedupe` at a switch."""

    def __init__(self, capacity: int) -> None:
        self._ring: deque[tuple[SourceKey, int, bytes | None, bytes | None]] = deque(
            maxlen=capacity
        )

    def add(
        self, source: SourceKey, timestamp_ms: int, key: bytes | None, value: bytes | None
    ) -> None:
        self._ring.append((source, timestamp_ms, key, value))

    def dedupe_from(self, lookups: Mapping[SourceKey, int]) -> BoundaryDedupe:
        """The records at or after each partition's lookup timestamp."""
        return BoundaryDedupe(r for r in self._ring if r[0] in lookups and r[1] >= lookups[r[0]])


# --- while relaying: stop-at-end and lag ---------------------------------------------------------


class StopAtEnd:
    """`stop_at_end`: done when every source partition is read up to its end seen at start.

    Offsets, not record counts (kaf-relay counts records, so transaction markers, which take an
    offset but are never delivered, make it wait forever): a partition is done when its next
    offset reaches the end, or when the consumer reports end-of-partition.
    """

    def __init__(self, ends: Mapping[SourceKey, int], starts: Mapping[SourceKey, int]) -> None:
        self._ends = dict(ends)
        self._remaining = {s for s, end in ends.items() if starts.get(s, 0) < end}

    @property
    def done(self) -> bool:
        return not self._remaining

    @property
    def remaining(self) -> frozenset[SourceKey]:
        return frozenset(self._remaining)

    def past_end(self, source: SourceKey, offset: int) -> bool:
        """A record the run must not relay: it arrived after the end seen at start."""
        return offset >= self._ends.get(source, 0)

    def consumed(self, source: SourceKey, offset: int) -> bool:
        """A record at `offset` was read; returns whether everything is done."""
        if source in self._remaining and offset + 1 >= self._ends[source]:
            self._remaining.discard(source)
        return not self._remaining

    def reached_end(self, source: SourceKey) -> bool:
        """The consumer reported end-of-partition; returns whether everything is done."""
        self._remaining.discard(source)
        return not self._remaining

    def rebase(self, ends: Mapping[SourceKey, int]) -> None:
        """The ends translated to a new source after a failover."""
        self._ends.update(ends)


def relay_lag(
    end_offsets: Mapping[SourceKey, int], cursors: Mapping[SourceKey, Cursor], cluster: str
) -> dict[SourceKey, int]:
    """Source end minus the acknowledged position, per partition read from `cluster`."""
    return {
        s: max(0, end - cur.offset)
        for s, end in end_offsets.items()
        if (cur := cursors.get(s)) is not None and cur.cluster == cluster
    }
