//! Statistics over counts and paired outcomes: pure functions, tested against reference
//! values from scipy/statsmodels (the scripts `tests/fixtures/*_reference.py` and their JSON).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

/// Two-sided 95%.
pub const CONFIDENCE: f64 = 0.95;

/// Resamples drawn by [`paired_bootstrap`] in reports. 10,000 keeps the Monte Carlo error of a
/// 95% bound around 0.1 percentage point for a few hundred rows.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// Seed of the bootstrap in reports: the same inputs always give the same interval.
pub const BOOTSTRAP_SEED: u64 = 20_240_601;

/// A proportion with its standard error and 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub se: f64,
    pub ci95: [f64; 2],
    /// Rows behind the estimate.
    pub n: u64,
}

/// The normal quantile for a two-sided interval at `confidence` (1.959964 for 95%).
pub fn z_for(confidence: f64) -> f64 {
    // Normal::new(0, 1) cannot fail; the fallback only keeps clippy's no-unwrap rule honest.
    Normal::new(0.0, 1.0)
        .map(|n| n.inverse_cdf(1.0 - (1.0 - confidence) / 2.0))
        .unwrap_or(1.959_963_984_540_054)
}

/// Wilson score interval for `successes` out of `n` (statsmodels `proportion_confint(...,
/// method="wilson")`). `n == 0` gives `[0, 1]`.
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    wilson_interval_f(successes as f64 / n as f64, n as f64, confidence)
}

/// Wilson interval for a proportion `p` observed on an (effective) sample size `n`.
pub fn wilson_interval_f(p: f64, n: f64, confidence: f64) -> [f64; 2] {
    if n <= 0.0 {
        return [0.0, 1.0];
    }
    let z = z_for(confidence);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(center - half).max(0.0), (center + half).min(1.0)]
}

/// Standard error of a proportion, `sqrt(p (1 - p) / n)`.
pub fn proportion_se(successes: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let p = successes as f64 / n as f64;
    (p * (1.0 - p) / n as f64).sqrt()
}

/// Accuracy over `n` rows with its SE and Wilson interval.
pub fn proportion(successes: u64, n: u64) -> Estimate {
    Estimate {
        value: if n == 0 {
            0.0
        } else {
            successes as f64 / n as f64
        },
        se: proportion_se(successes, n),
        ci95: wilson_interval(successes, n, CONFIDENCE),
        n,
    }
}

/// The unweighted mean of per-group proportions (macro average), given `(successes, n)` per
/// group; groups with no rows are left out.
///
/// SE: `sqrt(sum(p_i (1 - p_i) / n_i)) / K` (groups independent). Interval: the Wilson
/// interval at the effective sample size `p (1 - p) / SE^2` (Kish's design-effect idea), which
/// keeps it inside [0, 1]; when every group is all right or all wrong the SE is 0 and the
/// total row count is used.
pub fn macro_average(groups: &[(u64, u64)]) -> Estimate {
    let groups: Vec<(u64, u64)> = groups.iter().copied().filter(|g| g.1 > 0).collect();
    let total: u64 = groups.iter().map(|g| g.1).sum();
    if groups.is_empty() {
        return proportion(0, 0);
    }
    let k = groups.len() as f64;
    let mean = groups
        .iter()
        .map(|&(s, n)| s as f64 / n as f64)
        .sum::<f64>()
        / k;
    let variance_sum: f64 = groups
        .iter()
        .map(|&(s, n)| {
            let p = s as f64 / n as f64;
            p * (1.0 - p) / n as f64
        })
        .sum();
    let se = variance_sum.sqrt() / k;
    let effective_n = if se > 0.0 && mean > 0.0 && mean < 1.0 {
        mean * (1.0 - mean) / (se * se)
    } else {
        total as f64
    };
    Estimate {
        value: mean,
        se,
        ci95: wilson_interval_f(mean, effective_n, CONFIDENCE),
        n: total,
    }
}

/// Exact (binomial) McNemar test, two-sided: with `b` pairs right only in A and `c` right only
/// in B, `p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))` - statsmodels `mcnemar(table,
/// exact=True)`. No discordant pair gives 1.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    match Binomial::new(0.5, n) {
        Ok(binomial) => (2.0 * binomial.cdf(b.min(c))).min(1.0),
        Err(_) => 1.0,
    }
}

/// Percentile bootstrap of the paired difference `mean(b) - mean(a)`: `resamples` times, draw
/// `n` rows with replacement and take the difference on those rows; the interval is the 2.5th
/// and 97.5th percentiles (linear interpolation) of the resampled differences.
///
/// A row's difference is +1 (right only in B), -1 (right only in A) or 0, so a resample is
/// known by how many +1 and -1 rows it drew: `k+ ~ Binomial(n, n+/n)`, then
/// `k- ~ Binomial(n - k+, n-/(n - n+))` - the same distribution as drawing `n` row indices,
/// in O(1) per resample instead of O(n). The generator is ChaCha8 seeded with `seed`, so
/// results are reproducible across platforms.
pub fn paired_bootstrap(a: &[bool], b: &[bool], resamples: usize, seed: u64) -> [f64; 2] {
    let n = a.len().min(b.len());
    if n == 0 || resamples == 0 {
        return [0.0, 0.0];
    }
    let plus = a.iter().zip(b).filter(|&(&x, &y)| !x && y).count() as u64;
    let minus = a.iter().zip(b).filter(|&(&x, &y)| x && !y).count() as u64;
    let n = n as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut diffs: Vec<f64> = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let drawn_plus = draw_binomial(&mut rng, n, plus as f64 / n as f64);
        let others = n - plus;
        let drawn_minus = if others == 0 {
            0
        } else {
            draw_binomial(&mut rng, n - drawn_plus, minus as f64 / others as f64)
        };
        diffs.push((drawn_plus as f64 - drawn_minus as f64) / n as f64);
    }
    diffs.sort_by(f64::total_cmp);
    let alpha = 1.0 - CONFIDENCE;
    [
        percentile_sorted(&diffs, 100.0 * alpha / 2.0),
        percentile_sorted(&diffs, 100.0 * (1.0 - alpha / 2.0)),
    ]
}

fn draw_binomial(rng: &mut ChaCha8Rng, trials: u64, p: f64) -> u64 {
    match rand_distr::Binomial::new(trials, p.clamp(0.0, 1.0)) {
        Ok(binomial) => rng.sample(binomial),
        // Only for a p outside [0, 1], which the clamp rules out.
        Err(_) => 0,
    }
}

/// The `q`-th percentile (0..=100) of sorted values, linear interpolation between closest
/// ranks (numpy's default, Hyndman & Fan type 7). Empty input gives NaN.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        len => {
            let rank = (q / 100.0).clamp(0.0, 1.0) * (len - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            let weight = rank - low as f64;
            sorted[low] + (sorted[high] - sorted[low]) * weight
        }
    }
}

/// p50, p90, p99 (and mean, max) of unsorted values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Percentiles {
        p50: percentile_sorted(&sorted, 50.0),
        p90: percentile_sorted(&sorted, 90.0),
        p99: percentile_sorted(&sorted, 99.0),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        max: sorted[sorted.len() - 1],
    })
}

/// Sums of a per-row score over the rows of one cluster (one subject): what the clustered
/// standard error needs, so a folder can be streamed into them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClusterSums {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl ClusterSums {
    pub fn add(&mut self, score: f64) {
        self.n += 1;
        self.sum += score;
        self.sum_squares += score * score;
    }
}

/// A mean with its standard error both with rows independent and clustered, after Miller
/// (2024), "Adding Error Bars to Evals" (arXiv:2411.00640).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusteredMean {
    pub value: f64,
    /// Rows independent: `sqrt(mean((s - mean)^2) / n)` (for 0/1 scores `sqrt(p(1-p)/n)`).
    pub se: f64,
    /// Clustered: `sqrt(sum_c (sum_{i in c} (s_i - mean))^2) / n`; `None` (JSON `null`) with
    /// fewer than two clusters, where it is not defined (one cluster always gives 0).
    pub se_clustered: Option<f64>,
    /// Which standard error the interval uses and why, as the reports print it:
    /// `"clustered (57 subjects)"` or `"unclustered (1 subject)"`.
    pub se_method: String,
    /// `value -+ z * se_used()` (the CLT interval the paper uses), at 95%.
    pub ci95: [f64; 2],
    pub n: u64,
    pub clusters: u64,
}

impl ClusteredMean {
    /// The standard error the interval is built on: the clustered one when it is defined,
    /// else the unclustered one.
    pub fn se_used(&self) -> f64 {
        self.se_clustered.unwrap_or(self.se)
    }
}

/// Clusters a clustered standard error needs: with one cluster the sum of the deviations
/// within it is zero by construction, so the "clustered" SE would be 0, not small.
pub const MIN_CLUSTERS: u64 = 2;

/// How the standard error over `clusters` subjects is computed, in the words the reports use.
pub fn se_method(clusters: u64) -> String {
    let subjects = if clusters == 1 { "subject" } else { "subjects" };
    if clusters >= MIN_CLUSTERS {
        format!("clustered ({clusters} {subjects})")
    } else {
        format!("unclustered ({clusters} {subjects})")
    }
}

/// The mean of a score over rows grouped in clusters, with the clustered standard error of
/// Miller (2024) eq. 4: `SE^2 = SE_CLT^2 + (1/n^2) sum_c sum_i sum_{j != i} (s_ic - mean)(s_jc -
/// mean)`, which is `(1/n^2) sum_c (S_c - n_c mean)^2` with `S_c` the sum of a cluster's scores
/// when `SE_CLT^2` is taken over `n` (as the Bernoulli SE evalr reports is). That is the
/// cluster-robust sandwich estimator without small-sample correction (CR0: statsmodels
/// `cov_type="cluster"`, `use_correction=False`, as the paper; statsmodels' default CR1
/// multiplies the variance by `G/(G-1) (N-1)/(N-K)`, with K = 1 regressor `G/(G-1)`, which
/// evalr does not apply: 1.41x the SE at 2 clusters, 1.009x at 57). Rows of one subject
/// share its questions' style and difficulty, so they are not independent draws and the
/// clustered SE is the honest one; with one row per cluster it equals the unclustered SE.
/// With fewer than [`MIN_CLUSTERS`] clusters it is not defined: `se_clustered` is `None` and
/// the interval uses the unclustered SE. Empty clusters are ignored.
pub fn clustered_mean(clusters: &[ClusterSums]) -> ClusteredMean {
    let n: u64 = clusters.iter().map(|c| c.n).sum();
    let count = clusters.iter().filter(|c| c.n > 0).count() as u64;
    if n == 0 {
        return ClusteredMean {
            value: 0.0,
            se: 0.0,
            se_clustered: None,
            se_method: se_method(0),
            ci95: [0.0, 0.0],
            n: 0,
            clusters: 0,
        };
    }
    let total = n as f64;
    let mean = clusters.iter().map(|c| c.sum).sum::<f64>() / total;
    let squares = clusters.iter().map(|c| c.sum_squares).sum::<f64>();
    let variance = (squares / total - mean * mean).max(0.0);
    let between: f64 = clusters
        .iter()
        .map(|c| {
            let deviation = c.sum - c.n as f64 * mean;
            deviation * deviation
        })
        .sum();
    let se_clustered = (count >= MIN_CLUSTERS).then(|| between.sqrt() / total);
    let se = (variance / total).sqrt();
    let used = se_clustered.unwrap_or(se);
    let z = z_for(CONFIDENCE);
    ClusteredMean {
        value: mean,
        se,
        se_clustered,
        se_method: se_method(count),
        ci95: [mean - z * used, mean + z * used],
        n,
        clusters: count,
    }
}

/// Statistical power the minimum detectable effect is computed for.
pub const POWER: f64 = 0.80;

/// The smallest true difference a two-sided test at `confidence` detects with probability
/// `power`, given the standard error of the difference: `(z_{1-alpha/2} + z_power) * SE`
/// (Miller 2024, section 5; 2.8016 SE at 95% and 80% power). A "no significant difference"
/// verdict says a difference this large would probably have been seen.
pub fn minimum_detectable_effect(se: f64, confidence: f64, power: f64) -> f64 {
    let z_power = Normal::new(0.0, 1.0)
        .map(|n| n.inverse_cdf(power))
        .unwrap_or(0.841_621_233_572_914_2);
    (z_for(confidence) + z_power) * se
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: tests/fixtures/error_bars_reference.py (statsmodels cluster-robust
    // OLS, scipy), committed with its output tests/fixtures/error_bars_reference.json.
    #[derive(serde::Deserialize)]
    struct ErrorBarsReference {
        mde_factor_80: f64,
        means: Vec<MeanCase>,
        paired: Vec<PairedCase>,
    }

    #[derive(serde::Deserialize)]
    struct MeanCase {
        name: String,
        rows: Vec<(usize, f64)>,
        mean: f64,
        se: f64,
        ci95: [f64; 2],
    }

    #[derive(serde::Deserialize)]
    struct PairedCase {
        name: String,
        rows: Vec<(usize, f64, f64)>,
        difference: f64,
        se: f64,
        se_clustered: f64,
        ci95_clustered: [f64; 2],
        mde: f64,
    }

    fn error_bars_reference() -> ErrorBarsReference {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/error_bars_reference.json"
        ))
        .expect("tests/fixtures/error_bars_reference.json is valid")
    }

    fn sums(rows: impl Iterator<Item = (usize, f64)>) -> Vec<ClusterSums> {
        let mut clusters: Vec<ClusterSums> = Vec::new();
        for (cluster, score) in rows {
            if clusters.len() <= cluster {
                clusters.resize(cluster + 1, ClusterSums::default());
            }
            clusters[cluster].add(score);
        }
        clusters
    }

    #[test]
    fn clustered_standard_errors_match_statsmodels() {
        for case in error_bars_reference().means {
            let got = clustered_mean(&sums(case.rows.iter().copied()));
            assert!(close(got.value, case.mean, 1e-12), "{}: {got:?}", case.name);
            let se_clustered = got.se_clustered.expect("two clusters or more");
            assert!(
                close(se_clustered, case.se, 1e-12),
                "{}: {got:?}",
                case.name
            );
            assert!(close(got.ci95[0], case.ci95[0], 1e-12), "{}", case.name);
            assert!(close(got.ci95[1], case.ci95[1], 1e-12), "{}", case.name);
            assert_eq!(got.n, case.rows.len() as u64);
        }
    }

    #[test]
    fn with_one_row_per_cluster_the_clustered_se_is_the_bernoulli_se() {
        let case = error_bars_reference()
            .means
            .into_iter()
            .find(|c| c.name == "singletons")
            .expect("case");
        let got = clustered_mean(&sums(case.rows.iter().copied()));
        let successes = case.rows.iter().filter(|r| r.1 == 1.0).count() as u64;
        let bernoulli = proportion_se(successes, case.rows.len() as u64);
        assert!(close(got.se, bernoulli, 1e-15));
        assert!(close(
            got.se_clustered.expect("30 clusters"),
            bernoulli,
            1e-12
        ));
        assert_eq!(got.clusters, 30);
    }

    #[test]
    fn paired_differences_and_minimum_detectable_effect_match_statsmodels() {
        let reference = error_bars_reference();
        assert!(close(
            minimum_detectable_effect(1.0, 0.95, POWER),
            reference.mde_factor_80,
            1e-12
        ));
        for case in reference.paired {
            let got = clustered_mean(&sums(case.rows.iter().map(|&(c, a, b)| (c, b - a))));
            assert!(close(got.value, case.difference, 1e-12), "{}", case.name);
            assert!(close(got.se, case.se, 1e-12), "{}: {got:?}", case.name);
            let se_clustered = got.se_clustered.expect("clusters");
            assert!(
                close(se_clustered, case.se_clustered, 1e-12),
                "{}",
                case.name
            );
            assert!(close(got.ci95[0], case.ci95_clustered[0], 1e-12));
            assert!(close(got.ci95[1], case.ci95_clustered[1], 1e-12));
            let mde = minimum_detectable_effect(se_clustered, CONFIDENCE, POWER);
            assert!(
                close(mde, case.mde, 1e-12),
                "{}: {mde} vs {}",
                case.name,
                case.mde
            );
        }
    }

    #[test]
    fn no_rows_give_a_zero_estimate_without_a_clustered_error() {
        let got = clustered_mean(&[ClusterSums::default()]);
        assert_eq!((got.n, got.clusters, got.se_clustered), (0, 0, None));
        assert_eq!(got.se_method, "unclustered (0 subjects)");
    }

    // Reference values: tests/fixtures/small_clusters_reference.py (statsmodels OLS, HC0 and
    // cluster-robust CR0/CR1), committed with its output small_clusters_reference.json.
    #[derive(serde::Deserialize)]
    struct SmallClustersReference {
        cases: Vec<SmallClustersCase>,
    }

    #[derive(serde::Deserialize)]
    struct SmallClustersCase {
        name: String,
        clusters: u64,
        rows: Vec<(usize, f64)>,
        mean: f64,
        se_hc0: f64,
        se_cr0: f64,
        se_cr1: Option<f64>,
        ci95: [f64; 2],
    }

    /// 1, 2, 3 and 57 clusters: the clustered SE is statsmodels' CR0 from two clusters on;
    /// with one it is not defined (CR0 is 0 there, CR1 divides by zero) and the interval
    /// falls back to the unclustered SE, saying so. CR1 is CR0 times sqrt(G/(G-1)), the
    /// correction evalr does not apply.
    #[test]
    fn few_clusters_match_statsmodels_and_one_cluster_falls_back_to_unclustered() {
        let reference: SmallClustersReference = serde_json::from_str(include_str!(
            "../../tests/fixtures/small_clusters_reference.json"
        ))
        .expect("tests/fixtures/small_clusters_reference.json is valid");
        let counts: Vec<u64> = reference.cases.iter().map(|c| c.clusters).collect();
        assert_eq!(counts, [1, 2, 3, 57]);
        for case in reference.cases {
            let got = clustered_mean(&sums(case.rows.iter().copied()));
            let name = &case.name;
            assert_eq!(got.clusters, case.clusters, "{name}");
            assert!(close(got.value, case.mean, 1e-12), "{name}: {got:?}");
            assert!(close(got.se, case.se_hc0, 1e-12), "{name}: {got:?}");
            assert!(close(got.ci95[0], case.ci95[0], 1e-12), "{name}: {got:?}");
            assert!(close(got.ci95[1], case.ci95[1], 1e-12), "{name}: {got:?}");
            if case.clusters == 1 {
                assert_eq!(got.se_clustered, None, "{name}");
                assert!(close(case.se_cr0, 0.0, 1e-12) && case.se_cr1.is_none());
                assert_eq!(got.se_used(), got.se);
                assert_eq!(got.se_method, "unclustered (1 subject)");
            } else {
                let se_clustered = got.se_clustered.expect("two clusters or more");
                assert!(close(se_clustered, case.se_cr0, 1e-12), "{name}: {got:?}");
                let g = case.clusters as f64;
                let cr1 = case.se_cr1.expect("CR1 is defined from two clusters");
                assert!(close(cr1, se_clustered * (g / (g - 1.0)).sqrt(), 1e-12));
                assert_eq!(
                    got.se_method,
                    format!("clustered ({} subjects)", case.clusters)
                );
            }
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    // Reference values: tests/fixtures/stats_reference.py and its JSON (statsmodels, scipy).
    #[test]
    fn wilson_matches_statsmodels() {
        for (s, n, lo, hi) in crate::score::reference::reference().wilson {
            let [l, h] = wilson_interval(s, n, 0.95);
            assert!(close(l, lo, 1e-9) && close(h, hi, 1e-9), "{s}/{n}: {l} {h}");
        }
    }

    #[test]
    fn mcnemar_matches_statsmodels() {
        for (b, c, p) in crate::score::reference::reference().mcnemar {
            let got = mcnemar_exact(b, c);
            assert!(close(got, p, 1e-12), "b={b} c={c}: {got} vs {p}");
        }
    }

    #[test]
    fn percentiles_match_numpy() {
        let case = crate::score::reference::reference().percentiles;
        let got = percentiles(&case.values).expect("non-empty");
        assert!(close(got.p50, case.p50, 1e-9), "{got:?}");
        assert!(close(got.p90, case.p90, 1e-9), "{got:?}");
        assert!(close(got.p99, case.p99, 1e-9), "{got:?}");
    }

    #[test]
    fn standard_error_of_a_proportion() {
        assert!(close(
            proportion_se(30, 40),
            (0.75f64 * 0.25 / 40.0).sqrt(),
            1e-15
        ));
        assert_eq!(proportion_se(0, 0), 0.0);
    }

    #[test]
    fn macro_average_is_the_mean_of_group_accuracies() {
        let estimate = macro_average(&[(9, 10), (1, 2), (0, 0)]);
        assert!(close(estimate.value, 0.7, 1e-15));
        let se = ((0.9 * 0.1 / 10.0) + (0.5 * 0.5 / 2.0f64)).sqrt() / 2.0;
        assert!(close(estimate.se, se, 1e-15));
        assert_eq!(estimate.n, 12);
        assert!(estimate.ci95[0] < 0.7 && estimate.ci95[1] > 0.7);
    }

    #[test]
    fn bootstrap_of_identical_runs_is_zero() {
        let a = [true, false, true, true];
        assert_eq!(paired_bootstrap(&a, &a, 1000, 1), [0.0, 0.0]);
        assert_eq!(paired_bootstrap(&[], &[], 1000, 1), [0.0, 0.0]);
    }

    #[test]
    fn bootstrap_matches_index_resampling() {
        // The binomial shortcut against the textbook loop (resample row indices), both at
        // 20,000 resamples: the bounds agree to within Monte Carlo error.
        let a: Vec<bool> = (0..120).map(|i| i % 3 != 0).collect();
        let b: Vec<bool> = (0..120).map(|i| i % 4 != 0).collect();
        let fast = paired_bootstrap(&a, &b, 20_000, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut diffs: Vec<f64> = (0..20_000)
            .map(|_| {
                (0..120)
                    .map(|_| {
                        let i = rng.random_range(0..120);
                        f64::from(u8::from(b[i])) - f64::from(u8::from(a[i]))
                    })
                    .sum::<f64>()
                    / 120.0
            })
            .collect();
        diffs.sort_by(f64::total_cmp);
        let slow = [
            percentile_sorted(&diffs, 2.5),
            percentile_sorted(&diffs, 97.5),
        ];
        assert!(close(fast[0], slow[0], 0.0101), "{fast:?} vs {slow:?}");
        assert!(close(fast[1], slow[1], 0.0101), "{fast:?} vs {slow:?}");
    }

    #[test]
    fn bootstrap_is_seeded_and_near_the_normal_interval() {
        // 200 pairs: 30 right only in B, 10 right only in A, the rest agree.
        let mut a = vec![true; 200];
        let mut b = vec![true; 200];
        a[..30].fill(false);
        b[30..40].fill(false);
        let first = paired_bootstrap(&a, &b, 4000, 7);
        assert_eq!(first, paired_bootstrap(&a, &b, 4000, 7));
        // Analytic SE of a paired difference: sqrt((b + c - (b - c)^2 / n) / n^2).
        let se = ((40.0 - 400.0 / 200.0) / (200.0f64 * 200.0)).sqrt();
        let (lo, hi) = (0.1 - 1.96 * se, 0.1 + 1.96 * se);
        assert!(close(first[0], lo, 0.01), "{first:?} vs {lo}");
        assert!(close(first[1], hi, 0.01), "{first:?} vs {hi}");
    }
}
