//! Token counts and ids for OpenAI model families.
//!
//! Two uses, with different needs:
//! - the quota's estimate of a request (prompt + `max_tokens`, what Azure charges when the
//!   request arrives) only has to be close: it is made from the text's length and corrected by
//!   the `usage` the service reports (`ChatBackend::post`), so it never needs a tokenizer;
//! - `select`'s `logit_bias` and `--dry-run`'s counts need the family's exact tokens (tiktoken).
//!
//! Building an encoding costs about 0.2 s of CPU and 50 MB, so it is built on first need, not
//! when the backend is made; the ids of common one-token options (letters, digits, yes/no)
//! come from a table (`common`) and need no encoding at all.

mod common;

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use super::Message;

/// Per-message overhead of the chat format (role and separators), as OpenAI documents it.
const TOKENS_PER_MESSAGE: u64 = 4;
const TOKENS_PER_REPLY: u64 = 3;
/// Characters per token of the length estimate (English text in OpenAI's encodings).
const CHARS_PER_TOKEN: u64 = 4;

/// An OpenAI encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    fn common(self) -> &'static [(&'static str, u32)] {
        match self {
            Encoding::O200kBase => common::O200K_BASE,
            Encoding::Cl100kBase => common::CL100K_BASE,
        }
    }

    fn load(self) -> &'static CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }
}
/// An image's cost before the service says: OpenAI's published price of a 1024x1024 image at
/// high detail (85 + 4 tiles of 170). The image's size is not read; the `usage` correction
/// catches up after the first answers.
const TOKENS_PER_IMAGE: u64 = 765;

pub struct TokenCounter {
    encoding: Option<Encoding>,
    /// Set the first time exact tokens are needed.
    bpe: OnceLock<&'static CoreBPE>,
}

impl TokenCounter {
    /// The tokenizer of an OpenAI model family (`gpt-4o`, `gpt-4.1-mini`, `o3`, `gpt-35-turbo`...),
    /// or the character estimate for anything else. Nothing is loaded yet.
    pub fn for_model(model: Option<&str>) -> TokenCounter {
        let model = model.unwrap_or("").to_ascii_lowercase();
        let encoding = if model.starts_with("gpt-4o")
            || model.starts_with("gpt-4.1")
            || model.starts_with("gpt-5")
            || model.starts_with("o1")
            || model.starts_with("o3")
            || model.starts_with("o4")
        {
            Some(Encoding::O200kBase)
        } else if model.starts_with("gpt-4")
            || model.starts_with("gpt-35")
            || model.starts_with("gpt-3.5")
        {
            Some(Encoding::Cl100kBase)
        } else {
            None
        };
        TokenCounter {
            encoding,
            bpe: OnceLock::new(),
        }
    }

    pub fn knows_tokens(&self) -> bool {
        self.encoding.is_some()
    }

    /// Whether the family's encoding has been built (it costs time and memory; see the module).
    pub fn tokenizer_loaded(&self) -> bool {
        self.bpe.get().is_some()
    }

    fn bpe(&self) -> Option<&'static CoreBPE> {
        let encoding = self.encoding?;
        Some(*self.bpe.get_or_init(|| encoding.load()))
    }

    /// The one token `text` encodes to, when the table of common options has it.
    fn common_token(&self, text: &str) -> Option<u32> {
        let table = self.encoding?.common();
        table
            .binary_search_by(|(s, _)| (*s).cmp(text))
            .ok()
            .map(|i| table[i].1)
    }

    /// Exact token count with the family's tokenizer; the length estimate for other models.
    pub fn count(&self, text: &str) -> u64 {
        if self.common_token(text).is_some() {
            return 1;
        }
        match self.bpe() {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => estimate(text),
        }
    }

    /// Token ids of `text`, when the tokenizer is known.
    pub fn encode(&self, text: &str) -> Option<Vec<u32>> {
        if let Some(token) = self.common_token(text) {
            return Some(vec![token]);
        }
        self.bpe()
            .map(|bpe| bpe.encode_ordinary(text).into_iter().collect())
    }

    /// Exact prompt tokens of a conversation (the dry run's figure).
    pub fn count_messages(&self, messages: &[Message]) -> u64 {
        messages
            .iter()
            .map(|m| {
                TOKENS_PER_MESSAGE
                    + self.count(&m.content)
                    + TOKENS_PER_IMAGE * m.images().count() as u64
            })
            .sum::<u64>()
            + TOKENS_PER_REPLY
    }

    /// The prompt tokens of a conversation estimated from its length, without a tokenizer:
    /// what the quota is charged before the service's `usage` corrects it.
    pub fn estimate_messages(messages: &[Message]) -> u64 {
        messages
            .iter()
            .map(|m| {
                TOKENS_PER_MESSAGE
                    + estimate(&m.content)
                    + TOKENS_PER_IMAGE * m.images().count() as u64
            })
            .sum::<u64>()
            + TOKENS_PER_REPLY
    }
}

fn estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(CHARS_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Role;

    #[test]
    fn counts_with_the_family_tokenizer() {
        let gpt4o = TokenCounter::for_model(Some("gpt-4o-mini"));
        assert!(gpt4o.knows_tokens());
        // "hello world" is two tokens in o200k_base and cl100k_base.
        assert_eq!(gpt4o.count("hello world"), 2);
        assert_eq!(
            TokenCounter::for_model(Some("gpt-4")).count("hello world"),
            2
        );
        let other = TokenCounter::for_model(Some("llama-3"));
        assert!(!other.knows_tokens());
        assert_eq!(other.count("12345678"), 2);
        let messages = [Message::text(Role::User, "hello world")];
        assert_eq!(gpt4o.count_messages(&messages), 4 + 2 + 3);
        // 11 characters: 3 tokens by length.
        assert_eq!(TokenCounter::estimate_messages(&messages), 4 + 3 + 3);
    }

    #[test]
    fn letters_are_encoded_without_building_the_encoding() {
        for model in ["gpt-4o", "gpt-35-turbo"] {
            let counter = TokenCounter::for_model(Some(model));
            let ids: Vec<_> = [" A", " B", "C", "Yes"]
                .iter()
                .map(|o| counter.encode(o))
                .collect();
            assert!(ids.iter().all(|t| t.as_ref().is_some_and(|t| t.len() == 1)));
            assert_eq!(counter.count(" D"), 1);
            assert!(
                !counter.tokenizer_loaded(),
                "{model}: the encoding was built"
            );
            // Anything else builds it.
            assert_eq!(counter.encode(" Answer: A").map(|t| t.len()), Some(3));
            assert!(counter.tokenizer_loaded());
        }
    }

    #[test]
    fn every_entry_is_what_tiktoken_encodes() {
        for (encoding, bpe) in [
            (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
            (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
        ] {
            let table = encoding.common();
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "not sorted");
            for (text, id) in table {
                assert_eq!(
                    bpe.encode_ordinary(text),
                    vec![*id],
                    "{encoding:?}: {text:?}"
                );
            }
        }
    }
}
