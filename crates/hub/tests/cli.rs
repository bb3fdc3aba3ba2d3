//! The `hub` binary's configuration commands.

use std::process::Command;

fn hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hub")).args(args).output().expect("hub runs")
}

#[test]
fn config_check_refuses_a_bad_file_naming_field_and_line() {
    let dir = std::env::temp_dir().join(format!("hub-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    let text = "[http]\nlisten = \"127.0.0.1:8080\"\n\n[[sites]]\nid = \"s1\"\nname = \"n\"\n\
        region = \"61010\"\nindustry = \"food\"\nentity_name = \"e\"\nuscc = \"91350100M000100Y4Z\"\n\
        colour = \"blue\"\n";
    std::fs::write(&file, text).unwrap();
    let out = hub(&["config", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Unknown fields stop an item's deserialization; its other problems come after a fix.
    assert!(err.contains("bad.toml:11:1: sites[0].colour: unknown field `colour`"), "{err}");

    std::fs::write(&file, text.replace("colour = \"blue\"\n", "")).unwrap();
    let out = hub(&["config", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problems"), "{err}");
    assert!(err.contains("bad.toml:7:1: sites[0].region: not a valid region code"), "{err}");
    assert!(
        err.contains("bad.toml:10:1: sites[0].uscc: not a valid unified social credit code"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_printed_default_config_checks_clean() {
    let out = hub(&["config", "print-default"]);
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("hub-cli-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("default.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = hub(&["config", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
}
