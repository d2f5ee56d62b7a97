//! Pooled embeddings from the embedded model: each text is decoded alone in a second
//! llama.cpp context made for embeddings (mean pooling over the last hidden states), created
//! the first time it is needed so that chat-only runs never pay for it, and kept apart from
//! the generation context so its prompt-prefix cache is not disturbed.

use std::num::NonZeroU32;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;

use super::engine::fatal;
use crate::backend::{BackendError, EmbedReply, EmbedRequest, Usage};

/// Tokens of one text the embedding context holds; longer texts are cut (questions are far
/// shorter; the cut is the text's head, which carries the question).
const EMBED_CONTEXT: u32 = 2048;

pub struct Embedder<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
}

impl<'m> Embedder<'m> {
    pub fn new(
        backend: &LlamaBackend,
        model: &'m LlamaModel,
        threads: i32,
    ) -> Result<Embedder<'m>, BackendError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(EMBED_CONTEXT))
            // A pooled sequence must be decoded in one micro-batch.
            .with_n_batch(EMBED_CONTEXT)
            .with_n_ubatch(EMBED_CONTEXT)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model.new_context(backend, params).map_err(|e| {
            BackendError::Fatal(format!("cannot create the embedding context: {e}"))
        })?;
        Ok(Embedder { model, ctx })
    }

    /// One unit-length vector per input, in order.
    pub fn embed(&mut self, request: &EmbedRequest) -> Result<EmbedReply, BackendError> {
        let mut vectors = Vec::with_capacity(request.inputs.len());
        let mut prompt_tokens = 0u64;
        let vocab = self.model.vocab();
        for text in &request.inputs {
            // Plain text: control-token spellings in a question stay literal text.
            let mut tokens = vocab.tokenize(text.as_bytes(), false, false);
            if vocab.should_add_bos() {
                let bos = vocab.bos();
                if tokens.first() != Some(&bos) {
                    tokens.insert(0, bos);
                }
            }
            tokens.truncate(EMBED_CONTEXT as usize);
            prompt_tokens += tokens.len() as u64;
            self.ctx.clear_kv_cache();
            let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
            for (i, token) in tokens.iter().enumerate() {
                batch.add(*token, i as i32, &[0], true).map_err(fatal)?;
            }
            self.ctx.decode(&mut batch).map_err(|e| {
                BackendError::Fatal(format!("llama.cpp embedding decode failed: {e}"))
            })?;
            let pooled = self.ctx.embeddings_seq_ith(0).map_err(|e| {
                BackendError::Fatal(format!("llama.cpp gave no pooled embedding: {e}"))
            })?;
            let norm = pooled
                .iter()
                .map(|x| (*x as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            vectors.push(pooled.iter().map(|x| (*x as f64 * scale) as f32).collect());
        }
        Ok(EmbedReply {
            vectors,
            usage: Usage {
                prompt_tokens,
                ..Usage::default()
            },
            requests: 1,
        })
    }
}
