//! The crate dependency direction stays as ARCHITECTURE.md draws it.

use std::collections::BTreeSet;

/// A crate's manifest: each crate is a folder at the top level (the design card's layout).
fn manifest(krate: &str) -> toml::Table {
    let path = tests::project_root().join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (each crate lives at the top level)", path.display()));
    text.parse().unwrap()
}

fn deps(krate: &str) -> BTreeSet<String> {
    let doc = manifest(krate);
    let mut out = BTreeSet::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = doc.get(section).and_then(|v| v.as_table()) {
            out.extend(t.keys().cloned());
        }
    }
    out
}

const OURS: &[&str] = &["common", "config", "inference", "ingest", "hub", "devices"];

#[test]
fn crates_depend_only_downwards() {
    let allowed: &[(&str, &[&str])] = &[
        ("common", &[]),
        ("config", &["common"]),
        ("inference", &["common", "config"]),
        ("ingest", &["common", "config"]),
        ("devices", &["common"]),
        ("hub", &["common", "config", "inference", "ingest", "devices"]),
    ];
    for (krate, ok) in allowed {
        let ours: Vec<String> =
            deps(krate).into_iter().filter(|d| OURS.contains(&d.as_str())).collect();
        for d in &ours {
            assert!(ok.contains(&d.as_str()), "{krate} must not depend on {d}");
        }
    }
}

#[test]
fn layers_do_not_know_each_others_transports() {
    let forbidden: &[(&str, &[&str])] = &[
        ("inference", &["rumqttc", "rumqttd", "gstreamer", "sqlx", "axum"]),
        ("hub", &["gstreamer", "gstreamer-app", "gstreamer-video", "rumqttc", "rumqttd"]),
        ("common", &["sqlx", "axum", "ort", "rumqttc"]),
        ("ingest", &["sqlx", "axum", "ort"]),
    ];
    for (krate, bad) in forbidden {
        let d = deps(krate);
        for b in *bad {
            assert!(!d.contains(*b), "{krate} must not depend on {b}");
        }
    }
}

#[test]
fn the_top_level_is_the_design_cards() {
    for dir in ["ingest", "inference", "hub", "devices", "config", "tests", "docker"] {
        assert!(tests::project_root().join(dir).is_dir(), "{dir}/ missing at the top level");
    }
    assert!(tests::project_root().join("Cargo.toml").is_file());
    assert!(
        !tests::project_root().join("crates").exists(),
        "crates/ is gone: crates live at the top level"
    );
}

/// The production binary does not link the simulators: `devices` is an optional dependency
/// of `hub`, enabled only by the `sim` feature (`hub demo`, `hub bench`), never by default.
#[test]
fn the_production_hub_does_not_link_the_simulators() {
    let doc = manifest("hub");
    let dev = doc["dependencies"]["devices"].as_table().expect("devices = { … }");
    assert_eq!(
        dev.get("optional").and_then(|v| v.as_bool()),
        Some(true),
        "devices must be optional"
    );
    let features = doc["features"].as_table().expect("[features]");
    let default = features.get("default").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    assert!(
        !default
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.contains("sim") || f.contains("devices"))),
        "the default features must not pull the simulators in: {default:?}"
    );
    for bad in ["gstreamer-rtsp-server", "devices"] {
        assert!(
            !doc["dependencies"].as_table().unwrap().iter().any(|(k, v)| k == bad
                && v.get("optional").and_then(|o| o.as_bool()) != Some(true)),
            "hub must not depend on {bad} unconditionally"
        );
    }
}
