//! Token estimates made before a call, for the token bucket and `--dry-run`.
//!
//! OpenAI model families are counted with their own tokenizer (tiktoken); other models with
//! the rule of thumb of four characters a token. The limiter corrects the estimate with the
//! `usage` the service returns.

use tiktoken_rs::CoreBPE;

use super::Message;

/// Per-message overhead of the chat format (role and separators), as OpenAI documents it.
const TOKENS_PER_MESSAGE: u64 = 4;
const TOKENS_PER_REPLY: u64 = 3;
/// An image's cost before the service says: OpenAI's published price of a 1024x1024 image at
/// high detail (85 + 4 tiles of 170). The image's size is not read; the `usage` correction
/// catches up after the first answers.
const TOKENS_PER_IMAGE: u64 = 765;

#[derive(Clone, Copy)]
pub struct TokenCounter {
    bpe: Option<&'static CoreBPE>,
}

impl TokenCounter {
    /// The tokenizer of an OpenAI model family (`gpt-4o`, `gpt-4.1-mini`, `o3`, `gpt-35-turbo`...),
    /// or the character estimate for anything else.
    pub fn for_model(model: Option<&str>) -> TokenCounter {
        let model = model.unwrap_or("").to_ascii_lowercase();
        let bpe = if model.starts_with("gpt-4o")
            || model.starts_with("gpt-4.1")
            || model.starts_with("gpt-5")
            || model.starts_with("o1")
            || model.starts_with("o3")
            || model.starts_with("o4")
        {
            Some(tiktoken_rs::o200k_base_singleton())
        } else if model.starts_with("gpt-4")
            || model.starts_with("gpt-35")
            || model.starts_with("gpt-3.5")
        {
            Some(tiktoken_rs::cl100k_base_singleton())
        } else {
            None
        };
        TokenCounter { bpe }
    }

    pub fn knows_tokens(&self) -> bool {
        self.bpe.is_some()
    }

    pub fn count(&self, text: &str) -> u64 {
        match self.bpe {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => (text.chars().count() as u64).div_ceil(4),
        }
    }

    /// Token ids of `text`, when the tokenizer is known.
    pub fn encode(&self, text: &str) -> Option<Vec<u32>> {
        self.bpe
            .map(|bpe| bpe.encode_ordinary(text).into_iter().collect())
    }

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
    }
}
