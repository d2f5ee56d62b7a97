//! Reading a judge's answer: the one parser for every judge program's output.
//!
//! A judge answers in one of the styles the azure-ai-evaluation judges use, and the parser
//! tries them in the order that package does:
//! 1. **JSON**: an object with a `score` (a number, or a string holding one) and a `reason`
//!    (or `explanation`). `"status": "skipped"` means the judge declined the row (not
//!    applicable). An object without a usable score is unparsed: JSON is never read again as
//!    free text, so a stray number in it cannot become the score.
//! 2. **S-tags**: `<S0>thoughts</S0><S1>reason</S1><S2>score</S2>`; the score is the first
//!    number inside `<S2>`, the reason the text of `<S1>`. An answer with an `<S2>` tag is
//!    read by its tags only.
//! 3. **First number** of the text, for judges whose contract is a bare digit (similarity).
//!
//! Every score must lie in the judge's range (1 to 5); anything else is [`Parsed::Unparsed`],
//! counted apart from scores and never guessed.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The styles a judge's answer may be written in, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerRules {
    /// Read a free-text answer's first number as the score when it has neither JSON nor
    /// S-tags. azure-ai-evaluation does so only for judges outside its reason-and-score
    /// family (similarity, user judges); for coherence, fluency, groundedness, relevance and
    /// retrieval an answer without JSON or S-tags has no score.
    pub bare_number: bool,
    pub min: f64,
    pub max: f64,
}

/// The judges azure-ai-evaluation reads with reason and score (JSON or S-tags), never by a
/// bare digit (its `PROMPT_BASED_REASON_EVALUATORS`, the quality ones).
const REASON_AND_SCORE_METRICS: [&str; 5] = [
    "coherence",
    "fluency",
    "groundedness",
    "relevance",
    "retrieval",
];

impl AnswerRules {
    /// The rules of a judged metric, by its name: 1 to 5, and a bare number only for the
    /// metrics whose official contract allows it.
    pub fn for_metric(metric: &str) -> AnswerRules {
        AnswerRules {
            bare_number: !REASON_AND_SCORE_METRICS.contains(&metric),
            min: 1.0,
            max: 5.0,
        }
    }
}

/// How an answer was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStyle {
    Json,
    STags,
    BareNumber,
}

/// A judge's answer, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Scored {
        score: f64,
        reason: String,
        style: AnswerStyle,
    },
    /// The judge said the row cannot be judged (`"status": "skipped"`).
    NotApplicable { reason: String },
    /// No score in the judge's range could be read.
    Unparsed,
}

impl Parsed {
    pub fn score(&self) -> Option<f64> {
        match self {
            Parsed::Scored { score, .. } => Some(*score),
            _ => None,
        }
    }
}

static S2: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<S2>\D*?(\d+(?:\.\d+)?).*?</S2>").expect("constant regex"));
static S2_OPEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<S2>").expect("constant regex"));
static S1: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<S1>(.*?)</S1>").expect("constant regex"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").expect("constant regex"));
static FENCED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)```(?:json|JSON)?\s*(\{.*?\})\s*```").expect("constant regex")
});

/// Reads a judge's answer text by `rules`.
pub fn parse_judge_answer(text: &str, rules: &AnswerRules) -> Parsed {
    if let Some(object) = json_object(text) {
        return from_json(&object, rules);
    }
    if S2_OPEN.is_match(text) {
        let reason = S1
            .captures(text)
            .map(|c| c[1].trim().to_string())
            .unwrap_or_default();
        return S2
            .captures(text)
            .and_then(|c| c[1].parse::<f64>().ok())
            .filter(|score| in_range(*score, rules))
            .map_or(Parsed::Unparsed, |score| Parsed::Scored {
                score,
                reason,
                style: AnswerStyle::STags,
            });
    }
    if rules.bare_number
        && let Some(found) = NUMBER.find(text)
        && let Ok(score) = found.as_str().parse::<f64>()
        && in_range(score, rules)
    {
        return Parsed::Scored {
            score,
            reason: String::new(),
            style: AnswerStyle::BareNumber,
        };
    }
    Parsed::Unparsed
}

fn in_range(score: f64, rules: &AnswerRules) -> bool {
    score.is_finite() && score >= rules.min && score <= rules.max
}

/// The answer's JSON object: the whole text (what a JSON-mode answer is), else a fenced
/// ```json block, else the outermost `{...}` of the text. Only non-empty objects count.
fn json_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    let object = |candidate: &str| match serde_json::from_str::<Value>(candidate.trim()) {
        Ok(Value::Object(map)) if !map.is_empty() => Some(map),
        _ => None,
    };
    if let Some(map) = object(text) {
        return Some(map);
    }
    if let Some(map) = FENCED.captures(text).and_then(|c| object(&c[1])) {
        return Some(map);
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| object(&text[start..=end])).flatten()
}

fn from_json(object: &serde_json::Map<String, Value>, rules: &AnswerRules) -> Parsed {
    let reason = ["reason", "explanation"]
        .iter()
        .find_map(|key| object.get(*key).and_then(Value::as_str))
        .unwrap_or_default()
        .trim()
        .to_string();
    if object.get("status").and_then(Value::as_str) == Some("skipped") {
        return Parsed::NotApplicable { reason };
    }
    let score = match object.get("score") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match score.filter(|s| in_range(*s, rules)) {
        Some(score) => Parsed::Scored {
            score,
            reason,
            style: AnswerStyle::Json,
        },
        None => Parsed::Unparsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn coherence() -> AnswerRules {
        AnswerRules::for_metric("coherence")
    }
    fn similarity() -> AnswerRules {
        AnswerRules::for_metric("similarity")
    }
    fn scored(score: f64, reason: &str, style: AnswerStyle) -> Parsed {
        Parsed::Scored {
            score,
            reason: reason.into(),
            style,
        }
    }

    #[test]
    fn json_answers() {
        let rules = coherence();
        assert_eq!(
            parse_judge_answer(
                r#"{"reason": "Let's think step by step: clear.", "score": 4, "status": "completed"}"#,
                &rules
            ),
            scored(4.0, "Let's think step by step: clear.", AnswerStyle::Json)
        );
        assert_eq!(
            parse_judge_answer(r#"{"explanation": "ok", "score": "5"}"#, &rules),
            scored(5.0, "ok", AnswerStyle::Json)
        );
        assert_eq!(
            parse_judge_answer(
                "Here is my verdict:\n```json\n{\"reason\": \"r\", \"score\": 2}\n```",
                &rules
            ),
            scored(2.0, "r", AnswerStyle::Json)
        );
        assert_eq!(
            parse_judge_answer(
                r#"{"reason": "empty", "score": null, "status": "skipped"}"#,
                &rules
            ),
            Parsed::NotApplicable {
                reason: "empty".into()
            }
        );
        // JSON without a usable score is unparsed, never read again for a digit.
        for text in [
            r#"{"reason": "I give it 4"}"#,
            r#"{"reason": "x", "score": 7}"#,
            r#"{"reason": "x", "score": 0}"#,
            r#"{"reason": "x", "score": "four"}"#,
            r#"{"reason": "x", "score": true}"#,
        ] {
            assert_eq!(
                parse_judge_answer(text, &similarity()),
                Parsed::Unparsed,
                "{text}"
            );
        }
    }

    #[test]
    fn s_tag_answers() {
        let text = "<S0>Let's think step by step: the reply flows.</S0>\n<S1>Clear and ordered.</S1>\n<S2>4</S2>";
        assert_eq!(
            parse_judge_answer(text, &coherence()),
            scored(4.0, "Clear and ordered.", AnswerStyle::STags)
        );
        assert_eq!(
            parse_judge_answer("<S1>r</S1><S2>Score: 3 out of 5</S2>", &coherence()),
            scored(3.0, "r", AnswerStyle::STags)
        );
        // A score tag without a score in range is unparsed, even where a bare number would do.
        for text in [
            "<S1>r 4</S1><S2>none</S2>",
            "<S2>9</S2>",
            "<S2>10</S2>",
            "<S2>4",
        ] {
            assert_eq!(
                parse_judge_answer(text, &similarity()),
                Parsed::Unparsed,
                "{text}"
            );
        }
        assert_eq!(
            parse_judge_answer("<S2>5</S2>", &coherence()),
            scored(5.0, "", AnswerStyle::STags)
        );
    }

    #[test]
    fn bare_numbers_only_where_the_contract_allows_them() {
        assert_eq!(
            parse_judge_answer("4", &similarity()),
            scored(4.0, "", AnswerStyle::BareNumber)
        );
        assert_eq!(
            parse_judge_answer("Stars: 2\n", &similarity()),
            scored(2.0, "", AnswerStyle::BareNumber)
        );
        assert_eq!(parse_judge_answer("4", &coherence()), Parsed::Unparsed);
        assert_eq!(parse_judge_answer("10", &similarity()), Parsed::Unparsed);
        assert_eq!(
            parse_judge_answer("I cannot rate this.", &similarity()),
            Parsed::Unparsed
        );
        assert_eq!(parse_judge_answer("", &similarity()), Parsed::Unparsed);
    }

    proptest! {
        /// Whatever the text, a score is in range, and the parser never panics.
        #[test]
        fn any_text_gives_a_score_in_range_or_none(text in ".{0,200}") {
            for rules in [coherence(), similarity()] {
                if let Some(score) = parse_judge_answer(&text, &rules).score() {
                    prop_assert!((1.0..=5.0).contains(&score));
                }
            }
        }

        /// A JSON answer is read back exactly, whatever its reason says (digits, tags, braces).
        #[test]
        fn json_round_trips(score in 1u8..=5, reason in ".{0,80}") {
            let text = serde_json::json!({"reason": reason, "score": score}).to_string();
            prop_assert_eq!(
                parse_judge_answer(&text, &similarity()),
                scored(f64::from(score), reason.trim(), AnswerStyle::Json)
            );
        }

        /// S-tags are read back exactly when the reason holds no tag of its own.
        #[test]
        fn s_tags_round_trip(score in 1u8..=5, thoughts in "[^<{}]{0,60}", reason in "[^<{}]{0,60}") {
            let text = format!("<S0>{thoughts}</S0><S1>{reason}</S1><S2>{score}</S2>");
            prop_assert_eq!(
                parse_judge_answer(&text, &coherence()),
                scored(f64::from(score), reason.trim(), AnswerStyle::STags)
            );
        }
    }
}
