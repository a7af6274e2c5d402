//! `mountctl node load|save|wait` against real agents (`streamfs-node`
//! processes on 127.0.0.1, each with a file as its disk) and fake CMC
//! cards (HTTP, one thread per node) that "reboot" their node's agent after
//! a delay: exact disks, no PXE link left behind, failed nodes named.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamfs_tests::mount::{Mount, can_mount};
use streamfs_tests::node::{STORE_TOML, files_below, sha256sum};
use streamfs_tests::serve::Nginx;
use streamfs_tests::{mountctl_bin, workspace_bin};

const KEY: &str = "testbed-key-0123456789abcdef";

/// A node's agent process, restarted by its CMC; `closed` once the test
/// is over, so that a reboot still under way starts nothing.
#[derive(Default)]
struct AgentSlot {
    child: Option<Child>,
    closed: bool,
}

type Agent = Arc<Mutex<AgentSlot>>;

/// One node: its agent and its disk.
struct Node {
    agent: Agent,
    disk: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut a = self.agent.lock().unwrap_or_else(|e| e.into_inner());
        a.closed = true;
        if let Some(mut c) = a.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_agent(port: u16, disk: &Path, key: &Path) -> Child {
    Command::new(workspace_bin("streamfs-node", "streamfs-node"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--disk"])
        .arg(disk)
        .arg("--key")
        .arg(key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("starting streamfs-node")
}

/// A CMC on a free port: `status` says on, `reset`/`on` restart the agent
/// after 300 ms (a reboot into the imaging environment; never when the
/// node does not `boot`), `off` stops it.
fn fake_cmc(agent: Agent, port: u16, disk: PathBuf, key: PathBuf, boots: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let cmc_port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut line = String::new();
            if BufReader::new(&s).read_line(&mut line).is_err() {
                continue;
            }
            let verb = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string();
            let on = agent.lock().unwrap().child.is_some();
            let body = match verb.as_str() {
                "status" if on => "on",
                "status" => "off",
                "info" => "fake CMC",
                "on" | "reset" | "off" => "ok",
                _ => "?",
            };
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            drop(s);
            if matches!(verb.as_str(), "on" | "reset" | "off") {
                let (agent, disk, key) = (agent.clone(), disk.clone(), key.clone());
                let mut a = agent.lock().unwrap();
                if let Some(mut c) = a.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                drop(a);
                if verb != "off" && boots {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(300));
                        let mut a = agent.lock().unwrap();
                        if !a.closed {
                            // Two resets within the delay restart twice: the
                            // first restart's agent goes, or its process
                            // would outlive the test once its handle is
                            // replaced.
                            if let Some(mut c) = a.child.take() {
                                let _ = c.kill();
                                let _ = c.wait();
                            }
                            a.child = Some(start_agent(port, &disk, &key));
                        }
                    });
                }
            }
        }
    });
    cmc_port
}

/// A TCP proxy on a free port to `127.0.0.1:port`: the first connection
/// that carries more than `cut_after` bytes towards the agent is cut there
/// (both ways), every other one passes whole.
fn cutting_proxy(port: u16, cut_after: u64) -> u16 {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = l.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let Ok(a) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (c2, a2) = (c.try_clone().unwrap(), a.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &a2, &mut &c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
            let done = done.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut n = 0u64;
                while let Ok(k) = (&c).read(&mut buf) {
                    if k == 0 {
                        let _ = a.shutdown(std::net::Shutdown::Write);
                        break;
                    }
                    n += k as u64;
                    if n > cut_after && !done.swap(true, Ordering::SeqCst) {
                        let _ = a.shutdown(std::net::Shutdown::Both);
                        let _ = c.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if (&a).write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    proxy_port
}

struct Bed {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Bed {
    /// `n` nodes with disks of `disk_size`; node numbers in `dead_cmc` get
    /// a CMC address where nothing listens, those in `no_boot` never come
    /// back after a reset.
    fn new(n: usize, disk_size: u64, dead_cmc: &[usize], no_boot: &[usize]) -> Bed {
        Bed::with_cuts(n, disk_size, dead_cmc, no_boot, &[])
    }

    /// As [`Bed::new`]; node numbers in `cut` are reached through a proxy
    /// that cuts the first connection carrying more than 4 MiB to them (a
    /// chain link breaking mid-load).
    fn with_cuts(
        n: usize,
        disk_size: u64,
        dead_cmc: &[usize],
        no_boot: &[usize],
        cut: &[usize],
    ) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("store.toml"), STORE_TOML).unwrap();
        std::fs::write(d.join("key"), KEY).unwrap();
        std::fs::create_dir(d.join("pxe")).unwrap();
        let mut inv = Vec::new();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let disk = d.join(format!("disk{i:02}"));
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(disk_size)
                .unwrap();
            let port = free_port();
            let agent = Arc::new(Mutex::new(AgentSlot {
                child: Some(start_agent(port, &disk, &d.join("key"))),
                closed: false,
            }));
            let cmc_port = if dead_cmc.contains(&i) {
                free_port()
            } else {
                fake_cmc(
                    agent.clone(),
                    port,
                    disk.clone(),
                    d.join("key"),
                    !no_boot.contains(&i),
                )
            };
            let control_port = if cut.contains(&i) {
                cutting_proxy(port, 4 << 20)
            } else {
                port
            };
            inv.push(serde_json::json!({
                "cmc": {"hostname": format!("reboot{i:02}"), "ip": "127.0.0.1", "mac": format!("02:00:00:00:00:{i:02x}"), "port": cmc_port},
                "control": {"hostname": format!("fit{i:02}"), "ip": "127.0.0.1", "mac": format!("00:03:1d:0e:03:{i:02x}"), "port": control_port},
            }));
            nodes.push(Node { agent, disk });
        }
        std::fs::write(d.join("inventory.json"), serde_json::to_vec(&inv).unwrap()).unwrap();
        std::fs::write(
            d.join("imaging.conf"),
            format!(
                "[testbed]\ninventory = {0}/inventory.json\nall_scope = 1-{n}\n[nodes]\nkey_file = {0}/key\nlog_dir = {0}/logs\ncmc_default_timeout = 1\n[pxelinux]\nconfig_dir = {0}/pxe\nloader = loader.0\n",
                d.display()
            ),
        )
        .unwrap();
        let bed = Bed { dir, nodes };
        assert_eq!(
            bed.run(&["--store", "s", "init", "--config", "store.toml"])
                .0,
            Some(0)
        );
        bed
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(mountctl_bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env(
                "STREAMFS_IMAGING_CONF",
                self.dir.path().join("imaging.conf"),
            )
            .env_remove("NODES")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pxe_links(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("pxe"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A raw disk of `mib` MiB (text, zeros and noise) imported as `name`.
    fn import(&self, name: &str, mib: usize) -> String {
        let mut d = vec![0u8; mib << 20];
        let mut x = 7u32;
        for (i, b) in d.iter_mut().enumerate() {
            match (i >> 20) % 4 {
                0 => *b = b"streamfs "[i % 9],
                2 => {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    *b = (x >> 16) as u8;
                }
                _ => {}
            }
        }
        let raw = self.dir.path().join(format!("{name}.img"));
        std::fs::write(&raw, &d).unwrap();
        let (code, _, err) = self.run(&[
            "--store",
            "s",
            "node",
            "import",
            &format!("{name}.img"),
            "-o",
            name,
        ]);
        assert_eq!(code, Some(0), "{err}");
        sha256sum(&raw)
    }
}

#[test]
fn eight_nodes_get_exact_disks_and_a_dead_cmc_is_named() {
    let bed = Bed::new(8, 64 << 20, &[8], &[]);
    let want = bed.import("base", 48);
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "-a"]);
    assert_eq!(code, Some(1), "node 8's CMC is dead: {out}{err}");
    assert!(
        err.contains("load base@") && err.contains("fit08 (CMC:"),
        "{err}"
    );
    for (i, n) in bed.nodes.iter().enumerate().take(7) {
        assert_eq!(sha256sum(&n.disk), want, "node {}: {out}{err}", i + 1);
    }
    assert_ne!(sha256sum(&bed.nodes[7].disk), want);
    assert!(bed.pxe_links().is_empty(), "{:?}", bed.pxe_links());
    let logs: Vec<_> = files_below(&bed.dir.path().join("logs"));
    assert_eq!(logs.len(), 8, "a log per node: {logs:?}");

    // Save node 2, load it onto node 3 (after changing node 3's disk).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&bed.nodes[2].disk)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[1u8; 4096], 0).unwrap();
    assert_ne!(sha256sum(&bed.nodes[2].disk), want);
    let (code, out, err) = bed.run(&[
        "--store", "s", "node", "save", "fit02", "-o", "saved", "-c", "from two",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "saved", "3"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(sha256sum(&bed.nodes[2].disk), want);
    let (_, out, _) = bed.run(&["--store", "s", "node", "images", "-l", "saved"]);
    assert!(out.contains("fit02") && out.contains("from two"), "{out}");
    let (code, out, err) = bed.run(&["--store", "s", "fsck"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(bed.pxe_links().is_empty());

    // `-i ALIAS` loads the image the alias names, not one of the same name.
    let other = bed.import("other", 8);
    let (code, out, err) = bed.run(&["--store", "s", "node", "alias", "good", "other"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = bed.run(&["--store", "s", "node", "images"]);
    assert!(out.contains("good"), "the alias is listed: {out}");
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "good", "4"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(sha256sum(&bed.nodes[3].disk), other);
    assert!(bed.pxe_links().is_empty());

    // An invalid spec (the forgotten -i) touches nothing.
    let (code, _, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "fedora-21"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(bed.pxe_links().is_empty());
}

#[test]
fn interrupted_and_timed_out_loads_leave_no_pxe_link() {
    let bed = Bed::new(2, 64 << 20, &[], &[2]);
    let want = bed.import("base", 32);
    // SIGINT mid-load (capped at 40 Mbit/s, the load takes seconds).
    let mut child = bed
        .command(&[
            "--store", "s", "node", "load", "-i", "base", "-b", "40", "1-2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        if !bed.pxe_links().is_empty() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the load made its PXE links");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(bed.pxe_links().is_empty(), "{:?}", bed.pxe_links());

    // A node whose agent never comes back after its reset: exit 1 after
    // the timeout, naming it; the other node is loaded.
    let (code, _, err) = bed.run(&["--store", "s", "node", "wait", "-t", "1", "1-2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("fit02") && !err.contains("fit01"), "{err}");
    let (code, _, err) = bed.run(&[
        "--store", "s", "node", "load", "-i", "base", "-t", "5", "1-2",
    ]);
    assert!(bed.pxe_links().is_empty());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("mountctl: load")
            && l.contains("fit02 (no answer from the agent")
            && !l.contains("fit01")),
        "{err}"
    );
    assert_eq!(sha256sum(&bed.nodes[0].disk), want);
}

#[test]
fn two_concurrent_loads_to_disjoint_nodes_do_not_interfere() {
    let bed = Bed::new(4, 32 << 20, &[], &[]);
    let a = bed.import("alpha", 12);
    let b = bed.import("beta", 20);
    let mut one = bed
        .command(&["--store", "s", "node", "load", "-i", "alpha", "1-2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "beta", "3,4"]);
    let one_status = one.wait().unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(one_status.success());
    for (i, want) in [(0, &a), (1, &a), (2, &b), (3, &b)] {
        assert_eq!(&sha256sum(&bed.nodes[i].disk), want, "node {}", i + 1);
    }
    assert!(bed.pxe_links().is_empty());
}

/// The store mounted read-only and served by real nginx; `[images]
/// http_url` names it. None after a skip (no FUSE or no nginx).
fn serve_mount(bed: &Bed) -> Option<(Mount, Nginx)> {
    if !can_mount() {
        return streamfs_tests::missing("FUSE mounts (/dev/fuse, root)");
    }
    let mount = Mount::with_options(&bed.dir.path().join("s"), &["ro", "allow_other"]);
    let nginx = Nginx::start(mount.path())?;
    let conf = bed.dir.path().join("imaging.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("[images]\nhttp_url = {}\n", nginx.url("")));
    std::fs::write(&conf, text).unwrap();
    Some((mount, nginx))
}

#[test]
fn nodes_pull_from_nginx_serving_the_mount_with_http_and_when_the_chain_breaks() {
    // Node 2 is reached through a proxy that cuts the chain's link to it
    // mid-image: nodes 2 and 3 fall back to HTTP pulls, node 1 keeps its
    // chain copy, all end exact.
    let bed = Bed::with_cuts(3, 32 << 20, &[], &[], &[2]);
    let want = bed.import("base", 24);
    let Some((_mount, _nginx)) = serve_mount(&bed) else {
        return;
    };
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "-a"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for (i, n) in bed.nodes.iter().enumerate() {
        assert_eq!(sha256sum(&n.disk), want, "node {}: {out}{err}", i + 1);
    }
    let line = |node: &str| {
        out.lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("fit01").contains("loaded") && !line("fit01").contains("HTTP"),
        "{out}"
    );
    assert!(line("fit02").contains("HTTP pull"), "{out}");
    assert!(line("fit03").contains("HTTP pull"), "{out}");
    assert!(bed.pxe_links().is_empty());

    // --http: every node pulls on its own, from nginx; a damaged chunk
    // would be named (each is checked), here all are exact.
    for n in &bed.nodes {
        std::fs::File::create(&n.disk)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
    }
    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "--http", "-a"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for (i, n) in bed.nodes.iter().enumerate() {
        assert_eq!(sha256sum(&n.disk), want, "node {}: {out}{err}", i + 1);
    }
    assert_eq!(out.matches("HTTP pull").count(), 3, "{out}");
}

#[test]
fn http_without_a_url_is_refused_before_anything_is_touched() {
    let bed = Bed::new(1, 4 << 20, &[], &[]);
    bed.import("base", 2);
    let (code, _, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "--http", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[images] http_url"), "{err}");
    assert!(bed.pxe_links().is_empty());
}

/// Leases (`[leases] file` in the settings): a caller who does not hold the
/// testbed now is refused before any node is touched, told who holds it;
/// root is exempt. The refused caller is `nobody` (through `setpriv`),
/// running a copy of mountctl it can execute.
#[test]
fn only_the_lease_holder_or_root_may_load() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP: setpriv (util-linux) not installed");
        assert!(std::env::var("CI").is_err(), "setpriv is needed under CI");
        return;
    }
    let bed = Bed::new(1, 16 << 20, &[], &[]);
    let want = bed.import("base", 8);
    let d = bed.dir.path();
    std::fs::write(
        d.join("leases.json"),
        r#"[{"login": "alice", "from": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}]"#,
    )
    .unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("imaging.conf"))
        .unwrap();
    writeln!(conf, "[leases]\nfile = {}/leases.json", d.display()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = d.join("mountctl");
    std::fs::copy(mountctl_bin(), &bin).unwrap();
    let before = sha256sum(&bed.nodes[0].disk);

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["--store", "s", "node", "load", "-i", "base", "1"])
        .current_dir(d)
        .env("STREAMFS_IMAGING_CONF", d.join("imaging.conf"))
        .env("HOME", d)
        .env_remove("NODES")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody loaded a node: {err}");
    assert!(err.contains("leased to alice"), "{err}");
    assert_eq!(
        sha256sum(&bed.nodes[0].disk),
        before,
        "the disk was touched"
    );
    assert!(bed.pxe_links().is_empty());

    let (code, out, err) = bed.run(&["--store", "s", "node", "load", "-i", "base", "1"]);
    assert_eq!(code, Some(0), "root is exempt: {out}{err}");
    assert_eq!(sha256sum(&bed.nodes[0].disk), want);
}
