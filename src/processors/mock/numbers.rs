//! Numbers for numeric schemas: the bounds a schema sets, and multiples of
//! `multipleOf` kept in decimal, so they print as the validator reads them.
//!
//! Plain arithmetic: no I/O, no hashing, and no schema walking beyond the
//! bound keywords of the one schema object it is given.

use serde_json::Value;

use crate::model::JsonObject;

/// Numeric bounds of a schema, draft 4 boolean exclusives included.
pub(super) struct Bounds {
    pub(super) lower: Option<(f64, bool)>,
    pub(super) upper: Option<(f64, bool)>,
}

impl Bounds {
    pub(super) fn of(schema: &JsonObject) -> Bounds {
        let side = |inclusive: &str, exclusive: &str, lower: bool| {
            let mut bound = schema
                .get(inclusive)
                .and_then(Value::as_f64)
                .filter(|limit| limit.is_finite())
                .map(|limit| (limit, false));
            match schema.get(exclusive) {
                Some(Value::Bool(true)) => bound = bound.map(|(limit, _)| (limit, true)),
                Some(value) => {
                    if let Some(limit) = value.as_f64().filter(|limit| limit.is_finite()) {
                        let tighter = bound.is_none_or(|(current, _)| {
                            if lower {
                                limit >= current
                            } else {
                                limit <= current
                            }
                        });
                        if tighter {
                            bound = Some((limit, true));
                        }
                    }
                }
                None => {}
            }
            bound
        };
        Bounds {
            lower: side("minimum", "exclusiveMinimum", true),
            upper: side("maximum", "exclusiveMaximum", false),
        }
    }

    pub(super) fn contains(&self, number: f64) -> bool {
        let above = self.lower.is_none_or(|(limit, exclusive)| {
            if exclusive {
                number > limit
            } else {
                number >= limit
            }
        });
        let below = self.upper.is_none_or(|(limit, exclusive)| {
            if exclusive {
                number < limit
            } else {
                number <= limit
            }
        });
        above && below
    }

    /// The multiple of `step` within bounds that is nearest to `target`.
    pub(super) fn multiple_near(&self, step: Decimal, target: f64) -> Option<Value> {
        let size = step.to_f64()?;
        // Multiples past 2^53 steps are not exact in f64; no plausible
        // output needs them.
        let limit = (1u64 << 53) as f64;
        let first = self
            .lower
            .map_or(-limit, |(bound, _)| (bound / size).ceil());
        let last = self
            .upper
            .map_or(limit, |(bound, _)| (bound / size).floor());
        // Float division can land one step off either way; the candidates
        // around the clamped target are checked exactly below.
        let first = first.max(-limit) - 1.0;
        let last = last.min(limit) + 1.0;
        if first > last {
            return None;
        }
        let k = (target / size).round().clamp(first, last);
        [0.0, 1.0, -1.0, 2.0, -2.0]
            .into_iter()
            .map(|offset| k + offset)
            .filter(|k| k.abs() <= limit)
            .filter_map(|k| step.times(k as i64))
            .find(|value| value.as_f64().is_some_and(|number| self.contains(number)))
    }

    /// Something near the bounds when no multiple fits: the schema is
    /// unsatisfiable or beyond the generator.
    pub(super) fn fallback(&self, integer: bool) -> Value {
        let number = match (self.lower, self.upper) {
            (Some((low, _)), Some((high, _))) => low + (high - low) / 2.0,
            (Some((low, _)), None) => low + 1.0,
            (None, Some((high, _))) => high - 1.0,
            (None, None) => 0.0,
        };
        if integer && number.fract() == 0.0 && number.abs() < (1u64 << 53) as f64 {
            return Value::from(number as i64);
        }
        Value::from(number)
    }
}

/// A decimal `mantissa / 10^scale`, so multiples print exactly as the
/// validator reads them (it divides in decimal, not binary).
#[derive(Debug, Clone, Copy)]
pub(super) struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    pub(super) fn new(mantissa: i128, scale: u32) -> Decimal {
        Decimal { mantissa, scale }
    }

    /// A positive float as the shortest decimal that reads back as it.
    pub(super) fn of(number: f64) -> Option<Decimal> {
        let text = format!("{number}");
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let digits = format!("{whole}{fraction}");
        let mantissa: i128 = digits.parse().ok()?;
        let scale = u32::try_from(fraction.len()).ok()?;
        (mantissa > 0).then_some(Decimal { mantissa, scale })
    }

    /// The smallest whole multiple of this decimal, for `integer` with a
    /// fractional `multipleOf` (0.5 gives 1, 0.3 gives 3).
    pub(super) fn whole_multiple(self) -> Option<Decimal> {
        let power = 10i128.checked_pow(self.scale)?;
        let divisor = gcd(self.mantissa, power);
        Some(Decimal::new(self.mantissa.checked_div(divisor)?, 0))
    }

    fn to_f64(self) -> Option<f64> {
        // Parsing rounds correctly everywhere; `powi` need not.
        let size: f64 = format!("{}e-{}", self.mantissa, self.scale).parse().ok()?;
        (size.is_finite() && size > 0.0).then_some(size)
    }

    /// `k` times this decimal as a JSON number: an integer when whole.
    fn times(self, k: i64) -> Option<Value> {
        let product = self.mantissa.checked_mul(i128::from(k))?;
        let power = 10i128.checked_pow(self.scale)?;
        if product % power == 0 {
            return i64::try_from(product / power).ok().map(Value::from);
        }
        let sign = if product < 0 { "-" } else { "" };
        let magnitude = product.unsigned_abs();
        let power = power.unsigned_abs();
        let fraction = format!("{:0width$}", magnitude % power, width = self.scale as usize);
        let text = format!(
            "{sign}{}.{}",
            magnitude / power,
            fraction.trim_end_matches('0')
        );
        let number: f64 = text.parse().ok()?;
        serde_json::Number::from_f64(number).map(Value::Number)
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decimals_print_as_the_validator_reads_them() {
        let cents = Decimal::of(0.01).expect("decimal");
        assert_eq!(cents.times(4250), Some(json!(42.5)));
        assert_eq!(cents.times(-7), Some(json!(-0.07)));
        assert_eq!(cents.times(300), Some(json!(3)));
        let whole = |m: f64| {
            Decimal::of(m)
                .and_then(Decimal::whole_multiple)
                .map(|d| d.mantissa)
        };
        assert_eq!(whole(0.5), Some(1));
        assert_eq!(whole(0.3), Some(3));
        assert_eq!(whole(2.5), Some(5));
        assert_eq!(whole(7.0), Some(7));
        assert!(Decimal::of(1e300).is_none());
    }
}
