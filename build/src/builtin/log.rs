//! The builder's log: every command it runs is written there with its
//! output, so a failure can name the log and quote its last lines.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

pub struct Log {
    path: PathBuf,
    file: File,
}

/// The last `n` lines of a log file, joined for an error message.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

impl Log {
    /// Appends to the log at `path` (created when absent).
    pub fn append(path: &Path) -> Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Log {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }

    /// An error of step `step`, naming this log.
    pub fn fail(&self, step: &str, reason: impl Into<String>) -> Error {
        Error::Builder {
            step: step.to_string(),
            reason: reason.into(),
            log: self.path.clone(),
        }
    }

    fn sink(&self, step: &str) -> Result<Stdio> {
        let f = self
            .file
            .try_clone()
            .map_err(|e| self.fail(step, format!("cannot write the log: {e}")))?;
        Ok(Stdio::from(f))
    }

    fn spawn(&mut self, step: &str, cmd: &mut Command, stdout: Stdio) -> Result<Child> {
        self.line(&format!("$ {}", describe(cmd)));
        let stderr = self.sink(step)?;
        cmd.stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| self.fail(step, format!("cannot run {}: {e}", describe(cmd))))
    }

    fn check(&mut self, step: &str, what: &str, st: std::io::Result<ExitStatus>) -> Result<()> {
        let st = st.map_err(|e| self.fail(step, format!("{what}: {e}")))?;
        if st.success() {
            return Ok(());
        }
        self.line(&format!("# {what}: {st}"));
        Err(self.fail(
            step,
            format!("{what}: {st}; last log lines: {}", tail(&self.path, 4)),
        ))
    }

    /// Runs `cmd` (stdin from /dev/null unless set), its output to the log.
    pub fn run(&mut self, step: &str, cmd: &mut Command) -> Result<()> {
        let out = self.sink(step)?;
        let what = describe(cmd);
        let mut child = self.spawn(step, cmd, out)?;
        let st = child.wait();
        self.check(step, &what, st)
    }

    /// Runs `cmd` and returns its stdout (stderr to the log).
    pub fn output(&mut self, step: &str, cmd: &mut Command) -> Result<Vec<u8>> {
        let what = describe(cmd);
        cmd.stdin(Stdio::null());
        let mut child = self.spawn(step, cmd, Stdio::piped())?;
        let mut out = Vec::new();
        let read = child
            .stdout
            .take()
            .map(|mut s| s.read_to_end(&mut out))
            .transpose();
        let st = child.wait();
        self.check(step, &what, st)?;
        read.map_err(|e| self.fail(step, format!("{what}: reading its output: {e}")))?;
        Ok(out)
    }

    /// Starts `producer | consumer`; [`Log::wait`] collects it.
    pub fn spawn_pipe(
        &mut self,
        step: &str,
        producer: &mut Command,
        consumer: &mut Command,
    ) -> Result<Pipeline> {
        let (pw, cw) = (describe(producer), describe(consumer));
        producer.stdin(Stdio::null());
        let mut p = self.spawn(step, producer, Stdio::piped())?;
        let pipe = p.stdout.take().expect("piped stdout");
        consumer.stdin(Stdio::from(pipe));
        let out = self.sink(step)?;
        let c = self.spawn(step, consumer, out);
        // The Command keeps the pipe's read end until told otherwise; closed
        // here, a consumer that stops early makes the producer stop too.
        consumer.stdin(Stdio::null());
        let producer = Some((p, pw));
        match c {
            Ok(c) => Ok(Pipeline {
                step: step.to_string(),
                producer,
                consumer: Some((c, cw)),
            }),
            // Dropping the pipeline kills the producer.
            Err(e) => {
                drop(Pipeline {
                    step: step.to_string(),
                    producer,
                    consumer: None,
                });
                Err(e)
            }
        }
    }

    /// Waits for a pipeline; both commands must succeed.
    pub fn wait(&mut self, mut p: Pipeline) -> Result<()> {
        let (mut c, cw) = p.consumer.take().expect("a running pipeline");
        let (mut pr, pw) = p.producer.take().expect("a running pipeline");
        let cst = c.wait();
        let pst = pr.wait();
        // `tar` and `sqfstar` stop reading at the archive's end-of-archive
        // blocks, before the zero padding that follows them: a producer
        // still writing that padding dies of SIGPIPE. A consumer that
        // succeeded read a whole archive (a truncated one fails it), so that
        // death is the end of the stream, not an error; a consumer that
        // failed is what stopped the producer, and is reported.
        if pst
            .as_ref()
            .is_ok_and(|s| s.signal() == Some(libc::SIGPIPE))
        {
            self.check(&p.step, &cw, cst)?;
            self.line(&format!(
                "# {pw}: stopped by SIGPIPE after {cw} read the whole archive"
            ));
            return Ok(());
        }
        // The producer's failure (a truncated or corrupt source) explains
        // the consumer's, so it is reported first.
        self.check(&p.step, &pw, pst)?;
        self.check(&p.step, &cw, cst)
    }

    /// Runs `producer | consumer`; both must succeed.
    pub fn pipe(
        &mut self,
        step: &str,
        producer: &mut Command,
        consumer: &mut Command,
    ) -> Result<()> {
        let p = self.spawn_pipe(step, producer, consumer)?;
        self.wait(p)
    }
}

/// A running `producer | consumer`; dropped unwaited (another step
/// failed), both are killed and reaped.
pub struct Pipeline {
    step: String,
    producer: Option<(Child, String)>,
    consumer: Option<(Child, String)>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (mut child, _) in [self.consumer.take(), self.producer.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (tempfile::TempDir, Log) {
        let d = tempfile::tempdir().unwrap();
        let l = Log::append(&d.path().join("build.log")).unwrap();
        (d, l)
    }

    #[test]
    fn a_producer_cut_off_by_a_consumer_that_read_all_it_needed_is_no_failure() {
        let (_d, mut l) = log();
        // `yes` writes forever; `head` takes what it needs and succeeds,
        // as tar does at the end-of-archive blocks.
        l.pipe(
            "unpack",
            &mut Command::new("yes"),
            Command::new("head").args(["-c", "100000"]),
        )
        .unwrap();
    }

    #[test]
    fn a_failing_producer_or_consumer_fails_the_pipe() {
        let (_d, mut l) = log();
        let e = l
            .pipe(
                "unpack",
                Command::new("sh").args(["-c", "exit 3"]),
                &mut Command::new("cat"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        let e = l
            .pipe(
                "unpack",
                &mut Command::new("yes"),
                Command::new("sh").args(["-c", "head -c 10 >/dev/null; exit 4"]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 4"), "{e}");
    }
}
