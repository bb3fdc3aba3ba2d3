//! The crate dependency direction stays as ARCHITECTURE.md draws it.

use std::collections::BTreeSet;
use std::path::Path;

fn deps(krate: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = if krate == "tests" { root.join("tests") } else { root.join("crates").join(krate) };
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
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
