//! A file's bytes in a dyno's layer, in fixed-size chunks: growing a file never moves or zero-fills what it
//! already holds (a `Vec` of the whole file would, on each doubling), and a hole (a write past the end, or
//! `set_size` growing the file) takes no memory until it is written.

/// Bytes per chunk. Every chunk but a file's first is allocated whole on its first write; the first grows with
/// the file, doubling as a `Vec` does. So no file holds more than twice its size in memory (the quota charges
/// its size): a one-chunk file at most twice its bytes, a longer one less than one chunk more.
pub(super) const CHUNK: usize = 256 << 10;

#[derive(Debug, Clone, Default)]
pub(super) struct Chunks {
    len: usize,
    /// Chunk `i` holds the bytes from `i * CHUNK`. A chunk shorter than its part of the file (or empty) reads as
    /// zeros past its end. Always `len.div_ceil(CHUNK)` of them.
    chunks: Vec<Vec<u8>>,
}

impl Chunks {
    pub(super) fn from_slice(bytes: &[u8]) -> Chunks {
        let mut chunks = Chunks::default();
        chunks.write(0, bytes);
        chunks
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Copies bytes from `offset` into `buf`; returns how many (0 at or past the end).
    pub(super) fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.len.saturating_sub(offset));
        let mut done = 0;
        while done < n {
            let (i, within) = ((offset + done) / CHUNK, (offset + done) % CHUNK);
            let span = (n - done).min(CHUNK - within);
            let held = self.chunks.get(i).and_then(|chunk| chunk.get(within..));
            let held = held.unwrap_or_default();
            let have = held.len().min(span);
            let (from_chunk, zeros) = buf[done..done + span].split_at_mut(have);
            from_chunk.copy_from_slice(&held[..have]);
            zeros.fill(0);
            done += span;
        }
        n
    }

    /// Writes `data` at `offset`, growing the file (with a hole between its old end and `offset`).
    ///
    /// The caller has checked that `offset + data.len()` fits in memory (the dyno's quota).
    pub(super) fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if end > self.len {
            self.len = end;
            self.chunks.resize_with(end.div_ceil(CHUNK), Vec::new);
        }
        let mut done = 0;
        while done < data.len() {
            let (i, within) = ((offset + done) / CHUNK, (offset + done) % CHUNK);
            let span = (data.len() - done).min(CHUNK - within);
            let piece = &data[done..done + span];
            let chunk = &mut self.chunks[i];
            let wanted = within + span;
            if chunk.capacity() < wanted {
                // Room once, before the hole (if any) is zeroed: a later chunk gets its whole size, the first
                // doubles (never past one chunk).
                let room = match i {
                    0 => wanted.max(2 * chunk.capacity()).min(CHUNK),
                    _ => CHUNK,
                };
                chunk.reserve_exact(room - chunk.len());
                populate(chunk.spare_capacity_mut());
            }
            if chunk.len() < within {
                chunk.resize(within, 0);
            }
            let over = (chunk.len() - within).min(span);
            chunk[within..within + over].copy_from_slice(&piece[..over]);
            chunk.extend_from_slice(&piece[over..]);
            done += span;
        }
    }

    /// Truncates to `len`, or extends to it with a hole.
    pub(super) fn set_len(&mut self, len: usize) {
        if len < self.len {
            self.chunks.truncate(len.div_ceil(CHUNK));
            if let Some(last) = self.chunks.last_mut() {
                let span = len - (len.div_ceil(CHUNK) - 1) * CHUNK;
                if last.len() > span {
                    last.truncate(span);
                    if span < last.capacity() / 2 {
                        // Memory, not just the charge, goes back after a large truncation.
                        last.shrink_to_fit();
                    }
                }
            }
        } else {
            self.chunks.resize_with(len.div_ceil(CHUNK), Vec::new);
        }
        self.len = len;
    }
}

/// Asks the kernel to back `spare` with memory in one call, rather than one page fault per page as the copy
/// reaches it (Linux 5.14's `MADV_POPULATE_WRITE`; elsewhere, or on memory already backed, a no-op).
fn populate(spare: &mut [std::mem::MaybeUninit<u8>]) {
    const PAGE: usize = 4096;
    let (start, end) = (
        spare.as_mut_ptr() as usize,
        spare.as_mut_ptr() as usize + spare.len(),
    );
    let (first, last) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
    if first < last {
        // SAFETY: the range lies inside `spare`, memory this chunk owns; populating it changes no byte of it.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on a plain `Vec`, the model every check compares with.
    fn check(chunks: &Chunks, model: &[u8]) {
        assert_eq!(chunks.len(), model.len());
        assert_eq!(chunks.chunks.len(), model.len().div_ceil(CHUNK));
        let mut all = vec![0xAA; model.len() + 10];
        assert_eq!(chunks.read(0, &mut all), model.len());
        assert_eq!(&all[..model.len()], model);
        // Reads at odd offsets and sizes straddle chunk edges.
        for (offset, size) in [(CHUNK - 3, 7), (1, 2 * CHUNK), (model.len(), 5)] {
            let mut buf = vec![0xAA; size];
            let n = chunks.read(offset, &mut buf);
            let want = model
                .get(offset..)
                .map_or(&[][..], |rest| &rest[..rest.len().min(size)]);
            assert_eq!(&buf[..n], want, "read {size} at {offset}");
        }
    }

    fn write(chunks: &mut Chunks, model: &mut Vec<u8>, offset: usize, data: &[u8]) {
        chunks.write(offset, data);
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), 0);
        }
        model[offset..offset + data.len()].copy_from_slice(data);
        check(chunks, model);
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn writes_across_chunks_and_holes_read_back_as_a_flat_file_would() {
        let (mut chunks, mut model) = (Chunks::default(), Vec::new());
        write(&mut chunks, &mut model, 0, b"hello");
        write(&mut chunks, &mut model, 3, &pattern(CHUNK + 100, 1));
        // A write far past the end leaves a hole of whole chunks that hold nothing.
        write(&mut chunks, &mut model, 5 * CHUNK + 7, &pattern(10, 2));
        assert!(chunks.chunks[3].is_empty(), "a hole takes no memory");
        // Overwrites inside a hole, and across the edge of held bytes.
        write(&mut chunks, &mut model, 3 * CHUNK + 9, b"in the hole");
        write(&mut chunks, &mut model, CHUNK + 90, &pattern(3 * CHUNK, 3));
        // Small appends, as a log file gets them.
        for i in 0..2000 {
            let end = model.len();
            write(&mut chunks, &mut model, end, &pattern(97, i as u8));
        }
    }

    #[test]
    fn set_len_truncates_then_extends_with_zeros_not_old_bytes() {
        let (mut chunks, mut model) = (Chunks::default(), Vec::new());
        write(&mut chunks, &mut model, 0, &pattern(3 * CHUNK + 500, 4));
        for len in [2 * CHUNK + 10, 2 * CHUNK + 10, CHUNK, 5, 0, 4 * CHUNK, 7] {
            chunks.set_len(len);
            model.resize(len, 0);
            check(&chunks, &model);
        }
        write(&mut chunks, &mut model, 2, b"again");
    }

    #[test]
    fn no_file_holds_more_than_twice_its_size() {
        let mut grown = Chunks::default();
        for _ in 0..(3 * CHUNK / 1000) {
            let end = grown.len();
            grown.write(end, &[1; 1000]);
            let held: usize = grown.chunks.iter().map(Vec::capacity).sum();
            assert!(
                held <= 2 * grown.len().max(8),
                "{held} bytes held for {}",
                grown.len()
            );
        }
        assert_eq!(
            grown.chunks[1].capacity(),
            CHUNK,
            "a later chunk is allocated whole, once"
        );
    }
}
