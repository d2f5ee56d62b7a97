//! Accuracy by group (subject, dataset) and answer-position bias.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{self, Estimate};
use crate::results::Outcome;

/// Counts of outcomes in one group of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub correct: u64,
    pub wrong: u64,
    pub unparsed: u64,
    pub refused: u64,
    pub unscored: u64,
}

impl Tally {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Correct => self.correct += 1,
            Outcome::Wrong => self.wrong += 1,
            Outcome::Unparsed => self.unparsed += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Unscored => self.unscored += 1,
        }
    }

    /// Rows in the accuracy denominator: correct, wrong and invalid answers.
    pub fn scored(&self) -> u64 {
        self.correct + self.wrong + self.invalid()
    }

    /// Unparsed or refused answers: they count against accuracy but are not "wrong".
    pub fn invalid(&self) -> u64 {
        self.unparsed + self.refused
    }

    pub fn accuracy(&self) -> Estimate {
        stats::proportion(self.correct, self.scored())
    }

    pub fn invalid_rate(&self) -> Estimate {
        stats::proportion(self.invalid(), self.scored())
    }
}

/// One line of a per-subject or per-dataset table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupAccuracy {
    pub name: String,
    #[serde(flatten)]
    pub tally: Tally,
    pub accuracy: Estimate,
}

/// Tallies keyed by group name, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct GroupTallies(pub BTreeMap<String, Tally>);

impl GroupTallies {
    pub fn add(&mut self, group: &str, outcome: Outcome) {
        self.0.entry(group.to_string()).or_default().add(outcome);
    }

    /// Groups with at least one scored row.
    pub fn table(&self) -> Vec<GroupAccuracy> {
        self.0
            .iter()
            .filter(|(_, t)| t.scored() > 0)
            .map(|(name, tally)| GroupAccuracy {
                name: name.clone(),
                tally: *tally,
                accuracy: tally.accuracy(),
            })
            .collect()
    }

    /// Micro accuracy with the standard error clustered by group (see
    /// [`stats::clustered_mean`]).
    pub fn clustered_accuracy(&self) -> stats::ClusteredMean {
        let groups: Vec<stats::ClusterSums> = self
            .0
            .values()
            .map(|t| stats::ClusterSums {
                n: t.scored(),
                // Scores are 0 or 1, so the sum of squares is the sum.
                sum: t.correct as f64,
                sum_squares: t.correct as f64,
            })
            .collect();
        stats::clustered_mean(&groups)
    }

    /// Macro average over the groups with scored rows.
    pub fn macro_average(&self) -> Estimate {
        let groups: Vec<(u64, u64)> = self.0.values().map(|t| (t.correct, t.scored())).collect();
        stats::macro_average(&groups)
    }
}

/// How often each option position is chosen against how often it is correct.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionBias {
    /// Position labels: A, B, C, ... (by index into the choices).
    pub positions: Vec<String>,
    /// `matrix[correct][chosen]`: rows with a parsed answer, by correct and chosen position.
    pub matrix: Vec<Vec<u64>>,
    /// Share of parsed answers choosing each position.
    pub chosen_share: Vec<f64>,
    /// Share of those rows whose correct answer is at each position.
    pub correct_share: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct PositionAccumulator {
    matrix: Vec<Vec<u64>>,
}

impl PositionAccumulator {
    pub fn add(&mut self, correct: usize, chosen: usize) {
        let size = correct.max(chosen) + 1;
        if size > self.matrix.len() {
            for row in &mut self.matrix {
                row.resize(size, 0);
            }
            self.matrix.resize(size, vec![0; size]);
        }
        self.matrix[correct][chosen] += 1;
    }

    pub fn finish(&self) -> Option<PositionBias> {
        let k = self.matrix.len();
        let total: u64 = self.matrix.iter().flatten().sum();
        if total == 0 {
            return None;
        }
        let chosen = (0..k).map(|j| self.matrix.iter().map(|r| r[j]).sum::<u64>());
        let correct = self.matrix.iter().map(|r| r.iter().sum::<u64>());
        Some(PositionBias {
            positions: (0..k).map(position_label).collect(),
            matrix: self.matrix.clone(),
            chosen_share: chosen.map(|c| c as f64 / total as f64).collect(),
            correct_share: correct.map(|c| c as f64 / total as f64).collect(),
        })
    }
}

/// A, B, ..., Z, then 27, 28, ... (1-based) for unusually long option lists.
pub fn position_label(index: usize) -> String {
    if index < 26 {
        char::from(b'A' + index as u8).to_string()
    } else {
        (index + 1).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_answers_count_against_accuracy_but_apart_from_wrong() {
        let mut tally = Tally::default();
        for outcome in [
            Outcome::Correct,
            Outcome::Correct,
            Outcome::Wrong,
            Outcome::Unparsed,
            Outcome::Refused,
            Outcome::Unscored,
        ] {
            tally.add(outcome);
        }
        assert_eq!((tally.scored(), tally.invalid(), tally.wrong), (5, 2, 1));
        assert_eq!(tally.accuracy().value, 0.4);
        assert_eq!(tally.invalid_rate().value, 0.4);
    }

    #[test]
    fn position_matrix_rows_are_correct_columns_chosen() {
        let mut acc = PositionAccumulator::default();
        acc.add(0, 0);
        acc.add(0, 1);
        acc.add(3, 1);
        let bias = acc.finish().expect("rows");
        assert_eq!(bias.positions, ["A", "B", "C", "D"]);
        assert_eq!(bias.matrix[0], [1, 1, 0, 0]);
        assert_eq!(bias.matrix[3], [0, 1, 0, 0]);
        assert_eq!(bias.chosen_share[1], 2.0 / 3.0);
        assert_eq!(bias.correct_share[0], 2.0 / 3.0);
    }
}
