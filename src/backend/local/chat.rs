//! Turning a conversation into the model's prompt text and tokens.
//!
//! Order of preference: the chat template in the GGUF metadata (`tokenizer.chat_template`),
//! then llama.cpp's built-in template of the model's family when the file has none (Gemma
//! base models such as the default Gemma 3 270M ship without one), then plain text. Plain
//! text (also forced by `no_chat_template`) is the messages' contents joined by newlines.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::backend::{Message, Role};

/// Where the prompt format comes from; reported by `LocalBackend::chat_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormatSource {
    /// `tokenizer.chat_template` from the GGUF metadata.
    Metadata,
    /// llama.cpp's built-in template of this name (the file has no template).
    BuiltIn(&'static str),
    /// Contents joined with newlines, no role markers.
    Plain,
}

impl std::fmt::Display for ChatFormatSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatFormatSource::Metadata => f.write_str("chat template from the GGUF metadata"),
            ChatFormatSource::BuiltIn(name) => {
                write!(f, "llama.cpp's built-in \"{name}\" chat template")
            }
            ChatFormatSource::Plain => f.write_str("plain text (no chat template)"),
        }
    }
}

pub struct ChatFormat {
    template: Option<LlamaChatTemplate>,
    pub source: ChatFormatSource,
}

impl ChatFormat {
    /// Picks the format for `model`; fails (with the reason) when the model has a template
    /// that llama.cpp cannot apply, rather than silently prompting it the wrong way.
    pub fn for_model(model: &LlamaModel, no_chat_template: bool) -> Result<ChatFormat, String> {
        if no_chat_template {
            return Ok(ChatFormat::plain());
        }
        let (template, source) = match model.chat_template(None) {
            Ok(template) => (template, ChatFormatSource::Metadata),
            Err(_) => match builtin_for_architecture(model) {
                Some(name) => {
                    let template = LlamaChatTemplate::new(name).map_err(|e| e.to_string())?;
                    (template, ChatFormatSource::BuiltIn(name))
                }
                None => return Ok(ChatFormat::plain()),
            },
        };
        let format = ChatFormat {
            template: Some(template),
            source,
        };
        let probe = [Message::text(Role::User, "Hello".to_string())];
        format.render(model, &probe).map_err(|e| {
            format!("{e}; run with the chat template switched off (--no-chat-template)")
        })?;
        Ok(format)
    }

    pub fn plain() -> ChatFormat {
        ChatFormat {
            template: None,
            source: ChatFormatSource::Plain,
        }
    }

    pub fn is_plain(&self) -> bool {
        self.template.is_none()
    }

    /// The prompt text for `messages`. A conversation that ends with an assistant message
    /// continues that message: the template renders the turns before it and opens the
    /// assistant turn, and the message's text follows with no end-of-turn marker, so the
    /// model's next tokens extend "Answer:" instead of starting a new turn.
    pub fn render(&self, model: &LlamaModel, messages: &[Message]) -> Result<String, String> {
        let Some(template) = &self.template else {
            return Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"));
        };
        let (head, partial) = match messages.split_last() {
            Some((last, head)) if last.role == Role::Assistant => (head, Some(&last.content)),
            _ => (messages, None),
        };
        let chat = head
            .iter()
            .map(|m| {
                // Chat templates of local models know `system`, not OpenAI's `developer`.
                let role = match m.role {
                    Role::Developer => Role::System,
                    other => other,
                };
                LlamaChatMessage::new(role.as_str().to_string(), m.content.clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a message cannot be passed to llama.cpp: {e}"))?;
        let mut text = if chat.is_empty() {
            String::new()
        } else {
            model
                .apply_chat_template(template, &chat, true)
                .map_err(|e| format!("llama.cpp could not apply the chat template: {e}"))?
        };
        if let Some(partial) = partial {
            text.push_str(partial);
        }
        Ok(text)
    }

    /// Tokens of a rendered prompt, with exactly one BOS when the model wants one: a template
    /// that already writes `<bos>` must not get a second (Gemma scores fall apart with two, and
    /// without any).
    pub fn tokenize(&self, model: &LlamaModel, text: &str) -> Vec<LlamaToken> {
        let vocab = model.vocab();
        // Template output contains control tokens written as text (`<start_of_turn>`); plain
        // text is the user's own and is tokenized literally.
        let mut tokens = vocab.tokenize(text.as_bytes(), false, !self.is_plain());
        if vocab.should_add_bos() {
            let bos = vocab.bos();
            if tokens.first() != Some(&bos) {
                tokens.insert(0, bos);
            }
        }
        tokens
    }
}

/// llama.cpp's built-in template for base models of a family that has one well-known chat
/// format; `None` means plain text.
fn builtin_for_architecture(model: &LlamaModel) -> Option<&'static str> {
    let architecture = model.meta_val_str("general.architecture").ok()?;
    if architecture.starts_with("gemma") {
        Some("gemma")
    } else {
        None
    }
}
