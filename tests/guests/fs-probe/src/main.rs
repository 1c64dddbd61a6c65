//! `fs-probe tour | fill | bomb | cat PATH | write PATH TEXT`: drives the dyno filesystem through Rust's std
//! and reports what it saw. Built for wasm32-wasip1 every call lands on wasmdyno's preview-1 host; the same source
//! built for wasm32-wasip2 (tests/it/components.rs) lands on its `wasi:filesystem` host.

use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["tour"] => tour(),
        ["fill"] => fill(),
        ["bomb"] => bomb(),
        ["cat", path] => match fs::read_to_string(path) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                println!("cannot read {path}: {:?}", e.kind());
                std::process::exit(2);
            }
        },
        ["write", path, text] => fs::write(path, text).unwrap(),
        _ => {
            eprintln!("usage: fs-probe tour|fill|bomb|cat PATH|write PATH TEXT");
            std::process::exit(64);
        }
    }
}

/// Checks one step; on failure says which and exits 1.
macro_rules! check {
    ($step:expr, $cond:expr) => {
        if !$cond {
            println!("FAILED: {}", $step);
            std::process::exit(1);
        }
        println!("ok {}", $step);
    };
}

fn kind<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn tour() {
    // The slug's files are the dyno's `/`, which is also the working directory.
    check!("read a slug file", fs::read_to_string("data.txt").unwrap() == "shipped in the slug\n");
    check!("absolute paths start at the app", fs::read_to_string("/data.txt").unwrap() == "shipped in the slug\n");
    check!("cwd is /", std::env::current_dir().unwrap().to_str() == Some("/"));
    check!("HOME is /", std::env::var("HOME").as_deref() == Ok("/"));
    check!("/tmp exists and is empty", fs::read_dir("/tmp").unwrap().count() == 0);

    // Copy-on-write: the dyno may change slug files; its own view changes.
    fs::write("data.txt", "changed by the dyno\n").unwrap();
    check!("overwrite a slug file", fs::read_to_string("data.txt").unwrap() == "changed by the dyno\n");

    // Files: write, append, seek, overwrite, truncate, extend.
    fs::write("/tmp/a.txt", "hello").unwrap();
    let mut f = fs::OpenOptions::new().append(true).open("/tmp/a.txt").unwrap();
    f.write_all(b" world").unwrap();
    drop(f);
    check!("append", fs::read_to_string("/tmp/a.txt").unwrap() == "hello world");
    let mut f = fs::OpenOptions::new().read(true).write(true).open("/tmp/a.txt").unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"WORLD").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    check!("seek and overwrite", text == "hello WORLD");
    check!("tell", f.stream_position().unwrap() == 11);
    f.set_len(5).unwrap();
    check!("truncate", fs::read_to_string("/tmp/a.txt").unwrap() == "hello");
    f.set_len(8).unwrap();
    check!("extend with zeros", fs::read("/tmp/a.txt").unwrap() == b"hello\0\0\0");
    let mut buf = [0u8; 3];
    check!("pread", wasi::pread_at(&f, &mut buf, 1) == 3 && &buf == b"ell");
    check!("pwrite", wasi::pwrite_at(&f, b"J", 0) == 1 && fs::read("/tmp/a.txt").unwrap()[0] == b'J');
    drop(f);
    check!("metadata", fs::metadata("/tmp/a.txt").map(|m| (m.len(), m.is_file())).unwrap() == (8, true));
    check!(
        "create_new refuses an existing file",
        kind(fs::OpenOptions::new().write(true).create_new(true).open("/tmp/a.txt")) == Some(ErrorKind::AlreadyExists)
    );

    // Timestamps.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options().write(true).open("/tmp/a.txt").unwrap().set_modified(when).unwrap();
    check!("set mtime", fs::metadata("/tmp/a.txt").unwrap().modified().unwrap() == when);

    // Directories.
    fs::create_dir_all("/tmp/x/y/z").unwrap();
    fs::write("/tmp/x/b", "b").unwrap();
    fs::write("/tmp/x/a", "a").unwrap();
    let mut names: Vec<String> =
        fs::read_dir("/tmp/x").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    check!("readdir", names == ["a", "b", "y"]);
    // std on wasm32-wasip1 files ENOTEMPTY (55) under `Uncategorized`, so check the errno itself.
    let refused = fs::remove_dir("/tmp/x/y").err().and_then(|e| e.raw_os_error());
    check!("rmdir refuses a non-empty directory", refused == Some(55));
    check!("mkdir refuses an existing path", kind(fs::create_dir("/tmp/x")) == Some(ErrorKind::AlreadyExists));
    fs::remove_dir("/tmp/x/y/z").unwrap();
    check!("rmdir", !fs::exists("/tmp/x/y/z").unwrap());
    check!("read a directory as a file", fs::read("/tmp/x").is_err());

    // Rename, hard links, symbolic links, unlink.
    fs::rename("/tmp/x/a", "/tmp/x/y/moved").unwrap();
    check!("rename", fs::read_to_string("/tmp/x/y/moved").unwrap() == "a" && !fs::exists("/tmp/x/a").unwrap());
    fs::rename("/tmp/x/b", "/tmp/x/y/moved").unwrap();
    check!("rename replaces a file", fs::read_to_string("/tmp/x/y/moved").unwrap() == "b");
    fs::hard_link("/tmp/x/y/moved", "/tmp/hard").unwrap();
    fs::write("/tmp/hard", "shared inode").unwrap();
    check!("hard link", fs::read_to_string("/tmp/x/y/moved").unwrap() == "shared inode");
    {
        wasi::symlink_at("x/y/moved", "tmp/sym");
        check!("symlink", fs::read_to_string("/tmp/sym").unwrap() == "shared inode");
        check!("readlink", fs::read_link("/tmp/sym").unwrap().to_str() == Some("x/y/moved"));
        check!("lstat", fs::symlink_metadata("/tmp/sym").unwrap().file_type().is_symlink());
        check!("an absolute symlink target is refused", wasi::try_symlink_at("/", "tmp/abs").is_err());
        wasi::symlink_at("../../..", "tmp/root");
        check!("a symlink above / stays in the dyno", fs::read_to_string("/tmp/root/data.txt").unwrap() == "changed by the dyno\n");
        wasi::symlink_at("loop2", "tmp/loop1");
        wasi::symlink_at("loop1", "tmp/loop2");
        check!("symlink loops end", fs::read("/tmp/loop1").is_err());
    }
    fs::remove_file("/tmp/hard").unwrap();
    check!("unlink", !fs::exists("/tmp/hard").unwrap() && fs::exists("/tmp/x/y/moved").unwrap());

    // Unlinked but open: still readable.
    let mut open = fs::File::open("/tmp/x/y/moved").unwrap();
    fs::remove_file("/tmp/x/y/moved").unwrap();
    let mut text = String::new();
    open.read_to_string(&mut text).unwrap();
    check!("an unlinked file stays readable while open", text == "shared inode");

    // Nothing outside the app exists, whatever the path says.
    check!("no host files", kind(fs::read("/etc/passwd")) == Some(ErrorKind::NotFound));
    check!("`..` stays at /", fs::read_to_string("../../../../data.txt").is_ok() && kind(fs::read("../../etc/passwd")) == Some(ErrorKind::NotFound));
    check!("long paths are refused", fs::read("/tmp/".to_string() + &"a/".repeat(3000)).is_err());
    println!("tour complete");
}

/// Writes 1 MiB blocks to /tmp until the dyno's quota stops it.
fn fill() {
    let block = vec![7u8; 1 << 20];
    let mut file = fs::File::create("/tmp/fill").unwrap();
    let mut mib = 0;
    loop {
        if let Err(e) = file.write_all(&block) {
            println!("filled {mib} MiB, then: {:?}", e.kind());
            return;
        }
        mib += 1;
        if mib > 64 * 1024 {
            println!("no quota");
            std::process::exit(1);
        }
    }
}

/// Grows memory in 16 MiB steps until the quota stops it, inside the guest.
fn bomb() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(16 << 20).is_err() {
            println!("memory stopped growing at {} MiB", held.len() * 16);
            return;
        }
        block.resize(16 << 20, 1);
        held.push(block);
    }
}

/// The few calls std keeps behind unstable APIs, through wasi-libc (linked on wasm32-wasip1 and wasm32-wasip2
/// alike), so that the same source runs on wasmdyno's preview-1 host and on its `wasi:filesystem` host.
mod wasi {
    use std::ffi::{CString, c_char, c_int, c_void};
    use std::os::fd::AsRawFd;

    unsafe extern "C" {
        fn symlink(target: *const c_char, path: *const c_char) -> c_int;
        fn pread(fd: c_int, buf: *mut c_void, len: usize, offset: i64) -> isize;
        fn pwrite(fd: c_int, buf: *const c_void, len: usize, offset: i64) -> isize;
    }

    /// A symbolic link at `path` (relative to the working directory, `/`).
    pub fn symlink_at(target: &str, path: &str) {
        if let Err(e) = try_symlink_at(target, path) {
            panic!("symlink {target} {path}: {e}");
        }
    }

    pub fn try_symlink_at(target: &str, path: &str) -> std::io::Result<()> {
        let (t, p) = (CString::new(target).unwrap(), CString::new(path).unwrap());
        match unsafe { symlink(t.as_ptr(), p.as_ptr()) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    pub fn pread_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> usize {
        let n = unsafe { pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as i64) };
        assert!(n >= 0, "pread: {}", std::io::Error::last_os_error());
        n as usize
    }

    pub fn pwrite_at(file: &std::fs::File, data: &[u8], offset: u64) -> usize {
        let n = unsafe { pwrite(file.as_raw_fd(), data.as_ptr().cast(), data.len(), offset as i64) };
        assert!(n >= 0, "pwrite: {}", std::io::Error::last_os_error());
        n as usize
    }
}
