//! How things are printed: aligned tables, ages, colour only on a terminal.

use std::io::IsTerminal;

use capstan_model::Timestamp;

/// Colour on standard output: only on a terminal, never with `NO_COLOR` set (any value,
/// as no-color.org asks), never with `TERM=dumb`.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
        && std::io::stdout().is_terminal()
}

/// `text` in an ANSI colour (31 red, 32 green, 33 yellow) when colour is on.
pub fn paint(text: &str, code: u8) -> String {
    if colour() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Rows as kubectl prints them: columns padded to the widest cell, three spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An age as kubectl shows it: 45s, 12m, 5h, 3d.
pub fn age(since: Option<Timestamp>, now: Timestamp) -> String {
    let Some(since) = since else {
        return "<unknown>".to_string();
    };
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_rows_end_without_spaces() {
        let out = table(&[
            vec!["NAME".into(), "PHASE".into(), "".into()],
            vec!["demo-workers-abc".into(), "Running".into(), "".into()],
        ]);
        assert_eq!(
            out,
            "NAME               PHASE\ndemo-workers-abc   Running\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let ago = |s: i64| Timestamp::from_second(1_000_000 - s).ok();
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(600), now), "10m");
        assert_eq!(age(ago(3 * 86400), now), "3d");
    }
}
