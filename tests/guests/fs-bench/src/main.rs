//! `fs-bench DIR MIB CHUNK_KIB ROUNDS`: writes DIR/fs-bench.dat (MIB MiB in CHUNK_KIB KiB writes), closes it,
//! reads it back in chunks of the same size (checking the bytes), removes it; ROUNDS times. Prints the best
//! round's rates as `write MB/s`, `read MB/s` lines (MB = 10^6 bytes), then the first round's as `first-write`
//! and `first-read` (the round that meets memory the filesystem has never held). Timed inside the guest, so only the
//! filesystem calls and the guest's own loop are measured, not the runtime's start.

use std::fs;
use std::io::{Read, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, mib, chunk_kib, rounds] = args.as_slice() else {
        eprintln!("usage: fs-bench DIR MIB CHUNK_KIB ROUNDS");
        std::process::exit(64);
    };
    let (mib, chunk_kib, rounds): (usize, usize, usize) =
        (mib.parse().unwrap(), chunk_kib.parse().unwrap(), rounds.parse().unwrap());
    let path = format!("{}/fs-bench.dat", dir.trim_end_matches('/'));
    let total = mib << 20;
    let chunk: Vec<u8> = (0..chunk_kib << 10).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; chunk.len()];
    let (mut best_write, mut best_read) = (f64::MAX, f64::MAX);
    let mut first = None;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let mut f = fs::File::create(&path).unwrap();
        let mut written = 0;
        while written < total {
            let n = chunk.len().min(total - written);
            f.write_all(&chunk[..n]).unwrap();
            written += n;
        }
        drop(f);
        best_write = best_write.min(start.elapsed().as_secs_f64());

        let start = Instant::now();
        let mut f = fs::File::open(&path).unwrap();
        let mut read = 0;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            // Reads come back in chunk-sized pieces here; check the first and last byte of each.
            assert!(buf[0] == chunk[read % chunk.len()] && buf[n - 1] == chunk[(read + n - 1) % chunk.len()]);
            read += n;
        }
        drop(f);
        best_read = best_read.min(start.elapsed().as_secs_f64());
        assert_eq!(read, total, "read back what was written");
        fs::remove_file(&path).unwrap();
        first.get_or_insert((best_write, best_read));
    }
    println!("write {:.1} MB/s", total as f64 / best_write / 1e6);
    println!("read {:.1} MB/s", total as f64 / best_read / 1e6);
    let (first_write, first_read) = first.unwrap();
    println!("first-write {:.1} MB/s", total as f64 / first_write / 1e6);
    println!("first-read {:.1} MB/s", total as f64 / first_read / 1e6);
}
