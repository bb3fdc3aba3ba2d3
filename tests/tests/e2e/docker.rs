//! The Docker image and `scripts/lib/setup.sh` install the same Debian packages: both read
//! `docker/packages-build.txt` and `docker/packages-run.txt`, and the runtime list holds every
//! package the hub's GStreamer pipelines need. File checks only: no Docker daemon is needed.

use std::collections::BTreeSet;
use std::process::Command;

fn read(rel: &str) -> String {
    let p = tests::project_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The packages of a list file: one a line, `#` comments and blank lines dropped (the same
/// reading as the Dockerfile's `sed -e 's/#.*//'` and setup.sh's `hub_package_list`).
fn packages(rel: &str) -> BTreeSet<String> {
    read(rel)
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            assert!(!l.contains(char::is_whitespace), "{rel}: one package a line, got {l:?}");
            l.to_owned()
        })
        .collect()
}

/// The GStreamer elements the hub's camera pipelines use, and the Debian 12 package that ships
/// each one's plugin.
const ELEMENTS: &[(&str, &str)] = &[
    ("rtspsrc", "gstreamer1.0-plugins-good"),
    ("rtph264depay", "gstreamer1.0-plugins-good"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("identity", "libgstreamer1.0-0"),
    ("fakesink", "libgstreamer1.0-0"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("videorate", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
];

/// Other runtime packages: the GStreamer libraries the binary links (gstreamer, gstreamer-app,
/// gstreamer-video), OpenSSL for reqwest's native-tls, and CA certificates.
const LIBRARIES: &[&str] =
    &["libgstreamer1.0-0", "libgstreamer-plugins-base1.0-0", "libssl3", "ca-certificates"];

/// Splits the Dockerfile into its stages (`FROM … AS build` and the runtime stage after it).
fn stages(dockerfile: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with("FROM ") {
            out.push(String::new());
        }
        if let Some(s) = out.last_mut() {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

#[test]
fn the_dockerfile_installs_from_the_package_lists() {
    let text = read("docker/Dockerfile");
    let stages = stages(&text);
    assert_eq!(stages.len(), 3, "a UI stage, a build stage and a runtime stage");
    // The UI: the lock file's packages (npm ci), built, handed to the build stage to embed.
    assert!(
        stages[0].contains("COPY hub/ui/package.json hub/ui/package-lock.json"),
        "{}",
        stages[0]
    );
    assert!(stages[0].contains("RUN npm ci") && stages[0].contains("RUN npm run build"));
    assert!(stages[1].contains("COPY --from=ui /ui/dist hub/ui/dist"), "{}", stages[1]);
    for (stage, list) in [(&stages[1], "packages-build.txt"), (&stages[2], "packages-run.txt")] {
        assert!(
            stage.contains(&format!("COPY docker/{list} /tmp/{list}")),
            "the stage starting {:?} must COPY docker/{list}",
            stage.lines().next()
        );
        assert!(
            stage.contains(&format!("/tmp/{list} \\\n"))
                && stage.contains("| xargs apt-get install -y --no-install-recommends"),
            "the stage starting {:?} must install the packages of {list}",
            stage.lines().next()
        );
        // No package named inline beside the list: the list is the only place.
        for line in stage.lines().filter(|l| l.contains("apt-get install")) {
            assert!(
                line.trim_start().starts_with("| xargs apt-get install"),
                "packages are installed only from the list: {line:?}"
            );
        }
    }
    let build = &stages[1];
    assert!(
        build.contains("cargo build --release --locked -p hub\n"),
        "the image builds the production hub (no `sim` feature, no simulators)"
    );
    let setup = read("scripts/lib/setup.sh");
    for list in ["docker/packages-build.txt", "docker/packages-run.txt"] {
        assert!(
            setup.contains(&format!("hub_package_list \"$ROOT/{list}\"")),
            "setup.sh reads {list}"
        );
    }
}

#[test]
fn the_runtime_list_has_every_package_the_video_path_needs() {
    let run = packages("docker/packages-run.txt");
    let build = packages("docker/packages-build.txt");
    let needed: BTreeSet<&str> =
        ELEMENTS.iter().map(|(_, p)| *p).chain(LIBRARIES.iter().copied()).collect();
    let missing: Vec<_> = needed.iter().filter(|p| !run.contains(**p)).collect();
    assert!(missing.is_empty(), "docker/packages-run.txt lacks {missing:?}");
    for p in ["pkg-config", "libgstreamer1.0-dev", "libgstreamer-plugins-base1.0-dev"] {
        assert!(build.contains(p), "docker/packages-build.txt lacks {p}");
    }
}

/// Every element named in a launch string of `ingest` is in [`ELEMENTS`], so a new element in
/// a pipeline cannot ship without its package.
#[test]
fn every_element_the_pipelines_name_is_accounted_for() {
    let known: BTreeSet<&str> = ELEMENTS.iter().map(|(e, _)| *e).collect();
    let mut used = BTreeSet::new();
    let dir = tests::project_root().join("ingest/src");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Test modules may use other elements (videotestsrc, x264enc): they are not shipped.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for lit in string_literals(code) {
            if !lit.contains(" ! ") && !lit.starts_with("appsink ") {
                continue;
            }
            for segment in lit.split('!') {
                let word = segment.split_whitespace().next().unwrap_or("");
                // Caps (`video/x-raw,…`) and format placeholders (`{chain}`) are not elements.
                if !word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    used.insert(word.to_owned());
                }
            }
        }
    }
    assert!(used.contains("avdec_h264") && used.contains("rtspsrc"), "scan found {used:?}");
    let unknown: Vec<_> = used.iter().filter(|e| !known.contains(e.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "elements {unknown:?} are used by ingest's pipelines but not listed in ELEMENTS with \
         their Debian package (add them, and the package to docker/packages-run.txt)"
    );
}

/// On this machine (Debian 12), each element's plugin file belongs to the package the table
/// names: the table is a fact, not a guess.
#[test]
fn the_element_table_matches_debian() {
    let have = Command::new("gst-inspect-1.0").arg("--version").output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "gst-inspect-1.0 is missing: install gstreamer1.0-tools (scripts/lib/setup.sh does)"
    );
    for (element, package) in ELEMENTS {
        let out = Command::new("gst-inspect-1.0").arg(element).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let file = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Filename"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("gst-inspect-1.0 {element}: no plugin file:\n{text}"));
        // usrmerge: dpkg records /usr/lib, GStreamer may report /lib.
        let file = match file.strip_prefix("/lib/") {
            Some(rest) => format!("/usr/lib/{rest}"),
            None => file.to_owned(),
        };
        let out = Command::new("dpkg").args(["-S", &file]).output().unwrap();
        let owner = String::from_utf8_lossy(&out.stdout);
        let owner = owner.split(':').next().unwrap_or("").trim();
        assert_eq!(owner, *package, "{element} ({file}) is shipped by {owner:?}");
    }
}

/// The compose deployment authenticates devices and the hub at the broker (issue: the compose
/// file used to run an anonymous Mosquitto).
#[test]
fn the_compose_broker_authenticates() {
    let conf = read("docker/mosquitto.conf");
    assert!(conf.lines().any(|l| l.trim() == "allow_anonymous false"), "anonymous login is off");
    assert!(
        conf.contains("plugin /usr/lib/mosquitto_dynamic_security.so")
            && conf.contains("plugin_opt_config_file /mosquitto/data/dynamic-security.json"),
        "docker/mosquitto.conf loads the dynamic-security plugin"
    );
    let compose = read("docker/compose.yaml");
    for needle in ["init-dynsec.sh", "service_completed_successfully", "HUB_MQTT_PASSWORD:"] {
        assert!(compose.contains(needle), "docker/compose.yaml lacks {needle}");
    }
    assert!(compose.contains("HUB_MQTT_DYNSEC_PASSWORD:"), "the hubs get the admin password");
    let init = read("docker/mosquitto/init-dynsec.sh");
    assert!(init.contains("dynamic-security.json"), "init writes the file the broker reads");
    for f in ["docker/hub.toml", "docker/hub-2.toml"] {
        let cfg = config::Config::parse(&read(f), f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(cfg.mqtt.mode, config::MqttMode::External, "{f}");
        assert_eq!(cfg.mqtt.username.as_deref(), Some("hub"), "{f}: the hub's own account");
        assert_eq!(cfg.mqtt.dynsec_username.as_deref(), Some("admin"), "{f}: provisioning");
    }
}

/// The contents of the string literals of Rust source (escapes kept as written, `\` line
/// continuations joined), skipping `//` comments. Enough for launch strings.
fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                // A char literal such as '"' or '\'' must not open a string; lifetimes pass.
                let mut look = chars.clone();
                match (look.next(), look.next(), look.next()) {
                    (Some('\\'), Some(_), Some('\'')) => {
                        chars.nth(2);
                    }
                    (Some(_), Some('\''), _) => {
                        chars.nth(1);
                    }
                    _ => {}
                }
            }
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\n') => {
                                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                                    chars.next();
                                }
                            }
                            Some(e) => {
                                s.push('\\');
                                s.push(e);
                            }
                            None => break,
                        },
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            _ => {}
        }
    }
    out
}
