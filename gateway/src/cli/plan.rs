//! `gateway plan`: what replacing a config would change ([`crate::compile::plan`]), offline
//! against another file (`--against`) or against a running gateway (`--admin`, which asks its
//! `POST /config/plan`).
//!
//! Exit status: 0 nothing would change, 2 something would, 1 a config does not parse or the
//! gateway cannot be asked.

use crate::compile::plan;
use crate::config;
use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status when something would change.
const CHANGES: u8 = 2;

/// Compare `new` with the file `old`.
pub fn offline(new: &Path, old: &Path) -> anyhow::Result<ExitCode> {
    let (old, new) = match (config::load(old), config::load(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => {
            for errors in [old.err(), new.err()].into_iter().flatten() {
                eprintln!("{errors}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let plan = plan::plan(&old, &new);
    print!("{plan}");
    Ok(exit(plan.changes_anything()))
}

/// Ask the gateway at `admin` what a reload to `new` would change.
pub async fn against_admin(new: &Path, admin: &str) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(new).with_context(|| format!("cannot read {}", new.display()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::post(format!("http://{admin}/config/plan"));
    if let Ok(token) = std::env::var(super::status::TOKEN_ENV) {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(text)))
        .context("bad admin address")?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .with_context(|| format!("no answer from the admin listener at {admin} within 30 s"))?
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match status {
        200 => {
            print!("{}", answer["plan"].as_str().unwrap_or_default());
            Ok(exit(answer["changes"].as_bool().unwrap_or(true)))
        }
        400 => {
            eprint!("{}", answer["errors"].as_str().unwrap_or_default());
            Ok(ExitCode::FAILURE)
        }
        other => bail!(
            "{admin}/config/plan answered {other}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

fn exit(changes: bool) -> ExitCode {
    if changes {
        ExitCode::from(CHANGES)
    } else {
        ExitCode::SUCCESS
    }
}
