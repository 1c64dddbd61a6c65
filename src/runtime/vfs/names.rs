//! The namespace changes of [`Fs`]: directories made and removed, files unlinked, renamed and linked, symbolic
//! links made and read, directories listed.

#[allow(unused_imports)]
use super::*;

impl Fs {
    /// Creates a directory (`Exists` if the path names anything, a dangling symbolic link included).
    pub fn mkdir(&mut self, dir: Ino, path: &str) -> FsResult<Ino> {
        let walked = self.walk(dir, path, false)?;
        let (Last::Name(name), None) = (walked.last, walked.ino) else {
            return Err(FsError::Exists);
        };
        let (parent, name) = (walked.parent, Arc::from(name));
        let body = Body::Dir(node::Dir {
            parent,
            entries: Entries::Owned(Box::default()),
        });
        self.create(parent, name, body, 0)
    }

    /// Removes a non-directory entry (`IsDir` for a directory).
    pub fn unlink(&mut self, dir: Ino, path: &str) -> FsResult<()> {
        let walked = self.walk(dir, path, false)?;
        let Last::Name(name) = walked.last else {
            // `.`, `..` and `/` are directories.
            return Err(FsError::IsDir);
        };
        let ino = walked.ino.ok_or(FsError::NotFound)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if walked.want_dir {
            return Err(FsError::NotDir);
        }
        let (parent, name) = (walked.parent, name.to_owned());
        self.remove_entry(parent, &name, ino)
    }

    /// Removes an empty directory (`NotDir` for anything else, `NotEmpty`, `NotPermitted` for `/`).
    ///
    /// A last component `.` or `..` is `Invalid`. A removed directory that is still open stays, empty, until
    /// released; nothing can be created in it.
    pub fn rmdir(&mut self, dir: Ino, path: &str) -> FsResult<()> {
        let walked = self.walk(dir, path, false)?;
        let name = match walked.last {
            Last::Root => return Err(FsError::NotPermitted),
            Last::Dot | Last::DotDot => return Err(FsError::Invalid),
            Last::Name(name) => name,
        };
        let ino = walked.ino.ok_or(FsError::NotFound)?;
        if !self.dir(ino)?.entries.table().is_empty() {
            return Err(FsError::NotEmpty);
        }
        let (parent, name) = (walked.parent, name.to_owned());
        self.remove_entry(parent, &name, ino)
    }

    /// POSIX rename: replaces a file, or an empty directory with a directory; refuses moving a directory into
    /// itself (`Invalid`).
    ///
    /// Renaming `/` (or onto it) is `NotPermitted`, a last component `.` or `..` on either side `Invalid`;
    /// renaming onto another name of the same inode does nothing. A replaced entry keeps its place in its
    /// directory's listing order.
    pub fn rename(&mut self, from_dir: Ino, from: &str, to_dir: Ino, to: &str) -> FsResult<()> {
        let src = self.walk(from_dir, from, false)?;
        let src_name = match src.last {
            Last::Root => return Err(FsError::NotPermitted),
            Last::Dot | Last::DotDot => return Err(FsError::Invalid),
            Last::Name(name) => name,
        };
        let ino = src.ino.ok_or(FsError::NotFound)?;
        let is_dir = self.node(ino)?.kind() == Kind::Dir;
        if src.want_dir && !is_dir {
            return Err(FsError::NotDir);
        }
        let dst = self.walk(to_dir, to, false)?;
        let dst_name = match dst.last {
            Last::Root => return Err(FsError::NotPermitted),
            Last::Dot | Last::DotDot => return Err(FsError::Invalid),
            Last::Name(name) => name,
        };
        if dst.want_dir && !is_dir {
            // `missing/`: there is no such directory (as wasmtime's host says); `file/`: not a directory.
            return Err(if dst.ino.is_none() {
                FsError::NotFound
            } else {
                FsError::NotDir
            });
        }
        if let Some(old) = dst.ino {
            if old == ino {
                return Ok(());
            }
            match (is_dir, &self.node(old)?.body) {
                (true, Body::Dir(dir)) if !dir.entries.table().is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                (true, Body::Dir(_)) | (false, Body::File(_) | Body::Symlink(_)) => {}
                (true, _) => return Err(FsError::NotDir),
                (false, Body::Dir(_)) => return Err(FsError::IsDir),
            }
        }
        let (src_parent, dst_parent) = (src.parent, dst.parent);
        self.live_dir(dst_parent)?;
        let moved_dir = is_dir && src_parent != dst_parent;
        if moved_dir {
            // The destination must not be the directory itself or below it.
            let mut up = dst_parent;
            loop {
                if up == ino {
                    return Err(FsError::Invalid);
                }
                if up == ROOT {
                    break;
                }
                up = self.dir(up)?.parent;
            }
        }
        let replaced = dst.ino;
        let (src_name, dst_name) = (src_name.to_owned(), Arc::<str>::from(dst_name));

        let mut nodes = Vec::with_capacity(2);
        nodes.extend(moved_dir.then_some(ino));
        nodes.extend(replaced);
        let new_entry = if replaced.is_none() {
            entry_cost(&dst_name)
        } else {
            0
        };
        self.prepare(&nodes, &[src_parent, dst_parent], new_entry)?;
        let now = now();
        if self.table_mut(src_parent)?.remove(&src_name).is_some() {
            self.uncharge(entry_cost(&src_name));
        }
        self.table_mut(dst_parent)?.insert(dst_name, ino);
        if let Some(old) = replaced {
            self.drop_link(old, now)?;
        }
        if moved_dir {
            let node = self.node_mut(ino)?;
            if let Body::Dir(dir) = &mut node.body {
                dir.parent = dst_parent;
            }
            node.ctime = now;
        }
        self.node_mut(src_parent)?.modified(now);
        self.node_mut(dst_parent)?.modified(now);
        Ok(())
    }

    /// Hard link of a non-directory (`NotPermitted` for directories). `follow`: follow a symlink at `from`.
    pub fn link(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
        follow: bool,
    ) -> FsResult<()> {
        let src = self.walk(from_dir, from, follow)?;
        let ino = src.ino.ok_or(FsError::NotFound)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        if src.want_dir {
            return Err(FsError::NotDir);
        }
        let dst = self.walk(to_dir, to, false)?;
        let (Last::Name(name), None) = (dst.last, dst.ino) else {
            return Err(FsError::Exists);
        };
        // `missing/` names a directory that is not there.
        if dst.want_dir {
            return Err(FsError::NotFound);
        }
        let (parent, name) = (dst.parent, Arc::<str>::from(name));
        self.live_dir(parent)?;
        self.prepare(&[ino], &[parent], entry_cost(&name))?;
        let now = now();
        self.table_mut(parent)?.insert(name, ino);
        self.node_mut(parent)?.modified(now);
        let node = self.node_mut(ino)?;
        node.nlink += 1;
        node.ctime = now;
        Ok(())
    }

    /// Creates a symbolic link at `path` to `target`, which is stored as given (an empty target is
    /// `NotFound`, as on Linux).
    pub fn symlink(&mut self, target: &str, dir: Ino, path: &str) -> FsResult<()> {
        walk::check_path(target)?;
        let walked = self.walk(dir, path, false)?;
        let (Last::Name(name), None) = (walked.last, walked.ino) else {
            return Err(FsError::Exists);
        };
        // `missing/` names a directory that is not there.
        if walked.want_dir {
            return Err(FsError::NotFound);
        }
        let (parent, name) = (walked.parent, Arc::from(name));
        self.create(
            parent,
            name,
            Body::Symlink(target.into()),
            target.len() as u64,
        )?;
        Ok(())
    }

    /// The target of the symbolic link at `path` (`Invalid` if it is not one).
    pub fn readlink(&self, dir: Ino, path: &str) -> FsResult<String> {
        let walked = self.walk(dir, path, path.ends_with('/'))?;
        match &self.node(self.existing(&walked)?)?.body {
            Body::Symlink(target) => Ok(target.to_string()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Entries of a directory, `.` and `..` first, then in a stable order, starting after `after` (0: from the
    /// start); at most `max` entries.
    ///
    /// `.` and `..` have cookies 1 and 2; the others are listed in the order they were added to the directory
    /// (the image's in name order), each with a cookie that never changes while it stays, so that listing on
    /// after an entry that has since been removed still works. An entry added during a listing shows up at
    /// its end.
    pub fn read_dir(&self, dir: Ino, after: u64, max: usize) -> FsResult<Vec<DirEntry>> {
        const DOT: u64 = 1;
        const DOTDOT: u64 = 2;
        /// The cookie of the entry with sequence number 0.
        const FIRST: u64 = 3;

        let node = self.node(dir)?;
        let Body::Dir(this) = &node.body else {
            return Err(FsError::NotDir);
        };
        let table = this.entries.table();
        let parent = if node.nlink == 0 { dir } else { this.parent };
        let dots = [(DOT, ".", dir), (DOTDOT, "..", parent)].into_iter();
        let entries = table
            .entries_from(after.saturating_sub(FIRST - 1))
            .map(|(seq, name, ino)| (seq + FIRST, name, ino));
        Ok(dots
            .chain(entries)
            .filter(|(cookie, _, _)| *cookie > after)
            .filter_map(|(cookie, name, ino)| {
                Some(DirEntry {
                    cookie,
                    name: name.to_string(),
                    ino,
                    kind: self.node(ino).ok()?.kind(),
                })
            })
            .take(max)
            .collect())
    }
}
