//! A store in a local directory (the embedded default). Creation is atomic and durable:
//! temp file, fsync, hard link into place (which fails if the name exists), fsync the
//! directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{check_key, ObjectInfo, PutOutcome, Result, Store, StoreError};

#[derive(Clone)]
pub struct FsStore {
    root: PathBuf,
    url: String,
}

impl FsStore {
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        crate::fsutil::create_dir_durable(&root).map_err(|e| {
            StoreError::Config(format!(
                "cannot create store directory {}: {e}",
                root.display()
            ))
        })?;
        let url = format!("file://{}", root.display());
        Ok(FsStore { root, url })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, op: &'static str, key: &str, e: std::io::Error) -> StoreError {
        let detail = e.to_string();
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound {
                store: self.url.clone(),
                key: key.to_string(),
            },
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput => {
                StoreError::Refused {
                    store: self.url.clone(),
                    op,
                    key: key.to_string(),
                    detail,
                }
            }
            _ => StoreError::Unavailable {
                store: self.url.clone(),
                op,
                key: key.to_string(),
                detail,
            },
        }
    }

    /// Writes a temp file beside `path` and fsyncs it; returns its path.
    fn write_temp(&self, key: &str, path: &Path, data: &[u8]) -> Result<PathBuf> {
        let dir = path.parent().expect("key has a parent");
        crate::fsutil::create_dir_durable(dir)
            .map_err(|e| self.io("create directory for", key, e))?;
        let name = path.file_name().expect("key has a name").to_string_lossy();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(|e| self.io("create", key, e))?;
        f.write_all(data).map_err(|e| self.io("write", key, e))?;
        f.sync_all().map_err(|e| self.io("fsync", key, e))?;
        Ok(tmp)
    }

    fn sync_dir(&self, key: &str, path: &Path) -> Result<()> {
        let dir = path.parent().expect("key has a parent");
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("fsync directory of", key, e))
    }
}

/// The operations themselves, blocking: the [`Store`] methods run them on tokio's
/// blocking threads (a segment or a snapshot is up to hundreds of megabytes, fsynced).
impl FsStore {
    fn put_new_sync(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome> {
        let path = self.path(key)?;
        let tmp = self.write_temp(key, &path, &data)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir(key, &path)?;
                Ok(PutOutcome::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = fs::read(&path).map_err(|e| self.io("read", key, e))?;
                if existing == data {
                    Ok(PutOutcome::AlreadyPresent)
                } else {
                    Err(StoreError::Conflict {
                        store: self.url.clone(),
                        key: key.to_string(),
                        detail: format!(
                            "{} bytes there, {} bytes to write",
                            existing.len(),
                            data.len()
                        ),
                    })
                }
            }
            Err(e) => Err(self.io("link", key, e)),
        }
    }

    fn put_sync(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        let tmp = self.write_temp(key, &path, &data)?;
        fs::rename(&tmp, &path).map_err(|e| self.io("rename", key, e))?;
        self.sync_dir(key, &path)
    }

    fn get_sync(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        fs::read(&path).map_err(|e| self.io("read", key, e))
    }

    fn head_sync(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("stat", key, e)),
        }
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        let mut stack = vec![(self.root.join(dir_part), dir_part.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io("list", prefix, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // temp files of unfinished writes
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry.file_type().map_err(|e| self.io("list", prefix, e))?;
                if ft.is_dir() {
                    stack.push((entry.path(), key));
                } else if key.starts_with(prefix) {
                    let size = entry
                        .metadata()
                        .map_err(|e| self.io("stat", &key, e))?
                        .len();
                    out.push(ObjectInfo { key, size });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn top_level_sync(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| self.io("list", "", e))? {
            let entry = entry.map_err(|e| self.io("list", "", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_sync(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(key, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("delete", key, e)),
        }
    }
}

#[async_trait]
impl Store for FsStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put_new(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome> {
        let (s, key) = (self.clone(), key.to_string());
        crate::fsutil::blocking(move || s.put_new_sync(&key, data)).await
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let (s, key) = (self.clone(), key.to_string());
        crate::fsutil::blocking(move || s.put_sync(&key, data)).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let (s, key) = (self.clone(), key.to_string());
        crate::fsutil::blocking(move || s.get_sync(&key)).await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let (s, key) = (self.clone(), key.to_string());
        crate::fsutil::blocking(move || s.head_sync(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let (s, prefix) = (self.clone(), prefix.to_string());
        crate::fsutil::blocking(move || s.list_sync(&prefix)).await
    }

    async fn top_level(&self) -> Result<Vec<String>> {
        let s = self.clone();
        crate::fsutil::blocking(move || s.top_level_sync()).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let (s, key) = (self.clone(), key.to_string());
        crate::fsutil::blocking(move || s.delete_sync(&key)).await
    }
}
