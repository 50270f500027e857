//! `EncryptedStore`: a `Store` that seals the values of the configured resources on create and
//! update and opens them on get, list, delete and watch, so the rest of the server never sees a
//! ciphertext and the store never sees a covered value in the clear.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use skiff_store::{KeyValue, ListOptions, ListResult, Progress, Revision, Store, WatchStream};

use super::{EncryptionConfig, Error};

/// The wrapper; see the module docs.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> EncryptedStore {
        EncryptedStore {
            inner,
            config: Arc::new(config),
        }
    }

    /// Checks that every stored value of a covered resource opens with the configured
    /// providers (run at start: a wrong key fails start-up, never a later read). Returns how
    /// many values were checked and how many are stale (written by another provider or key
    /// than the one that writes now).
    pub async fn verify(&self) -> Result<(usize, usize), Error> {
        let (mut checked, mut stale) = (0, 0);
        for prefix in self.config.prefixes() {
            let mut start_after = None;
            loop {
                let page = self
                    .inner
                    .list(ListOptions {
                        prefix: prefix.clone(),
                        start_after: start_after.clone(),
                        limit: Some(500),
                        revision: None,
                    })
                    .await?;
                for kv in &page.items {
                    let Some(t) = self.config.transformer_for(&kv.key) else {
                        continue;
                    };
                    let opened =
                        t.open(&kv.key, &kv.value)
                            .map_err(|reasons| Error::Undecryptable {
                                key: kv.key.trim_start_matches('/').to_string(),
                                reasons,
                            })?;
                    checked += 1;
                    stale += usize::from(opened.stale);
                }
                match (page.more, page.items.last()) {
                    (true, Some(last)) => start_after = Some(last.key.clone()),
                    _ => break,
                }
            }
        }
        Ok((checked, stale))
    }
}

/// Opens one value read from the inner store.
fn open(config: &EncryptionConfig, mut kv: KeyValue) -> skiff_store::Result<KeyValue> {
    if let Some(t) = config.transformer_for(&kv.key) {
        match t.open(&kv.key, &kv.value) {
            Ok(opened) => kv.value = opened.value,
            Err(reasons) => {
                tracing::error!(key = %kv.key, %reasons, "a stored value could not be decrypted");
                return Err(skiff_store::Error::Backend(format!(
                    "{}: no provider could decrypt: {reasons}",
                    kv.key.trim_start_matches('/')
                )));
            }
        }
    }
    Ok(kv)
}

fn seal(config: &EncryptionConfig, key: &str, value: Vec<u8>) -> Vec<u8> {
    match config.transformer_for(key) {
        Some(t) => t.seal(key, &value),
        None => value,
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> skiff_store::Result<Option<KeyValue>> {
        match self.inner.get(key).await? {
            Some(kv) => open(&self.config, kv).map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, opts: ListOptions) -> skiff_store::Result<ListResult> {
        let mut listed = self.inner.list(opts).await?;
        listed.items = std::mem::take(&mut listed.items)
            .into_iter()
            .map(|kv| open(&self.config, kv))
            .collect::<skiff_store::Result<_>>()?;
        Ok(listed)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> skiff_store::Result<KeyValue> {
        let mut kv = self
            .inner
            .create(key, seal(&self.config, key, value.clone()))
            .await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> skiff_store::Result<KeyValue> {
        let mut kv = self
            .inner
            .update(key, seal(&self.config, key, value.clone()), expected)
            .await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> skiff_store::Result<KeyValue> {
        let kv = self.inner.delete(key, expected).await?;
        open(&self.config, kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> skiff_store::Result<WatchStream> {
        Ok(self.watch_with_progress(prefix, after).await?.0)
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> skiff_store::Result<(WatchStream, Progress)> {
        let config = self.config.clone();
        let (stream, progress) = self.inner.watch_with_progress(prefix, after).await?;
        let stream = stream
            .map(move |event| {
                let mut event = event?;
                event.kv = open(&config, event.kv)?;
                event.prev = event.prev.map(|kv| open(&config, kv)).transpose()?;
                Ok(event)
            })
            .boxed();
        Ok((stream, progress))
    }

    async fn compact(&self, revision: Revision) -> skiff_store::Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> skiff_store::Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compacted_revision(&self) -> skiff_store::Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn close(&self) -> skiff_store::Result<()> {
        self.inner.close().await
    }
}
