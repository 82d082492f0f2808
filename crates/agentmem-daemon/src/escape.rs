//! Client-supplied text (agent names, tenants) made safe to print on a
//! terminal or in a log line: control characters, including ESC and
//! newlines, are shown as escapes instead of being interpreted, so a name
//! can neither drive the terminal nor forge a table row or log line.

use std::fmt;

/// Displays its text with every control character escaped (`\n`, `\t`,
/// `\r`, `\\`, others as `\u{1b}`); printable text, non-ASCII letters
/// included, is shown as it is.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() || is_bidi_control(c) => {
                    for e in c.escape_default() {
                        f.write_char(e)?;
                    }
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Characters that reorder text on screen (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `s` with control characters escaped, as a `String`.
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_interpreted() {
        let evil = "a\x1b[2J\nroot  active\r\u{7}\u{202E}x\\";
        let e = escaped(evil);
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        assert_eq!(e, "a\\u{1b}[2J\\nroot  active\\r\\u{7}\\u{202e}x\\\\");
        assert_eq!(escaped("agent-é 7"), "agent-é 7");
    }
}
