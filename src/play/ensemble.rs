//! Choice-shuffle ensembles and repeats: a row is played `repeats` times, each repeat showing
//! the row's choices in its own order; each repeat's answer is mapped back to the dataset's
//! order and the votes are reduced to the row's answer.
//!
//! Any program whose answer `select` is over the row's choices (letters, numbers or the choice
//! texts, one option per choice, in the order the choices are shown) can be ensembled without
//! editing it: the program sees a row whose `choices` (and `correct_answer`) are permuted.
//!
//! Every finished repeat is appended to `repeats.jsonl` at once, so a resumed run never plays a
//! finished repeat again; the row's line in `outputs.jsonl` is written when all its repeats are
//! done.
//!
//! Majority ties: among the tied choices, the one with the highest summed probability over the
//! repeats that voted for them (when every such repeat measured probabilities), then the one
//! voted for by the earliest repeat. Repeat 0 is the dataset's own order under `plain-hunt`, so
//! a tie without probabilities goes the way the unshuffled prompt went.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::failure::RowFailure;
use super::row::{RowContext, input_context, play_program};
use crate::backend::Usage;
use crate::dataset::Row;
use crate::dataset::derived_seed;
use crate::program::{Captures, EnsembleSpec, Reduce, Shuffle};
use crate::results::{
    AnswerSelect, CallRecord, EnsembleRecord, FinishedRow, Outcome, OutputRecord, REPEATS_FILE,
    RepeatJournal, RepeatLine, RepeatRecord, ResultsError,
};

/// What an ensembled run does with each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsemblePlan {
    pub repeats: u32,
    pub shuffle: Shuffle,
    pub reduce: Reduce,
    /// Seeds `random` shuffles (with the row id and the repeat).
    pub seed: u64,
}

impl EnsemblePlan {
    /// The plan from the flags over the program's front matter; `None` when neither asks for
    /// more than one plain play of each row.
    pub fn resolve(
        program: Option<&EnsembleSpec>,
        repeats: Option<u32>,
        shuffle: Option<Shuffle>,
        reduce: Option<Reduce>,
        seed: u64,
    ) -> Result<Option<EnsemblePlan>, String> {
        let program = program.copied().unwrap_or_default();
        let repeats = repeats.or(program.repeats);
        let shuffle = shuffle.or(program.shuffle);
        let reduce = reduce.or(program.reduce);
        if repeats.is_none() && shuffle.is_none() && reduce.is_none() {
            return Ok(None);
        }
        let repeats = repeats.unwrap_or(match shuffle {
            Some(Shuffle::PlainHunt | Shuffle::Random) => 5,
            _ => 1,
        });
        if repeats == 0 {
            return Err("--repeats must be at least 1".into());
        }
        Ok(Some(EnsemblePlan {
            repeats,
            shuffle: shuffle.unwrap_or(Shuffle::None),
            reduce: reduce.unwrap_or(Reduce::Majority),
            seed,
        }))
    }

    /// The order repeat `repeat` shows `n` choices in: `permutation[i]` is the dataset index of
    /// the choice shown at position `i`.
    pub fn permutation(&self, row_id: &str, n: usize, repeat: u32) -> Vec<usize> {
        match self.shuffle {
            Shuffle::None => (0..n).collect(),
            Shuffle::PlainHunt => plain_hunt(n, repeat as usize),
            Shuffle::Random => {
                let mut order: Vec<usize> = (0..n).collect();
                let seed = derived_seed(self.seed, &format!("{row_id}#repeat {repeat}"));
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                order
            }
        }
    }
}

/// Row `step` of the plain hunt on `n` bells: start in order, then alternately swap the pairs
/// (0,1)(2,3).. and (1,2)(3,4)..; after `2n` changes (n > 2) the rows come round again.
pub fn plain_hunt(n: usize, step: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if n < 2 {
        return order;
    }
    // The sequence is periodic: no need to apply more changes than one full cycle.
    let period = if n == 2 { 2 } else { 2 * n };
    for change in 0..step % period {
        let first = change % 2;
        let mut i = first;
        while i + 1 < n {
            order.swap(i, i + 1);
            i += 2;
        }
    }
    order
}

/// The row as repeat `permutation` shows it: choices reordered, `correct_answer` following its
/// choice. Everything else (id, question, extra fields) is unchanged.
pub fn permuted_row(row: &Row, permutation: &[usize]) -> Row {
    let mut shown = row.clone();
    shown.choices = permutation
        .iter()
        .map(|&i| row.choices[i].clone())
        .collect();
    shown.correct_answer = row
        .correct_answer
        .and_then(|c| permutation.iter().position(|&i| i == c));
    shown
}

/// Why an ensemble's journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// The repeats already finished could not be read back (resume).
    #[error("{REPEATS_FILE}: {source}")]
    Finished {
        folder: std::path::PathBuf,
        source: ResultsError,
    },
    /// `repeats.jsonl` could not be opened for appending.
    #[error(transparent)]
    Journal(ResultsError),
}

/// Repeats already finished in a run folder, by row id (for resume).
pub fn finished_repeats(folder: &Path) -> Result<HashMap<String, Vec<RepeatLine>>, EnsembleError> {
    crate::results::finished_repeats(folder).map_err(|source| EnsembleError::Finished {
        folder: folder.to_path_buf(),
        source,
    })
}

/// The answer select a mapped-back answer index stands for.
fn answer_select(answer: Option<usize>) -> AnswerSelect {
    answer.map_or(AnswerSelect::Unmatched, AnswerSelect::Chosen)
}

/// How an ensembled row ended, before it becomes the row's record.
struct Ending {
    captures: Captures,
    answer: AnswerSelect,
    refused: bool,
    decision: Decision,
}

/// Plays rows as ensembles and journals their repeats.
pub struct EnsembleRunner {
    pub plan: EnsemblePlan,
    /// `repeats.jsonl`, appended by rows in flight.
    journal: RepeatJournal,
    /// Repeats finished before a resume, taken by their row when it runs.
    finished: Mutex<HashMap<String, Vec<RepeatLine>>>,
}

impl EnsembleRunner {
    /// The runner of a run folder: its repeats journal opened, the finished repeats read.
    pub fn open(plan: EnsemblePlan, folder: &Path) -> Result<EnsembleRunner, EnsembleError> {
        let finished = finished_repeats(folder)?;
        Ok(EnsembleRunner {
            plan,
            journal: RepeatJournal::open(folder).map_err(EnsembleError::Journal)?,
            finished: Mutex::new(finished),
        })
    }

    fn journal(&self, repeat: &RepeatLine) -> Result<(), RowFailure> {
        self.journal
            .append(repeat)
            .map_err(|e| RowFailure::Ensemble {
                id: repeat.id.clone(),
                message: format!("cannot journal repeat {}: {e}", repeat.record.repeat),
            })
    }

    /// Runs every repeat of `row` not finished yet (in order), then reduces the votes.
    pub async fn run_row(
        &self,
        ctx: &RowContext,
        row: &Row,
        examples: &[&Row],
    ) -> Result<OutputRecord, RowFailure> {
        // A row missing a required input fails before any repeat is sent.
        input_context(ctx, row, examples)?;
        let started = Instant::now();
        let mut done: HashMap<u32, RepeatLine> = self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&row.id)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.record.repeat, r))
            .collect();
        let mut repeats: Vec<RepeatLine> = Vec::new();
        let mut answer_labels: Option<Vec<String>> = None;
        for repeat in 0..self.plan.repeats {
            if let Some(finished) = done.remove(&repeat) {
                repeats.push(finished);
                continue;
            }
            let permutation = self.plan.permutation(&row.id, row.choices.len(), repeat);
            let shown = permuted_row(row, &permutation);
            let context = input_context(ctx, &shown, examples)?;
            let played = play_program(ctx, &context, repeat).await?;
            if played.refused {
                // A refusal refuses the row: the remaining repeats would send the same content.
                return Ok(self.refused_record(ctx, row, repeats, played.calls, started));
            }
            let options = played
                .answer_options
                .clone()
                .ok_or_else(|| RowFailure::Ensemble {
                    id: row.id.clone(),
                    message: format!(
                        "the program made no answer select `{}`, so there is nothing to vote on",
                        ctx.program.file.answer_capture
                    ),
                })?;
            if options.len() != row.choices.len() {
                return Err(RowFailure::Ensemble {
                    id: row.id.clone(),
                    message: format!(
                        "the answer select `{}` has {} options but the row has {} choices; an ensemble needs one option per choice, in the order the choices are shown",
                        ctx.program.file.answer_capture,
                        options.len(),
                        row.choices.len()
                    ),
                });
            }
            if answer_labels.is_none() {
                answer_labels = Some(labels_in_dataset_order(&options, &shown, &permutation));
            }
            let chosen = match played.answer {
                AnswerSelect::Chosen(index) => Some(index),
                _ => None,
            };
            let answer = chosen.map(|i| permutation[i]);
            let option_probs = played
                .calls
                .iter()
                .rev()
                .find(|c| c.capture == ctx.program.file.answer_capture)
                .and_then(|c| c.option_probs.as_ref())
                .map(|probs| {
                    let mut mapped = vec![0.0; probs.len()];
                    for (shown_at, p) in probs.iter().enumerate() {
                        if let Some(&original) = permutation.get(shown_at) {
                            mapped[original] = *p;
                        }
                    }
                    mapped
                });
            let mut usage = Usage::default();
            for call in &played.calls {
                usage.add(call.usage);
            }
            let journaled = RepeatLine {
                id: row.id.clone(),
                record: RepeatRecord {
                    repeat,
                    outcome: Outcome::decide(false, answer_select(answer), row.correct_answer),
                    permutation,
                    chosen,
                    answer,
                    option_probs,
                    captures: played.captures,
                    usage,
                    requests: played.calls.iter().map(|c| c.attempts).sum(),
                    cached: !played.calls.is_empty() && played.calls.iter().all(|c| c.cached),
                },
                calls: played.calls,
            };
            self.journal(&journaled)?;
            repeats.push(journaled);
        }
        let labels = answer_labels.unwrap_or_else(|| {
            // Every repeat came from the journal: the labels of the first one's options.
            repeats
                .first()
                .and_then(|r| {
                    r.calls
                        .iter()
                        .rev()
                        .find(|c| c.capture == ctx.program.file.answer_capture)
                })
                .and_then(|c| c.options.clone())
                .map(|options| {
                    let permutation = &repeats[0].record.permutation;
                    labels_in_dataset_order(&options, &permuted_row(row, permutation), permutation)
                })
                .unwrap_or_else(|| row.choices.clone())
        });
        Ok(self.reduced_record(ctx, row, repeats, &labels, started))
    }

    fn reduced_record(
        &self,
        ctx: &RowContext,
        row: &Row,
        repeats: Vec<RepeatLine>,
        labels: &[String],
        started: Instant,
    ) -> OutputRecord {
        let records: Vec<RepeatRecord> = repeats.iter().map(|r| r.record.clone()).collect();
        let decision = reduce(self.plan.reduce, row, &records);
        // The captures of the first repeat that gave the row's answer, so that an explanation
        // shown with the row argues for the answer recorded with it; the answer capture holds
        // the winning choice's label in the dataset's order.
        let mut captures = decision
            .answer
            .and_then(|a| records.iter().find(|r| r.answer == Some(a)))
            .or(records.first())
            .map(|r| r.captures.clone())
            .unwrap_or_default();
        let answer_capture = ctx.program.file.answer_capture.clone();
        if let Some(label) = decision.answer.and_then(|index| labels.get(index)) {
            captures.insert(
                answer_capture.clone(),
                serde_json::Value::String(label.clone()),
            );
        }
        let calls = repeats.into_iter().flat_map(|r| r.calls).collect();
        let answer = answer_select(decision.answer);
        let ending = Ending {
            captures,
            answer,
            refused: false,
            decision,
        };
        self.record(ctx, row, ending, records, calls, started)
    }

    fn refused_record(
        &self,
        ctx: &RowContext,
        row: &Row,
        repeats: Vec<RepeatLine>,
        last_calls: Vec<CallRecord>,
        started: Instant,
    ) -> OutputRecord {
        let records: Vec<RepeatRecord> = repeats.iter().map(|r| r.record.clone()).collect();
        let mut calls: Vec<CallRecord> = repeats.into_iter().flat_map(|r| r.calls).collect();
        calls.extend(last_calls);
        let decision = Decision {
            answer: None,
            votes: vec![0; row.choices.len()],
            option_probs: vec![0.0; row.choices.len()],
            tie_break: None,
        };
        let ending = Ending {
            captures: Captures::new(),
            answer: AnswerSelect::None,
            refused: true,
            decision,
        };
        self.record(ctx, row, ending, records, calls, started)
    }

    /// The row's record: how it ended, the repeats' records, and every call of every repeat.
    fn record(
        &self,
        ctx: &RowContext,
        row: &Row,
        ending: Ending,
        records: Vec<RepeatRecord>,
        calls: Vec<CallRecord>,
        started: Instant,
    ) -> OutputRecord {
        let Ending {
            captures,
            answer,
            refused,
            decision,
        } = ending;
        let mut record = OutputRecord::from_finished(FinishedRow {
            row: row.clone(),
            program: ctx.program.file.name.clone(),
            captures,
            answer_capture: ctx.program.file.answer_capture.clone(),
            answer,
            refused,
            calls,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            model: ctx.backend.identity(),
            batch: false,
        });
        record.ensemble = Some(EnsembleRecord {
            shuffle: self.plan.shuffle,
            reduce: self.plan.reduce,
            votes: decision.votes,
            option_probs: decision.option_probs,
            tie_break: decision.tie_break,
            repeats: records,
        });
        record
    }
}

/// The answer option that names each choice in dataset order. Options that are the shown
/// choices' texts name them by text; otherwise options are positional labels (letters,
/// numbers), and the label of choice `j` is the option at position `j` of an unpermuted prompt.
fn labels_in_dataset_order(options: &[String], shown: &Row, permutation: &[usize]) -> Vec<String> {
    if options == shown.choices.as_slice() {
        let mut labels = vec![String::new(); options.len()];
        for (position, &original) in permutation.iter().enumerate() {
            labels[original] = options[position].clone();
        }
        labels
    } else {
        options.to_vec()
    }
}

/// The row's answer from its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The dataset index of the answer; `None` when no repeat gave a usable answer.
    pub answer: Option<usize>,
    pub votes: Vec<u32>,
    pub option_probs: Vec<f64>,
    pub tie_break: Option<String>,
}

/// Reduces the repeats of one row (see the module documentation for the tie rule).
pub fn reduce(reducer: Reduce, row: &Row, repeats: &[RepeatRecord]) -> Decision {
    let n = row.choices.len();
    let mut votes = vec![0u32; n];
    for answer in repeats.iter().filter_map(|r| r.answer) {
        if answer < n {
            votes[answer] += 1;
        }
    }
    let cast: u32 = votes.iter().sum();
    let shares: Vec<f64> = votes
        .iter()
        .map(|&v| {
            if cast == 0 {
                0.0
            } else {
                v as f64 / cast as f64
            }
        })
        .collect();
    let (majority, tie_break) = majority_vote(&votes, repeats);
    let mut decision = Decision {
        answer: majority,
        votes,
        option_probs: shares,
        tie_break,
    };
    match reducer {
        Reduce::Majority | Reduce::Mode => {}
        Reduce::Mean => {
            let measured: Vec<&Vec<f64>> = repeats
                .iter()
                .filter_map(|r| r.option_probs.as_ref())
                .filter(|p| p.len() == n)
                .collect();
            if !measured.is_empty() {
                let mean: Vec<f64> = (0..n)
                    .map(|j| measured.iter().map(|p| p[j]).sum::<f64>() / measured.len() as f64)
                    .collect();
                let best = mean.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let tied: Vec<usize> = (0..n).filter(|&j| mean[j] == best).collect();
                decision.answer = earliest_voted(&tied, repeats).or(tied.first().copied());
                decision.tie_break = (tied.len() > 1).then(|| "earliest repeat".to_string());
                decision.option_probs = mean;
            }
        }
        Reduce::PassAtK => {
            if let Some(correct) = row.correct_answer
                && repeats.iter().any(|r| r.answer == Some(correct))
            {
                decision.answer = Some(correct);
                decision.tie_break = None;
            }
        }
        Reduce::AllCorrect => {
            if let Some(correct) = row.correct_answer
                && let Some(failed) = repeats.iter().find(|r| r.answer != Some(correct))
            {
                // The first repeat that was not correct decides: its wrong answer, or none.
                decision.answer = failed.answer;
                decision.tie_break = None;
            }
        }
    }
    decision
}

fn majority_vote(votes: &[u32], repeats: &[RepeatRecord]) -> (Option<usize>, Option<String>) {
    let best = votes.iter().copied().max().unwrap_or(0);
    if best == 0 {
        return (None, None);
    }
    let tied: Vec<usize> = (0..votes.len()).filter(|&j| votes[j] == best).collect();
    if tied.len() == 1 {
        return (Some(tied[0]), None);
    }
    // Summed probability of each tied choice over the repeats that voted for a tied choice,
    // when all of those repeats measured probabilities.
    let voters: Vec<&RepeatRecord> = repeats
        .iter()
        .filter(|r| r.answer.is_some_and(|a| tied.contains(&a)))
        .collect();
    if voters.iter().all(|r| r.option_probs.is_some()) {
        let mass = |j: usize| -> f64 {
            voters
                .iter()
                .filter_map(|r| r.option_probs.as_ref()?.get(j).copied())
                .sum()
        };
        let top = tied
            .iter()
            .map(|&j| mass(j))
            .fold(f64::NEG_INFINITY, f64::max);
        let still: Vec<usize> = tied.iter().copied().filter(|&j| mass(j) == top).collect();
        if still.len() == 1 {
            return (Some(still[0]), Some("probability".into()));
        }
        return (
            earliest_voted(&still, repeats),
            Some("earliest repeat".into()),
        );
    }
    (
        earliest_voted(&tied, repeats),
        Some("earliest repeat".into()),
    )
}

/// Of `choices`, the one voted for by the earliest repeat.
fn earliest_voted(choices: &[usize], repeats: &[RepeatRecord]) -> Option<usize> {
    let mut ordered: Vec<&RepeatRecord> = repeats.iter().collect();
    ordered.sort_by_key(|r| r.repeat);
    ordered
        .iter()
        .filter_map(|r| r.answer)
        .find(|a| choices.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize, correct: usize) -> Row {
        Row {
            id: "r".into(),
            dataset: None,
            subject: None,
            question: "q".into(),
            choices: (0..n).map(|i| format!("c{i}")).collect(),
            correct_answer: Some(correct),
            extra: Default::default(),
        }
    }

    fn repeat(index: u32, answer: Option<usize>, probs: Option<Vec<f64>>) -> RepeatRecord {
        RepeatRecord {
            repeat: index,
            permutation: vec![],
            chosen: answer,
            answer,
            option_probs: probs,
            outcome: Outcome::Wrong,
            captures: Default::default(),
            usage: Usage::default(),
            requests: 1,
            cached: false,
        }
    }

    #[test]
    fn plain_hunt_on_four_matches_change_ringing() {
        // The plain hunt on four bells, as rung: 1234 2143 2413 4231 4321 3412 3142 1324 1234.
        let rows: Vec<String> = (0..9)
            .map(|s| {
                plain_hunt(4, s)
                    .iter()
                    .map(|i| char::from(b'1' + *i as u8))
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                "1234", "2143", "2413", "4231", "4321", "3412", "3142", "1324", "1234"
            ]
        );
        // Every choice visits every position within one cycle.
        for choice in 0..4 {
            let positions: std::collections::HashSet<usize> = (0..8)
                .map(|s| plain_hunt(4, s).iter().position(|&c| c == choice).unwrap())
                .collect();
            assert_eq!(positions.len(), 4);
        }
        assert_eq!(plain_hunt(1, 3), vec![0]);
        assert_eq!(plain_hunt(2, 1), vec![1, 0]);
    }

    #[test]
    fn permuted_row_moves_the_correct_answer_with_its_choice() {
        let shown = permuted_row(&row(4, 1), &[2, 3, 1, 0]);
        assert_eq!(shown.choices, vec!["c2", "c3", "c1", "c0"]);
        assert_eq!(shown.correct_answer, Some(2));
    }

    #[test]
    fn random_shuffles_are_seeded_permutations() {
        let plan = EnsemblePlan {
            repeats: 5,
            shuffle: Shuffle::Random,
            reduce: Reduce::Majority,
            seed: 7,
        };
        let a = plan.permutation("row-1", 4, 2);
        assert_eq!(a, plan.permutation("row-1", 4, 2));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        let distinct: std::collections::HashSet<Vec<usize>> =
            (0..10).map(|r| plan.permutation("row-1", 4, r)).collect();
        assert!(distinct.len() > 3, "{distinct:?}");
    }

    #[test]
    fn majority_with_probability_then_earliest_repeat_ties() {
        let r = row(4, 0);
        // Clear majority; an unparsed repeat abstains.
        let d = reduce(
            Reduce::Majority,
            &r,
            &[
                repeat(0, Some(2), None),
                repeat(1, Some(2), None),
                repeat(2, Some(1), None),
                repeat(3, None, None),
            ],
        );
        assert_eq!(d.answer, Some(2));
        assert_eq!(d.votes, vec![0, 1, 2, 0]);
        assert_eq!(d.option_probs, vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 0.0]);
        assert_eq!(d.tie_break, None);
        // A tie without probabilities goes to the earliest repeat's choice.
        let d = reduce(
            Reduce::Majority,
            &r,
            &[repeat(0, Some(3), None), repeat(1, Some(1), None)],
        );
        assert_eq!(
            (d.answer, d.tie_break.as_deref()),
            (Some(3), Some("earliest repeat"))
        );
        // With probabilities, the summed probability decides.
        let d = reduce(
            Reduce::Majority,
            &r,
            &[
                repeat(0, Some(3), Some(vec![0.0, 0.3, 0.0, 0.7])),
                repeat(1, Some(1), Some(vec![0.0, 0.9, 0.0, 0.1])),
            ],
        );
        assert_eq!(
            (d.answer, d.tie_break.as_deref()),
            (Some(1), Some("probability"))
        );
        // No usable vote at all: no answer.
        let d = reduce(Reduce::Majority, &r, &[repeat(0, None, None)]);
        assert_eq!(d.answer, None);
    }

    #[test]
    fn mean_pass_at_k_and_all_correct() {
        let r = row(3, 0);
        let repeats = [
            repeat(0, Some(1), Some(vec![0.4, 0.6, 0.0])),
            repeat(1, Some(1), Some(vec![0.45, 0.55, 0.0])),
            repeat(2, Some(0), Some(vec![0.9, 0.1, 0.0])),
        ];
        let d = reduce(Reduce::Mean, &r, &repeats);
        assert_eq!(d.answer, Some(0));
        assert!((d.option_probs[0] - 1.75 / 3.0).abs() < 1e-12);
        assert_eq!(reduce(Reduce::Majority, &r, &repeats).answer, Some(1));
        assert_eq!(reduce(Reduce::PassAtK, &r, &repeats).answer, Some(0));
        assert_eq!(reduce(Reduce::AllCorrect, &r, &repeats).answer, Some(1));
        let all_right = [repeat(0, Some(0), None), repeat(1, Some(0), None)];
        assert_eq!(reduce(Reduce::AllCorrect, &r, &all_right).answer, Some(0));
        let none_right = [repeat(0, Some(2), None), repeat(1, None, None)];
        assert_eq!(reduce(Reduce::PassAtK, &r, &none_right).answer, Some(2));
        assert_eq!(reduce(Reduce::AllCorrect, &r, &none_right).answer, Some(2));
    }

    #[test]
    fn plan_resolves_flags_over_front_matter() {
        assert_eq!(EnsemblePlan::resolve(None, None, None, None, 0), Ok(None));
        let spec = EnsembleSpec {
            repeats: Some(5),
            shuffle: Some(Shuffle::PlainHunt),
            reduce: None,
        };
        let plan = EnsemblePlan::resolve(Some(&spec), Some(3), None, None, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (plan.repeats, plan.shuffle, plan.reduce),
            (3, Shuffle::PlainHunt, Reduce::Majority)
        );
        assert!(EnsemblePlan::resolve(None, Some(0), None, None, 0).is_err());
    }
}
