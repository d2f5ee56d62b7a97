//! Reference values for the unit tests, computed independently with statsmodels, scipy and
//! numpy by `tests/fixtures/stats_reference.py` (the script and its versions are committed
//! beside `tests/fixtures/stats_reference.json`, which is what is read here).

use serde::Deserialize;

const JSON: &str = include_str!("../../tests/fixtures/stats_reference.json");

#[derive(Deserialize)]
pub struct Reference {
    pub wilson: Vec<(u64, u64, f64, f64)>,
    pub mcnemar: Vec<(u64, u64, f64)>,
    pub percentiles: PercentileCase,
    pub calibration: CalibrationCase,
    pub text: Vec<(String, String, bool, f64)>,
}

#[derive(Deserialize)]
pub struct PercentileCase {
    pub values: Vec<f64>,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Deserialize)]
pub struct CalibrationCase {
    pub rows: Vec<(Vec<f64>, usize)>,
    pub brier: f64,
    pub log_loss: f64,
    pub ece: f64,
}

pub fn reference() -> Reference {
    serde_json::from_str(JSON).expect("tests/fixtures/stats_reference.json is valid")
}
