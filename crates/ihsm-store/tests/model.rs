//! Random sequences of writes (some of them failing, so that nothing of them may
//! be committed) against an in-memory model of the store, checked after every write
//! and again after reopening.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Dir, key, read_object};
use ihsm_crypto::ExposeSecret;
use ihsm_store::{Store, StoreError, WriteTx};
use proptest::prelude::*;

const PIDS: u32 = 3;
const OIDS: u64 = 6;
const TAGS: u8 = 2;
const MACS: u8 = 3;

#[derive(Debug, Clone)]
enum Op {
    PutPartition(u32, Vec<u8>),
    DeletePartition(u32),
    NewObject(u32, u8, Vec<u8>),
    PutObject(u32, u64, u8, Vec<u8>),
    DeleteObject(u32, u64),
    IndexAdd(u32, u8, u8, u64),
    IndexRemove(u32, u8, u8, u64),
    AuditAppend(u32, u64, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let pid = 0..PIDS;
    let oid = 1..=OIDS;
    let bytes = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        3 => (pid.clone(), bytes.clone()).prop_map(|(p, r)| Op::PutPartition(p, r)),
        1 => pid.clone().prop_map(Op::DeletePartition),
        4 => (pid.clone(), any::<u8>(), bytes.clone()).prop_map(|(p, d, r)| Op::NewObject(p, d, r)),
        2 => (pid.clone(), oid.clone(), any::<u8>(), bytes.clone())
            .prop_map(|(p, o, d, r)| Op::PutObject(p, o, d, r)),
        2 => (pid.clone(), oid.clone()).prop_map(|(p, o)| Op::DeleteObject(p, o)),
        3 => (pid.clone(), 0..TAGS, 0..MACS, oid.clone())
            .prop_map(|(p, t, m, o)| Op::IndexAdd(p, t, m, o)),
        2 => (pid.clone(), 0..TAGS, 0..MACS, oid).prop_map(|(p, t, m, o)| Op::IndexRemove(p, t, m, o)),
        2 => (pid, 0..5u64, bytes).prop_map(|(p, s, e)| Op::AuditAppend(p, s, e)),
    ]
}

fn mac(m: u8) -> [u8; 16] {
    [m; 16]
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    parts: BTreeMap<u32, Vec<u8>>,
    objects: BTreeMap<(u32, u64), ([u8; 32], Vec<u8>)>,
    index: BTreeSet<(u32, u8, u8, u64)>,
    audit: BTreeMap<(u32, u64), Vec<u8>>,
    next: BTreeMap<u32, u64>,
}

/// Applies `op` to the model and the store alike. Refusals (which change nothing)
/// must agree; they are swallowed so the write goes on.
fn apply(m: &mut Model, tx: &mut WriteTx<'_>, op: &Op) -> Result<(), StoreError> {
    let refused = |r: Result<(), StoreError>, expect_refusal: bool| -> Result<(), StoreError> {
        match r {
            Ok(()) if !expect_refusal => Ok(()),
            Err(
                StoreError::NoSuchPartition { .. }
                | StoreError::NoSuchObject { .. }
                | StoreError::AuditSeqExists { .. },
            ) if expect_refusal => Ok(()),
            other => panic!("store and model disagree on {op:?}: {other:?}"),
        }
    };
    match op {
        Op::PutPartition(p, r) => {
            tx.put_partition(*p, r)?;
            m.parts.insert(*p, r.clone());
        }
        Op::DeletePartition(p) => {
            tx.delete_partition(*p)?;
            m.parts.remove(p);
            m.objects.retain(|(q, _), _| q != p);
            m.index.retain(|(q, ..)| q != p);
            m.audit.retain(|(q, _), _| q != p);
            m.next.remove(p);
        }
        Op::NewObject(p, d, r) => {
            let exists = m.parts.contains_key(p);
            let got = tx.next_object_id(*p);
            if !exists {
                return refused(got.map(|_| ()), true);
            }
            let oid = got?;
            let want = m.next.get(p).copied().unwrap_or(1);
            assert_eq!(oid, want, "next object id");
            m.next.insert(*p, oid + 1);
            tx.put_object(*p, oid, &key(*p as u8), &[*d; 32], r)?;
            m.objects.insert((*p, oid), ([*d; 32], r.clone()));
        }
        Op::PutObject(p, o, d, r) => {
            let exists = m.parts.contains_key(p);
            refused(tx.put_object(*p, *o, &key(*p as u8), &[*d; 32], r), !exists)?;
            if exists {
                m.objects.insert((*p, *o), ([*d; 32], r.clone()));
                let n = m.next.entry(*p).or_insert(1);
                *n = (*n).max(o + 1);
            }
        }
        Op::DeleteObject(p, o) => {
            let removed = tx.delete_object(*p, *o)?;
            assert_eq!(removed, m.objects.remove(&(*p, *o)).is_some());
        }
        Op::IndexAdd(p, t, mm, o) => {
            let exists = m.objects.contains_key(&(*p, *o));
            refused(tx.index_add(*p, *t, &mac(*mm), *o), !exists)?;
            if exists {
                m.index.insert((*p, *t, *mm, *o));
            }
        }
        Op::IndexRemove(p, t, mm, o) => {
            tx.index_remove(*p, *t, &mac(*mm), *o)?;
            m.index.remove(&(*p, *t, *mm, *o));
        }
        Op::AuditAppend(p, s, e) => {
            let taken = m.audit.contains_key(&(*p, *s));
            refused(tx.audit_append(*p, *s, e), taken)?;
            if !taken {
                m.audit.insert((*p, *s), e.clone());
            }
        }
    }
    Ok(())
}

fn check(s: &Store, m: &Model) {
    let parts: BTreeMap<u32, Vec<u8>> = s
        .partitions()
        .unwrap()
        .into_iter()
        .map(|(p, r)| (p, r.expose_secret().to_vec()))
        .collect();
    assert_eq!(parts, m.parts);
    for p in 0..PIDS {
        assert_eq!(
            s.partition(p).unwrap().map(|r| r.expose_secret().to_vec()),
            m.parts.get(&p).cloned()
        );
        let ids: Vec<u64> = m
            .objects
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(s.object_ids(p).unwrap(), ids);
        assert_eq!(s.object_count(p).unwrap(), ids.len() as u64);
        for o in 0..=OIDS + 4 {
            assert_eq!(
                read_object(s, p, o, &key(p as u8)),
                m.objects.get(&(p, o)).cloned()
            );
        }
        for t in 0..TAGS {
            for mm in 0..MACS {
                let want: Vec<u64> = m
                    .index
                    .iter()
                    .filter(|(q, tt, x, _)| (*q, *tt, *x) == (p, t, mm))
                    .map(|(.., o)| *o)
                    .collect();
                assert_eq!(s.find(p, t, &mac(mm)).unwrap(), want);
            }
        }
        let audit: Vec<(u64, Vec<u8>)> = m
            .audit
            .iter()
            .filter(|((q, _), _)| *q == p)
            .map(|((_, seq), e)| (*seq, e.clone()))
            .collect();
        assert_eq!(s.audit(p, 0, usize::MAX).unwrap(), audit);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_writes_match_the_model(
        batches in proptest::collection::vec(
            (proptest::collection::vec(op(), 1..12), proptest::bool::weighted(0.2)),
            1..10,
        )
    ) {
        let d = Dir::new();
        let (s, _) = d.open();
        let mut model = Model::default();
        let mut generation = 0;
        for (ops, fail) in &batches {
            let mut next = model.clone();
            let r = s.write(|tx| {
                for op in ops {
                    apply(&mut next, tx, op)?;
                }
                if *fail {
                    return Err(StoreError::WriteAbandoned { op: "test" });
                }
                Ok(())
            });
            if *fail {
                let refused = matches!(r, Err(StoreError::WriteAbandoned { op: "test" }));
                prop_assert!(refused);
            } else {
                r.unwrap();
                model = next;
                generation += 1;
            }
            prop_assert_eq!(s.generation(), generation);
            check(&s, &model);
        }
        drop(s);
        let (s, r) = d.open();
        prop_assert_eq!(r.generation, generation);
        check(&s, &model);
    }
}
