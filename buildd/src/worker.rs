//! The worker: registers with an arch and a capacity, heartbeats, long-polls
//! the server for builds of its arch, runs each as
//! `BUILD_CMD [--config F] ARCH RELEASE VERSION SOURCE OUT` in its own
//! process group, streams its output lines and progress, uploads the output
//! blobs the server lacks and reports the result. A build the server stops
//! (canceled, or handed to another worker) has its whole process group
//! killed. Workers never see the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::intake::FileEntry;

pub struct WorkerOptions {
    pub server: String,
    pub arch: String,
    pub token: String,
    pub id: String,
    pub capacity: usize,
    pub build_cmd: Vec<String>,
    pub work_dir: PathBuf,
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    id: String,
}

impl Client {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-streamfs-worker", &self.id)
    }

    /// POSTs JSON; `Ok(None)` on 409 (the build is no longer ours).
    async fn post(&self, path: &str, body: &Value) -> Result<Option<Value>> {
        let resp = self
            .req(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::CONFLICT {
            return Ok(None);
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Some(Value::Null));
        }
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Process groups of the builds running here, by build id.
type Running = Arc<Mutex<BTreeMap<i64, Option<i32>>>>;

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals that process group; it
    // has no memory effects.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

pub async fn run(opts: WorkerOptions) -> Result<()> {
    let client = Client {
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
        base: opts.server.trim_end_matches('/').to_string(),
        token: opts.token.clone(),
        id: opts.id.clone(),
    };
    let reg = loop {
        match client
            .post(
                "/api/worker/register",
                &json!({"id": opts.id, "arch": opts.arch, "capacity": opts.capacity}),
            )
            .await
        {
            Ok(Some(v)) => break v,
            Ok(None) => bail!("register: refused"),
            Err(e) if e.to_string().contains("HTTP") => return Err(e.context("registering")),
            Err(e) => {
                tracing::warn!("registering with {}: {e:#}; retrying", opts.server);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let lease = Duration::from_millis(reg["lease_ms"].as_u64().unwrap_or(10_000));
    tracing::info!(worker = %opts.id, arch = %opts.arch, "registered with {}", opts.server);
    let running: Running = Arc::default();
    tokio::spawn(heartbeat(client.clone(), running.clone(), lease / 3));
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.capacity));
    let opts = Arc::new(opts);
    loop {
        let permit = slots.clone().acquire_owned().await?;
        let job = match client
            .post("/api/worker/claim", &json!({"wait_ms": 20_000}))
            .await
        {
            Ok(Some(Value::Null)) | Ok(None) => continue,
            Ok(Some(job)) => job,
            Err(e) => {
                tracing::warn!("asking for a build: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(id) = job["id"].as_i64() else {
            tracing::warn!("the server sent a build without an id: {job}");
            continue;
        };
        running.lock().expect("running lock").insert(id, None);
        let (client, running, opts) = (client.clone(), running.clone(), opts.clone());
        tokio::spawn(async move {
            let result = run_build(&client, &opts, &running, id, &job).await;
            if let Err(e) = result {
                tracing::warn!("build {id}: {e:#}");
            }
            running.lock().expect("running lock").remove(&id);
            let _ = tokio::fs::remove_dir_all(opts.work_dir.join(format!("build-{id}"))).await;
            drop(permit);
        });
    }
}

/// Keeps the leases of this worker's builds alive and stops the builds the
/// server no longer wants from it.
async fn heartbeat(client: Client, running: Running, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let ids: Vec<i64> = running
            .lock()
            .expect("running lock")
            .keys()
            .copied()
            .collect();
        match client
            .post("/api/worker/heartbeat", &json!({"running": ids}))
            .await
        {
            Ok(Some(v)) => {
                for id in v["stop"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                {
                    stop(&running, id);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("heartbeat: {e:#}"),
        }
    }
}

fn stop(running: &Running, id: i64) {
    if let Some(Some(pgid)) = running.lock().expect("running lock").get(&id) {
        tracing::info!("build {id}: stopped by the server; killing its process group {pgid}");
        kill_group(*pgid);
    }
}

/// What a stage line of `mountctl build` (its stderr) says:
/// `stage NAME started`, `stage NAME N%`, `stage NAME done in Xs` or
/// `stage NAME failed in Xs: REASON`.
#[derive(Debug, PartialEq, Eq)]
pub enum StageLine {
    Started(String),
    Percent(String, i64),
    Done(String),
    Failed(String, String),
}

pub fn parse_stage(line: &str) -> Option<StageLine> {
    let (name, rest) = line.trim_end().strip_prefix("stage ")?.split_once(' ')?;
    let name = name.to_string();
    let secs = |t: &str| {
        t.strip_suffix('s')
            .is_some_and(|n| n.parse::<f64>().is_ok())
    };
    if rest == "started" {
        Some(StageLine::Started(name))
    } else if let Some(p) = rest.strip_suffix('%') {
        let p = p.parse::<i64>().ok().filter(|p| (0..=100).contains(p))?;
        Some(StageLine::Percent(name, p))
    } else if let Some(t) = rest.strip_prefix("done in ") {
        secs(t).then_some(StageLine::Done(name))
    } else if let Some(t) = rest.strip_prefix("failed in ") {
        let (t, reason) = t.split_once(": ")?;
        secs(t).then(|| StageLine::Failed(name, reason.to_string()))
    } else {
        None
    }
}

/// `mountctl build`'s stages in order, with their share of the whole build
/// (the builder is nearly all of it), so one progress bar rises across
/// them. A stage not listed here shows its name without moving the bar.
const STAGE_SHARES: [(&str, i64); 3] = [("builder", 90), ("publish", 5), ("metadata", 5)];

fn overall(stage: &str, within: i64) -> Option<i64> {
    let mut before = 0;
    for (name, share) in STAGE_SHARES {
        if name == stage {
            return Some(before + share * within / 100);
        }
        before += share;
    }
    None
}

/// The stage and whole-build percent a stage line reports.
pub fn progress_of(line: &StageLine) -> (String, Option<i64>) {
    match line {
        StageLine::Started(n) => (n.clone(), overall(n, 0)),
        StageLine::Percent(n, p) => (n.clone(), overall(n, *p)),
        StageLine::Done(n) => (n.clone(), overall(n, 100)),
        StageLine::Failed(n, _) => (format!("{n} failed"), None),
    }
}

async fn run_build(
    client: &Client,
    opts: &WorkerOptions,
    running: &Running,
    id: i64,
    job: &Value,
) -> Result<()> {
    let s = |k: &str| job[k].as_str().unwrap_or_default().to_string();
    let dir = opts.work_dir.join(format!("build-{id}"));
    let out = dir.join("out");
    let logs = dir.join("logs");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir).await?;
    let mut cmd = tokio::process::Command::new(&opts.build_cmd[0]);
    cmd.args(&opts.build_cmd[1..]);
    if let Some(c) = job["config"].as_str() {
        cmd.arg("--config").arg(c);
    }
    cmd.args([s("arch"), s("release"), s("version"), s("source")])
        .arg(&out)
        .current_dir(&dir)
        // `mountctl build` keeps the builder's own output there; it joins
        // the build's log when the build ends.
        .env("STREAMFS_BUILD_LOG_DIR", &logs)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    tracing::info!("build {id}: running {:?}", opts.build_cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("starting {}: {e}", opts.build_cmd[0]);
            client
                .post(
                    &format!("/api/worker/jobs/{id}/finish"),
                    &json!({"result": "failed", "reason": reason}),
                )
                .await?;
            return Ok(());
        }
    };
    let pgid = child.id().map(|p| p as i32);
    running.lock().expect("running lock").insert(id, pgid);
    // The lines of stdout and stderr, in arrival order.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut lost = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut pending: Vec<String> = Vec::new();
    let mut stage: Option<(String, Option<i64>)> = None;
    let mut failed_stage: Option<(String, String)> = None;
    let mut last_line = String::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            l = rx.recv(), if open => match l {
                Some(l) => {
                    let parsed = parse_stage(&l);
                    if !l.trim().is_empty() {
                        last_line.clone_from(&l);
                    }
                    if let Some(StageLine::Failed(n, r)) = &parsed {
                        failed_stage = Some((n.clone(), r.clone()));
                    }
                    pending.push(l);
                    // A stage line goes out at once (there are few), so
                    // every step shows; log lines go in batches.
                    match parsed {
                        Some(p) => stage = Some(progress_of(&p)),
                        None if pending.len() < 200 => continue,
                        None => {}
                    }
                }
                None => open = false,
            },
            _ = tick.tick() => {}
        }
        if pending.is_empty() && stage.is_none() {
            continue;
        }
        let (st, pct) = stage.take().unzip();
        let body = json!({
            "lines": std::mem::take(&mut pending),
            "stage": st,
            "percent": pct.flatten(),
        });
        match client
            .post(&format!("/api/worker/jobs/{id}/progress"), &body)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                lost = true;
                break;
            }
            // The server may be restarting: the lines are dropped, the build goes on.
            Err(e) => tracing::warn!("build {id}: reporting progress: {e:#}"),
        }
    }
    if lost {
        if let Some(p) = pgid {
            kill_group(p);
        }
        let _ = child.wait().await;
        tracing::info!("build {id}: no longer ours; stopped");
        return Ok(());
    }
    let status = child.wait().await?;
    // Whatever the builder left running in its group goes too.
    if let Some(p) = pgid {
        kill_group(p);
    }
    if send_builder_logs(client, id, &logs).await? {
        return Ok(());
    }
    let finish = format!("/api/worker/jobs/{id}/finish");
    if !status.success() {
        let exited = format!("{} exited with {status}", opts.build_cmd.join(" "));
        let reason = match failed_stage {
            Some((stage, why)) => format!("stage {stage} failed: {why} ({exited})"),
            None if last_line.is_empty() => exited,
            // The builder's own last word (e.g. `mountctl: error: …`).
            None => format!("{exited}: {last_line}"),
        };
        return fail(client, &finish, &reason).await;
    }
    let files = match scan(&out).await {
        Ok(f) => f,
        Err(e) => {
            let reason = format!("reading the build output {}: {e:#}", out.display());
            return fail(client, &finish, &reason).await;
        }
    };
    let Some(missing) = post_retrying(
        client,
        &format!("/api/worker/jobs/{id}/missing"),
        &json!({"files": files}),
    )
    .await?
    else {
        return Ok(());
    };
    let by_sha: BTreeMap<&str, &FileEntry> = files.iter().map(|f| (f.sha256.as_str(), f)).collect();
    for sha in missing["missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let f = by_sha
            .get(sha)
            .context("the server asked for a blob not in the output")?;
        let file = tokio::fs::File::open(out.join(&f.path)).await?;
        let resp = client
            .req(
                reqwest::Method::PUT,
                &format!("/api/worker/jobs/{id}/blobs/{sha}"),
            )
            .body(reqwest::Body::from(file))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        if !resp.status().is_success() {
            bail!(
                "uploading {}: HTTP {}: {}",
                f.path,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
    }
    post_retrying(
        client,
        &finish,
        &json!({"result": "succeeded", "files": files}),
    )
    .await?;
    Ok(())
}

/// Sends the lines of the builder logs `mountctl build` left in `logs` to
/// the build's log; true when the build is no longer ours.
async fn send_builder_logs(client: &Client, id: i64, logs: &Path) -> Result<bool> {
    let Ok(mut rd) = tokio::fs::read_dir(logs).await else {
        return Ok(false);
    };
    let mut files = Vec::new();
    while let Some(e) = rd.next_entry().await? {
        files.push(e.path());
    }
    files.sort();
    for f in files {
        let text = tokio::fs::read(&f).await?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        for chunk in lines.chunks(1000) {
            let body = json!({"lines": chunk});
            if post_retrying(client, &format!("/api/worker/jobs/{id}/progress"), &body)
                .await?
                .is_none()
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Finishes a build as failed with `reason`.
async fn fail(client: &Client, finish: &str, reason: &str) -> Result<()> {
    post_retrying(
        client,
        finish,
        &json!({"result": "failed", "reason": reason}),
    )
    .await?;
    Ok(())
}

/// A POST that survives a server restart: retried on connection errors.
async fn post_retrying(client: &Client, path: &str, body: &Value) -> Result<Option<Value>> {
    let mut delay = Duration::from_millis(200);
    loop {
        match client.post(path, body).await {
            Ok(v) => return Ok(v),
            Err(e) if e.to_string().contains("HTTP") => return Err(e),
            Err(e) => {
                tracing::warn!("{path}: {e:#}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Every regular file under `out`, with its sha256 and size.
async fn scan(out: &Path) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let mut rd = tokio::fs::read_dir(&d)
            .await
            .with_context(|| d.display().to_string())?;
        while let Some(e) = rd.next_entry().await? {
            let t = e.file_type().await?;
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(out)?.to_string_lossy().into_owned();
                let mut f = tokio::fs::File::open(e.path()).await?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut size = 0u64;
                loop {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    size += n as u64;
                }
                files.push(FileEntry {
                    path: rel,
                    sha256: hex::encode(h.finalize()),
                    size,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::{StageLine, parse_stage, progress_of};

    /// The lines `mountctl build` prints (build/src/stage.rs).
    #[test]
    fn stage_lines() {
        let p = |l: &str| parse_stage(l).map(|s| progress_of(&s));
        assert_eq!(
            p("stage builder started"),
            Some(("builder".into(), Some(0)))
        );
        assert_eq!(p("stage builder 50%"), Some(("builder".into(), Some(45))));
        assert_eq!(
            p("stage builder done in 12.30s"),
            Some(("builder".into(), Some(90)))
        );
        assert_eq!(
            p("stage publish started"),
            Some(("publish".into(), Some(90)))
        );
        assert_eq!(
            p("stage metadata done in 0.00s"),
            Some(("metadata".into(), Some(100)))
        );
        assert_eq!(p("stage squash 40%"), Some(("squash".into(), None)));
        assert_eq!(
            parse_stage(
                "stage builder failed in 0.40s: builder: exit status: 3; last log lines: x"
            ),
            Some(StageLine::Failed(
                "builder".into(),
                "builder: exit status: 3; last log lines: x".into()
            ))
        );
        assert_eq!(p("stage builder 101%"), None);
        assert_eq!(p("stage builder done"), None);
        assert_eq!(
            p("all 14 outputs exist in out: not running the builder"),
            None
        );
        assert_eq!(p("log line 1"), None);
    }
}
