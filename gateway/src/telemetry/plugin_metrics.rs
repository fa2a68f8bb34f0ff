//! Plugins' own metrics (capability `metrics`): the families plugins declared, registered in
//! the gateway's Prometheus registry as `gateway_plugin_NAME` with label `plugin` first, and
//! each plugin's series budget.
//!
//! A family is shared by every plugin that declares the same name with the same labels (and
//! buckets); each declaration keeps its own allowed label values, so a plugin records only
//! the series it declared. Declarations happen in `init` (rare, under one lock); recording
//! checks the values against the declaration and then touches only the family's own series.

use plugin_sdk::rules::metrics::{self as rules, Kind, Label};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One registered family.
struct Family {
    kind: Kind,
    label_names: Vec<String>,
    buckets: Vec<f64>,
    series: Series,
}

enum Series {
    Counter(IntCounterVec),
    Histogram(HistogramVec),
}

/// One plugin's declaration of a metric: what it may record.
pub struct Declared {
    plugin: Arc<str>,
    name: String,
    labels: Vec<Label>,
    family: Arc<Family>,
}

#[derive(Default)]
struct Registry {
    families: HashMap<String, Arc<Family>>,
    /// Label combinations each plugin declared, by metric name.
    series: HashMap<Arc<str>, HashMap<String, usize>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// Declare metric `name` for `plugin`: checked by [`plugin_sdk::rules::metrics`], then the
/// family is found (same kind, labels and buckets) or registered, and the plugin's series
/// budget is charged.
pub fn declare(
    plugin: &Arc<str>,
    kind: Kind,
    name: &str,
    help: &str,
    labels: Vec<Label>,
    buckets: &[f64],
) -> Result<Declared, String> {
    let series = rules::check_declaration(kind, name, help, &labels, buckets)?;
    let full = format!("gateway_plugin_{name}");
    let label_names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let declared_by_plugin = registry.series.get(plugin);
    let others: usize = declared_by_plugin
        .map(|by_name| {
            by_name
                .iter()
                .filter(|(n, _)| *n != name)
                .map(|(_, s)| s)
                .sum()
        })
        .unwrap_or(0);
    let before = declared_by_plugin
        .and_then(|by_name| by_name.get(name))
        .copied()
        .unwrap_or(0);
    let charged = series.max(before);
    let names = declared_by_plugin.map_or(0, |by_name| by_name.len())
        + usize::from(declared_by_plugin.is_none_or(|by_name| !by_name.contains_key(name)));
    rules::check_budget(names, others.saturating_add(charged))?;
    let family = match registry.families.get(&full) {
        Some(family) => {
            let same = family.kind == kind
                && family.label_names == label_names
                && (kind == Kind::Counter || family.buckets == buckets);
            if !same {
                return Err(format!(
                    "`{full}` is already declared as a {:?} with labels {:?}{}; a plugin \
                     declaring the same name must declare it the same way",
                    family.kind,
                    family.label_names,
                    if family.kind == Kind::Histogram {
                        format!(" and buckets {:?}", family.buckets)
                    } else {
                        String::new()
                    }
                ));
            }
            family.clone()
        }
        None => {
            let family = Arc::new(register(kind, &full, help, &label_names, buckets)?);
            registry.families.insert(full, family.clone());
            family
        }
    };
    registry
        .series
        .entry(plugin.clone())
        .or_default()
        .insert(name.to_string(), charged);
    Ok(Declared {
        plugin: plugin.clone(),
        name: name.to_string(),
        labels,
        family,
    })
}

fn register(
    kind: Kind,
    full: &str,
    help: &str,
    label_names: &[String],
    buckets: &[f64],
) -> Result<Family, String> {
    let help = if help.is_empty() { full } else { help };
    let mut names: Vec<&str> = vec!["plugin"];
    names.extend(label_names.iter().map(String::as_str));
    let refused = |e: prometheus::Error| format!("`{full}` cannot be registered: {e}");
    let series = match kind {
        Kind::Counter => {
            let vec = IntCounterVec::new(Opts::new(full, help), &names).map_err(refused)?;
            super::metrics::register_plugin_family(Box::new(vec.clone())).map_err(refused)?;
            Series::Counter(vec)
        }
        Kind::Histogram => {
            let opts = HistogramOpts::new(full, help).buckets(buckets.to_vec());
            let vec = HistogramVec::new(opts, &names).map_err(refused)?;
            super::metrics::register_plugin_family(Box::new(vec.clone())).map_err(refused)?;
            Series::Histogram(vec)
        }
    };
    Ok(Family {
        kind,
        label_names: label_names.to_vec(),
        buckets: buckets.to_vec(),
        series,
    })
}

impl Declared {
    /// The metric's name, as declared.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add `delta` to a counter at label `values`.
    pub fn add(&self, values: &[String], delta: u64) -> Result<(), String> {
        let labels = self.labels_of(values)?;
        match &self.family.series {
            Series::Counter(vec) => {
                vec.with_label_values(&labels).inc_by(delta);
                Ok(())
            }
            Series::Histogram(_) => Err(format!("{:?} is a histogram, not a counter", self.name)),
        }
    }

    /// Observe `value` in a histogram at label `values`.
    pub fn observe(&self, values: &[String], value: f64) -> Result<(), String> {
        rules::check_observation(&self.name, value)?;
        let labels = self.labels_of(values)?;
        match &self.family.series {
            Series::Histogram(vec) => {
                vec.with_label_values(&labels).observe(value);
                Ok(())
            }
            Series::Counter(_) => Err(format!("{:?} is a counter, not a histogram", self.name)),
        }
    }

    /// The family's label values for declared `values`: the plugin, then them.
    fn labels_of<'a>(&'a self, values: &'a [String]) -> Result<Vec<&'a str>, String> {
        rules::check_values(&self.name, &self.labels, values)?;
        let mut labels: Vec<&str> = Vec::with_capacity(values.len() + 1);
        labels.push(&self.plugin);
        labels.extend(values.iter().map(String::as_str));
        Ok(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_shared_and_budgets_are_per_plugin() {
        let a: Arc<str> = Arc::from("unit-a");
        let b: Arc<str> = Arc::from("unit-b");
        let labels = || vec![Label::new("result", &["hit", "miss"])];
        let first = declare(&a, Kind::Counter, "unit_lookups_total", "", labels(), &[]).unwrap();
        let again = declare(&a, Kind::Counter, "unit_lookups_total", "", labels(), &[]).unwrap();
        let other = declare(&b, Kind::Counter, "unit_lookups_total", "", labels(), &[]).unwrap();
        assert!(
            Arc::ptr_eq(&first.family, &again.family) && Arc::ptr_eq(&first.family, &other.family)
        );
        let differently = declare(&b, Kind::Counter, "unit_lookups_total", "", vec![], &[]);
        assert!(differently.err().unwrap().contains("the same way"));
        first.add(&["hit".into()], 2).unwrap();
        assert!(first.add(&["hot".into()], 1).is_err());
        assert!(first.observe(&["hit".into()], 1.0).is_err());

        let wide = (0..40).map(|i| i.to_string()).collect::<Vec<_>>();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        let big = vec![Label::new("x", &wide), Label::new("y", &wide)];
        let over = declare(&a, Kind::Counter, "unit_wide_total", "", big, &[]);
        assert!(over.err().unwrap().contains("at most 1000 per plugin"));
        let own = declare(&a, Kind::Counter, "unit_calls_total", "", vec![], &[]);
        assert!(own.is_ok());
    }

    #[test]
    fn a_plugin_declares_at_most_64_names_and_only_finite_observations() {
        let p: Arc<str> = Arc::from("unit-d");
        for i in 0..64 {
            declare(
                &p,
                Kind::Counter,
                &format!("unit_d{i}_total"),
                "",
                vec![],
                &[],
            )
            .unwrap();
        }
        // Declaring a known name again is no new name.
        assert!(declare(&p, Kind::Counter, "unit_d0_total", "", vec![], &[]).is_ok());
        let over = declare(&p, Kind::Counter, "unit_d64_total", "", vec![], &[]);
        assert!(over.err().unwrap().contains("at most 64 per plugin"));
        let h = declare(&p, Kind::Histogram, "unit_d0_seconds", "", vec![], &[1.0]);
        assert!(h.is_err(), "the 65th name, a histogram, is refused too");
        let q: Arc<str> = Arc::from("unit-e");
        let h = declare(&q, Kind::Histogram, "unit_e_seconds", "", vec![], &[1.0]).unwrap();
        assert!(h.observe(&[], 0.5).is_ok());
        assert!(h.observe(&[], f64::NAN).err().unwrap().contains("finite"));
        assert!(h.observe(&[], f64::INFINITY).is_err());
    }

    #[test]
    fn the_gateways_own_names_are_refused() {
        let p: Arc<str> = Arc::from("unit-c");
        crate::telemetry::metrics::metrics();
        let clash = declare(&p, Kind::Counter, "calls_total", "", vec![], &[]);
        assert!(
            clash.err().unwrap().contains("cannot be registered"),
            "gateway_plugin_calls_total is the gateway's"
        );
    }
}
