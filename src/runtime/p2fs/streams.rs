//! The resources that stream: a directory's listing (`directory-entry-stream`) and a file's bytes read or written
//! through `read-via-stream`, `write-via-stream` and `append-via-stream`.

#[allow(unused_imports)]
use super::*;

/// The `directory-entry-stream` resource: a cursor into a directory's listing, which stays valid while the
/// directory changes (entries added meanwhile show up at its end).
pub struct DirectoryStream {
    pub(super) fs: SharedFs,
    pub(super) dir: Ino,
    /// The cookie of the last entry given (2: after `.` and `..`, which wasi-filesystem leaves out).
    pub(super) after: u64,
}

impl Drop for DirectoryStream {
    fn drop(&mut self) {
        lock(&self.fs).release(self.dir);
    }
}

/// A file's bytes as an `input-stream`, from an offset on. Holds the inode open while it lives.
pub(super) struct FileReader {
    pub(super) fs: SharedFs,
    pub(super) ino: Ino,
    pub(super) pos: u64,
    pub(super) closed: bool,
}

impl FileReader {
    pub(super) fn new(fs: &SharedFs, ino: Ino, pos: u64) -> FileReader {
        lock(fs).retain(ino);
        FileReader {
            fs: fs.clone(),
            ino,
            pos,
            closed: false,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for FileReader {
    // Memory is always ready.
    async fn ready(&mut self) {}
}

impl InputStream for FileReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        let fs = lock(&self.fs);
        let left = fs
            .stat(self.ino)
            .map_err(stream_failure)?
            .size
            .saturating_sub(self.pos);
        let mut buf = vec![
            0;
            size.min(MAX_IO)
                .min(usize::try_from(left).unwrap_or(MAX_IO))
        ];
        let n = fs
            .read(self.ino, self.pos, &mut buf)
            .map_err(stream_failure)?;
        drop(fs);
        if n == 0 {
            // The end of the file ends the stream, as wasmtime-wasi's file streams do.
            self.closed = true;
            return Err(StreamError::Closed);
        }
        buf.truncate(n);
        self.pos += n as u64;
        Ok(Bytes::from(buf))
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        lock(&self.fs).release(self.ino);
    }
}

/// An `output-stream` into a file: at an offset that moves on with each write, or appending. Writes happen at
/// once; one that fails (e.g. past the dyno's quota) fails the stream with its [`FsError`] as the payload.
pub(super) struct FileWriter {
    pub(super) fs: SharedFs,
    pub(super) ino: Ino,
    /// `None`: append.
    pub(super) pos: Option<u64>,
    pub(super) closed: bool,
}

impl FileWriter {
    pub(super) fn new(fs: &SharedFs, ino: Ino, pos: Option<u64>) -> FileWriter {
        lock(fs).retain(ino);
        FileWriter {
            fs: fs.clone(),
            ino,
            pos,
            closed: false,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for FileWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for FileWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        match lock(&self.fs).write(self.ino, self.pos, &bytes) {
            Ok(n) => {
                if let Some(pos) = &mut self.pos {
                    *pos += n as u64;
                }
                Ok(())
            }
            Err(err) => {
                // After a failed write the stream is closed, as wasi:io has it.
                self.closed = true;
                Err(stream_failure(err))
            }
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(MAX_IO)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        lock(&self.fs).release(self.ino);
    }
}

/// A stream operation failed: the error travels as the `wasi:io/error` payload that `filesystem-error-code`
/// turns back into an error code.
pub(super) fn stream_failure(err: FsError) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(err))
}
