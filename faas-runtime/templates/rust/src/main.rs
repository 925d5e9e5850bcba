//! A Sluice function in Rust (binary mode).
//!
//! The runtime runs this program once per request:
//! * the request body arrives on stdin;
//! * whatever is written to stdout becomes the 200 response body (its Content-Type is
//!   `SLUICE_CONTENT_TYPE`, default `text/plain`);
//! * exiting non-zero makes the response a 500 whose error message is the start of stderr;
//! * request details are in the environment: `Http_Method`, `Http_Path`, `Http_Query`
//!   (the raw query string) and one `Http_<Header_Name>` per header, e.g.
//!   `Http_Content_Type`, `Http_X_Request_Id`.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut body = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut body) {
        eprintln!("cannot read the request body: {e}");
        return ExitCode::FAILURE;
    }
    let method = std::env::var("Http_Method").unwrap_or_default();
    let path = std::env::var("Http_Path").unwrap_or_default();
    let reply = format!("{method} {path}: received {} bytes\n", body.len());
    if let Err(e) = io::stdout().write_all(reply.as_bytes()) {
        eprintln!("cannot write the response: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
