//! Capability `metrics`: a plugin's own counters and histograms, declared in `init` and
//! exported on `/metrics` as `gateway_plugin_NAME{plugin="…", …}`
//! ([`crate::telemetry::plugin_metrics`] keeps the families and the per-plugin series cap).
//! A declaration outside `init` is refused, so every series a plugin can create is known
//! before it serves (and a bad one fails `init`: a config error in `gateway check`).

use crate::plugin::bindings::gateway::plugin::metrics::{Host, Label, Metric};
use crate::plugin::state::StoreState;
use crate::telemetry::plugin_metrics;
use plugin_sdk::rules::metrics::{self as rules, Kind};

super::gateway_unit!(
    Metrics,
    "metrics",
    crate::plugin::bindings::gateway::plugin::metrics
);

impl StoreState {
    fn declare_metric(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        labels: Vec<Label>,
        buckets: &[f64],
    ) -> Result<Metric, String> {
        if !self.initializing {
            return Err(format!(
                "metric {name:?} declared during a call; metrics are declared in init"
            ));
        }
        let labels = labels
            .into_iter()
            .map(|l| rules::Label {
                name: l.name,
                values: l.values,
            })
            .collect();
        let declared = plugin_metrics::declare(&self.plugin, kind, name, help, labels, buckets)?;
        // Declared again (the same name, checked the same way): the same handle, so a plugin
        // declaring in a loop holds one entry per name, at most 64.
        if let Some(at) = self.declared_metrics.iter().position(|d| d.name() == name) {
            self.declared_metrics[at] = declared;
            return Ok(at as Metric);
        }
        self.declared_metrics.push(declared);
        Ok((self.declared_metrics.len() - 1) as Metric)
    }

    fn declared(&self, metric: Metric) -> Result<&plugin_metrics::Declared, String> {
        self.declared_metrics
            .get(metric as usize)
            .ok_or_else(|| format!("no metric was declared with handle {metric}"))
    }
}

impl Host for StoreState {
    async fn declare_counter(
        &mut self,
        name: String,
        help: String,
        labels: Vec<Label>,
    ) -> Result<Metric, String> {
        self.declare_metric(Kind::Counter, &name, &help, labels, &[])
    }

    async fn declare_histogram(
        &mut self,
        name: String,
        help: String,
        labels: Vec<Label>,
        buckets: Vec<f64>,
    ) -> Result<Metric, String> {
        self.declare_metric(Kind::Histogram, &name, &help, labels, &buckets)
    }

    async fn add(&mut self, metric: Metric, values: Vec<String>, delta: u64) -> Result<(), String> {
        self.declared(metric)?.add(&values, delta)
    }

    async fn observe(
        &mut self,
        metric: Metric,
        values: Vec<String>,
        value: f64,
    ) -> Result<(), String> {
        self.declared(metric)?.observe(&values, value)
    }
}
