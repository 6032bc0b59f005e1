//! Strings sampled from a `pattern`: a reader for the subset of ECMA-262
//! syntax that schemas use, and a sampler that draws characters from a hash.
//!
//! It only proposes candidates: whether one matches is for the regex engine
//! that validation uses (called from `generate`), so this file never checks
//! a match and need not read every pattern. Its limits bound the work that
//! a hostile pattern can cause. No I/O, and nothing else of the crate.

/// A regular expression read just far enough to sample strings from it.
pub(super) enum Regex {
    Literal(char),
    /// Inclusive ranges; a negated class matches what they do not cover.
    Class(Vec<(char, char)>, bool),
    /// `.`
    Any,
    /// Alternatives, each a sequence.
    Group(Vec<Vec<Regex>>),
    Repeat(Box<Regex>, u32, Option<u32>),
    /// Anchors, word boundaries, lookarounds and backreferences: sampling
    /// emits nothing for them.
    Empty,
}

/// Group nesting the regex reader accepts; deeper patterns are not sampled.
const REGEX_DEPTH_MAX: usize = 64;

/// Repetitions one quantifier contributes to a sample.
const REGEX_REPEAT_MAX: u32 = 1_000;

/// Characters of a sample, and steps spent making it.
const REGEX_SAMPLE_CHARS_MAX: usize = 4_096;
const REGEX_STEPS_MAX: usize = 20_000;

/// Characters a sample prefers when a class allows them: they read well and
/// survive any context.
const PREFERRED_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_- .";

/// Fallbacks for negated classes that exclude every preferred character.
const OTHER_CHARS: &str = "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~\u{e9}\u{3bb}\u{4e2d}";

const DIGITS: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[
    ('\t', '\r'),
    (' ', ' '),
    ('\u{a0}', '\u{a0}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{feff}', '\u{feff}'),
];

/// One escape: a character, a class of them, or a zero-width assertion.
enum Escape {
    Char(char),
    Class(Vec<(char, char)>, bool),
    Empty,
}

struct RegexReader {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Regex {
    /// Reads `pattern`; `None` for syntax the reader does not follow.
    pub(super) fn parse(pattern: &str) -> Option<Regex> {
        let mut reader = RegexReader {
            chars: pattern.chars().collect(),
            at: 0,
            depth: 0,
        };
        let alternatives = reader.alternatives()?;
        (reader.at == reader.chars.len()).then_some(Regex::Group(alternatives))
    }

    /// A string the expression matches (when it has no lookarounds or
    /// backreferences): first alternatives, `extra` more repetitions than
    /// each quantifier's minimum, characters drawn from `hash`.
    pub(super) fn sample(&self, hash: u64, extra: u32) -> String {
        let mut sampler = Sampler {
            state: hash,
            extra,
            out: String::new(),
            steps: 0,
        };
        sampler.sample(self);
        sampler.out
    }
}

impl RegexReader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn alternatives(&mut self) -> Option<Vec<Vec<Regex>>> {
        let mut alternatives = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.at += 1;
            alternatives.push(self.sequence()?);
        }
        Some(alternatives)
    }

    fn sequence(&mut self) -> Option<Vec<Regex>> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            nodes.push(self.quantified(atom)?);
        }
        Some(nodes)
    }

    fn atom(&mut self) -> Option<Regex> {
        match self.next()? {
            '^' | '$' => Some(Regex::Empty),
            '.' => Some(Regex::Any),
            '*' | '+' | '?' => None,
            '[' => self.class(),
            '\\' => Some(match self.escape(false)? {
                Escape::Char(c) => Regex::Literal(c),
                Escape::Class(ranges, negated) => Regex::Class(ranges, negated),
                Escape::Empty => Regex::Empty,
            }),
            '(' => {
                self.depth += 1;
                if self.depth > REGEX_DEPTH_MAX {
                    return None;
                }
                let mut zero_width = false;
                if self.peek() == Some('?') {
                    self.at += 1;
                    match self.next()? {
                        ':' => {}
                        '=' | '!' => zero_width = true,
                        '<' if matches!(self.peek(), Some('=' | '!')) => {
                            self.at += 1;
                            zero_width = true;
                        }
                        '<' => self.skip_name()?,
                        'P' if self.peek() == Some('<') => {
                            self.at += 1;
                            self.skip_name()?;
                        }
                        _ => return None,
                    }
                }
                let alternatives = self.alternatives()?;
                if self.next()? != ')' {
                    return None;
                }
                self.depth -= 1;
                Some(if zero_width {
                    Regex::Empty
                } else {
                    Regex::Group(alternatives)
                })
            }
            c => Some(Regex::Literal(c)),
        }
    }

    fn skip_name(&mut self) -> Option<()> {
        while self.next()? != '>' {}
        Some(())
    }

    fn quantified(&mut self, atom: Regex) -> Option<Regex> {
        let (min, max) = match self.peek() {
            Some('{') => match self.braces() {
                Some(bounds) => bounds,
                None => return Some(atom),
            },
            Some(symbol @ ('*' | '+' | '?')) => {
                self.at += 1;
                match symbol {
                    '*' => (0, None),
                    '+' => (1, None),
                    _ => (0, Some(1)),
                }
            }
            _ => return Some(atom),
        };
        // A lazy quantifier matches the same strings.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        if max.is_some_and(|max| max < min) {
            return None;
        }
        Some(Regex::Repeat(Box::new(atom), min, max))
    }

    /// `{n}`, `{n,}` or `{n,m}`, consumed; otherwise nothing is consumed and
    /// the `{` is a literal.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let start = self.at;
        let read = |reader: &mut RegexReader| -> Option<(u32, Option<u32>)> {
            reader.at += 1;
            let min = reader.number()?;
            let max = match reader.next()? {
                '}' => return Some((min, Some(min))),
                ',' if reader.peek() == Some('}') => None,
                ',' => Some(reader.number()?),
                _ => return None,
            };
            (reader.next()? == '}').then_some((min, max))
        };
        let bounds = read(self);
        if bounds.is_none() {
            self.at = start;
        }
        bounds
    }

    fn number(&mut self) -> Option<u32> {
        let mut number: Option<u32> = None;
        while let Some(digit) = self.peek().and_then(|c| c.to_digit(10)) {
            self.at += 1;
            number = Some(number.unwrap_or(0).saturating_mul(10).saturating_add(digit));
        }
        number
    }

    fn class(&mut self) -> Option<Regex> {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        loop {
            let first = match self.next()? {
                ']' => break,
                '\\' => match self.escape(true)? {
                    Escape::Char(c) => c,
                    Escape::Class(more, false) => {
                        ranges.extend(more);
                        continue;
                    }
                    Escape::Class(more, true) => {
                        ranges.extend(complement(&more));
                        continue;
                    }
                    Escape::Empty => continue,
                },
                c => c,
            };
            let is_range = self.peek() == Some('-')
                && self.chars.get(self.at + 1).is_some_and(|&next| next != ']');
            if !is_range {
                ranges.push((first, first));
                continue;
            }
            self.at += 1;
            let last = match self.next()? {
                '\\' => match self.escape(true)? {
                    Escape::Char(c) => c,
                    // `[a-\d]`: the dash is a literal.
                    Escape::Class(more, negated) => {
                        ranges.push((first, first));
                        ranges.push(('-', '-'));
                        ranges.extend(if negated { complement(&more) } else { more });
                        continue;
                    }
                    Escape::Empty => return None,
                },
                c => c,
            };
            if last < first {
                return None;
            }
            ranges.push((first, last));
        }
        Some(Regex::Class(ranges, negated))
    }

    fn escape(&mut self, in_class: bool) -> Option<Escape> {
        let c = self.next()?;
        Some(match c {
            'd' => Escape::Class(DIGITS.to_vec(), false),
            'D' => Escape::Class(DIGITS.to_vec(), true),
            'w' => Escape::Class(WORD.to_vec(), false),
            'W' => Escape::Class(WORD.to_vec(), true),
            's' => Escape::Class(SPACE.to_vec(), false),
            'S' => Escape::Class(SPACE.to_vec(), true),
            'b' if in_class => Escape::Char('\u{8}'),
            'b' | 'B' => Escape::Empty,
            't' => Escape::Char('\t'),
            'n' => Escape::Char('\n'),
            'r' => Escape::Char('\r'),
            'f' => Escape::Char('\u{c}'),
            'v' => Escape::Char('\u{b}'),
            '0' => Escape::Char('\0'),
            'x' => Escape::Char(self.hex_char(2)?),
            'u' if self.peek() == Some('{') => {
                self.at += 1;
                let mut code = 0u32;
                loop {
                    match self.next()? {
                        '}' => break,
                        c => code = code.checked_mul(16)?.checked_add(c.to_digit(16)?)?,
                    }
                }
                Escape::Char(char::from_u32(code)?)
            }
            'u' => Escape::Char(self.hex_char(4)?),
            'c' => Escape::Char(char::from_u32(u32::from(self.next()?) % 32)?),
            // Unicode properties: letters are the common ask; anything else
            // is left to the check.
            'p' | 'P' => {
                if self.peek() == Some('{') {
                    while self.next()? != '}' {}
                }
                Escape::Class(vec![('A', 'Z'), ('a', 'z')], c == 'P')
            }
            'k' => {
                if self.peek() == Some('<') {
                    self.skip_name()?;
                }
                Escape::Empty
            }
            '1'..='9' if !in_class => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                Escape::Empty
            }
            other => Escape::Char(other),
        })
    }

    fn hex_char(&mut self, digits: usize) -> Option<char> {
        let mut code = 0u32;
        for _ in 0..digits {
            code = code * 16 + self.next()?.to_digit(16)?;
        }
        char::from_u32(code)
    }
}

/// The characters that `ranges` does not cover, as ranges.
fn complement(ranges: &[(char, char)]) -> Vec<(char, char)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut next = 0u32;
    for (first, last) in sorted {
        let (first, last) = (u32::from(first), u32::from(last));
        if first > next {
            push_range(&mut out, next, first - 1);
        }
        next = next.max(last.saturating_add(1));
    }
    push_range(&mut out, next, u32::from(char::MAX));
    out
}

/// Adds `first..=last` as char ranges, skipping the surrogate gap.
fn push_range(out: &mut Vec<(char, char)>, first: u32, last: u32) {
    for (low, high) in [(first, last.min(0xd7ff)), (first.max(0xe000), last)] {
        if let (Some(low), Some(high)) = (char::from_u32(low), char::from_u32(high)) {
            if low <= high {
                out.push((low, high));
            }
        }
    }
}

struct Sampler {
    state: u64,
    extra: u32,
    out: String,
    steps: usize,
}

impl Sampler {
    /// SplitMix64: a fixed, portable sequence from the seed.
    fn draw(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn full(&self) -> bool {
        self.out.len() >= REGEX_SAMPLE_CHARS_MAX || self.steps >= REGEX_STEPS_MAX
    }

    fn sample(&mut self, node: &Regex) {
        self.steps += 1;
        if self.full() {
            return;
        }
        match node {
            Regex::Literal(c) => self.out.push(*c),
            Regex::Any => {
                let c = self.pick(&[('a', 'z')], false).unwrap_or('x');
                self.out.push(c);
            }
            Regex::Class(ranges, negated) => {
                if let Some(c) = self.pick(ranges, *negated) {
                    self.out.push(c);
                }
            }
            Regex::Group(alternatives) => {
                for node in alternatives.first().map_or(&[][..], Vec::as_slice) {
                    self.sample(node);
                }
            }
            Regex::Repeat(node, min, max) => {
                let mut count = min.saturating_add(self.extra);
                if let Some(max) = max {
                    count = count.min(*max);
                }
                for _ in 0..count.min(REGEX_REPEAT_MAX) {
                    if self.full() {
                        break;
                    }
                    self.sample(node);
                }
            }
            Regex::Empty => {}
        }
    }

    fn pick(&mut self, ranges: &[(char, char)], negated: bool) -> Option<char> {
        let inside = |c: char| ranges.iter().any(|&(low, high)| low <= c && c <= high);
        let preferred: Vec<char> = PREFERRED_CHARS
            .chars()
            .filter(|&c| inside(c) != negated)
            .collect();
        if !preferred.is_empty() {
            let index = (self.draw() % preferred.len() as u64) as usize;
            return preferred.get(index).copied();
        }
        if negated {
            return OTHER_CHARS.chars().find(|&c| !inside(c));
        }
        ranges.first().map(|&(low, _)| low)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn samples_match_their_patterns() {
        let patterns = [
            "^[A-Z]{3}-\\d{4}$",
            "^(foo|bar)+baz?$",
            "^[^a-z\\s]{3,5}$",
            "^\\w+@[a-z]+\\.(com|org)$",
            "^#[0-9a-fA-F]{6}$",
            "^(?:\\+|00)\\d{2} \\d{3}$",
            "^[\\u0041-\\u0043]\\x2D\\t?$",
            "a{2}{3}",
            "^[a-]{2}[-z]$",
            "^(?<year>\\d{4})-(?<month>0[1-9]|1[0-2])$",
        ];
        for pattern in patterns {
            let regex = Regex::parse(pattern).unwrap_or_else(|| panic!("{pattern} parses"));
            let check = jsonschema::validator_for(&json!({"pattern": pattern})).expect("compiles");
            for (hash, extra) in [(1, 0), (2, 1), (3, 5)] {
                let sample = regex.sample(hash, extra);
                assert!(check.is_valid(&json!(sample)), "{pattern}: {sample:?}");
            }
        }
    }

    #[test]
    fn unreadable_patterns_are_refused_not_panicked_on() {
        for pattern in ["(", "a)", "[z-a]", "*a", "(?i)a", "\\", "[a", "x{3,1}"] {
            assert!(Regex::parse(pattern).is_none(), "{pattern}");
        }
        let deep = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
        assert!(Regex::parse(&deep).is_none());
    }

    #[test]
    fn complement_covers_the_rest_without_surrogates() {
        let rest = complement(&[('0', '9')]);
        assert_eq!(rest.first(), Some(&('\0', '/')));
        assert!(rest.contains(&(':', '\u{d7ff}')));
        assert_eq!(rest.last(), Some(&('\u{e000}', char::MAX)));
    }
}
