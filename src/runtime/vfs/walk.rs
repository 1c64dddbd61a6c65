//! Path resolution, confined to the dyno's root.

use super::node::Body;
use super::{Fs, FsError, FsResult, Ino, NAME_MAX, PATH_MAX, ROOT, SYMLINK_MAX};

/// The last component of a resolved path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Last<'a> {
    /// The path had no component at all (`/`, or a followed link to `/`): it names the root.
    Root,
    Dot,
    DotDot,
    Name(&'a str),
}

/// Where a path led.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walked<'a> {
    /// The directory the last component was resolved in.
    pub(super) parent: Ino,
    pub(super) last: Last<'a>,
    /// What the path names; `None` when the last component is a name `parent` does not hold.
    pub(super) ino: Option<Ino>,
    /// The path (or a followed link's target) ended in `/`: it must name a directory.
    pub(super) want_dir: bool,
}

/// Checks a path (or a link target) before it is resolved or stored.
pub(super) fn check_path(path: &str) -> FsResult<()> {
    if path.is_empty() {
        Err(FsError::NotFound)
    } else if path.len() > PATH_MAX {
        Err(FsError::NameTooLong)
    } else if path.contains('\0') {
        Err(FsError::IllegalBytes)
    } else {
        Ok(())
    }
}

impl Fs {
    /// Resolves `path` from `dir`. Every symbolic link but the last component's is followed; that one is
    /// followed if `follow`. `..` never climbs above [`ROOT`], and absolute paths and link targets start there.
    pub(super) fn walk<'a>(
        &'a self,
        dir: Ino,
        path: &'a str,
        follow: bool,
    ) -> FsResult<Walked<'a>> {
        check_path(path)?;
        let mut cur = if path.starts_with('/') {
            ROOT
        } else {
            self.dir(dir)?;
            dir
        };
        // What is left of the path being read, and, below it, what is left of the paths whose symbolic
        // links are being followed (each holding at least one more component).
        let mut rest: &'a str = path;
        let mut suspended: Vec<&'a str> = Vec::new();
        let mut links = 0;
        let mut want_dir = false;
        loop {
            let trimmed = rest.trim_start_matches('/');
            if trimmed.is_empty() {
                match suspended.pop() {
                    Some(outer) => {
                        rest = outer;
                        continue;
                    }
                    None => break,
                }
            }
            let (name, after) = trimmed.split_at(trimmed.find('/').unwrap_or(trimmed.len()));
            rest = after;
            if name.len() > NAME_MAX {
                return Err(FsError::NameTooLong);
            }
            let more_in_rest = after.bytes().any(|b| b != b'/');
            let last = !more_in_rest && suspended.is_empty();
            want_dir |= last && !after.is_empty();
            let found = move |ino, what| {
                Ok(Walked {
                    parent: cur,
                    last: what,
                    ino,
                    want_dir,
                })
            };
            match name {
                "." if last => return found(Some(cur), Last::Dot),
                "." => {}
                ".." => {
                    let up = self.parent_of(cur)?;
                    if last {
                        return found(Some(up), Last::DotDot);
                    }
                    cur = up;
                }
                _ => {
                    let Some(child) = self.dir(cur)?.entries.table().get(name) else {
                        return if last {
                            found(None, Last::Name(name))
                        } else {
                            Err(FsError::NotFound)
                        };
                    };
                    match &self.node(child)?.body {
                        Body::Symlink(target) if follow || !last => {
                            links += 1;
                            if links > SYMLINK_MAX {
                                return Err(FsError::Loop);
                            }
                            if more_in_rest {
                                suspended.push(rest);
                            }
                            rest = target;
                            if target.starts_with('/') {
                                cur = ROOT;
                            }
                        }
                        Body::Dir(_) if !last => cur = child,
                        _ if last => return found(Some(child), Last::Name(name)),
                        _ => return Err(FsError::NotDir),
                    }
                }
            }
        }
        // Only a path of slashes (or a link to one) gets here: it names the root.
        Ok(Walked {
            parent: cur,
            last: Last::Root,
            ino: Some(cur),
            want_dir,
        })
    }

    /// The directory above `dir` (`NotFound` if `dir` was removed: its place in the tree is gone).
    fn parent_of(&self, dir: Ino) -> FsResult<Ino> {
        let parent = self.dir(dir)?.parent;
        if self.node(dir)?.nlink == 0 {
            return Err(FsError::NotFound);
        }
        Ok(parent)
    }
}
