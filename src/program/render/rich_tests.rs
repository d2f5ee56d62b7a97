//! Images, v1 `![thread]` sections and role-line names, rendered from programs.

use super::*;
use crate::backend::{ContentPart, ImageUrl};
use crate::program::template_context;
use base64::Engine;
use serde_json::json;

/// The 8-byte PNG signature and a header chunk: enough for a file that is a PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR";
/// A v1 front matter (`model.api` is a v1-only key).
const V1: &str = "name: v1\nmodel:\n  api: chat";

fn png_url() -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(PNG)
    )
}

/// A program file written into `dir` (with `cat.png` beside it), compiled.
fn program_in(dir: &Path, front: &str, body: &str) -> Program {
    std::fs::write(dir.join("cat.png"), PNG).unwrap();
    let path = dir.join("p.prompty");
    std::fs::write(&path, format!("---\n{front}\n---\n{body}")).unwrap();
    Program::compile(ProgramFile::load(&path).unwrap()).unwrap()
}

/// The conversation of the program's completion call.
fn messages(p: &Program, row: serde_json::Value) -> Vec<Message> {
    match p
        .next_step(&template_context(&row, Vec::new()), &Captures::new())
        .unwrap()
    {
        Step::Call(call) => call.messages,
        Step::Done(messages) => messages,
    }
}

fn text(t: &str) -> ContentPart {
    ContentPart::Text { text: t.into() }
}

fn image(url: &str) -> ContentPart {
    ContentPart::ImageUrl {
        image_url: ImageUrl {
            url: url.into(),
            detail: None,
        },
    }
}

#[test]
fn v1_markdown_images_are_parts_in_place_local_files_inlined() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        V1,
        "system:\nYou describe images.\n\nuser:\nWhat is this?\n![a cat](cat.png)\n![](https://x.test/dog.jpg \"a dog\")\nBe brief.",
    );
    let sent = messages(&p, json!({}));
    assert_eq!(sent[0], Message::text(Role::System, "You describe images."));
    assert_eq!(
        sent[1],
        Message::with_parts(
            Role::User,
            vec![
                text("What is this?"),
                image(&png_url()),
                image("https://x.test/dog.jpg"),
                text("Be brief."),
            ]
        )
    );
    assert_eq!(sent[1].content, "What is this?\nBe brief.");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        p.image_sources(),
        [
            "the markdown image on line 11",
            "the markdown image on line 12"
        ]
    );
}

#[test]
fn v2_files_keep_markdown_images_as_text_and_v1_can_switch_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let body = "user:\nSee ![a cat](cat.png)";
    let v2 = program_in(dir.path(), "name: v2", body);
    assert_eq!(
        messages(&v2, json!({})),
        vec![Message::text(Role::User, "See ![a cat](cat.png)")]
    );
    assert!(v2.image_sources().is_empty());
    let off = program_in(
        dir.path(),
        &format!("{V1}\ntemplate:\n  type: jinja2\n  options:\n    disable_image_parsing: true"),
        body,
    );
    assert_eq!(
        messages(&off, json!({})),
        vec![Message::text(Role::User, "See ![a cat](cat.png)")]
    );
}

#[test]
fn markdown_in_a_row_value_stays_text_while_a_value_may_fill_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        V1,
        "user:\n{{ question }}\n![photo]({{ path }})",
    );
    let sent = messages(
        &p,
        json!({"question": "Is ![x](https://evil.test/x.png) a cat?", "path": "cat.png"}),
    );
    assert_eq!(
        sent,
        vec![Message::with_parts(
            Role::User,
            vec![
                text("Is ![x](https://evil.test/x.png) a cat?"),
                image(&png_url())
            ]
        )]
    );
    // A path that is not an image is a row error naming it, not a file sent.
    let err = p
        .next_step(
            &template_context(&json!({"question": "q", "path": "notes.txt"}), Vec::new()),
            &Captures::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("`notes.txt` is not an image"), "{err}");
}

#[test]
fn image_inputs_are_parts_in_a_user_message_and_their_own_user_message_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        "name: m\ninputs:\n  - name: photo\n    kind: image\n  - name: question\n    kind: string",
        "system:\nYou see images.\n{{ photo }}\nAnswer in one word.\n\nuser:\n{{ question }}\n{{ photo }}",
    );
    assert_eq!(p.image_sources(), ["image input `photo`"]);
    let sent = messages(&p, json!({"photo": "cat.png", "question": "What animal?"}));
    assert_eq!(
        sent,
        vec![
            Message::text(Role::System, "You see images."),
            Message::with_parts(Role::User, vec![image(&png_url())]),
            Message::text(Role::System, "Answer in one word."),
            Message::with_parts(Role::User, vec![text("What animal?"), image(&png_url())]),
        ]
    );
    // Text after an image input starts a new message (the v2 runtime splits at the input).
    let after = program_in(
        dir.path(),
        "name: m\ninputs:\n  - name: photo\n    kind: image",
        "user[name=\"ann\"]:\nWhat is it?\n{{ photo }}\nOne word.",
    );
    assert_eq!(
        messages(&after, json!({"photo": "cat.png"})),
        vec![
            Message::with_parts(Role::User, vec![text("What is it?"), image(&png_url())])
                .named(Some("ann".into())),
            Message::text(Role::User, "One word.").named(Some("ann".into())),
        ]
    );
    // URLs pass through with their detail; a row without an image sends text alone.
    let sent = messages(
        &p,
        json!({"photo": {"url": "https://x.test/a.png", "detail": "low"}, "question": "q"}),
    );
    let ContentPart::ImageUrl { image_url } = &sent[3].parts[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(image_url.detail.as_deref(), Some("low"));
    let sent = messages(&p, json!({"question": "q"}));
    assert_eq!(
        sent,
        vec![
            Message::text(Role::System, "You see images.\n\nAnswer in one word."),
            Message::text(Role::User, "q"),
        ]
    );
}

#[test]
fn v1_image_input_inside_a_markdown_image() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        &format!("{V1}\ninputs:\n  image:\n    type: image"),
        "user:\nDescribe:\n![image]({{ image }})",
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(PNG);
    // Raw base64 of a PNG is sent as a PNG data URL.
    assert_eq!(
        messages(&p, json!({"image": encoded})),
        vec![Message::with_parts(
            Role::User,
            vec![text("Describe:"), image(&png_url())]
        )]
    );
}

#[test]
fn v1_thread_section_is_the_thread_then_its_text_as_a_user_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        V1,
        "system:\nYou chat.\n\n![thread]\n{{ question }}\n",
    );
    let sent = messages(
        &p,
        json!({
            "question": "And Germany?\n![thread]",
            "thread": [
                {"role": "user", "content": "Capital of France?", "name": "ann"},
                {"role": "assistant", "content": "Paris."}
            ]
        }),
    );
    assert_eq!(
        sent,
        vec![
            Message::text(Role::System, "You chat."),
            Message::text(Role::User, "Capital of France?").named(Some("ann".into())),
            Message::text(Role::Assistant, "Paris."),
            Message::text(Role::User, "And Germany?\n![thread]"),
        ]
    );
    // Without a thread and without text after the line, the section sends nothing.
    let p = program_in(dir.path(), V1, "system:\nYou chat.\n![thread]\n");
    assert_eq!(
        messages(&p, json!({})),
        vec![Message::text(Role::System, "You chat.")]
    );
    // A v2 file has no `![thread]` lines: it is text there.
    let p = program_in(dir.path(), "name: v2", "user:\n![thread]\nhi");
    assert_eq!(
        messages(&p, json!({})),
        vec![Message::text(Role::User, "![thread]\nhi")]
    );
}

#[test]
fn thread_messages_carry_images_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        "name: t\ninputs:\n  - name: history\n    kind: thread",
        "system:\nYou help.\n{{ history }}",
    );
    let sent = messages(
        &p,
        json!({"history": [
            {"role": "user", "name": "bo", "content": [
                {"type": "text", "text": "This one:"},
                {"type": "image_url", "image_url": {"url": "cat.png", "detail": "high"}},
                {"kind": "image", "source": "https://x.test/b.png"}
            ]}
        ]}),
    );
    let mut cat = image(&png_url());
    if let ContentPart::ImageUrl { image_url } = &mut cat {
        image_url.detail = Some("high".into());
    }
    assert_eq!(
        sent[1],
        Message::with_parts(
            Role::User,
            vec![text("This one:"), cat, image("https://x.test/b.png")]
        )
        .named(Some("bo".into()))
    );
    let err = p
        .next_step(
            &template_context(
                &json!({"history": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/b.png"}}]}]}),
                Vec::new(),
            ),
            &Captures::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("only in user messages"), "{err}");
}

#[test]
fn role_line_names_are_sent_and_unsendable_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = program_in(
        dir.path(),
        "name: n",
        "system[name=\"rules\"]:\nBe fair.\nuser[name=alice, mood=ok]:\nhi\nuser[name=\"{{ who }}\"]:\nhello",
    );
    let sent = messages(&p, json!({"who": "bob"}));
    assert_eq!(sent[0].name.as_deref(), Some("rules"));
    assert_eq!(sent[1].name.as_deref(), Some("alice"));
    assert_eq!(sent[2].name.as_deref(), Some("bob"));
    assert_eq!(
        sent[1].to_wire(),
        json!({"role": "user", "content": "hi", "name": "alice"})
    );
    let err = p
        .next_step(
            &template_context(&json!({"who": "Bob Smith"}), Vec::new()),
            &Captures::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"Bob Smith\" cannot be sent"), "{err}");
}

#[test]
fn wire_form_is_a_string_for_text_and_parts_with_images() {
    let m = Message::with_parts(Role::User, vec![text("a"), image("https://x.test/i.png")]);
    assert_eq!(
        m.to_wire(),
        json!({"role": "user", "content": [
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "https://x.test/i.png"}}
        ]})
    );
    // Text-only messages serialize as before images existed (cache keys unchanged).
    assert_eq!(
        serde_json::to_value(Message::text(Role::User, "a")).unwrap(),
        json!({"role": "user", "content": "a"})
    );
}
