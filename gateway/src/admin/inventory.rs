//! `/routes` and `/plugins`: the compiled runtime described as JSON, and the plugin instance
//! gauges refreshed before each scrape.

use crate::proxy::{Filter, Runtime};
use crate::telemetry::metrics;
use prometheus::core::Collector;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The route table in match order.
pub fn routes(runtime: &Runtime) -> Value {
    let routes: Vec<Value> = runtime
        .router
        .iter()
        .map(|(matcher, route)| {
            json!({
                "name": &*route.name,
                "match": matcher.describe(),
                "upstream": route.upstream.as_ref().map(|u| u.name()),
                "upstreams": route.split.as_ref().map(|split| {
                    split.upstreams().map(|u| u.name()).collect::<Vec<_>>()
                }),
                "mirror": route.mirror.as_ref().map(|m| m.upstream().name()),
                "plugins": route.chain.iter().map(|f| f.name()).collect::<Vec<_>>(),
                "timeout_ms": route.timeout.as_millis() as u64,
                "max_body_bytes": route.max_body_bytes,
                "strip_prefix": route.strip_prefix,
                "preserve_host": route.preserve_host,
                "websocket": route.websocket.is_some(),
            })
        })
        .collect();
    Value::Array(routes)
}

/// Plugin uses, each with the routes it runs on.
type Uses = Vec<(Arc<dyn Filter>, Vec<Arc<str>>)>;

/// Each plugin use once (a global plugin's use is shared by every route), with the routes
/// it runs on.
fn uses(runtime: &Runtime) -> Uses {
    let mut uses = Uses::new();
    for (_, route) in runtime.router.iter() {
        for filter in &route.chain {
            match uses.iter_mut().find(|(seen, _)| Arc::ptr_eq(seen, filter)) {
                Some((_, routes)) => routes.push(route.name.clone()),
                None => uses.push((filter.clone(), vec![route.name.clone()])),
            }
        }
    }
    uses
}

/// The `route` label of a use's instance gauges: its route, or `*` when shared.
fn route_label(routes: &[Arc<str>]) -> &str {
    match routes {
        [only] => only,
        _ => "*",
    }
}

/// Every plugin use with its calls by phase and outcome (from the metrics, when on).
pub fn plugins(runtime: &Runtime) -> Value {
    let calls = call_counts();
    let list: Vec<Value> = uses(runtime)
        .into_iter()
        .filter_map(|(filter, routes)| {
            let mut entry = filter.inventory()?;
            let mut by_phase: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for route in &routes {
                let key = (filter.name().to_string(), route.to_string());
                for ((phase, outcome), count) in calls.get(&key).into_iter().flatten() {
                    *by_phase
                        .entry(phase.clone())
                        .or_default()
                        .entry(outcome.clone())
                        .or_default() += count;
                }
            }
            let violations: BTreeMap<String, u64> = by_phase
                .values()
                .flatten()
                .filter(|(outcome, _)| {
                    !matches!(outcome.as_str(), "continue" | "respond" | "replace")
                })
                .fold(BTreeMap::new(), |mut acc, (outcome, count)| {
                    *acc.entry(outcome.clone()).or_default() += count;
                    acc
                });
            if let Value::Object(map) = &mut entry {
                map.insert(
                    "routes".into(),
                    json!(routes.iter().map(|r| &**r).collect::<Vec<_>>()),
                );
                map.insert("calls".into(), json!(by_phase));
                map.insert("violations".into(), json!(violations));
            }
            Some(entry)
        })
        .collect();
    Value::Array(list)
}

type CallCounts = BTreeMap<(String, String), BTreeMap<(String, String), u64>>;

/// `gateway_plugin_calls_total` by (plugin, route), then (phase, outcome).
fn call_counts() -> CallCounts {
    let mut counts = CallCounts::new();
    for family in metrics::metrics().plugin_calls.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let value = metric.get_counter().get_value() as u64;
            counts
                .entry((label("plugin"), label("route")))
                .or_default()
                .insert((label("phase"), label("outcome")), value);
        }
    }
    counts
}

/// `gateway_upstream_connections{upstream,target,state}`: idle and active connections of
/// every routed upstream's targets now.
pub fn update_connection_gauges(runtime: &Runtime) {
    let gauges = &metrics::metrics().upstream_connections;
    let mut seen: Vec<&Arc<crate::upstream::Upstream>> = Vec::new();
    for upstream in runtime
        .router
        .iter()
        .flat_map(|(_, route)| route.upstreams())
    {
        if seen.iter().any(|u| Arc::ptr_eq(u, upstream)) {
            continue;
        }
        seen.push(upstream);
        for (target, idle, active) in upstream.connections() {
            let labels = |state| [upstream.name(), target, state];
            gauges.with_label_values(&labels("idle")).set(idle as i64);
            gauges
                .with_label_values(&labels("active"))
                .set(active as i64);
        }
    }
}

/// `gateway_plugin_instances{plugin,route,state}`: warm and busy instances of every use now.
pub fn update_instance_gauges(runtime: &Runtime) {
    let gauges = &metrics::metrics().plugin_instances;
    for (filter, routes) in uses(runtime) {
        let Some(entry) = filter.inventory() else {
            continue;
        };
        let route = route_label(&routes);
        for state in ["warm", "busy"] {
            let value = entry["instances"][state].as_i64().unwrap_or(0);
            gauges
                .with_label_values(&[filter.name(), route, state])
                .set(value);
        }
    }
}
