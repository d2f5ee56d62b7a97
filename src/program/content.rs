//! From a parsed message to the chat messages sent: thread inputs expanded in place (spec
//! §6.7), images made content parts, the role line's `name` kept.
//!
//! Where an image goes: in a user message it is a part at its place among the text. Chat APIs
//! take images only from the user, so an image in another role's message is sent as a user
//! message of its own at that place, the text before and after it staying in the role's
//! messages - as the Prompty runtime does with an image input (`kind: image`) placed under
//! `system:`. After an image input, the text that follows starts a new message of the role,
//! as the v2 Python runtime splits a message at an input's marker (spec §6.7's rule for
//! threads); v1 markdown images stay among their text in one message, as the v1 runtime and
//! azure-ai-evaluation's send them. A v1 `![thread]` section is the `thread` input's messages followed by the
//! section's text as a user message, as the v1 runtime sends it.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::images::{image_from_value, image_url, markdown_images};
use super::roles::{ParsedMessage, ParsedRole};
use crate::backend::{ContentPart, ImageUrl, Message, Role};

/// What the renderer put in place of rich inputs, and how to read the body's own syntax.
pub struct RichInputs<'a> {
    /// Opening and closing marker of a thread input; the input's index sits between.
    pub thread_markers: (&'a str, &'a str),
    pub image_markers: (&'a str, &'a str),
    /// Thread inputs by index: name and value.
    pub threads: &'a [(String, Value)],
    /// Image inputs by index: name and value.
    pub images: &'a [(String, Value)],
    /// v1 files: markdown images the template drew are image parts.
    pub markdown_images: bool,
    /// v1 files: the messages a `![thread]` section starts with (the `thread` field).
    pub v1_thread: Option<&'a Value>,
    /// The program file's folder: local images are read from there.
    pub folder: &'a Path,
}

enum Segment {
    Text(String),
    /// An image, and whether it is an image input's (not a markdown image).
    Image(ImageUrl, bool),
    Thread(usize),
}

enum Token {
    Thread(usize),
    Image(usize),
    /// A markdown image; the range of its URL text.
    Markdown(Range<usize>),
}

/// Every `open<index>close` marker in `text`.
fn markers(text: &str, (open, close): (&str, &str)) -> Vec<(Range<usize>, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find(open) {
        let start = at + offset;
        let after = start + open.len();
        let Some(end) = text[after..].find(close).map(|i| after + i) else {
            break;
        };
        if let Ok(index) = text[after..end].parse::<usize>() {
            found.push((start..end + close.len(), index));
        }
        at = end + close.len();
    }
    found
}

/// The index of an image input if `text` is exactly its marker.
fn image_marker(text: &str, (open, close): (&str, &str)) -> Option<usize> {
    text.strip_prefix(open)?.strip_suffix(close)?.parse().ok()
}

/// A role line's `name` attribute, as chat APIs take it.
fn speaker_name(parsed: &ParsedMessage) -> Result<Option<String>, String> {
    let name = match parsed.attributes.get("name") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(name)) => name.clone(),
        Some(other) => other.to_string(),
    };
    check_name(&name)?;
    Ok(Some(name))
}

/// OpenAI-style APIs refuse a message name with whitespace or any of `<|\/>`; say so before
/// any request.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || "<|\\/>".contains(c))
    {
        return Err(format!(
            "the message name {name:?} cannot be sent: chat APIs take a name without spaces or any of < | \\ / >"
        ));
    }
    Ok(())
}

fn role_of(parsed: ParsedRole) -> Result<Role, String> {
    match parsed {
        ParsedRole::System => Ok(Role::System),
        ParsedRole::User | ParsedRole::Thread => Ok(Role::User),
        ParsedRole::Assistant => Ok(Role::Assistant),
        ParsedRole::Developer => Ok(Role::Developer),
        ParsedRole::Tool => Err(
            "a `function:`/`tool:` message needs tool calling, which evalr does not do; remove it or make it a user message".into(),
        ),
        ParsedRole::Tools => Err(
            "a `tools:` section declares tools for the model; the v1 runtime reads it only as the first section of a v1 file's body (and evalr does not send tools): move it there or remove it".into(),
        ),
    }
}

/// Appends the chat messages of one parsed message to `out`.
pub fn expand_message(
    parsed: ParsedMessage,
    rich: &RichInputs,
    out: &mut Vec<Message>,
) -> Result<(), String> {
    let role = role_of(parsed.role)?;
    let segments = segments(&parsed, rich)?;
    if parsed.role == ParsedRole::Thread {
        if let Some(thread) = rich.v1_thread {
            out.extend(thread_messages("thread", thread, rich.folder)?);
        }
        return build(role, None, segments, false, rich, out);
    }
    let name = speaker_name(&parsed)?;
    build(role, name, segments, true, rich, out)
}

/// The message's text cut at its threads and images.
fn segments(parsed: &ParsedMessage, rich: &RichInputs) -> Result<Vec<Segment>, String> {
    let text = &parsed.content;
    let mut tokens: Vec<(Range<usize>, Token)> = Vec::new();
    if rich.markdown_images {
        for image in markdown_images(text, &parsed.from_value) {
            tokens.push((image.span, Token::Markdown(image.url)));
        }
    }
    let inside_markdown = |range: &Range<usize>, tokens: &[(Range<usize>, Token)]| {
        tokens
            .iter()
            .any(|(span, _)| span.start <= range.start && range.end <= span.end)
    };
    for (range, index) in markers(text, rich.image_markers) {
        if !inside_markdown(&range, &tokens) {
            tokens.push((range, Token::Image(index)));
        }
    }
    for (range, index) in markers(text, rich.thread_markers) {
        if !inside_markdown(&range, &tokens) {
            tokens.push((range, Token::Thread(index)));
        }
    }
    tokens.sort_by_key(|(range, _)| range.start);
    let mut segments = Vec::new();
    let mut at = 0;
    for (range, token) in tokens {
        if range.start < at {
            continue;
        }
        segments.push(Segment::Text(text[at..range.start].to_string()));
        at = range.end;
        let from_input = matches!(token, Token::Image(_));
        let image = match token {
            Token::Thread(index) => {
                segments.push(Segment::Thread(index));
                continue;
            }
            Token::Image(index) => match rich.images.get(index) {
                Some((name, value)) => image_from_value(value, rich.folder)
                    .map_err(|e| format!("image input `{name}`: {e}"))?,
                None => None,
            },
            Token::Markdown(url) => {
                // A title (`![a](x.png "title")`) follows the URL after a space.
                let source = text[url].split_whitespace().next().unwrap_or_default();
                match image_marker(source, rich.image_markers) {
                    Some(index) => match rich.images.get(index) {
                        Some((name, value)) => image_from_value(value, rich.folder)
                            .map_err(|e| format!("image input `{name}`: {e}"))?,
                        None => None,
                    },
                    None => Some(
                        image_url(source, None, rich.folder)
                            .map_err(|e| format!("markdown image: {e}"))?,
                    ),
                }
            }
        };
        if let Some(image) = image {
            segments.push(Segment::Image(image, from_input));
        }
    }
    segments.push(Segment::Text(text[at..].to_string()));
    Ok(segments)
}

/// Messages of `role` from segments. `keep_empty`: a message without any thread or image is
/// sent even when empty (spec §6.6), as a role line with nothing under it.
fn build(
    role: Role,
    name: Option<String>,
    segments: Vec<Segment>,
    keep_empty: bool,
    rich: &RichInputs,
    out: &mut Vec<Message>,
) -> Result<(), String> {
    let cut = segments.iter().any(|s| !matches!(s, Segment::Text(_)));
    if !cut {
        let text: String = segments
            .into_iter()
            .filter_map(|s| match s {
                Segment::Text(text) => Some(text),
                _ => None,
            })
            .collect();
        // Rendered only as text, with an image input that was empty: the marker's line went.
        let text = text.trim_matches(['\n', '\r']);
        if keep_empty || !text.trim().is_empty() {
            out.push(Message::text(role, text).named(name));
        }
        return Ok(());
    }
    let mut parts: Vec<ContentPart> = Vec::new();
    let mut parts_role = role;
    // After an image input, text starts a new message.
    let mut split_before_text = false;
    let flush = |parts: &mut Vec<ContentPart>, parts_role: Role, out: &mut Vec<Message>| {
        let has_image = parts
            .iter()
            .any(|p| matches!(p, ContentPart::ImageUrl { .. }));
        // Beside an image, text is trimmed as both runtimes trim it; between threads only its
        // blank edge lines go (indentation is kept).
        let kept: Vec<ContentPart> = std::mem::take(parts)
            .into_iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => {
                    let text = if has_image {
                        text.trim()
                    } else {
                        text.trim_matches(['\n', '\r'])
                    };
                    (!text.trim().is_empty()).then(|| ContentPart::Text {
                        text: text.to_string(),
                    })
                }
                image => Some(image),
            })
            .collect();
        if kept.is_empty() {
            return;
        }
        let speaker = if parts_role == role {
            name.clone()
        } else {
            None
        };
        out.push(Message::with_parts(parts_role, kept).named(speaker));
    };
    for segment in segments {
        match segment {
            Segment::Text(text) => {
                if text.trim().is_empty() {
                    // Space between two images of a split-off user message is not text.
                    if parts_role == role {
                        push_text(&mut parts, text);
                    }
                    continue;
                }
                if parts_role != role || split_before_text {
                    flush(&mut parts, parts_role, out);
                    parts_role = role;
                    split_before_text = false;
                }
                push_text(&mut parts, text);
            }
            Segment::Image(image, from_input) => {
                if role != Role::User && parts_role == role {
                    flush(&mut parts, parts_role, out);
                    parts_role = Role::User;
                }
                parts.push(ContentPart::ImageUrl { image_url: image });
                split_before_text |= from_input;
            }
            Segment::Thread(index) => {
                flush(&mut parts, parts_role, out);
                parts_role = role;
                split_before_text = false;
                if let Some((name, value)) = rich.threads.get(index) {
                    out.extend(thread_messages(name, value, rich.folder)?);
                }
            }
        }
    }
    flush(&mut parts, parts_role, out);
    Ok(())
}

/// Text follows text as one part (an empty image between them left nothing).
fn push_text(parts: &mut Vec<ContentPart>, text: String) {
    if let Some(ContentPart::Text { text: last }) = parts.last_mut() {
        last.push_str(&text);
    } else {
        parts.push(ContentPart::Text { text });
    }
}

/// A thread input's value: a list of `{role, content, name?}` messages; content is text or a
/// list of parts (`{type: text, text}`, `{type: image_url, image_url: {url, detail}}`, or the
/// spec's `{kind: text, value}`, `{kind: image, source, detail}`).
pub fn thread_messages(name: &str, value: &Value, folder: &Path) -> Result<Vec<Message>, String> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "thread input `{name}` must be a list of {{role, content}} messages, found {other}"
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("thread input `{name}`[{i}]");
            let role = match item.get("role").and_then(|r| r.as_str()) {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("developer") => Role::Developer,
                other => {
                    return Err(format!(
                        "{at}: role {other:?} is not system, user, assistant or developer"
                    ));
                }
            };
            let parts = match item.get("content").or_else(|| item.get("parts")) {
                Some(Value::String(text)) => vec![ContentPart::Text { text: text.clone() }],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|part| content_part(part, folder).map_err(|e| format!("{at}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect(),
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(format!(
                        "{at}: content must be text or a list of parts, found {other}"
                    ));
                }
            };
            if role != Role::User
                && parts
                    .iter()
                    .any(|p| matches!(p, ContentPart::ImageUrl { .. }))
            {
                return Err(format!(
                    "{at}: an image in a {} message; chat APIs take images only in user messages",
                    role.as_str()
                ));
            }
            let speaker = match item.get("name") {
                Some(Value::String(name)) => {
                    check_name(name).map_err(|e| format!("{at}: {e}"))?;
                    Some(name.clone())
                }
                _ => None,
            };
            Ok(Message::with_parts(role, parts).named(speaker))
        })
        .collect()
}

/// One content part of a thread message; `None` for an image part without a source.
fn content_part(part: &Value, folder: &Path) -> Result<Option<ContentPart>, String> {
    if let Value::String(text) = part {
        return Ok(Some(ContentPart::Text { text: text.clone() }));
    }
    let kind = part
        .get("type")
        .or_else(|| part.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("text");
    match kind {
        "text" => {
            let text = part
                .get("text")
                .or_else(|| part.get("value"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Some(ContentPart::Text {
                text: text.to_string(),
            }))
        }
        "image_url" | "image" => {
            let source = match part.get("image_url") {
                Some(inner @ Value::Object(_)) => inner.clone(),
                Some(Value::String(url)) => serde_json::json!({"url": url}),
                _ => part.clone(),
            };
            let mut image = image_from_value(&source, folder)?;
            if let (Some(image), Some(detail)) = (&mut image, part.get("detail")) {
                image.detail = detail.as_str().map(str::to_string);
            }
            Ok(image.map(|image_url| ContentPart::ImageUrl { image_url }))
        }
        other => Err(format!(
            "a content part of kind `{other}` cannot be sent; evalr sends text and images"
        )),
    }
}
