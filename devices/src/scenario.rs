//! The demo site and its anomaly script. The same scenario drives the demo and the end-to-end
//! tests; [`Scenario::expected`] is the contract: which rule must fire for which device, and when.

use serde::Serialize;

use crate::sim::{Anomaly, Kind};

#[derive(Debug, Clone, Serialize)]
pub struct SiteSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub industry: &'static str,
    pub entity_name: &'static str,
    pub uscc: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceSpec {
    pub id: &'static str,
    pub site: &'static str,
    pub kind: Kind,
    pub name: &'static str,
    /// False for devices left to people (e.g. `mosquitto_pub` in the demo).
    pub simulated: bool,
}

/// One scripted abnormal episode and the rules it must trip.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub device: &'static str,
    pub anomaly: Anomaly,
    /// Offset from the scenario's start, ms.
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Rule ids that must open a finding for the device during the episode (plus slack).
    pub expect: &'static [&'static str],
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub seed: u64,
    pub sites: Vec<SiteSpec>,
    pub devices: Vec<DeviceSpec>,
    pub episodes: Vec<Episode>,
    /// Length of the scripted part, ms.
    pub length_ms: i64,
    /// After an episode ends, its effects (recovery) may still trip its rules this long.
    pub slack_ms: i64,
}

/// A finding the scenario requires: `device` × `rule`, first seen within `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub device: &'static str,
    pub rule: &'static str,
    pub from_ms: i64,
    pub to_ms: i64,
}

const MIN: i64 = 60_000;

impl Scenario {
    /// Two sites of Shaanxi: a food cold store in Xi'an and a freight yard in Xianyang, six
    /// devices, six episodes.
    pub fn demo() -> Self {
        let sites = vec![
            SiteSpec {
                id: "coldstore-01",
                name: "Qinling cold store",
                region: "610116",
                industry: "food",
                entity_name: "Xi'an Qinling Cold Chain Co., Ltd.",
                uscc: "91350100M000100Y43",
            },
            SiteSpec {
                id: "freightyard-01",
                name: "Qindu freight yard",
                region: "610402",
                industry: "transport",
                entity_name: "Shaanxi Qindu Freight Logistics Co., Ltd.",
                uscc: "9144030071526726XG",
            },
        ];
        let d = |id, site, kind, name, simulated| DeviceSpec { id, site, kind, name, simulated };
        let devices = vec![
            d("fridge-01", "coldstore-01", Kind::Fridge, "Chill room 1", true),
            d("fridge-02", "coldstore-01", Kind::Fridge, "Chill room 2", true),
            d("gas-01", "coldstore-01", Kind::Gas, "Plant room NH3 detector", true),
            d("truck-01", "freightyard-01", Kind::ReeferTruck, "Reefer 陕A·12345", true),
            d("weighbridge-01", "freightyard-01", Kind::Weighbridge, "Gate weighbridge", true),
            d("fridge-manual", "coldstore-01", Kind::Fridge, "For mosquitto_pub", false),
        ];
        let e = |device, anomaly, start_min: i64, duration_ms: i64, expect| Episode {
            device,
            anomaly,
            start_ms: start_min * MIN,
            duration_ms,
            expect,
        };
        let episodes = vec![
            e(
                "truck-01",
                Anomaly::DoorLeftOpen,
                90,
                20 * MIN,
                &["coldchain-door-open", "coldchain-temp-high", "coldchain-temp-anomaly"],
            ),
            e("weighbridge-01", Anomaly::Overload, 105, 2 * MIN, &["weighbridge-overload"]),
            e(
                "fridge-01",
                Anomaly::CompressorFailure,
                120,
                90 * MIN,
                &["coldchain-temp-anomaly", "coldchain-temp-high"],
            ),
            e("gas-01", Anomaly::GasLeak, 150, 15 * MIN, &["gas-nh3-rate", "gas-nh3-high"]),
            e("fridge-02", Anomaly::StuckSensor, 180, 30 * MIN, &["sensor-stuck"]),
            e("gas-01", Anomaly::GasGlitch, 240, 10_000, &["gas-sensor-spike"]),
        ];
        Scenario {
            seed: 20_261_127,
            sites,
            devices,
            episodes,
            length_ms: 300 * MIN,
            slack_ms: 30 * MIN,
        }
    }

    /// The anomaly of `device` at `offset_ms` from the start, if any.
    pub fn active(&self, device: &str, offset_ms: i64) -> Option<Anomaly> {
        self.episodes
            .iter()
            .find(|e| {
                e.device == device && (e.start_ms..e.start_ms + e.duration_ms).contains(&offset_ms)
            })
            .map(|e| e.anomaly)
    }

    /// Every finding the scenario must produce, with the window its first occurrence must fall in
    /// (offsets from the start). Anything else is a false alarm.
    pub fn expected(&self) -> Vec<Expected> {
        self.episodes
            .iter()
            .flat_map(|e| {
                e.expect.iter().map(move |rule| Expected {
                    device: e.device,
                    rule,
                    from_ms: e.start_ms,
                    to_ms: e.start_ms + e.duration_ms + self.slack_ms,
                })
            })
            .collect()
    }

    pub fn device(&self, id: &str) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| d.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_name_known_devices_and_lie_inside_the_scenario() {
        let s = Scenario::demo();
        for e in &s.episodes {
            assert!(s.device(e.device).is_some_and(|d| d.simulated), "{}", e.device);
            assert!(e.start_ms >= 80 * MIN, "episodes start after the anomaly model's warm-up");
            assert!(e.start_ms + e.duration_ms + s.slack_ms <= s.length_ms);
        }
        assert_eq!(s.active("fridge-01", 120 * MIN), Some(Anomaly::CompressorFailure));
        assert_eq!(s.active("fridge-01", 210 * MIN), None);
    }
}
