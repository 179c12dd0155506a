//! Progress bars for long work. indicatif hides them when stderr is not a terminal (CI, logs).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items of `unit` (e.g. "mol", "graphs") with rate and ETA.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    bar
}
