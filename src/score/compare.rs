//! `evalr compare`: runs paired by row id against a baseline.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::ScoreError;
use super::stats::{self, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, ClusterSums, Estimate, Percentiles};
use crate::backend::Usage;
use crate::prices::Price;
use crate::results::{Outcome, ResultFolder};

pub const SCHEMA_VERSION: u32 = 1;

/// What compare needs of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFacts {
    pub subject: String,
    pub outcome: Outcome,
    pub usage: Usage,
    pub latency_ms: f64,
}

/// One run, loaded for comparison.
#[derive(Debug, Clone)]
pub struct RunRows {
    pub label: RunLabel,
    /// Row ids in `outputs.jsonl` order.
    pub order: Vec<String>,
    pub rows: HashMap<String, RowFacts>,
    pub price: Option<Price>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLabel {
    pub name: String,
    pub path: String,
    pub model: Option<String>,
    pub program: Option<String>,
    pub dataset_sha256: Option<String>,
}

impl RunRows {
    pub fn load(folder: &ResultFolder) -> Result<Self, ScoreError> {
        let mut order = Vec::new();
        let mut rows = HashMap::new();
        folder.for_each_output(|_, record| {
            let facts = RowFacts {
                subject: record.subject().to_string(),
                outcome: record.outcome(),
                usage: record.usage,
                latency_ms: record.latency_ms,
            };
            order.push(record.id.clone());
            rows.insert(record.id, facts);
            Ok::<_, ScoreError>(())
        })?;
        let run = &folder.manifest;
        let known = |text: &str| Some(text.to_string()).filter(|t| !t.is_empty());
        Ok(RunRows {
            label: RunLabel {
                name: folder.name(),
                path: folder.path.display().to_string(),
                model: known(&run.model.identity),
                program: known(&run.program.name),
                dataset_sha256: known(&run.dataset.sha256),
            },
            order,
            rows,
            price: run.price(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub baseline: RunLabel,
    /// Restricted to the rows every run shares (`--intersect`).
    pub intersect: bool,
    pub bootstrap: BootstrapSettings,
    /// One entry per run after the first, each against the first.
    pub pairs: Vec<PairComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapSettings {
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairComparison {
    pub candidate: RunLabel,
    pub rows: PairedRows,
    pub accuracy_a: Estimate,
    pub accuracy_b: Estimate,
    /// accuracy(B) - accuracy(A), as a fraction.
    pub difference: f64,
    /// Paired bootstrap 95% interval of the difference.
    pub ci95: [f64; 2],
    /// Exact McNemar test on the discordant rows.
    pub mcnemar_p: f64,
    /// Standard errors of the difference with rows independent and clustered by subject, the
    /// clustered interval and the smallest difference these rows could detect.
    pub error_bars: ErrorBars,
    pub subjects: Vec<SubjectDifference>,
    pub flipped: Flipped,
    pub usage: UsageDifference,
    /// Set when `--fail-if-worse` was given.
    pub gate: Option<Gate>,
}

/// The statistics of "Adding Error Bars to Evals" (Miller, 2024) for a paired difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBars {
    /// SE of the mean paired difference, rows independent.
    pub se: f64,
    /// SE of the mean paired difference clustered by subject (rows of a subject are not
    /// independent draws); equals `se` when every row has its own subject; `None` with fewer
    /// than two subjects, where it is not defined.
    pub se_clustered: Option<f64>,
    /// Which SE the interval and the minimum detectable effect use, and why:
    /// `"clustered (57 subjects)"` or `"unclustered (1 subject)"`.
    pub se_method: String,
    /// Subjects the rows fall in (clusters).
    pub clusters: u64,
    /// `difference -+ 1.96 * SE`, with the clustered SE when it is defined (`se_method`).
    pub ci95_clustered: [f64; 2],
    /// The smallest true difference a two-sided 5% test on these rows would detect with
    /// `power` (from the SE `se_method` names): a smaller change could go unnoticed.
    pub minimum_detectable_effect: f64,
    pub power: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedRows {
    /// Rows compared: present in both runs (with `--intersect`: in every run).
    pub shared: u64,
    /// Rows of A left out (only with `--intersect`).
    pub only_a: u64,
    /// Rows of B left out (only with `--intersect`).
    pub only_b: u64,
    /// Shared rows scored in both runs (the accuracy comparison's rows).
    pub compared: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectDifference {
    pub subject: String,
    pub n: u64,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    pub difference: f64,
    /// Paired bootstrap 95% interval of the subject's difference (same resamples and seed
    /// as the overall interval).
    pub ci95: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flipped {
    /// Right in A, not right in B.
    pub right_to_wrong: Vec<String>,
    /// Not right in A, right in B.
    pub wrong_to_right: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageDifference {
    pub tokens_a: u64,
    pub tokens_b: u64,
    /// `None` when either model has no known price.
    pub cost_a: Option<f64>,
    pub cost_b: Option<f64>,
    pub currency: Option<String>,
    pub latency_a: Option<Percentiles>,
    pub latency_b: Option<Percentiles>,
}

/// `--fail-if-worse PP`: fails when the upper bound of the 95% bootstrap interval of
/// accuracy(B) - accuracy(A) is below -PP/100, i.e. B is worse than A by more than PP
/// percentage points with 95% confidence (one-sided 97.5%).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub threshold_pp: f64,
    pub failed: bool,
}

impl Comparison {
    pub fn gate_failed(&self) -> bool {
        self.pairs
            .iter()
            .any(|p| p.gate.as_ref().is_some_and(|g| g.failed))
    }
}

/// Compare every run after the first with the first.
pub fn compare(
    runs: &[RunRows],
    intersect: bool,
    fail_if_worse_pp: Option<f64>,
) -> Result<Comparison, ScoreError> {
    let Some((baseline, candidates)) = runs.split_first() else {
        return Err(ScoreError::TooFewRuns);
    };
    if candidates.is_empty() {
        return Err(ScoreError::TooFewRuns);
    }
    // With --intersect every pair uses the rows all runs share, so the candidates' numbers
    // are comparable with each other too.
    let mut shared: HashSet<&str> = baseline.order.iter().map(String::as_str).collect();
    for candidate in candidates {
        let ids: HashSet<&str> = candidate.order.iter().map(String::as_str).collect();
        let only_a = baseline
            .order
            .iter()
            .filter(|id| !ids.contains(id.as_str()));
        let only_b = candidate
            .order
            .iter()
            .filter(|id| !baseline.rows.contains_key(id.as_str()));
        let (only_a, only_b): (Vec<&String>, Vec<&String>) = (only_a.collect(), only_b.collect());
        if !intersect && (!only_a.is_empty() || !only_b.is_empty()) {
            let common = baseline.order.len() - only_a.len();
            let example = only_a.first().or(only_b.first()).map(|s| s.to_string());
            return Err(ScoreError::DifferentRows {
                a: baseline.label.path.clone(),
                b: candidate.label.path.clone(),
                only_a: only_a.len(),
                only_b: only_b.len(),
                shared: common,
                example: example.unwrap_or_default(),
            });
        }
        shared.retain(|id| ids.contains(id));
    }
    if shared.is_empty() {
        return Err(ScoreError::NoSharedRows);
    }
    let ids: Vec<&str> = baseline
        .order
        .iter()
        .map(String::as_str)
        .filter(|id| shared.contains(id))
        .collect();
    let pairs = candidates
        .iter()
        .map(|candidate| compare_pair(baseline, candidate, &ids, fail_if_worse_pp))
        .collect();
    Ok(Comparison {
        schema_version: SCHEMA_VERSION,
        baseline: baseline.label.clone(),
        intersect,
        bootstrap: BootstrapSettings {
            resamples: BOOTSTRAP_RESAMPLES,
            seed: BOOTSTRAP_SEED,
            confidence: stats::CONFIDENCE,
        },
        pairs,
    })
}

fn compare_pair(
    a: &RunRows,
    b: &RunRows,
    ids: &[&str],
    fail_if_worse_pp: Option<f64>,
) -> PairComparison {
    let mut right_a = Vec::new();
    let mut right_b = Vec::new();
    let mut flipped = Flipped {
        right_to_wrong: Vec::new(),
        wrong_to_right: Vec::new(),
    };
    // Per subject: whether A and B were right on each of its rows.
    let mut subjects: BTreeMap<&str, (Vec<bool>, Vec<bool>)> = BTreeMap::new();
    let (mut usage_a, mut usage_b) = (Usage::default(), Usage::default());
    let (mut latency_a, mut latency_b) = (Vec::new(), Vec::new());
    for id in ids {
        let (Some(x), Some(y)) = (a.rows.get(*id), b.rows.get(*id)) else {
            continue;
        };
        usage_a.add(x.usage);
        usage_b.add(y.usage);
        latency_a.push(x.latency_ms);
        latency_b.push(y.latency_ms);
        if !x.outcome.is_scored() || !y.outcome.is_scored() {
            continue;
        }
        let (ra, rb) = (x.outcome == Outcome::Correct, y.outcome == Outcome::Correct);
        right_a.push(ra);
        right_b.push(rb);
        match (ra, rb) {
            (true, false) => flipped.right_to_wrong.push(id.to_string()),
            (false, true) => flipped.wrong_to_right.push(id.to_string()),
            _ => {}
        }
        let entry = subjects.entry(x.subject.as_str()).or_default();
        entry.0.push(ra);
        entry.1.push(rb);
    }
    let n = right_a.len() as u64;
    let correct_a = right_a.iter().filter(|r| **r).count() as u64;
    let correct_b = right_b.iter().filter(|r| **r).count() as u64;
    let accuracy_a = stats::proportion(correct_a, n);
    let accuracy_b = stats::proportion(correct_b, n);
    let difference = accuracy_b.value - accuracy_a.value;
    let ci95 = stats::paired_bootstrap(&right_a, &right_b, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED);
    let mcnemar_p = stats::mcnemar_exact(
        flipped.right_to_wrong.len() as u64,
        flipped.wrong_to_right.len() as u64,
    );
    let error_bars = error_bars(subjects.values(), difference);
    let mut subjects: Vec<SubjectDifference> = subjects
        .into_iter()
        .map(|(subject, (right_a, right_b))| {
            let n = right_a.len() as u64;
            let share = |right: &[bool]| right.iter().filter(|r| **r).count() as f64 / n as f64;
            let (accuracy_a, accuracy_b) = (share(&right_a), share(&right_b));
            SubjectDifference {
                subject: subject.to_string(),
                n,
                accuracy_a,
                accuracy_b,
                difference: accuracy_b - accuracy_a,
                ci95: stats::paired_bootstrap(
                    &right_a,
                    &right_b,
                    BOOTSTRAP_RESAMPLES,
                    BOOTSTRAP_SEED,
                ),
            }
        })
        .collect();
    // Largest change first (either direction); ties by name, so the order is stable.
    subjects.sort_by(|x, y| {
        y.difference
            .abs()
            .total_cmp(&x.difference.abs())
            .then_with(|| x.subject.cmp(&y.subject))
    });
    let cost = |price: &Option<Price>, usage: &Usage| price.as_ref().map(|p| p.cost(usage));
    let currency = match (&a.price, &b.price) {
        (Some(pa), Some(pb)) if pa.currency == pb.currency => Some(pa.currency.clone()),
        _ => None,
    };
    let same_currency = currency.is_some();
    let usage = UsageDifference {
        tokens_a: usage_a.total(),
        tokens_b: usage_b.total(),
        cost_a: cost(&a.price, &usage_a).filter(|_| same_currency),
        cost_b: cost(&b.price, &usage_b).filter(|_| same_currency),
        currency,
        latency_a: stats::percentiles(&latency_a),
        latency_b: stats::percentiles(&latency_b),
    };
    let gate = fail_if_worse_pp.map(|pp| Gate {
        threshold_pp: pp,
        failed: n > 0 && ci95[1] < -pp / 100.0,
    });
    PairComparison {
        candidate: b.label.clone(),
        rows: PairedRows {
            shared: ids.len() as u64,
            only_a: a.order.len() as u64 - ids.len() as u64,
            only_b: b.order.len() as u64 - ids.len() as u64,
            compared: n,
        },
        accuracy_a,
        accuracy_b,
        difference,
        ci95,
        mcnemar_p,
        error_bars,
        subjects,
        flipped,
        usage,
        gate,
    }
}

/// Clustered standard error of the paired difference (one cluster per subject) and the
/// minimum detectable effect, from each subject's right/wrong rows in A and B.
fn error_bars<'a>(
    subjects: impl Iterator<Item = &'a (Vec<bool>, Vec<bool>)>,
    difference: f64,
) -> ErrorBars {
    let clusters: Vec<ClusterSums> = subjects
        .map(|(right_a, right_b)| {
            let mut sums = ClusterSums::default();
            for (&a, &b) in right_a.iter().zip(right_b) {
                sums.add(f64::from(u8::from(b)) - f64::from(u8::from(a)));
            }
            sums
        })
        .collect();
    let mean = stats::clustered_mean(&clusters);
    let z = stats::z_for(stats::CONFIDENCE);
    let se = mean.se_used();
    ErrorBars {
        se: mean.se,
        se_clustered: mean.se_clustered,
        se_method: mean.se_method,
        clusters: mean.clusters,
        ci95_clustered: [difference - z * se, difference + z * se],
        minimum_detectable_effect: stats::minimum_detectable_effect(
            se,
            stats::CONFIDENCE,
            stats::POWER,
        ),
        power: stats::POWER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, rows: &[(String, usize, bool)]) -> RunRows {
        let facts = |subject: usize, right: bool| RowFacts {
            subject: format!("subject-{subject}"),
            outcome: if right {
                Outcome::Correct
            } else {
                Outcome::Wrong
            },
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 1,
                ..Usage::default()
            },
            latency_ms: 100.0,
        };
        RunRows {
            label: RunLabel {
                name: name.into(),
                path: name.into(),
                model: None,
                program: None,
                dataset_sha256: None,
            },
            order: rows.iter().map(|r| r.0.clone()).collect(),
            rows: rows
                .iter()
                .map(|(id, subject, right)| (id.clone(), facts(*subject, *right)))
                .collect(),
            price: None,
        }
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        paired: Vec<PairedCase>,
    }

    #[derive(serde::Deserialize)]
    struct PairedCase {
        rows: Vec<(usize, f64, f64)>,
        se: f64,
        se_clustered: f64,
        ci95_clustered: [f64; 2],
        mde: f64,
    }

    /// The pair's error bars equal the statsmodels values of
    /// tests/fixtures/error_bars_reference.py for the same rows clustered by subject.
    #[test]
    fn error_bars_of_a_pair_match_the_reference() {
        let reference: Reference = serde_json::from_str(include_str!(
            "../../tests/fixtures/error_bars_reference.json"
        ))
        .expect("reference JSON");
        for case in reference.paired {
            let rows = |pick: fn(&(usize, f64, f64)) -> f64| -> Vec<(String, usize, bool)> {
                case.rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("r{i}"), r.0, pick(r) == 1.0))
                    .collect()
            };
            let a = run("a", &rows(|r| r.1));
            let b = run("b", &rows(|r| r.2));
            let comparison = compare(&[a, b], false, None).expect("compares");
            let bars = &comparison.pairs[0].error_bars;
            let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
            assert!(close(bars.se, case.se), "{bars:?}");
            assert!(
                close(bars.se_clustered.expect("clustered"), case.se_clustered),
                "{bars:?}"
            );
            assert!(close(bars.ci95_clustered[0], case.ci95_clustered[0]));
            assert!(close(bars.ci95_clustered[1], case.ci95_clustered[1]));
            assert!(close(bars.minimum_detectable_effect, case.mde), "{bars:?}");
            assert_eq!(bars.power, 0.8);
        }
    }

    #[test]
    fn subject_intervals_are_paired_bootstraps_of_their_rows() {
        // subject-0: 10 rows, B right on 4 more; subject-1: identical answers.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..10 {
            a.push((format!("x{i}"), 0, i < 3));
            b.push((format!("x{i}"), 0, i < 7));
            a.push((format!("y{i}"), 1, i % 2 == 0));
            b.push((format!("y{i}"), 1, i % 2 == 0));
        }
        let comparison = compare(&[run("a", &a), run("b", &b)], false, None).expect("compares");
        let subjects = &comparison.pairs[0].subjects;
        assert_eq!(subjects[0].subject, "subject-0");
        assert!((subjects[0].difference - 0.4).abs() < 1e-15);
        let expected = stats::paired_bootstrap(
            &(0..10).map(|i| i < 3).collect::<Vec<_>>(),
            &(0..10).map(|i| i < 7).collect::<Vec<_>>(),
            BOOTSTRAP_RESAMPLES,
            BOOTSTRAP_SEED,
        );
        assert_eq!(subjects[0].ci95, expected);
        assert!(subjects[0].ci95[0] > 0.0 && subjects[0].ci95[1] <= 0.7);
        assert_eq!(subjects[1].ci95, [0.0, 0.0]);
    }
}
