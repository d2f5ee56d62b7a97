//! Images in programs: where an image comes from and the URL it travels as.
//!
//! The rule is the v1 Prompty runtime's (its chat parser's `inline_image`), used for every
//! image evalr sends - v1 markdown images, `kind: image` inputs, image parts of thread
//! messages:
//! - an `http(s)://` URL or a `data:image/...` URL is sent as it is;
//! - anything else is a local image file, read relative to the program file's folder and sent
//!   inline as a base64 `data:` URL, since the service cannot read the user's disk.
//!
//! A local image must lie inside the program's folder (no absolute path, no way out by `..`
//! or a link), as azure-ai-evaluation's Prompty runtime requires: a row value that fills an
//! image's path must not be able to send any file of the machine to a model. (The v1 runtime
//! also read absolute paths. A `${file:}` reference in the front matter may leave the folder:
//! the program's author wrote it, no row value can.)
//!
//! Beyond the v1 rule: the spec lets an image input hold base64 data (§2.7 "URL or base64"),
//! so a value that is base64 of a PNG, JPEG, GIF or WebP image becomes a data URL of that
//! type; `.gif` and `.webp` files are accepted besides `.png`/`.jpg`/`.jpeg`, as chat APIs
//! take those four; and an object `{url|source, detail}` may give the detail level.
//!
//! Markdown images (`![alt](url)`) are image parts in v1 files only: v2 runtimes keep them as
//! text (spec §6.6). They count only when the template drew the `![`, `](` and `)`: a row
//! value holding markdown stays text, while a value may fill the URL (`![p]({{ path }})`).

use std::ops::Range;
use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::backend::ImageUrl;

/// Chat APIs refuse larger images; say so before sending 20 MB for nothing.
const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

/// The media type of an image file, by its extension.
fn media_type_of_file(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// The media type of image bytes, by their signature.
fn media_type_of_bytes(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn data_url(media_type: &str, bytes: &[u8]) -> String {
    format!(
        "data:{media_type};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A local image's path, checked to lie inside the program's folder.
fn contained(source: &str, folder: &Path) -> Result<std::path::PathBuf, String> {
    let outside = || {
        format!(
            "`{}`: a local image must be a file inside the program's folder ({}); give an http(s) or data: URL for any other image",
            shorten(source),
            folder.display()
        )
    };
    let relative = Path::new(source);
    if relative.is_absolute() {
        return Err(outside());
    }
    let folder = folder
        .canonicalize()
        .map_err(|e| format!("cannot read the program's folder {}: {e}", folder.display()))?;
    let path = folder
        .join(relative)
        .canonicalize()
        .map_err(|e| format!("cannot read image {}: {e}", folder.join(relative).display()))?;
    if !path.starts_with(&folder) {
        return Err(outside());
    }
    Ok(path)
}

/// Base64 text of an image (whitespace allowed, as in wrapped base64), as a data URL.
fn base64_image(text: &str) -> Option<String> {
    if text.len() < 16
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n ".contains(&b))
    {
        return None;
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()?;
    let media_type = media_type_of_bytes(&bytes)?;
    Some(format!("data:{media_type};base64,{compact}"))
}

/// The URL an image source is sent as; `folder` is the program file's folder.
pub fn image_url(source: &str, detail: Option<String>, folder: &Path) -> Result<ImageUrl, String> {
    let source = source.trim();
    let lower = source.to_ascii_lowercase();
    let url = if lower.starts_with("https://") || lower.starts_with("http://") {
        source.to_string()
    } else if lower.starts_with("data:") {
        if !lower.starts_with("data:image/") {
            return Err(format!(
                "`{}`: a data URL sent as an image must be `data:image/...`",
                shorten(source)
            ));
        }
        source.to_string()
    } else if let Some(url) = base64_image(source) {
        url
    } else {
        let media_type = media_type_of_file(Path::new(source)).ok_or_else(|| {
            format!(
                "`{}` is not an image evalr can send: give an http(s) or data: URL, or a .png, .jpg, .jpeg, .gif or .webp file",
                shorten(source)
            )
        })?;
        let path = contained(source, folder)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read image {}: {e}", path.display()))?
            .len();
        if size > MAX_IMAGE_BYTES {
            return Err(format!(
                "image {} is {size} bytes; chat APIs take images up to 20 MB",
                path.display()
            ));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read image {}: {e}", path.display()))?;
        data_url(media_type, &bytes)
    };
    Ok(ImageUrl { url, detail })
}

/// An image value (a row's or a default): a string, or `{url|source, detail}`. `None` when
/// the value is empty (a CSV row without an image).
pub fn image_from_value(value: &Value, folder: &Path) -> Result<Option<ImageUrl>, String> {
    let (source, detail) = match value {
        Value::Null => return Ok(None),
        Value::String(text) => (text.as_str(), None),
        Value::Object(object) => {
            let source = object
                .get("url")
                .or_else(|| object.get("source"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    "an image given as an object needs `url` (or `source`)".to_string()
                })?;
            let detail = object
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_string);
            (source, detail)
        }
        other => {
            return Err(format!(
                "an image must be a URL, a file path or base64 data, found {}",
                shorten(&other.to_string())
            ));
        }
    };
    if source.trim().is_empty() {
        return Ok(None);
    }
    image_url(source, detail, folder).map(Some)
}

/// Long sources (base64) are cut in errors.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// A markdown image the template drew: its whole span and the span of its URL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkdownImage {
    pub span: Range<usize>,
    pub url: Range<usize>,
}

/// The markdown images of `text` whose `![`, `](` and `)` came from the template (`from_value`
/// says, per byte, what came from a value). An image lies on one line; its alt text may not
/// hold `]` and its URL runs to the first `)` the template wrote, as in the v1 runtime's
/// pattern.
pub fn markdown_images(text: &str, from_value: &[bool]) -> Vec<MarkdownImage> {
    let literal = |i: usize| !from_value.get(i).copied().unwrap_or(true);
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("![") {
        let start = at + offset;
        at = start + 2;
        if !(literal(start) && literal(start + 1)) {
            continue;
        }
        let Some(close) = text[start + 2..].find(']').map(|i| start + 2 + i) else {
            break;
        };
        if text[start + 2..close].contains('\n')
            || !literal(close)
            || bytes.get(close + 1) != Some(&b'(')
            || !literal(close + 1)
        {
            continue;
        }
        let url_start = close + 2;
        let Some(end) = (url_start..text.len()).find(|&i| bytes[i] == b')' && literal(i)) else {
            continue;
        };
        if text[url_start..end].contains('\n') || text[url_start..end].trim().is_empty() {
            continue;
        }
        found.push(MarkdownImage {
            span: start..end + 1,
            url: url_start..end,
        });
        at = end + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89,
    ];

    #[test]
    fn urls_pass_through_and_local_files_become_data_urls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cat.png"), PNG_1X1).unwrap();
        let url = |s: &str| image_url(s, None, dir.path()).map(|u| u.url);
        assert_eq!(url("https://x.test/a.png").unwrap(), "https://x.test/a.png");
        assert_eq!(
            url("data:image/png;base64,AAAA").unwrap(),
            "data:image/png;base64,AAAA"
        );
        let inlined = url("cat.png").unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(PNG_1X1);
        assert_eq!(inlined, format!("data:image/png;base64,{encoded}"));
        // Only files inside the program's folder are read.
        let absolute = dir.path().join("cat.png");
        let err = url(absolute.to_str().unwrap()).unwrap_err();
        assert!(err.contains("inside the program's folder"), "{err}");
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let err = image_url("../cat.png", None, &inner).unwrap_err();
        assert!(err.contains("inside the program's folder"), "{err}");
        assert_eq!(
            image_url("./sub/../cat.png", None, dir.path()).ok(),
            None,
            "a missing folder on the way is an error"
        );
        // Base64 of an image becomes a data URL of its type.
        assert_eq!(
            url(&encoded).unwrap(),
            format!("data:image/png;base64,{encoded}")
        );
        let err = url("notes.txt").unwrap_err();
        assert!(err.contains("`notes.txt` is not an image"), "{err}");
        let err = url("missing.jpg").unwrap_err();
        assert!(err.contains("missing.jpg"), "{err}");
        let err = url("data:text/plain;base64,AAAA").unwrap_err();
        assert!(err.contains("data:image/"), "{err}");
    }

    #[test]
    fn image_values_strings_objects_and_empty() {
        let dir = Path::new(".");
        let image = image_from_value(
            &serde_json::json!({"url": "https://x.test/a.png", "detail": "low"}),
            dir,
        )
        .unwrap()
        .unwrap();
        assert_eq!(image.detail.as_deref(), Some("low"));
        assert_eq!(image_from_value(&Value::Null, dir).unwrap(), None);
        assert_eq!(image_from_value(&Value::from(""), dir).unwrap(), None);
        assert!(image_from_value(&Value::from(3), dir).is_err());
    }

    fn literal(text: &str) -> Vec<MarkdownImage> {
        markdown_images(text, &vec![false; text.len()])
    }

    #[test]
    fn markdown_images_on_one_line_with_titles_and_without() {
        let text = "Look ![a cat](cat.png) and ![](https://x.test/b.png \"title\")\n![no\nimage](x.png) [link](y.png) ![]()";
        let found = literal(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(&text[found[0].url.clone()], "cat.png");
        assert_eq!(&text[found[0].span.clone()], "![a cat](cat.png)");
        assert_eq!(
            &text[found[1].url.clone()],
            "https://x.test/b.png \"title\""
        );
    }

    #[test]
    fn markdown_from_a_value_stays_text_but_a_value_may_fill_the_url() {
        // `![photo](` and `)` from the template, the path from a value.
        let text = "![photo](cat.png)";
        let mut from_value = vec![false; text.len()];
        from_value[9..16].fill(true);
        assert_eq!(markdown_images(text, &from_value).len(), 1);
        // The whole image from a value.
        assert!(markdown_images(text, &vec![true; text.len()]).is_empty());
        // A value closing the template's image early cannot end it: the URL runs to the
        // template's `)`.
        let text = "![p](a.png) ![x](b.png)";
        let mut from_value = vec![false; text.len()];
        from_value[5..22].fill(true);
        let found = markdown_images(text, &from_value);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].url.clone()], "a.png) ![x](b.png");
    }
}
