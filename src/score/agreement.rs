//! Agreement between judgments: Krippendorff's alpha with the ordinal difference function.
//!
//! A judge's scores are ordinal (a 4 is better than a 3, but "3 to 4" need not equal "4 to
//! 5"), several judgments of a row may be missing (an unparsed answer), and there may be two
//! or more judgments per row (repeats of one judge, or two judges). Alpha handles all three:
//! `alpha = 1 - D_o / D_e`, the observed disagreement within rows over the disagreement
//! expected by chance, 1 for perfect agreement, 0 for chance. Tested against the
//! `krippendorff` package on PyPI (tests/fixtures/judge_reference.py).

use serde::Serialize;

/// Krippendorff's alpha (ordinal) of `units`: each unit (row) holds the values its judgments
/// gave (`None` = missing). Units with fewer than two values cannot be paired and are left
/// out. `None` when alpha is undefined: fewer than two pairable values, or a single value
/// throughout (no expected disagreement).
pub fn krippendorff_alpha_ordinal(units: &[Vec<Option<f64>>]) -> Option<f64> {
    // The values each pairable unit holds.
    let units: Vec<Vec<f64>> = units
        .iter()
        .map(|u| {
            u.iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect::<Vec<_>>()
        })
        .filter(|u| u.len() >= 2)
        .collect();
    let mut domain: Vec<f64> = units.iter().flatten().copied().collect();
    domain.sort_by(f64::total_cmp);
    domain.dedup();
    let k = domain.len();
    if k < 2 {
        return None;
    }
    let index = |v: f64| domain.partition_point(|d| *d < v);
    // Coincidence matrix: each ordered pair of values within a unit of m values counts
    // 1 / (m - 1).
    let mut coincidences = vec![vec![0.0f64; k]; k];
    for unit in &units {
        let weight = 1.0 / (unit.len() as f64 - 1.0);
        for (i, a) in unit.iter().enumerate() {
            for (j, b) in unit.iter().enumerate() {
                if i != j {
                    coincidences[index(*a)][index(*b)] += weight;
                }
            }
        }
    }
    let marginals: Vec<f64> = coincidences.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = marginals.iter().sum();
    // Ordinal difference: (sum of the marginals from c to k, minus half of the two ends)^2.
    let delta = |c: usize, k: usize| {
        let (lo, hi) = if c <= k { (c, k) } else { (k, c) };
        let between: f64 = marginals[lo..=hi].iter().sum();
        (between - (marginals[lo] + marginals[hi]) / 2.0).powi(2)
    };
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..k {
        for j in 0..k {
            let d = delta(c, j);
            observed += coincidences[c][j] * d;
            expected += marginals[c] * marginals[j] * d;
        }
    }
    let observed = observed / n;
    let expected = expected / (n * (n - 1.0));
    (expected > 0.0).then(|| 1.0 - observed / expected)
}

/// How consistently judgments of the same rows agree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Judgments per row compared (repeats, or judges).
    pub judgments: usize,
    /// Rows with at least two scores (the ones alpha is computed on).
    pub rows: u64,
    /// Krippendorff's alpha, ordinal; `None` when undefined (one value throughout).
    pub krippendorff_alpha_ordinal: Option<f64>,
    /// Rows whose scores were not all equal.
    pub rows_disagreeing: u64,
    /// Mean over rows of (highest score - lowest score).
    pub mean_spread: f64,
    pub max_spread: f64,
}

/// Agreement over `units` (each row's scores, `None` for a missing one).
pub fn agreement(units: &[Vec<Option<f64>>]) -> Agreement {
    let judgments = units.iter().map(Vec::len).max().unwrap_or(0);
    let spreads: Vec<f64> = units
        .iter()
        .filter_map(|unit| {
            let values: Vec<f64> = unit.iter().flatten().copied().collect();
            (values.len() >= 2).then(|| {
                let hi = values.iter().copied().fold(f64::MIN, f64::max);
                let lo = values.iter().copied().fold(f64::MAX, f64::min);
                hi - lo
            })
        })
        .collect();
    let rows = spreads.len() as u64;
    Agreement {
        judgments,
        rows,
        krippendorff_alpha_ordinal: krippendorff_alpha_ordinal(units),
        rows_disagreeing: spreads.iter().filter(|s| **s > 0.0).count() as u64,
        mean_spread: if rows == 0 {
            0.0
        } else {
            spreads.iter().sum::<f64>() / rows as f64
        },
        max_spread: spreads.iter().copied().fold(0.0, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        /// coders x units, null = missing (the `krippendorff` package's reliability_data).
        reliability_data: Vec<Vec<Option<f64>>>,
        alpha_ordinal: Option<f64>,
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        krippendorff_alpha_ordinal: Vec<Case>,
    }

    /// Reference values from `krippendorff.alpha(..., level_of_measurement="ordinal")`
    /// (krippendorff 0.9.0 on PyPI), written by tests/fixtures/judge_reference.py.
    #[test]
    fn matches_the_krippendorff_package() {
        let reference: Reference =
            serde_json::from_str(include_str!("../../tests/fixtures/judge_reference.json"))
                .expect("reference file");
        let cases = reference.krippendorff_alpha_ordinal;
        assert!(cases.len() >= 6);
        for case in cases {
            let coders = case.reliability_data.len();
            let units_count = case.reliability_data[0].len();
            let units: Vec<Vec<Option<f64>>> = (0..units_count)
                .map(|u| (0..coders).map(|c| case.reliability_data[c][u]).collect())
                .collect();
            let alpha = krippendorff_alpha_ordinal(&units);
            match (alpha, case.alpha_ordinal) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{}: {a} vs {b}", case.name),
                (a, b) => assert_eq!(a, b, "{}", case.name),
            }
        }
    }

    #[test]
    fn spread_and_counts() {
        let units = vec![
            vec![Some(4.0), Some(4.0), Some(4.0)],
            vec![Some(2.0), Some(5.0), None],
            vec![Some(3.0), None, None],
        ];
        let a = agreement(&units);
        assert_eq!((a.judgments, a.rows, a.rows_disagreeing), (3, 2, 1));
        assert_eq!((a.mean_spread, a.max_spread), (1.5, 3.0));
        let same = agreement(&[vec![Some(3.0), Some(3.0)], vec![Some(3.0), Some(3.0)]]);
        assert_eq!(same.krippendorff_alpha_ordinal, None);
        assert_eq!(same.rows_disagreeing, 0);
    }
}
