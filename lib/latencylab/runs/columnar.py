"""A run's samples as columns: samples.jsonl (the crash-safe journal a run appends to) read in pieces of whole
lines, and its Parquet copy samples.parquet, which is what the analysis reads.

The Parquet file holds the rows `store.load_run` returns (a request a resume sent again appears once), with the
columns of `Sample` in its order and `itl_ms` as a list column, so pandas, Polars, DuckDB or Spark read it as it is.
Its metadata records what it was built from (the journal's size and last bytes, the schema): a journal that has
changed since, or a newer schema, makes it stale, and the next load builds it again.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from latencylab.core.errors import CorruptRun
from latencylab.core.sample import SAMPLE_DTYPES

JOURNAL = "samples.jsonl"
PARQUET = "samples.parquet"
PIECE_BYTES = 4 << 20  # of the journal parsed at once: memory stays bounded whatever the run's size
ROW_GROUP_BYTES = 8 << 20  # of Arrow data a Parquet row group holds at least (a piece makes far less)
TAIL_BYTES = 64 << 10  # the journal's last bytes, hashed: an edit near its end makes the Parquet stale
METADATA_KEY = b"latencylab"

# The Arrow type of each pandas dtype of `SAMPLE_DTYPES` (both derive from `Sample`, so they never drift apart).
_ARROW: dict[str, pa.DataType] = {"string": pa.string(), "Int64": pa.int64(), "Float64": pa.float64(),
                                  "boolean": pa.bool_(), "object": pa.list_(pa.float64())}
SAMPLE_SCHEMA = pa.schema([(name, _ARROW[dtype]) for name, dtype in SAMPLE_DTYPES.items()])
_PANDAS_TYPES = {_ARROW[dtype]: pd.api.types.pandas_dtype(dtype) for dtype in _ARROW if dtype != "object"}
_SCHEMA_ID = hashlib.sha256(str(SAMPLE_SCHEMA).encode()).hexdigest()[:16]
_PARSE = pajson.ParseOptions(explicit_schema=SAMPLE_SCHEMA, unexpected_field_behavior="infer")


def samples_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Samples as a DataFrame with the documented `SAMPLE_DTYPES` (unknown keys are kept as-is)."""
    frame = pd.DataFrame.from_records(list(records), columns=None)
    for column, dtype in SAMPLE_DTYPES.items():
        if column not in frame:
            frame[column] = pd.Series([None] * len(frame), dtype="object")
        if dtype != "object":
            frame[column] = frame[column].astype(dtype)
    return frame


def _frame(columns: Iterable[tuple[str, pa.ChunkedArray]]) -> pd.DataFrame:
    """Arrow columns, converted one at a time, as `load_run()` returns them: `SAMPLE_DTYPES`, `itl_ms` as a float
    array per request. Fed a column at a time from Parquet, memory holds the frame and one Arrow column (the whole
    table beside the frame took 700 MB more at 10⁶ samples, kept by Arrow's allocator after)."""
    return pd.DataFrame({name: pd.Series(_lists(values), dtype="object") if name == "itl_ms"
                         else values.to_pandas(types_mapper=_PANDAS_TYPES.get) for name, values in columns}, copy=False)


def _parquet_columns(path: Path) -> Iterator[tuple[str, pa.ChunkedArray]]:
    source = pq.ParquetFile(path)
    for name in source.schema_arrow.names:
        yield name, source.read(columns=[name]).column(0)


def _lists(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """A list column as one NumPy view per row into a flat array of its values: a million rows of 31 gaps hold
    250 MB of floats and a view each, where Python lists of floats took a gigabyte more (read-only views: a
    change to one would change the flat array)."""
    out: list[np.ndarray | None] = []
    with _collector_off():
        for chunk in column.chunks:
            out += _chunk_lists(chunk)
    return out


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a million objects are made: they hold no cycles, and each
    collection set off by their number would scan every one made so far (it doubled the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunk_lists(chunk: pa.ListArray) -> list[np.ndarray | None]:
    if not len(chunk):
        return []  # (np.split makes one piece of nothing)
    # each row's length and the values of all rows in turn, whatever slice of a longer array the chunk is
    lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(chunk).to_numpy(zero_copy_only=False).astype(float)  # its own copy, NaN for a null
    flat.flags.writeable = False
    out: list[np.ndarray | None] = np.split(flat, np.cumsum(lengths)[:-1])
    if chunk.null_count:
        for index in np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False)):
            out[index] = None
    return out


# loading: the Parquet copy while it matches the journal, else the journal (and a new copy for next time)

def load(folder: Path, *, writable: bool) -> pd.DataFrame:
    """The run's samples, one row per request. From samples.parquet while it was built from the journal
    as it is now (or has no journal beside it); else from the journal: the Parquet written again when `writable`
    (no other process appends to the journal) and the folder lets it, else the journal read in memory."""
    journal, parquet = folder / JOURNAL, folder / PARQUET
    if (built := _current(folder)) is not None:
        _say(journal, built)
        return _frame(_parquet_columns(parquet))
    if writable and journal.exists():
        try:
            write(folder)
            return _frame(_parquet_columns(parquet))
        except OSError as exc:  # a read-only data folder is still read
            warnings.warn(f"{parquet} could not be written ({exc}); the samples are read from the journal",
                          stacklevel=2)
    _, whole, torn = _extent(journal)
    unknown: set[str] = set()
    table = pa.concat_tables([SAMPLE_SCHEMA.empty_table(), *_tables(journal, whole, unknown)])
    _say(journal, {"torn_line": torn, "unknown_keys": sorted(unknown)})
    keep = _kept(table)
    kept = table if keep is None else table.filter(keep)
    return _frame((name, kept.column(name)) for name in kept.column_names)


def prepare(folder: Path, *, writable: bool) -> None:
    """Make the samples ready for `load` without reading them into memory: samples.parquet built where it is
    missing or older (when `writable`); a journal that cannot be read raises `CorruptRun` here."""
    if _current(folder) is not None:
        return
    if writable and (folder / JOURNAL).exists():
        with contextlib.suppress(OSError):  # a read-only data folder: `load` reads the journal, and says so
            write(folder)
            return
    load(folder, writable=False)


def _current(folder: Path) -> dict[str, Any] | None:
    """What samples.parquet was built from, while it matches the journal as it is now (or has no journal beside
    it); None when it is missing, older or of another schema."""
    journal, built = folder / JOURNAL, _built(folder / PARQUET)
    if built is None or (journal.exists() and _stamp(journal, journal.stat().st_size) != built["stamp"]):
        return None
    return built


def write(folder: Path) -> None:
    """Build samples.parquet from the journal, piece by piece (memory bounded whatever the run's size), into a
    temporary file renamed over the old one, so that a reader never sees half a file."""
    journal = folder / JOURNAL
    size, whole, torn = _extent(journal)
    stamp = _stamp(journal, size)  # of the bytes read: appended ones make the copy stale
    unknown: set[str] = set()

    def built() -> dict[str, Any]:  # asked once every piece is parsed: the unknown keys are known then
        return {"stamp": stamp, "torn_line": torn, "unknown_keys": sorted(unknown)}

    every, kept = (folder / f"{PARQUET}.{os.getpid()}.{part}.tmp" for part in ("every", "kept"))
    try:
        meta = _write(every, _tables(journal, whole, unknown), built)
        keep = _kept(pq.read_table(every, columns=["seq", "error_kind"]))
        if keep is not None:  # a resumed run: its superseded samples left out, a row group at a time
            _write(kept, _filtered(every, keep), lambda: meta)
            os.replace(kept, every)
        os.replace(every, folder / PARQUET)
    finally:
        every.unlink(missing_ok=True)
        kept.unlink(missing_ok=True)
    _say(journal, meta)


def _write(path: Path, tables: Iterable[pa.Table], built: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A Parquet file of `tables`, with what it was built from in its metadata (`built()`, asked at the end)."""
    with pq.ParquetWriter(path, SAMPLE_SCHEMA) as out:
        pending: list[pa.Table] = []
        for table in tables:
            pending.append(table)
            if sum(t.nbytes for t in pending) >= ROW_GROUP_BYTES:
                out.write_table(pa.concat_tables(pending))
                pending = []
        if pending:
            out.write_table(pa.concat_tables(pending))
        meta = built()
        out.add_key_value_metadata({METADATA_KEY: json.dumps(meta).encode()})
    return meta


def _filtered(path: Path, keep: np.ndarray) -> Iterator[pa.Table]:
    source, start = pq.ParquetFile(path), 0
    for index in range(source.num_row_groups):
        group = source.read_row_group(index)
        yield group.filter(keep[start:start + len(group)])
        start += len(group)


def _built(parquet: Path) -> dict[str, Any] | None:
    """What samples.parquet was built from, when it was built by this schema; None when it is missing or older."""
    try:
        meta = json.loads(pq.read_metadata(parquet).metadata[METADATA_KEY])
    except (OSError, KeyError, TypeError, ValueError):  # missing, unreadable (cut short), or not ours
        return None
    return meta if meta.get("stamp", {}).get("schema") == _SCHEMA_ID else None


def _stamp(journal: Path, size: int) -> dict[str, Any]:
    """The journal's first `size` bytes as a Parquet copy records them: their count, a hash of the last of them,
    and the schema used."""
    with open(journal, "rb") as f:
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read(min(size, TAIL_BYTES))
    return {"bytes": size, "tail_sha256": hashlib.sha256(tail).hexdigest(), "schema": _SCHEMA_ID}


def _say(journal: Path, built: dict[str, Any]) -> None:
    """Warn of what the samples leave out of the journal (every load says it again, as the journal reader did)."""
    if built.get("torn_line"):
        warnings.warn(f"{journal}:{built['torn_line']}: skipped a torn last line (the run was cut off)", stacklevel=3)
    if built.get("unknown_keys"):
        warnings.warn(f"{journal}: keys that are no sample field are left out: {', '.join(built['unknown_keys'])}",
                      stacklevel=3)


def _kept(table: pa.Table) -> np.ndarray | None:
    """Which rows to keep: all but the `interrupted` samples of requests that a resume sent again (the last
    interrupted one of a request stays while it has no finished sample); None when every row stays."""
    interrupted = pc.fill_null(pc.equal(table.column("error_kind"), "interrupted"), False).to_numpy()
    if not interrupted.any():
        return None
    seq = table.column("seq").to_pandas(types_mapper=_PANDAS_TYPES.get).fillna(-1)  # a missing seq is one key
    again = pd.Series(False, index=seq.index)
    again[interrupted] = seq[interrupted].duplicated(keep="last")
    return ~(interrupted & (seq.isin(seq[~interrupted]) | again)).to_numpy()


# reading the journal: in pieces of whole lines; a torn last line (a killed run) left out, a broken line elsewhere
# named with its number

def read_records(journal: Path) -> list[dict[str, Any]]:
    """samples.jsonl as dicts, one per line; a torn last line is skipped with a warning."""
    _, whole, torn = _extent(journal)
    records = [r for offset, piece in _pieces(journal, whole) for r in _records(piece, offset, journal)]
    _say(journal, {"torn_line": torn})
    return records


def read_columns(journal: Path, columns: list[str]) -> pa.Table:
    """`columns` of every sample in the journal, read in pieces: memory for those columns only (a torn last line
    is left out with a warning)."""
    _, whole, torn = _extent(journal)
    table = pa.concat_tables([SAMPLE_SCHEMA.empty_table().select(columns),
                              *(t.select(columns) for t in _tables(journal, whole, set()))])
    _say(journal, {"torn_line": torn})
    return table


def _tables(journal: Path, size: int, unknown: set[str]) -> Iterator[pa.Table]:
    """The journal's first `size` bytes as Arrow tables of `SAMPLE_SCHEMA`; keys that are no field go to `unknown`."""
    for offset, piece in _pieces(journal, size):
        try:
            table = pajson.read_json(pa.BufferReader(piece), parse_options=_PARSE)
            extra = set(table.column_names) - set(SAMPLE_SCHEMA.names)
        except pa.ArrowInvalid:  # a broken line (named by the line reader) or a value to convert (as pandas does)
            frame = samples_frame(_records(piece, offset, journal))
            extra = set(frame.columns) - set(SAMPLE_SCHEMA.names)
            table = pa.Table.from_pandas(frame[SAMPLE_SCHEMA.names], schema=SAMPLE_SCHEMA, preserve_index=False)
        unknown |= extra
        yield table.select(SAMPLE_SCHEMA.names)


def _extent(journal: Path) -> tuple[int, int, int | None]:
    """The journal's size, how many of its bytes hold whole samples, and the number of a torn last line left out
    (else None)."""
    size = journal.stat().st_size
    with open(journal, "rb") as f:
        begins = _last_line_start(f, size)
        f.seek(begins)
        last = f.read(size - begins)
    try:
        if last.strip():
            json.loads(last)
        return size, size, None
    except ValueError:
        return size, begins, _line_number(journal, begins)


def _last_line_start(f: BinaryIO, size: int) -> int:
    """Where the journal's last line that holds anything begins (0 for an empty journal)."""
    end, seen = size, False
    while end > 0:
        start = max(0, end - TAIL_BYTES)
        f.seek(start)
        block = f.read(end - start)
        if not seen:
            block = block.rstrip()
            seen = bool(block)
        if seen and (cut := block.rfind(b"\n")) >= 0:
            return start + cut + 1
        end = start
    return 0


def _line_number(journal: Path, offset: int) -> int:
    """The number of the line that begins at byte `offset` (counted only to name a line that is wrong)."""
    count = 0
    with open(journal, "rb") as f:
        while offset > 0 and (block := f.read(min(PIECE_BYTES, offset))):
            count += block.count(b"\n")
            offset -= len(block)
    return count + 1


def _pieces(journal: Path, size: int) -> Iterator[tuple[int, memoryview]]:
    """The journal's first `size` bytes in pieces of whole lines (no copy but the read), each with its offset."""
    offset = 0
    with open(journal, "rb") as f:
        while offset < size:
            f.seek(offset)
            block = f.read(min(PIECE_BYTES, size - offset))
            while b"\n" not in block and offset + len(block) < size:  # a line longer than a piece
                block += f.read(min(PIECE_BYTES, size - offset - len(block)))
            if not block:  # cut short meanwhile
                return
            cut = len(block) if offset + len(block) >= size else block.rfind(b"\n") + 1
            yield offset, memoryview(block)[:cut]
            offset += cut


def _records(piece: memoryview, offset: int, journal: Path) -> Iterator[dict[str, Any]]:
    for index, line in enumerate(bytes(piece).split(b"\n")):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise CorruptRun(f"{journal}:{_line_number(journal, offset) + index}: not a JSON sample ({reason}); "
                             "the file is corrupt: mend or delete that line") from exc
