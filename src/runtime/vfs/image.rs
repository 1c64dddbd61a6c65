//! Building an [`Image`](super::Image)'s inode table from a list of files and links.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::node::{Body, Data, Dir, DirTable, Entries, Node};
use super::{Ino, NAME_MAX, PATH_MAX, ROOT, Timestamp};

/// The directory every dyno gets empty and writable, whatever the app tree holds at that name.
pub(super) const TMP: &str = "tmp";

/// The tree as it is being gathered, before inodes are numbered.
enum Pending {
    File(Arc<[u8]>),
    Link(Arc<str>),
    Dir(BTreeMap<String, Pending>),
}

/// Numbers the tree breadth-first (the root is [`ROOT`]); each directory lists its entries in name order.
pub(super) fn build(
    files: impl IntoIterator<Item = (String, Arc<[u8]>)>,
    links: impl IntoIterator<Item = (String, String)>,
    mtime: Timestamp,
) -> Vec<Node> {
    let mut root = BTreeMap::new();
    for (path, bytes) in files {
        insert(&mut root, &path, Pending::File(bytes));
    }
    for (path, target) in links {
        if !target.is_empty() && target.len() <= PATH_MAX && !target.contains('\0') {
            insert(&mut root, &path, Pending::Link(target.into()));
        }
    }
    root.insert(TMP.to_string(), Pending::Dir(BTreeMap::new()));

    // Iterative, so that neither numbering nor dropping the pending tree recurses once per level.
    let mut nodes = vec![dir_node(ROOT, DirTable::default(), mtime)];
    let mut queue = VecDeque::from([(ROOT, ROOT, root)]);
    while let Some((ino, parent, children)) = queue.pop_front() {
        let mut table = DirTable::default();
        for (name, child) in children {
            let child_ino = ROOT + nodes.len() as Ino;
            let body = match child {
                Pending::File(bytes) => Body::File(Data::Shared(bytes)),
                Pending::Link(target) => Body::Symlink(target),
                Pending::Dir(grandchildren) => {
                    queue.push_back((child_ino, ino, grandchildren));
                    // Filled in when the queue reaches it.
                    Body::Dir(Dir {
                        parent: ino,
                        entries: Entries::Shared(Arc::default()),
                    })
                }
            };
            nodes.push(Node::new(body, 1, mtime));
            table.insert(name.into(), child_ino);
        }
        if let Some(node) = nodes.get_mut((ino - ROOT) as usize) {
            *node = dir_node(parent, table, mtime);
        }
    }
    nodes
}

fn dir_node(parent: Ino, table: DirTable, mtime: Timestamp) -> Node {
    let body = Body::Dir(Dir {
        parent,
        entries: Entries::Shared(Arc::new(table)),
    });
    Node::new(body, 1, mtime)
}

/// Adds a file or link at `path`, creating the directories above it. Paths are trusted input, but malformed
/// ones are resolved rather than trusted blindly: `.` and empty components are skipped; paths with `..`, NUL,
/// over-long names or over [`PATH_MAX`] bytes, and paths under `tmp/`, are left out; a directory wins over a
/// file or link at the same path, and otherwise the later entry wins.
fn insert(root: &mut BTreeMap<String, Pending>, path: &str, leaf: Pending) {
    if path.len() > PATH_MAX || path.contains('\0') {
        return;
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.iter().any(|c| *c == ".." || c.len() > NAME_MAX) || parts.first() == Some(&TMP) {
        return;
    }
    let Some((last, dirs)) = parts.split_last() else {
        return;
    };
    let mut map = root;
    for dir in dirs {
        let entry = map
            .entry((*dir).to_string())
            .or_insert_with(|| Pending::Dir(BTreeMap::new()));
        if !matches!(entry, Pending::Dir(_)) {
            *entry = Pending::Dir(BTreeMap::new());
        }
        let Pending::Dir(next) = entry else {
            return;
        };
        map = next;
    }
    if !matches!(map.get(*last), Some(Pending::Dir(_))) {
        map.insert((*last).to_string(), leaf);
    }
}
