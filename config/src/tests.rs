use super::*;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$8PDWcJ5Q6wzXyBVhT2C1pS1dbEX1dmdYnFD4p5oXfY0";

fn site(id: &str, uscc: &str) -> String {
    format!(
        "[[sites]]\nid = \"{id}\"\nname = \"n\"\nregion = \"610100\"\nindustry = \"food\"\n\
         entity_name = \"e\"\nuscc = \"{uscc}\"\n"
    )
}

#[test]
fn the_default_config_is_valid() {
    let c = Config::parse(Config::default_toml(), "default.toml").unwrap();
    assert_eq!(c.mqtt.mode, MqttMode::Embedded);
    assert!(c.rules.len() >= 5);
}

#[test]
fn every_problem_is_reported_with_path_and_line() {
    let text = format!(
        "{}{}[[devices]]\nid = \"d1\"\nsite = \"nowhere\"\nkind = \"fridge\"\nsecret_hash = \"{HASH}\"\n",
        Config::default_toml(),
        site("s1", "91350100M000100Y4Z"),
    );
    let err = Config::parse(&text, "bad.toml").unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"sites[0].uscc"), "{err}");
    assert!(paths.contains(&"devices[0].site"), "{err}");
    let uscc = err.problems.iter().find(|p| p.path == "sites[0].uscc").unwrap();
    let line = text.lines().position(|l| l.starts_with("uscc =")).unwrap() + 1;
    assert_eq!(uscc.position, Some((line, 1)), "{err}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("bad.toml:{line}:1: sites[0].uscc")), "{shown}");
}

#[test]
fn unknown_fields_in_several_items_are_all_reported() {
    let text = format!(
        "{}{}colour = \"red\"\n{}size = 3\n",
        Config::default_toml(),
        site("a", "91350100M000100Y43"),
        site("b", "9144030071526726XG"),
    );
    let err = Config::parse(&text, "x.toml").unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert_eq!(err.problems[0].path, "sites[0].colour");
    assert_eq!(err.problems[1].path, "sites[1].size");
    assert!(err.problems.iter().all(|p| p.position.is_some()), "{err}");
    assert!(err.problems[0].message.contains("unknown field"), "{err}");
}

#[test]
fn syntax_errors_carry_a_position() {
    let err = Config::parse("[http]\nlisten = \n", "s.toml").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].position.map(|p| p.0), Some(2), "{err}");
}

#[test]
fn rules_are_checked_for_their_type_parameters() {
    let text = "[device_kinds.k]\ninactivity_timeout = \"1m\"\n\
        [[rules]]\nid = \"r\"\ntype = \"threshold\"\ndevice_kinds = [\"k\", \"nope\"]\n\
        metric = \"m\"\nwindow = \"1m\"\nseverity = \"major\"\nitem_code = \"123\"\n\
        [[rules]]\nid = \"r\"\ntype = \"spike\"\ndevice_kinds = [\"k\"]\nmetric = \"m\"\n\
        severity = \"minor\"\nitem_code = \"12345678901234\"\n";
    let err = Config::parse(text, "r.toml").unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "rules[0].device_kinds[1]",
        "rules[0].item_code",
        "rules[0].window",
        "rules[0].above",
        "rules[1].id",
        "rules[1].samples",
        "rules[1].z",
    ] {
        assert!(paths.contains(&want), "missing {want} in {err}");
    }
}

#[test]
fn external_mode_needs_a_url() {
    let err = Config::parse("[mqtt]\nmode = \"external\"\n", "m.toml").unwrap_err();
    assert_eq!(err.problems[0].path, "mqtt.url");
    assert_eq!(err.problems[0].position, Some((1, 2)), "{err}");
}

#[test]
fn broker_provisioning_is_for_external_mode_only() {
    let embedded = "[mqtt]\nmode = \"embedded\"\ndynsec_username = \"admin\"\n";
    let err = Config::parse(embedded, "e.toml").unwrap_err();
    assert!(err.problems.iter().any(|p| p.path == "mqtt.dynsec_username"), "{err}");
    let external = "[mqtt]\nmode = \"external\"\nurl = \"mqtt://b:1883\"\n\
                    username = \"hub\"\ndynsec_username = \"admin\"\n";
    let cfg = Config::parse(external, "x.toml").unwrap();
    assert_eq!(cfg.mqtt.dynsec_username.as_deref(), Some("admin"));
}

#[test]
fn rtsp_client_names_parse_back_and_others_are_refused() {
    for c in [RtspClient::Native, RtspClient::Gstreamer] {
        assert_eq!(c.to_string().parse::<RtspClient>(), Ok(c));
        // The same spelling as in the TOML file.
        assert_eq!(toml::Value::try_from(c).unwrap(), toml::Value::String(c.to_string()));
    }
    assert!("rtspsrc".parse::<RtspClient>().unwrap_err().contains("native or gstreamer"));
}
