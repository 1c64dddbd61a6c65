//! The `wasi_snapshot_preview1` ABI: error numbers, flags, type tags, struct layouts, and checked access to a
//! guest's linear memory. Values are those of the preview-1 witx (`wasi_snapshot_preview1.witx`).

use super::super::vfs::{FsError, Kind};

/// A preview-1 `errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

#[rustfmt::skip]
impl Errno {
    pub const SUCCESS: Errno = Errno(0);
    pub const TOOBIG: Errno = Errno(1);
    pub const AGAIN: Errno = Errno(6);
    pub const BADF: Errno = Errno(8);
    pub const EXIST: Errno = Errno(20);
    pub const FAULT: Errno = Errno(21);
    pub const FBIG: Errno = Errno(22);
    pub const ILSEQ: Errno = Errno(25);
    pub const INVAL: Errno = Errno(28);
    pub const IO: Errno = Errno(29);
    pub const ISDIR: Errno = Errno(31);
    pub const LOOP: Errno = Errno(32);
    pub const MFILE: Errno = Errno(33);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOSPC: Errno = Errno(51);
    pub const NOSYS: Errno = Errno(52);
    pub const NOTCONN: Errno = Errno(53);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTEMPTY: Errno = Errno(55);
    pub const NOTSOCK: Errno = Errno(57);
    pub const NOTSUP: Errno = Errno(58);
    pub const PERM: Errno = Errno(63);
    pub const PIPE: Errno = Errno(64);
    pub const SPIPE: Errno = Errno(70);
    pub const NOTCAPABLE: Errno = Errno(76);
}

impl From<FsError> for Errno {
    fn from(err: FsError) -> Errno {
        match err {
            FsError::NotFound => Errno::NOENT,
            FsError::Exists => Errno::EXIST,
            FsError::NotDir => Errno::NOTDIR,
            FsError::IsDir => Errno::ISDIR,
            FsError::NotEmpty => Errno::NOTEMPTY,
            FsError::Invalid => Errno::INVAL,
            FsError::NoSpace => Errno::NOSPC,
            FsError::Loop => Errno::LOOP,
            FsError::NameTooLong => Errno::NAMETOOLONG,
            FsError::IllegalBytes => Errno::ILSEQ,
            FsError::NotPermitted => Errno::PERM,
            FsError::TooBig => Errno::FBIG,
        }
    }
}

pub type Result<T> = std::result::Result<T, Errno>;

// filetype
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

pub fn filetype(kind: Kind) -> u8 {
    match kind {
        Kind::File => FILETYPE_REGULAR_FILE,
        Kind::Dir => FILETYPE_DIRECTORY,
        Kind::Symlink => FILETYPE_SYMBOLIC_LINK,
    }
}

// oflags
pub const O_CREAT: u16 = 1;
pub const O_DIRECTORY: u16 = 2;
pub const O_EXCL: u16 = 4;
pub const O_TRUNC: u16 = 8;

// fdflags
pub const FDFLAGS_APPEND: u16 = 1;
pub const FDFLAGS_DSYNC: u16 = 2;
pub const FDFLAGS_NONBLOCK: u16 = 4;
pub const FDFLAGS_RSYNC: u16 = 8;
pub const FDFLAGS_SYNC: u16 = 16;

// lookupflags
pub const LOOKUP_SYMLINK_FOLLOW: u32 = 1;

// fstflags
pub const FST_ATIM: u16 = 1;
pub const FST_ATIM_NOW: u16 = 2;
pub const FST_MTIM: u16 = 4;
pub const FST_MTIM_NOW: u16 = 8;

// whence
pub const WHENCE_SET: u8 = 0;
pub const WHENCE_CUR: u8 = 1;
pub const WHENCE_END: u8 = 2;

// clockid
pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_PROCESS_CPUTIME: u32 = 2;
pub const CLOCK_THREAD_CPUTIME: u32 = 3;

// eventtype, subclockflags, eventrwflags (poll_oneoff)
pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;
pub const SUBCLOCK_ABSTIME: u16 = 1;
pub const EVENTRW_HANGUP: u16 = 1;

// riflags, roflags, sdflags (sockets)
pub const RECV_PEEK: u32 = 1;
pub const RECV_WAITALL: u32 = 2;
pub const SHUT_RD: u32 = 1;
pub const SHUT_WR: u32 = 2;

/// Rights (a `u64` bit set).
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    /// Every right of a directory: the `path_*` rights and the descriptor rights that make sense for one.
    pub const DIRECTORY: u64 = ((1 << 30) - 1)
        & !(FD_READ
            | FD_WRITE
            | FD_SEEK
            | FD_TELL
            | FD_ALLOCATE
            | FD_FILESTAT_SET_SIZE
            | POLL_FD_READWRITE
            | SOCK_SHUTDOWN
            | SOCK_ACCEPT);
    /// Every right of a regular file.
    pub const FILE: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;
    /// A standard stream.
    pub const STREAM: u64 =
        FD_READ | FD_WRITE | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE;
    /// A connected socket.
    pub const SOCKET: u64 = STREAM | SOCK_SHUTDOWN;
    /// A listening socket.
    pub const LISTENER: u64 =
        FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE | SOCK_ACCEPT;
}

/// A guest's linear memory, with every access bounds-checked (`EFAULT` when out of range).
pub struct Mem<'a>(pub &'a mut [u8]);

impl Mem<'_> {
    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8]> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::FAULT)?;
        self.0.get(start..end).ok_or(Errno::FAULT)
    }

    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8]> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::FAULT)?;
        self.0.get_mut(start..end).ok_or(Errno::FAULT)
    }

    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        self.slice_mut(ptr, bytes.len() as u32)?
            .copy_from_slice(bytes);
        Ok(())
    }
    pub fn put_u8(&mut self, ptr: u32, v: u8) -> Result<()> {
        self.write(ptr, &[v])
    }
    pub fn put_u32(&mut self, ptr: u32, v: u32) -> Result<()> {
        self.write(ptr, &v.to_le_bytes())
    }
    pub fn put_u64(&mut self, ptr: u32, v: u64) -> Result<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// A path argument: UTF-8 (`EILSEQ` otherwise).
    pub fn str(&self, ptr: u32, len: u32) -> Result<&str> {
        std::str::from_utf8(self.slice(ptr, len)?).map_err(|_| Errno::ILSEQ)
    }

    /// An `iovec`/`ciovec` array: (buf, len) pairs, each checked against the memory. At most [`IOV_MAX`]
    /// entries are taken (the rest make the transfer short, as POSIX allows), so the host never holds more
    /// than a small, fixed list whatever count the guest passes.
    pub fn iovecs(&self, ptr: u32, count: u32) -> Result<Vec<(u32, u32)>> {
        let taken = count.min(IOV_MAX);
        let raw = self.slice(ptr, taken * 8)?;
        // The entries past the ones taken must still be in memory, as in a host that reads them all.
        self.slice(ptr, count.checked_mul(8).ok_or(Errno::FAULT)?)?;
        let mut vecs = Vec::with_capacity(taken as usize);
        for pair in raw.chunks_exact(8) {
            let buf = u32::from_le_bytes(pair[..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(pair[4..].try_into().expect("4 bytes"));
            self.slice(buf, len)?;
            vecs.push((buf, len));
        }
        Ok(vecs)
    }

    /// The bytes of a `ciovec` array, concatenated, up to [`MAX_IO`]: iovecs may overlap, so their lengths can
    /// add up to far more than the guest's memory; a host copy of that would cost the platform, not the dyno.
    /// The caller reports a short transfer.
    pub fn gather(&self, ptr: u32, count: u32) -> Result<Vec<u8>> {
        self.gather_up_to(ptr, count, MAX_IO)
    }

    /// [`Mem::gather`], up to `max` bytes.
    pub fn gather_up_to(&self, ptr: u32, count: u32, max: usize) -> Result<Vec<u8>> {
        let vecs = self.iovecs(ptr, count)?;
        let mut out = Vec::with_capacity(total_len(&vecs).min(max));
        for (buf, len) in vecs {
            let room = max - out.len();
            if room == 0 {
                break;
            }
            let bytes = self.slice(buf, len)?;
            out.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(out)
    }

    /// Copies `data` into an `iovec` array; returns the bytes copied.
    pub fn scatter(&mut self, iovs: &[(u32, u32)], mut data: &[u8]) -> Result<usize> {
        let mut copied = 0;
        for &(buf, len) in iovs {
            if data.is_empty() {
                break;
            }
            let n = data.len().min(len as usize);
            self.write(buf, &data[..n])?;
            data = &data[n..];
            copied += n;
        }
        Ok(copied)
    }
}

/// The most bytes one read or write of a stream or socket moves through the host (a short count beyond it).
pub const MAX_IO: usize = 1 << 20;

/// The most iovecs one call takes (Linux's `IOV_MAX`).
pub const IOV_MAX: u32 = 1024;

/// Total length of an iovec array (saturating: a guest may pass lengths that overlap).
pub fn total_len(iovs: &[(u32, u32)]) -> usize {
    iovs.iter()
        .map(|&(_, len)| len as usize)
        .fold(0, usize::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` iovecs at 0, all over the same `len` bytes at 65536: they overlap, so they claim `count × len`.
    fn overlapping(count: u32, len: u32) -> Vec<u8> {
        let mut memory = vec![0u8; 65536 + len as usize];
        for i in 0..count as usize {
            memory[i * 8..i * 8 + 4].copy_from_slice(&65536u32.to_le_bytes());
            memory[i * 8 + 4..i * 8 + 8].copy_from_slice(&len.to_le_bytes());
        }
        memory
    }

    #[test]
    fn one_call_moves_a_bounded_amount_whatever_its_iovecs_claim() {
        // 4,000 iovecs over one 64 KiB page claim 250 MiB.
        let mut memory = overlapping(4000, 65536);
        let mem = Mem(&mut memory);
        let vecs = mem.iovecs(0, 4000).unwrap();
        assert_eq!(
            vecs.len(),
            IOV_MAX as usize,
            "at most IOV_MAX iovecs are taken"
        );
        let gathered = mem.gather(0, 4000).unwrap();
        assert_eq!(
            gathered.len(),
            MAX_IO,
            "one call gathers at most MAX_IO bytes"
        );
        assert!(total_len(&vecs) > MAX_IO, "the claim is larger still");
        // A list that runs past memory is refused, not trusted.
        assert_eq!(mem.iovecs(0, u32::MAX).unwrap_err(), Errno::FAULT);
    }
}
