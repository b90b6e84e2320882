//! Stream-id glob patterns with SQLite's `GLOB` semantics, so every backend selects
//! the same streams: `*` matches any run of characters, `?` exactly one, `[abc]`
//! one of a set, `[a-z]` a range, `[^abc]` anything but the set. A `]` right after
//! `[` or `[^` is part of the set. Matching is case-sensitive; to match a literal
//! `*`, `?` or `[`, put it in a set (`[*]`). An unclosed `[` matches nothing.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Any,
    One,
    Literal(char),
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
    /// An unclosed `[`: the pattern matches nothing (as in SQLite).
    Broken,
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' => tokens.push(Token::Any),
            '?' => tokens.push(Token::One),
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut items = Vec::new();
                let mut first = true;
                let mut closed = false;
                while let Some(&c) = chars.get(i) {
                    i += 1;
                    if c == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
                        let high = chars.get(i + 1).copied().unwrap_or(c);
                        items.push((c, high));
                        i += 2;
                    } else {
                        items.push((c, c));
                    }
                }
                tokens.push(if closed {
                    Token::Set { negated, items }
                } else {
                    Token::Broken
                });
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    tokens
}

/// True if `text` matches the glob `pattern`.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let tokens = tokenize(pattern);
    let text: Vec<char> = text.chars().collect();
    // Classic wildcard matching with backtracking to the last `*`.
    let (mut t, mut p) = (0_usize, 0_usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match (tokens.get(p), text.get(t)) {
            (Some(Token::Any), _) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            (Some(Token::One), Some(_)) => true,
            (Some(Token::Literal(l)), Some(c)) => l == c,
            (Some(Token::Set { negated, items }), Some(c)) => {
                items.iter().any(|&(lo, hi)| lo <= *c && *c <= hi) != *negated
            }
            _ => false,
        };
        if step {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    tokens
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|tok| *tok == Token::Any))
}

/// The same pattern as an anchored POSIX regular expression (PostgreSQL's `~`).
pub fn to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    for token in tokenize(pattern) {
        match token {
            Token::Any => re.push_str(".*"),
            Token::One => re.push('.'),
            Token::Literal(c) => push_escaped(&mut re, c),
            Token::Set { negated, items } => {
                re.push('[');
                if negated {
                    re.push('^');
                }
                for (lo, hi) in items {
                    push_in_class(&mut re, lo);
                    if lo != hi {
                        re.push('-');
                        push_in_class(&mut re, hi);
                    }
                }
                re.push(']');
            }
            // Matches nothing: a character class that excludes everything.
            Token::Broken => re.push_str("[^\\s\\S]"),
        }
    }
    re.push('$');
    re
}

fn push_escaped(re: &mut String, c: char) {
    if "\\^$.|?*+()[]{}".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

fn push_in_class(re: &mut String, c: char) {
    if "\\^-[]".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn glob_semantics() {
        let cases = [
            ("order-*", "order-42", true),
            ("order-*", "orders-1", false),
            ("order-?", "order-4", true),
            ("order-?", "order-42", false),
            ("*-4[0-9]", "order-42", true),
            ("*-4[^0-9]", "order-42", false),
            ("[]]x", "]x", true),
            ("a[*]", "a*", true),
            ("a[*]", "ab", false),
            ("a[b", "a[b", false),
            ("*", "", true),
            ("Order-*", "order-1", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("ü?", "üx", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn regex_escapes_everything_literal() {
        assert_eq!(super::to_regex("a.b*"), "^a\\.b.*$");
        assert_eq!(super::to_regex("x[^a-c]?"), "^x[^a-c].$");
    }
}
