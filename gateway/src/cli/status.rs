//! `gateway status`: a running gateway's admin API (`/ready`, `/config`, `/routes`,
//! `/plugins`) as tables for people, or as the API's own JSON with `--json`.
//!
//! Exit status: 0 ready, 3 reachable but not ready (draining), 1 unreachable or refused.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// Environment variable holding the admin token for `gateway status`.
pub(super) const TOKEN_ENV: &str = "GATEWAY_ADMIN_TOKEN";

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// GET `path` from the admin listener at `admin`: status and body.
async fn get(client: &HttpClient, admin: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut request = http::Request::get(format!("http://{admin}{path}"));
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new()).context("bad admin address")?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .with_context(|| format!("no answer from the admin listener at {admin} within 10 s"))?
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn get_json(client: &HttpClient, admin: &str, path: &str) -> anyhow::Result<Value> {
    let (status, body) = get(client, admin, path).await?;
    match status {
        200 => serde_json::from_slice(&body).with_context(|| format!("{path}: not JSON")),
        401 => bail!("{path}: 401, the admin listener wants a token (set {TOKEN_ENV})"),
        other => bail!(
            "{path}: HTTP {other}: {}",
            String::from_utf8_lossy(&body).trim()
        ),
    }
}

/// Print the status of the gateway whose admin listener is at `admin`.
pub async fn status(admin: &str, json: bool) -> anyhow::Result<ExitCode> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (ready_status, _) = get(&client, admin, "/ready").await?;
    let ready = ready_status == 200;
    let config = get_json(&client, admin, "/config").await?;
    let routes = get_json(&client, admin, "/routes").await?;
    let plugins = get_json(&client, admin, "/plugins").await?;
    if json {
        let all = serde_json::json!({
            "ready": ready,
            "config": { "file": config["file"], "sha256": config["sha256"], "loaded_at": config["loaded_at"] },
            "routes": routes,
            "plugins": plugins,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", render(ready, &config, &routes, &plugins));
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn render(ready: bool, config: &Value, routes: &Value, plugins: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "status:  {}",
        if ready {
            "ready"
        } else {
            "NOT READY (draining)"
        }
    );
    let _ = writeln!(out, "config:  {}", config["file"].as_str().unwrap_or("?"));
    let _ = writeln!(out, "sha256:  {}", config["sha256"].as_str().unwrap_or("?"));
    let _ = writeln!(out);
    let mut table = vec![vec![
        "ROUTE".to_string(),
        "MATCH".into(),
        "UPSTREAM".into(),
        "PLUGINS".into(),
    ]];
    for route in routes.as_array().into_iter().flatten() {
        let path = &route["match"]["path"];
        let matched = if let Some(exact) = path["exact"].as_str() {
            format!("= {exact}")
        } else if let Some(prefix) = path["prefix"].as_str() {
            format!("{prefix}*")
        } else {
            "*".to_string()
        };
        let plugins: Vec<&str> = route["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        table.push(vec![
            route["name"].as_str().unwrap_or("?").to_string(),
            matched,
            route["upstream"].as_str().unwrap_or("-").to_string(),
            if plugins.is_empty() {
                "-".to_string()
            } else {
                plugins.join(" → ")
            },
        ]);
    }
    write_table(&mut out, &table);
    let _ = writeln!(out);
    let mut table = vec![vec![
        "PLUGIN".to_string(),
        "ROUTES".into(),
        "MODULE".into(),
        "SHA256".into(),
        "GRANTED".into(),
        "ISOLATION".into(),
        "WARM/BUSY".into(),
        "VIOLATIONS".into(),
    ]];
    for plugin in plugins.as_array().into_iter().flatten() {
        let list = |key: &str| -> String {
            let items: Vec<&str> = plugin[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if items.is_empty() {
                "-".into()
            } else {
                items.join(",")
            }
        };
        let violations: Vec<String> = plugin["violations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(label, n)| format!("{label}={n}"))
            .collect();
        table.push(vec![
            plugin["plugin"].as_str().unwrap_or("?").to_string(),
            list("routes"),
            plugin["module"].as_str().unwrap_or("?").to_string(),
            plugin["sha256"]
                .as_str()
                .map_or("?".into(), |h| h.chars().take(12).collect()),
            list("granted"),
            plugin["isolation"].as_str().unwrap_or("?").to_string(),
            format!(
                "{}/{}",
                plugin["instances"]["warm"], plugin["instances"]["busy"]
            ),
            if violations.is_empty() {
                "-".into()
            } else {
                violations.join(",")
            },
        ]);
    }
    write_table(&mut out, &table);
    out
}

/// Rows as left-aligned columns, two spaces apart.
fn write_table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            line.push_str(cell);
            if c + 1 < columns {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
