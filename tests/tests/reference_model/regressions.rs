//! Regression tests: sequences the random runs found failing, each named
//! after what it guards.

use super::*;

pub(crate) const fn kernel(arch: usize, version: usize, sub: usize, file: usize) -> FileRef {
    FileRef {
        arch,
        version,
        slot: Slot::Kernel { sub, file },
    }
}

pub(crate) const fn squashfs(arch: usize, version: usize) -> FileRef {
    FileRef {
        arch,
        version,
        slot: Slot::Squashfs,
    }
}

#[test]
pub(crate) fn a_copied_file_carries_its_streams_label() {
    regression(&[Op::Copy {
        s: 0,
        f: kernel(0, 0, 0, 0),
        c: 0,
    }]);
}

#[test]
pub(crate) fn a_shared_file_written_before_its_kernels_survives_a_remount_and_is_attached_later() {
    regression(&[
        Op::Copy {
            s: 0,
            f: squashfs(0, 0),
            c: 0,
        },
        Op::Remount,
        Op::Reap,
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 1,
        },
    ]);
}

#[test]
pub(crate) fn a_shared_file_belongs_to_kernels_that_arrive_after_it() {
    regression(&[
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 0,
        },
        Op::Copy {
            s: 0,
            f: squashfs(0, 0),
            c: 1,
        },
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 1, 0),
            c: 2,
        },
    ]);
}

#[test]
pub(crate) fn data_for_a_declared_item_whose_blob_is_already_present_is_accepted() {
    regression(&[
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 0),
            c: 2,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 1,
            sub: 0,
            c: [0, 0, 2],
            write: [false, false, true],
        },
    ]);
}

#[test]
pub(crate) fn metadata_giving_a_kept_shared_path_other_content_is_refused() {
    regression(&[
        Op::Copy {
            s: 0,
            f: squashfs(0, 2),
            c: 1,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 2,
            sub: 0,
            c: [0, 0, 0],
            write: [false, false, false],
        },
    ]);
}

#[test]
pub(crate) fn a_copied_kernel_of_a_new_version_of_a_declared_product_keeps_its_attributes() {
    regression(&[
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 0,
            c: [0, 0, 1],
            write: [false, false, true],
        },
        Op::Rsync {
            s: 0,
            f: kernel(0, 1, 0, 0),
            c: 0,
        },
    ]);
}

#[test]
pub(crate) fn data_arriving_through_one_stream_publishes_a_version_another_was_waiting_for() {
    regression(&[
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 0,
            c: [0, 1, 0],
            write: [false, true, false],
        },
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 0),
            c: 0,
        },
    ]);
}

/// `echo x > file` in a shell: the descriptor is duplicated onto stdout
/// and the original closed (a flush) before anything is written.
#[test]
pub(crate) fn a_shell_redirect_inserts_what_is_written_after_the_descriptor_is_duplicated() {
    if !can_mount() {
        return;
    }
    let real = Real::new();
    let mut model = Model::default();
    let f = kernel(0, 0, 0, 0);
    let path = real.at(0, &f.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text = String::from_utf8(bytes(1)).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{text}' > '{}'", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        real.log()
    );
    assert_eq!(model.apply(&Op::Copy { s: 0, f, c: 1 }), Outcome::Ok);
    if let Err(e) = check(&model, real.mnt(), true) {
        panic!("{e}\n{}", real.log());
    }
}

/// A squashfs copied beside a kernel whose product has another version
/// declared by metadata: attaching it keeps that version's attributes.
#[test]
pub(crate) fn a_shared_file_attached_to_a_product_with_declared_versions_keeps_their_attributes() {
    regression(&[
        Op::Rsync {
            s: 0,
            f: kernel(0, 0, 1, 0),
            c: 0,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 1,
            sub: 1,
            c: [0, 0, 0],
            write: [false, false, false],
        },
        Op::Copy {
            s: 0,
            f: squashfs(0, 0),
            c: 0,
        },
    ]);
}

/// A products file declaring a version whose kernel was copied before it
/// (data first, as `cp -r` does) replaces that version with the declared
/// one, in a product with another declared version; the squashfs written
/// after it fills the declared item.
#[test]
pub(crate) fn a_products_file_replaces_the_version_its_copied_data_made() {
    regression(&[
        Op::Rsync {
            s: 0,
            f: kernel(0, 0, 1, 0),
            c: 0,
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 1,
            sub: 1,
            c: [0, 0, 0],
            write: [false, false, false],
        },
        Op::Meta {
            s: 0,
            arch: 0,
            version: 0,
            sub: 1,
            c: [0, 0, 0],
            write: [false, false, true],
        },
    ]);
}

/// The ops that leave `released` with a promoted version (one initrd) and a
/// squashfs of that version kept for products to come (content 0).
fn promoted_beside_a_kept_squashfs() -> Vec<Op> {
    vec![
        Op::Copy {
            s: 0,
            f: kernel(0, 0, 0, 1),
            c: 0,
        },
        Op::Copy {
            s: 1,
            f: squashfs(0, 0),
            c: 0,
        },
        Op::CtlPromote { version: 0 },
    ]
}

/// A products file that redeclares a version the stream has (here a
/// promoted one, made by the templates) replaces it, so its squashfs must
/// agree with the squashfs the stream keeps at that path: other content is
/// refused, as for any path the stream holds.
#[test]
pub(crate) fn a_products_file_redeclaring_a_version_cannot_contradict_a_kept_shared_file() {
    let mut ops = promoted_beside_a_kept_squashfs();
    ops.push(Op::Meta {
        s: 1,
        arch: 0,
        version: 0,
        sub: 0,
        c: [0, 0, 1],
        write: [false, false, false],
    });
    regression(&ops);
}

/// The same with the kept squashfs's content: the declared version takes
/// the kept file as its item.
#[test]
pub(crate) fn a_products_file_redeclaring_a_version_takes_the_kept_shared_file() {
    let mut ops = promoted_beside_a_kept_squashfs();
    ops.push(Op::Meta {
        s: 1,
        arch: 0,
        version: 0,
        sub: 0,
        c: [0, 0, 0],
        write: [false, false, false],
    });
    regression(&ops);
}

/// A whole build copied data first, then its products file: the same
/// stream as metadata first.
#[test]
pub(crate) fn a_build_copied_data_first_equals_its_metadata() {
    regression(&[
        Op::DataFirst {
            s: 0,
            arch: 1,
            version: 2,
            sub: 0,
            c: [1, 2, 3],
            first: [true, true, true],
            reversed: true,
        },
        Op::DataFirst {
            s: 0,
            arch: 1,
            version: 2,
            sub: 1,
            c: [2, 1, 3],
            first: [true, false, false],
            reversed: false,
        },
    ]);
}

/// A directory made by `mkdir -p` for a copy goes with its items when
/// `clean-md` retires them beside the mount.
#[test]
pub(crate) fn directories_made_for_a_copy_go_with_their_items_at_clean_md() {
    regression(&[
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 0,
                version: 1,
                slot: Slot::Kernel { sub: 1, file: 0 },
            },
            c: 0,
        },
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 0,
                version: 0,
                slot: Slot::Kernel { sub: 1, file: 0 },
            },
            c: 0,
        },
        Op::CleanMd { s: 0, keep: 1 },
    ]);
}

/// Removing a kept shared file (never listed) leaves the listings as they
/// were: its directories do not appear.
#[test]
pub(crate) fn removing_an_unlisted_shared_file_changes_no_listing() {
    regression(&[
        Op::Copy {
            s: 0,
            f: FileRef {
                arch: 1,
                version: 2,
                slot: Slot::Squashfs,
            },
            c: 0,
        },
        Op::Remount,
        Op::Remove {
            s: 0,
            f: FileRef {
                arch: 1,
                version: 2,
                slot: Slot::Squashfs,
            },
        },
    ]);
}

/// A products file whose data are all in the pool publishes its version at
/// `close`, in directories the kernel listed (and cached) just before: a
/// listing right after `close` shows the version, because the mount drops
/// the kernel's caches before it answers.
#[test]
pub(crate) fn a_listing_right_after_a_products_file_shows_the_version_it_published() {
    let squashfs = FileRef {
        arch: 0,
        version: 0,
        slot: Slot::Squashfs,
    };
    let mut ops = vec![
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 0),
            c: 3,
        },
        Op::Copy {
            s: 1,
            f: kernel(0, 0, 0, 1),
            c: 3,
        },
        Op::Copy {
            s: 1,
            f: squashfs,
            c: 3,
        },
    ];
    for arch in 0..2 {
        for version in 0..3 {
            ops.push(Op::Meta {
                s: 0,
                arch,
                version,
                sub: 0,
                c: [3, 3, 3],
                write: [false, false, false],
            });
        }
    }
    // Four mounts at once: the CPUs are busy, as in a full run, where the
    // generation watcher (which drops the caches too, a moment later) lags.
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| regression(&ops));
        }
    });
}
