//! Printing large documents on several threads, in document order.

use crate::error::Result;

/// Documents with at least this many products are printed by several
/// threads (sstream-query's output is one product after another, so each
/// thread takes whole products and their output is joined in order).
pub(super) const PARALLEL_MIN_PRODUCTS: usize = 16;
/// Products per unit of work handed to a thread: small enough to balance
/// products of unequal size, large enough that handing out costs nothing.
pub(super) const PRODUCTS_PER_CHUNK: usize = 8;

/// Runs `work(0..n)` on `workers` threads (on the calling one when fewer
/// than two) and hands each result to `take` in index order, on the calling
/// thread, as soon as the results before it were taken. The first error
/// `take` returns stops the work (results not taken yet are dropped) and is
/// returned.
pub(super) fn in_order<T: Send>(
    workers: usize,
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    mut take: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if workers < 2 {
        return (0..n).try_for_each(|i| take(work(i)));
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, T)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || tx.send((i, work(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut early = std::collections::BTreeMap::new();
        let mut want = 0;
        let result = (|| {
            for (i, r) in &rx {
                early.insert(i, r);
                while let Some(r) = early.remove(&want) {
                    take(r)?;
                    want += 1;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        drop(rx);
        result
    })
}
