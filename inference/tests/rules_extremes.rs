//! The rule engine driven with what a broken or hostile device can send: timestamps at the ends
//! of `i64` and huge jumps back and forth, values at the ends of `f64` and subnormal ones. The
//! engine must never panic (run in debug: overflow checks are on), and after every step a normal
//! reading later than everything seen must still fire.

use std::sync::Arc;

use inference::ModelLibrary;
use inference::rules::{Engine, Outcome, Reading, RuleSet};
use proptest::prelude::*;

const RULES: &str = r#"
[[rules]]
id = "hot"
type = "threshold"
above = 8.0
[[rules]]
id = "hot_held"
type = "threshold"
above = 8.0
for = "2m"
[[rules]]
id = "roc"
type = "rate_of_change"
max_per_minute = 5.0
window = "2m"
[[rules]]
id = "flat"
type = "flatline"
window = "3m"
tolerance = 0.0
[[rules]]
id = "spike"
type = "spike"
samples = 4
z = 5.0
"#;

const HOLD_MS: i64 = 120_000;

fn engine() -> Engine {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<config::Rule>,
    }
    let common = "device_kinds = [\"k\"]\nmetric = \"m\"\nseverity = \"minor\"\n\
                  item_code = \"12345678901234\"\n";
    let text = RULES.replace("[[rules]]\n", &format!("[[rules]]\n{common}"));
    let file: File = toml::from_str(&text).expect("test rules parse");
    let (set, problems) = RuleSet::compile(&file.rules, &ModelLibrary::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        set.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()[..2],
        ["hot", "hot_held"]
    );
    Engine::new(Arc::new(set))
}

#[derive(Debug, Clone, Copy)]
enum Ts {
    /// An absolute time.
    At(i64),
    /// A jump from the newest time seen (saturating).
    Jump(i64),
}

fn ts() -> impl Strategy<Value = Ts> {
    prop_oneof![
        Just(Ts::At(i64::MIN)),
        Just(Ts::At(i64::MAX)),
        Just(Ts::At(0)),
        Just(Ts::At(4_102_444_800_000)), // 2100-01-01
        any::<i64>().prop_map(Ts::At),
        any::<i64>().prop_map(Ts::Jump),
        (-10_000_000_000_000i64..10_000_000_000_000).prop_map(Ts::Jump),
        (-600_000i64..600_000).prop_map(Ts::Jump),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::MAX),
        Just(-f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(-f64::MIN_POSITIVE),
        Just(5e-324),
        Just(0.0),
        Just(9.0),
        -1e6f64..1e6,
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

/// Feeds one reading; returns the ids of the rules that hit on it.
fn feed(e: &mut Engine, out: &mut Outcome, tag: usize, ts: i64, v: f64) -> Vec<String> {
    let values = [("m".to_owned(), v)];
    e.evaluate(Reading { tag, device: "d", kind: "k", ts, values: &values }, out);
    let rules = e.rules().clone();
    out.hits
        .iter()
        .filter(|h| h.tag == tag)
        .inspect(|h| assert_eq!(h.ts, ts, "a hit carries its reading's time"))
        .map(|h| rules.rules[h.rule].id.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn extreme_readings_never_panic_and_never_silence_later_ones(
        steps in prop::collection::vec((ts(), value()), 1..48),
    ) {
        let mut e = engine();
        let mut out = Outcome::default();
        let mut newest: Option<i64> = None;
        let mut tag = 0;
        for (t, v) in steps {
            let ts = match t {
                Ts::At(x) => x,
                Ts::Jump(d) => newest.unwrap_or(0).saturating_add(d),
            };
            feed(&mut e, &mut out, tag, ts, v);
            tag += 1;
            newest = Some(newest.map_or(ts, |n| n.max(ts)));

            // Invariant: a reading over the threshold after everything seen fires at once…
            let probe = newest.unwrap().saturating_add(60_000);
            let hit = feed(&mut e, &mut out, tag, probe, 100.0);
            tag += 1;
            prop_assert!(hit.iter().any(|r| r == "hot"), "probe at {probe} did not fire: {hit:?}");
            newest = Some(probe);
            // …and one held over the threshold for the hold time fires the held rule, where
            // the clock has room left for the hold time.
            if let Some(held) = probe.checked_add(HOLD_MS) {
                let hit = feed(&mut e, &mut out, tag, held, 100.0);
                tag += 1;
                prop_assert!(hit.iter().any(|r| r == "hot"), "{hit:?}");
                prop_assert!(hit.iter().any(|r| r == "hot_held"), "held probe at {held}: {hit:?}");
                newest = Some(held);
            }
            out.hits.clear();
        }
    }
}
