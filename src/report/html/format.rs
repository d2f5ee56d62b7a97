//! How numbers read on the pages: the template filters (`pct`, `pp`, `ms`, `num`, `money`,
//! `ci`, `fixed`, `pvalue`, which prints the "p" too). They return plain text; the template escapes it like any value.

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

pub fn register(env: &mut Environment<'_>) {
    // minijinja prints booleans the Python way ("True"/"False"); the pages' scripts and
    // tests read `data-*` attributes as JavaScript booleans, so print them as "true"/"false".
    env.set_formatter(|out, state, value| {
        if value.kind() == ValueKind::Bool {
            let text = if value.is_true() { "true" } else { "false" };
            return out.write_str(text).map_err(Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.add_filter("pct", |x: f64| pct(x, 1));
    env.add_filter("pct0", |x: f64| pct(x, 0));
    env.add_filter("pp", pp);
    env.add_filter("pp_plain", |x: f64| format!("{:.1} pp", x * 100.0));
    env.add_filter("ms", |x: f64| format!("{} ms", thousands(x.round() as i64)));
    env.add_filter("num", num);
    env.add_filter("money", money);
    env.add_filter("ci", ci);
    env.add_filter("fixed", |x: f64, digits: Option<usize>| {
        format!("{x:.*}", digits.unwrap_or(2))
    });
    env.add_filter("pvalue", pvalue);
}

pub fn pct(x: f64, digits: usize) -> String {
    format!("{:.*}%", digits, x * 100.0)
}

/// Percentage points, signed; a change that rounds to zero reads "0.0 pp", not "-0.0 pp".
pub fn pp(x: f64) -> String {
    let value = x * 100.0;
    if value.abs() < 0.05 {
        "0.0 pp".to_string()
    } else {
        format!("{value:+.1} pp")
    }
}

/// An interval of proportions: "41.7% – 71.4%".
fn ci(interval: Value) -> Result<String, Error> {
    let bound = |i: usize| -> Result<f64, Error> {
        let value = interval.get_item(&Value::from(i))?;
        f64::try_from(value).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                "ci expects two numbers [low, high]",
            )
        })
    };
    Ok(format!("{} – {}", pct(bound(0)?, 1), pct(bound(1)?, 1)))
}

/// Integers with thousands separators (14,042); other numbers as they are.
fn num(value: Value) -> String {
    match i64::try_from(value.clone()) {
        Ok(n) => thousands(n),
        Err(_) => value.to_string(),
    }
}

pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "$0.0112", "$0.000712" (small sums keep six decimals), "0.5000 EUR".
pub fn money(x: f64, currency: Option<String>) -> String {
    let currency = currency.unwrap_or_else(|| "USD".to_string());
    let (symbol, suffix) = if currency == "USD" {
        ("$", String::new())
    } else {
        ("", format!(" {currency}"))
    };
    if x != 0.0 && x.abs() < 0.01 {
        format!("{symbol}{x:.6}{suffix}")
    } else {
        format!("{symbol}{x:.4}{suffix}")
    }
}

/// A p-value with its "p": `p = 0.0063` or `p < 0.0001` ([`crate::report::format_p`]).
pub fn pvalue(p: f64) -> String {
    crate::report::format_p(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_in_the_markdown_report() {
        assert_eq!(pct(0.575, 1), "57.5%");
        assert_eq!(pp(0.25), "+25.0 pp");
        assert_eq!(pp(-0.0004), "0.0 pp");
        assert_eq!(thousands(14042), "14,042");
        assert_eq!(thousands(-1234567), "-1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(money(0.000712, Some("USD".into())), "$0.000712");
        assert_eq!(money(0.5, Some("EUR".into())), "0.5000 EUR");
        assert_eq!(pvalue(0.00631), "p = 0.0063");
        assert_eq!(pvalue(0.00001), "p < 0.0001");
        assert_eq!(
            ci(Value::from(vec![0.417, 0.714])).expect("interval"),
            "41.7% – 71.4%"
        );
    }
}
