//! Which rows a run's page holds. A page of a million rows would be hundreds of megabytes that
//! no browser opens comfortably, so a page holds at most a bounded number of rows: all of them
//! when the run is smaller, otherwise the rows a reader opens a report for (the wrong,
//! unparsed and refused ones, the ones that failed for good) and an even sample of the others.
//! The figures of the page always count every row; every row stays in `outputs.parquet` and
//! `outputs.jsonl`, which the page names. See docs/html-report.md.

use serde::Serialize;

use crate::results::Outcome;
use crate::score::summary::RowCounts;

/// Rows a page holds by default: a whole MMLU test run (14,042 rows) fits, and the page stays
/// around 15 MB.
pub const DEFAULT_PAGE_ROWS: u64 = 20_000;

/// The rows of one kind a page holds: `keep` of `count`, evenly spread over their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    pub keep: u64,
    pub count: u64,
    /// Rows of this kind met so far.
    #[serde(skip)]
    seen: u64,
}

impl Share {
    fn new(keep: u64, count: u64) -> Share {
        Share {
            keep: keep.min(count),
            count,
            seen: 0,
        }
    }

    /// Whether the next row of this kind is held: the `k`-th of `count` is, when
    /// `floor((k + 1) * keep / count)` steps up, which holds exactly `keep` rows evenly
    /// spread (all of them when `keep == count`). Deterministic: the same folder gives the
    /// same page.
    fn take(&mut self) -> bool {
        let k = self.seen;
        self.seen += 1;
        if self.keep >= self.count {
            return k < self.keep;
        }
        let (keep, count) = (u128::from(self.keep), u128::from(self.count));
        let k = u128::from(k);
        (k + 1) * keep / count > k * keep / count
    }
}

/// The page's plan, made from the summary's counts before the rows are read (so the page can
/// say what it holds above the rows, and the rows can stream into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageRows {
    /// The most rows the page holds.
    pub limit: u64,
    /// Rows of the run: output rows and the lines of `errors.jsonl`.
    pub total: u64,
    /// Whether the page holds every row (then the shares below hold everything).
    pub whole: bool,
    /// Wrong, unparsed and refused rows.
    pub problems: Share,
    /// Rows that failed for good (`errors.jsonl`).
    pub failed: Share,
    /// Correct and unscored rows.
    pub others: Share,
    /// Rows held so far; never more than `limit`.
    #[serde(skip)]
    held: u64,
}

impl PageRows {
    /// Shares for a run with these counts: failed rows up to a quarter of the page, the wrong,
    /// unparsed and refused rows up to what is left but a quarter, and the others fill the
    /// rest (a quarter at least when there are enough).
    pub fn plan(rows: &RowCounts, limit: u64) -> PageRows {
        let problems = rows.wrong + rows.unparsed + rows.refused;
        let others = rows.correct + rows.unscored;
        let failed = rows.failed;
        let total = problems + others + failed;
        if total <= limit {
            return PageRows {
                limit,
                total,
                whole: true,
                problems: Share::new(problems, problems),
                failed: Share::new(failed, failed),
                others: Share::new(others, others),
                held: 0,
            };
        }
        let quarter = limit / 4;
        let failed_keep = failed.min(quarter);
        let problems_keep = problems.min(limit - failed_keep - others.min(quarter));
        let others_keep = others.min(limit - failed_keep - problems_keep);
        PageRows {
            limit,
            total,
            whole: false,
            problems: Share::new(problems_keep, problems),
            failed: Share::new(failed_keep, failed),
            others: Share::new(others_keep, others),
            held: 0,
        }
    }

    /// Whether the next output row, of this outcome, goes on the page.
    pub fn take_output(&mut self, outcome: Outcome) -> bool {
        let share = match outcome {
            Outcome::Wrong | Outcome::Unparsed | Outcome::Refused => &mut self.problems,
            Outcome::Correct | Outcome::Unscored => &mut self.others,
        };
        let taken = share.take() || self.whole;
        self.hold(taken)
    }

    /// Whether the next failed row goes on the page.
    pub fn take_failed(&mut self) -> bool {
        let taken = self.failed.take() || self.whole;
        self.hold(taken)
    }

    /// The hard bound, should the folder hold other rows than the counts said (a summary of
    /// an earlier state of the folder).
    fn hold(&mut self, taken: bool) -> bool {
        let held = taken && self.held < self.limit;
        self.held += u64::from(held);
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(correct: u64, wrong: u64, unscored: u64, failed: u64) -> RowCounts {
        RowCounts {
            outputs: correct + wrong + unscored,
            scored: correct + wrong,
            correct,
            wrong,
            unparsed: 0,
            refused: 0,
            unscored,
            failed,
            failed_by_kind: Default::default(),
            dataset_rows: None,
            torn_last_line: false,
        }
    }

    #[test]
    fn a_share_holds_exactly_keep_rows_evenly_spread() {
        let mut share = Share::new(3, 10);
        let held: Vec<u64> = (0..10).filter(|_| share.take()).collect();
        assert_eq!(held, vec![3, 6, 9]);
        let mut share = Share::new(250, 1_000_000);
        assert_eq!((0..1_000_000).filter(|_| share.take()).count(), 250);
        let mut all = Share::new(5, 5);
        assert_eq!((0..5).filter(|_| all.take()).count(), 5);
    }

    #[test]
    fn a_small_run_is_held_whole() {
        let plan = PageRows::plan(&counts(30, 10, 0, 1), 41);
        assert!(plan.whole);
        assert_eq!(
            (plan.problems.keep, plan.others.keep, plan.failed.keep),
            (10, 30, 1)
        );
    }

    #[test]
    fn a_large_run_holds_its_failures_first_and_a_sample_of_the_rest() {
        // A million rows, 7% wrong, 100 failed: every failure, every wrong row up to what
        // leaves a quarter for the sample.
        let mut plan = PageRows::plan(&counts(930_000, 70_000, 0, 100), 20_000);
        assert!(!plan.whole);
        assert_eq!(plan.failed.keep, 100);
        assert_eq!(plan.problems.keep, 14_900);
        assert_eq!(plan.others.keep, 5_000);
        let mut held = 0;
        for i in 0..1_000_000u64 {
            let outcome = if i % 100 < 7 {
                Outcome::Wrong
            } else {
                Outcome::Correct
            };
            held += u64::from(plan.take_output(outcome));
        }
        held += (0..100).filter(|_| plan.take_failed()).count() as u64;
        assert_eq!(held, 20_000);
        // Few wrong rows: all of them, and the sample takes the room left.
        let plan = PageRows::plan(&counts(99_000, 1_000, 0, 0), 20_000);
        assert_eq!((plan.problems.keep, plan.others.keep), (1_000, 19_000));
    }

    #[test]
    fn the_bound_holds_when_the_folder_has_more_rows_than_counted() {
        let mut plan = PageRows::plan(&counts(100, 100, 0, 0), 50);
        let held = (0..1_000)
            .filter(|_| plan.take_output(Outcome::Wrong))
            .count();
        assert_eq!(held, 50);
    }
}
