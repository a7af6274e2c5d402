//! `mountctl builds …`: the client of the build service's REST API
//! (`streamfs-buildd serve`), with a submit token.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::cli::{BuildsArgs, BuildsCommand, BuildsListArgs, BuildsSubmitArgs};

struct Api {
    http: Client,
    base: String,
    token: String,
}

fn usage(msg: String) -> anyhow::Error {
    streamfs_core::Error::Usage(msg).into()
}

impl Api {
    fn new(a: &BuildsArgs) -> Result<Api> {
        let base = a.server.clone().ok_or_else(|| {
            usage("builds: no server: give --server URL or set STREAMFS_BUILDS_URL".into())
        })?;
        let file = a.token_file.clone().ok_or_else(|| {
            usage(
                "builds: no token: give --token-file FILE or set STREAMFS_BUILDS_TOKEN_FILE".into(),
            )
        })?;
        let token = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the token file {}", file.display()))?
            .trim()
            .to_string();
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends and fails with the server's message on an error status.
    fn send(&self, what: &str, rb: RequestBuilder) -> Result<Response> {
        let resp = rb
            .send()
            .with_context(|| format!("{what}: reaching {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(text);
        bail!("{what}: HTTP {status}: {msg}")
    }

    fn json(&self, what: &str, rb: RequestBuilder) -> Result<Value> {
        let text = self.send(what, rb)?.text()?;
        serde_json::from_str(&text)
            .with_context(|| format!("{what}: the server's answer is not JSON"))
    }
}

pub fn run(a: BuildsArgs) -> Result<ExitCode> {
    let api = Api::new(&a)?;
    match a.command {
        BuildsCommand::Submit(s) => submit(&api, s),
        BuildsCommand::List(l) => list(&api, l),
        BuildsCommand::Show(b) => {
            let v = api.json(
                &format!("build {}", b.id),
                api.req(reqwest::Method::GET, &format!("/api/v1/builds/{}", b.id)),
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        BuildsCommand::Watch(b) => watch(&api, b.id),
        BuildsCommand::Logs(b) => {
            let r = api.send(
                &format!("log of build {}", b.id),
                api.req(
                    reqwest::Method::GET,
                    &format!("/api/v1/builds/{}/log", b.id),
                ),
            )?;
            print!("{}", r.text()?);
            Ok(ExitCode::SUCCESS)
        }
        BuildsCommand::Cancel(b) => {
            api.json(
                &format!("cancel build {}", b.id),
                api.req(
                    reqwest::Method::POST,
                    &format!("/api/v1/builds/{}/cancel", b.id),
                ),
            )?;
            println!("canceled build {}", b.id);
            Ok(ExitCode::SUCCESS)
        }
        BuildsCommand::Retry(b) => {
            let v = api.json(
                &format!("retry build {}", b.id),
                api.req(
                    reqwest::Method::POST,
                    &format!("/api/v1/builds/{}/retry", b.id),
                ),
            )?;
            println!("{}", v["id"]);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn submit(api: &Api, s: BuildsSubmitArgs) -> Result<ExitCode> {
    let mut body = json!({
        "arch": s.arch, "release": s.release, "source": s.source, "stream": s.stream,
    });
    if let Some(v) = s.version {
        body["version"] = json!(v);
    }
    if let Some(c) = s.config {
        body["config"] = json!(c);
    }
    if !s.kernels.is_empty() {
        body["kernels"] = json!(s.kernels);
    }
    let v = api.json(
        "submit",
        api.req(reqwest::Method::POST, "/api/v1/builds")
            .header("content-type", "application/json")
            .body(body.to_string()),
    )?;
    let id = v["id"]
        .as_i64()
        .context("submit: the server's answer has no id")?;
    println!("{id}");
    if s.watch {
        return watch(api, id);
    }
    Ok(ExitCode::SUCCESS)
}

/// One page (`GET /api/v1/builds`), or with `--all` every page, following
/// the server's `next` cursor from newest to oldest.
fn list(api: &Api, l: BuildsListArgs) -> Result<ExitCode> {
    let mut builds: Vec<Value> = Vec::new();
    let mut before = l.before;
    let next = loop {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &l.state {
            q.push(("state", s.clone()));
        }
        if let Some(a) = &l.arch {
            q.push(("arch", a.clone()));
        }
        if let Some(n) = l.limit {
            q.push(("limit", n.to_string()));
        }
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        let v = api.json(
            "list",
            api.req(reqwest::Method::GET, "/api/v1/builds").query(&q),
        )?;
        builds.extend(v["builds"].as_array().into_iter().flatten().cloned());
        match v["next"].as_i64() {
            Some(n) if l.all => {
                if before.is_some_and(|b| n >= b) {
                    bail!("list: the server's next page ({n}) is not older than {before:?}");
                }
                before = Some(n);
            }
            next => break next,
        }
    };
    if l.json {
        let v = json!({"builds": builds, "next": next});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>6}  {:<8} {:<8} {:<10} {:<10} {:<10} {:>4}  WORKER",
        "ID", "ARCH", "RELEASE", "VERSION", "STREAM", "STATE", "%"
    )?;
    for b in &builds {
        let s = |k: &str| b[k].as_str().unwrap_or("-").to_string();
        writeln!(
            out,
            "{:>6}  {:<8} {:<8} {:<10} {:<10} {:<10} {:>4}  {}",
            b["id"],
            s("arch"),
            s("release"),
            s("version"),
            s("stream"),
            s("state"),
            b["percent"],
            s("worker")
        )?;
    }
    if let Some(n) = next {
        eprintln!("older builds: mountctl builds list --before {n} (or --all)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the build's events (resuming with Last-Event-ID when the
/// connection drops) and prints progress and log lines; exit 0 when it
/// succeeded, 1 otherwise.
fn watch(api: &Api, id: i64) -> Result<ExitCode> {
    let mut last: Option<String> = None;
    loop {
        let mut rb = api.req(reqwest::Method::GET, &format!("/api/v1/builds/{id}/events"));
        if let Some(l) = &last {
            rb = rb.header("last-event-id", l);
        }
        let resp = api.send(&format!("events of build {id}"), rb)?;
        let (mut kind, mut data) = (String::new(), String::new());
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("id:") {
                last = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            } else if line.is_empty() && !data.is_empty() {
                let d: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                data.clear();
                match kind.as_str() {
                    "log" => println!("{}", d["line"].as_str().unwrap_or_default()),
                    "progress" => eprintln!(
                        "build {id}: {}% {}",
                        d["percent"].as_i64().map_or("?".into(), |p| p.to_string()),
                        d["stage"].as_str().unwrap_or_default()
                    ),
                    "state" => {
                        let state = d["state"].as_str().unwrap_or_default();
                        match d["reason"].as_str() {
                            Some(r) => eprintln!("build {id}: {state}: {r}"),
                            None => eprintln!("build {id}: {state}"),
                        }
                        match state {
                            "succeeded" => return Ok(ExitCode::SUCCESS),
                            "failed" | "canceled" => return Ok(ExitCode::FAILURE),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        // The connection ended before a terminal state (a server restart):
        // resume after the last event seen.
        std::thread::sleep(Duration::from_millis(500));
    }
}
