//! The llama.cpp context and its KV cache, owned by the backend's worker thread.
//!
//! Sequence 0 holds the prompt prefix of the last call (`cached`). A new call keeps the
//! tokens it shares with that prefix, removes the rest from the cache and decodes only its
//! own suffix, so rows with the same few-shot examples or system prompt pay for them once.
//! Sequences 1.. are scratch space for `select`: each option continues a copy of sequence 0.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::LocalStats;
use super::chat::ChatFormat;
use crate::backend::{BackendError, Message};

pub struct Engine<'m> {
    pub model: &'m LlamaModel,
    pub ctx: LlamaContext<'m>,
    pub chat: ChatFormat,
    /// Tokens present in sequence 0 at positions `0..cached.len()`.
    cached: Vec<LlamaToken>,
    pub prefix_cache: bool,
    /// Sequences the context was created for (sequence 0 plus scratch sequences).
    pub n_seq: u32,
    pub n_ctx: u32,
    pub n_batch: u32,
    pub stats: Arc<LocalStats>,
}

impl<'m> Engine<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        chat: ChatFormat,
        prefix_cache: bool,
        n_seq: u32,
        stats: Arc<LocalStats>,
    ) -> Engine<'m> {
        let n_ctx = ctx.n_ctx();
        let n_batch = ctx.n_batch();
        Engine {
            model,
            ctx,
            chat,
            cached: Vec::new(),
            prefix_cache,
            n_seq,
            n_ctx,
            n_batch,
            stats,
        }
    }

    /// The conversation's prompt tokens (chat template applied, one BOS).
    pub fn prompt_tokens(
        &self,
        messages: &[Message],
    ) -> Result<(String, Vec<LlamaToken>), BackendError> {
        let text = self
            .chat
            .render(self.model, messages)
            .map_err(BackendError::Fatal)?;
        let tokens = self.chat.tokenize(self.model, &text);
        Ok((text, tokens))
    }

    pub fn check_fits(&self, tokens: usize) -> Result<(), BackendError> {
        if tokens > self.n_ctx as usize {
            return Err(BackendError::Fatal(format!(
                "the prompt needs {tokens} tokens but the local model's context holds {} \
                 (raise it with the context-size option)",
                self.n_ctx
            )));
        }
        Ok(())
    }

    /// Makes sequence 0 hold exactly `tokens` (not empty), decoding only what the cache lacks,
    /// and returns the batch index of the last token's logits. The last token is decoded in
    /// the same batch as the rest of the new tail, with the only logits row asked for: a
    /// separate one-token decode would cost a whole extra pass over the weights per call
    /// (about a tenth of a short prompt's time on a 270M model). When the whole prompt is
    /// cached (the same call again), its last token is decoded again for its logits.
    pub fn eval_prompt(&mut self, tokens: &[LlamaToken]) -> Result<i32, BackendError> {
        let Some(last) = tokens.len().checked_sub(1) else {
            return Err(BackendError::Fatal(
                "cannot evaluate an empty prompt".into(),
            ));
        };
        let mut keep = if self.prefix_cache {
            reusable_prefix(&self.cached, tokens)
        } else {
            0
        };
        if keep < self.cached.len() {
            let removed = self.ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_ok();
            if !removed {
                // A cache that cannot drop a tail (sliding-window layers without the full
                // cache) is rebuilt from scratch.
                let cleared = self.ctx.clear_kv_cache_seq(Some(0), None, None);
                if !matches!(cleared, Ok(true)) {
                    self.ctx.clear_kv_cache();
                }
                keep = 0;
            }
            self.cached.truncate(keep);
        }
        self.stats
            .reused_tokens
            .fetch_add(keep as u64, Ordering::Relaxed);
        let mut position = keep;
        let mut logits_index = 0;
        for chunk in tokens[keep..].chunks(self.n_batch as usize) {
            let mut batch = LlamaBatch::new(chunk.len(), 1);
            for (i, token) in chunk.iter().enumerate() {
                let wanted = position + i == last;
                batch
                    .add(*token, (position + i) as i32, &[0], wanted)
                    .map_err(fatal)?;
                if wanted {
                    logits_index = i as i32;
                }
            }
            self.decode(&mut batch)?;
            self.cached.extend_from_slice(chunk);
            position += chunk.len();
        }
        Ok(logits_index)
    }

    /// Decodes one token at the end of sequence 0 and keeps it in the prefix; its logits are
    /// at batch index 0 afterwards.
    pub fn push_token(&mut self, token: LlamaToken) -> Result<(), BackendError> {
        let mut batch = LlamaBatch::new(1, 1);
        batch
            .add(token, self.cached.len() as i32, &[0], true)
            .map_err(fatal)?;
        self.decode(&mut batch)?;
        self.cached.push(token);
        Ok(())
    }

    pub fn decode(&mut self, batch: &mut LlamaBatch) -> Result<(), BackendError> {
        let n = batch.n_tokens().max(0) as u64;
        if let Err(e) = self.ctx.decode(batch) {
            // The cache may hold part of the batch now: forget what sequence 0 holds.
            self.forget();
            return Err(BackendError::Fatal(format!("llama.cpp decode failed: {e}")));
        }
        self.stats.decoded_tokens.fetch_add(n, Ordering::Relaxed);
        self.stats.decode_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Drops every sequence from the cache (after an error, the cache state is unknown).
    pub fn forget(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    pub fn cached_len(&self) -> usize {
        self.cached.len()
    }
}

pub fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many of `tokens` can stay in the cache that holds `cached`: their common prefix, but
/// never the last token, which must be decoded for its logits.
pub fn reusable_prefix(cached: &[LlamaToken], tokens: &[LlamaToken]) -> usize {
    common_prefix(cached, tokens).min(tokens.len().saturating_sub(1))
}

pub fn fatal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Fatal(format!("llama.cpp: {e}"))
}

/// `log p(token)` from one row of logits (log-softmax at one index), in f64 for a stable sum
/// over a 262k-entry vocabulary.
pub fn token_logprob(logits: &[f32], token: LlamaToken) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    logits[token.0 as usize] as f64 - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&id| LlamaToken(id)).collect()
    }

    #[test]
    fn a_prompt_sharing_a_prefix_keeps_it_in_the_cache() {
        let cached = tokens(&[2, 10, 11, 12, 13]);
        assert_eq!(reusable_prefix(&cached, &tokens(&[2, 10, 11, 20, 21])), 3);
        assert_eq!(reusable_prefix(&cached, &tokens(&[3, 10])), 0);
        assert_eq!(reusable_prefix(&[], &tokens(&[2, 10])), 0);
    }

    #[test]
    fn the_last_prompt_token_is_always_decoded_for_its_logits() {
        let cached = tokens(&[2, 10, 11, 12, 13]);
        // The same prompt again, or one the cache already holds entirely.
        assert_eq!(reusable_prefix(&cached, &cached), 4);
        assert_eq!(reusable_prefix(&cached, &tokens(&[2, 10, 11])), 2);
        assert_eq!(reusable_prefix(&cached, &tokens(&[2])), 0);
    }
}
