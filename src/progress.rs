//! Progress bars for long work, from one factory: drawn on stderr only when it is a terminal,
//! plain and colourless when `NO_COLOR` is set.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` units (rows, variants), with throughput and ETA; hidden when stderr is
/// not a terminal or `quiet` is set.
pub fn bar(total: u64, what: &str, unit: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target(quiet));
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let template = if colour {
        format!("{{prefix}} [{{bar:30.cyan/blue}}] {{human_pos}}/{{human_len}} {unit} · {{per_sec}} · ETA {{eta}}")
    } else {
        format!("{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} · {{per_sec}} · ETA {{eta}}")
    };
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar
}

fn target(quiet: bool) -> ProgressDrawTarget {
    if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}
