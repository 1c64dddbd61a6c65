//! `wasmdyno run`: one-off dynos with attached stdio and the guest's own exit status.

use crate::support::*;

fn slug() -> &'static str {
    probe_slug().to_str().unwrap()
}

#[test]
fn passes_args_through() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "probe.wasm",
            "args",
            "two words",
            "--flag",
        ])
        .ok();
    assert_eq!(out.stdout, "probe.wasm\nargs\ntwo words\n--flag\n");
}

#[test]
fn process_types_expand_variables_and_take_extra_args() {
    let env = TestEnv::new();
    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "-e",
            "GREETING=hi there",
            "greet",
            "extra",
        ])
        .ok();
    // $GREETING is unquoted in the Procfile, so it splits like a shell would.
    assert_eq!(
        out.stdout,
        "probe.wasm\nargs\nfrom-procfile\nhi\nthere\nextra\n"
    );

    // One quoted command line is parsed and expanded like a Procfile command.
    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "-e",
            "X=1",
            "probe.wasm args \"$X $X\" '$X'",
        ])
        .ok();
    assert_eq!(out.stdout, "probe.wasm\nargs\n1 1\n$X\n");
}

#[test]
fn config_vars_from_flags_and_env_file() {
    let env = TestEnv::new();
    let file = env.path("vars.env");
    std::fs::write(
        &file,
        "# settings\nexport FROM_FILE=\"quoted value\"\nSHARED=file\n\n",
    )
    .unwrap();
    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "--env-file",
            file.to_str().unwrap(),
            "-e",
            "A=1;B=two=2",
            "-e",
            "SHARED=flag",
            "probe.wasm",
            "env",
        ])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for expected in [
        "A=1",
        "B=two=2",
        "FROM_FILE=quoted value",
        "SHARED=flag",
        "HOME=/",
    ] {
        assert!(lines.contains(&expected), "{expected} missing:\n{out}");
    }
    let dyno = lines
        .iter()
        .find(|l| l.starts_with("DYNO="))
        .expect("DYNO is set");
    let number = dyno.strip_prefix("DYNO=run.").expect("DYNO is run.N");
    assert!(number.parse::<u32>().is_ok(), "{dyno}");
    assert!(
        !lines.iter().any(|l| l.starts_with("PORT=")),
        "one-off dynos have no PORT"
    );
    // The host's environment never leaks into a dyno.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("PATH=") || l.starts_with("WASMDYNO_HOME="))
    );
}

#[test]
fn platform_variables_are_refused() {
    let env = TestEnv::new();
    for var in ["PORT=80", "DYNO=web.1", "WASMDYNO_RELEASE=3"] {
        let out = env
            .run(&["run", "--slug", slug(), "-e", var, "probe.wasm", "env"])
            .fails();
        let key = var.split('=').next().unwrap();
        assert!(
            out.stderr
                .contains(&format!("{key} is set by the platform")),
            "{out}"
        );
    }
    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "-e",
            "NOEQUALS",
            "probe.wasm",
            "env",
        ])
        .fails();
    assert!(out.stderr.contains("expected KEY=VALUE"), "{out}");
}

#[test]
fn stdin_is_attached() {
    let env = TestEnv::new();
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = env
        .run_with_stdin(&["run", "--slug", slug(), "cat"], &input)
        .ok();
    assert_eq!(out.stdout.as_bytes(), &input[..]);
}

#[test]
fn exit_status_is_the_guests_own() {
    let env = TestEnv::new();
    for code in ["0", "1", "33", "255"] {
        let out = env.run(&["run", "--slug", slug(), "-x", "probe.wasm", "exit", code]);
        assert_eq!(out.code, Some(code.parse().unwrap()), "{out}");
    }
    let out = env
        .run(&["run", "--slug", slug(), "probe.wasm", "stderr", "to-stderr"])
        .ok();
    assert_eq!(out.stderr, "to-stderr\n");
    assert_eq!(out.stdout, "");
}

#[test]
fn a_trap_prints_the_trap_and_exits_134() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--slug", slug(), "probe.wasm", "trap"]);
    assert_eq!(out.code, Some(134), "{out}");
    assert!(out.stderr.contains("unreachable"), "{out}");
}

#[test]
fn unknown_module_lists_what_the_slug_has() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--slug", slug(), "nope.wasm"]).fails();
    assert!(
        out.stderr
            .contains("module \"nope.wasm\" is not in the slug (it has: probe.wasm)"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("hint: COMMAND is a process type (cat, greet, probe)"),
        "{out}"
    );
}

#[test]
fn a_module_path_may_name_the_wat_source_or_omit_the_extension() {
    let env = TestEnv::new();
    for name in ["probe.wat", "probe", "./probe.wasm", "/app/probe.wasm"] {
        let out = env.run(&["run", "--slug", slug(), name, "exit", "7"]);
        assert_eq!(out.code, Some(7), "{name}: {out}");
    }
}

#[test]
fn second_run_loads_compiled_code_from_the_cache() {
    let env = TestEnv::with_private_cache();
    let out = env
        .run(&["run", "--slug", slug(), "-v", "probe.wasm", "exit", "0"])
        .ok();
    assert!(out.stderr.contains("compiled-code cache miss"), "{out}");
    let entries = compiled(&env.cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].extension().is_some_and(|e| e == "cwasm"));

    let out = env
        .run(&[
            "run",
            "--slug",
            slug(),
            "--verbose",
            "probe.wasm",
            "exit",
            "0",
        ])
        .ok();
    assert!(
        out.stderr.contains(&format!(
            "compiled-code cache hit: {}",
            entries[0].display()
        )),
        "{out}"
    );
}

#[test]
fn a_runaway_guest_is_bounded_by_its_memory_quota() {
    // A module whose memory starts above the eco quota cannot be instantiated.
    let env = TestEnv::new();
    let app = env.path("big");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("big.wat"),
        "(module (memory (export \"memory\") 16384) (func (export \"_start\")))",
    )
    .unwrap();
    std::fs::write(app.join("Procfile"), "big: big.wasm\n").unwrap();
    let slug = env.path("big.slug");
    env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
        .ok();
    let out = env
        .run(&[
            "run",
            "--slug",
            slug.to_str().unwrap(),
            "--size",
            "eco",
            "big",
        ])
        .fails();
    assert!(out.stderr.contains("cannot instantiate"), "{out}");
    env.run(&[
        "run",
        "--slug",
        slug.to_str().unwrap(),
        "--size",
        "performance-l",
        "big",
    ])
    .ok();
}
