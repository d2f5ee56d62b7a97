//! Matching free text to one of a `select`'s options, for backends that can neither score
//! options nor constrain the answer.
//!
//! The rule, in order (the first that gives exactly one option wins):
//! 1. exact: the trimmed text is an option;
//! 2. normalised: equal after lower-casing and stripping surrounding whitespace, quotes,
//!    brackets, `*` and final punctuation (`"(B)."` matches `B`);
//! 3. leading: the normalised text starts with an option followed by a non-alphanumeric
//!    character (`"yes, because"`); a one-character option must be followed by `.`, `)`,
//!    `:`, `,` or `-` (`"B. Paris"`, `"2: because"`), so that "A good guess" is no answer;
//! 4. stated: an "answer is X" / "answer: X" phrase whose X matches by rule 2;
//! 5. unique mention (options of two or more characters only, so that the article "a" never
//!    counts as option "A"): exactly one option appears as a whole word.
//!
//! Anything else is `None`: the caller re-asks once and then records `unparsed`, never guesses.

fn normalise(text: &str) -> String {
    let trimmed = text.trim().trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | '*' | '(' | ')' | '[' | ']' | '.' | ',' | ':' | ';' | '!' | '?'
            )
    });
    trimmed.to_lowercase()
}

fn unique<I: Iterator<Item = usize>>(mut matches: I) -> Option<usize> {
    let first = matches.next()?;
    matches.next().is_none().then_some(first)
}

fn is_word_boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| !c.is_alphanumeric())
}

pub fn match_option(text: &str, options: &[String]) -> Option<usize> {
    let trimmed = text.trim();
    if let Some(i) = unique(
        options
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_str() == trimmed)
            .map(|(i, _)| i),
    ) {
        return Some(i);
    }
    let normalised_text = normalise(text);
    let normalised: Vec<String> = options.iter().map(|o| normalise(o)).collect();
    if let Some(i) = unique(
        normalised
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.is_empty() && **o == normalised_text)
            .map(|(i, _)| i),
    ) {
        return Some(i);
    }
    let leading = |o: &String| {
        !o.is_empty() && normalised_text.starts_with(o.as_str()) && {
            let next = normalised_text[o.len()..].chars().next();
            // A one-letter option must be followed by punctuation: "A good answer" is an
            // article, "A. Paris" and "A) Paris" are the option.
            if o.chars().count() == 1 {
                next.is_none_or(|c| matches!(c, '.' | ')' | ':' | ',' | '-'))
            } else {
                is_word_boundary(next)
            }
        }
    };
    if let Some(i) = unique(
        normalised
            .iter()
            .enumerate()
            .filter(|(_, o)| leading(o))
            .map(|(i, _)| i),
    ) {
        return Some(i);
    }
    let lower = trimmed.to_lowercase();
    for phrase in [
        "answer is",
        "answer:",
        "answer would be",
        "correct option is",
        "correct choice is",
    ] {
        if let Some(position) = lower.rfind(phrase) {
            let stated = lower[position + phrase.len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            let stated = normalise(stated);
            if let Some(i) = unique(
                normalised
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| !o.is_empty() && **o == stated)
                    .map(|(i, _)| i),
            ) {
                return Some(i);
            }
        }
    }
    let mentioned = |o: &String| {
        o.chars().count() >= 2
            && lower.match_indices(o.as_str()).any(|(at, _)| {
                is_word_boundary(lower[..at].chars().next_back())
                    && is_word_boundary(lower[at + o.len()..].chars().next())
            })
    };
    unique(
        normalised
            .iter()
            .enumerate()
            .filter(|(_, o)| mentioned(o))
            .map(|(i, _)| i),
    )
}

/// The last rung of `select` for backends that can only generate text: ask, match the answer
/// with [`match_option`], and if nothing matches ask once more ("Reply with exactly one of:
/// ..."); still nothing is `chosen: None` (the row's outcome becomes `unparsed`). `ask` sends a
/// conversation and returns the generated text and its usage.
pub async fn select_by_generation<F, Fut>(
    request: &super::SelectRequest,
    mut ask: F,
) -> Result<super::SelectReply, super::BackendError>
where
    F: FnMut(Vec<super::Message>) -> Fut,
    Fut: std::future::Future<Output = Result<(String, super::Usage), super::BackendError>>,
{
    use super::{Message, Role, SelectPath, SelectReply};
    let (text, mut usage) = ask(request.messages.clone()).await?;
    if let Some(i) = match_option(&text, &request.options) {
        return Ok(SelectReply {
            chosen: Some(i),
            path: SelectPath::GenerateMatch,
            option_probs: None,
            option_logprobs: None,
            raw_text: Some(text),
            usage,
            requests: 1,
        });
    }
    let mut messages = request.messages.clone();
    messages.push(Message::text(Role::Assistant, text.clone()));
    messages.push(Message::text(
        Role::User,
        format!("Reply with exactly one of: {}", request.options.join(", ")),
    ));
    let (retext, more) = ask(messages).await?;
    usage.add(more);
    Ok(SelectReply {
        chosen: match_option(&retext, &request.options),
        path: SelectPath::Reask,
        option_probs: None,
        option_logprobs: None,
        raw_text: Some(format!("{text}\n---\n{retext}")),
        usage,
        requests: 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters() -> Vec<String> {
        ["A", "B", "C", "D"].map(String::from).to_vec()
    }

    #[test]
    fn documented_rule() {
        let l = letters();
        assert_eq!(match_option("B", &l), Some(1));
        assert_eq!(match_option(" (c). ", &l), Some(2));
        assert_eq!(match_option("**D**", &l), Some(3));
        assert_eq!(match_option("B. Paris is the capital", &l), Some(1));
        assert_eq!(match_option("I believe the answer is C.", &l), Some(2));
        assert_eq!(match_option("Final answer: a", &l), Some(0));
        assert_eq!(match_option("A good question; I cannot say", &l), None);
        assert_eq!(match_option("Either B or C", &l), None);
        assert_eq!(match_option("", &l), None);
        let words: Vec<String> = ["yes", "no"].map(String::from).to_vec();
        assert_eq!(match_option("I would say yes, definitely", &words), Some(0));
        assert_eq!(match_option("yes and no", &words), Some(0));
        assert_eq!(match_option("Hmm, no idea; maybe yes?", &words), None);
        let numbers: Vec<String> = ["0", "1", "2", "3"].map(String::from).to_vec();
        assert_eq!(match_option("2: because", &numbers), Some(2));
        assert_eq!(match_option("12", &numbers), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_only_returns_valid_indices(text in ".{0,64}") {
            let l = letters();
            if let Some(i) = match_option(&text, &l) {
                proptest::prop_assert!(i < l.len());
            }
        }
    }
}
