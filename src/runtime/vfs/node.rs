//! Inodes and directory tables: the same types make up the shared image and each dyno's layer, so that
//! copying a node up into a layer is a clone of a few `Arc`s, never of file bytes or directory tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::chunks::Chunks;
use super::{Ino, Kind, Timestamp};

/// Quota charge of one inode held in a dyno's layer (the node and its map slot), so that a guest creating
/// millions of empty files runs into its quota like one writing bytes.
pub(super) const INODE_COST: u64 = 128;
/// Quota charge of one directory entry in a layer, on top of its name's bytes.
pub(super) const ENTRY_COST: u64 = 64;

/// Quota charge of a directory entry called `name`.
pub(super) fn entry_cost(name: &str) -> u64 {
    ENTRY_COST + name.len() as u64
}

/// The current time in nanoseconds since the epoch (0 before it, saturating far after it).
pub(super) fn now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One inode.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) body: Body,
    /// Directory entries naming this node: for a directory 1, or 0 once it is removed.
    pub(super) nlink: u64,
    pub(super) atime: Timestamp,
    pub(super) mtime: Timestamp,
    pub(super) ctime: Timestamp,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
    File(Data),
    Dir(Dir),
    /// The target, as given (symbolic links never change, so the image's are shared as they are).
    Symlink(Arc<str>),
}

#[derive(Debug, Clone)]
pub(super) struct Dir {
    /// The directory holding this one (the root is its own parent), for `..`.
    pub(super) parent: Ino,
    pub(super) entries: Entries,
}

/// Bytes of a regular file: the image's, shared by every dyno, until this dyno first changes them.
#[derive(Debug, Clone)]
pub(super) enum Data {
    Shared(Arc<[u8]>),
    Owned(Chunks),
}

/// Entries of a directory: the image's table until this dyno first changes the directory.
#[derive(Debug, Clone)]
pub(super) enum Entries {
    Shared(Arc<DirTable>),
    Owned(Box<DirTable>),
}

impl Node {
    pub(super) fn new(body: Body, nlink: u64, time: Timestamp) -> Node {
        Node {
            body,
            nlink,
            atime: time,
            mtime: time,
            ctime: time,
        }
    }

    pub(super) fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
        }
    }

    /// Bytes for a file, the target's length for a link, the number of entries for a directory.
    pub(super) fn size(&self) -> u64 {
        match &self.body {
            Body::File(data) => data.len() as u64,
            Body::Dir(dir) => dir.entries.table().len() as u64,
            Body::Symlink(target) => target.len() as u64,
        }
    }

    /// Contents changed: mtime and ctime.
    pub(super) fn modified(&mut self, now: Timestamp) {
        self.mtime = now;
        self.ctime = now;
    }

    /// Bytes this node holds in a layer beyond its inode charge: copied-up or written file bytes and owned
    /// directory tables. (A new symbolic link's target is charged by the caller, who knows it is new.)
    pub(super) fn owned_bytes(&self) -> u64 {
        match &self.body {
            Body::File(Data::Owned(chunks)) => chunks.len() as u64,
            Body::Dir(Dir {
                entries: Entries::Owned(table),
                ..
            }) => table.cost(),
            _ => 0,
        }
    }
}

impl Data {
    pub(super) fn len(&self) -> usize {
        match self {
            Data::Shared(bytes) => bytes.len(),
            Data::Owned(chunks) => chunks.len(),
        }
    }

    /// Copies bytes from `offset` into `buf`; returns how many (0 at or past the end).
    pub(super) fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        match self {
            Data::Shared(bytes) => {
                let available = bytes.get(offset..).unwrap_or_default();
                let n = available.len().min(buf.len());
                buf[..n].copy_from_slice(&available[..n]);
                n
            }
            Data::Owned(chunks) => chunks.read(offset, buf),
        }
    }

    /// The bytes as this layer's own, copying the shared ones (the first `keep` of them) the first time.
    pub(super) fn to_mut(&mut self, keep: usize) -> &mut Chunks {
        if let Data::Shared(shared) = self {
            *self = Data::Owned(Chunks::from_slice(&shared[..keep.min(shared.len())]));
        }
        match self {
            Data::Owned(owned) => owned,
            Data::Shared(_) => unreachable!("just made owned"),
        }
    }
}

impl Entries {
    pub(super) fn table(&self) -> &DirTable {
        match self {
            Entries::Shared(table) => table,
            Entries::Owned(table) => table,
        }
    }

    pub(super) fn is_shared(&self) -> bool {
        matches!(self, Entries::Shared(_))
    }

    /// The table as this layer's own, copying the image's (names are shared `Arc`s) the first time.
    pub(super) fn to_mut(&mut self) -> &mut DirTable {
        if let Entries::Shared(shared) = self {
            *self = Entries::Owned(Box::new(DirTable::clone(shared)));
        }
        match self {
            Entries::Owned(owned) => owned,
            Entries::Shared(_) => unreachable!("just made owned"),
        }
    }
}

/// A directory's entries: by name for lookups, and by insertion sequence for listing, so that a listing's
/// position (its cookie) stays meaningful while entries come and go.
#[derive(Debug, Clone, Default)]
pub(super) struct DirTable {
    by_name: HashMap<Arc<str>, Slot>,
    by_seq: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    /// Sum of the names' lengths, for [`DirTable::cost`].
    name_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ino: Ino,
    seq: u64,
}

impl DirTable {
    pub(super) fn get(&self, name: &str) -> Option<Ino> {
        self.by_name.get(name).map(|slot| slot.ino)
    }

    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Quota charge of holding this table in a layer.
    pub(super) fn cost(&self) -> u64 {
        self.len() as u64 * ENTRY_COST + self.name_bytes
    }

    /// Adds `name` at the end of the listing order, or points an existing entry at `ino` where it stands.
    pub(super) fn insert(&mut self, name: Arc<str>, ino: Ino) {
        if let Some(slot) = self.by_name.get_mut(&name) {
            slot.ino = ino;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.name_bytes += name.len() as u64;
        self.by_seq.insert(seq, name.clone());
        self.by_name.insert(name, Slot { ino, seq });
    }

    /// Removes `name`; returns the inode it named.
    pub(super) fn remove(&mut self, name: &str) -> Option<Ino> {
        let slot = self.by_name.remove(name)?;
        self.by_seq.remove(&slot.seq);
        self.name_bytes -= name.len() as u64;
        Some(slot.ino)
    }

    /// Entries with sequence numbers from `seq` on, in insertion order: (sequence, name, inode).
    pub(super) fn entries_from(&self, seq: u64) -> impl Iterator<Item = (u64, &str, Ino)> {
        self.by_seq.range(seq..).filter_map(|(&seq, name)| {
            let slot = self.by_name.get(name)?;
            Some((seq, &**name, slot.ino))
        })
    }
}
