//! What a plugin may declare and record with capability `metrics`, stated once: the gateway's
//! host (`gateway/src/plugin/host/metrics.rs`) and the SDK's test host check with these same
//! functions, so a declaration a unit test accepts is one the gateway accepts.
//!
//! Every series a plugin can create is known when it declares its metrics: each label lists
//! every value it may take, and a plugin's declarations together stay under
//! [`MAX_SERIES_PER_PLUGIN`] label combinations.

/// Labels per metric (besides `plugin`).
pub const MAX_LABELS: usize = 8;
/// Values per label.
pub const MAX_LABEL_VALUES: usize = 64;
/// Bytes per label value.
pub const MAX_VALUE_BYTES: usize = 64;
/// Bytes of a metric or label name.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of a metric's help text.
pub const MAX_HELP_BYTES: usize = 256;
/// Buckets per histogram.
pub const MAX_BUCKETS: usize = 32;
/// Label combinations over all of one plugin's metrics.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
/// Metrics (distinct names) one plugin may declare.
pub const MAX_METRICS_PER_PLUGIN: usize = 64;

/// A counter or a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; its name ends in `_total`.
    Counter,
    /// Observations in buckets.
    Histogram,
}

/// A label and every value it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Its name.
    pub name: String,
    /// Its values.
    pub values: Vec<String>,
}

impl Label {
    /// Label `name` with `values`.
    pub fn new(name: &str, values: &[&str]) -> Label {
        Label {
            name: name.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }
}

/// `[a-z_][a-z0-9_]*`, at most [`MAX_NAME_BYTES`].
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Check one declaration; returns how many label combinations (series) it may create.
pub fn check_declaration(
    kind: Kind,
    name: &str,
    help: &str,
    labels: &[Label],
    buckets: &[f64],
) -> Result<usize, String> {
    if !is_name(name) || name.starts_with("__") {
        return Err(format!(
            "metric name {name:?} must match [a-z_][a-z0-9_]* (at most {MAX_NAME_BYTES} bytes)"
        ));
    }
    if kind == Kind::Counter && !name.ends_with("_total") {
        return Err(format!("counter {name:?} must end in `_total`"));
    }
    if kind == Kind::Histogram && name.ends_with("_total") {
        return Err(format!("histogram {name:?} must not end in `_total`"));
    }
    if help.len() > MAX_HELP_BYTES {
        return Err(format!("help of {name:?} is over {MAX_HELP_BYTES} bytes"));
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{name:?} has {} labels; at most {MAX_LABELS}",
            labels.len()
        ));
    }
    let mut series = 1usize;
    for (i, label) in labels.iter().enumerate() {
        let label_name = &label.name;
        if !is_name(label_name)
            || label_name.starts_with("__")
            || label_name == "plugin"
            || label_name == "le"
        {
            return Err(format!(
                "label {label_name:?} of {name:?} must match [a-z_][a-z0-9_]* and not be `plugin`, `le` or `__…`"
            ));
        }
        if labels[..i].iter().any(|l| l.name == *label_name) {
            return Err(format!(
                "label {label_name:?} of {name:?} is declared twice"
            ));
        }
        if label.values.is_empty() || label.values.len() > MAX_LABEL_VALUES {
            return Err(format!(
                "label {label_name:?} of {name:?} must list 1 to {MAX_LABEL_VALUES} values, not {}",
                label.values.len()
            ));
        }
        for (j, value) in label.values.iter().enumerate() {
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "a value of label {label_name:?} of {name:?} is over {MAX_VALUE_BYTES} bytes"
                ));
            }
            if label.values[..j].contains(value) {
                return Err(format!(
                    "value {value:?} of label {label_name:?} of {name:?} is listed twice"
                ));
            }
        }
        series = series.saturating_mul(label.values.len());
    }
    if kind == Kind::Histogram {
        let increasing = buckets.windows(2).all(|w| w[0] < w[1]);
        if buckets.is_empty()
            || buckets.len() > MAX_BUCKETS
            || !increasing
            || buckets.iter().any(|b| !b.is_finite())
        {
            return Err(format!(
                "buckets of {name:?} must be 1 to {MAX_BUCKETS} finite, increasing upper bounds"
            ));
        }
    }
    Ok(series)
}

/// Check that a plugin's declarations — `metrics` distinct names, `series` label combinations
/// in all — fit its caps.
pub fn check_budget(metrics: usize, series: usize) -> Result<(), String> {
    if metrics > MAX_METRICS_PER_PLUGIN {
        return Err(format!(
            "the plugin would declare {metrics} metrics; at most {MAX_METRICS_PER_PLUGIN} per plugin"
        ));
    }
    if series > MAX_SERIES_PER_PLUGIN {
        return Err(format!(
            "the plugin's metrics would have up to {series} label combinations; at most \
             {MAX_SERIES_PER_PLUGIN} per plugin (list fewer label values)"
        ));
    }
    Ok(())
}

/// Check an observation of histogram `name`: a finite number (NaN or infinity would spoil its
/// sum for good).
pub fn check_observation(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "{name:?} observed {value}; observations must be finite"
        ))
    }
}

/// Check the label `values` of one recording against the declared `labels` of metric `name`.
pub fn check_values(name: &str, labels: &[Label], values: &[String]) -> Result<(), String> {
    if values.len() != labels.len() {
        return Err(format!(
            "{name:?} has {} labels, given {} values",
            labels.len(),
            values.len()
        ));
    }
    for (label, value) in labels.iter().zip(values) {
        if !label.values.contains(value) {
            return Err(format!(
                "{value:?} is not a declared value of label {:?} of {name:?}",
                label.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_counts_its_series() {
        let labels = [
            Label::new("result", &["hit", "miss"]),
            Label::new("tier", &["a", "b", "c"]),
        ];
        let series = check_declaration(Kind::Counter, "lookups_total", "", &labels, &[]);
        assert_eq!(series, Ok(6));
        let histogram = check_declaration(Kind::Histogram, "size_bytes", "", &[], &[1.0, 10.0]);
        assert_eq!(histogram, Ok(1));
        assert!(check_budget(1, 1000).is_ok() && check_budget(1, 1001).is_err());
        assert!(check_budget(64, 64).is_ok() && check_budget(65, 65).is_err());
        assert!(check_observation("x", 1.5).is_ok() && check_observation("x", f64::NAN).is_err());
    }

    #[test]
    fn bad_declarations_are_refused_by_name() {
        let refused = |kind, name: &str, labels: &[Label], buckets: &[f64]| {
            check_declaration(kind, name, "", labels, buckets).unwrap_err()
        };
        assert!(refused(Kind::Counter, "lookups", &[], &[]).contains("_total"));
        assert!(refused(Kind::Counter, "Lookups_total", &[], &[]).contains("[a-z_]"));
        assert!(
            refused(
                Kind::Counter,
                "x_total",
                &[Label::new("plugin", &["a"])],
                &[]
            )
            .contains("plugin")
        );
        assert!(
            refused(Kind::Counter, "x_total", &[Label::new("a", &[])], &[]).contains("1 to 64")
        );
        assert!(
            refused(
                Kind::Counter,
                "x_total",
                &[Label::new("a", &["v", "v"])],
                &[]
            )
            .contains("twice")
        );
        assert!(refused(Kind::Histogram, "x", &[], &[2.0, 1.0]).contains("increasing"));
        assert!(refused(Kind::Histogram, "x", &[], &[f64::INFINITY]).contains("finite"));
    }

    #[test]
    fn values_must_be_declared_ones() {
        let labels = [Label::new("result", &["hit", "miss"])];
        assert!(check_values("x_total", &labels, &["hit".into()]).is_ok());
        assert!(
            check_values("x_total", &labels, &["hot".into()])
                .unwrap_err()
                .contains("\"hot\"")
        );
        assert!(
            check_values("x_total", &labels, &[])
                .unwrap_err()
                .contains("given 0")
        );
    }
}
