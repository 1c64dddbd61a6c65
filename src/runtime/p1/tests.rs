//! The preview-1 host driven by small WAT guests: one test per function (or family), with the errno values the
//! spec gives for bad descriptors, pointers and arguments. Filesystem behaviour is covered in depth by the vfs
//! tests and by a Rust guest in the integration tests.

use std::sync::{Arc, Mutex};

use wasmtime::{Engine, Linker, Module, Store};

use super::{P1Ctx, P1View, abi::Errno};
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
