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
                completion_tokens: 0,
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

        // The last shared token is decoded again with every option, so that its logits (the
        // distribution of each option's first token) come out of the same batch.
        let prefix_len = shared - 1;
        self.eval_prefix(&prompt[..prefix_len])?;
        let last = prompt[prefix_len];
        let continuations: Vec<&[LlamaToken]> = wholes.iter().map(|w| &w[shared..]).collect();
        let logprobs = self.score_continuations(prefix_len, last, &continuations)?;
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

    /// Sum of log-probabilities of each continuation after sequence 0 (which holds positions
    /// `0..position`) and the token `last` at `position`. Options are decoded side by side,
    /// each in its own sequence that shares sequence 0's cache.
    fn score_continuations(
        &mut self,
        position: usize,
        last: LlamaToken,
        continuations: &[&[LlamaToken]],
    ) -> Result<Vec<f64>, BackendError> {
        let mut logprobs = vec![0.0; continuations.len()];
        let max_seqs = (self.n_seq as usize).saturating_sub(1).max(1);
        let max_tokens = MAX_SCORED_TOKENS_PER_BATCH.min(self.n_batch as usize);
        let mut start = 0;
        while start < continuations.len() {
            // Group options into one batch while they fit.
            let mut end = start;
            let mut tokens = 0;
            while end < continuations.len() && end - start < max_seqs {
                let needed = continuations[end].len();
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
            self.score_group(
                position,
                last,
                &continuations[start..end],
                &mut logprobs[start..end],
            )?;
            start = end;
        }
        Ok(logprobs)
    }

    fn score_group(
        &mut self,
        position: usize,
        last: LlamaToken,
        group: &[&[LlamaToken]],
        out: &mut [f64],
    ) -> Result<(), BackendError> {
        let total: usize = group.iter().map(|c| c.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let mut batch = LlamaBatch::new(total, 1);
        // (option within the group, its batch indices in order)
        let mut rows: Vec<Vec<i32>> = Vec::with_capacity(group.len());
        for (j, continuation) in group.iter().enumerate() {
            let seq = (j + 1) as i32;
            let mut indices = Vec::with_capacity(continuation.len());
            if !continuation.is_empty() {
                self.ctx.kv_cache_seq_rm(seq, None, None).map_err(fatal)?;
                self.ctx
                    .kv_cache_seq_cp(0, seq, None, None)
                    .map_err(fatal)?;
                // The token at each position predicts the next one: `last` predicts the
                // option's first token, and the option's own last token predicts nothing.
                let inputs = std::iter::once(last)
                    .chain(continuation[..continuation.len() - 1].iter().copied());
                for (k, token) in inputs.enumerate() {
                    indices.push(batch.n_tokens());
                    batch
                        .add(token, (position + k) as i32, &[seq], true)
                        .map_err(fatal)?;
                }
            }
            rows.push(indices);
        }
        let decoded = self.decode(&mut batch);
        if decoded.is_ok() {
            for (j, continuation) in group.iter().enumerate() {
                out[j] = continuation
                    .iter()
                    .zip(&rows[j])
                    .map(|(token, &index)| token_logprob(self.ctx.get_logits_ith(index), *token))
                    .sum();
            }
        }
        for j in 0..group.len() {
            let _ = self.ctx.kv_cache_seq_rm((j + 1) as i32, None, None);
        }
        decoded
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
