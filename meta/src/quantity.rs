//! Exact resource quantities (`200m`, `32Mi`, `1.5`, `2e3`), as Go's `resource.Quantity` parses them.
//!
//! A [`Quantity`] is an integer count of milli-units (`i128`), so `1Ei` of memory and `1m` of CPU
//! are both exact and comparisons never go through floating point. Values finer than a milli-unit
//! (`1n`, `1u`) round up to the next milli-unit, as Go's `MilliValue` does.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Sub};
use std::str::FromStr;

/// Why a quantity string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not `<signed number><suffix>`: the message Kubernetes gives for such input.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// The number is well formed but its suffix is not one Kubernetes knows.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Too large to hold exactly.
    #[error("quantity is too large")]
    TooLarge,
}

/// How a quantity was written, kept so that it prints back in the same family of suffixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki`, `Mi`, `Gi`, …
    BinarySi,
    /// `m`, ``, `k`, `M`, `G`, …
    #[default]
    DecimalSi,
    /// `1e3`
    DecimalExponent,
}

/// An exact Kubernetes quantity; equality and order compare the amount, not the spelling.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    milli: i128,
    format: Format,
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity {
        milli: 0,
        format: Format::DecimalSi,
    };

    /// A quantity of `milli` thousandths of a unit.
    pub const fn from_milli(milli: i128) -> Self {
        Quantity {
            milli,
            format: Format::DecimalSi,
        }
    }

    /// A quantity of `value` whole units.
    pub const fn from_value(value: i128) -> Self {
        Self::from_milli(value * 1000)
    }

    /// Parses Kubernetes' quantity syntax. Leading and trailing spaces are refused, as in Go.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let bytes = input.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            _ => false,
        };
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &input[int_start..pos];
        let mut frac_digits = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &input[frac_start..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Format);
        }
        let suffix = &input[pos..];
        let (format, exp10, exp1024) = parse_suffix(suffix)?;

        // mantissa × 10^(exp10 - fraction digits) × 1024^exp1024, in milli-units.
        let frac_digits = frac_digits.trim_end_matches('0');
        let mut mantissa: i128 = 0;
        for d in int_digits.bytes().chain(frac_digits.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
                .ok_or(QuantityError::TooLarge)?;
        }
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| QuantityError::TooLarge)?;
        let mut amount = mantissa;
        for _ in 0..exp1024 {
            amount = amount.checked_mul(1024).ok_or(QuantityError::TooLarge)?;
        }
        let scale = exp10 + 3 - frac_len;
        let milli = if amount == 0 {
            0
        } else if scale >= 0 {
            let factor = 10i128
                .checked_pow(u32::try_from(scale).map_err(|_| QuantityError::TooLarge)?)
                .ok_or(QuantityError::TooLarge)?;
            amount.checked_mul(factor).ok_or(QuantityError::TooLarge)?
        } else {
            // Finer than a milli-unit: round away from zero, as Go's MilliValue rounds up.
            // (amount is not negative; `amount + divisor - 1` could overflow near i128::MAX.)
            match 10i128.checked_pow(scale.unsigned_abs()) {
                Some(divisor) => amount / divisor + i128::from(amount % divisor != 0),
                None => 1,
            }
        };
        Ok(Quantity {
            milli: if negative { -milli } else { milli },
            format,
        })
    }

    /// The amount in milli-units (rounded up when finer, as Go's `MilliValue`).
    pub const fn milli(self) -> i128 {
        self.milli
    }

    /// The amount in whole units, rounded up (as Go's `Value`: `1500m` is 2).
    pub const fn value(self) -> i128 {
        self.milli.div_euclid(1000)
            + if self.milli.rem_euclid(1000) != 0 {
                1
            } else {
                0
            }
    }

    /// [`milli`](Self::milli), saturated to `i64`.
    pub fn milli_i64(self) -> i64 {
        saturate(self.milli)
    }

    /// [`value`](Self::value), saturated to `i64`.
    pub fn value_i64(self) -> i64 {
        saturate(self.value())
    }

    pub const fn is_zero(self) -> bool {
        self.milli == 0
    }

    /// The spelling family this quantity was parsed from.
    pub const fn format(self) -> Format {
        self.format
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `(format, power of ten, power of 1024)` of a suffix.
fn parse_suffix(suffix: &str) -> Result<(Format, i32, u32), QuantityError> {
    let decimal = |e| Ok((Format::DecimalSi, e, 0));
    let binary = |p| Ok((Format::BinarySi, 0, p));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Format);
            }
            let e: i32 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
            if e.abs() > 60 {
                return Err(QuantityError::TooLarge);
            }
            Ok((Format::DecimalExponent, e, 0))
        }
        s if s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-') =>
        {
            Err(QuantityError::Suffix)
        }
        _ => Err(QuantityError::Format),
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}
impl Eq for Quantity {}
impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.milli.hash(state);
    }
}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.milli.cmp(&other.milli)
    }
}

/// The sum keeps the left side's format, or takes the right side's when the left is zero (as Go's
/// `Quantity.Add`: `0 + 512Mi` prints `512Mi`).
impl Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Quantity) -> Quantity {
        Quantity {
            milli: self.milli.saturating_add(rhs.milli),
            format: if self.milli == 0 {
                rhs.format
            } else {
                self.format
            },
        }
    }
}
impl Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Quantity) -> Quantity {
        Quantity {
            milli: self.milli.saturating_sub(rhs.milli),
            format: self.format,
        }
    }
}
impl Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::ZERO, Add::add)
    }
}

/// The canonical spelling, as Go's `Quantity.String()`: the largest exact suffix of the family the
/// quantity was written in (`1024Mi` prints as `1Gi`, `1000` as `1k`, `1500m` as `1500m`).
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = self.milli;
        if milli == 0 {
            return f.write_str("0");
        }
        if milli % 1000 != 0 {
            return write!(f, "{milli}m");
        }
        let value = milli / 1000;
        if self.format == Format::BinarySi {
            let mut v = value;
            let mut i = 0;
            while i < 6 && v % 1024 == 0 {
                v /= 1024;
                i += 1;
            }
            if i > 0 {
                return write!(f, "{v}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i]);
            }
            // Not a whole number of Ki: Go falls back to decimal.
        }
        let mut v = value;
        let mut i = 0;
        while i < 6 && v % 1000 == 0 {
            v /= 1000;
            i += 1;
        }
        if self.format == Format::DecimalExponent && i > 0 {
            return write!(f, "{v}e{}", i * 3);
        }
        write!(f, "{v}{}", ["", "k", "M", "G", "T", "P", "E"][i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Found fuzzing the quantity parser (read in the code the target reaches, then replayed by
    /// the target): rounding a value finer than a milli-unit up overflowed near i128::MAX.
    #[test]
    fn rounding_up_the_largest_mantissa_does_not_overflow() {
        // 39 fraction digits (i128::MAX): 0.17014…7 is 170.14…m, rounded away from zero.
        assert_eq!(q("0.170141183460469231731687303715884105727").milli(), 171);
        assert_eq!(
            q("-0.170141183460469231731687303715884105727").milli(),
            -171
        );
        assert_eq!(
            q("170141183460469231731687303715884105.727").milli(),
            170141183460469231731687303715884105727
        );
        assert_eq!(
            q("17014118346046923173168730371588410572.7n").milli(),
            17014118346046923173168730371589
        );
    }

    #[test]
    fn parses_every_suffix_exactly() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", 1000),
            ("200m", 200),
            ("1.5", 1500),
            (".5", 500),
            ("5.", 5000),
            ("+2", 2000),
            ("-2", -2000),
            ("1n", 1),
            ("1500u", 2),
            ("1000000n", 1),
            ("1k", 1_000_000),
            ("64M", 64_000_000_000),
            ("1G", 1_000_000_000_000),
            ("32Mi", (32i128 << 20) * 1000),
            ("1Gi", (1i128 << 30) * 1000),
            ("1.5Gi", (3i128 << 29) * 1000),
            ("1Ei", (1i128 << 60) * 1000),
            ("8E", 8_000_000_000_000_000_000_000),
            ("2e3", 2_000_000),
            ("2E3", 2_000_000),
            ("2e-3", 2),
            ("1.25e+1", 12_500),
            ("0.000", 0),
        ];
        for (s, milli) in cases {
            assert_eq!(q(s).milli(), *milli, "{s}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "", " 1", "1 ", "junk", "1.2.3", "Mi", "-", "1Qi", "1e", "1e+", "1mi", "1 Gi",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Quantity::parse("12Q"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1e999"), Err(QuantityError::TooLarge));
        assert_eq!(
            Quantity::parse("99999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn value_rounds_up_like_go() {
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1").value(), 1);
        assert_eq!(q("1m").value(), 1);
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("-1500m").value(), -1);
        assert_eq!(q("32Mi").value_i64(), 32 << 20);
        assert_eq!(q("8Ei").value_i64(), i64::MAX);
    }

    #[test]
    fn compares_amounts_not_spellings() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("100m") < q("0.2"));
        assert_eq!(
            [q("100m"), q("0.4"), q("1")].into_iter().sum::<Quantity>(),
            q("1.5")
        );
        assert!(q("0.0").is_zero());
    }

    #[test]
    fn prints_canonically() {
        for (input, out) in [
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1000", "1k"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("2e3", "2e3"),
            ("0", "0"),
            ("1500", "1500"),
        ] {
            assert_eq!(q(input).to_string(), out, "{input}");
        }
    }
}
