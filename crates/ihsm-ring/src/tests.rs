use super::*;
use proptest::prelude::*;

fn pair() -> (Region, Region) {
    let (d, fd) = Region::create(Geometry::default()).expect("create");
    let c = Region::attach(&fd, Geometry::default()).expect("attach");
    (d, c)
}

#[test]
fn round_trip_both_rings() {
    let (d, c) = pair();
    let mut buf = Vec::new();
    for i in 0..100u32 {
        let req = vec![i as u8; (i as usize * 37) % d.capacity()];
        c.ring(Which::Submission).push(&req, 0).expect("push");
        assert_eq!(
            d.ring(Which::Submission).pop(&mut buf).expect("pop"),
            Some(0)
        );
        assert_eq!(buf, req);
        assert_eq!(d.ring(Which::Submission).pop(&mut buf).expect("pop"), None);
        d.ring(Which::Completion)
            .push(&req, FLAG_ON_SOCKET)
            .expect("push");
        assert_eq!(
            c.ring(Which::Completion).pop(&mut buf).expect("pop"),
            Some(FLAG_ON_SOCKET)
        );
        assert_eq!(buf, req);
    }
}

#[test]
fn full_and_too_large() {
    let (d, c) = pair();
    let sq = c.ring(Which::Submission);
    for _ in 0..d.geometry().slots {
        sq.push(b"x", 0).expect("push");
    }
    assert!(matches!(sq.push(b"x", 0), Err(RingError::Full)));
    let big = vec![0u8; d.capacity() + 1];
    assert!(matches!(
        d.ring(Which::Completion).push(&big, 0),
        Err(RingError::TooLarge { .. })
    ));
}

#[test]
fn consumed_slots_are_zeroed_and_drop_wipes() {
    let (d, fd) = Region::create(Geometry::default()).expect("create");
    let c = Region::attach(&fd, Geometry::default()).expect("attach");
    c.ring(Which::Submission)
        .push(b"secret pin 123456", 0)
        .expect("push");
    let mut buf = Vec::new();
    d.ring(Which::Submission).pop(&mut buf).expect("pop");
    d.ring(Which::Completion)
        .push(b"secret reply", 0)
        .expect("push");
    drop(d);
    // The daemon's drop zeroed the shared pages: the client's view is zeros.
    assert!(c.is_zeroed());
}

#[test]
fn attach_refuses_unsealed_and_wrong_size() {
    let fd = rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    let g = Geometry::default();
    rustix::fs::ftruncate(&fd, g.region_len() as u64).expect("truncate");
    assert!(matches!(Region::attach(&fd, g), Err(RingError::Region(_))));
    let (_d, fd) = Region::create(g).expect("create");
    let other = Geometry {
        slots: 8,
        slot_bytes: g.slot_bytes,
    };
    assert!(matches!(
        Region::attach(&fd, other),
        Err(RingError::Region(_))
    ));
    // A sealed region cannot be shrunk by the peer.
    assert!(rustix::fs::ftruncate(&fd, 4096).is_err());
}

#[test]
fn attach_refuses_a_bad_header() {
    let (d, fd) = Region::create(Geometry::default()).expect("create");
    d.hostile_write(0, b"XXXX");
    assert!(matches!(
        Region::attach(&fd, Geometry::default()),
        Err(RingError::Region(_))
    ));
}

#[test]
fn bad_geometry() {
    for g in [
        Geometry {
            slots: 0,
            slot_bytes: 4096,
        },
        Geometry {
            slots: 3,
            slot_bytes: 4096,
        },
        Geometry {
            slots: 4,
            slot_bytes: 100,
        },
        Geometry {
            slots: 128,
            slot_bytes: 4096,
        },
        Geometry {
            slots: 4,
            slot_bytes: MAX_SLOT_BYTES * 2,
        },
    ] {
        assert!(g.check().is_err(), "{g:?}");
    }
}

#[test]
fn corrupt_entries_are_errors() {
    let (d, c) = pair();
    let sq = d.ring(Which::Submission);
    let mut buf = Vec::new();
    // Head far ahead of the tail.
    c.hostile_write(16 * 4, &1000u32.to_le_bytes());
    assert!(matches!(sq.pop(&mut buf), Err(RingError::Corrupt(_))));
    // One entry, with a length over the slot.
    let (d, c) = pair();
    c.ring(Which::Submission).push(b"abc", 0).expect("push");
    let slot0 = map::page();
    c.hostile_write(slot0, &u32::MAX.to_le_bytes());
    assert!(matches!(
        d.ring(Which::Submission).pop(&mut buf),
        Err(RingError::Corrupt(_))
    ));
    // Out of sequence.
    let (d, c) = pair();
    c.ring(Which::Submission).push(b"abc", 0).expect("push");
    c.hostile_write(slot0 + 8, &7u64.to_le_bytes());
    assert!(matches!(
        d.ring(Which::Submission).pop(&mut buf),
        Err(RingError::Corrupt(_))
    ));
    // A consumer's tail past the producer's head.
    let (d, c) = pair();
    c.hostile_write(80 * 4, &5u32.to_le_bytes());
    assert!(matches!(
        d.ring(Which::Completion).push(b"x", 0),
        Err(RingError::Corrupt(_))
    ));
}

#[test]
fn futex_wait_is_bounded_and_woken() {
    let (d, fd) = Region::create(Geometry::default()).expect("create");
    let sq = d.ring(Which::Submission);
    assert!(sq.arm());
    // Nobody pushes: the wait ends at its timeout.
    sq.wait(Duration::from_millis(20)).expect("wait");
    sq.disarm();
    let t = std::thread::spawn(move || {
        let c = Region::attach(&fd, Geometry::default()).expect("attach");
        std::thread::sleep(Duration::from_millis(20));
        let waiting = c.ring(Which::Submission).push(b"hello", 0).expect("push");
        if waiting {
            c.ring(Which::Submission).wake().expect("wake");
        }
        // Keep the mapping until the reader has the entry.
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    loop {
        if sq.pop(&mut buf).expect("pop").is_some() {
            break;
        }
        if sq.arm() {
            sq.wait(Duration::from_millis(500)).expect("wait");
            sq.disarm();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never woken");
    }
    assert_eq!(buf, b"hello");
    t.join().expect("join");
}

#[test]
fn a_forked_child_does_not_inherit_the_mapping() {
    // The kernel says so in the mapping's VmFlags ("dc": do not copy on
    // fork); forking the test harness itself would be fragile.
    let (d, _fd) = Region::create(Geometry::default()).expect("create");
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    // VmFlags of the mapping include "dc" (do not copy on fork).
    let mut in_ring = false;
    let mut flagged = false;
    for line in smaps.lines() {
        if line.contains("/memfd:ihsm-ring") {
            in_ring = true;
        } else if in_ring && line.starts_with("VmFlags:") {
            flagged |= line.split_whitespace().any(|f| f == "dc");
            in_ring = false;
        }
    }
    assert!(flagged, "the ring is not MADV_DONTFORK");
    assert!(d.is_own());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A hostile writer scribbles over the whole region (control page and
    /// slots) while the reader reads and writes: only errors, never a panic
    /// or an access outside the region.
    #[test]
    fn hostile_writer_never_breaks_the_reader(
        writes in proptest::collection::vec((0usize..(Geometry::default().region_len() + 64), proptest::collection::vec(any::<u8>(), 1..64)), 1..64),
        pushes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..16),
    ) {
        let (d, fd) = Region::create(Geometry::default()).expect("create");
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let c = Region::attach(&fd, Geometry::default()).expect("attach");
                for (i, (at, bytes)) in writes.iter().enumerate() {
                    if let Some(p) = pushes.get(i) {
                        let _ = c.ring(Which::Submission).push(p, 0);
                    }
                    c.hostile_write(*at, bytes);
                }
                stop.store(true, Ordering::SeqCst);
            });
            let mut buf = Vec::new();
            let sq = d.ring(Which::Submission);
            let cq = d.ring(Which::Completion);
            loop {
                let done = stop.load(Ordering::SeqCst);
                if let Ok(Some(_)) = sq.pop(&mut buf) {
                    prop_assert!(buf.len() <= d.capacity());
                }
                let _ = cq.push(&buf, 0);
                let _ = sq.ready();
                if sq.arm() {
                    sq.disarm();
                }
                if done {
                    break;
                }
            }
            Ok(())
        })?;
    }
}
