//! `gen`: sampling with temperature / top-p / seed, stop sequences and a token limit, and
//! constraints (a regex the whole output must match, or a JSON schema) enforced token by
//! token through llguidance, the constraint engine of the guidance project.

use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};

use super::engine::Engine;
use crate::backend::{BackendError, GenReply, GenRequest, Usage};

/// Seed used when a call gives none, so that a sampled `gen` is reproducible by default.
pub const DEFAULT_SEED: u64 = 0;

impl Engine<'_> {
    pub fn generate(
        &mut self,
        request: &GenRequest,
        constraints: &mut Constraints,
    ) -> Result<GenReply, BackendError> {
        let (_, prompt) = self.prompt_tokens(&request.messages)?;
        if prompt.is_empty() {
            return Err(BackendError::Fatal(
                "gen needs a prompt, and this one is empty".into(),
            ));
        }
        self.check_fits(prompt.len() + 1)?;
        let matcher = constraints.matcher(self, request)?;
        let mut sampler = build_sampler(request, matcher);

        let mut logits_index = self.eval_prompt(&prompt)?;

        let vocab = self.model.vocab();
        let mut bytes: Vec<u8> = Vec::new();
        let mut generated: u32 = 0;
        let mut finish_reason = "length";
        let mut cut_at: Option<usize> = None;
        while generated < request.max_tokens {
            if self.cached_len() >= self.n_ctx as usize {
                break;
            }
            let token = sampler.sample(&self.ctx, logits_index);
            if vocab.is_eog(token) {
                finish_reason = "stop";
                break;
            }
            generated += 1;
            bytes.extend(vocab.token_to_piece(token, false, None));
            if let Some(at) = find_stop(&bytes, &request.stop) {
                cut_at = Some(at);
                finish_reason = "stop";
                break;
            }
            if generated == request.max_tokens {
                break;
            }
            self.push_token(token)?;
            logits_index = 0;
        }
        if let Some(at) = cut_at {
            bytes.truncate(at);
        }
        Ok(GenReply {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            finish_reason: finish_reason.to_string(),
            usage: Usage {
                prompt_tokens: prompt.len() as u64,
                completion_tokens: u64::from(generated),
                ..Usage::default()
            },
            requests: 1,
        })
    }
}

/// Byte offset of the earliest stop sequence in the text so far.
fn find_stop(text: &[u8], stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|stop| {
            text.windows(stop.len())
                .position(|window| window == stop.as_bytes())
        })
        .min()
}

/// llama.cpp's sampler order: the constraint mask first, then top-p, temperature and the
/// seeded draw. No temperature (or 0) means greedy decoding: an evaluation should not vary
/// between runs unless it asks to.
fn build_sampler(request: &GenRequest, matcher: Option<Matcher>) -> LlamaSampler {
    let mut chain = Vec::new();
    if let Some(matcher) = matcher {
        chain.push(LlamaSampler::from(matcher));
    }
    let temperature = request.temperature.unwrap_or(0.0);
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if let Some(top_p) = request.top_p.filter(|p| *p < 1.0) {
            chain.push(LlamaSampler::top_p(top_p as f32, 1));
        }
        chain.push(LlamaSampler::temp(temperature as f32));
        let seed = request.seed.unwrap_or(DEFAULT_SEED);
        // llama.cpp seeds are 32-bit; fold the high half in rather than dropping it.
        chain.push(LlamaSampler::dist((seed ^ (seed >> 32)) as u32));
    }
    LlamaSampler::chain_simple(chain)
}

/// The llguidance parser factory, built on the first constrained call: walking the 262k-token
/// vocabulary takes a moment and most runs never constrain a `gen`.
#[derive(Default)]
pub struct Constraints {
    factory: Option<ParserFactory>,
}

impl Constraints {
    fn matcher(
        &mut self,
        engine: &Engine<'_>,
        request: &GenRequest,
    ) -> Result<Option<Matcher>, BackendError> {
        let (grammar, what) = match (&request.regex, &request.json_schema) {
            (Some(_), Some(_)) => {
                return Err(BackendError::Fatal(
                    "gen takes a regex or a JSON schema, not both".into(),
                ));
            }
            (Some(regex), None) => (
                TopLevelGrammar::from_regex(regex),
                format!("regex {regex:?}"),
            ),
            (None, Some(schema)) => (
                TopLevelGrammar::from_json_schema(schema.clone()),
                "JSON schema".to_string(),
            ),
            (None, None) => return Ok(None),
        };
        if self.factory.is_none() {
            let env = LlamaSampler::llguidance_tok_env(engine.model);
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
                BackendError::Fatal(format!("llguidance could not read the vocabulary: {e}"))
            })?;
            factory.quiet();
            self.factory = Some(factory);
        }
        let factory = self.factory.as_ref().expect("set above");
        let parser = factory
            .create_parser(grammar)
            .map_err(|e| BackendError::Fatal(format!("invalid {what} for gen: {e}")))?;
        Ok(Some(Matcher::new(Ok(parser))))
    }
}

#[cfg(test)]
mod tests {
    use super::find_stop;

    #[test]
    fn the_earliest_stop_sequence_wins() {
        let stops = vec!["\n\n".to_string(), "Question".to_string()];
        assert_eq!(find_stop(b"B because Question\n\n", &stops), Some(10));
        assert_eq!(find_stop(b"B\n\nQuestion", &stops), Some(1));
        assert_eq!(find_stop(b"B", &stops), None);
        assert_eq!(find_stop(b"B", &[String::new()]), None);
    }
}
