//! The preview-1 host driven by small WAT guests: one test per function (or family), with the errno values the
//! spec gives for bad descriptors, pointers and arguments. Filesystem behaviour is covered in depth by the vfs
//! tests and by a Rust guest in the integration tests; sockets by Go and Rust servers there too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::{Engine, Linker, Module, Store};

use super::{
    P1Ctx, P1View,
    abi::{self, Errno, rights},
};
use crate::runtime::net::{Connection, Listener};
use crate::runtime::stdio::{Input, Output};
use crate::runtime::vfs::{Fs, Image, Quota};

struct State(P1Ctx);

impl P1View for State {
    fn p1(&mut self) -> &mut P1Ctx {
        &mut self.0
    }
}

/// What a test guest left behind.
struct Ran {
    /// `run`'s result, or the exit status if the guest called `proc_exit`.
    result: Result<i32, i32>,
    memory: Vec<u8>,
    stdout: Vec<u8>,
}

impl Ran {
    fn errno(&self) -> Errno {
        Errno(self.result.expect("returned") as u16)
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.memory[at..at + 4].try_into().unwrap())
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.memory[at..at + 8].try_into().unwrap())
    }
    fn bytes(&self, at: usize, len: usize) -> &[u8] {
        &self.memory[at..at + len]
    }
}

/// Runs a guest whose exported `run` returns an i32. `imports` are `(name, params)` of preview-1 functions that
/// return an errno; `data` are `(offset, bytes)` segments written as WAT strings.
fn run(imports: &[(&str, &str)], data: &[(u32, &str)], body: &str) -> Ran {
    run_with(None, imports, data, body)
}

/// [`run`], as a web dyno with `listener` at fd 4.
fn run_with(
    listener: Option<&Listener>,
    imports: &[(&str, &str)],
    data: &[(u32, &str)],
    body: &str,
) -> Ran {
    let mut wat = String::from("(module\n");
    for (name, params) in imports {
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param {params}) (result i32)))\n"
        );
    }
    wat += "  (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $proc_exit (param i32)))\n";
    wat += "  (memory (export \"memory\") 1)\n";
    for (at, bytes) in data {
        wat += &format!("  (data (i32.const {at}) \"{bytes}\")\n");
    }
    wat += &format!("  (func (export \"run\") (result i32) {body}))\n");

    let engine = Engine::new(&crate::runtime::engine_config()).unwrap();
    let module = Module::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    super::add_to_linker(&mut linker).unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let sink = stdout.clone();
    let output: Output = Arc::new(move |data: &[u8]| sink.lock().unwrap().extend_from_slice(data));
    let image = Arc::new(Image::new(
        [("hello.txt".to_string(), Arc::from(&b"hi there"[..]))],
        [],
        0,
    ));
    let fs = Arc::new(Mutex::new(Fs::new(image, Arc::new(Quota::new(1 << 20)))));
    let ctx = P1Ctx::new(
        vec!["prog".into(), "a b".into()],
        [("K".to_string(), "v".to_string())],
        fs,
        Input::closed(),
        output.clone(),
        output,
    );
    let ctx = match listener {
        Some(listener) => ctx.with_listener(listener),
        None => ctx,
    };
    let mut store = Store::new(&engine, State(ctx));
    store.set_epoch_deadline(1 << 40);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = tokio.block_on(async {
        let instance = linker.instantiate_async(&mut store, &module).await.unwrap();
        let run = instance
            .get_typed_func::<(), i32>(&mut store, "run")
            .unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let result = match run.call_async(&mut store, ()).await {
            Ok(v) => Ok(v),
            Err(e) => Err(e
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .expect("an exit, not a trap")
                .0),
        };
        (result, memory.data(&store).to_vec())
    });
    let stdout = stdout.lock().unwrap().clone();
    Ran {
        result: result.0,
        memory: result.1,
        stdout,
    }
}

const TWO: &str = "i32 i32";

#[test]
fn args_sizes_get_and_args_get() {
    let ran = run(
        &[("args_sizes_get", TWO), ("args_get", TWO)],
        &[],
        "(drop (call $args_sizes_get (i32.const 0) (i32.const 4))) (call $args_get (i32.const 16) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!((ran.u32(0), ran.u32(4)), (2, 9));
    assert_eq!((ran.u32(16), ran.u32(20)), (64, 69));
    assert_eq!(ran.bytes(64, 9), b"prog\0a b\0");
    let ran = run(
        &[("args_get", TWO)],
        &[],
        "(call $args_get (i32.const 65534) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::FAULT);
}

#[test]
fn environ_sizes_get_and_environ_get() {
    let ran = run(
        &[("environ_sizes_get", TWO), ("environ_get", TWO)],
        &[],
        "(drop (call $environ_sizes_get (i32.const 0) (i32.const 4))) (call $environ_get (i32.const 16) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!((ran.u32(0), ran.u32(4)), (1, 4));
    assert_eq!(ran.bytes(64, 4), b"K=v\0");
    let ran = run(
        &[("environ_sizes_get", TWO)],
        &[],
        "(call $environ_sizes_get (i32.const -1) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::FAULT);
}

#[test]
fn clock_res_get_and_clock_time_get() {
    let ran = run(
        &[("clock_time_get", "i32 i64 i32"), ("clock_res_get", TWO)],
        &[],
        "(drop (call $clock_res_get (i32.const 1) (i32.const 0)))
         (drop (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 8)))
         (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 16)))
         (call $clock_time_get (i32.const 9) (i64.const 0) (i32.const 24))",
    );
    assert_eq!(ran.errno(), Errno::INVAL, "unknown clock");
    assert_eq!(ran.u64(0), 1);
    let realtime = ran.u64(8);
    assert!(realtime > 1_700_000_000 * 1_000_000_000, "{realtime}");
    assert!(ran.u64(16) > 0);
    let ran = run(
        &[("clock_res_get", TWO)],
        &[],
        "(call $clock_res_get (i32.const 7) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::INVAL);
}

#[test]
fn random_get() {
    let ran = run(
        &[("random_get", TWO)],
        &[],
        "(call $random_get (i32.const 0) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert!(ran.bytes(0, 64).iter().any(|&b| b != 0));
    let ran = run(
        &[("random_get", TWO)],
        &[],
        "(call $random_get (i32.const 65530) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::FAULT);
}

#[test]
fn fd_write_to_stdout_and_bad_arguments() {
    // iovec at 0 → "hello\n" at 100
    let imports = [("fd_write", "i32 i32 i32 i32")];
    let data = [(0, "\\64\\00\\00\\00\\06\\00\\00\\00"), (100, "hello\\n")];
    let ran = run(
        &imports,
        &data,
        "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(ran.stdout, b"hello\n");
    assert_eq!(ran.u32(16), 6);
    let ran = run(
        &imports,
        &data,
        "(call $fd_write (i32.const 99) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
    let ran = run(
        &imports,
        &data,
        "(call $fd_write (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::BADF, "stdin is not writable");
    // An iovec pointing past the end of memory.
    let bad = [(0, "\\f0\\ff\\00\\00\\00\\10\\00\\00")];
    let ran = run(
        &imports,
        &bad,
        "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::FAULT);
    assert!(ran.stdout.is_empty());
}

#[test]
fn fd_read_from_stdin_at_end_of_file() {
    let imports = [("fd_read", "i32 i32 i32 i32")];
    let data = [(0, "\\64\\00\\00\\00\\10\\00\\00\\00")];
    let ran = run(
        &imports,
        &data,
        "(i32.store (i32.const 16) (i32.const 77)) (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(ran.u32(16), 0, "0 bytes: end of file");
    let ran = run(
        &imports,
        &data,
        "(call $fd_read (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::BADF, "stdout is not readable");
    let ran = run(
        &imports,
        &data,
        "(call $fd_read (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 16))",
    );
    assert_eq!(ran.errno(), Errno::ISDIR);
}

#[test]
fn fd_prestat_get_and_dir_name() {
    let imports = [
        ("fd_prestat_get", TWO),
        ("fd_prestat_dir_name", "i32 i32 i32"),
    ];
    let ran = run(
        &imports,
        &[],
        "(drop (call $fd_prestat_get (i32.const 3) (i32.const 0))) (call $fd_prestat_dir_name (i32.const 3) (i32.const 16) (i32.const 1))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!((ran.u32(0), ran.u32(4)), (0, 1));
    assert_eq!(ran.bytes(16, 1), b"/");
    // The scan libc does: fd 4 is not a preopen (a web dyno's listener lives there), nor is stdout.
    let ran = run(
        &imports,
        &[],
        "(call $fd_prestat_get (i32.const 4) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
    let ran = run(
        &imports,
        &[],
        "(call $fd_prestat_get (i32.const 1) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
    let ran = run(
        &imports,
        &[],
        "(call $fd_prestat_dir_name (i32.const 3) (i32.const 16) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::NAMETOOLONG);
}

const PATH_OPEN: (&str, &str) = ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32");

/// `path_open(3, follow, "hello.txt", 0, read|seek|tell, 0, 0, out=16)`.
const OPEN_HELLO: &str = "(call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 38) (i64.const 0) (i32.const 0) (i32.const 16))";

#[test]
fn path_open_fd_close_and_descriptor_reuse() {
    let imports = [PATH_OPEN, ("fd_close", "i32")];
    let data = [(100, "hello.txt")];
    let body = format!(
        "(drop {OPEN_HELLO}) (i32.store (i32.const 20) (i32.load (i32.const 16)))
         (drop (call $fd_close (i32.load (i32.const 16))))
         (drop {OPEN_HELLO})
         (call $fd_close (i32.const 42))"
    );
    let ran = run(&imports, &data, &body);
    assert_eq!(
        ran.errno(),
        Errno::BADF,
        "closing a descriptor that is not open"
    );
    assert_eq!(ran.u32(20), 4, "the lowest free descriptor");
    assert_eq!(ran.u32(16), 4, "a closed descriptor's number is reused");

    let missing = run(&imports, &[(100, "nothing..")], OPEN_HELLO);
    assert_eq!(missing.errno(), Errno::NOENT);
    let bad_utf8 = run(
        &imports,
        &[(100, "\\ff\\fe.txt\\00\\00\\00\\00")],
        OPEN_HELLO,
    );
    assert_eq!(bad_utf8.errno(), Errno::ILSEQ);
    let out_of_bounds = run(
        &imports,
        &[],
        "(call $path_open (i32.const 3) (i32.const 1) (i32.const 65530) (i32.const 9) (i32.const 0) (i64.const 38) (i64.const 0) (i32.const 0) (i32.const 16))",
    );
    assert_eq!(out_of_bounds.errno(), Errno::FAULT);
    let not_a_dir = run(
        &imports,
        &data,
        "(call $path_open (i32.const 1) (i32.const 1) (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 38) (i64.const 0) (i32.const 0) (i32.const 16))",
    );
    assert_eq!(not_a_dir.errno(), Errno::NOTDIR);
}

#[test]
fn fd_read_fd_seek_fd_tell_on_a_slug_file() {
    let imports = [
        PATH_OPEN,
        ("fd_read", "i32 i32 i32 i32"),
        ("fd_seek", "i32 i64 i32 i32"),
        ("fd_tell", TWO),
    ];
    let data = [(100, "hello.txt"), (0, "\\00\\02\\00\\00\\05\\00\\00\\00")];
    let body = format!(
        "(drop {OPEN_HELLO})
         (drop (call $fd_seek (i32.const 4) (i64.const 3) (i32.const 0) (i32.const 24)))
         (drop (call $fd_read (i32.const 4) (i32.const 0) (i32.const 1) (i32.const 32)))
         (drop (call $fd_tell (i32.const 4) (i32.const 40)))
         (call $fd_seek (i32.const 4) (i64.const -100) (i32.const 1) (i32.const 48))"
    );
    let ran = run(&imports, &data, &body);
    assert_eq!(ran.errno(), Errno::INVAL, "seeking before the start");
    assert_eq!(ran.u64(24), 3);
    assert_eq!(ran.u32(32), 5);
    assert_eq!(ran.bytes(512, 5), b"there");
    assert_eq!(ran.u64(40), 8);
    let ran = run(
        &imports,
        &data,
        "(call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 24))",
    );
    assert_eq!(ran.errno(), Errno::SPIPE, "stdout cannot seek");
    let ran = run(
        &imports,
        &data,
        &format!(
            "(drop {OPEN_HELLO}) (call $fd_seek (i32.const 4) (i64.const 0) (i32.const 9) (i32.const 24))"
        ),
    );
    assert_eq!(ran.errno(), Errno::INVAL, "unknown whence");
}

/// `path_open(3, follow, "new.txt", O_CREAT, read|seek|tell|write, 0, 0, out=16)`.
const CREATE_NEW: &str = "(call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 7) (i32.const 1) (i64.const 102) (i64.const 0) (i32.const 0) (i32.const 16))";

#[test]
fn fd_write_and_fd_read_move_every_iovec_and_stop_short_at_the_quota() {
    let imports = [
        PATH_OPEN,
        ("fd_read", "i32 i32 i32 i32"),
        ("fd_write", "i32 i32 i32 i32"),
        ("fd_seek", "i32 i64 i32 i32"),
    ];
    // Write "abc" and "defg" in one call, then read them back into buffers of 2 and 10 bytes.
    let (writes, reads) = (
        iovec(200, 3) + &iovec(210, 4),
        iovec(300, 2) + &iovec(310, 10),
    );
    let data = [
        (100, "new.txt"),
        (200, "abc"),
        (210, "defg"),
        (0, writes.as_str()),
        (40, reads.as_str()),
    ];
    let body = format!(
        "(drop {CREATE_NEW})
         (drop (call $fd_write (i32.load (i32.const 16)) (i32.const 0) (i32.const 2) (i32.const 24)))
         (drop (call $fd_seek (i32.load (i32.const 16)) (i64.const 0) (i32.const 0) (i32.const 32)))
         (call $fd_read (i32.load (i32.const 16)) (i32.const 40) (i32.const 2) (i32.const 56))"
    );
    let ran = run(&imports, &data, &body);
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!((ran.u32(24), ran.u32(56)), (7, 7));
    assert_eq!(
        (ran.bytes(300, 2), ran.bytes(310, 5)),
        (&b"ab"[..], &b"cdefg"[..])
    );

    // 40 iovecs over one 40,000-byte buffer are 1.6 MB, more than the 1 MiB quota: the write stops short after
    // the buffers that fit; the next write fails (EFBIG: the file would outgrow the whole quota).
    let many = iovec(1000, 40_000).repeat(40);
    let data = [(100, "new.txt"), (400, many.as_str())];
    let body = format!(
        "(drop {CREATE_NEW})
         (drop (call $fd_write (i32.load (i32.const 16)) (i32.const 400) (i32.const 40) (i32.const 24)))
         (call $fd_write (i32.load (i32.const 16)) (i32.const 400) (i32.const 1) (i32.const 28))"
    );
    let ran = run(&imports, &data, &body);
    let written = ran.u32(24);
    assert!(written > 0 && written < 1 << 20, "{written}");
    assert_eq!(written % 40_000, 0, "whole buffers: {written}");
    let expected = if written + 40_000 > 1 << 20 {
        Errno::FBIG
    } else {
        Errno::NOSPC
    };
    assert_eq!(ran.errno(), expected, "after {written} bytes");
}

#[test]
fn fd_renumber() {
    let imports = [PATH_OPEN, ("fd_renumber", TWO), ("fd_prestat_get", TWO)];
    let data = [(100, "hello.txt")];
    let body = format!(
        "(drop {OPEN_HELLO})
         (drop (call $fd_renumber (i32.const 3) (i32.const 4)))
         (i32.store (i32.const 32) (call $fd_prestat_get (i32.const 4) (i32.const 40)))
         (i32.store (i32.const 36) (call $fd_prestat_get (i32.const 3) (i32.const 40)))
         (call $fd_renumber (i32.const 4) (i32.const 77))"
    );
    let ran = run(&imports, &data, &body);
    assert_eq!(ran.errno(), Errno::BADF, "the target must be open");
    assert_eq!(ran.u32(32), 0, "fd 4 is now the preopen");
    assert_eq!(ran.u32(36), u32::from(Errno::BADF.0), "fd 3 is gone");
}

#[test]
fn fd_fdstat_get_and_set_flags() {
    let imports = [("fd_fdstat_get", TWO), ("fd_fdstat_set_flags", TWO)];
    let ran = run(
        &imports,
        &[],
        "(drop (call $fd_fdstat_get (i32.const 1) (i32.const 0))) (drop (call $fd_fdstat_get (i32.const 3) (i32.const 32)))
         (call $fd_fdstat_set_flags (i32.const 0) (i32.const 4))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(ran.memory[0], 2, "stdout is a character device");
    assert_eq!(ran.memory[32], 3, "fd 3 is a directory");
    assert_ne!(ran.u64(40), 0, "the preopen has rights");
    let ran = run(
        &imports,
        &[],
        "(call $fd_fdstat_set_flags (i32.const 1) (i32.const 4096))",
    );
    assert_eq!(ran.errno(), Errno::INVAL);
    let ran = run(
        &imports,
        &[],
        "(call $fd_fdstat_get (i32.const 9) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
}

#[test]
fn fd_fdstat_set_rights_only_drops_rights() {
    let imports = [("fd_fdstat_set_rights", "i32 i64 i64")];
    let ran = run(
        &imports,
        &[],
        "(call $fd_fdstat_set_rights (i32.const 3) (i64.const 0) (i64.const 0))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    let ran = run(
        &imports,
        &[],
        "(drop (call $fd_fdstat_set_rights (i32.const 3) (i64.const 0) (i64.const 0))) (call $fd_fdstat_set_rights (i32.const 3) (i64.const 2) (i64.const 0))",
    );
    assert_eq!(ran.errno(), Errno::NOTCAPABLE);
}

#[test]
fn fd_filestat_get_and_path_filestat_get() {
    let imports = [
        ("fd_filestat_get", TWO),
        ("path_filestat_get", "i32 i32 i32 i32 i32"),
    ];
    let ran = run(
        &imports,
        &[(100, "hello.txt")],
        "(drop (call $fd_filestat_get (i32.const 3) (i32.const 0))) (call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 9) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(ran.memory[16], 3, "/ is a directory");
    assert_eq!(ran.memory[64 + 16], 4, "hello.txt is a regular file");
    assert_eq!(ran.u64(64 + 32), 8, "its size");
    let ran = run(
        &imports,
        &[(100, "nope")],
        "(call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 4) (i32.const 64))",
    );
    assert_eq!(ran.errno(), Errno::NOENT);
}

#[test]
fn poll_oneoff_on_a_clock_and_on_stdin() {
    let imports = [("poll_oneoff", "i32 i32 i32 i32")];
    // Subscription at 0: userdata 7, clock, monotonic, relative 1 ms.
    let body = "(i64.store (i32.const 0) (i64.const 7)) (i32.store8 (i32.const 8) (i32.const 0))
         (i32.store (i32.const 16) (i32.const 1)) (i64.store (i32.const 24) (i64.const 1000000))
         (call $poll_oneoff (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512))";
    let ran = run(&imports, &[], body);
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(ran.u32(512), 1);
    assert_eq!(ran.u64(256), 7);
    assert_eq!(ran.memory[256 + 10], 0, "a clock event");
    // Reading stdin at end of file is ready at once, with a hangup flag.
    let body = "(i64.store (i32.const 0) (i64.const 9)) (i32.store8 (i32.const 8) (i32.const 1))
         (i32.store (i32.const 16) (i32.const 0))
         (call $poll_oneoff (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512))";
    let ran = run(&imports, &[], body);
    assert_eq!(ran.errno(), Errno::SUCCESS);
    assert_eq!(
        (ran.u32(512), ran.u64(256), ran.memory[256 + 10]),
        (1, 9, 1)
    );
    assert_eq!(ran.memory[256 + 24], 1, "hangup");
    let ran = run(
        &imports,
        &[],
        "(call $poll_oneoff (i32.const 0) (i32.const 256) (i32.const 0) (i32.const 512))",
    );
    assert_eq!(ran.errno(), Errno::INVAL, "no subscriptions");
}

#[test]
fn proc_exit_takes_any_status() {
    let ran = run(&[], &[], "(call $proc_exit (i32.const 255)) (i32.const 0)");
    assert_eq!(ran.result, Err(255));
}

#[test]
fn proc_raise_sched_yield_and_sockets() {
    let ran = run(
        &[("proc_raise", "i32")],
        &[],
        "(call $proc_raise (i32.const 9))",
    );
    assert_eq!(ran.errno(), Errno::NOTSUP);
    let ran = run(&[("sched_yield", "")], &[], "(call $sched_yield)");
    assert_eq!(ran.errno(), Errno::SUCCESS);
    let ran = run(
        &[("sock_accept", "i32 i32 i32")],
        &[],
        "(call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::NOTSOCK);
    let ran = run(
        &[("sock_shutdown", TWO)],
        &[],
        "(call $sock_shutdown (i32.const 50) (i32.const 1))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
    let ran = run(
        &[("sock_send", "i32 i32 i32 i32 i32")],
        &[],
        "(call $sock_send (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::NOTSOCK);
    let ran = run(
        &[("sock_recv", "i32 i32 i32 i32 i32 i32")],
        &[],
        "(call $sock_recv (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
    );
    assert_eq!(ran.errno(), Errno::NOTSOCK);
}

#[test]
fn path_calls_on_a_descriptor_that_is_not_a_directory() {
    let imports = [
        ("path_create_directory", "i32 i32 i32"),
        ("path_unlink_file", "i32 i32 i32"),
    ];
    let data = [(100, "d")];
    let ran = run(
        &imports,
        &data,
        "(call $path_create_directory (i32.const 1) (i32.const 100) (i32.const 1))",
    );
    assert_eq!(ran.errno(), Errno::NOTDIR);
    let ran = run(
        &imports,
        &data,
        "(call $path_unlink_file (i32.const 30) (i32.const 100) (i32.const 1))",
    );
    assert_eq!(ran.errno(), Errno::BADF);
}

// ---- sockets: a web dyno's listener at fd 4 and the connections accepted on it

/// Every import the socket tests use.
const SOCKET_IMPORTS: [(&str, &str); 14] = [
    ("sock_accept", "i32 i32 i32"),
    ("sock_recv", "i32 i32 i32 i32 i32 i32"),
    ("sock_send", "i32 i32 i32 i32 i32"),
    ("sock_shutdown", TWO),
    ("fd_read", "i32 i32 i32 i32"),
    ("fd_write", "i32 i32 i32 i32"),
    ("fd_close", "i32"),
    ("fd_seek", "i32 i64 i32 i32"),
    ("fd_fdstat_get", TWO),
    ("fd_fdstat_set_flags", TWO),
    ("fd_filestat_get", TWO),
    ("fd_prestat_get", TWO),
    ("fd_advise", "i32 i64 i64 i32"),
    ("poll_oneoff", "i32 i32 i32 i32"),
];

// Memory of the socket tests: iovecs at 0 (→ 100) and 8 (→ 200), counts at 24, roflags at 28, fdstat at 32,
// filestat at 64, read buffer at 100, data to send at 200, subscriptions at 300, events at 600, their count at 900,
// and the errno of each step at 1000 + 4 × step.
const IOV_IN: u32 = 0;
const IOV_OUT: u32 = 8;
const COUNT: usize = 24;
const ROFLAGS: usize = 28;
const FDSTAT: usize = 32;
const FILESTAT: usize = 64;
const SUBS: u32 = 300;
const EVENTS: usize = 600;
const NEVENTS: usize = 900;

/// An iovec as a WAT data string.
fn iovec(buf: u32, len: u32) -> String {
    [buf, len]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// The data segments: a read iovec of `read_len` bytes and a write iovec over `send`.
fn segments(read_len: u32, send: &'static str) -> Vec<(u32, String)> {
    vec![
        (IOV_IN, iovec(100, read_len)),
        (IOV_OUT, iovec(200, send.len() as u32)),
        (200, send.to_string()),
    ]
}

/// Runs `steps` (calls returning an errno) in order, recording each errno; returns what the guest left.
fn steps(listener: Option<&Listener>, data: &[(u32, String)], steps: &[String]) -> Ran {
    let body: String = steps
        .iter()
        .enumerate()
        .map(|(i, call)| format!("(i32.store (i32.const {}) {call})\n", 1000 + 4 * i))
        .collect();
    let data: Vec<(u32, &str)> = data.iter().map(|(at, s)| (*at, s.as_str())).collect();
    run_with(
        listener,
        &SOCKET_IMPORTS,
        &data,
        &format!("{body} (i32.const 0)"),
    )
}

impl Ran {
    fn step(&self, i: usize) -> Errno {
        Errno(self.u32(1000 + 4 * i) as u16)
    }
    fn steps(&self, n: usize) -> Vec<Errno> {
        (0..n).map(|i| self.step(i)).collect()
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.memory[at..at + 2].try_into().unwrap())
    }
}

/// A step that saves `value` at `at` (before a later step overwrites its source) and answers 0.
fn keep(at: u32, value: &str) -> String {
    format!("(block (result i32) (i32.store (i32.const {at}) {value}) (i32.const 0))")
}

fn accept(fd: u32, flags: u32) -> String {
    format!("(call $sock_accept (i32.const {fd}) (i32.const {flags}) (i32.const 16))")
}
fn recv(fd: u32, flags: u32) -> String {
    format!(
        "(call $sock_recv (i32.const {fd}) (i32.const {IOV_IN}) (i32.const 1) (i32.const {flags}) (i32.const {COUNT}) (i32.const {ROFLAGS}))"
    )
}
fn send(fd: u32, flags: u32) -> String {
    format!(
        "(call $sock_send (i32.const {fd}) (i32.const {IOV_OUT}) (i32.const 1) (i32.const {flags}) (i32.const {COUNT}))"
    )
}
fn shutdown(fd: u32, how: u32) -> String {
    format!("(call $sock_shutdown (i32.const {fd}) (i32.const {how}))")
}
fn fd_read(fd: u32) -> String {
    format!(
        "(call $fd_read (i32.const {fd}) (i32.const {IOV_IN}) (i32.const 1) (i32.const {COUNT}))"
    )
}
fn fd_write(fd: u32) -> String {
    format!(
        "(call $fd_write (i32.const {fd}) (i32.const {IOV_OUT}) (i32.const 1) (i32.const {COUNT}))"
    )
}
fn set_flags(fd: u32, flags: u32) -> String {
    format!("(call $fd_fdstat_set_flags (i32.const {fd}) (i32.const {flags}))")
}

/// A `poll_oneoff` over fd subscriptions `(kind, fd)` and an optional relative clock (ns); userdata is the index.
fn poll(fds: &[(u8, u32)], clock: Option<u64>) -> String {
    let mut wat = String::new();
    let mut n = 0;
    for &(kind, fd) in fds {
        let at = SUBS + 48 * n;
        wat += &format!(
            "(i64.store (i32.const {at}) (i64.const {n})) (i32.store8 (i32.const {}) (i32.const {kind})) (i32.store (i32.const {}) (i32.const {fd}))",
            at + 8,
            at + 16
        );
        n += 1;
    }
    if let Some(nanos) = clock {
        let at = SUBS + 48 * n;
        wat += &format!(
            "(i64.store (i32.const {at}) (i64.const {n})) (i32.store8 (i32.const {}) (i32.const 0)) (i32.store (i32.const {}) (i32.const 1)) (i64.store (i32.const {}) (i64.const {nanos}))",
            at + 8,
            at + 16,
            at + 24
        );
        n += 1;
    }
    format!(
        "(block (result i32) {wat} (call $poll_oneoff (i32.const {SUBS}) (i32.const {EVENTS}) (i32.const {n}) (i32.const {NEVENTS})))"
    )
}

/// One event `poll_oneoff` wrote: (userdata, error, type, nbytes, flags).
fn event(ran: &Ran, i: usize) -> (u64, Errno, u8, u64, u16) {
    let at = EVENTS + 32 * i;
    (
        ran.u64(at),
        Errno(ran.u16(at + 8)),
        ran.memory[at + 10],
        ran.u64(at + 16),
        ran.u16(at + 24),
    )
}

/// Runs `future` to completion on a runtime of its own (the host side of a test, outside the guest's).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A listener with one connection queued, on which the host already sent `request`.
fn queued(request: &[u8]) -> (Listener, Connection) {
    let listener = Listener::new(4);
    let mut host = block_on(listener.connect()).unwrap();
    block_on(host.write_all(request)).unwrap();
    (listener, host)
}

/// Everything the guest sent on `host`'s connection (its socket is gone once the guest ran).
fn received(mut host: Connection) -> Vec<u8> {
    let mut got = Vec::new();
    block_on(host.read_to_end(&mut got)).unwrap();
    got
}

/// Runs `then` on `value` on another thread after `delay` (a peer acting while the guest waits).
fn later<T: Send + 'static, R: Send + 'static>(
    delay: Duration,
    value: T,
    then: impl FnOnce(T) -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        then(value)
    })
}

#[test]
fn the_listener_at_fd_4() {
    let listener = Listener::new(4);
    let ran = steps(
        Some(&listener),
        &segments(16, "x"),
        &[
            "(call $fd_prestat_get (i32.const 4) (i32.const 16))".into(),
            format!("(call $fd_fdstat_get (i32.const 4) (i32.const {FDSTAT}))"),
            format!("(call $fd_filestat_get (i32.const 4) (i32.const {FILESTAT}))"),
            fd_read(4),
            fd_write(4),
            recv(4, 0),
            send(4, 0),
            shutdown(4, abi::SHUT_RD),
            "(call $fd_seek (i32.const 4) (i64.const 0) (i32.const 0) (i32.const 16))".into(),
            set_flags(4, u32::from(abi::FDFLAGS_APPEND)),
        ],
    );
    assert_eq!(
        ran.steps(10),
        [
            Errno::BADF, // not a preopen: libc's scan stops here
            Errno::SUCCESS,
            Errno::SUCCESS,
            Errno::NOTCONN,
            Errno::NOTCONN,
            Errno::NOTCONN,
            Errno::NOTCONN,
            Errno::NOTCONN,
            Errno::SPIPE,
            Errno::INVAL, // sockets take only NONBLOCK
        ]
    );
    assert_eq!(ran.memory[FDSTAT], abi::FILETYPE_SOCKET_STREAM);
    assert_eq!(
        ran.u16(FDSTAT + 2),
        abi::FDFLAGS_NONBLOCK,
        "it starts non-blocking"
    );
    assert_ne!(ran.u64(FDSTAT + 8) & rights::SOCK_ACCEPT, 0);
    assert_eq!(ran.memory[FILESTAT + 16], abi::FILETYPE_SOCKET_STREAM);

    // Without a listener there is nothing at fd 4.
    let ran = steps(
        None,
        &[],
        &[format!(
            "(call $fd_fdstat_get (i32.const 4) (i32.const {FDSTAT}))"
        )],
    );
    assert_eq!(ran.step(0), Errno::BADF);
}

#[test]
fn sock_accept() {
    let (listener, host) = queued(b"");
    let ran = steps(
        Some(&listener),
        &[],
        &[
            accept(9, 0),
            accept(3, 0),
            accept(4, u32::from(abi::FDFLAGS_APPEND)),
            "(call $sock_accept (i32.const 4) (i32.const 0) (i32.const 65534))".into(),
            accept(4, u32::from(abi::FDFLAGS_NONBLOCK)),
            format!("(call $fd_fdstat_get (i32.load (i32.const 16)) (i32.const {FDSTAT}))"),
            accept(4, 0),
            accept(5, 0),
        ],
    );
    assert_eq!(
        ran.steps(8),
        [
            Errno::BADF,
            Errno::NOTSOCK,
            Errno::INVAL,
            Errno::FAULT,
            Errno::SUCCESS, // the connection was not lost to the bad pointer
            Errno::SUCCESS,
            Errno::AGAIN, // non-blocking listener, nothing queued
            Errno::INVAL, // a connected socket does not listen
        ]
    );
    assert_eq!(ran.u32(16), 5, "the lowest free descriptor");
    assert_eq!(ran.memory[FDSTAT], abi::FILETYPE_SOCKET_STREAM);
    assert_eq!(
        ran.u16(FDSTAT + 2),
        abi::FDFLAGS_NONBLOCK,
        "the accept flags are the new socket's"
    );
    assert_ne!(ran.u64(FDSTAT + 8) & rights::SOCK_SHUTDOWN, 0);
    drop(host);

    // A closed listener answers EINVAL, as a shut-down listening socket does.
    listener.close();
    let ran = steps(Some(&listener), &[], &[accept(4, 0)]);
    assert_eq!(ran.step(0), Errno::INVAL);
}

#[test]
fn a_blocking_accept_and_read_wait_for_the_peer() {
    let listener = Listener::new(4);
    let peer = later(Duration::from_millis(100), listener.clone(), |listener| {
        block_on(async {
            let mut host = listener.connect().await.unwrap();
            host.write_all(b"late").await.unwrap();
            host
        })
    });
    let started = Instant::now();
    let ran = steps(
        Some(&listener),
        &segments(16, ""),
        &[set_flags(4, 0), accept(4, 0), fd_read(5)],
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(ran.steps(3), [Errno::SUCCESS; 3]);
    assert_eq!(ran.bytes(100, ran.u32(COUNT) as usize), b"late");
    drop(peer.join().unwrap());
}

#[test]
fn sock_recv() {
    let (listener, host) = queued(b"hello world");
    // The peer closes after sending: the guest reads what was sent, then end of stream.
    drop(host);
    let ran = steps(
        Some(&listener),
        &segments(5, ""),
        &[
            recv(9, 0),
            recv(0, 0),
            accept(4, 0),
            recv(5, 4),
            format!(
                "(i32.store16 (i32.const {ROFLAGS}) (i32.const -1)) {}",
                recv(5, abi::RECV_PEEK)
            ),
        ],
    );
    assert_eq!(
        ran.steps(5),
        [
            Errno::BADF,
            Errno::NOTSOCK,
            Errno::SUCCESS,
            Errno::INVAL,
            Errno::SUCCESS
        ]
    );
    assert_eq!(ran.bytes(100, ran.u32(COUNT) as usize), b"hello");
    assert_eq!(ran.u16(ROFLAGS), 0, "roflags are written");

    // WAITALL reads the whole length, or up to end of stream; then reads give 0 bytes.
    let (listener, host) = queued(b"hello world");
    drop(host);
    let ran = steps(
        Some(&listener),
        &segments(32, ""),
        &[
            accept(4, 0),
            recv(5, abi::RECV_PEEK),
            recv(5, abi::RECV_WAITALL),
            keep(20, &format!("(i32.load (i32.const {COUNT}))")),
            recv(5, 0),
        ],
    );
    assert_eq!(ran.steps(3), [Errno::SUCCESS; 3]);
    assert_eq!(ran.u32(20), 11);
    assert_eq!(ran.bytes(100, 11), b"hello world");
    assert_eq!((ran.step(4), ran.u32(COUNT)), (Errno::SUCCESS, 0));

    // Non-blocking with nothing buffered: EAGAIN, from sock_recv and fd_read alike.
    let (listener, host) = queued(b"");
    let ran = steps(
        Some(&listener),
        &segments(8, ""),
        &[
            accept(4, u32::from(abi::FDFLAGS_NONBLOCK)),
            recv(5, 0),
            fd_read(5),
        ],
    );
    assert_eq!(ran.steps(3), [Errno::SUCCESS, Errno::AGAIN, Errno::AGAIN]);
    drop(host);
}

#[test]
fn sock_send_and_fd_write() {
    let (listener, host) = queued(b"");
    let ran = steps(
        Some(&listener),
        &segments(0, "pong"),
        &[
            send(9, 0),
            send(1, 0),
            accept(4, 0),
            send(5, 1),
            send(5, 0),
            fd_write(5),
        ],
    );
    assert_eq!(
        ran.steps(6),
        [
            Errno::BADF,
            Errno::NOTSOCK,
            Errno::SUCCESS,
            Errno::INVAL, // preview 1 has no send flags
            Errno::SUCCESS,
            Errno::SUCCESS
        ]
    );
    assert_eq!(ran.u32(COUNT), 4);
    assert_eq!(received(host), b"pongpong");

    // A peer that went away is a broken pipe, never a trap.
    let (listener, host) = queued(b"");
    drop(host);
    let ran = steps(
        Some(&listener),
        &segments(0, "pong"),
        &[accept(4, 0), send(5, 0), fd_write(5)],
    );
    assert_eq!(ran.steps(3), [Errno::SUCCESS, Errno::PIPE, Errno::PIPE]);
}

#[test]
fn sock_shutdown() {
    let (listener, host) = queued(b"ignored");
    let ran = steps(
        Some(&listener),
        &segments(16, "pong"),
        &[
            shutdown(9, abi::SHUT_WR),
            shutdown(1, abi::SHUT_WR),
            accept(4, 0),
            shutdown(5, 0),
            shutdown(5, 4),
            send(5, 0),
            shutdown(5, abi::SHUT_WR),
            send(5, 0),
            shutdown(5, abi::SHUT_RD),
            recv(5, 0),
        ],
    );
    assert_eq!(
        ran.steps(10),
        [
            Errno::BADF,
            Errno::NOTSOCK,
            Errno::SUCCESS,
            Errno::INVAL,
            Errno::INVAL,
            Errno::SUCCESS,
            Errno::SUCCESS,
            Errno::PIPE, // nothing is written after SHUT_WR
            Errno::SUCCESS,
            Errno::SUCCESS,
        ]
    );
    assert_eq!(ran.u32(COUNT), 0, "after SHUT_RD, end of stream");
    assert_eq!(received(host), b"pong");
}

#[test]
fn descriptor_calls_on_a_connected_socket() {
    let (listener, host) = queued(b"");
    let ran = steps(
        Some(&listener),
        &[],
        &[
            accept(4, 0),
            format!("(call $fd_filestat_get (i32.const 5) (i32.const {FILESTAT}))"),
            "(call $fd_seek (i32.const 5) (i64.const 0) (i32.const 1) (i32.const 16))".into(),
            "(call $fd_advise (i32.const 5) (i64.const 0) (i64.const 0) (i32.const 0))".into(),
            set_flags(5, u32::from(abi::FDFLAGS_APPEND)),
            set_flags(5, u32::from(abi::FDFLAGS_NONBLOCK)),
            format!("(call $fd_fdstat_get (i32.const 5) (i32.const {FDSTAT}))"),
            "(call $fd_close (i32.const 5))".into(),
            "(call $fd_close (i32.const 5))".into(),
        ],
    );
    assert_eq!(
        ran.steps(9),
        [
            Errno::SUCCESS,
            Errno::SUCCESS,
            Errno::SPIPE,
            Errno::SPIPE,
            Errno::INVAL,
            Errno::SUCCESS,
            Errno::SUCCESS,
            Errno::SUCCESS,
            Errno::BADF,
        ]
    );
    assert_eq!(ran.memory[FILESTAT + 16], abi::FILETYPE_SOCKET_STREAM);
    assert_eq!(ran.u16(FDSTAT + 2), abi::FDFLAGS_NONBLOCK);
    assert!(received(host).is_empty());
}

/// Of several connections with a request waiting, a poll answers the one whose request came first, and the next
/// poll the next: a guest serves them in order, however it runs a batch. One answered and left unread waits behind
/// the others.
#[test]
fn poll_oneoff_answers_the_socket_that_has_waited_longest() {
    const READ: u8 = abi::EVENTTYPE_FD_READ;
    let listener = Listener::new(4);
    let mut first = block_on(listener.connect()).unwrap();
    let mut second = block_on(listener.connect()).unwrap();
    block_on(second.write_all(b"bb")).unwrap();
    block_on(first.write_all(b"a")).unwrap();
    let answered = |at: u32| {
        [
            keep(at, &format!("(i32.load (i32.const {NEVENTS}))")),
            keep(at + 4, &format!("(i32.load (i32.const {EVENTS}))")),
        ]
    };
    let both = poll(&[(READ, 5), (READ, 6)], None);
    let mut calls = vec![accept(4, 0), accept(4, 0), both.clone()];
    calls.extend(answered(40));
    calls.push(both.clone());
    calls.extend(answered(48));
    calls.extend([recv(5, 0), both]);
    let ran = steps(Some(&listener), &segments(16, ""), &calls);
    assert_eq!(ran.steps(calls.len()), vec![Errno::SUCCESS; calls.len()]);
    assert_eq!(
        (ran.u32(40), ran.u32(44)),
        (1, 1),
        "one event: fd 6, written to first"
    );
    assert_eq!(
        (ran.u32(48), ran.u32(52)),
        (1, 0),
        "then fd 5, though fd 6 was not read"
    );
    assert_eq!(ran.u32(NEVENTS), 1);
    assert_eq!(
        event(&ran, 0),
        (1, Errno::SUCCESS, READ, 2, 0),
        "fd 5 read: fd 6 again"
    );
}

#[test]
fn poll_oneoff_on_sockets() {
    const READ: u8 = abi::EVENTTYPE_FD_READ;
    const WRITE: u8 = abi::EVENTTYPE_FD_WRITE;
    let (listener, host) = queued(b"abc");
    let ran = steps(
        Some(&listener),
        &[],
        &[
            poll(&[(READ, 4)], None),
            keep(20, &format!("(i32.load (i32.const {NEVENTS}))")),
            accept(4, 0),
            poll(&[(READ, 5), (WRITE, 5), (WRITE, 4)], None),
        ],
    );
    assert_eq!(ran.steps(4), [Errno::SUCCESS; 4]);
    assert_eq!(
        ran.u32(20),
        1,
        "the listener is readable: a connection is queued"
    );
    assert_eq!(ran.u32(NEVENTS), 3);
    assert_eq!(
        event(&ran, 0),
        (
            1,
            Errno::SUCCESS,
            WRITE,
            crate::runtime::net::BUFFER as u64,
            0
        )
    );
    assert_eq!(
        event(&ran, 1).1,
        Errno::NOTCONN,
        "a listener is never writable"
    );
    assert_eq!(
        event(&ran, 2),
        (0, Errno::SUCCESS, READ, 3, 0),
        "3 bytes to read"
    );

    // The peer went away: readable and writable, with the hangup flag.
    drop(host);
    let (listener, host) = queued(b"");
    drop(host);
    let ran = steps(
        Some(&listener),
        &[],
        &[accept(4, 0), poll(&[(READ, 5), (WRITE, 5)], None)],
    );
    assert_eq!(ran.u32(NEVENTS), 2);
    assert_eq!(
        event(&ran, 0),
        (1, Errno::SUCCESS, WRITE, 0, abi::EVENTRW_HANGUP)
    );
    assert_eq!(
        event(&ran, 1),
        (0, Errno::SUCCESS, READ, 0, abi::EVENTRW_HANGUP)
    );
}

#[test]
fn poll_oneoff_wakes_when_a_connection_or_data_arrives() {
    const READ: u8 = abi::EVENTTYPE_FD_READ;
    const TEN_SECONDS: u64 = 10_000_000_000;
    let (listener, host) = queued(b"");
    let peer = later(Duration::from_millis(100), host, |mut host| {
        block_on(host.write_all(b"data")).unwrap();
        host
    });
    let second = later(Duration::from_millis(200), listener.clone(), |listener| {
        block_on(listener.connect()).unwrap()
    });
    let started = Instant::now();
    let ran = steps(
        Some(&listener),
        &[],
        &[
            accept(4, 0),
            poll(&[(READ, 5)], Some(TEN_SECONDS)),
            keep(20, &format!("(i32.load8_u (i32.const {}))", EVENTS + 10)),
            poll(&[(READ, 4)], Some(TEN_SECONDS)),
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(5), "woken early");
    assert_eq!(ran.steps(4), [Errno::SUCCESS; 4]);
    assert_eq!(ran.u32(20), u32::from(READ), "the socket, not the clock");
    assert_eq!(ran.u32(NEVENTS), 1);
    assert_eq!(
        event(&ran, 0),
        (0, Errno::SUCCESS, READ, 1, 0),
        "the listener"
    );
    drop((peer.join().unwrap(), second.join().unwrap()));
}

/// Error cases of preview-1 functions, each answered as the WASI spec and wasmtime's host answer it. A case is
/// setup calls (their results dropped) and the call whose errno is checked; descriptor numbers a setup call
/// opened are read back from memory at 16.
#[test]
fn errno_conformance() {
    let imports = [
        PATH_OPEN,
        ("path_symlink", "i32 i32 i32 i32 i32"),
        ("path_link", "i32 i32 i32 i32 i32 i32 i32"),
        ("path_rename", "i32 i32 i32 i32 i32 i32"),
        ("path_create_directory", "i32 i32 i32"),
        ("path_remove_directory", "i32 i32 i32"),
        ("path_unlink_file", "i32 i32 i32"),
        ("fd_filestat_set_size", "i32 i64"),
        ("fd_seek", "i32 i64 i32 i32"),
        ("fd_read", "i32 i32 i32 i32"),
        ("fd_readdir", "i32 i32 i32 i64 i32"),
        ("fd_close", "i32"),
        ("clock_time_get", "i32 i64 i32"),
        ("sock_shutdown", TWO),
    ];
    let iov = iovec(400, 10);
    let data = [
        (0, iov.as_str()),
        (100, "hello.txt"),
        (120, "/hello.txt"),
        (140, "/etc/passwd"),
        (160, "link"),
        (170, "missing/"),
        (180, "."),
        (190, "newdir"),
    ];
    const FD: &str = "(i32.load (i32.const 16))";
    let open = |path: u32, len: u32, oflags: u32, base: u64, inheriting: u64| {
        format!(
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const {path}) (i32.const {len}) \
             (i32.const {oflags}) (i64.const {base}) (i64.const {inheriting}) (i32.const 0) (i32.const 16))"
        )
    };
    let read_write = rights::FD_READ | rights::FD_WRITE;
    // A directory that lets files be opened and listed, not truncated.
    let no_truncate = (1 << 13) | (1 << 14);
    let cases: Vec<(&str, Vec<String>, String, Errno)> = vec![
        (
            "path_open of an absolute path",
            vec![],
            open(120, 10, 0, rights::FD_READ, 0),
            Errno::PERM,
        ),
        (
            "path_symlink to an absolute target",
            vec![],
            "(call $path_symlink (i32.const 140) (i32.const 11) (i32.const 3) (i32.const 160) (i32.const 4))"
                .into(),
            Errno::PERM,
        ),
        (
            "path_symlink at a missing directory (trailing slash)",
            vec![],
            "(call $path_symlink (i32.const 100) (i32.const 9) (i32.const 3) (i32.const 170) (i32.const 8))"
                .into(),
            Errno::NOENT,
        ),
        (
            "path_link to a missing directory (trailing slash)",
            vec![],
            "(call $path_link (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 3) \
             (i32.const 170) (i32.const 8))"
                .into(),
            Errno::NOENT,
        ),
        (
            "path_rename to a missing directory (trailing slash)",
            vec![],
            "(call $path_rename (i32.const 3) (i32.const 100) (i32.const 9) (i32.const 3) (i32.const 170) \
             (i32.const 8))"
                .into(),
            Errno::NOENT,
        ),
        (
            "path_open of a directory for writing",
            vec![],
            open(180, 1, abi::O_DIRECTORY as u32, read_write, 0),
            Errno::ISDIR,
        ),
        (
            "O_TRUNC through a directory without PATH_FILESTAT_SET_SIZE",
            vec![open(180, 1, abi::O_DIRECTORY as u32, no_truncate, rights::FILE)],
            format!(
                "(call $path_open {FD} (i32.const 0) (i32.const 100) (i32.const 9) (i32.const {}) \
                 (i64.const {read_write}) (i64.const 0) (i32.const 0) (i32.const 20))",
                abi::O_TRUNC
            ),
            Errno::NOTCAPABLE,
        ),
        (
            "fd_filestat_set_size without FD_FILESTAT_SET_SIZE",
            vec![open(100, 9, 0, read_write, 0)],
            format!("(call $fd_filestat_set_size {FD} (i64.const 0))"),
            Errno::NOTCAPABLE,
        ),
        (
            "fd_filestat_set_size on a descriptor not open for writing",
            vec![open(100, 9, 0, rights::FD_READ | rights::FD_FILESTAT_SET_SIZE, 0)],
            format!("(call $fd_filestat_set_size {FD} (i64.const 0))"),
            Errno::BADF,
        ),
        (
            "sock_shutdown on stdout",
            vec![],
            "(call $sock_shutdown (i32.const 1) (i32.const 2))".into(),
            Errno::NOTSOCK,
        ),
        (
            "sock_shutdown on a closed descriptor",
            vec![],
            "(call $sock_shutdown (i32.const 50) (i32.const 2))".into(),
            Errno::BADF,
        ),
        (
            "fd_seek with an unknown whence",
            vec![OPEN_HELLO.into()],
            format!("(call $fd_seek {FD} (i64.const 0) (i32.const 9) (i32.const 24))"),
            Errno::INVAL,
        ),
        (
            "clock_time_get of an unknown clock",
            vec![],
            "(call $clock_time_get (i32.const 99) (i64.const 0) (i32.const 24))".into(),
            Errno::INVAL,
        ),
        (
            "fd_readdir on a file",
            vec![OPEN_HELLO.into()],
            format!("(call $fd_readdir {FD} (i32.const 400) (i32.const 100) (i64.const 0) (i32.const 24))"),
            Errno::NOTDIR,
        ),
        (
            "path_create_directory where a file is",
            vec![],
            "(call $path_create_directory (i32.const 3) (i32.const 100) (i32.const 9))".into(),
            Errno::EXIST,
        ),
        (
            "path_remove_directory of a file",
            vec![],
            "(call $path_remove_directory (i32.const 3) (i32.const 100) (i32.const 9))".into(),
            Errno::NOTDIR,
        ),
        (
            "path_unlink_file of a directory",
            vec!["(call $path_create_directory (i32.const 3) (i32.const 190) (i32.const 6))".into()],
            "(call $path_unlink_file (i32.const 3) (i32.const 190) (i32.const 6))".into(),
            Errno::ISDIR,
        ),
        (
            "fd_read of a directory",
            vec![],
            "(call $fd_read (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 24))".into(),
            Errno::ISDIR,
        ),
        (
            "fd_close of a descriptor never opened",
            vec![],
            "(call $fd_close (i32.const 77))".into(),
            Errno::BADF,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, setup, call, want) in &cases {
        let body: String = setup
            .iter()
            .map(|s| format!("(drop {s})\n"))
            .collect::<String>()
            + call;
        let got = run(&imports, &data, &body).errno();
        if got != *want {
            wrong.push(format!("{what}: {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every preview-1 function's error cases, as the spec and wasmtime's host give them: a descriptor that is not open
/// (77) is `BADF` everywhere one is taken; an out-param or buffer past the guest's memory (one page: `0xFFFF0`) is
/// `FAULT`; and each function's own refusals (a bad clock, whence or flag, a descriptor of the wrong kind, a path
/// that is missing or exists).
#[test]
fn every_function_refuses_what_the_spec_refuses() {
    use Errno as E;
    const I64: &str = "i64";
    let signatures: &[(&str, &[&str])] = &[
        ("args_get", &["i32", "i32"]),
        ("args_sizes_get", &["i32", "i32"]),
        ("environ_get", &["i32", "i32"]),
        ("environ_sizes_get", &["i32", "i32"]),
        ("clock_res_get", &["i32", "i32"]),
        ("clock_time_get", &["i32", I64, "i32"]),
        ("fd_advise", &["i32", I64, I64, "i32"]),
        ("fd_allocate", &["i32", I64, I64]),
        ("fd_close", &["i32"]),
        ("fd_datasync", &["i32"]),
        ("fd_fdstat_get", &["i32", "i32"]),
        ("fd_fdstat_set_flags", &["i32", "i32"]),
        ("fd_fdstat_set_rights", &["i32", I64, I64]),
        ("fd_filestat_get", &["i32", "i32"]),
        ("fd_filestat_set_size", &["i32", I64]),
        ("fd_filestat_set_times", &["i32", I64, I64, "i32"]),
        ("fd_pread", &["i32", "i32", "i32", I64, "i32"]),
        ("fd_prestat_get", &["i32", "i32"]),
        ("fd_prestat_dir_name", &["i32", "i32", "i32"]),
        ("fd_pwrite", &["i32", "i32", "i32", I64, "i32"]),
        ("fd_read", &["i32", "i32", "i32", "i32"]),
        ("fd_readdir", &["i32", "i32", "i32", I64, "i32"]),
        ("fd_renumber", &["i32", "i32"]),
        ("fd_seek", &["i32", I64, "i32", "i32"]),
        ("fd_sync", &["i32"]),
        ("fd_tell", &["i32", "i32"]),
        ("fd_write", &["i32", "i32", "i32", "i32"]),
        ("path_create_directory", &["i32", "i32", "i32"]),
        ("path_filestat_get", &["i32", "i32", "i32", "i32", "i32"]),
        (
            "path_filestat_set_times",
            &["i32", "i32", "i32", "i32", I64, I64, "i32"],
        ),
        (
            "path_link",
            &["i32", "i32", "i32", "i32", "i32", "i32", "i32"],
        ),
        (
            "path_open",
            &["i32", "i32", "i32", "i32", "i32", I64, I64, "i32", "i32"],
        ),
        ("path_readlink", &["i32", "i32", "i32", "i32", "i32", "i32"]),
        ("path_remove_directory", &["i32", "i32", "i32"]),
        ("path_rename", &["i32", "i32", "i32", "i32", "i32", "i32"]),
        ("path_symlink", &["i32", "i32", "i32", "i32", "i32"]),
        ("path_unlink_file", &["i32", "i32", "i32"]),
        ("poll_oneoff", &["i32", "i32", "i32", "i32"]),
        ("proc_raise", &["i32"]),
        ("random_get", &["i32", "i32"]),
        ("sock_accept", &["i32", "i32", "i32"]),
        ("sock_recv", &["i32", "i32", "i32", "i32", "i32", "i32"]),
        ("sock_send", &["i32", "i32", "i32", "i32", "i32"]),
        ("sock_shutdown", &["i32", "i32"]),
    ];
    // Memory: an iovec at 0 over 400..410; "hello.txt" at 100 (a file), "missing" at 120, "." at 140.
    const FAR: i64 = 0xFFFF0;
    const BAD: i64 = 77;
    let cases: &[(&str, &[i64], Errno)] = &[
        ("args_get", &[FAR, FAR], E::FAULT),
        ("args_sizes_get", &[FAR, 16], E::FAULT),
        ("environ_get", &[FAR, FAR], E::FAULT),
        ("environ_sizes_get", &[16, FAR], E::FAULT),
        ("clock_res_get", &[9, 16], E::INVAL),
        ("clock_res_get", &[1, FAR], E::FAULT),
        ("clock_time_get", &[9, 0, 16], E::INVAL),
        ("clock_time_get", &[0, 0, FAR], E::FAULT),
        ("fd_advise", &[BAD, 0, 0, 0], E::BADF),
        ("fd_allocate", &[BAD, 0, 1], E::BADF),
        ("fd_close", &[BAD], E::BADF),
        ("fd_datasync", &[BAD], E::BADF),
        ("fd_fdstat_get", &[BAD, 16], E::BADF),
        ("fd_fdstat_get", &[1, FAR], E::FAULT),
        ("fd_fdstat_set_flags", &[BAD, 0], E::BADF),
        ("fd_fdstat_set_rights", &[BAD, 0, 0], E::BADF),
        // Rights only shrink.
        ("fd_fdstat_set_rights", &[3, -1, -1], E::NOTCAPABLE),
        ("fd_filestat_get", &[BAD, 16], E::BADF),
        ("fd_filestat_set_size", &[BAD, 0], E::BADF),
        ("fd_filestat_set_times", &[BAD, 0, 0, 0], E::BADF),
        // A time both given and "now".
        ("fd_filestat_set_times", &[3, 0, 0, 3], E::INVAL),
        ("fd_pread", &[BAD, 0, 1, 0, 16], E::BADF),
        ("fd_prestat_get", &[BAD, 16], E::BADF),
        // Standard streams are no preopened directories.
        ("fd_prestat_get", &[0, 16], E::BADF),
        ("fd_prestat_get", &[3, FAR], E::FAULT),
        ("fd_prestat_dir_name", &[BAD, 200, 8], E::BADF),
        ("fd_pwrite", &[BAD, 0, 1, 0, 16], E::BADF),
        ("fd_read", &[BAD, 0, 1, 16], E::BADF),
        // Standard output is not for reading, standard input not for writing.
        ("fd_read", &[1, 0, 1, 16], E::BADF),
        ("fd_write", &[0, 0, 1, 16], E::BADF),
        ("fd_write", &[BAD, 0, 1, 16], E::BADF),
        ("fd_write", &[1, FAR, 1, 16], E::FAULT),
        ("fd_readdir", &[BAD, 200, 64, 0, 16], E::BADF),
        ("fd_renumber", &[BAD, 3], E::BADF),
        ("fd_renumber", &[3, BAD], E::BADF),
        ("fd_seek", &[BAD, 0, 0, 16], E::BADF),
        // Streams have no position.
        ("fd_seek", &[1, 0, 0, 16], E::SPIPE),
        ("fd_sync", &[BAD], E::BADF),
        ("fd_tell", &[BAD, 16], E::BADF),
        ("path_create_directory", &[BAD, 140, 1], E::BADF),
        ("path_create_directory", &[3, 100, 9], E::EXIST),
        ("path_filestat_get", &[BAD, 0, 100, 9, 16], E::BADF),
        ("path_filestat_get", &[3, 0, 120, 7, 16], E::NOENT),
        ("path_filestat_get", &[3, 0, 100, 9, FAR], E::FAULT),
        (
            "path_filestat_set_times",
            &[BAD, 0, 100, 9, 0, 0, 0],
            E::BADF,
        ),
        (
            "path_filestat_set_times",
            &[3, 0, 120, 7, 0, 0, 0],
            E::NOENT,
        ),
        ("path_link", &[BAD, 0, 100, 9, 3, 120, 7], E::BADF),
        ("path_link", &[3, 0, 120, 7, 3, 140, 1], E::NOENT),
        ("path_open", &[BAD, 0, 100, 9, 0, 0, 0, 0, 16], E::BADF),
        ("path_open", &[3, 0, 120, 7, 0, 0, 0, 0, 16], E::NOENT),
        // O_CREAT|O_EXCL of a file that exists.
        ("path_open", &[3, 0, 100, 9, 5, 0, 0, 0, 16], E::EXIST),
        // A path past the guest's memory.
        ("path_open", &[3, 0, FAR, 9, 0, 0, 0, 0, 16], E::FAULT),
        ("path_readlink", &[BAD, 100, 9, 200, 64, 16], E::BADF),
        // A regular file is no symbolic link.
        ("path_readlink", &[3, 100, 9, 200, 64, 16], E::INVAL),
        ("path_remove_directory", &[BAD, 140, 1], E::BADF),
        ("path_remove_directory", &[3, 100, 9], E::NOTDIR),
        ("path_rename", &[BAD, 100, 9, 3, 120, 7], E::BADF),
        ("path_rename", &[3, 120, 7, 3, 100, 9], E::NOENT),
        ("path_symlink", &[100, 9, BAD, 120, 7], E::BADF),
        ("path_symlink", &[120, 7, 3, 100, 9], E::EXIST),
        ("path_unlink_file", &[BAD, 100, 9], E::BADF),
        ("path_unlink_file", &[3, 120, 7], E::NOENT),
        ("path_unlink_file", &[3, 140, 1], E::ISDIR),
        ("poll_oneoff", &[200, 300, 0, 16], E::INVAL),
        ("poll_oneoff", &[FAR, 300, 1, 16], E::FAULT),
        ("proc_raise", &[2], E::NOTSUP),
        ("random_get", &[FAR, 16], E::FAULT),
        ("sock_accept", &[BAD, 0, 16], E::BADF),
        // A file is no socket.
        ("sock_accept", &[3, 0, 16], E::NOTSOCK),
        ("sock_recv", &[BAD, 0, 1, 0, 16, 20], E::BADF),
        ("sock_recv", &[3, 0, 1, 0, 16, 20], E::NOTSOCK),
        ("sock_send", &[BAD, 0, 1, 0, 16], E::BADF),
        ("sock_send", &[3, 0, 1, 0, 16], E::NOTSOCK),
        ("sock_shutdown", &[BAD, 2], E::BADF),
    ];
    // Every function of the ABI (but proc_exit and sched_yield, which cannot fail) has a case.
    for (name, _) in signatures {
        assert!(cases.iter().any(|(f, ..)| f == name), "{name} has no case");
    }
    let iov = iovec(400, 10);
    let data = [
        (0, iov.as_str()),
        (100, "hello.txt"),
        (120, "missing"),
        (140, "."),
    ];
    let mut wrong = Vec::new();
    for (name, args, want) in cases {
        let (_, params) = signatures.iter().find(|(f, _)| f == name).unwrap();
        assert_eq!(params.len(), args.len(), "{name}: arguments");
        let call: Vec<String> = params
            .iter()
            .zip(args.iter())
            .map(|(ty, v)| format!("({ty}.const {v})"))
            .collect();
        let imports = [(*name, params.join(" ").leak() as &str)];
        let ran = run(
            &imports,
            &data,
            &format!("(call ${name} {})", call.join(" ")),
        );
        if ran.errno() != *want {
            wrong.push(format!("{name}{args:?}: {:?}, not {want:?}", ran.errno()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
