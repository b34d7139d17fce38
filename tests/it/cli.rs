//! The command line: help on every subcommand, the shipped config, validation errors.

use std::process::Command;

fn outpost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "up",
        "edge",
        "parent",
        "origin",
        "purge",
        "validate",
        "dashboard",
    ] {
        let output = outpost(&[sub, "--help"]);
        assert!(output.status.success(), "{sub} --help failed");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: outpost"), "{sub}: {text}");
    }
}

#[test]
fn print_config_is_the_shipped_default_and_validates() {
    let output = outpost(&["up", "--print-config"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/outpost.toml"))
            .unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("printed.toml");
    std::fs::write(&path, &text).unwrap();
    let output = outpost(&["validate", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok: origin, 2 parents, 3 edges"));
}

#[test]
fn every_shipped_config_validates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    let dirs = ["config", "bench/dns", "bench/workers"];
    for entry in dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{root}/{dir}")).unwrap())
    {
        let path = entry.unwrap().path();
        checked += usize::from(path.extension().is_some_and(|e| e == "toml"));
        if path.extension().is_some_and(|e| e == "toml") {
            let output = outpost(&["validate", path.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert!(checked >= 3, "found {checked} configs");
}

#[test]
fn a_bad_config_names_the_file_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[origin]\nlisten = \"127.0.0.1:8000\"\nadmin = \"127.0.0.1:9090\"\n\n[cache]\ncapacity = 5\n").unwrap();
    let output = outpost(&["validate", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("bad.toml"), "{error}");
    assert!(error.contains("line 6"), "{error}");
    assert!(
        error.contains("unknown field `capacity`") && error.contains("capacity_mib"),
        "{error}"
    );

    std::fs::write(&path, "[origin]\nurl = \"http://127.0.0.1:1\"\n[[edges]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nparents = [\"nope\"]\n").unwrap();
    let output = outpost(&["up", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("edges[0].parents: unknown parent \"nope\""),
        "{error}"
    );
}

#[test]
fn a_standalone_edge_needs_an_http_upstream() {
    let output = outpost(&[
        "edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--upstream",
        "ftp://x",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected an http:// or https:// URL")
    );
}
