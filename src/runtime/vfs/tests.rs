use std::sync::Arc;

use super::node::{ENTRY_COST, INODE_COST};
use super::*;

const MTIME: Timestamp = 1_700_000_000_000_000_000;
const MIB: u64 = 1 << 20;

/// ```text
/// /a.txt           "hello"
/// /bin/run         "#!run"
/// /dir/b.txt       "bee"
/// /dir/sub/c.txt   "sea"
/// /dir/up      ->  ../a.txt
/// /link        ->  a.txt
/// /dirlink     ->  dir
/// /abs         ->  /dir/b.txt
/// /dangling    ->  nowhere/x
/// /tmp/
/// ```
fn image() -> Arc<Image> {
    let files = [
        ("a.txt", "hello"),
        ("bin/run", "#!run"),
        ("dir/b.txt", "bee"),
        ("dir/sub/c.txt", "sea"),
    ];
    let links = [
        ("dir/up", "../a.txt"),
        ("link", "a.txt"),
        ("dirlink", "dir"),
        ("abs", "/dir/b.txt"),
        ("dangling", "nowhere/x"),
    ];
    Arc::new(Image::new(
        files.map(|(p, d)| (p.to_string(), Arc::from(d.as_bytes()))),
        links.map(|(p, t)| (p.to_string(), t.to_string())),
        MTIME,
    ))
}

fn fs_with(limit: u64) -> (Fs, Arc<Quota>) {
    let quota = Arc::new(Quota::new(limit));
    (Fs::new(image(), quota.clone()), quota)
}

fn fs() -> Fs {
    fs_with(MIB).0
}

const CREATE: OpenFlags = OpenFlags {
    create: true,
    exclusive: false,
    truncate: false,
    directory: false,
    follow: true,
};
const FOLLOW: OpenFlags = OpenFlags {
    create: false,
    exclusive: false,
    truncate: false,
    directory: false,
    follow: true,
};
const NOFOLLOW: OpenFlags = OpenFlags {
    follow: false,
    ..FOLLOW
};

fn read_ino(fs: &Fs, ino: Ino) -> Vec<u8> {
    let mut buf = vec![0; fs.stat(ino).unwrap().size as usize];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), buf.len());
    buf
}

fn cat(fs: &Fs, path: &str) -> String {
    String::from_utf8(read_ino(fs, fs.lookup(ROOT, path, true).unwrap())).unwrap()
}

/// Creates or truncates `path` and writes `data` to it.
fn put(fs: &mut Fs, path: &str, data: &[u8]) -> FsResult<Ino> {
    let ino = fs.open(
        ROOT,
        path,
        OpenFlags {
            truncate: true,
            ..CREATE
        },
    )?;
    fs.write(ino, Some(0), data)?;
    Ok(ino)
}

fn names(fs: &Fs, dir: Ino) -> Vec<String> {
    fs.read_dir(dir, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn kind(fs: &Fs, path: &str, follow: bool) -> Kind {
    fs.stat(fs.lookup(ROOT, path, follow).unwrap())
        .unwrap()
        .kind
}

// ---- the image

#[test]
fn image_implies_directories_and_keeps_kinds_and_times() {
    let fs = fs();
    assert_eq!(kind(&fs, "/", true), Kind::Dir);
    assert_eq!(kind(&fs, "dir", true), Kind::Dir);
    assert_eq!(kind(&fs, "dir/sub", true), Kind::Dir);
    assert_eq!(kind(&fs, "bin/run", true), Kind::File);
    assert_eq!(kind(&fs, "link", false), Kind::Symlink);
    assert_eq!(cat(&fs, "dir/sub/c.txt"), "sea");
    let stat = fs.stat(fs.lookup(ROOT, "a.txt", true).unwrap()).unwrap();
    assert_eq!((stat.size, stat.nlink), (5, 1));
    assert_eq!((stat.atime, stat.mtime, stat.ctime), (MTIME, MTIME, MTIME));
    let link = fs.stat(fs.lookup(ROOT, "abs", false).unwrap()).unwrap();
    assert_eq!(link.size, "/dir/b.txt".len() as u64);
    assert_eq!(fs.stat(ROOT).unwrap().mtime, MTIME);
    assert_eq!(fs.lookup(ROOT, "/", true), Ok(ROOT));
}

#[test]
fn image_shares_file_bytes() {
    let bytes: Arc<[u8]> = Arc::from(&b"shared"[..]);
    let image = Arc::new(Image::new([("f".to_string(), bytes.clone())], [], 0));
    assert_eq!(
        Arc::strong_count(&bytes),
        2,
        "the image holds the caller's Arc, not a copy"
    );
    let fs = Fs::new(image, Arc::new(Quota::new(MIB)));
    let ino = fs.lookup(ROOT, "f", true).unwrap();
    let mut buf = [0; 6];
    assert_eq!(fs.read(ino, 0, &mut buf), Ok(6));
    assert_eq!(&buf, b"shared");
    assert_eq!(Arc::strong_count(&bytes), 2, "reading copies nothing");
    assert!(fs.layer.is_empty());
}

#[test]
fn image_has_an_empty_tmp_whatever_the_app_holds() {
    let files = [("tmp/old.pid", "1"), ("tmp/cache/x", "2"), ("keep", "3")];
    let image = Image::new(
        files.map(|(p, d)| (p.to_string(), Arc::from(d.as_bytes()))),
        [],
        0,
    );
    let fs = Fs::new(Arc::new(image), Arc::new(Quota::new(MIB)));
    let tmp = fs.lookup(ROOT, "/tmp", true).unwrap();
    assert_eq!(names(&fs, tmp), [".", ".."]);
    assert_eq!(names(&fs, ROOT), [".", "..", "keep", "tmp"]);
    // And with no files at all.
    let empty = Fs::new(Arc::new(Image::new([], [], 0)), Arc::new(Quota::new(MIB)));
    assert_eq!(
        empty
            .stat(empty.lookup(ROOT, "tmp", true).unwrap())
            .unwrap()
            .kind,
        Kind::Dir
    );
}

#[test]
fn image_resolves_malformed_input() {
    let files = [
        ("./x//y", "xy"),
        ("../evil", "no"),
        ("a/../b", "no"),
        ("nul\0", "no"),
        ("f", "file first"),
        ("f/g", "then a directory wins"),
        ("dup", "1"),
        ("dup", "2"),
        ("", "root"),
    ];
    let image = Image::new(
        files.map(|(p, d)| (p.to_string(), Arc::from(d.as_bytes()))),
        [],
        0,
    );
    let fs = Fs::new(Arc::new(image), Arc::new(Quota::new(MIB)));
    assert_eq!(names(&fs, ROOT), [".", "..", "dup", "f", "tmp", "x"]);
    assert_eq!(cat(&fs, "x/y"), "xy");
    assert_eq!(cat(&fs, "f/g"), "then a directory wins");
    assert_eq!(cat(&fs, "dup"), "2");
}

#[test]
fn image_from_slug_shares_the_slugs_bytes() {
    let app = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(app.path().join("lib/deep")).unwrap();
    std::fs::write(app.path().join("index.js"), "console.log(1)").unwrap();
    std::fs::write(app.path().join("lib/deep/x.txt"), "x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("lib/deep/x.txt", app.path().join("x")).unwrap();
    let packed = crate::slug::pack(app.path(), Default::default()).unwrap();
    let slug = crate::slug::Slug::from_bytes(&packed.bytes, Default::default()).unwrap();

    let fs = Fs::new(Arc::new(Image::from_slug(&slug)), Arc::new(Quota::new(MIB)));
    assert_eq!(cat(&fs, "index.js"), "console.log(1)");
    assert_eq!(cat(&fs, "/lib/deep/x.txt"), "x");
    #[cfg(unix)]
    {
        assert_eq!(fs.readlink(ROOT, "x").unwrap(), "lib/deep/x.txt");
        assert_eq!(cat(&fs, "x"), "x");
    }
    let bytes = slug.file("index.js").unwrap();
    // The slug, the image and `bytes` itself.
    assert_eq!(Arc::strong_count(&bytes), 3);
    let stat = fs.stat(fs.lookup(ROOT, "index.js", true).unwrap()).unwrap();
    assert_eq!(stat.mtime, 315_532_800 * 1_000_000_000);
}

// ---- Fs::new

#[test]
fn new_is_constant_time_whatever_the_image() {
    let files = (0..20_000).map(|i| (format!("d{}/f{i}", i % 100), Arc::from(&b"x"[..])));
    let image = Arc::new(Image::new(files, [], 0));
    let quota = Arc::new(Quota::new(MIB));
    let fs = Fs::new(image.clone(), quota.clone());
    // Nothing was walked, cloned or charged: the layer is empty and new inodes number after the image's.
    assert!(fs.layer.is_empty() && fs.opens.is_empty());
    assert_eq!(fs.layer.capacity(), 0);
    assert_eq!(fs.next_ino, ROOT + image.nodes.len() as Ino);
    assert_eq!((fs.used(), quota.used()), (0, 0));
    assert_eq!(Arc::strong_count(&image), 2);
    assert_eq!(cat(&fs, "d42/f4242"), "x");
    assert!(fs.layer.is_empty(), "lookups and reads do not copy either");
}

// ---- path resolution

#[test]
fn lookup_relative_absolute_dot_and_dotdot() {
    let fs = fs();
    let dir = fs.lookup(ROOT, "dir", true).unwrap();
    let sub = fs.lookup(dir, "sub", true).unwrap();
    assert_eq!(
        fs.lookup(dir, "b.txt", true),
        fs.lookup(ROOT, "/dir/b.txt", true)
    );
    assert_eq!(
        fs.lookup(sub, "/a.txt", true),
        fs.lookup(ROOT, "a.txt", true)
    );
    assert_eq!(fs.lookup(sub, "..", true), Ok(dir));
    assert_eq!(fs.lookup(sub, "../..", true), Ok(ROOT));
    assert_eq!(fs.lookup(sub, ".", true), Ok(sub));
    assert_eq!(fs.lookup(ROOT, ".//./dir/./sub/", true), Ok(sub));
    assert_eq!(
        fs.lookup(ROOT, "dir/sub/../sub/./c.txt", true),
        fs.lookup(sub, "c.txt", true)
    );
    assert_eq!(fs.lookup(ROOT, "missing", true), Err(FsError::NotFound));
    assert_eq!(fs.lookup(ROOT, "missing/x", true), Err(FsError::NotFound));
}

#[test]
fn lookup_errors_on_bad_paths() {
    let fs = fs();
    assert_eq!(fs.lookup(ROOT, "", true), Err(FsError::NotFound));
    assert_eq!(fs.lookup(ROOT, "a.txt\0", true), Err(FsError::IllegalBytes));
    assert_eq!(
        fs.lookup(ROOT, "dir/\0/b", true),
        Err(FsError::IllegalBytes)
    );
    assert_eq!(fs.lookup(ROOT, "a.txt/b", true), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, "a.txt/", true), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, "a.txt/.", true), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, "a.txt/..", true), Err(FsError::NotDir));
    let file = fs.lookup(ROOT, "a.txt", true).unwrap();
    assert_eq!(fs.lookup(file, "x", true), Err(FsError::NotDir));
    assert_eq!(fs.lookup(9_999_999, "x", true), Err(FsError::NotFound));
    // `dir` is ignored for absolute paths, as with `*at` calls.
    assert_eq!(fs.lookup(file, "/dir", true), fs.lookup(ROOT, "dir", true));
}

#[test]
fn long_paths_and_names() {
    let fs = fs();
    let long_name = "n".repeat(NAME_MAX);
    assert_eq!(fs.lookup(ROOT, &long_name, true), Err(FsError::NotFound));
    let too_long_name = "n".repeat(NAME_MAX + 1);
    assert_eq!(
        fs.lookup(ROOT, &too_long_name, true),
        Err(FsError::NameTooLong)
    );
    assert_eq!(
        fs.lookup(ROOT, &format!("dir/{too_long_name}/x"), true),
        Err(FsError::NameTooLong)
    );
    // A 4 KiB path of `./` resolves; one byte more does not.
    let at_limit = "./".repeat(PATH_MAX / 2 - 3) + "a.txt";
    assert!(at_limit.len() <= PATH_MAX);
    assert_eq!(
        fs.lookup(ROOT, &at_limit, true),
        fs.lookup(ROOT, "a.txt", true)
    );
    let over = "/".repeat(PATH_MAX + 1);
    assert_eq!(fs.lookup(ROOT, &over, true), Err(FsError::NameTooLong));
    let over = "a/".repeat(PATH_MAX / 2 + 1);
    assert_eq!(fs.lookup(ROOT, &over, true), Err(FsError::NameTooLong));
}

#[test]
fn dotdot_never_leaves_the_root() {
    let mut fs = fs();
    for path in [
        "..",
        "../..",
        "/..",
        "/../../..",
        "dir/../../..",
        "./../dir/../..",
    ] {
        assert_eq!(fs.lookup(ROOT, path, true), Ok(ROOT), "{path}");
    }
    assert_eq!(
        fs.lookup(ROOT, "/../../etc/passwd", true),
        Err(FsError::NotFound)
    );
    assert_eq!(
        fs.lookup(ROOT, "../../a.txt", true),
        fs.lookup(ROOT, "a.txt", true)
    );
    let sub = fs.lookup(ROOT, "dir/sub", true).unwrap();
    assert_eq!(fs.lookup(sub, &"../".repeat(50), true), Ok(ROOT));
    // Nor can a created file outside be made to appear.
    assert_eq!(
        fs.mkdir(sub, "../../../../etc"),
        Ok(fs.lookup(ROOT, "etc", true).unwrap())
    );
    assert_eq!(
        fs.lookup(ROOT, "/etc", true),
        fs.lookup(sub, "../../etc", true)
    );
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let mut fs = fs();
    assert_eq!(cat(&fs, "link"), "hello");
    assert_eq!(cat(&fs, "abs"), "bee");
    assert_eq!(cat(&fs, "dir/up"), "hello");
    assert_eq!(cat(&fs, "dirlink/sub/c.txt"), "sea");
    // `..` after a link to a directory goes to the target's parent.
    assert_eq!(fs.lookup(ROOT, "dirlink/sub/../..", true), Ok(ROOT));

    let dir = fs.lookup(ROOT, "dir", true).unwrap();
    fs.symlink("/", dir, "root").unwrap();
    fs.symlink("../../../../..", dir, "escape").unwrap();
    fs.symlink("/../../../etc", dir, "etc").unwrap();
    assert_eq!(fs.lookup(ROOT, "dir/root", true), Ok(ROOT));
    assert_eq!(fs.lookup(ROOT, "dir/root/../..", true), Ok(ROOT));
    assert_eq!(fs.lookup(ROOT, "dir/escape", true), Ok(ROOT));
    assert_eq!(cat(&fs, "dir/escape/a.txt"), "hello");
    assert_eq!(cat(&fs, "dir/root/dir/root/a.txt"), "hello");
    assert_eq!(fs.lookup(ROOT, "dir/etc", true), Err(FsError::NotFound));
    assert_eq!(
        fs.lookup(ROOT, "dir/etc/passwd", true),
        Err(FsError::NotFound)
    );
    // A trailing `/` or `.` follows the link to its directory.
    assert_eq!(fs.lookup(ROOT, "dir/root/", false), Ok(ROOT));
    assert_eq!(fs.lookup(ROOT, "dir/root/.", false), Ok(ROOT));
}

#[test]
fn follow_applies_to_the_last_component_only() {
    let fs = fs();
    let link = fs.lookup(ROOT, "link", false).unwrap();
    assert_ne!(Ok(link), fs.lookup(ROOT, "link", true));
    assert_eq!(fs.stat(link).unwrap().kind, Kind::Symlink);
    // Intermediate links are always followed.
    assert_eq!(
        fs.lookup(ROOT, "dirlink/b.txt", false),
        fs.lookup(ROOT, "dir/b.txt", false)
    );
    assert_eq!(
        fs.lookup(ROOT, "dirlink", false)
            .map(|i| fs.stat(i).unwrap().kind),
        Ok(Kind::Symlink)
    );
    assert_eq!(
        fs.lookup(ROOT, "dirlink/", false),
        fs.lookup(ROOT, "dir", true)
    );
    assert_eq!(fs.lookup(ROOT, "link/", true), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, "link/", false), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, "dangling", true), Err(FsError::NotFound));
    assert!(fs.lookup(ROOT, "dangling", false).is_ok());
    // Open with and without follow.
    let mut fs = fs;
    assert_eq!(fs.open(ROOT, "link", NOFOLLOW), Ok(link));
    assert_eq!(
        fs.open(ROOT, "link", FOLLOW),
        fs.lookup(ROOT, "a.txt", true)
    );
}

#[test]
fn symlink_loops_and_chains() {
    let mut fs = fs();
    fs.symlink("self", ROOT, "self").unwrap();
    fs.symlink("ping", ROOT, "pong").unwrap();
    fs.symlink("pong", ROOT, "ping").unwrap();
    fs.symlink("/loop/x", ROOT, "loop").unwrap();
    assert_eq!(fs.lookup(ROOT, "self", true), Err(FsError::Loop));
    assert_eq!(fs.lookup(ROOT, "ping", true), Err(FsError::Loop));
    assert_eq!(fs.lookup(ROOT, "ping/x", false), Err(FsError::Loop));
    assert_eq!(fs.lookup(ROOT, "loop", true), Err(FsError::Loop));
    assert!(fs.lookup(ROOT, "self", false).is_ok());
    assert_eq!(fs.open(ROOT, "self", CREATE), Err(FsError::Loop));

    // A chain of exactly SYMLINK_MAX links resolves; one more is a loop.
    fs.symlink("a.txt", ROOT, "l0").unwrap();
    for i in 1..=SYMLINK_MAX {
        fs.symlink(&format!("l{}", i - 1), ROOT, &format!("l{i}"))
            .unwrap();
    }
    assert_eq!(cat(&fs, &format!("l{}", SYMLINK_MAX - 1)), "hello");
    assert_eq!(
        fs.lookup(ROOT, &format!("l{SYMLINK_MAX}"), true),
        Err(FsError::Loop)
    );
}

#[test]
fn thousand_deep_directories() {
    let mut fs = fs();
    let mut dir = ROOT;
    let mut chain = vec![ROOT];
    for _ in 0..1000 {
        dir = fs.mkdir(dir, "d").unwrap();
        chain.push(dir);
    }
    let deepest = dir;
    fs.open(deepest, "leaf", CREATE).unwrap();
    // 2000-byte paths down, 3000-byte paths up.
    assert_eq!(fs.lookup(ROOT, &"d/".repeat(1000), true), Ok(deepest));
    assert_eq!(fs.lookup(deepest, &"../".repeat(1000), true), Ok(ROOT));
    assert_eq!(fs.lookup(deepest, &"../".repeat(400), true), Ok(chain[600]));
    assert_eq!(fs.lookup(deepest, &"../".repeat(1300), true), Ok(ROOT));
    assert!(
        fs.lookup(ROOT, &("/d".repeat(1000) + "/leaf"), true)
            .is_ok()
    );
    assert_eq!(
        fs.lookup(deepest, &"../".repeat(2000), true),
        Err(FsError::NameTooLong)
    );
    // Deep relative paths are not limited, only each path's length.
    let mut from = ROOT;
    for _ in 0..10 {
        from = fs.lookup(from, &"d/".repeat(100), true).unwrap();
    }
    assert_eq!(from, deepest);
}

// ---- open

#[test]
fn open_creates_regular_files() {
    let mut fs = fs();
    let ino = fs.open(ROOT, "tmp/new", CREATE).unwrap();
    let stat = fs.stat(ino).unwrap();
    assert_eq!((stat.kind, stat.size, stat.nlink), (Kind::File, 0, 1));
    assert!(stat.mtime > MTIME);
    assert_eq!(fs.open(ROOT, "tmp/new", CREATE), Ok(ino));
    assert_eq!(fs.open(ROOT, "/tmp/new", FOLLOW), Ok(ino));
    let exclusive = OpenFlags {
        exclusive: true,
        ..CREATE
    };
    assert_eq!(fs.open(ROOT, "tmp/new", exclusive), Err(FsError::Exists));
    assert_eq!(
        fs.open(ROOT, "tmp/other", exclusive).map(|i| i > ino),
        Ok(true)
    );
    assert_eq!(fs.open(ROOT, "tmp/none", FOLLOW), Err(FsError::NotFound));
    assert_eq!(fs.open(ROOT, "tmp/no/such", CREATE), Err(FsError::NotFound));
    assert_eq!(fs.open(ROOT, "a.txt/x", CREATE), Err(FsError::NotDir));
    assert_eq!(fs.open(ROOT, "tmp/newdir/", CREATE), Err(FsError::IsDir));
    assert_eq!(fs.open(ROOT, "", CREATE), Err(FsError::NotFound));
    let tmp = fs.lookup(ROOT, "tmp", true).unwrap();
    assert_eq!(names(&fs, tmp), [".", "..", "new", "other"]);
    assert!(
        fs.stat(tmp).unwrap().mtime > MTIME,
        "creating changes the directory"
    );
}

#[test]
fn open_flags_on_directories_and_files() {
    let mut fs = fs();
    let dir = fs.lookup(ROOT, "dir", true).unwrap();
    let directory = OpenFlags {
        directory: true,
        ..FOLLOW
    };
    assert_eq!(fs.open(ROOT, "dir", directory), Ok(dir));
    assert_eq!(fs.open(ROOT, "dir", FOLLOW), Ok(dir));
    assert_eq!(fs.open(ROOT, "dirlink", directory), Ok(dir));
    assert_eq!(fs.open(ROOT, "a.txt", directory), Err(FsError::NotDir));
    assert_eq!(
        fs.open(
            ROOT,
            "link",
            OpenFlags {
                follow: false,
                ..directory
            }
        ),
        Err(FsError::NotDir)
    );
    assert_eq!(fs.open(ROOT, "a.txt/", FOLLOW), Err(FsError::NotDir));
    assert_eq!(
        fs.open(
            ROOT,
            "dir",
            OpenFlags {
                truncate: true,
                ..FOLLOW
            }
        ),
        Err(FsError::IsDir)
    );
    assert_eq!(fs.open(ROOT, "dir", CREATE), Err(FsError::IsDir));
    assert_eq!(
        fs.open(
            ROOT,
            "dir",
            OpenFlags {
                directory: true,
                ..CREATE
            }
        ),
        Ok(dir)
    );
    assert_eq!(fs.open(ROOT, "/", directory), Ok(ROOT));
    assert_eq!(fs.open(ROOT, ".", directory), Ok(ROOT));
    assert_eq!(
        fs.open(
            ROOT,
            "nodir",
            OpenFlags {
                directory: true,
                ..CREATE
            }
        ),
        Err(FsError::Invalid)
    );
    assert_eq!(fs.lookup(ROOT, "nodir", true), Err(FsError::NotFound));
}

#[test]
fn open_truncate_leaves_the_image_alone() {
    let image = image();
    let mut fs = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
    let ino = fs
        .open(
            ROOT,
            "a.txt",
            OpenFlags {
                truncate: true,
                ..FOLLOW
            },
        )
        .unwrap();
    assert_eq!(fs.stat(ino).unwrap().size, 0);
    assert!(fs.stat(ino).unwrap().mtime > MTIME);
    let other = Fs::new(image, Arc::new(Quota::new(MIB)));
    assert_eq!(cat(&other, "a.txt"), "hello");
    // Truncating a link truncates its target.
    put(&mut fs, "tmp/t", b"data").unwrap();
    fs.symlink("/tmp/t", ROOT, "tl").unwrap();
    fs.open(
        ROOT,
        "tl",
        OpenFlags {
            truncate: true,
            ..FOLLOW
        },
    )
    .unwrap();
    assert_eq!(cat(&fs, "tmp/t"), "");
}

#[test]
fn open_create_through_dangling_symlink_creates_the_target() {
    let mut fs = fs();
    fs.symlink("made", ROOT, "tmp/dangle").unwrap();
    let exclusive = OpenFlags {
        exclusive: true,
        ..CREATE
    };
    assert_eq!(fs.open(ROOT, "tmp/dangle", exclusive), Err(FsError::Exists));
    let ino = fs.open(ROOT, "tmp/dangle", CREATE).unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/made", false), Ok(ino));
    assert_eq!(fs.stat(ino).unwrap().kind, Kind::File);
    // Its target's directory must exist (image's `/dangling -> nowhere/x`).
    assert_eq!(fs.open(ROOT, "dangling", CREATE), Err(FsError::NotFound));
    // Without follow the link itself is opened.
    let link = fs.lookup(ROOT, "dangling", false).unwrap();
    assert_eq!(
        fs.open(
            ROOT,
            "dangling",
            OpenFlags {
                follow: false,
                ..CREATE
            }
        ),
        Ok(link)
    );
    // An absolute target is created from the dyno's root.
    fs.symlink("/tmp/abs-made", ROOT, "tmp/dangle2").unwrap();
    let made = fs.open(ROOT, "tmp/dangle2", CREATE).unwrap();
    assert_eq!(fs.lookup(ROOT, "/tmp/abs-made", true), Ok(made));
}

// ---- read, write, sizes

#[test]
fn read_at_offsets() {
    let fs = fs();
    let ino = fs.lookup(ROOT, "a.txt", true).unwrap();
    let mut buf = [0; 3];
    assert_eq!(fs.read(ino, 0, &mut buf), Ok(3));
    assert_eq!(&buf, b"hel");
    assert_eq!(fs.read(ino, 3, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"lo");
    assert_eq!(fs.read(ino, 5, &mut buf), Ok(0));
    assert_eq!(fs.read(ino, 6, &mut buf), Ok(0));
    assert_eq!(fs.read(ino, u64::MAX, &mut buf), Ok(0));
    assert_eq!(fs.read(ino, 0, &mut []), Ok(0));
    assert_eq!(
        fs.stat(ino).unwrap().atime,
        MTIME,
        "reads do not touch the layer"
    );
    assert!(fs.layer.is_empty());
}

#[test]
fn write_copies_up_and_updates_times() {
    let image = image();
    let mut fs = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
    let ino = fs.lookup(ROOT, "a.txt", true).unwrap();
    assert_eq!(fs.write(ino, Some(0), b"J"), Ok(1));
    assert_eq!(cat(&fs, "a.txt"), "Jello");
    let stat = fs.stat(ino).unwrap();
    assert!(stat.mtime > MTIME && stat.ctime == stat.mtime);
    assert_eq!(stat.atime, MTIME);
    // Append, overwrite past the end, and a hole filled with zeros.
    assert_eq!(fs.write(ino, None, b"!"), Ok(1));
    assert_eq!(cat(&fs, "a.txt"), "Jello!");
    assert_eq!(fs.write(ino, Some(4), b"owww"), Ok(4));
    assert_eq!(cat(&fs, "a.txt"), "Jellowww");
    assert_eq!(fs.write(ino, Some(10), b"z"), Ok(1));
    assert_eq!(read_ino(&fs, ino), b"Jellowww\0\0z");
    // The image is unchanged.
    let other = Fs::new(image, Arc::new(Quota::new(MIB)));
    assert_eq!(cat(&other, "a.txt"), "hello");
}

#[test]
fn write_limits() {
    let (mut fs, _) = fs_with(MIB);
    let ino = put(&mut fs, "tmp/f", b"abc").unwrap();
    let before = fs.used();
    assert_eq!(fs.write(ino, Some(u64::MAX), b"x"), Err(FsError::TooBig));
    assert_eq!(
        fs.write(ino, Some(u64::MAX - 1), b"xy"),
        Err(FsError::TooBig)
    );
    assert_eq!(fs.write(ino, Some(MIB), b"x"), Err(FsError::TooBig));
    assert_eq!(fs.set_size(ino, u64::MAX), Err(FsError::TooBig));
    assert_eq!(fs.set_size(ino, MIB + 1), Err(FsError::TooBig));
    assert_eq!(
        fs.write(ino, Some(5), b""),
        Ok(0),
        "writing nothing extends nothing"
    );
    assert_eq!(fs.stat(ino).unwrap().size, 3);
    assert_eq!(fs.used(), before);
}

#[test]
fn read_write_and_size_on_directories_and_links() {
    let mut fs = fs();
    let dir = fs.lookup(ROOT, "dir", true).unwrap();
    let link = fs.lookup(ROOT, "link", false).unwrap();
    let mut buf = [0; 4];
    assert_eq!(fs.read(dir, 0, &mut buf), Err(FsError::IsDir));
    assert_eq!(fs.write(dir, Some(0), b"x"), Err(FsError::IsDir));
    assert_eq!(fs.set_size(dir, 0), Err(FsError::IsDir));
    assert_eq!(fs.read(link, 0, &mut buf), Err(FsError::Invalid));
    assert_eq!(fs.write(link, None, b"x"), Err(FsError::Invalid));
    assert_eq!(fs.set_size(link, 0), Err(FsError::Invalid));
    assert_eq!(fs.read(12345678, 0, &mut buf), Err(FsError::NotFound));
    assert_eq!(fs.write(12345678, None, b"x"), Err(FsError::NotFound));
    assert!(fs.layer.is_empty());
}

#[test]
fn set_size_truncates_and_extends() {
    let (mut fs, quota) = fs_with(MIB);
    let ino = fs.lookup(ROOT, "a.txt", true).unwrap();
    fs.set_size(ino, 2).unwrap();
    assert_eq!(cat(&fs, "a.txt"), "he");
    let used = fs.used();
    fs.set_size(ino, 6).unwrap();
    assert_eq!(read_ino(&fs, ino), b"he\0\0\0\0");
    assert_eq!(fs.used(), used + 4);
    fs.set_size(ino, 0).unwrap();
    assert_eq!(fs.used(), used - 2);
    assert_eq!(quota.used(), fs.used());
    // Setting the same size still counts as a change.
    let t = fs.lookup(ROOT, "bin/run", true).unwrap();
    fs.set_size(t, 5).unwrap();
    assert!(fs.stat(t).unwrap().mtime > MTIME);
    assert_eq!(cat(&fs, "bin/run"), "#!run");
}

#[test]
fn set_times() {
    let mut fs = fs();
    let ino = fs.lookup(ROOT, "a.txt", true).unwrap();
    fs.set_times(ino, SetTime::At(7), SetTime::Keep).unwrap();
    let stat = fs.stat(ino).unwrap();
    assert_eq!((stat.atime, stat.mtime), (7, MTIME));
    assert!(stat.ctime > MTIME);
    fs.set_times(ino, SetTime::Keep, SetTime::At(9)).unwrap();
    assert_eq!(fs.stat(ino).unwrap().atime, 7);
    assert_eq!(fs.stat(ino).unwrap().mtime, 9);
    fs.set_times(ino, SetTime::Now, SetTime::Now).unwrap();
    let stat = fs.stat(ino).unwrap();
    assert!(stat.atime > MTIME && stat.mtime == stat.atime);
    // Directories and links too; unknown inodes not.
    fs.set_times(ROOT, SetTime::At(1), SetTime::At(2)).unwrap();
    assert_eq!(fs.stat(ROOT).unwrap().mtime, 2);
    let link = fs.lookup(ROOT, "link", false).unwrap();
    fs.set_times(link, SetTime::At(3), SetTime::At(3)).unwrap();
    assert_eq!(fs.stat(link).unwrap().mtime, 3);
    assert_eq!(
        fs.stat(fs.lookup(ROOT, "link", true).unwrap())
            .unwrap()
            .mtime,
        stat.mtime
    );
    assert_eq!(
        fs.set_times(424242, SetTime::Now, SetTime::Now),
        Err(FsError::NotFound)
    );
}

// ---- directories

#[test]
fn mkdir_and_its_errors() {
    let mut fs = fs();
    let new = fs.mkdir(ROOT, "tmp/new").unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/new", true), Ok(new));
    assert_eq!(fs.stat(new).unwrap().kind, Kind::Dir);
    assert_eq!(fs.stat(new).unwrap().nlink, 1);
    assert_eq!(fs.lookup(new, "..", true), fs.lookup(ROOT, "tmp", true));
    assert_eq!(
        fs.mkdir(new, "x/")
            .map(|i| fs.lookup(ROOT, "tmp/new/x", true) == Ok(i)),
        Ok(true)
    );
    assert_eq!(fs.mkdir(ROOT, "tmp/new"), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "a.txt"), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "dangling"), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "link/"), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "/"), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "."), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "dir/.."), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT, "no/such"), Err(FsError::NotFound));
    assert_eq!(fs.mkdir(ROOT, "a.txt/x"), Err(FsError::NotDir));
    assert_eq!(fs.mkdir(ROOT, ""), Err(FsError::NotFound));
    assert_eq!(
        fs.mkdir(ROOT, &"x".repeat(NAME_MAX + 1)),
        Err(FsError::NameTooLong)
    );
    // Through a link to a directory, into an image directory.
    let made = fs.mkdir(ROOT, "dirlink/made").unwrap();
    assert_eq!(fs.lookup(ROOT, "dir/made", true), Ok(made));
}

#[test]
fn unlink_and_its_errors() {
    let mut fs = fs();
    fs.unlink(ROOT, "a.txt").unwrap();
    assert_eq!(fs.lookup(ROOT, "a.txt", true), Err(FsError::NotFound));
    assert_eq!(
        fs.lookup(ROOT, "link", true),
        Err(FsError::NotFound),
        "the link now dangles"
    );
    fs.unlink(ROOT, "dirlink").unwrap();
    assert_eq!(
        kind(&fs, "dir", true),
        Kind::Dir,
        "unlinking a link leaves its target"
    );
    assert_eq!(fs.unlink(ROOT, "a.txt"), Err(FsError::NotFound));
    assert_eq!(fs.unlink(ROOT, "dir"), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOT, "dir/"), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOT, "."), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOT, "/"), Err(FsError::IsDir));
    assert_eq!(fs.unlink(ROOT, "bin/run/"), Err(FsError::NotDir));
    assert_eq!(fs.unlink(ROOT, "bin/run/x"), Err(FsError::NotDir));
    assert_eq!(fs.unlink(ROOT, ""), Err(FsError::NotFound));
    fs.unlink(ROOT, "dir/up").unwrap();
    assert_eq!(
        names(&fs, fs.lookup(ROOT, "dir", true).unwrap()),
        [".", "..", "b.txt", "sub"]
    );
    // An unlinked image inode is gone for good once nothing holds it.
    let run = fs.lookup(ROOT, "bin/run", true).unwrap();
    fs.unlink(ROOT, "bin/run").unwrap();
    assert_eq!(fs.stat(run), Err(FsError::NotFound));
    assert_eq!(fs.layer.get(&run).map(Option::is_none), Some(true));
}

#[test]
fn rmdir_and_its_errors() {
    let mut fs = fs();
    assert_eq!(fs.rmdir(ROOT, "/"), Err(FsError::NotPermitted));
    assert_eq!(fs.rmdir(ROOT, "//"), Err(FsError::NotPermitted));
    assert_eq!(fs.rmdir(ROOT, "."), Err(FsError::Invalid));
    assert_eq!(fs.rmdir(ROOT, "dir/."), Err(FsError::Invalid));
    assert_eq!(fs.rmdir(ROOT, "dir/sub/.."), Err(FsError::Invalid));
    assert_eq!(fs.rmdir(ROOT, "dir"), Err(FsError::NotEmpty));
    assert_eq!(fs.rmdir(ROOT, "a.txt"), Err(FsError::NotDir));
    assert_eq!(fs.rmdir(ROOT, "dirlink"), Err(FsError::NotDir));
    assert_eq!(fs.rmdir(ROOT, "nope"), Err(FsError::NotFound));
    let sub = fs.lookup(ROOT, "dir/sub", true).unwrap();
    fs.unlink(ROOT, "dir/sub/c.txt").unwrap();
    fs.rmdir(ROOT, "dir/sub/").unwrap();
    assert_eq!(fs.lookup(ROOT, "dir/sub", true), Err(FsError::NotFound));
    assert_eq!(fs.stat(sub), Err(FsError::NotFound));
    let new = fs.mkdir(ROOT, "tmp/d").unwrap();
    fs.rmdir(new, "../d").unwrap();
    assert_eq!(fs.stat(new), Err(FsError::NotFound));
    // The dyno may remove its own /tmp.
    fs.rmdir(ROOT, "tmp").unwrap();
    assert_eq!(
        names(&fs, ROOT),
        [
            ".", "..", "a.txt", "abs", "bin", "dangling", "dir", "dirlink", "link"
        ]
    );
}

#[test]
fn removed_directory_stays_open_but_takes_nothing() {
    let mut fs = fs();
    let dir = fs.mkdir(ROOT, "tmp/gone").unwrap();
    fs.retain(dir);
    fs.rmdir(ROOT, "tmp/gone").unwrap();
    let stat = fs.stat(dir).unwrap();
    assert_eq!((stat.kind, stat.nlink), (Kind::Dir, 0));
    assert_eq!(fs.open(dir, "f", CREATE), Err(FsError::NotFound));
    assert_eq!(fs.mkdir(dir, "d"), Err(FsError::NotFound));
    assert_eq!(fs.lookup(dir, "..", true), Err(FsError::NotFound));
    assert_eq!(fs.lookup(dir, ".", true), Ok(dir));
    assert_eq!(names(&fs, dir), [".", ".."]);
    fs.release(dir);
    assert_eq!(fs.stat(dir), Err(FsError::NotFound));
}

// ---- rename

#[test]
fn rename_files() {
    let mut fs = fs();
    let a = fs.lookup(ROOT, "a.txt", true).unwrap();
    fs.rename(ROOT, "a.txt", ROOT, "tmp/moved").unwrap();
    assert_eq!(fs.lookup(ROOT, "a.txt", true), Err(FsError::NotFound));
    assert_eq!(fs.lookup(ROOT, "tmp/moved", true), Ok(a));
    assert_eq!(cat(&fs, "tmp/moved"), "hello");
    // Replacing a file; the replaced one is freed.
    let b = fs.lookup(ROOT, "dir/b.txt", true).unwrap();
    let dir = fs.lookup(ROOT, "dir", true).unwrap();
    fs.rename(dir, "b.txt", ROOT, "tmp/moved").unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/moved", true), Ok(b));
    assert_eq!(fs.stat(a), Err(FsError::NotFound));
    // Within one directory, and a link is moved as itself.
    fs.rename(ROOT, "link", ROOT, "link2").unwrap();
    assert_eq!(fs.readlink(ROOT, "link2").unwrap(), "a.txt");
    assert_eq!(fs.rename(ROOT, "nope", ROOT, "x"), Err(FsError::NotFound));
    assert_eq!(
        fs.rename(ROOT, "dir/sub/c.txt", ROOT, "no/such"),
        Err(FsError::NotFound)
    );
    assert_eq!(fs.rename(ROOT, "bin/run/", ROOT, "x"), Err(FsError::NotDir));
    // A trailing `/` on a missing destination names a directory that is not there (as wasmtime's host says).
    assert_eq!(
        fs.rename(ROOT, "bin/run", ROOT, "x/"),
        Err(FsError::NotFound)
    );
    assert_eq!(fs.rename(ROOT, "bin/run", ROOT, "dir"), Err(FsError::IsDir));
    assert_eq!(
        fs.rename(ROOT, "dir/sub", ROOT, "bin/run"),
        Err(FsError::NotDir)
    );
    assert_eq!(cat(&fs, "bin/run"), "#!run");
}

#[test]
fn rename_directories() {
    let mut fs = fs();
    let sub = fs.lookup(ROOT, "dir/sub", true).unwrap();
    fs.rename(ROOT, "dir/sub", ROOT, "tmp/sub2/").unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/sub2", true), Ok(sub));
    assert_eq!(cat(&fs, "tmp/sub2/c.txt"), "sea");
    assert_eq!(
        fs.lookup(sub, "..", true),
        fs.lookup(ROOT, "tmp", true),
        "`..` follows the move"
    );
    // Over an empty directory, not over a non-empty one.
    let empty = fs.mkdir(ROOT, "empty").unwrap();
    assert_eq!(
        fs.rename(ROOT, "tmp/sub2", ROOT, "dir"),
        Err(FsError::NotEmpty)
    );
    fs.rename(ROOT, "tmp/sub2", ROOT, "empty").unwrap();
    assert_eq!(fs.lookup(ROOT, "empty", true), Ok(sub));
    assert_eq!(fs.stat(empty), Err(FsError::NotFound));
    assert_eq!(fs.lookup(sub, "..", true), Ok(ROOT));
    // Into its own subtree.
    assert_eq!(fs.rename(ROOT, "dir", ROOT, "dir/x"), Err(FsError::Invalid));
    fs.mkdir(ROOT, "dir/deeper").unwrap();
    assert_eq!(
        fs.rename(ROOT, "dir", ROOT, "dir/deeper/x"),
        Err(FsError::Invalid)
    );
    assert_eq!(
        fs.rename(ROOT, "dir", ROOT, "dirlink/deeper/x"),
        Err(FsError::Invalid)
    );
    assert_eq!(
        fs.rename(ROOT, "dir", ROOT, "dir/deeper"),
        Err(FsError::Invalid)
    );
    assert_eq!(
        fs.rename(ROOT, "dir/deeper", ROOT, "dir"),
        Err(FsError::NotEmpty)
    );
    // A renamed image directory keeps its contents.
    fs.rename(ROOT, "dir", ROOT, "renamed").unwrap();
    assert_eq!(cat(&fs, "renamed/b.txt"), "bee");
    assert_eq!(cat(&fs, "renamed/up"), "hello");
}

#[test]
fn rename_special_cases() {
    let mut fs = fs();
    assert_eq!(fs.rename(ROOT, "/", ROOT, "x"), Err(FsError::NotPermitted));
    assert_eq!(
        fs.rename(ROOT, "dir", ROOT, "/"),
        Err(FsError::NotPermitted)
    );
    assert_eq!(fs.rename(ROOT, ".", ROOT, "x"), Err(FsError::Invalid));
    assert_eq!(fs.rename(ROOT, "dir/..", ROOT, "x"), Err(FsError::Invalid));
    assert_eq!(
        fs.rename(ROOT, "dir/sub", ROOT, "dir/."),
        Err(FsError::Invalid)
    );
    assert_eq!(fs.rename(ROOT, "", ROOT, "x"), Err(FsError::NotFound));
    // Onto itself, or onto another link to the same inode: nothing happens.
    fs.rename(ROOT, "a.txt", ROOT, "a.txt").unwrap();
    fs.rename(ROOT, "dir", ROOT, "./dir/").unwrap();
    fs.link(ROOT, "a.txt", ROOT, "hard", false).unwrap();
    fs.rename(ROOT, "a.txt", ROOT, "hard").unwrap();
    assert_eq!(
        fs.lookup(ROOT, "a.txt", true),
        fs.lookup(ROOT, "hard", true)
    );
    assert_eq!(
        fs.stat(fs.lookup(ROOT, "hard", true).unwrap())
            .unwrap()
            .nlink,
        2
    );
}

#[test]
fn rename_keeps_descriptors_valid() {
    let mut fs = fs();
    let moved = put(&mut fs, "tmp/m", b"moved").unwrap();
    let replaced = put(&mut fs, "tmp/r", b"replaced").unwrap();
    fs.retain(moved);
    fs.retain(replaced);
    fs.rename(ROOT, "tmp/m", ROOT, "tmp/r").unwrap();
    assert_eq!(read_ino(&fs, moved), b"moved");
    assert_eq!(read_ino(&fs, replaced), b"replaced");
    assert_eq!(fs.stat(replaced).unwrap().nlink, 0);
    fs.release(replaced);
    assert_eq!(fs.stat(replaced), Err(FsError::NotFound));
    fs.release(moved);
    assert_eq!(cat(&fs, "tmp/r"), "moved");
}

// ---- links

#[test]
fn hard_links() {
    let mut fs = fs();
    let a = fs.lookup(ROOT, "a.txt", true).unwrap();
    fs.link(ROOT, "a.txt", ROOT, "tmp/hard", false).unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/hard", true), Ok(a));
    assert_eq!(fs.stat(a).unwrap().nlink, 2);
    fs.write(a, Some(0), b"J").unwrap();
    assert_eq!(cat(&fs, "tmp/hard"), "Jello");
    fs.unlink(ROOT, "a.txt").unwrap();
    assert_eq!(fs.stat(a).unwrap().nlink, 1);
    assert_eq!(cat(&fs, "tmp/hard"), "Jello");
    // Of a link, with and without follow.
    fs.link(ROOT, "abs", ROOT, "tmp/abs-target", true).unwrap();
    assert_eq!(
        fs.lookup(ROOT, "tmp/abs-target", false),
        fs.lookup(ROOT, "dir/b.txt", true)
    );
    fs.link(ROOT, "abs", ROOT, "tmp/abs-link", false).unwrap();
    assert_eq!(
        fs.lookup(ROOT, "tmp/abs-link", false),
        fs.lookup(ROOT, "abs", false)
    );
    assert_eq!(fs.readlink(ROOT, "tmp/abs-link").unwrap(), "/dir/b.txt");
    // Errors.
    assert_eq!(
        fs.link(ROOT, "dir", ROOT, "tmp/d", false),
        Err(FsError::NotPermitted)
    );
    assert_eq!(
        fs.link(ROOT, "dirlink", ROOT, "tmp/d", true),
        Err(FsError::NotPermitted)
    );
    assert_eq!(
        fs.link(ROOT, ".", ROOT, "tmp/d", true),
        Err(FsError::NotPermitted)
    );
    assert_eq!(
        fs.link(ROOT, "nope", ROOT, "tmp/d", true),
        Err(FsError::NotFound)
    );
    assert_eq!(
        fs.link(ROOT, "dangling", ROOT, "tmp/d", true),
        Err(FsError::NotFound)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run", ROOT, "tmp/hard", true),
        Err(FsError::Exists)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run", ROOT, "dir", true),
        Err(FsError::Exists)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run", ROOT, "/", true),
        Err(FsError::Exists)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run", ROOT, "no/such", true),
        Err(FsError::NotFound)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run/", ROOT, "tmp/x", true),
        Err(FsError::NotDir)
    );
    assert_eq!(
        fs.link(ROOT, "bin/run", ROOT, "tmp/x/", true),
        Err(FsError::NotFound)
    );
}

#[test]
fn symlink_and_readlink() {
    let mut fs = fs();
    fs.symlink("../a.txt", ROOT, "tmp/rel").unwrap();
    assert_eq!(fs.readlink(ROOT, "tmp/rel").unwrap(), "../a.txt");
    assert_eq!(
        cat(&fs, "tmp/rel"),
        "hello",
        "relative to the link's directory"
    );
    let tmp = fs.lookup(ROOT, "tmp", true).unwrap();
    assert_eq!(fs.readlink(tmp, "rel").unwrap(), "../a.txt");
    assert_eq!(fs.readlink(ROOT, "a.txt"), Err(FsError::Invalid));
    assert_eq!(fs.readlink(ROOT, "dir"), Err(FsError::Invalid));
    assert_eq!(fs.readlink(ROOT, "dirlink/"), Err(FsError::Invalid));
    assert_eq!(fs.readlink(ROOT, "nope"), Err(FsError::NotFound));
    assert_eq!(fs.readlink(ROOT, "dangling").unwrap(), "nowhere/x");
    assert_eq!(fs.symlink("x", ROOT, "tmp/rel"), Err(FsError::Exists));
    assert_eq!(fs.symlink("x", ROOT, "a.txt"), Err(FsError::Exists));
    assert_eq!(fs.symlink("x", ROOT, "."), Err(FsError::Exists));
    assert_eq!(fs.symlink("x", ROOT, "tmp/new/"), Err(FsError::NotFound));
    assert_eq!(fs.symlink("x", ROOT, "no/such"), Err(FsError::NotFound));
    assert_eq!(fs.symlink("", ROOT, "tmp/empty"), Err(FsError::NotFound));
    assert_eq!(
        fs.symlink("a\0b", ROOT, "tmp/nul"),
        Err(FsError::IllegalBytes)
    );
    assert_eq!(
        fs.symlink(&"x".repeat(PATH_MAX + 1), ROOT, "tmp/long"),
        Err(FsError::NameTooLong)
    );
    let link = fs.lookup(ROOT, "tmp/rel", false).unwrap();
    let stat = fs.stat(link).unwrap();
    assert_eq!((stat.kind, stat.size, stat.nlink), (Kind::Symlink, 8, 1));
}

// ---- read_dir

#[test]
fn read_dir_lists_dots_then_entries() {
    let fs = fs();
    let entries = fs.read_dir(ROOT, 0, usize::MAX).unwrap();
    let listed: Vec<_> = entries
        .iter()
        .map(|e| (e.cookie, e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        listed,
        [
            (1, ".", Kind::Dir),
            (2, "..", Kind::Dir),
            (3, "a.txt", Kind::File),
            (4, "abs", Kind::Symlink),
            (5, "bin", Kind::Dir),
            (6, "dangling", Kind::Symlink),
            (7, "dir", Kind::Dir),
            (8, "dirlink", Kind::Symlink),
            (9, "link", Kind::Symlink),
            (10, "tmp", Kind::Dir),
        ]
    );
    assert_eq!((entries[0].ino, entries[1].ino), (ROOT, ROOT));
    assert_eq!(entries[2].ino, fs.lookup(ROOT, "a.txt", true).unwrap());
    let sub = fs.lookup(ROOT, "dir/sub", true).unwrap();
    let dots = fs.read_dir(sub, 0, 2).unwrap();
    assert_eq!(
        (dots[0].ino, dots[1].ino),
        (sub, fs.lookup(ROOT, "dir", true).unwrap())
    );
    // Paging.
    assert_eq!(fs.read_dir(ROOT, 0, 0).unwrap(), []);
    let page: Vec<_> = fs
        .read_dir(ROOT, 2, 3)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(page, ["a.txt", "abs", "bin"]);
    let page: Vec<_> = fs
        .read_dir(ROOT, 1, 2)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(page, ["..", "a.txt"]);
    assert_eq!(fs.read_dir(ROOT, 10, 5).unwrap(), []);
    assert_eq!(fs.read_dir(ROOT, u64::MAX, 5).unwrap(), []);
    // Not a directory.
    let file = fs.lookup(ROOT, "a.txt", true).unwrap();
    assert_eq!(fs.read_dir(file, 0, 1), Err(FsError::NotDir));
    assert_eq!(fs.read_dir(987654, 0, 1), Err(FsError::NotFound));
}

#[test]
fn read_dir_cookies_survive_changes() {
    let mut fs = fs();
    let tmp = fs.lookup(ROOT, "tmp", true).unwrap();
    for name in ["a", "b", "c", "d"] {
        fs.open(tmp, name, CREATE).unwrap();
    }
    let first = fs.read_dir(tmp, 0, 4).unwrap();
    let names_of = |v: &[DirEntry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names_of(&first), [".", "..", "a", "b"]);
    let after_b = first[3].cookie;
    // Remove the entry we stopped at and one before it, add new ones: listing on loses and repeats nothing.
    fs.unlink(tmp, "b").unwrap();
    fs.unlink(tmp, "a").unwrap();
    fs.open(tmp, "e", CREATE).unwrap();
    fs.mkdir(tmp, "a").unwrap();
    let rest = fs.read_dir(tmp, after_b, usize::MAX).unwrap();
    assert_eq!(names_of(&rest), ["c", "d", "e", "a"]);
    assert_eq!(rest[3].kind, Kind::Dir);
    // Cookies of remaining entries do not change.
    let all = fs.read_dir(tmp, 0, usize::MAX).unwrap();
    let c = all.iter().find(|e| e.name == "c").unwrap();
    assert_eq!(c.cookie, rest[0].cookie);
    assert_eq!(fs.read_dir(tmp, c.cookie, 1).unwrap()[0].name, "d");
    // A replaced entry keeps its place.
    fs.rename(tmp, "e", tmp, "c").unwrap();
    let all = fs.read_dir(tmp, 0, usize::MAX).unwrap();
    assert_eq!(names_of(&all), [".", "..", "c", "d", "a"]);
    // An image directory's cookies hold across its copy into the layer.
    let before = fs.read_dir(ROOT, 0, usize::MAX).unwrap();
    fs.unlink(ROOT, "abs").unwrap();
    let after = fs.read_dir(ROOT, 0, usize::MAX).unwrap();
    let kept: Vec<_> = before.into_iter().filter(|e| e.name != "abs").collect();
    assert_eq!(after, kept);
}

// ---- isolation

#[test]
fn dynos_over_one_image_are_isolated() {
    let image = image();
    let snapshot: Vec<String> = {
        let fs = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
        names(&fs, ROOT)
    };
    let mut one = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
    let mut two = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
    put(&mut one, "a.txt", b"one").unwrap();
    put(&mut two, "a.txt", b"two").unwrap();
    put(&mut one, "tmp/x", b"one's").unwrap();
    put(&mut two, "new", b"two's").unwrap();
    one.unlink(ROOT, "dir/b.txt").unwrap();
    two.rename(ROOT, "bin", ROOT, "sbin").unwrap();
    assert_eq!(cat(&one, "a.txt"), "one");
    assert_eq!(cat(&two, "a.txt"), "two");
    assert_eq!(two.lookup(ROOT, "tmp/x", true), Err(FsError::NotFound));
    assert_eq!(one.lookup(ROOT, "new", true), Err(FsError::NotFound));
    assert_eq!(cat(&two, "dir/b.txt"), "bee");
    assert_eq!(cat(&one, "bin/run"), "#!run");
    // New inode numbers may coincide between dynos; each names its own file.
    assert_eq!(
        one.lookup(ROOT, "tmp/x", true),
        two.lookup(ROOT, "new", true)
    );
    // The image itself is untouched.
    let fresh = Fs::new(image.clone(), Arc::new(Quota::new(MIB)));
    assert_eq!(names(&fresh, ROOT), snapshot);
    assert_eq!(cat(&fresh, "a.txt"), "hello");
    assert_eq!(cat(&fresh, "dir/b.txt"), "bee");
    assert_eq!(fresh.lookup(ROOT, "tmp/x", true), Err(FsError::NotFound));
}

// ---- quota

#[test]
fn quota_fills_then_frees_on_unlink() {
    let (mut fs, quota) = fs_with(64 * 1024);
    let ino = fs.open(ROOT, "tmp/big", CREATE).unwrap();
    let chunk = [7u8; 4096];
    let mut written = 0u64;
    let err = loop {
        match fs.write(ino, None, &chunk) {
            Ok(n) => written += n as u64,
            Err(err) => break err,
        }
    };
    assert_eq!(err, FsError::NoSpace);
    // Nothing of the failed write happened.
    assert_eq!(fs.stat(ino).unwrap().size, written);
    assert_eq!(quota.used(), fs.used());
    assert!(quota.limit() - quota.used() < 4096);
    assert_eq!(fs.open(ROOT, "tmp/more", CREATE).map(drop), Ok(()));
    assert_eq!(
        fs.write(fs.lookup(ROOT, "tmp/more", true).unwrap(), None, &chunk),
        Err(FsError::NoSpace)
    );
    // Unlinking gives the bytes back.
    fs.unlink(ROOT, "tmp/big").unwrap();
    assert!(quota.used() < 1024);
    let again = put(&mut fs, "tmp/again", &[1; 32 * 1024]).unwrap();
    assert_eq!(fs.stat(again).unwrap().size, 32 * 1024);
}

#[test]
fn failed_changes_change_nothing() {
    // Room for one inode's metadata and little else.
    let (mut fs, quota) = fs_with(INODE_COST + 5);
    let tmp = fs.lookup(ROOT, "tmp", true).unwrap();
    let root_names = names(&fs, ROOT);
    assert_eq!(fs.open(ROOT, "tmp/f", CREATE), Err(FsError::NoSpace));
    assert_eq!(fs.mkdir(ROOT, "d"), Err(FsError::NoSpace));
    assert_eq!(fs.symlink("x", tmp, "l"), Err(FsError::NoSpace));
    assert_eq!(
        fs.unlink(ROOT, "a.txt"),
        Err(FsError::NoSpace),
        "the root's table must be copied first"
    );
    assert_eq!(fs.rename(ROOT, "a.txt", ROOT, "b"), Err(FsError::NoSpace));
    assert_eq!(
        fs.link(ROOT, "a.txt", ROOT, "b", false),
        Err(FsError::NoSpace)
    );
    let a = fs.lookup(ROOT, "a.txt", true).unwrap();
    assert_eq!(fs.write(a, None, b"!"), Err(FsError::NoSpace));
    assert_eq!(names(&fs, ROOT), root_names);
    assert_eq!(names(&fs, tmp), [".", ".."]);
    assert_eq!(cat(&fs, "a.txt"), "hello");
    assert_eq!((fs.used(), quota.used()), (0, 0));
    assert!(fs.layer.is_empty());
    // Metadata changes still fit.
    fs.set_times(a, SetTime::At(1), SetTime::At(1)).unwrap();
    assert_eq!(fs.used(), INODE_COST);
}

#[test]
fn empty_files_hit_the_quota() {
    let (mut fs, quota) = fs_with(MIB);
    let tmp = fs.lookup(ROOT, "tmp", true).unwrap();
    let mut created = 0u64;
    let err = loop {
        match fs.open(tmp, &format!("f{created}"), CREATE) {
            Ok(_) => created += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err, FsError::NoSpace);
    assert!(
        created > 1000 && created < MIB / (INODE_COST + ENTRY_COST),
        "{created}"
    );
    assert_eq!(quota.used(), fs.used());
    assert_eq!(names(&fs, tmp).len() as u64, created + 2);
    // Empty directories and links count the same way.
    // (Names long enough that what is left cannot hold them.)
    assert_eq!(
        fs.mkdir(tmp, "a-longer-name-directory"),
        Err(FsError::NoSpace)
    );
    assert_eq!(
        fs.symlink("t", tmp, "a-longer-name-link"),
        Err(FsError::NoSpace)
    );
}

#[test]
fn create_and_remove_leaks_nothing() {
    let (mut fs, quota) = fs_with(MIB);
    fs.set_times(
        fs.lookup(ROOT, "tmp", true).unwrap(),
        SetTime::Now,
        SetTime::Now,
    )
    .unwrap();
    let base = fs.used();
    assert_eq!(base, INODE_COST);
    for i in 0..2000 {
        let ino = put(&mut fs, "tmp/f", &[0; 100]).unwrap();
        fs.mkdir(ROOT, "tmp/d").unwrap();
        fs.symlink("f", ROOT, "tmp/l").unwrap();
        fs.link(ROOT, "tmp/f", ROOT, "tmp/h", false).unwrap();
        fs.rename(ROOT, "tmp/h", ROOT, &format!("tmp/h{i}"))
            .unwrap();
        fs.retain(ino);
        fs.unlink(ROOT, "tmp/f").unwrap();
        fs.unlink(ROOT, &format!("tmp/h{i}")).unwrap();
        fs.unlink(ROOT, "tmp/l").unwrap();
        fs.rmdir(ROOT, "tmp/d").unwrap();
        assert!(fs.used() > base, "the open file is still charged");
        fs.release(ino);
        assert_eq!(fs.used(), base, "round {i}");
    }
    assert_eq!(quota.used(), base);
    assert_eq!(fs.layer.len(), 1);
}

#[test]
fn copy_up_charges_the_whole_file() {
    let big: Arc<[u8]> = vec![1u8; 100_000].into();
    let image = Arc::new(Image::new([("big".to_string(), big)], [], 0));
    let quota = Arc::new(Quota::new(MIB));
    let mut fs = Fs::new(image.clone(), quota.clone());
    let ino = fs.lookup(ROOT, "big", true).unwrap();
    fs.write(ino, Some(0), b"x").unwrap();
    assert_eq!(fs.used(), INODE_COST + 100_000);
    // A quota smaller than the file: modifying it is TooBig, reading still works.
    let mut small = Fs::new(image, Arc::new(Quota::new(50_000)));
    let ino = small.lookup(ROOT, "big", true).unwrap();
    assert_eq!(small.write(ino, Some(0), b"x"), Err(FsError::TooBig));
    let mut buf = [0; 4];
    assert_eq!(small.read(ino, 99_998, &mut buf), Ok(2));
    // Truncating copies only what is kept.
    small.set_size(ino, 10).unwrap();
    assert_eq!(small.used(), INODE_COST + 10);
    // Unlinking it outright copies nothing either.
    drop(small);
    let image = Arc::new(Image::new(
        [("big".to_string(), vec![0u8; 100_000].into())],
        [],
        0,
    ));
    let mut small = Fs::new(image, Arc::new(Quota::new(50_000)));
    small.unlink(ROOT, "big").unwrap();
    assert!(small.used() < 1000);
}

#[test]
fn quota_is_shared_with_other_users() {
    let quota = Arc::new(Quota::new(10_000));
    assert!(quota.try_take(9_000), "say, linear memory");
    let mut fs = Fs::new(image(), quota.clone());
    let ino = fs.open(ROOT, "tmp/f", CREATE).unwrap();
    assert_eq!(fs.write(ino, None, &[0; 1000]), Err(FsError::NoSpace));
    quota.give_back(9_000);
    assert_eq!(fs.write(ino, None, &[0; 1000]), Ok(1000));
    assert_eq!(quota.used(), fs.used());
}

#[test]
fn dropping_fs_returns_its_charge() {
    let quota = Arc::new(Quota::new(MIB));
    let image = image();
    let mut one = Fs::new(image.clone(), quota.clone());
    let mut two = Fs::new(image, quota.clone());
    put(&mut one, "tmp/x", &[0; 5000]).unwrap();
    put(&mut two, "a.txt", &[0; 7000]).unwrap();
    let held = one.open(ROOT, "tmp/held", CREATE).unwrap();
    one.retain(held);
    one.unlink(ROOT, "tmp/held").unwrap();
    assert_eq!(quota.used(), one.used() + two.used());
    let two_used = two.used();
    drop(one);
    assert_eq!(quota.used(), two_used);
    drop(two);
    assert_eq!(quota.used(), 0);
}

// ---- descriptors

#[test]
fn unlinked_files_live_while_open() {
    let (mut fs, quota) = fs_with(MIB);
    let ino = put(&mut fs, "tmp/f", b"still here").unwrap();
    fs.retain(ino);
    fs.retain(ino);
    fs.unlink(ROOT, "tmp/f").unwrap();
    assert_eq!(fs.lookup(ROOT, "tmp/f", true), Err(FsError::NotFound));
    assert_eq!(fs.stat(ino).unwrap().nlink, 0);
    assert_eq!(read_ino(&fs, ino), b"still here");
    fs.write(ino, None, &[0; 1000]).unwrap();
    assert_eq!(fs.stat(ino).unwrap().size, 1010);
    let charged = fs.used();
    fs.release(ino);
    assert_eq!(fs.stat(ino).unwrap().size, 1010, "one descriptor is left");
    fs.release(ino);
    assert_eq!(fs.stat(ino), Err(FsError::NotFound));
    assert!(fs.used() < charged - 1010);
    assert_eq!(quota.used(), fs.used());
    // Unbalanced or unknown releases do nothing.
    fs.release(ino);
    fs.release(ROOT);
    fs.retain(555_555);
    assert_eq!(fs.stat(ROOT).unwrap().kind, Kind::Dir);
}

#[test]
fn unlinked_image_files_live_while_open() {
    let mut fs = fs();
    let ino = fs.lookup(ROOT, "dir/b.txt", true).unwrap();
    fs.retain(ino);
    fs.unlink(ROOT, "dir/b.txt").unwrap();
    assert_eq!(read_ino(&fs, ino), b"bee");
    fs.write(ino, None, b"s").unwrap();
    assert_eq!(read_ino(&fs, ino), b"bees");
    fs.release(ino);
    assert_eq!(fs.stat(ino), Err(FsError::NotFound));
    assert_eq!(fs.read(ino, 0, &mut [0; 4]), Err(FsError::NotFound));
    // Still there for another dyno.
    let other = Fs::new(fs.image.clone(), Arc::new(Quota::new(MIB)));
    assert_eq!(cat(&other, "dir/b.txt"), "bee");
}

#[test]
fn open_files_keep_their_inode_across_writes_elsewhere() {
    let mut fs = fs();
    let ino = fs.open(ROOT, "a.txt", FOLLOW).unwrap();
    fs.retain(ino);
    // Replace the path with a new file: the descriptor still reads the old one.
    put(&mut fs, "tmp/new", b"new").unwrap();
    fs.rename(ROOT, "tmp/new", ROOT, "a.txt").unwrap();
    assert_eq!(read_ino(&fs, ino), b"hello");
    assert_eq!(cat(&fs, "a.txt"), "new");
    fs.release(ino);
    assert_eq!(fs.stat(ino), Err(FsError::NotFound));
}

#[test]
fn fs_and_image_can_cross_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Fs>();
    shareable::<Image>();
    let image = image();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let image = image.clone();
            std::thread::spawn(move || {
                let mut fs = Fs::new(image, Arc::new(Quota::new(MIB)));
                put(&mut fs, "a.txt", format!("dyno {i}").as_bytes()).unwrap();
                cat(&fs, "a.txt")
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), format!("dyno {i}"));
    }
}
