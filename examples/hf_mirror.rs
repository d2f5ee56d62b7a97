//! A local Hugging Face hub serving a folder of dataset repositories (the test mirror, as a
//! program): `cargo run --example hf_mirror -- ROOT [ADDRESS]`, e.g.
//! `cargo run --example hf_mirror -- ../shared/data/mmlu/hf 127.0.0.1:8765`.
//! Prints the endpoint (for `HF_ENDPOINT`) on its first line and serves until killed.
//! `scripts/fetch-mmlu.sh` uses it to make the committed datasets with `evalr datasets fetch`.

#[path = "../tests/integration/common/hf_hub.rs"]
mod hf_hub;

use std::io::Write;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next().map(PathBuf::from) else {
        eprintln!("usage: hf_mirror ROOT [ADDRESS]  (ROOT holds OWNER/NAME/ repository folders)");
        std::process::exit(2);
    };
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let mirror = hf_hub::HubMirror::start_on(&root, &address);
    println!("{}", mirror.endpoint());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
