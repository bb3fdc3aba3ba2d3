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

#[test]
fn models_pull_takes_verified_files_from_a_local_directory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mirror = root.join("../shared/data/models");
    assert!(
        mirror.is_dir(),
        "{} is missing: the shared test data lives beside the project (see DEVELOPERS.md)",
        mirror.display()
    );
    let dir = std::env::temp_dir().join(format!("hub-cli-pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for name in ["fastestdet", "yunet"] {
        let d = dir.join("vision").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let manifest = root.join("models/vision").join(name).join("manifest.toml");
        std::fs::copy(manifest, d.join("manifest.toml")).unwrap();
    }
    // A corrupt copy of one file in a second mirror: refused by sha256, named, nothing placed.
    let bad = dir.join("bad-mirror");
    std::fs::create_dir_all(&bad).unwrap();
    let mut bytes = std::fs::read(mirror.join("fastestdet_coco80_352.onnx")).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(bad.join("fastestdet_coco80_352.onnx"), bytes).unwrap();
    let models = dir.join("vision");
    let out = hub(&[
        "models",
        "pull",
        "--models",
        models.to_str().unwrap(),
        "--from",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fastestdet: FAILED") && err.contains("sha256"), "{err}");
    assert!(!models.join("fastestdet/fastestdet_coco80_352.onnx").exists());

    let out = hub(&[
        "models",
        "pull",
        "--models",
        models.to_str().unwrap(),
        "--from",
        mirror.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fastestdet: fetched") && text.contains("yunet: fetched"), "{text}");
    assert!(models.join("fastestdet/fastestdet_coco80_352.onnx").is_file());
    let out = hub(&["models", "pull", "--models", models.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nothing left to fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("yunet: present"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn account_commands_make_departments_users_and_tokens_on_the_configured_database() {
    let dir = std::env::temp_dir().join(format!("hub-cli-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hub.toml");
    std::fs::write(&file, format!("data_dir = {:?}\n", dir.join("data"))).unwrap();
    let c = file.to_str().unwrap();
    let ok = |out: std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    ok(hub(&[
        "department",
        "add",
        "xian-food",
        "-c",
        c,
        "--name",
        "Xi'an food",
        "--region",
        "610100",
        "--industries",
        "food",
        "--uscc",
        "11610100MB3456789D",
    ]));
    // A bad USCC is refused naming the position.
    let out = hub(&[
        "department",
        "add",
        "bad",
        "-c",
        c,
        "--name",
        "B",
        "--region",
        "610100",
        "--industries",
        "food",
        "--uscc",
        "11610100MB3456789Z",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("character 18"));
    let text = ok(hub(&[
        "user",
        "add",
        "alice",
        "-c",
        c,
        "--role",
        "duty_operator",
        "--department",
        "xian-food",
    ]));
    assert!(text.contains("password: "), "{text}");
    // A department role without a department says so.
    let out = hub(&["user", "add", "bob", "-c", c, "--role", "department"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a department"));
    let text = ok(hub(&[
        "token",
        "create",
        "-c",
        c,
        "--name",
        "case system",
        "--role",
        "department",
        "--department",
        "xian-food",
        "--expires",
        "90d",
    ]));
    assert!(text.contains("hubt_"), "{text}");
    let id = text.split(", id ").nth(1).and_then(|r| r.split(':').next()).unwrap().to_owned();
    ok(hub(&["token", "revoke", &id, "-c", c]));
    let out = hub(&["token", "revoke", &id, "-c", c]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already revoked"));
    ok(hub(&["user", "disable", "alice", "-c", c]));
    let _ = std::fs::remove_dir_all(dir);
}
