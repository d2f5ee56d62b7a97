//! Putting data inside an HTML page safely.
//!
//! Data goes into `<script type="application/json">` blocks (parsed with `JSON.parse`, never
//! run) and compressed row chunks into base64 blocks. The only way data could break out of
//! such a block is the text `</script` (or `<!--`), so every `<`, `>` and `&` in the JSON is
//! written as a `\u003c`-style escape, which JSON reads back as the same character.

use std::io::Write;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// JSON text that is safe inside a `<script>` element of an HTML page: no `<`, `>` or `&`
/// appears in it, and no U+2028/U+2029 (line terminators to older JavaScript parsers).
pub fn json_for_script<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    Ok(escape_json_for_script(&text))
}

/// Escapes serialized JSON for a script element (see [`json_for_script`]). Inside JSON these
/// characters can only occur in strings, where the `\uXXXX` form means the same.
pub fn escape_json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Gzip, then base64: the form row chunks take in the page. The page inflates them with the
/// browser's own `DecompressionStream("gzip")`, so no decompressor ships in the page.
/// Base64 holds no `<`, so it is safe inside a script element as it is.
pub fn gzip_base64(bytes: &[u8]) -> std::io::Result<String> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::new(6));
    encoder.write_all(bytes)?;
    let compressed = encoder.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(compressed))
}

/// The Content-Security-Policy source of an inline script: `'sha256-<base64>'`. The page allows
/// only its own script by hash, so a `<script>` that ever slipped into the markup would not run,
/// and it allows no network at all.
pub fn script_hash(script: &str) -> String {
    let digest = Sha256::digest(script.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn script_breaking_text_is_escaped_and_reads_back_the_same() {
        let value = serde_json::json!({"q": "</script><script>alert(1)</script> & <!-- \u{2028}"});
        let text = json_for_script(&value).expect("json");
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'));
        assert!(!text.contains('\u{2028}'));
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn chunks_round_trip_through_gzip_and_base64() {
        let data = "row ".repeat(1000);
        let encoded = gzip_base64(data.as_bytes()).expect("encodes");
        assert!(
            encoded.len() < data.len() / 10,
            "compressed: {}",
            encoded.len()
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .expect("base64");
        let mut text = String::new();
        GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("gzip");
        assert_eq!(text, data);
    }

    #[test]
    fn script_hash_is_the_csp_form() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            script_hash("alert(1)"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
    }
}
