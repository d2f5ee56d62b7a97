//! `select` by exact log-likelihood, the way lm-evaluation-harness scores multiple choice:
//! every option's full token sequence is scored after the prompt, the best one is chosen, and
//! each option's probability (normalised over the options) is recorded.

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::engine::{Engine, common_prefix, fatal, token_logprob};
use crate::backend::{BackendError, Message, SelectPath, SelectReply, SelectRequest, Usage};

/// Which score picks the option. Both are computed for every call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SelectScore {
    /// Sum of the option's token log-probabilities (lm-evaluation-harness `acc`).
    #[default]
    Sum,
    /// Sum divided by the option's length in bytes (lm-evaluation-harness `acc_norm`), which
    /// stops long options from losing only for being long.
    PerByte,
}

/// The scores of one `select` call.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionScores {
    /// Sum of the log-probabilities of each option's tokens after the prompt.
    pub logprobs: Vec<f64>,
    /// `logprobs[i]` divided by the byte length of option i (at least 1).
    pub logprobs_per_byte: Vec<f64>,
    /// Tokens scored for each option.
    pub option_tokens: Vec<usize>,
    /// Prompt tokens shared by all options (the conditioning context).
    pub prompt_tokens: usize,
}

impl OptionScores {
    pub fn best(&self, by: SelectScore) -> usize {
        let values = match by {
            SelectScore::Sum => &self.logprobs,
            SelectScore::PerByte => &self.logprobs_per_byte,
        };
        argmax(values)
    }
}

/// Index of the largest value; the first one on ties.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Softmax of log-likelihoods: each option's probability among the options (sums to 1).
pub fn softmax(logprobs: &[f64]) -> Vec<f64> {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logprobs.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// Most tokens scored in one decode: every scored token has a logits row of the vocabulary's
/// size (262k floats for Gemma 3), so this bounds memory, not speed.
const MAX_SCORED_TOKENS_PER_BATCH: usize = 256;

impl Engine<'_> {
    pub fn select(
        &mut self,
        request: &SelectRequest,
        by: SelectScore,
    ) -> Result<SelectReply, BackendError> {
        let scores = self.score_options(&request.messages, &request.options)?;
        let chosen = scores.best(by);
        let option_tokens: usize = scores.option_tokens.iter().sum();
        Ok(SelectReply {
            chosen: Some(chosen),
            path: SelectPath::Loglikelihood,
            option_probs: Some(softmax(&scores.logprobs)),
            option_logprobs: Some(scores.logprobs.clone()),
            raw_text: None,
            usage: Usage {
                prompt_tokens: (scores.prompt_tokens + option_tokens) as u64,
                ..Usage::default()
            },
            requests: 1,
        })
    }

    pub fn score_options(
        &mut self,
        messages: &[Message],
        options: &[String],
    ) -> Result<OptionScores, BackendError> {
        if options.is_empty() {
            return Err(BackendError::Fatal(
                "select needs at least one option".into(),
            ));
        }
        let (text, prompt) = self.prompt_tokens(messages)?;
        // Tokenize prompt+option as one text and split off the shared prefix, rather than
        // tokenizing the option alone: "Answer:" + " B" tokenizes as "Answer", ":", " B", and
        // the option's likelihood must be that of the text the model would really see.
        let wholes: Vec<Vec<LlamaToken>> = options
            .iter()
            .map(|option| self.chat.tokenize(self.model, &format!("{text}{option}")))
            .collect();
        let shared = wholes
            .iter()
            .map(|whole| common_prefix(&prompt, whole))
            .min()
            .unwrap_or(0);
        if shared == 0 {
            return Err(BackendError::Fatal(
                "select needs a prompt to condition on, and this one is empty".into(),
            ));
        }
        let longest = wholes.iter().map(Vec::len).max().unwrap_or(0);
        self.check_fits(longest)?;

        // Sequence 0 ends with the last shared token, decoded with its logits: that one row
        // of logits is the distribution of every option's first token.
        let logits_index = self.eval_prompt(&prompt[..shared])?;
        let continuations: Vec<&[LlamaToken]> = wholes.iter().map(|w| &w[shared..]).collect();
        let first = LogSoftmax::new(self.ctx.get_logits_ith(logits_index));
        let mut logprobs: Vec<f64> = continuations
            .iter()
            .map(|c| c.first().map_or(0.0, |t| first.at(*t)))
            .collect();
        self.score_rest(shared, &continuations, &mut logprobs)?;
        let logprobs_per_byte = logprobs
            .iter()
            .zip(options)
            .map(|(lp, option)| lp / option.len().max(1) as f64)
            .collect();
        Ok(OptionScores {
            logprobs,
            logprobs_per_byte,
            option_tokens: continuations.iter().map(|c| c.len()).collect(),
            prompt_tokens: shared,
        })
    }

    /// Adds the log-probabilities of each continuation's tokens after its first. Sequence 0
    /// holds positions `0..position`; options of several tokens are decoded side by side,
    /// each in its own sequence sharing sequence 0's cache (single-token options, such as
    /// letters, need no decoding at all).
    fn score_rest(
        &mut self,
        position: usize,
        continuations: &[&[LlamaToken]],
        logprobs: &mut [f64],
    ) -> Result<(), BackendError> {
        let pending: Vec<usize> = (0..continuations.len())
            .filter(|&i| continuations[i].len() > 1)
            .collect();
        let max_seqs = (self.n_seq as usize).saturating_sub(1).max(1);
        let max_tokens = MAX_SCORED_TOKENS_PER_BATCH.min(self.n_batch as usize);
        let mut start = 0;
        while start < pending.len() {
            // Group options into one batch while they fit.
            let mut end = start;
            let mut tokens = 0;
            while end < pending.len() && end - start < max_seqs {
                let needed = continuations[pending[end]].len() - 1;
                if end > start && tokens + needed > max_tokens {
                    break;
                }
                tokens += needed;
                end += 1;
            }
            if tokens > self.n_batch as usize {
                return Err(BackendError::Fatal(format!(
                    "an option of {tokens} tokens is longer than the local model's batch ({})",
                    self.n_batch
                )));
            }
            self.score_group(position, continuations, &pending[start..end], logprobs)?;
            start = end;
        }
        Ok(())
    }

    fn score_group(
        &mut self,
        position: usize,
        continuations: &[&[LlamaToken]],
        group: &[usize],
        logprobs: &mut [f64],
    ) -> Result<(), BackendError> {
        let total: usize = group.iter().map(|&i| continuations[i].len() - 1).sum();
        let mut batch = LlamaBatch::new(total, 1);
        // Batch index of each input token, per option of the group.
        let mut rows: Vec<Vec<i32>> = Vec::with_capacity(group.len());
        for (j, &i) in group.iter().enumerate() {
            let seq = (j + 1) as i32;
            let continuation = continuations[i];
            self.ctx.kv_cache_seq_rm(seq, None, None).map_err(fatal)?;
            self.ctx
                .kv_cache_seq_cp(0, seq, None, None)
                .map_err(fatal)?;
            // Each token predicts the next one; the option's own last token predicts nothing.
            let mut indices = Vec::with_capacity(continuation.len() - 1);
            for (k, token) in continuation[..continuation.len() - 1].iter().enumerate() {
                indices.push(batch.n_tokens());
                batch
                    .add(*token, (position + k) as i32, &[seq], true)
                    .map_err(fatal)?;
            }
            rows.push(indices);
        }
        let decoded = self.decode(&mut batch);
        if decoded.is_ok() {
            for (j, &i) in group.iter().enumerate() {
                logprobs[i] += continuations[i][1..]
                    .iter()
                    .zip(&rows[j])
                    .map(|(token, &index)| token_logprob(self.ctx.get_logits_ith(index), *token))
                    .sum::<f64>();
            }
        }
        for j in 0..group.len() {
            let _ = self.ctx.kv_cache_seq_rm((j + 1) as i32, None, None);
        }
        decoded
    }
}

/// Log-softmax of one logits row, normaliser computed once for many lookups.
struct LogSoftmax<'a> {
    logits: &'a [f32],
    offset: f64,
}

impl<'a> LogSoftmax<'a> {
    fn new(logits: &'a [f32]) -> LogSoftmax<'a> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        LogSoftmax {
            logits,
            offset: max + sum.ln(),
        }
    }

    fn at(&self, token: LlamaToken) -> f64 {
        self.logits[token.0 as usize] as f64 - self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_log_likelihoods_sums_to_one_and_keeps_ratios() {
        let probs = softmax(&[-1.0, -2.0, -3.0, -1000.0]);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // p0/p1 = e^1
        assert!((probs[0] / probs[1] - std::f64::consts::E).abs() < 1e-9);
        assert!(probs[3] < 1e-300);
    }

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        assert_eq!(argmax(&[-2.0, -1.0, -1.0]), 1);
        assert_eq!(argmax(&[-0.5]), 0);
    }

    #[test]
    fn per_byte_score_can_pick_a_longer_option() {
        let scores = OptionScores {
            logprobs: vec![-4.0, -6.0],
            logprobs_per_byte: vec![-4.0 / 2.0, -6.0 / 12.0],
            option_tokens: vec![1, 3],
            prompt_tokens: 10,
        };
        assert_eq!(scores.best(SelectScore::Sum), 0);
        assert_eq!(scores.best(SelectScore::PerByte), 1);
    }
}
