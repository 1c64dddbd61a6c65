//! A `wasi:http` handler for tests of the dyno filesystem as a web dyno's instances share it. Paths:
//!   /write/NAME?TEXT   writes TEXT to /NAME (through std::fs), answers "wrote"
//!   /read/NAME         the contents of /NAME, or 404 "no NAME: KIND"
//!   /instance          "served=N": requests this instance has served (1 each time with fresh instances)
//!   /wasi              walks wasi:filesystem calls std does not make, answers "ok STEP" lines or 500 "FAILED: STEP"

use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, MetadataHashValue, NewTimestamp,
    OpenFlags, PathFlags, filesystem_error_code,
};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

static SERVED: AtomicU64 = AtomicU64::new(0);

struct HttpFs;

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("body stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

impl wasip2::exports::http::incoming_handler::Guest for HttpFs {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if let Some(name) = path.strip_prefix("/write/") {
            match std::fs::write(format!("/{name}"), query) {
                Ok(()) => respond(out, 200, b"wrote"),
                Err(e) => respond(
                    out,
                    500,
                    format!("cannot write {name}: {:?}", e.kind()).as_bytes(),
                ),
            }
        } else if let Some(name) = path.strip_prefix("/read/") {
            match std::fs::read(format!("/{name}")) {
                Ok(data) => respond(out, 200, &data),
                Err(e) => respond(out, 404, format!("no {name}: {:?}", e.kind()).as_bytes()),
            }
        } else if path == "/instance" {
            respond(out, 200, format!("served={served}").as_bytes());
        } else if path == "/wasi" {
            match walk() {
                Ok(report) => respond(out, 200, report.as_bytes()),
                Err(report) => respond(out, 500, report.as_bytes()),
            }
        } else {
            respond(out, 404, b"unknown path");
        }
    }
}

/// Checks one step: appends "ok STEP" to the report, or fails the walk with "FAILED: STEP".
macro_rules! check {
    ($report:ident, $step:expr, $cond:expr) => {
        if !$cond {
            $report.push_str(&format!("FAILED: {}\n", $step));
            return Err($report);
        }
        $report.push_str(&format!("ok {}\n", $step));
    };
}

/// A metadata hash as one comparable value.
fn hash(value: Result<MetadataHashValue, ErrorCode>) -> Option<(u64, u64)> {
    value.ok().map(|h| (h.lower, h.upper))
}

fn open(
    dir: &Descriptor,
    path: &str,
    open: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Descriptor, ErrorCode> {
    dir.open_at(PathFlags::SYMLINK_FOLLOW, path, open, flags)
}

/// The raw interface, one descriptor method after another, on files under /tmp/wasi.
fn walk() -> Result<String, String> {
    let mut report = String::new();
    let preopens = get_directories();
    check!(
        report,
        "one preopen, /",
        preopens.len() == 1 && preopens[0].1 == "/"
    );
    let root = &preopens[0].0;
    check!(
        report,
        "the preopen is a directory",
        root.get_type() == Ok(DescriptorType::Directory)
    );
    let flags = root.get_flags().unwrap_or(DescriptorFlags::empty());
    check!(
        report,
        "the preopen is mutable",
        flags.contains(DescriptorFlags::MUTATE_DIRECTORY)
    );
    check!(
        report,
        "/tmp exists",
        root.stat_at(PathFlags::empty(), "tmp").map(|s| s.type_) == Ok(DescriptorType::Directory)
    );
    let _ = root.create_directory_at("tmp/wasi");
    let rw = DescriptorFlags::READ | DescriptorFlags::WRITE;
    let file = match open(
        root,
        "tmp/wasi/f",
        OpenFlags::CREATE | OpenFlags::TRUNCATE,
        rw,
    ) {
        Ok(file) => file,
        Err(e) => {
            report.push_str(&format!("FAILED: open-at create: {e:?}\n"));
            return Err(report);
        }
    };
    check!(
        report,
        "write at an offset",
        file.write(b"hello", 0) == Ok(5)
    );
    {
        let append = file.append_via_stream().expect("append stream");
        check!(
            report,
            "append-via-stream",
            append.blocking_write_and_flush(b" world").is_ok()
        );
    }
    check!(
        report,
        "read at an offset",
        file.read(100, 6) == Ok((b"world".to_vec(), true))
    );
    {
        let input = file.read_via_stream(0).expect("read stream");
        let mut data = Vec::new();
        while let Ok(chunk) = input.blocking_read(4) {
            data.extend(chunk);
        }
        check!(report, "read-via-stream to the end", data == b"hello world");
    }
    check!(
        report,
        "advise",
        file.advise(0, 11, wasip2::filesystem::types::Advice::Sequential)
            .is_ok()
    );
    check!(
        report,
        "sync and sync-data",
        file.sync().is_ok() && file.sync_data().is_ok()
    );
    check!(
        report,
        "set-size",
        file.set_size(5).is_ok() && file.stat().map(|s| s.size) == Ok(5)
    );
    let again = open(
        root,
        "tmp/wasi/f",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )
    .expect("reopen");
    check!(
        report,
        "is-same-object",
        file.is_same_object(&again) && !file.is_same_object(root)
    );
    check!(
        report,
        "metadata-hash is the same through both",
        hash(file.metadata_hash()).is_some()
            && hash(file.metadata_hash()) == hash(again.metadata_hash())
    );
    let before = hash(root.metadata_hash_at(PathFlags::empty(), "tmp/wasi/f"));
    check!(
        report,
        "metadata-hash-at agrees",
        before == hash(file.metadata_hash())
    );
    let _ = file.write(b"!", 5);
    check!(
        report,
        "metadata-hash changes with the file",
        hash(root.metadata_hash_at(PathFlags::empty(), "tmp/wasi/f")) != before
    );
    check!(
        report,
        "a read-only descriptor cannot write",
        again.write(b"x", 0) == Err(ErrorCode::BadDescriptor)
    );
    check!(
        report,
        "a directory cannot be read as a file",
        root.read(1, 0).err() == Some(ErrorCode::BadDescriptor)
    );
    check!(
        report,
        "a directory is not a stream",
        root.read_via_stream(0).err() == Some(ErrorCode::IsDirectory)
    );
    let when = wasip2::clocks::wall_clock::Datetime {
        seconds: 1_000_000_000,
        nanoseconds: 5,
    };
    check!(
        report,
        "set-times-at",
        root.set_times_at(
            PathFlags::empty(),
            "tmp/wasi/f",
            NewTimestamp::NoChange,
            NewTimestamp::Timestamp(when)
        )
        .is_ok()
            && file
                .stat()
                .ok()
                .and_then(|s| s.data_modification_timestamp)
                .map(|t| (t.seconds, t.nanoseconds))
                == Some((when.seconds, when.nanoseconds))
    );
    check!(
        report,
        "symlink-at and readlink-at",
        root.symlink_at("f", "tmp/wasi/l").is_ok()
            && root.readlink_at("tmp/wasi/l").as_deref() == Ok("f")
    );
    check!(
        report,
        "stat-at without following a link",
        root.stat_at(PathFlags::empty(), "tmp/wasi/l")
            .map(|s| s.type_)
            == Ok(DescriptorType::SymbolicLink)
    );
    check!(
        report,
        "open-at on a link without following it is a loop",
        root.open_at(
            PathFlags::empty(),
            "tmp/wasi/l",
            OpenFlags::empty(),
            DescriptorFlags::READ
        )
        .err()
            == Some(ErrorCode::Loop)
    );
    check!(
        report,
        "link-at",
        root.link_at(PathFlags::empty(), "tmp/wasi/f", root, "tmp/wasi/h")
            .is_ok()
    );
    check!(
        report,
        "rename-at",
        root.rename_at("tmp/wasi/h", root, "tmp/wasi/h2").is_ok()
    );
    let dir = open(
        root,
        "tmp/wasi",
        OpenFlags::DIRECTORY,
        DescriptorFlags::READ,
    )
    .expect("open the directory");
    let mut names = Vec::new();
    let entries = dir.read_directory().expect("read-directory");
    while let Ok(Some(entry)) = entries.read_directory_entry() {
        names.push(entry.name);
    }
    names.sort();
    check!(
        report,
        "read-directory leaves out . and ..",
        names == ["f", "h2", "l"]
    );
    check!(
        report,
        "open-at exclusive refuses an existing file",
        open(&dir, "f", OpenFlags::CREATE | OpenFlags::EXCLUSIVE, rw).err()
            == Some(ErrorCode::Exist)
    );
    check!(
        report,
        "remove-directory-at refuses a non-empty one",
        root.remove_directory_at("tmp/wasi").err() == Some(ErrorCode::NotEmpty)
    );
    check!(
        report,
        "unlink-file-at refuses a directory",
        root.unlink_file_at("tmp").err() == Some(ErrorCode::IsDirectory)
    );
    check!(
        report,
        "*-at on a file is not-directory",
        file.stat_at(PathFlags::empty(), "x").err() == Some(ErrorCode::NotDirectory)
    );
    // A write at 1 TiB is past any dyno's quota: the stream fails with an error that names it.
    {
        let far = file.write_via_stream(1 << 40).expect("write stream");
        let code = match far.blocking_write_and_flush(b"x") {
            Err(StreamError::LastOperationFailed(e)) => filesystem_error_code(&e),
            _ => None,
        };
        check!(
            report,
            "a failed stream write carries its error code",
            code == Some(ErrorCode::FileTooLarge)
        );
    }
    for name in ["f", "h2", "l"] {
        let _ = dir.unlink_file_at(name);
    }
    check!(
        report,
        "remove-directory-at",
        root.remove_directory_at("tmp/wasi").is_ok()
    );
    check!(
        report,
        "nothing escapes /",
        root.stat_at(PathFlags::empty(), "../../..")
            .map(|s| s.type_)
            == Ok(DescriptorType::Directory)
            && root.stat_at(PathFlags::empty(), "../../etc/passwd").err()
                == Some(ErrorCode::NoEntry)
    );
    report.push_str("walk complete\n");
    Ok(report)
}

wasip2::http::proxy::export!(HttpFs);
