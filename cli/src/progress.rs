//! Progress on stderr for long work: spinners and byte bars (`indicatif`) on a terminal, plain
//! lines without escape codes otherwise (a pipe, a log file, a dumb terminal, `NO_COLOR`
//! does not matter: only whether stderr is a terminal and `TERM` is not `dumb`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use skiff_registry::{Digest, PushProgress};

/// Whether progress is drawn (stderr is a terminal that understands cursor movement).
pub(crate) fn on_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// A spinner's style: `⠋ step: message (3s)`.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {wide_msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// One step after another ("push", "apply", "rollout", …): a spinner on a terminal, a line
/// when each starts and ends otherwise.
pub(crate) struct Steps {
    bar: Option<ProgressBar>,
    step: String,
    started: Instant,
}

impl Steps {
    pub(crate) fn new() -> Steps {
        Steps {
            bar: None,
            step: String::new(),
            started: Instant::now(),
        }
    }

    /// Starts a step.
    pub(crate) fn start(&mut self, step: &str) {
        self.step = step.to_string();
        self.started = Instant::now();
        if on_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(spinner_style());
            bar.set_prefix(step.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            self.bar = Some(bar);
        } else {
            eprintln!("{step}...");
        }
    }

    /// Starts a step whose progress something else draws (a push's byte bars).
    pub(crate) fn start_quiet(&mut self, step: &str) {
        self.step = step.to_string();
        self.started = Instant::now();
        if !on_terminal() {
            eprintln!("{step}...");
        }
    }

    /// Says how the step is going (only a terminal shows every update).
    pub(crate) fn update(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        }
    }

    /// Prints a line above the spinner (or just a line).
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Ends the step with what it did.
    pub(crate) fn done(&mut self, msg: &str) {
        let took = self.started.elapsed().as_secs_f64();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!("\u{2713} {}: {msg} ({took:.1}s)", self.step);
        } else {
            eprintln!("{}: {msg} ({took:.1}s)", self.step);
        }
    }

    /// Ends the step and removes its spinner, printing nothing.
    pub(crate) fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Ends the step without a result (an error follows).
    pub(crate) fn fail(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!("\u{2717} {}", self.step);
        } else if !self.step.is_empty() {
            eprintln!("{}: failed", self.step);
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Byte bars for the blobs a push uploads, one per blob, labelled `label`; plain lines at
/// every tenth otherwise.
pub(crate) struct PushBars {
    label: String,
    multi: Option<MultiProgress>,
    blobs: Mutex<HashMap<Digest, Blob>>,
}

/// One blob being uploaded.
enum Blob {
    Bar(ProgressBar),
    /// The last tenth printed.
    Plain(u64),
}

impl PushBars {
    /// Bars for pushing to `label` (a reference, a component).
    pub(crate) fn new(label: &str) -> PushBars {
        PushBars {
            label: label.to_string(),
            multi: on_terminal()
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10))),
            blobs: Mutex::new(HashMap::new()),
        }
    }

    fn short(digest: &Digest) -> String {
        let hex = digest.hex();
        format!(
            "{}:{}",
            digest.algorithm().as_str(),
            &hex[..hex.len().min(12)]
        )
    }
}

impl PushProgress for PushBars {
    fn blob_started(&self, digest: &Digest, total: u64) {
        let blob = match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(format!("push {} {}", self.label, Self::short(digest)));
                bar.tick();
                Blob::Bar(bar)
            }
            None => {
                eprintln!(
                    "push {} {}: 0% of {}",
                    self.label,
                    Self::short(digest),
                    HumanBytes(total)
                );
                Blob::Plain(0)
            }
        };
        if let Ok(mut blobs) = self.blobs.lock() {
            blobs.insert(digest.clone(), blob);
        }
    }

    fn blob_progress(&self, digest: &Digest, sent: u64, total: u64) {
        let Ok(mut blobs) = self.blobs.lock() else {
            return;
        };
        match blobs.get_mut(digest) {
            Some(Blob::Bar(bar)) => bar.set_position(sent),
            Some(Blob::Plain(last)) => {
                let tenth = (sent.saturating_mul(10)) / total.max(1);
                if tenth > *last && tenth < 10 {
                    *last = tenth;
                    eprintln!(
                        "push {} {}: {}% ({} of {})",
                        self.label,
                        Self::short(digest),
                        tenth * 10,
                        HumanBytes(sent),
                        HumanBytes(total)
                    );
                }
            }
            None => {}
        }
    }

    fn blob_done(&self, digest: &Digest, total: u64, existed: bool) {
        let blob = self.blobs.lock().ok().and_then(|mut b| b.remove(digest));
        match blob {
            Some(Blob::Bar(bar)) => bar.finish(),
            Some(Blob::Plain(_)) => eprintln!(
                "push {} {}: 100% ({})",
                self.label,
                Self::short(digest),
                HumanBytes(total)
            ),
            None if existed && total > 64 * 1024 => eprintln!(
                "push {} {}: already in the registry ({})",
                self.label,
                Self::short(digest),
                HumanBytes(total)
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_push_lines_count_tenths() {
        // Tests run with stderr captured (not a terminal): plain lines, no panic on odd sizes.
        let bars = PushBars::new("x");
        let d = Digest::sha256_of(b"blob");
        bars.blob_started(&d, 0);
        bars.blob_progress(&d, 0, 0);
        bars.blob_done(&d, 0, false);
        bars.blob_started(&d, 100);
        for sent in [5, 10, 55, 100] {
            bars.blob_progress(&d, sent, 100);
        }
        bars.blob_done(&d, 100, false);
        assert!(bars.blobs.lock().unwrap().is_empty());
    }
}
