//! Device models. Each device draws from its own ChaCha8 stream seeded by (scenario seed,
//! device id), so a scenario replays identically.
//!
//! Cold-chain temperature follows the generative model the anomaly model was trained on
//! (`models/coldchain-temp-ae/train.py`): setpoint + 0.4 °C daily sine + AR(1) noise
//! (φ = 0.7, σ = 0.1) + short door-opening bumps; readings every 30 s.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What a simulated device measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Fridge,
    ReeferTruck,
    Gas,
    Weighbridge,
}

impl Kind {
    /// The hub's device kind name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fridge => "fridge",
            Kind::ReeferTruck => "reefer_truck",
            Kind::Gas => "gas",
            Kind::Weighbridge => "weighbridge",
        }
    }

    /// Reading interval, ms of simulated time.
    pub fn interval_ms(self) -> i64 {
        match self {
            Kind::Fridge | Kind::ReeferTruck => 30_000,
            Kind::Gas => 10_000,
            Kind::Weighbridge => 120_000,
        }
    }
}

/// A scripted abnormal episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// Cold-chain door stays open; the load warms by 0.3 °C per reading, at most 8.5 °C.
    DoorLeftOpen,
    /// Cooling stops: +8 °C over an hour, then holds until repaired.
    CompressorFailure,
    /// The temperature sensor repeats its last value.
    StuckSensor,
    /// Ammonia rises 1 ppm per reading to 40 ppm, holds, and falls back after the episode.
    GasLeak,
    /// One implausible ammonia reading (+7 ppm).
    GasGlitch,
    /// One weighing of 55 t.
    Overload,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller: two uniforms, one standard normal.
    let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// One simulated device's state.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub kind: Kind,
    rng: ChaCha8Rng,
    setpoint: f64,
    phase: f64,
    ar: f64,
    bump: f64,
    door_left: u32,
    /// Extra warming from an anomaly, °C (or extra ppm for gas).
    excess: f64,
    humidity: f64,
    stuck_at: Option<f64>,
}

impl SimDevice {
    pub fn new(kind: Kind, seed: u64, id: &str) -> Self {
        // FNV-1a of the id mixed into the seed: independent, stable streams per device.
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h);
        let setpoint = rng.gen_range(2.0..6.0);
        let phase = rng.gen_range(0.0..std::f64::consts::TAU);
        Self {
            kind,
            rng,
            setpoint,
            phase,
            ar: 0.0,
            bump: 0.0,
            door_left: 0,
            excess: 0.0,
            humidity: 0.0,
            stuck_at: None,
        }
    }

    /// The reading at simulated time `ts` (unix ms), given the anomaly in progress (if any) and
    /// whether one just ended (recovery). Returns metric → value.
    pub fn reading(&mut self, ts: i64, active: Option<Anomaly>) -> Vec<(&'static str, f64)> {
        match self.kind {
            Kind::Fridge | Kind::ReeferTruck => self.cold_chain(ts, active),
            Kind::Gas => self.gas(active),
            Kind::Weighbridge => self.weighing(active),
        }
    }

    fn cold_chain(&mut self, ts: i64, active: Option<Anomaly>) -> Vec<(&'static str, f64)> {
        let r = &mut self.rng;
        self.ar = 0.7 * self.ar + 0.1 * normal(r);
        // Routine loading: a door opening starts with probability 1/240 per reading and lasts
        // one or two readings.
        if self.door_left == 0 && r.gen_bool(1.0 / 240.0) {
            self.door_left = if r.gen_bool(0.5) { 1 } else { 2 };
        }
        let mut door = self.door_left > 0;
        if door {
            self.door_left -= 1;
        }
        self.bump = 0.8 * self.bump + if door { 0.3 } else { 0.0 };
        let tod = (ts.rem_euclid(86_400_000)) as f64 / 86_400_000.0;
        let base = self.setpoint
            + 0.4 * (std::f64::consts::TAU * tod + self.phase).sin()
            + self.ar
            + self.bump;
        match active {
            Some(Anomaly::DoorLeftOpen) => {
                door = true;
                self.excess = (self.excess + 0.3).min(8.5);
            }
            Some(Anomaly::CompressorFailure) => self.excess = (self.excess + 8.0 / 120.0).min(8.0),
            // Cooling recovers once the episode is over.
            _ => self.excess *= 0.9,
        }
        let mut t = round(base + self.excess, 2);
        if active == Some(Anomaly::StuckSensor) {
            t = *self.stuck_at.get_or_insert(t);
        } else {
            self.stuck_at = None;
        }
        self.humidity = 0.9 * self.humidity + 0.5 * normal(r);
        vec![
            ("temperature_c", t),
            ("humidity_pct", round(85.0 + self.humidity - 2.0 * self.excess.min(10.0), 1)),
            ("door_open", if door { 1.0 } else { 0.0 }),
        ]
    }

    fn gas(&mut self, active: Option<Anomaly>) -> Vec<(&'static str, f64)> {
        self.ar = 0.7 * self.ar + 0.3 * normal(&mut self.rng);
        match active {
            Some(Anomaly::GasLeak) => self.excess = (self.excess + 1.0).min(38.0),
            // Ventilation clears a leak at 1 ppm per reading.
            _ => self.excess = (self.excess - 1.0).max(0.0),
        }
        let glitch = if active == Some(Anomaly::GasGlitch) { 7.0 } else { 0.0 };
        vec![("nh3_ppm", round((2.0 + self.ar + self.excess + glitch).max(0.0), 2))]
    }

    fn weighing(&mut self, active: Option<Anomaly>) -> Vec<(&'static str, f64)> {
        let r = &mut self.rng;
        let axles = f64::from(r.gen_range(2u8..=6));
        let gross = if active == Some(Anomaly::Overload) {
            55_000.0
        } else {
            // Loads up to 90 % of the 49 t limit.
            round(r.gen_range(8_000.0..44_000.0), 0)
        };
        vec![("gross_kg", gross), ("axles", axles)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_readings() {
        let mut a = SimDevice::new(Kind::Fridge, 7, "fridge-01");
        let mut b = SimDevice::new(Kind::Fridge, 7, "fridge-01");
        let mut c = SimDevice::new(Kind::Fridge, 7, "fridge-02");
        let ra: Vec<_> = (0..100).map(|i| a.reading(i * 30_000, None)).collect();
        let rb: Vec<_> = (0..100).map(|i| b.reading(i * 30_000, None)).collect();
        let rc: Vec<_> = (0..100).map(|i| c.reading(i * 30_000, None)).collect();
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
    }

    #[test]
    fn normal_cold_chain_stays_near_its_setpoint() {
        let mut d = SimDevice::new(Kind::Fridge, 1, "f");
        for i in 0..5000 {
            let t = d.reading(i * 30_000, None)[0].1;
            assert!((0.5..8.0).contains(&t), "reading {i}: {t}");
        }
    }

    #[test]
    fn a_compressor_failure_warms_the_load_by_eight_degrees() {
        let mut d = SimDevice::new(Kind::Fridge, 1, "f");
        let before = d.reading(0, None)[0].1;
        let mut after = 0.0;
        for i in 1..=150 {
            after = d.reading(i * 30_000, Some(Anomaly::CompressorFailure))[0].1;
        }
        assert!(after - before > 6.5, "{before} → {after}");
    }
}
