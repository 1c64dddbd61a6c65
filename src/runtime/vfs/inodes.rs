//! How [`Fs`] keeps its nodes: looking them up, creating and freeing them, and charging their bytes to the
//! dyno's quota.

#[allow(unused_imports)]
use super::*;

impl Fs {
    /// Bytes this dyno's layer holds (its share of the quota).
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.charged
    }

    // ---- inodes

    /// A live inode, from the layer or else the image.
    pub(super) fn node(&self, ino: Ino) -> FsResult<&Node> {
        match self.layer.get(&ino) {
            Some(shadow) => shadow.as_ref().ok_or(FsError::NotFound),
            None => self.image.node(ino).ok_or(FsError::NotFound),
        }
    }

    /// A live inode to change, cloned into the layer first if it is the image's. This charges nothing:
    /// callers pay with [`Fs::prepare`] first.
    pub(super) fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        match self.layer.entry(ino) {
            hash_map::Entry::Occupied(shadow) => {
                shadow.into_mut().as_mut().ok_or(FsError::NotFound)
            }
            hash_map::Entry::Vacant(slot) => {
                let node = self.image.node(ino).ok_or(FsError::NotFound)?.clone();
                Ok(slot.insert(None).insert(node))
            }
        }
    }

    pub(super) fn dir(&self, ino: Ino) -> FsResult<&node::Dir> {
        match &self.node(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            _ => Err(FsError::NotDir),
        }
    }

    /// A directory that can take new entries (`NotFound` once it is removed).
    pub(super) fn live_dir(&self, ino: Ino) -> FsResult<()> {
        self.dir(ino)?;
        if self.node(ino)?.nlink == 0 {
            return Err(FsError::NotFound);
        }
        Ok(())
    }

    /// A directory's own entry table, copied into the layer first if it is the image's; charges nothing.
    pub(super) fn table_mut(&mut self, ino: Ino) -> FsResult<&mut DirTable> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(dir) => Ok(dir.entries.to_mut()),
            _ => Err(FsError::NotDir),
        }
    }

    /// The inode a walk found, checked against a trailing `/`.
    pub(super) fn existing(&self, walked: &Walked<'_>) -> FsResult<Ino> {
        let ino = walked.ino.ok_or(FsError::NotFound)?;
        if walked.want_dir && self.node(ino)?.kind() != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(ino)
    }

    /// Adds a new inode as `name` in `parent`. `extra`: what `body` holds beyond its inode charge.
    pub(super) fn create(
        &mut self,
        parent: Ino,
        name: Arc<str>,
        body: Body,
        extra: u64,
    ) -> FsResult<Ino> {
        self.live_dir(parent)?;
        self.prepare(&[], &[parent], INODE_COST + entry_cost(&name) + extra)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = now();
        self.layer.insert(ino, Some(Node::new(body, 1, now)));
        self.table_mut(parent)?.insert(name, ino);
        self.node_mut(parent)?.modified(now);
        Ok(ino)
    }

    /// Removes the entry `name` (naming `ino`) from `parent`.
    pub(super) fn remove_entry(&mut self, parent: Ino, name: &str, ino: Ino) -> FsResult<()> {
        // `ino` enters the layer too: to count its link, or as the mark that the image's inode is gone.
        self.prepare(&[ino], &[parent], 0)?;
        if self.table_mut(parent)?.remove(name).is_some() {
            self.uncharge(entry_cost(name));
        }
        let now = now();
        self.node_mut(parent)?.modified(now);
        self.drop_link(ino, now)
    }

    /// One entry naming `ino` is gone (all of them, for a directory); free it if nothing holds it.
    pub(super) fn drop_link(&mut self, ino: Ino, now: Timestamp) -> FsResult<()> {
        let node = self.node_mut(ino)?;
        node.nlink = match node.body {
            Body::Dir(_) => 0,
            _ => node.nlink.saturating_sub(1),
        };
        node.ctime = now;
        self.free_if_unused(ino);
        Ok(())
    }

    /// Frees `ino` if no entry names it and no descriptor holds it, giving its bytes back to the quota. An
    /// image inode leaves a tombstone (still charged as an inode) so that its number stays dead.
    pub(super) fn free_if_unused(&mut self, ino: Ino) {
        match self.node(ino) {
            Ok(node) if node.nlink == 0 && !self.opens.contains_key(&ino) => {}
            _ => return,
        }
        let freed = if self.image.holds(ino) {
            self.layer
                .insert(ino, None)
                .flatten()
                .map(|node| node.owned_bytes())
        } else {
            self.layer.remove(&ino).flatten().map(|node| {
                let target = match &node.body {
                    Body::Symlink(target) => target.len() as u64,
                    _ => 0,
                };
                INODE_COST + node.owned_bytes() + target
            })
        };
        self.uncharge(freed.unwrap_or(0));
    }

    // ---- quota

    /// Takes from the quota, before anything changes, all that a change needs: `nodes` and `dirs` brought into
    /// the layer, `dirs`' entry tables copied, and `extra` bytes of new contents. After it the change cannot
    /// fail for want of space; if it fails, nothing has changed.
    pub(super) fn prepare(&mut self, nodes: &[Ino], dirs: &[Ino], extra: u64) -> FsResult<()> {
        let mut cost = extra;
        let all = || nodes.iter().chain(dirs).copied();
        for (i, ino) in all().enumerate() {
            if !all().take(i).any(|seen| seen == ino) && !self.layer.contains_key(&ino) {
                cost += INODE_COST;
            }
        }
        for (i, &dir) in dirs.iter().enumerate() {
            if !dirs[..i].contains(&dir) && self.dir(dir)?.entries.is_shared() {
                cost += self.dir(dir)?.entries.table().cost();
            }
        }
        self.charge(cost)?;
        for ino in all() {
            self.node_mut(ino)?;
        }
        for &dir in dirs {
            self.table_mut(dir)?;
        }
        Ok(())
    }

    /// A file size the quota could ever hold, as a `usize` (else `TooBig`).
    pub(super) fn fits(&self, size: u64) -> FsResult<usize> {
        if size > self.quota.limit() {
            return Err(FsError::TooBig);
        }
        usize::try_from(size).map_err(|_| FsError::TooBig)
    }

    pub(super) fn charge(&mut self, bytes: u64) -> FsResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        if !self.quota.try_take(bytes) {
            return Err(FsError::NoSpace);
        }
        self.charged += bytes;
        Ok(())
    }

    pub(super) fn uncharge(&mut self, bytes: u64) {
        let bytes = bytes.min(self.charged);
        self.charged -= bytes;
        self.quota.give_back(bytes);
    }
}
