//! The commands the shell runs itself, over the dyno's filesystem: each reads its input from a [`Source`], writes
//! to `out` and `err`, and returns its exit status.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Where a command's standard input comes from.
pub enum Source {
    /// The shell's own standard input.
    Stdin,
    /// The output of the command before it in a pipeline.
    Bytes(Vec<u8>),
    /// A file (`< FILE`, or a module's output in a pipeline).
    File(PathBuf),
}

impl Source {
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        match self {
            Source::Stdin => {
                let mut all = Vec::new();
                crate::stdin().read_to_end(&mut all)?;
                Ok(all)
            }
            Source::Bytes(bytes) => Ok(bytes.clone()),
            Source::File(path) => fs::read(path),
        }
    }
}

pub struct Io<'a> {
    pub input: Source,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

type Builtin = fn(&[String], &mut Io) -> io::Result<i32>;

/// Which of a file's lines `head` or `tail` keeps.
type Pick = for<'a> fn(&'a [&'a [u8]], usize) -> &'a [&'a [u8]];

/// The builtins that only read and write: everything but `cd`, `export`, `unset`, `exit` and `env`, which change
/// or show the shell's own state (see `main.rs`).
pub const BUILTINS: &[(&str, Builtin, &str)] = &[
    ("cat", cat, "cat [FILE...]: print files (or standard input)"),
    ("cp", cp, "cp [-r] SOURCE... DEST: copy files (or trees)"),
    ("echo", echo, "echo [-n] WORDS...: print words"),
    ("false", |_, _| Ok(1), "false: fail"),
    (
        "grep",
        grep,
        "grep [-i] [-v] [-c] [-n] TEXT [FILE...]: lines containing TEXT",
    ),
    (
        "head",
        head,
        "head [-n N] [FILE...]: the first N lines (10)",
    ),
    ("ls", ls, "ls [-a] [-l] [PATH...]: list directories"),
    ("mkdir", mkdir, "mkdir [-p] DIR...: make directories"),
    ("mv", mv, "mv SOURCE... DEST: move or rename"),
    ("pwd", pwd, "pwd: the working directory"),
    ("rm", rm, "rm [-r] [-f] PATH...: remove files (or trees)"),
    ("rmdir", rmdir, "rmdir DIR...: remove empty directories"),
    ("sleep", sleep, "sleep SECONDS: wait"),
    ("tail", tail, "tail [-n N] [FILE...]: the last N lines (10)"),
    ("touch", touch, "touch FILE...: make files exist"),
    ("true", |_, _| Ok(0), "true: succeed"),
    (
        "wc",
        wc,
        "wc [-l] [-w] [-c] [FILE...]: count lines, words and bytes",
    ),
];

pub fn find(name: &str) -> Option<Builtin> {
    BUILTINS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, f, _)| *f)
}

/// Splits `-abc` style flags (any of `known`) from the other arguments; `--` ends the flags.
fn flags<'a>(
    name: &str,
    args: &'a [String],
    known: &str,
    err: &mut dyn Write,
) -> Option<(String, Vec<&'a String>)> {
    let mut set = String::new();
    let mut rest = Vec::new();
    let mut done = false;
    for arg in args {
        if !done && arg == "--" {
            done = true;
        } else if !done && arg.len() > 1 && arg.starts_with('-') {
            for c in arg[1..].chars() {
                if !known.contains(c) {
                    let _ = writeln!(err, "{name}: unknown option -{c} (options: -{known})");
                    return None;
                }
                set.push(c);
            }
        } else {
            rest.push(arg);
        }
    }
    Some((set, rest))
}

/// What went wrong, in coreutils' words.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::AlreadyExists => "File exists".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::IsADirectory => "Is a directory".into(),
        io::ErrorKind::NotADirectory => "Not a directory".into(),
        io::ErrorKind::DirectoryNotEmpty => "Directory not empty".into(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "No space left on device (the dyno's memory quota)".into()
        }
        _ => e.to_string(),
    }
}

/// Says what went wrong with `path` the way coreutils do, and returns the failing status.
fn fail(err: &mut dyn Write, name: &str, path: impl AsRef<Path>, e: &io::Error) -> i32 {
    let _ = writeln!(err, "{name}: {}: {}", path.as_ref().display(), describe(e));
    1
}

/// Each file's bytes, or the input's when no file is named; a file that cannot be read is reported and skipped.
fn inputs(name: &str, files: &[&String], io: &mut Io) -> (Vec<(String, Vec<u8>)>, i32) {
    if files.is_empty() {
        return match io.input.read_all() {
            Ok(bytes) => (vec![(String::new(), bytes)], 0),
            Err(e) => (vec![], fail(io.err, name, "standard input", &e)),
        };
    }
    let mut status = 0;
    let mut all = Vec::new();
    for file in files {
        if file.as_str() == "-" {
            match io.input.read_all() {
                Ok(bytes) => all.push(((*file).clone(), bytes)),
                Err(e) => status = fail(io.err, name, "standard input", &e),
            }
            continue;
        }
        match fs::read(file) {
            Ok(bytes) => all.push(((*file).clone(), bytes)),
            Err(e) => status = fail(io.err, name, file, &e),
        }
    }
    (all, status)
}

fn cat(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((_, files)) = flags("cat", args, "", io.err) else {
        return Ok(2);
    };
    let (all, status) = inputs("cat", &files, io);
    for (_, bytes) in all {
        io.out.write_all(&bytes)?;
    }
    Ok(status)
}

fn echo(args: &[String], io: &mut Io) -> io::Result<i32> {
    let (newline, words) = match args.first() {
        Some(first) if first == "-n" => (false, &args[1..]),
        _ => (true, args),
    };
    io.out.write_all(words.join(" ").as_bytes())?;
    if newline {
        io.out.write_all(b"\n")?;
    }
    Ok(0)
}

fn pwd(_: &[String], io: &mut Io) -> io::Result<i32> {
    writeln!(io.out, "{}", std::env::current_dir()?.display())?;
    Ok(0)
}

/// `-n N` or `-N`: how many lines `head` and `tail` show.
fn line_count(name: &str, args: &[String], io: &mut Io) -> Option<(usize, Vec<String>)> {
    let mut count = 10;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = if arg == "-n" {
            it.next().map(String::as_str)
        } else if let Some(n) = arg.strip_prefix("-n").or_else(|| arg.strip_prefix('-')) {
            Some(n).filter(|n| !n.is_empty())
        } else {
            files.push(arg.clone());
            continue;
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(n) => count = n,
            None => {
                let _ = writeln!(io.err, "{name}: {arg}: give a number of lines, as in -n 5");
                return None;
            }
        }
    }
    Some((count, files))
}

fn head(args: &[String], io: &mut Io) -> io::Result<i32> {
    ends("head", args, io, |lines, n| &lines[..n.min(lines.len())])
}

fn tail(args: &[String], io: &mut Io) -> io::Result<i32> {
    ends("tail", args, io, |lines, n| {
        &lines[lines.len().saturating_sub(n)..]
    })
}

fn ends(name: &str, args: &[String], io: &mut Io, pick: Pick) -> io::Result<i32> {
    let Some((count, files)) = line_count(name, args, io) else {
        return Ok(2);
    };
    let files: Vec<&String> = files.iter().collect();
    let (all, status) = inputs(name, &files, io);
    let many = all.len() > 1;
    for (i, (file, bytes)) in all.iter().enumerate() {
        if many {
            writeln!(io.out, "{}==> {file} <==", if i > 0 { "\n" } else { "" })?;
        }
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        for line in pick(&lines, count) {
            io.out.write_all(line)?;
        }
    }
    Ok(status)
}

fn wc(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((mut which, files)) = flags("wc", args, "lwc", io.err) else {
        return Ok(2);
    };
    if which.is_empty() {
        which = "lwc".into();
    }
    let (all, status) = inputs("wc", &files, io);
    let mut total = [0usize; 3];
    let many = all.len() > 1;
    for (file, bytes) in &all {
        let counts = [
            bytes.iter().filter(|b| **b == b'\n').count(),
            bytes
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .count(),
            bytes.len(),
        ];
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
        print_counts(io.out, &which, counts, file)?;
    }
    if many {
        print_counts(io.out, &which, total, "total")?;
    }
    Ok(status)
}

fn print_counts(
    out: &mut dyn Write,
    which: &str,
    counts: [usize; 3],
    name: &str,
) -> io::Result<()> {
    let shown: Vec<String> = ['l', 'w', 'c']
        .iter()
        .zip(counts)
        .filter(|(flag, _)| which.contains(**flag))
        .map(|(_, n)| format!("{n:>7}"))
        .collect();
    let line = format!("{} {name}", shown.join(" "));
    writeln!(out, "{}", line.trim_end())
}

fn grep(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((set, rest)) = flags("grep", args, "ivcn", io.err) else {
        return Ok(2);
    };
    let Some((pattern, files)) = rest.split_first() else {
        let _ = writeln!(
            io.err,
            "grep: give the text to look for: grep TEXT [FILE...]"
        );
        return Ok(2);
    };
    let fold = |s: &str| {
        if set.contains('i') {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let needle = fold(pattern);
    let (all, status) = inputs("grep", files, io);
    let many = all.len() > 1;
    let mut found = 0;
    for (file, bytes) in &all {
        let text = String::from_utf8_lossy(bytes);
        let mut count = 0;
        for (number, line) in text.lines().enumerate() {
            if fold(line).contains(&needle) == set.contains('v') {
                continue;
            }
            count += 1;
            if set.contains('c') {
                continue;
            }
            let prefix = if many {
                format!("{file}:")
            } else {
                String::new()
            };
            match set.contains('n') {
                true => writeln!(io.out, "{prefix}{}:{line}", number + 1)?,
                false => writeln!(io.out, "{prefix}{line}")?,
            }
        }
        if set.contains('c') {
            let prefix = if many {
                format!("{file}:")
            } else {
                String::new()
            };
            writeln!(io.out, "{prefix}{count}")?;
        }
        found += count;
    }
    Ok(if status != 0 {
        2
    } else if found > 0 {
        0
    } else {
        1
    })
}

fn ls(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((set, paths)) = flags("ls", args, "al1", io.err) else {
        return Ok(2);
    };
    let dot = String::from(".");
    let paths = if paths.is_empty() { vec![&dot] } else { paths };
    let (all, long) = (set.contains('a'), set.contains('l'));
    let mut status = 0;
    let many = paths.len() > 1;
    for (i, path) in paths.iter().enumerate() {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                status = fail(io.err, "ls", path, &e);
                continue;
            }
        };
        if !meta.is_dir() {
            entry(io.out, path, &meta, long)?;
            continue;
        }
        if many {
            writeln!(io.out, "{}{path}:", if i > 0 { "\n" } else { "" })?;
        }
        let mut names: Vec<(String, fs::Metadata)> = Vec::new();
        for item in fs::read_dir(path)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if (all || !name.starts_with('.'))
                && let Ok(meta) = fs::symlink_metadata(item.path())
            {
                names.push((name, meta));
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in names {
            entry(io.out, &name, &meta, long)?;
        }
    }
    Ok(status)
}

fn entry(out: &mut dyn Write, name: &str, meta: &fs::Metadata, long: bool) -> io::Result<()> {
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let suffix = if meta.is_dir() { "/" } else { "" };
    match long {
        true => writeln!(out, "{kind} {:>10} {name}{suffix}", meta.len()),
        false => writeln!(out, "{name}{suffix}"),
    }
}

fn mkdir(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((set, dirs)) = flags("mkdir", args, "p", io.err) else {
        return Ok(2);
    };
    let mut status = 0;
    for dir in dirs {
        let made = match set.contains('p') {
            true => fs::create_dir_all(dir),
            false => fs::create_dir(dir),
        };
        if let Err(e) = made {
            status = fail(io.err, "mkdir", dir, &e);
        }
    }
    Ok(status)
}

fn rm(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((set, paths)) = flags("rm", args, "rf", io.err) else {
        return Ok(2);
    };
    let mut status = 0;
    for path in paths {
        let removed = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() && set.contains('r') => fs::remove_dir_all(path),
            Ok(meta) if meta.is_dir() => {
                let _ = writeln!(io.err, "rm: {path}: is a directory (rm -r removes a tree)");
                status = 1;
                continue;
            }
            Ok(_) => fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound && set.contains('f') => continue,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            status = fail(io.err, "rm", path, &e);
        }
    }
    Ok(status)
}

fn rmdir(args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut status = 0;
    for dir in args {
        if let Err(e) = fs::remove_dir(dir) {
            status = fail(io.err, "rmdir", dir, &e);
        }
    }
    Ok(status)
}

fn touch(args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut status = 0;
    for file in args {
        if let Err(e) = fs::OpenOptions::new().create(true).append(true).open(file) {
            status = fail(io.err, "touch", file, &e);
        }
    }
    Ok(status)
}

fn sleep(args: &[String], io: &mut Io) -> io::Result<i32> {
    match args
        .first()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
    {
        Some(seconds) => {
            std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
            Ok(0)
        }
        None => {
            let _ = writeln!(io.err, "sleep: give a number of seconds, as in sleep 1.5");
            Ok(2)
        }
    }
}

/// The sources and the destination of `cp` and `mv`: into DEST when it is a directory (or there are several
/// sources), else DEST itself.
fn targets<'a>(
    name: &str,
    paths: &[&'a String],
    io: &mut Io,
) -> Option<Vec<(&'a String, PathBuf)>> {
    let Some((dest, sources)) = paths.split_last() else {
        let _ = writeln!(
            io.err,
            "{name}: give a source and a destination: {name} SOURCE... DEST"
        );
        return None;
    };
    if sources.is_empty() {
        let _ = writeln!(
            io.err,
            "{name}: {dest}: give a destination too: {name} SOURCE... DEST"
        );
        return None;
    }
    let into = Path::new(dest.as_str()).is_dir();
    if sources.len() > 1 && !into {
        let _ = writeln!(
            io.err,
            "{name}: {dest}: not a directory (several sources go into one)"
        );
        return None;
    }
    Some(
        sources
            .iter()
            .map(|source| {
                let to = match (into, Path::new(source.as_str()).file_name()) {
                    (true, Some(file)) => Path::new(dest.as_str()).join(file),
                    _ => PathBuf::from(dest.as_str()),
                };
                (*source, to)
            })
            .collect(),
    )
}

fn cp(args: &[String], io: &mut Io) -> io::Result<i32> {
    let Some((set, paths)) = flags("cp", args, "r", io.err) else {
        return Ok(2);
    };
    let Some(pairs) = targets("cp", &paths, io) else {
        return Ok(2);
    };
    let mut status = 0;
    for (from, to) in pairs {
        let copied = match fs::metadata(from) {
            Ok(meta) if meta.is_dir() && !set.contains('r') => {
                let _ = writeln!(io.err, "cp: {from}: is a directory (cp -r copies a tree)");
                status = 1;
                continue;
            }
            Ok(meta) if meta.is_dir() => copy_tree(Path::new(from.as_str()), &to),
            Ok(_) => fs::copy(from, &to).map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = copied {
            status = fail(io.err, "cp", from, &e);
        }
    }
    Ok(status)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    if to.starts_with(from) {
        return Err(io::Error::other("cannot copy a directory into itself"));
    }
    fs::create_dir_all(to)?;
    for item in fs::read_dir(from)? {
        let item = item?;
        let target = to.join(item.file_name());
        match item.file_type()?.is_dir() {
            true => copy_tree(&item.path(), &target)?,
            false => fs::copy(item.path(), target).map(drop)?,
        }
    }
    Ok(())
}

fn mv(args: &[String], io: &mut Io) -> io::Result<i32> {
    let paths: Vec<&String> = args.iter().collect();
    let Some(pairs) = targets("mv", &paths, io) else {
        return Ok(2);
    };
    let mut status = 0;
    for (from, to) in pairs {
        if let Err(e) = fs::rename(from, &to) {
            status = fail(io.err, "mv", from, &e);
        }
    }
    Ok(status)
}
