//! The host functions called directly (as the linker would), over small images and quotas, plus the linker's
//! version matching. End-to-end runs of real components are in tests/it/components.rs.

use std::sync::{Arc, Mutex};

use wasmtime::component::{Resource, ResourceTable};

use super::types::{HostDescriptor as _, HostDirectoryEntryStream as _};
use super::*;
use crate::runtime::vfs::{Image, Quota};

fn rw() -> DescriptorFlags {
    DescriptorFlags::READ | DescriptorFlags::WRITE
}

struct Dyno {
    table: ResourceTable,
    ctx: FsCtx,
    quota: Arc<Quota>,
}

impl Dyno {
    fn new(image: &Arc<Image>, limit: u64) -> Dyno {
        let quota = Arc::new(Quota::new(limit));
        let fs = Arc::new(Mutex::new(Fs::new(image.clone(), quota.clone())));
        Dyno {
            table: ResourceTable::new(),
            ctx: FsCtx::new(fs),
            quota,
        }
    }

    fn view(&mut self) -> FsCtxView<'_> {
        FsCtxView {
            ctx: &self.ctx,
            table: &mut self.table,
        }
    }

    fn root(&mut self) -> Resource<Descriptor> {
        let mut dirs = preopens::Host::get_directories(&mut self.view()).unwrap();
        assert_eq!(dirs.len(), 1);
        let (root, name) = dirs.pop().unwrap();
        assert_eq!(name, "/");
        root
    }

    fn open(
        &mut self,
        dir: &Resource<Descriptor>,
        path: &str,
        open: OpenFlags,
        flags: DescriptorFlags,
    ) -> Result<Resource<Descriptor>, ErrorCode> {
        code(self.view().open_at(
            borrow(dir),
            PathFlags::SYMLINK_FOLLOW,
            path.into(),
            open,
            flags,
        ))
    }

    fn used(&self) -> u64 {
        lock(&self.ctx.fs).used()
    }
}

fn image() -> Arc<Image> {
    Arc::new(Image::new(
        [
            ("data.txt".to_string(), Arc::from(&b"shipped\n"[..])),
            ("dir/inner.txt".to_string(), Arc::from(&b"inner"[..])),
        ],
        [("link".to_string(), "dir".to_string())],
        0,
    ))
}

/// Another handle to the same resource, as the guest passes a `borrow`.
fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// The error code of a host result (panics on a trap).
fn code<T>(result: HostResult<T>) -> Result<T, ErrorCode> {
    result.map_err(|e| match e.0 {
        Failure::Code(code) => code,
        Failure::Trap(trap) => panic!("trap: {trap:?}"),
    })
}

#[test]
fn every_vfs_error_has_its_wasi_code() {
    use FsError::*;
    let pairs = [
        (NotFound, ErrorCode::NoEntry),
        (Exists, ErrorCode::Exist),
        (NotDir, ErrorCode::NotDirectory),
        (IsDir, ErrorCode::IsDirectory),
        (NotEmpty, ErrorCode::NotEmpty),
        (Invalid, ErrorCode::Invalid),
        (NoSpace, ErrorCode::InsufficientSpace),
        (Loop, ErrorCode::Loop),
        (NameTooLong, ErrorCode::NameTooLong),
        (IllegalBytes, ErrorCode::IllegalByteSequence),
        (NotPermitted, ErrorCode::NotPermitted),
        (TooBig, ErrorCode::FileTooLarge),
    ];
    for (err, want) in pairs {
        assert_eq!(error_code(err), want, "{err:?}");
    }
}

#[test]
fn the_preopen_is_the_app_tree_with_an_empty_tmp() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let mut view = dyno.view();
    assert_eq!(
        code(view.get_type(borrow(&root))),
        Ok(DescriptorType::Directory)
    );
    assert_eq!(
        code(view.get_flags(borrow(&root))),
        Ok(DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY)
    );
    let stream = code(view.read_directory(borrow(&root))).unwrap();
    let mut names = Vec::new();
    while let Some(entry) = code(view.read_directory_entry(borrow(&stream))).unwrap() {
        names.push((entry.name, entry.type_));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names,
        [
            ("data.txt".to_string(), DescriptorType::RegularFile),
            ("dir".to_string(), DescriptorType::Directory),
            ("link".to_string(), DescriptorType::SymbolicLink),
            ("tmp".to_string(), DescriptorType::Directory),
        ]
    );
    let tmp = dyno
        .open(&root, "tmp", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap();
    let mut view = dyno.view();
    let stream = code(view.read_directory(borrow(&tmp))).unwrap();
    let entry = code(view.read_directory_entry(borrow(&stream))).unwrap();
    assert!(entry.is_none());
    // Opened directories are as mutable as the preopen.
    assert_eq!(
        code(view.get_flags(borrow(&tmp))),
        Ok(DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY)
    );
}

#[test]
fn open_at_follows_posix_open() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let none = OpenFlags::empty();
    let create = OpenFlags::CREATE;
    let excl = OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    assert_eq!(
        dyno.open(&root, "missing", none, rw()).err(),
        Some(ErrorCode::NoEntry)
    );
    let f = dyno.open(&root, "tmp/f", create, rw()).unwrap();
    assert_eq!(
        dyno.open(&root, "tmp/f", excl, rw()).err(),
        Some(ErrorCode::Exist)
    );
    assert_eq!(
        dyno.open(&root, "tmp/f", OpenFlags::DIRECTORY, DescriptorFlags::READ)
            .err(),
        Some(ErrorCode::NotDirectory)
    );
    assert_eq!(
        dyno.open(&root, "dir", none, rw()).err(),
        Some(ErrorCode::IsDirectory),
        "a directory is not opened for writing"
    );
    // Through a link unless told not to; a link itself is O_NOFOLLOW's loop.
    assert!(dyno.open(&root, "link/inner.txt", none, rw()).is_ok());
    let nofollow = dyno.view().open_at(
        borrow(&root),
        PathFlags::empty(),
        "link".into(),
        none,
        DescriptorFlags::READ,
    );
    assert_eq!(code(nofollow).err(), Some(ErrorCode::Loop));
    // *-at calls need a directory.
    let stat = dyno
        .view()
        .stat_at(borrow(&f), PathFlags::empty(), "x".into());
    assert_eq!(code(stat).err(), Some(ErrorCode::NotDirectory));

    // Truncate.
    code(dyno.view().write(borrow(&f), b"hello".to_vec(), 0)).unwrap();
    let t = dyno
        .open(&root, "tmp/f", OpenFlags::TRUNCATE, rw())
        .unwrap();
    assert_eq!(code(dyno.view().stat(borrow(&t))).unwrap().size, 0);
    // `..` above `/` stays at `/`; absolute paths start there.
    assert!(dyno.open(&root, "../../data.txt", none, rw()).is_ok());
    assert!(
        dyno.open(&root, "/dir/../data.txt", none, DescriptorFlags::READ)
            .is_ok()
    );
}

#[test]
fn descriptors_read_and_write_only_as_opened() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let ro = dyno
        .open(&root, "data.txt", OpenFlags::empty(), DescriptorFlags::READ)
        .unwrap();
    let wo = dyno
        .open(
            &root,
            "data.txt",
            OpenFlags::empty(),
            DescriptorFlags::WRITE,
        )
        .unwrap();
    let mut view = dyno.view();
    assert_eq!(
        code(view.read(borrow(&ro), 100, 0)),
        Ok((b"shipped\n".to_vec(), true))
    );
    assert_eq!(
        code(view.read(borrow(&ro), 3, 0)),
        Ok((b"shi".to_vec(), false))
    );
    assert_eq!(code(view.read(borrow(&ro), 3, 100)), Ok((vec![], true)));
    let bad = Some(ErrorCode::BadDescriptor);
    assert_eq!(code(view.write(borrow(&ro), b"x".to_vec(), 0)).err(), bad);
    assert_eq!(code(view.set_size(borrow(&ro), 0)).err(), bad);
    assert_eq!(code(view.append_via_stream(borrow(&ro))).err(), bad);
    assert_eq!(code(view.read(borrow(&wo), 1, 0)).err(), bad);
    assert_eq!(code(view.read_via_stream(borrow(&wo), 0)).err(), bad);
    // File operations on a directory.
    assert_eq!(code(view.read(borrow(&root), 1, 0)).err(), bad);
    assert_eq!(code(view.write(borrow(&root), vec![1], 0)).err(), bad);
    assert_eq!(
        code(view.advise(borrow(&root), 0, 0, Advice::Normal)).err(),
        bad
    );
    assert_eq!(
        code(view.read_via_stream(borrow(&root), 0)).err(),
        Some(ErrorCode::IsDirectory)
    );
    assert_eq!(
        code(view.read_directory(borrow(&ro))).err(),
        Some(ErrorCode::NotDirectory)
    );
    // Writing past the end extends with zeros.
    assert_eq!(code(view.write(borrow(&wo), b"!".to_vec(), 10)), Ok(1));
    assert_eq!(
        code(view.read(borrow(&ro), 100, 0)).unwrap().0,
        b"shipped\n\0\0!"
    );
    assert!(view.is_same_object(borrow(&ro), borrow(&wo)).unwrap());
    assert!(!view.is_same_object(borrow(&ro), borrow(&root)).unwrap());
}

#[test]
fn streams_read_to_the_end_and_write_at_a_cursor_or_the_end() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let f = dyno.open(&root, "tmp/s", OpenFlags::CREATE, rw()).unwrap();
    let mut view = dyno.view();
    let out = code(view.write_via_stream(borrow(&f), 2)).unwrap();
    let append = code(view.append_via_stream(borrow(&f))).unwrap();
    let input = code(view.read_via_stream(borrow(&f), 0)).unwrap();
    {
        let out = view.table.get_mut(&out).unwrap();
        assert_eq!(out.check_write().unwrap(), MAX_IO);
        out.write(Bytes::from_static(b"ab")).unwrap();
        out.write(Bytes::from_static(b"cd")).unwrap();
        out.flush().unwrap();
    }
    view.table
        .get_mut(&append)
        .unwrap()
        .write(Bytes::from_static(b"!"))
        .unwrap();
    let input = view.table.get_mut(&input).unwrap();
    assert_eq!(&input.read(3).unwrap()[..], b"\0\0a");
    assert_eq!(&input.read(100).unwrap()[..], b"bcd!");
    assert!(matches!(input.read(1), Err(StreamError::Closed)));
    assert!(matches!(input.read(1), Err(StreamError::Closed)));
}

#[test]
fn a_stream_write_past_the_quota_fails_with_insufficient_space() {
    let mut dyno = Dyno::new(&image(), 256 * 1024);
    // The dyno's linear memory holds most of its quota.
    assert!(dyno.quota.try_take(200 * 1024));
    let root = dyno.root();
    let f = dyno
        .open(&root, "tmp/big", OpenFlags::CREATE, rw())
        .unwrap();
    let mut view = dyno.view();
    let out = code(view.write_via_stream(borrow(&f), 0)).unwrap();
    let failure = view
        .table
        .get_mut(&out)
        .unwrap()
        .write(Bytes::from(vec![1; 100 * 1024]));
    let Err(StreamError::LastOperationFailed(err)) = failure else {
        panic!("{failure:?}")
    };
    // After a failure the stream is closed, as wasi:io has it.
    let stream = view.table.get_mut(&out).unwrap();
    assert!(matches!(stream.check_write(), Err(StreamError::Closed)));
    let err = view.table.push(err).unwrap();
    assert_eq!(
        types::Host::filesystem_error_code(&mut view, err).unwrap(),
        Some(ErrorCode::InsufficientSpace)
    );
    // Other streams' errors are not the filesystem's, except I/O errors (as wasmtime-wasi answers them).
    let other = view
        .table
        .push(wasmtime::format_err!("an http body error"))
        .unwrap();
    assert_eq!(
        types::Host::filesystem_error_code(&mut view, other).unwrap(),
        None
    );
    let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    let io = view.table.push(wasmtime::Error::new(io)).unwrap();
    assert_eq!(
        types::Host::filesystem_error_code(&mut view, io).unwrap(),
        Some(ErrorCode::Pipe)
    );
    // `write` answers the code itself.
    assert_eq!(
        code(view.write(borrow(&f), vec![1; 100 * 1024], 0)).err(),
        Some(ErrorCode::InsufficientSpace)
    );
}

#[test]
fn an_unlinked_file_lives_until_its_last_descriptor_and_stream_drop() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let f = dyno
        .open(&root, "tmp/gone", OpenFlags::CREATE, rw())
        .unwrap();
    let mut view = dyno.view();
    code(view.write(borrow(&f), vec![7; 10_000], 0)).unwrap();
    let input = code(view.read_via_stream(borrow(&f), 0)).unwrap();
    code(view.unlink_file_at(borrow(&root), "tmp/gone".into())).unwrap();
    let with_file = dyno.used();
    assert!(with_file >= 10_000);
    types::HostDescriptor::drop(&mut dyno.view(), f).unwrap();
    let input = dyno.table.delete(input).unwrap();
    assert_eq!(dyno.used(), with_file, "the stream still holds it");
    drop(input);
    assert!(dyno.used() < with_file - 10_000, "freed: {}", dyno.used());
    // The whole layer goes back to the quota with the filesystem.
    types::HostDescriptor::drop(&mut dyno.view(), root).unwrap();
    let quota = dyno.quota.clone();
    drop(dyno);
    assert_eq!(quota.used(), 0);
}

#[test]
fn directory_calls_map_onto_the_vfs() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let mut view = dyno.view();
    let at = |path: &str| path.to_string();
    code(view.create_directory_at(borrow(&root), at("tmp/d"))).unwrap();
    assert_eq!(
        code(view.create_directory_at(borrow(&root), at("tmp/d"))).err(),
        Some(ErrorCode::Exist)
    );
    // An absolute target is refused, as wasmtime's host refuses it; a relative one is kept as given.
    assert_eq!(
        code(view.symlink_at(borrow(&root), at("/data.txt"), at("tmp/d/abs"))).err(),
        Some(ErrorCode::NotPermitted)
    );
    code(view.symlink_at(borrow(&root), at("../../../data.txt"), at("tmp/d/abs"))).unwrap();
    assert_eq!(
        code(view.readlink_at(borrow(&root), at("tmp/d/abs"))),
        Ok("../../../data.txt".into())
    );
    assert_eq!(
        code(view.readlink_at(borrow(&root), at("data.txt"))).err(),
        Some(ErrorCode::Invalid)
    );
    // A link target that climbs above `/` stays at `/`.
    let follow = code(view.stat_at(borrow(&root), PathFlags::SYMLINK_FOLLOW, at("tmp/d/abs")));
    assert_eq!(follow.unwrap().type_, DescriptorType::RegularFile);
    let nofollow = code(view.stat_at(borrow(&root), PathFlags::empty(), at("tmp/d/abs")));
    assert_eq!(nofollow.unwrap().size, "../../../data.txt".len() as u64);
    code(view.link_at(
        borrow(&root),
        PathFlags::empty(),
        at("data.txt"),
        borrow(&root),
        at("tmp/d/hard"),
    ))
    .unwrap();
    assert_eq!(
        code(view.stat_at(borrow(&root), PathFlags::empty(), at("data.txt")))
            .unwrap()
            .link_count,
        2
    );
    assert_eq!(
        code(view.link_at(
            borrow(&root),
            PathFlags::empty(),
            at("dir"),
            borrow(&root),
            at("tmp/dirlink"),
        ))
        .err(),
        Some(ErrorCode::NotPermitted)
    );
    code(view.rename_at(
        borrow(&root),
        at("tmp/d/hard"),
        borrow(&root),
        at("tmp/moved"),
    ))
    .unwrap();
    assert_eq!(
        code(view.remove_directory_at(borrow(&root), at("tmp/d"))).err(),
        Some(ErrorCode::NotEmpty)
    );
    assert_eq!(
        code(view.unlink_file_at(borrow(&root), at("tmp/d"))).err(),
        Some(ErrorCode::IsDirectory)
    );
    code(view.unlink_file_at(borrow(&root), at("tmp/d/abs"))).unwrap();
    code(view.remove_directory_at(borrow(&root), at("tmp/d"))).unwrap();
    assert_eq!(
        code(view.remove_directory_at(borrow(&root), at(""))).err(),
        Some(ErrorCode::NoEntry)
    );
    assert_eq!(
        code(view.rename_at(borrow(&root), at("/"), borrow(&root), at("tmp/x"))).err(),
        Some(ErrorCode::NotPermitted)
    );
    assert_eq!(
        code(view.stat_at(borrow(&root), PathFlags::empty(), at("tmp/x\0"))).err(),
        Some(ErrorCode::IllegalByteSequence)
    );
}

#[test]
fn times_and_metadata_hashes() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let f = dyno
        .open(&root, "data.txt", OpenFlags::empty(), rw())
        .unwrap();
    let mut view = dyno.view();
    let when = Datetime {
        seconds: 1_000_000_000,
        nanoseconds: 5,
    };
    code(view.set_times(
        borrow(&f),
        NewTimestamp::NoChange,
        NewTimestamp::Timestamp(when),
    ))
    .unwrap();
    let stat = code(view.stat(borrow(&f))).unwrap();
    let secs = |t: Option<Datetime>| t.map(|t| (t.seconds, t.nanoseconds));
    assert_eq!(
        secs(stat.data_modification_timestamp),
        Some((1_000_000_000, 5))
    );
    assert_eq!(secs(stat.data_access_timestamp), Some((0, 0)));
    let bad = Datetime {
        seconds: 1,
        nanoseconds: 1_000_000_000,
    };
    assert_eq!(
        code(view.set_times(borrow(&f), NewTimestamp::Timestamp(bad), NewTimestamp::Now)).err(),
        Some(ErrorCode::Invalid)
    );
    let far = Datetime {
        seconds: u64::MAX,
        nanoseconds: 0,
    };
    assert_eq!(
        code(view.set_times_at(
            borrow(&root),
            PathFlags::empty(),
            "data.txt".into(),
            NewTimestamp::Timestamp(far),
            NewTimestamp::NoChange,
        ))
        .err(),
        Some(ErrorCode::Overflow)
    );

    let hash = |view: &mut FsCtxView<'_>| {
        let h = code(view.metadata_hash(borrow(&f))).unwrap();
        (h.lower, h.upper)
    };
    let before = hash(&mut view);
    let at =
        code(view.metadata_hash_at(borrow(&root), PathFlags::empty(), "data.txt".into())).unwrap();
    assert_eq!((at.lower, at.upper), before);
    code(view.write(borrow(&f), b"x".to_vec(), 100)).unwrap();
    assert_ne!(hash(&mut view), before);
    assert_ne!(before.0, before.1);
}

#[test]
fn a_listing_sees_entries_added_while_it_runs() {
    let mut dyno = Dyno::new(&image(), 1 << 20);
    let root = dyno.root();
    let tmp = dyno
        .open(&root, "tmp", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap();
    let mut view = dyno.view();
    code(view.create_directory_at(borrow(&tmp), "a".into())).unwrap();
    let stream = code(view.read_directory(borrow(&tmp))).unwrap();
    let next = |view: &mut FsCtxView<'_>| {
        code(view.read_directory_entry(borrow(&stream)))
            .unwrap()
            .map(|e| e.name)
    };
    assert_eq!(next(&mut view).as_deref(), Some("a"));
    code(view.create_directory_at(borrow(&tmp), "b".into())).unwrap();
    assert_eq!(next(&mut view).as_deref(), Some("b"));
    assert_eq!(next(&mut view), None);
}

#[test]
fn two_dynos_of_one_image_do_not_see_each_others_writes() {
    let image = image();
    let (mut a, mut b) = (Dyno::new(&image, 1 << 20), Dyno::new(&image, 1 << 20));
    let (root_a, root_b) = (a.root(), b.root());
    let create = OpenFlags::CREATE | OpenFlags::TRUNCATE;
    for path in ["data.txt", "app-file"] {
        let f = a.open(&root_a, path, create, rw()).unwrap();
        code(a.view().write(borrow(&f), b"mine".to_vec(), 0)).unwrap();
    }
    let f = b
        .open(
            &root_b,
            "data.txt",
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .unwrap();
    assert_eq!(
        code(b.view().read(borrow(&f), 100, 0)).unwrap().0,
        b"shipped\n"
    );
    assert_eq!(
        b.open(
            &root_b,
            "app-file",
            OpenFlags::empty(),
            DescriptorFlags::READ
        )
        .err(),
        Some(ErrorCode::NoEntry)
    );
}

// The test writes its component in WAT, which the `platform` feature brings.
#[cfg(feature = "platform")]
mod linker {
    use super::*;

    /// The linker state of a component that runs on wasmtime-wasi plus our filesystem.
    struct Linked {
        wasi: wasmtime_wasi::WasiCtx,
        table: ResourceTable,
        fs: FsCtx,
    }

    impl wasmtime_wasi::WasiView for Linked {
        fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
            wasmtime_wasi::WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl FsView for Linked {
        fn dyno_fs(&mut self) -> FsCtxView<'_> {
            FsCtxView {
                ctx: &self.fs,
                table: &mut self.table,
            }
        }
    }

    /// Components importing `wasi:filesystem` at any 0.2 version get our descriptors, not wasmtime-wasi's.
    #[test]
    fn every_0_2_version_of_wasi_filesystem_lands_on_ours() {
        use wasmtime::component::types::ComponentItem;
        use wasmtime::component::{Component, ResourceType};

        let engine = wasmtime::Engine::new(&crate::runtime::engine_config()).unwrap();
        let mut linker = wasmtime::component::Linker::<Linked>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        add_to_linker(&mut linker).unwrap();
        // Shadowing was for our definitions only.
        assert!(wasmtime_wasi::p2::add_to_linker_async(&mut linker).is_err());

        for version in ["0.2.0", "0.2.3", "0.2.6", "0.2.12"] {
            let wat = format!(
                r#"(component
                    (import "wasi:filesystem/types@{version}" (instance $types
                        (export "descriptor" (type (sub resource)))))
                    (alias export $types "descriptor" (type $descriptor))
                    (import "wasi:filesystem/preopens@{version}" (instance
                        (export "descriptor" (type (eq $descriptor)))
                        (export "get-directories" (func (result (list (tuple (own $descriptor) string)))))))
                )"#
            );
            let component = Component::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
            let ty = linker.substituted_component_type(&component).unwrap();
            let Some(ComponentItem::ComponentInstance(types)) = ty
                .get_import(&engine, &format!("wasi:filesystem/types@{version}"))
                .map(|import| import.ty)
            else {
                panic!("no types import");
            };
            let Some(ComponentItem::Resource(descriptor)) = types
                .get_export(&engine, "descriptor")
                .map(|export| export.ty)
            else {
                panic!("no descriptor");
            };
            assert_eq!(
                descriptor,
                ResourceType::host::<Descriptor>(),
                "wasi:filesystem/types@{version}"
            );
        }
    }
}
