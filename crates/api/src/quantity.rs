//! Resource quantities (`100m`, `1.5`, `64Mi`, `1G`, `1e3`) as numbers.

/// The value of a quantity in base units (cores for CPU, bytes for memory), or `None` when it
/// does not parse.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

/// Checks a quantity's text as apimachinery's `ParseQuantity` does (after trimming spaces),
/// with its error texts: the shape, then the numeric part, then the suffix.
pub fn check(q: &str) -> Result<(), &'static str> {
    const FORMAT: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    let q = q.trim();
    let unsigned = q.strip_prefix(['+', '-']).unwrap_or(q);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let letters = suffix
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(suffix.len());
    let (unit, exponent) = suffix.split_at(letters);
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if number.is_empty() || !exponent_digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FORMAT);
    }
    if number == "." || number.matches('.').count() > 1 {
        return Err("unable to parse numeric part of quantity");
    }
    let known = matches!(
        unit,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) && exponent.is_empty();
    let exponential = matches!(unit, "e" | "E") && !exponent_digits.is_empty();
    if known || exponential {
        Ok(())
    } else {
        Err("unable to parse quantity's suffix")
    }
}

#[cfg(test)]
mod tests {
    use super::{check, parse};

    #[test]
    fn quantities_are_checked_as_apimachinery_does() {
        for ok in [
            "1", "100m", "1.5Gi", "1e3", "-2", "+1k", " 64Mi ", "1E-2", ".5",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert!(check("abc").is_err_and(|e| e.starts_with("quantities must match")));
        assert!(check("").is_err_and(|e| e.starts_with("quantities must match")));
        assert_eq!(check("1ii"), Err("unable to parse quantity's suffix"));
        assert_eq!(
            check("1.2.3"),
            Err("unable to parse numeric part of quantity")
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("64Mi"), Some(67_108_864.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("5x"), None);
    }
}
