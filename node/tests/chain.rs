//! Agents on 127.0.0.1: an image sent down a chain of three lands exactly
//! on every disk; a caller without the key cannot write; a saved disk is
//! the disk.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use streamfs_node::agent::Agent;
use streamfs_node::image::{self, Image};
use streamfs_node::proto::Key;
use streamfs_node::transfer;

fn key(dir: &Path, text: &str) -> Key {
    let p = dir.join(format!("key-{text}"));
    std::fs::write(&p, text).unwrap();
    Key::load(&p).unwrap()
}

/// Starts an agent on a free port with a disk of `size` bytes; its address.
fn agent(dir: &Path, n: usize, k: &Key, size: u64) -> (String, PathBuf) {
    let disk = dir.join(format!("disk{n}"));
    std::fs::File::create(&disk).unwrap().set_len(size).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let a = Arc::new(Agent::new(k.clone(), disk.clone()));
    std::thread::spawn(move || a.serve(l));
    (addr, disk)
}

fn sha256_file(p: &Path) -> streamfs_core::Result<String> {
    Ok(streamfs_core::store::pool::hash_file(p)?.sha256)
}

/// Threads of this process (the agents of these tests run in it).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn raw_disk(dir: &Path, size: usize) -> PathBuf {
    let mut d = vec![0u8; size];
    let mut x = 12345u32;
    for (i, b) in d.iter_mut().enumerate() {
        if (i >> 20) % 3 != 1 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = if (i >> 20) % 3 == 0 {
                (x >> 16) as u8
            } else {
                b"node "[i % 5]
            };
        }
    }
    let p = dir.join("raw.img");
    std::fs::write(&p, d).unwrap();
    p
}

#[test]
fn a_chain_of_three_gets_exact_disks_and_a_save_returns_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key(d, "0123456789abcdef-testbed");
    let raw = raw_disk(d, 7 * (1 << 20) + 999);
    let packed = d.join("img.sfimg");
    image::pack_file(&raw, &packed).unwrap();
    let img = Image::open(&packed).unwrap();
    let nodes: Vec<(String, PathBuf)> = (0..3).map(|n| agent(d, n, &k, 8 << 20)).collect();
    let chain: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
    let want = sha256_file(&raw).unwrap();

    let out =
        transfer::load_chain(&img, &chain, &k, None, Duration::from_secs(20), &mut |_| {}).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    for (r, (_, disk)) in out.iter().zip(&nodes) {
        assert!(r.ok, "{r:?}");
        assert_eq!(r.disk_sha256.as_deref(), Some(want.as_str()));
        assert_eq!(sha256_file(disk).unwrap(), want, "{}", disk.display());
    }

    // A chain whose second node is gone: the first is loaded, the rest named.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let chain2 = vec![chain[0].clone(), dead.clone(), chain[2].clone()];
    let out = transfer::load_chain(
        &img,
        &chain2,
        &k,
        None,
        Duration::from_secs(20),
        &mut |_| {},
    )
    .unwrap();
    assert!(out[0].ok, "{out:?}");
    assert!(!out[1].ok && out[1].addr == dead && !out[2].ok, "{out:?}");

    // The wrong key is refused before anything is read; the disk is intact.
    let bad = key(d, "fedcba9876543210-other");
    let e = transfer::load_chain(
        &img,
        &chain[..1],
        &bad,
        None,
        Duration::from_secs(5),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("refused our key"), "{e}");
    assert_eq!(sha256_file(&nodes[0].1).unwrap(), want);

    // Save node 1's disk: the image is the disk.
    let saved = d.join("saved.sfimg");
    let mut f = std::fs::File::create(&saved).unwrap();
    let index = transfer::save(
        &chain[1],
        &k,
        &mut f,
        Duration::from_secs(20),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(index.disk_sha256_hex(), want);
    let back = d.join("back");
    std::fs::File::create(&back).unwrap();
    Image::open(&saved).unwrap().restore(&back).unwrap();
    assert_eq!(sha256_file(&back).unwrap(), want);
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&packed).unwrap(),
        "deterministic"
    );
}

#[test]
fn an_image_bigger_than_the_disk_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key(d, "0123456789abcdef-testbed");
    let raw = raw_disk(d, 3 << 20);
    let packed = d.join("img.sfimg");
    image::pack_file(&raw, &packed).unwrap();
    let (addr, disk) = agent(d, 0, &k, 1 << 20);
    std::fs::write(&disk, vec![7u8; 1 << 20]).unwrap();
    let before = sha256_file(&disk).unwrap();
    let out = transfer::load_chain(
        &Image::open(&packed).unwrap(),
        &[addr],
        &k,
        None,
        Duration::from_secs(20),
        &mut |_| {},
    );
    let r = &out.unwrap()[0];
    assert!(
        !r.ok && r.error.as_deref().unwrap().contains("does not fit"),
        "{r:?}"
    );
    assert_eq!(sha256_file(&disk).unwrap(), before);
}

#[test]
fn a_flood_of_silent_connections_costs_no_threads_and_times_out() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key(d, "0123456789abcdef-testbed");
    let disk = d.join("disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let a = Arc::new(Agent::new(k.clone(), disk).with_limits(4, Duration::from_secs(2)));
    std::thread::spawn(move || a.serve(l));
    transfer::ping(&addr, &k, Duration::from_secs(5)).unwrap();
    // The ping's connection holds its slot until its thread has ended,
    // which may be a moment after the reply.
    std::thread::sleep(Duration::from_millis(200));

    let before = threads();
    // 4 callers that never answer the challenge fill the agent; 200 more
    // are closed at once and cost no thread.
    let mut silent: Vec<std::net::TcpStream> = (0..204)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Other tests of this file run agents in this process too: allow them
    // some threads; a thread per connection would be 204 more.
    let now = threads();
    assert!(
        now < before + 40,
        "{} more threads for 204 silent connections (limit 4)",
        now.saturating_sub(before)
    );
    // An admitted caller is sent the challenge's nonce at once; a refused
    // one is closed. Which four are admitted is the accept loop's business.
    let (mut admitted, mut closed) = (0, 0);
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => admitted += 1,
        }
    }
    assert_eq!(admitted, 4, "the agent admits up to its limit");
    assert_eq!(closed, 200, "connections beyond the limit are closed");
    assert!(
        transfer::ping(&addr, &k, Duration::from_secs(5)).is_err(),
        "the agent is full"
    );
    // The silent ones are dropped after the handshake timeout, and the
    // agent answers again.
    std::thread::sleep(Duration::from_secs(3));
    let r = transfer::ping(&addr, &k, Duration::from_secs(5)).unwrap();
    assert_eq!(r.disk_size, Some(1 << 20));
    drop(silent);
}
