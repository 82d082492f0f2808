//! The remote tier's client against object_store's in-memory store:
//! everything that does not need a real S3 server.

use std::sync::Arc;

use agentmem_remote::object_store::memory::InMemory;
use agentmem_remote::object_store::path::Path;
use agentmem_remote::object_store::{ObjectStoreExt, PutPayload};
use agentmem_remote::{
    BlockingRemote, PutOutcome, RemoteError, RemoteRecord, RemoteStore, RemoteTier,
    OBJECT_HEADER_LEN,
};
use bytes::Bytes;

fn record(n: u8, len: usize) -> RemoteRecord {
    RemoteRecord {
        id: *blake3::hash(&[n]).as_bytes(),
        encoding: 2 + u32::from(n),
        bytes: Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(n))
                .collect::<Vec<_>>(),
        ),
    }
}

fn store() -> (RemoteStore, Arc<InMemory>) {
    let mem = Arc::new(InMemory::new());
    (
        RemoteStore::with_object_store(mem.clone(), "agentmem/"),
        mem,
    )
}

#[tokio::test]
async fn round_trip_of_every_size() {
    let (s, _) = store();
    for (n, len) in [(1u8, 0usize), (2, 1), (3, 87), (4, 88), (5, 1 << 20)] {
        let r = record(n, len);
        assert_eq!(s.put(&r).await.unwrap(), PutOutcome::Uploaded);
        assert!(s.contains(&r.id).await.unwrap());
        assert_eq!(s.get(&r.id).await.unwrap(), r);
    }
}

#[tokio::test]
async fn keys_are_hex_content_ids_under_the_prefix() {
    let (s, mem) = store();
    let r = record(1, 10);
    s.put(&r).await.unwrap();
    let key = Path::from(format!(
        "agentmem/units/{}",
        blake3::Hash::from_bytes(r.id).to_hex()
    ));
    assert_eq!(s.unit_key(&r.id), key);
    let meta = mem.head(&key).await.unwrap();
    assert_eq!(meta.size, (OBJECT_HEADER_LEN + 10) as u64);
}

#[tokio::test]
async fn second_put_is_skipped_and_does_not_rewrite() {
    let (s, mem) = store();
    let r = record(1, 1000);
    assert_eq!(s.put(&r).await.unwrap(), PutOutcome::Uploaded);
    let before = mem.head(&s.unit_key(&r.id)).await.unwrap();
    assert_eq!(s.put(&r).await.unwrap(), PutOutcome::AlreadyPresent);
    let after = mem.head(&s.unit_key(&r.id)).await.unwrap();
    assert_eq!(before.e_tag, after.e_tag, "the object was written again");
}

#[tokio::test]
async fn absent_objects() {
    let (s, _) = store();
    let r = record(9, 5);
    assert!(!s.contains(&r.id).await.unwrap());
    assert!(matches!(
        s.get(&r.id).await,
        Err(RemoteError::NotFound { .. })
    ));
    s.delete(&r.id).await.unwrap();
    s.put(&r).await.unwrap();
    s.delete(&r.id).await.unwrap();
    assert!(!s.contains(&r.id).await.unwrap());
}

#[tokio::test]
async fn a_foreign_object_under_our_key_is_a_typed_error_and_never_overwritten() {
    let (s, mem) = store();
    let r = record(1, 100);
    let key = s.unit_key(&r.id);
    for foreign in [&b""[..], b"{\"not\": \"ours\"}", &[0u8; 4096][..]] {
        mem.put(&key, PutPayload::from(foreign.to_vec()))
            .await
            .unwrap();
        let got = s.get(&r.id).await;
        assert!(
            matches!(got, Err(RemoteError::Foreign { .. })),
            "get of {} foreign bytes: {got:?}",
            foreign.len()
        );
        let put = s.put(&r).await;
        assert!(
            matches!(put, Err(RemoteError::Foreign { .. })),
            "put over {} foreign bytes: {put:?}",
            foreign.len()
        );
        let still = mem.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&still[..], foreign);
    }
}

#[tokio::test]
async fn an_object_of_another_id_is_foreign() {
    let (s, mem) = store();
    let (a, b) = (record(1, 50), record(2, 50));
    s.put(&a).await.unwrap();
    let a_bytes = mem
        .get(&s.unit_key(&a.id))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    mem.put(&s.unit_key(&b.id), PutPayload::from(a_bytes))
        .await
        .unwrap();
    let err = s.get(&b.id).await.unwrap_err();
    assert!(matches!(err, RemoteError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("holds content id"), "{err}");
}

#[tokio::test]
async fn damaged_objects_are_corrupt() {
    let (s, mem) = store();
    let r = record(3, 300);
    s.put(&r).await.unwrap();
    let key = s.unit_key(&r.id);
    let good = mem.get(&key).await.unwrap().bytes().await.unwrap();
    // A flipped body bit, a truncated body, a flipped header bit.
    let mut flipped = good.to_vec();
    flipped[OBJECT_HEADER_LEN + 10] ^= 4;
    let truncated = good.slice(..good.len() - 1).to_vec();
    let mut header = good.to_vec();
    header[50] ^= 1;
    for bad in [flipped, truncated, header] {
        mem.put(&key, PutPayload::from(bad)).await.unwrap();
        let got = s.get(&r.id).await;
        assert!(matches!(got, Err(RemoteError::Corrupt { .. })), "{got:?}");
    }
}

#[test]
fn the_blocking_facade_implements_the_tier_seam() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, _) = store();
    let tier: Box<dyn RemoteTier> = Box::new(BlockingRemote::from_client(s, rt.handle().clone()));
    let r = record(4, 4000);
    assert_eq!(tier.get(&r.id).unwrap(), None);
    assert!(!tier.contains(&r.id).unwrap());
    assert_eq!(tier.put(&r).unwrap(), PutOutcome::Uploaded);
    assert_eq!(tier.put(&r).unwrap(), PutOutcome::AlreadyPresent);
    assert_eq!(tier.get(&r.id).unwrap(), Some(r.clone()));
    tier.delete(&r.id).unwrap();
    assert_eq!(tier.get(&r.id).unwrap(), None);
}

#[test]
fn the_blocking_facade_works_from_inside_another_runtime() {
    // agentmemd calls the store from tokio threads; a blocking call there
    // must not panic.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, _) = store();
    let remote = BlockingRemote::from_client(s, rt.handle().clone());
    let outer = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let r = record(5, 10);
    outer.block_on(async {
        assert_eq!(remote.put(&r).unwrap(), PutOutcome::Uploaded);
        assert_eq!(remote.get(&r.id).unwrap(), r);
    });
}

#[tokio::test]
async fn dictionaries_are_named_by_their_hash() {
    let (s, mem) = store();
    let raw = b"\x37\xa4\x30\xec a zstd dictionary".to_vec();
    let (hash, first) = s.put_dictionary(&raw).await.unwrap();
    assert_eq!(hash, *blake3::hash(&raw).as_bytes());
    assert_eq!(first, PutOutcome::Uploaded);
    assert_eq!(
        s.put_dictionary(&raw).await.unwrap().1,
        PutOutcome::AlreadyPresent
    );
    assert_eq!(&s.get_dictionary(&hash).await.unwrap()[..], &raw[..]);
    assert!(s
        .dictionary_key(&hash)
        .as_ref()
        .starts_with("agentmem/dicts/"));
    // A damaged dictionary is refused, not returned.
    let key = s.dictionary_key(&hash);
    let mut bad = mem.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    mem.put(&key, PutPayload::from(bad)).await.unwrap();
    assert!(matches!(
        s.get_dictionary(&hash).await,
        Err(RemoteError::Corrupt { .. })
    ));
    assert!(matches!(
        s.get_dictionary(&[0; 32]).await,
        Err(RemoteError::NotFound { .. })
    ));
}
