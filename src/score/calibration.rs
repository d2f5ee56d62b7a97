//! Calibration of option probabilities: Brier score, log loss, expected calibration error
//! and the reliability curve behind it.
//!
//! Input per row: the probabilities recorded for the answer select (aligned with the row's
//! choices) and the index of the correct choice. Probabilities are renormalised to sum to 1
//! over the options first (a logprobs path sees only the options' share of the mass).

use serde::Serialize;

/// Bins of the expected calibration error: 10 equal-width bins of the confidence (the largest
/// option probability), `[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]` (the last bin includes 1).
pub const ECE_BINS: usize = 10;

/// Probabilities are clipped to `[EPSILON, 1]` before the logarithm of log loss.
pub const EPSILON: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Rows with probabilities.
    pub n: u64,
    /// Mean over rows of `sum_k (p_k - y_k)^2` (multi-class Brier, 0 best, 2 worst).
    pub brier: f64,
    /// Mean over rows of `-ln p_correct`.
    pub log_loss: f64,
    /// `sum_b (n_b / n) |accuracy_b - confidence_b|` over [`ECE_BINS`] bins.
    pub ece: f64,
    pub bins: Vec<CalibrationBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub n: u64,
    /// Mean confidence of the rows in the bin (0 when empty).
    pub confidence: f64,
    /// Share of rows whose most probable option is the correct one (0 when empty).
    pub accuracy: f64,
}

/// Accumulates rows one at a time (so a folder can be streamed).
#[derive(Debug, Clone, Default)]
pub struct CalibrationAccumulator {
    n: u64,
    brier_sum: f64,
    log_loss_sum: f64,
    bin_n: [u64; ECE_BINS],
    bin_confidence: [f64; ECE_BINS],
    bin_correct: [u64; ECE_BINS],
}

/// Probabilities normalised to sum to 1; `None` when they cannot be (empty, negative, NaN,
/// all zero, or the correct index outside them).
pub fn normalise(probs: &[f64], correct: usize) -> Option<Vec<f64>> {
    if probs.is_empty() || correct >= probs.len() {
        return None;
    }
    if probs.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return None;
    }
    let total: f64 = probs.iter().sum();
    if total <= 0.0 {
        return None;
    }
    Some(probs.iter().map(|p| p / total).collect())
}

/// The bin of a confidence in [0, 1].
pub fn bin_of(confidence: f64) -> usize {
    ((confidence * ECE_BINS as f64).floor() as usize).min(ECE_BINS - 1)
}

impl CalibrationAccumulator {
    /// Adds a row; returns false (and adds nothing) when the probabilities are unusable.
    pub fn add(&mut self, probs: &[f64], correct: usize) -> bool {
        let Some(probs) = normalise(probs, correct) else {
            return false;
        };
        let brier: f64 = probs
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let y = if k == correct { 1.0 } else { 0.0 };
                (p - y) * (p - y)
            })
            .sum();
        let log_loss = -probs[correct].clamp(EPSILON, 1.0).ln();
        // The first of equally likely options counts as the prediction.
        let (predicted, confidence) =
            probs
                .iter()
                .copied()
                .enumerate()
                .fold((0usize, f64::NEG_INFINITY), |best, (k, p)| {
                    if p > best.1 { (k, p) } else { best }
                });
        let bin = bin_of(confidence);
        self.n += 1;
        self.brier_sum += brier;
        self.log_loss_sum += log_loss;
        self.bin_n[bin] += 1;
        self.bin_confidence[bin] += confidence;
        self.bin_correct[bin] += u64::from(predicted == correct);
        true
    }

    pub fn finish(&self) -> Option<Calibration> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let mut ece = 0.0;
        let bins = (0..ECE_BINS)
            .map(|b| {
                let count = self.bin_n[b];
                let (confidence, accuracy) = if count == 0 {
                    (0.0, 0.0)
                } else {
                    (
                        self.bin_confidence[b] / count as f64,
                        self.bin_correct[b] as f64 / count as f64,
                    )
                };
                ece += count as f64 / n * (accuracy - confidence).abs();
                CalibrationBin {
                    lower: b as f64 / ECE_BINS as f64,
                    upper: (b + 1) as f64 / ECE_BINS as f64,
                    n: count,
                    confidence,
                    accuracy,
                }
            })
            .collect();
        Some(Calibration {
            n: self.n,
            brier: self.brier_sum / n,
            log_loss: self.log_loss_sum / n,
            ece,
            bins,
        })
    }
}

/// Calibration of a whole set of rows at once.
pub fn calibration(rows: &[(Vec<f64>, usize)]) -> Option<Calibration> {
    let mut accumulator = CalibrationAccumulator::default();
    for (probs, correct) in rows {
        accumulator.add(probs, *correct);
    }
    accumulator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::reference;

    #[test]
    fn matches_the_reference_computation() {
        let case = reference::reference().calibration;
        let got = calibration(&case.rows).expect("rows");
        assert!((got.brier - case.brier).abs() < 1e-12, "{}", got.brier);
        assert!(
            (got.log_loss - case.log_loss).abs() < 1e-12,
            "{}",
            got.log_loss
        );
        assert!((got.ece - case.ece).abs() < 1e-12, "{}", got.ece);
    }

    #[test]
    fn a_certain_right_answer_is_perfect() {
        let got = calibration(&[(vec![0.0, 1.0, 0.0, 0.0], 1)]).expect("row");
        assert_eq!((got.brier, got.ece), (0.0, 0.0));
        assert!(got.log_loss < 1e-12);
        assert_eq!(got.bins[9].n, 1);
    }

    #[test]
    fn unusable_probabilities_are_skipped() {
        let mut acc = CalibrationAccumulator::default();
        assert!(!acc.add(&[0.0, 0.0], 0));
        assert!(!acc.add(&[0.5, f64::NAN], 0));
        assert!(!acc.add(&[0.5, 0.5], 2));
        assert!(acc.finish().is_none());
    }

    #[test]
    fn probabilities_are_renormalised() {
        let got = calibration(&[(vec![0.2, 0.6, 0.0, 0.0], 1)]).expect("row");
        // normalised: [0.25, 0.75, 0, 0]
        assert!((got.brier - (0.0625 + 0.0625)).abs() < 1e-15);
        assert!((got.log_loss + 0.75f64.ln()).abs() < 1e-15);
    }
}
