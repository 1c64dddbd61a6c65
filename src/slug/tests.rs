use super::*;
use std::fs;

fn sample_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    fs::create_dir_all(dir.path().join("public/css")).unwrap();
    fs::write(dir.path().join("public/css/site.css"), "body{}").unwrap();
    fs::create_dir(dir.path().join("empty")).unwrap();
    std::os::unix::fs::symlink("app.wasm", dir.path().join("current.wasm")).unwrap();
    dir
}

fn options() -> PackOptions {
    PackOptions {
        process_types: [("web".to_string(), "app.wasm".to_string())].into(),
        buildpack: "wasm".into(),
        ..Default::default()
    }
}

#[test]
fn same_tree_packs_to_same_bytes() {
    let a = sample_app();
    let first = pack(a.path(), options()).unwrap();
    // Touch every file: mtimes must not leak into the archive.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(a.path().join("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let second = pack(a.path(), options()).unwrap();
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(first.bytes, second.bytes);

    let slug = Slug::from_bytes(&first.bytes, Limits::default()).unwrap();
    assert_eq!(slug.sha256(), first.sha256);
    assert_eq!(slug.manifest().size, 8 + 6);
    assert_eq!(&*slug.file("public/css/site.css").unwrap(), b"body{}");
    assert_eq!(&*slug.file("./current.wasm").unwrap(), b"\0asm\x01\0\0\0");
    assert!(slug.file("../etc/passwd").is_none());
}

#[test]
fn pack_refuses_wat_and_escaping_links() {
    let a = sample_app();
    fs::write(a.path().join("x.wat"), "(module)").unwrap();
    let err = pack(a.path(), options()).unwrap_err().to_string();
    assert!(err.contains("never .wat"), "{err}");
    fs::remove_file(a.path().join("x.wat")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", a.path().join("public/pw")).unwrap();
    let err = pack(a.path(), options()).unwrap_err().to_string();
    assert!(err.contains("points outside the app"), "{err}");
}

/// Builds an archive entry by entry with raw headers, so tests can write what a well-behaved tar library refuses.
struct Raw(tar::Builder<flate2::write::GzEncoder<Vec<u8>>>);

impl Raw {
    fn new() -> Self {
        Raw(tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        )))
    }
    fn entry(mut self, name: &str, kind: tar::EntryType, data: &[u8], link: &str) -> Self {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, tar::EntryType::Regular, data, "")
    }
    fn manifest(self, m: &Manifest) -> Self {
        self.file(MANIFEST_PATH, &serde_json::to_vec(m).unwrap())
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap().finish().unwrap()
    }
}

fn manifest_for(files: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        format: FORMAT,
        process_types: [("web".to_string(), "app.wasm".to_string())].into(),
        config_vars: Default::default(),
        buildpack: "test".into(),
        size: files.iter().map(|(_, d)| d.len() as u64).sum(),
        commit: None,
        files: files
            .iter()
            .map(|(p, d)| {
                (
                    p.to_string(),
                    FileEntry {
                        sha256: hex::encode(Sha256::digest(d)),
                        size: d.len() as u64,
                        executable: false,
                    },
                )
            })
            .collect(),
        links: Default::default(),
    }
}

fn open_err(bytes: Vec<u8>) -> String {
    Slug::from_bytes(&bytes, Limits::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn rejects_malicious_and_corrupt_slugs() {
    let good: &[u8] = b"hello";
    let m = manifest_for(&[("app.wasm", good)]);

    let base = || Raw::new().manifest(&m).file("app/app.wasm", good);
    assert!(Slug::from_bytes(&base().finish(), Limits::default()).is_ok());

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            base().file("app/../../etc/x", b"x").finish(),
            "`..` would escape",
        ),
        (base().file("/etc/passwd", b"x").finish(), "absolute paths"),
        (base().file("etc/passwd", b"x").finish(), "under app/"),
        (
            base()
                .entry("app/l", tar::EntryType::Symlink, b"", "../../etc")
                .finish(),
            "points outside app/",
        ),
        (
            base()
                .entry("app/l", tar::EntryType::Symlink, b"", "/etc/passwd")
                .finish(),
            "points outside app/",
        ),
        (
            base()
                .entry("app/h", tar::EntryType::Link, b"", "/etc/passwd")
                .finish(),
            "hard link",
        ),
        (
            base()
                .entry("app/dev", tar::EntryType::Char, b"", "")
                .finish(),
            "device files",
        ),
        (
            base()
                .entry("app/blk", tar::EntryType::Block, b"", "")
                .finish(),
            "device files",
        ),
        (
            base()
                .entry("app/fifo", tar::EntryType::Fifo, b"", "")
                .finish(),
            "FIFOs",
        ),
        (
            Raw::new()
                .manifest(&m)
                .file("app/app.wasm", b"hellO")
                .finish(),
            "does not match its sha256",
        ),
        (
            base().file("app/extra.txt", b"x").finish(),
            "not listed in the manifest",
        ),
        (
            Raw::new().manifest(&m).finish(),
            "listed in the manifest but missing",
        ),
        (
            Raw::new().file("app/app.wasm", good).finish(),
            "no manifest",
        ),
        (
            Raw::new()
                .file(MANIFEST_PATH, b"{not json")
                .file("app/app.wasm", good)
                .finish(),
            "manifest is invalid",
        ),
        (b"definitely not gzip".to_vec(), "not a valid gzip tar"),
    ];
    for (bytes, expected) in cases {
        let err = open_err(bytes);
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }

    // A corrupted byte in the middle of a real slug.
    let a = sample_app();
    let mut bytes = pack(a.path(), options()).unwrap().bytes;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    assert!(Slug::from_bytes(&bytes, Limits::default()).is_err());
}

#[test]
fn size_limits() {
    let a = sample_app();
    let packed = pack(a.path(), options()).unwrap();
    let limits = Limits::default().with_max_compressed(10);
    let err = Slug::from_bytes(&packed.bytes, limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the limit of 10 bytes"), "{err}");

    // A small archive that inflates past the unpacked limit.
    let big = vec![0u8; 1 << 20];
    let m = manifest_for(&[("zeros", &big)]);
    let bomb = Raw::new().manifest(&m).file("app/zeros", &big).finish();
    let limits = Limits {
        max_unpacked: 1000,
        ..Limits::default()
    };
    let err = Slug::from_bytes(&bomb, limits).unwrap_err().to_string();
    assert!(err.contains("unpacks to more than 1000 bytes"), "{err}");
}

#[test]
fn store_is_content_addressed() {
    let a = sample_app();
    let packed = pack(a.path(), options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SlugStore::new(dir.path());
    let path = store.put(&packed.sha256, &packed.bytes).unwrap();
    assert_eq!(path, dir.path().join(format!("{}.tar.gz", packed.sha256)));
    assert_eq!(fs::read(&path).unwrap(), packed.bytes);
    assert_eq!(store.put(&packed.sha256, &packed.bytes).unwrap(), path);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary files left behind");
}
