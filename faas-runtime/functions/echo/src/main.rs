//! echo — a Sluice binary-mode function: the request body arrives on stdin and whatever is
//! written to stdout becomes the response body. Bytes are copied unchanged (not just UTF-8).
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut body = Vec::new();
    if let Err(e) = io::stdin().lock().read_to_end(&mut body) {
        eprintln!("echo: cannot read the request body: {e}");
        return ExitCode::FAILURE;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(&body).and_then(|()| out.flush()) {
        eprintln!("echo: cannot write the response: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
