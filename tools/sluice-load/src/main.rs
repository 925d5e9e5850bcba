//! `sluice-load`: the load-test tool. Drives one function through the gateway at a target
//! request rate (open loop), shows a live per-second table with the function's replicas,
//! and writes `load.csv`, `load.png` and `summary.json`.
//!
//! Module map:
//! * [`cli`] — flags and their resolution (bad arguments exit 2, naming the flag).
//! * [`profile`] — `constant:` / `steps:` / `ramp:` profiles and arrival times.
//! * [`duration`] — `500ms` / `20s` / `2m`.
//! * [`run`] — arrivals, requests, the concurrency cap, the live table.
//! * [`replicas`] — the once-a-second system API poller.
//! * [`stats`] — per-second records and percentiles.
//! * [`report`] — table rows, CSV, summary text and JSON.
//! * [`chart`] — the PNG (plotters) and its font.
//!
//! Exit status: 0 when every sent request answered 2xx, 1 when any failed (or the results
//! could not be written), 2 on bad arguments.
#![forbid(unsafe_code)]

mod chart;
mod cli;
mod duration;
mod profile;
mod replicas;
mod report;
mod run;
mod stats;

use std::path::Path;
use std::process::ExitCode;

use chart::FontChoice;
use clap::error::ErrorKind;
use clap::CommandFactory;

/// Exits with status 2 and clap's formatting for a problem with one flag.
fn bad_argument(msg: String) -> ! {
    cli::Args::command()
        .error(ErrorKind::ValueValidation, msg)
        .exit()
}

fn write_file(path: &Path, contents: &[u8]) -> Result<String, String> {
    std::fs::write(path, contents)
        .map(|_| path.display().to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let settings = cli::parse();
    let font = match chart::load_font(&settings.font) {
        Ok(f) => f,
        Err(e) => bad_argument(format!(
            "invalid value '{}' for '--font': {e}",
            settings.font
        )),
    };
    if let Err(e) = std::fs::create_dir_all(&settings.out) {
        bad_argument(format!(
            "invalid value '{}' for '--out': cannot create the folder: {e}",
            settings.out.display()
        ));
    }
    if settings.font == "auto" && font == FontChoice::NoText {
        eprintln!(
            "sluice-load: no font found (tried {}); load.png will have no text. \
             Install fonts-dejavu-core or pass --font <file.ttf>.",
            chart::FONT_CANDIDATES.join(", ")
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!(
        "sluice-load: {} {} profile {} for {}, concurrency {}, replicas from {}",
        settings.method,
        settings.url,
        settings.profile,
        duration::format_duration(settings.duration),
        settings.concurrency,
        settings.replicas_url
    );
    let out = match runtime.block_on(run::run(&settings)) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("sluice-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(runtime);

    let totals = report::Totals::of(&out.seconds);
    let elapsed = out.elapsed.as_secs_f64();
    let mut files = Vec::new();
    let mut write_errors = Vec::new();
    let mut keep = |r: Result<String, String>| match r {
        Ok(f) => files.push(f),
        Err(e) => write_errors.push(e),
    };
    keep(write_file(
        &settings.out.join("load.csv"),
        report::csv(&out.seconds).as_bytes(),
    ));
    let png = settings.out.join("load.png");
    let title = format!(
        "{} {} — {}",
        settings.method, settings.url, settings.profile
    );
    keep(
        chart::draw(
            &png,
            &out.seconds,
            &settings.profile,
            settings.duration.as_secs_f64(),
            &title,
            font != FontChoice::NoText,
        )
        .map(|_| png.display().to_string())
        .map_err(|e| format!("cannot draw {}: {e}", png.display())),
    );
    let json = report::summary_json(&settings, &totals, &started_at, elapsed, out.interrupted);
    let json = serde_json::to_vec_pretty(&json).unwrap_or_default();
    keep(write_file(&settings.out.join("summary.json"), &json));

    print!(
        "{}",
        report::summary_text(&settings, &totals, elapsed, &files)
    );
    for e in &write_errors {
        eprintln!("sluice-load: {e}");
    }
    if !write_errors.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::from(totals.exit_code())
}
