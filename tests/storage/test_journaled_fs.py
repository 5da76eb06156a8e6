"""JournaledFileSystem: a kill keeps everything, a played power loss keeps exactly what
was fsynced, on real files (what the campaign's `crash` nemesis does to a broker)."""

from __future__ import annotations

import os

from impl.runtime.fs import JournaledFileSystem, lose_unsynced, read_fsync_journal
from impl.storage.batch import Record, decode_records
from impl.storage.log import PartitionLog
from model.config import Config


def _records(start: int, count: int) -> list[Record]:
    return [Record(b"%08d" % (start + i)) for i in range(count)]


def _values(log: PartitionLog) -> list[bytes | None]:
    return [r.value for _, batch in log.batches() for _, r in decode_records(batch)]


def test_power_loss_cuts_files_back_to_their_last_fsync(tmp_path):
    journal = str(tmp_path / "fsync.jsonl")
    fs = JournaledFileSystem(journal)
    fs.mkdir(str(tmp_path / "d"))
    kept, fresh = str(tmp_path / "d" / "kept"), str(tmp_path / "d" / "fresh")
    (tmp_path / "d" / "old").write_bytes(b"before the journal")
    fs.append(kept, b"synced")
    fs.fsync(kept)
    fs.append(kept, b" and not")
    fs.append(fresh, b"never synced")
    fs.append(str(tmp_path / "d" / "old"), b" and after")
    fs.rename(kept, kept + ".moved")
    assert read_fsync_journal(journal)[kept + ".moved"] == len(b"synced")
    # A restart (a second instance on the same journal) keeps what the first one knew.
    assert JournaledFileSystem(journal)._durable == fs._durable
    loss = lose_unsynced(journal)
    assert (tmp_path / "d" / "kept.moved").read_bytes() == b"synced"
    assert (tmp_path / "d" / "fresh").read_bytes() == b""
    assert (tmp_path / "d" / "old").read_bytes() == b"before the journal"
    assert loss.files == 3 and loss.lost_bytes == len(b" and not" + b"never synced" + b" and after")
    assert not os.path.exists(journal)
    assert lose_unsynced(journal).lost_bytes == 0


def test_partition_log_keeps_its_flushed_prefix_after_a_power_loss(tmp_path):
    journal, directory = str(tmp_path / "fsync.jsonl"), str(tmp_path / "t-0")
    fs = JournaledFileSystem(journal)
    log = PartitionLog.open(fs, directory, Config())
    log.append_as_leader(_records(0, 5), leader_epoch=0)
    log.flush()
    log.append_as_leader(_records(5, 5), leader_epoch=0)
    segment = os.path.join(directory, "00000000000000000000.log")
    written_bytes = os.path.getsize(segment)
    loss = lose_unsynced(journal)
    assert 0 < os.path.getsize(segment) < written_bytes
    assert loss.lost_bytes >= written_bytes - os.path.getsize(segment)
    reopened = PartitionLog.open(JournaledFileSystem(journal), directory, Config(), 5)
    assert reopened.log_end_offset == 5
    assert _values(reopened) == [r.value for r in _records(0, 5)]


def test_journal_compaction_keeps_the_durable_sizes(tmp_path, monkeypatch):
    journal = str(tmp_path / "fsync.jsonl")
    monkeypatch.setattr(JournaledFileSystem, "JOURNAL_RECORDS_MAX", 5)
    fs = JournaledFileSystem(journal)
    path = str(tmp_path / "f")
    for round_ in range(20):
        fs.append(path, b"x" * 10)
        if round_ % 2 == 0:
            fs.fsync(path)
    assert len((tmp_path / "fsync.jsonl").read_text().splitlines()) <= 6
    assert read_fsync_journal(journal) == {path: 190}
